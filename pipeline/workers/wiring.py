"""Putting broker, actors and runtime together for one process (CLI, worker, tests)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import dramatiq

from pipeline.core.reasons import Transient
from pipeline.core.settings import Settings
from pipeline.runtime import Runtime
from pipeline.workers.actors import Actors, Task, declare_actors, jobs_queue
from pipeline.workers.broker import build_broker
from pipeline.workers.recovery import Recovery, Senders, WorkerState


@dataclass
class Wiring:
    settings: Settings
    broker: dramatiq.Broker
    actors: Actors
    state: WorkerState
    prepare: bool = False
    _runtime: Runtime | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def runtime(self) -> Runtime:
        """The process's Runtime, built on first use (after dramatiq forks its worker processes)."""
        with self._lock:
            if self._runtime is None:
                self._runtime = Runtime.from_settings(self.settings, prepare=self.prepare)
            return self._runtime

    def send_item(self, item_id: str) -> None:
        """Enqueue one batch item; a broker that cannot be reached is a Transient failure."""
        self._send(self.actors.process_document, item_id)

    def send_items(self, item_ids: list[str]) -> None:
        """Enqueue the items of one intake pack as one message (a worker's micro-batch)."""
        if len(item_ids) == 1:
            self._send(self.actors.process_document, item_ids[0])
        else:
            self._send(self.actors.process_documents, item_ids, f"{item_ids[0]}+{len(item_ids) - 1}")

    def admit_batch(self, batch_id: str) -> None:
        """One message for a whole batch: a worker sends its waiting items (see process.send_waiting_items)."""
        self._send(self.actors.admit_batch, batch_id)

    def _send(self, actor: Task, arg: str | list[str], ref: str | None = None) -> None:
        import redis

        try:
            actor.send(arg)
        except (dramatiq.errors.ConnectionError, redis.exceptions.ConnectionError, OSError):
            raise Transient(f"broker_unavailable ref={ref or arg}") from None

    def send_chunk(self, chunk_id: str) -> None:
        """Enqueue one feed chunk; a broker that cannot be reached is a Transient failure."""
        self._send(self.actors.process_feed_chunk, chunk_id)

    def resume_retention(self) -> None:
        """Send the retention schedule whose message the broker lost (recovery.py)."""
        import datetime as dt

        from pipeline.retention import resume_delay_ms

        delay = resume_delay_ms(self.runtime(), dt.datetime.now(dt.UTC))
        self.actors.retention.send_with_options(delay=delay or None)

    def recovery(self) -> Recovery:
        """This process's recovery thread (not started): lease renewal and the recovery sweep."""
        senders = Senders(self.send_item, self.send_chunk, self.resume_retention)
        queues = (self.settings.queue_name, jobs_queue(self.settings.queue_name))
        return Recovery(self.runtime(), self.broker, queues, self.state, senders)

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
        self.broker.close()


def wire(settings: Settings, *, prepare: bool = False, runtime: Runtime | None = None) -> Wiring:
    """Build the broker and declare the actors; the Runtime comes lazily, unless the process has one (`runtime`)."""
    broker = build_broker(settings)
    holder: list[Wiring] = []
    state = WorkerState()
    actors = declare_actors(broker, settings.queue_name, lambda: holder[0].runtime(), state)
    wiring = Wiring(settings, broker, actors, state, prepare, runtime)
    holder.append(wiring)
    return wiring
