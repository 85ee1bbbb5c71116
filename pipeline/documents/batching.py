"""A micro-batch: the stages of process.py run over the items of one message, the SQL batched.

The intake sends the small documents of a batch in packs (one inbox object and one message per
pack, ids only); a worker takes the message's items through the same stages as one item, in the
same order, with per message rather than per document:

- one transaction claiming every item (one locking SELECT, one batched UPDATE);
- one GET for the pack (Inbox.holding), never one per document;
- one exchange with the sandbox's confined child for the documents' inspection (validate_all: each
  document still has its own limits and verdict, those after a failure go to a fresh child);
- one transaction for the patients, the existing documents and the record keys;
- one PUT per document (its sealed object: the one request a document cannot share);
- one transaction for every outcome: document rows, items indexed or rejected, the patients'
  notifications, the deposits' audit entries (one append per chain, pipeline/access/audit.py);
- one request removing the inbox copies (`delete_many`: a plain DELETE for one object, a DeleteObjects for
  several), one UPDATE clearing the items' leases.

A bad document is rejected alone, in the shared transaction. A document that fails otherwise
(a race on its source id, an unexpected error) is released alone: its neighbours still commit,
then the failure leaves for the message's retry, which finds them final. An outage interrupts
the whole message: each claim is released and the next try takes it back (`resuming`).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.access.audit import AuditEvent, append_many
from pipeline.core import metrics
from pipeline.core.clock import paris_date
from pipeline.core.inbox import PACK_PREFIX
from pipeline.core.logs import bound
from pipeline.core.metrics import Stage, timed
from pipeline.core.outage import Interrupted, failure_code, outage_of
from pipeline.core.reasons import REASONS, Rejected, Transient
from pipeline.core.storage import ObjectNotFound
from pipeline.documents import versions
from pipeline.documents.inspect import Content
from pipeline.documents.process import (
    Prepared,
    Spooled,
    classify_content,
    deposit_event,
    forget_inbox,
    item_fields,
    quarantine,
    seal_document,
    spool,
    validate_all,
)
from pipeline.documents.validate import Metadata, check_metadata
from pipeline.index import repo
from pipeline.index.base import new_id
from pipeline.index.db import transact
from pipeline.index.models import Document, Patient
from pipeline.index.recordkeys import OpenRecordKey
from pipeline.index.repo import RowValues
from pipeline.index.states import AttemptOutcome, RecordStatus
from pipeline.runtime import Runtime
from pipeline.sharing.metadata import Declared, store_sharing

log = logging.getLogger(__name__)


@dataclass
class _Item:
    """One claimed item on its way through the stages."""

    claim: repo.Claim
    source: str
    meta: Metadata | None = None  # set once spooled, for the validation
    prepared: Prepared | None = None
    spooled: Spooled | None = None
    document: Document | None = None  # a new document, sealed
    existing_id: str | None = None  # the same document, indexed before
    replaced: versions.Replacement | None = None  # the version this new document supersedes
    patient_id: str | None = None
    rejection: tuple[str, str] | None = None  # reason, message
    uploaded: list[str] = field(default_factory=list)  # objects this attempt wrote
    quarantine: repo.Quarantine | None = None

    @property
    def id(self) -> str:
        return self.claim.item.id


@dataclass
class _Run:
    """What a message's attempt came to, item by item."""

    outcomes: dict[str, AttemptOutcome] = field(default_factory=dict)
    failures: list[tuple[str, Exception]] = field(default_factory=list)
    open: dict[str, repo.Claim] = field(default_factory=dict)  # claims held without a verdict yet


def process_items(
    rt: Runtime, item_ids: Collection[str], today: dt.date | None = None, resuming: Mapping[str, int] | None = None
) -> dict[str, AttemptOutcome]:
    """Run one attempt on each item of a message; returns each one's state afterwards. Idempotent.

    `resuming` gives, by item, the attempt an outage interrupted (pipeline/core/outage.py): it is
    taken back without counting a crash. An outage releases every claim still held and raises
    Interrupted with each item's attempt. Another failure of one item releases that item only; it
    is raised once the others are committed.
    """
    with rt.sessions() as session:
        answers = repo.claim_items(session, item_ids, dt.timedelta(seconds=rt.settings.claim_lease_seconds), resuming)
        claimed = [answer.item.batch_id for answer in answers.values() if isinstance(answer, repo.Claim)]
        sources = repo.batch_sources(session, set(claimed)) if claimed else {}
    run = _Run()
    for item_id, answer in answers.items():
        if answer is repo.Refusal.FINAL:
            forget_inbox(rt, item_id)  # a predecessor may have committed and died before this
            run.outcomes[item_id] = AttemptOutcome.FINAL
        elif answer is repo.Refusal.BUSY:
            log.info("item %s is being processed by a live attempt: this message was a duplicate", item_id)
            run.outcomes[item_id] = AttemptOutcome.BUSY
        else:
            run.open[item_id] = answer
    if run.open:
        try:
            _attempt(rt, run, sources, today or paris_date())
        except Exception as failure:
            service = outage_of(failure)
            crashed = service is None and not isinstance(failure, Transient)
            _release(rt, list(run.open.values()), crashed)
            if service is None:
                raise
            raise Interrupted(service, failure_code(failure), {c.item.id: c.attempt for c in run.open.values()}) from None
    if run.failures:
        raise run.failures[0][1]
    return run.outcomes


def _release(rt: Runtime, claims: list[repo.Claim], crashed: bool) -> None:
    """Put failed attempts' items back to `queued` if the index answers; if not, the claims stay
    with this message, whose next try takes them back (`resuming`), or lapse for the recovery sweep."""
    try:
        with rt.sessions() as session:
            for claim in claims:
                repo.release_claim(session, claim.item.id, claim.attempt, crashed)
    except Exception as failure:
        if outage_of(failure) is None:
            raise


def _fail_alone(rt: Runtime, run: _Run, work: _Item, failure: Exception) -> None:
    """One item's failure that is neither a verdict nor an outage: it is released (a crash if
    unexpected), its object removed; the message's retry runs it again."""
    with bound(batch_id=work.claim.item.batch_id, item_id=work.id):
        log.warning("item %s failed: %s", work.id, failure_code(failure))
    leftovers = [*work.uploaded, *([work.quarantine.object_key] if work.quarantine else [])]
    if leftovers:
        rt.store.delete_many(leftovers)
    _release(rt, [work.claim], crashed=not isinstance(failure, Transient))
    run.open.pop(work.id, None)
    run.failures.append((work.id, failure))


def _attempt(rt: Runtime, run: _Run, sources: dict[str, str], today: dt.date) -> None:
    items = [_Item(claim, sources[claim.item.batch_id]) for claim in run.open.values()]
    stale = [i.claim.previous_pending_key for i in items if i.claim.previous_pending_key not in (None, i.claim.item.pending_object_key)]
    if stale:
        rt.store.delete_many([key for key in stale if key])
    packs = {i.claim.item.inbox_key for i in items if i.claim.item.inbox_key and i.claim.item.inbox_key.startswith(PACK_PREFIX)}
    with ExitStack() as spools, rt.inbox.holding(key for key in packs if key):
        for work in items:
            _alone(rt, run, work, lambda work: _spool(rt, run, work, today, spools))
        _validate(rt, run, [work for work in items if work.meta is not None and work.id in run.open])
        ready = [work for work in items if work.prepared is not None and work.id in run.open]
        records = _records(rt, ready)
        for work in ready:
            _alone(rt, run, work, lambda work: _seal(rt, work, records))
        for work in items:
            if work.rejection is not None and work.id in run.open and rt.settings.quarantine_days > 0:
                _alone(rt, run, work, lambda work: setattr(work, "quarantine", quarantine(rt, work.claim.item)))
    _index(rt, run, [work for work in items if work.id in run.open])


def _alone(rt: Runtime, run: _Run, work: _Item, stage: Callable[[_Item], object]) -> None:
    """Run one item's stage: a rejection is its verdict, an outage stops the whole message, any other
    failure is this item's alone (`_fail_alone`)."""
    if work.id not in run.open:
        return
    with bound(batch_id=work.claim.item.batch_id, item_id=work.id):
        try:
            stage(work)
        except Rejected as rejection:
            log.info("item %s rejected: %s", work.id, rejection.reason)
            work.rejection = (rejection.reason, rejection.message)
        except Exception as failure:
            if outage_of(failure) is not None:
                raise
            _fail_alone(rt, run, work, failure)


def _spool(rt: Runtime, run: _Run, work: _Item, today: dt.date, spools: ExitStack) -> None:
    """Metadata, then spool (raises Rejected); a missing inbox object sends this item back to wait."""
    item = work.claim.item
    if item.crashes >= rt.settings.max_attempts:
        log.warning("item %s set aside after %d crashed attempts", item.id, item.crashes)
        work.rejection = ("processing_crashed", REASONS["processing_crashed"])
        return
    meta = check_metadata(item_fields(item), today)
    try:
        work.spooled = spools.enter_context(spool(rt, item))
    except ObjectNotFound:
        # The intake died before uploading this file: re-ingesting the batch uploads and re-sends it.
        log.warning("item %s has no inbox object; re-ingest the batch to resume it", item.id)
        with rt.sessions() as session:
            repo.wait_for_intake(session, item.id, work.claim.attempt)
        run.open.pop(item.id)
        run.outcomes[item.id] = AttemptOutcome.QUEUED
        return
    if work.spooled.size == 0:
        raise Rejected("empty_file")
    work.meta = meta


def _validate(rt: Runtime, run: _Run, spooled: list[_Item]) -> None:
    """Validate the spooled items' documents in one exchange with the sandbox (`validate_all`), then
    classify each: a document's rejection is its own verdict, as one at a time."""
    documents = [(work.claim.item, work.meta, work.spooled) for work in spooled if work.meta is not None and work.spooled is not None]
    assert len(documents) == len(spooled)  # an item gets its metadata once spooled
    try:
        verdicts: Sequence[Content | Exception] = validate_all(rt, documents)
    except Exception as failure:  # noqa: BLE001 - no verdict for any of them: each fails alone (`_alone`)
        verdicts = [failure] * len(spooled)
    for work, verdict in zip(spooled, verdicts, strict=True):
        _alone(rt, run, work, functools.partial(_classify, rt, verdict))


def _classify(rt: Runtime, verdict: Content | Exception, work: _Item) -> None:
    if isinstance(verdict, Exception):
        raise verdict
    assert work.meta is not None  # only spooled items are validated
    work.prepared = classify_content(rt, work.claim.item, work.source, work.meta, verdict)


@dataclass(frozen=True)
class _Records:
    patients: dict[str, Patient]  # by INS
    existing: dict[tuple[str, str], Document]  # by (source, source document id): its latest version
    keys: dict[str, OpenRecordKey]  # by patient id


def _records(rt: Runtime, ready: list[_Item]) -> _Records:
    """The validated documents' patients (made if new), record keys (made if new) and the documents
    indexed before under the same source ids: one transaction."""
    if not ready:
        return _Records({}, {}, {})
    with rt.sessions() as session:
        prepared = [work.prepared for work in ready if work.prepared is not None]
        ins = sorted({p.meta.ins for p in prepared})
        patients = {p.ins: p for p in session.scalars(select(Patient).where(repo.among(session, Patient.ins, ins)))}
        missing = [value for value in ins if value not in patients]
        if missing:  # new patients: a concurrent worker may make the same one, the unique INS decides
            repo.insert_ignore(session, Patient, [{"id": new_id(), "ins": value, "status": RecordStatus.OPEN} for value in missing])
            patients |= {p.ins: p for p in session.scalars(select(Patient).where(repo.among(session, Patient.ins, missing)))}
        wanted = {(work.source, work.prepared.meta.source_document_id) for work in ready if work.prepared is not None}
        found = session.scalars(
            select(Document).where(
                repo.among(session, Document.source, {s for s, _ in wanted}),
                repo.among(session, Document.source_document_id, {d for _, d in wanted}),
            )
        )
        existing: dict[tuple[str, str], Document] = {}
        for d in found:  # every version of each: keep the latest
            here = (d.source, d.source_document_id)
            if here in wanted and (here not in existing or existing[here].version < d.version):
                existing[here] = d
        open_ids = {p.id for p in patients.values() if p.status == RecordStatus.OPEN}
        keys = rt.record_keys.open_for_patients(session, open_ids) if open_ids else {}
        session.commit()
    return _Records(patients, existing, keys)


def _seal(rt: Runtime, work: _Item, records: _Records) -> None:
    assert work.prepared is not None and work.spooled is not None  # only prepared items are sealed
    meta = work.prepared.meta
    patient = records.patients[meta.ins]
    if patient.status != RecordStatus.OPEN:
        raise Rejected("record_closed")
    work.patient_id = patient.id
    existing = records.existing.get((work.source, meta.source_document_id))
    # A new version when the source says so (pipeline/documents/versions.py); changed bytes otherwise are rejected.
    work.replaced = versions.replacement(existing, work.spooled.content_hmac, work.claim.item.version_action, patient.id)
    if existing is not None and work.replaced is None:
        # Same document re-sent (another batch, or a retry after commit): index it once.
        work.existing_id = existing.id
        return
    record = records.keys.get(patient.id) or rt.record_keys.for_patient(patient.id)
    work.uploaded.append(work.claim.item.pending_object_key or "")
    work.document = seal_document(rt, work.claim.item, work.source, patient.id, record, work.prepared, work.spooled, work.replaced)


def _write_outcomes(rt: Runtime, session: Session, items: list[_Item]) -> dict[str, AttemptOutcome]:
    """Every item's outcome in the caller's transaction: documents and items indexed, items rejected,
    notifications, deposits' audit entries. An item another attempt took over is left alone (SUPERSEDED)."""
    mine = repo.still_claimed(session, [work.claim for work in items])
    outcomes: dict[str, AttemptOutcome] = {}
    notices: list[RowValues] = []
    deposits: list[AuditEvent] = []
    sharing: list[Declared] = []
    indexed: dict[str, str] = {}
    rejected: dict[str, repo.Verdict] = {}
    # The new documents' rows first (one statement): the items' rows, the replaced versions and the sharing rows refer to them.
    repo.insert_documents(session, [work.document for work in items if _indexes(work, mine) and work.document is not None])
    for work in items:
        item = work.claim.item  # as claimed: what is read of it here (batch, sharing) does not change under the claim
        if work.id not in mine:
            outcomes[work.id] = AttemptOutcome.SUPERSEDED
        elif work.rejection is not None:
            rejected[work.id] = repo.Verdict(*work.rejection, work.quarantine)
            outcomes[work.id] = AttemptOutcome.REJECTED
        elif work.patient_id is not None and _indexes(work, mine):
            indexed[work.id] = work.document.id if work.document else work.existing_id or ""
            if (work.patient_id, item.batch_id) not in {(n["patient_id"], n["ref_id"]) for n in notices}:
                notices.append(repo.notification(work.patient_id, item.batch_id, work.source))
            if work.document is not None:
                if work.replaced is not None:
                    versions.link_replacement(session, work.replaced, work.document.id)
                assert work.prepared is not None  # a sealed document was prepared
                sharing.append((work.document.id, item.sharing, work.prepared.content.header))
                deposits.append(deposit_event(work.document))
            outcomes[work.id] = AttemptOutcome.INDEXED
    repo.mark_final(session, indexed, rejected)
    store_sharing(session, sharing)
    # In one order for every writer: two messages inserting the same patients' rows cannot deadlock.
    repo.queue_notifications(session, sorted(notices, key=lambda row: (row["patient_id"], row["ref_id"])))
    append_many(session, rt.audit_key, deposits)
    return outcomes


def _indexes(work: _Item, mine: Collection[str]) -> bool:
    """Whether this attempt indexes its item: still its own, no verdict against it, a document to point at."""
    return (
        work.id in mine
        and work.rejection is None
        and work.patient_id is not None
        and (work.document is not None or work.existing_id is not None)
    )


def _index(rt: Runtime, run: _Run, items: list[_Item]) -> None:
    """One transaction for every outcome; if it conflicts (a document indexed meanwhile under the same
    source id), each item in a transaction of its own, so that only the one that conflicts fails."""
    if not items:
        return
    try:
        with timed(Stage.INDEX):
            outcomes = transact(rt.sessions, lambda session: _write_outcomes(rt, session, items))
    except (IntegrityError, versions.VersionRace):
        # Another item indexed (or replaced) the same source document meanwhile; the retry finds and links it.
        if len(items) == 1:
            _fail_alone(rt, run, items[0], Transient(f"document_race item={items[0].id}"))
            return
        for work in items:
            _index(rt, run, [work])
        return
    _settle(rt, run, items, outcomes)


def _settle(rt: Runtime, run: _Run, items: list[_Item], outcomes: dict[str, AttemptOutcome]) -> None:
    """After the commit: the superseded attempts' objects go, the final items' inbox copies too (one
    request, `delete_many`; a shared zip or pack once no item waits on it), then their leases (one UPDATE)."""
    final = [work for work in items if outcomes[work.id] in (AttemptOutcome.INDEXED, AttemptOutcome.REJECTED)]
    leftovers = [key for work in items if outcomes[work.id] == AttemptOutcome.SUPERSEDED for key in work.uploaded]
    leftovers += [work.quarantine.object_key for work in items if outcomes[work.id] == AttemptOutcome.SUPERSEDED and work.quarantine]
    keys = {work.claim.item.inbox_key for work in final if work.claim.item.inbox_key}
    shared = {key for work in final if work.claim.item.inbox_member is not None and (key := work.claim.item.inbox_key)}
    with rt.sessions() as session:
        waited_on = repo.still_waited_on(session, {work.claim.item.batch_id for work in final}, shared) if shared else set()
        gone = sorted(key for key in keys if key and key not in waited_on)
        if gone or leftovers:
            rt.store.delete_many([*gone, *leftovers])
        repo.inbox_forgotten(session, [work.id for work in final])
    for work in items:
        outcome = outcomes[work.id]
        run.open.pop(work.id, None)
        run.outcomes[work.id] = outcome
        with bound(batch_id=work.claim.item.batch_id, item_id=work.id):
            log.info("item %s: %s", work.id, outcome)
        kind = metrics.source_kind(work.source)
        if outcome == AttemptOutcome.INDEXED:
            metrics.documents_indexed.labels(kind).inc()
        elif outcome == AttemptOutcome.REJECTED and work.rejection is not None:
            metrics.documents_rejected.labels(kind, work.rejection[0]).inc()
