"""The recovery sweep (pipeline/workers/recovery.py): the index says what is unfinished, and work
of a dead worker or whose message the broker lost is sent again, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io

from sqlalchemy import update

from pipeline.core.settings import Settings
from pipeline.index import repo
from pipeline.index.models import Batch, BatchItem
from pipeline.ingest.intake import receive_batch
from pipeline.workers.recovery import Recovery, Senders, WorkerState, release_lapsed, renew_leases, reserve_unsent
from pipeline.workers.wiring import wire

DEAD = dt.timedelta(0)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _received(rt, tmp_path) -> tuple[str, list[str]]:  # noqa: ANN001
    from pipeline.samples import generate_samples

    batch = tmp_path / "batch"
    generate_samples(batch, patients=2, documents=3, seed=9, bad=False)
    lost: list[str] = []  # the broker lost every message
    result = receive_batch(rt, batch, "hospital:T", lost.append)
    return result.batch_id, lost


def _item(rt, item_id: str) -> BatchItem:  # noqa: ANN001
    with rt.sessions() as session:
        return session.get(BatchItem, item_id)


def _intake_finished_long_ago(rt, batch_id: str) -> None:  # noqa: ANN001
    with rt.sessions() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(sent_at=_now() - dt.timedelta(hours=1)))
        session.commit()


def test_the_claim_of_a_dead_worker_is_released_once_its_lease_lapsed_and_counts_a_crash(rt, tmp_path):
    _, items = _received(rt, tmp_path)
    with rt.sessions() as session:
        repo.claim_item(session, items[0], lease=DEAD)
        repo.claim_item(session, items[1])  # alive
    assert release_lapsed(rt, _now()) == ([items[0]], [])
    dead, alive = _item(rt, items[0]), _item(rt, items[1])
    assert (dead.state, dead.crashes, alive.state) == ("queued", 1, "processing")
    assert release_lapsed(rt, _now()) == ([], [])


def test_a_claim_whose_worker_renews_its_lease_is_left_alone(rt, tmp_path):
    _, items = _received(rt, tmp_path)
    with rt.sessions() as session:
        repo.claim_item(session, items[0], lease=DEAD)
    renew_leases(rt, [items[0]], [], _now() + dt.timedelta(seconds=15))
    assert release_lapsed(rt, _now()) == ([], [])


def test_items_whose_messages_were_lost_are_sent_again_once_per_lease(rt, tmp_path):
    batch_id, items = _received(rt, tmp_path)
    _intake_finished_long_ago(rt, batch_id)
    with rt.sessions() as session:
        repo.claim_item(session, items[0])  # a live worker holds this one
    again, _ = reserve_unsent(rt, _now())
    assert sorted(again) == sorted(items[1:])
    assert reserve_unsent(rt, _now()) == ([], [])  # reserved while their new messages travel


def test_a_batch_whose_intake_is_still_sending_is_left_to_its_intake(rt, tmp_path):
    batch_id, _ = _received(rt, tmp_path)
    with rt.sessions() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(sent_at=None))
        session.commit()
    assert reserve_unsent(rt, _now() + dt.timedelta(hours=1)) == ([], [])


def test_a_worker_process_sends_lost_items_again_only_when_no_message_waits_in_the_broker(tmp_path):
    settings = Settings(home=tmp_path / "home", claim_lease_seconds=0.1)
    wiring = wire(settings, prepare=True)
    rt = wiring.runtime()
    batch_id, items = _received(rt, tmp_path)
    _intake_finished_long_ago(rt, batch_id)
    sent: list[str] = []

    def send(item_id: str) -> None:
        sent.append(item_id)
        wiring.send_item(item_id)

    recovery = Recovery(rt, wiring.broker, (settings.queue_name, "jobs"), WorkerState(), Senders(send, send, lambda: None))
    wiring.broker.declare_queue("jobs")
    recovery.run_once()
    assert sorted(sent) == sorted(items)
    _intake_finished_long_ago(rt, batch_id)
    with rt.sessions() as session:
        session.execute(update(BatchItem).values(lease_until=None))  # as if the reservation lapsed
        session.commit()
    recovery.run_once()  # their messages wait in the broker now: nothing is lost
    assert len(sent) == len(items)
    wiring.close()


def test_the_inbox_copy_of_an_item_whose_worker_died_after_its_commit_is_deleted(rt, tmp_path):
    from pipeline.documents.process import forget_inbox, process_item
    from pipeline.workers.recovery import unforgotten

    _, items = _received(rt, tmp_path)
    with rt.sessions() as session:
        inbox_key = session.get(BatchItem, items[0]).inbox_key
    process_item(rt, items[0])
    rt.store.put(inbox_key, io.BytesIO(b"plaintext"))  # as if the worker died before deleting it
    with rt.sessions() as session:
        session.execute(update(BatchItem).where(BatchItem.id == items[0]).values(lease_until=_now() - dt.timedelta(seconds=1)))
        session.commit()
    assert unforgotten(rt, _now()) == ([items[0]], [])
    forget_inbox(rt, items[0])
    assert not rt.store.exists(inbox_key)
    assert unforgotten(rt, _now()) == ([], [])
