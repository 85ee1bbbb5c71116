"""Module each worker process imports (`dmp worker`): settings read once here."""

import dramatiq

import pipeline.documents.batching  # noqa: F401  (the actors import it when they run: here at boot, not on a first message)
from pipeline.core.settings import Settings
from pipeline.documents.validate import prepare_sandbox
from pipeline.notify.sweeper import SweeperMiddleware
from pipeline.workers.recovery import Recovery
from pipeline.workers.wiring import Wiring, wire


class RecoveryMiddleware(dramatiq.Middleware):
    """Runs the process's recovery thread (lease renewal, recovery sweep) while its worker runs, and
    tells waiting actors to let their messages go when the worker stops."""

    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring
        self.recovery: Recovery | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.recovery = self.wiring.recovery().start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.wiring.state.stopping.set()
        if self.recovery is not None:
            self.recovery.stop()


class SandboxMiddleware(dramatiq.Middleware):
    """Starts each worker thread's sandboxed inspector (pipeline/documents/sandbox.py) as the thread boots, in the
    background: its first message finds the child ready rather than waiting some hundred milliseconds of CPU for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def after_worker_thread_boot(self, broker: dramatiq.Broker, thread: object) -> None:
        prepare_sandbox(self.settings)


wiring = wire(Settings())
broker = wiring.broker
# Each worker process also sends the notifications that are due (coalesced deposits, retries, leftovers).
broker.add_middleware(SweeperMiddleware(wiring.runtime))
broker.add_middleware(RecoveryMiddleware(wiring))
broker.add_middleware(SandboxMiddleware(wiring.settings))
