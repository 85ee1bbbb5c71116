"""ITI-65 Provide Document Bundle taken in by the same intake as /v1/ingest: inbox, item rows, one message per document.

The Bundle (already whole in memory, bounded by the route) is read and checked by
`pipeline.sharing.provide.read_submission`; its DocumentReferences become the rows of a manifest and the
manifest and documents one zip, taken in as an uploaded zip is (one inbox object, one PUT), so the batch
is recorded, sent, validated, classified, sealed and indexed like any other. A SubmissionSet whose unique
id this source already sent is not taken in again: its first batch is answered (`replayed`).

A DocumentReference that replaces another (relatesTo `replaces`) is taken in under the replaced document's
`source_document_id` with `version_action` = `replace`: a new version, as a manifest row asking for it. The
replaced document must be this source's own: another source's and a missing one are the same refusal
(`replaced_document_not_found`, nothing recorded).

A DocumentReference of status `entered-in-error` or `superseded` (no relatesTo, no bytes) changes the status of
this source's document its masterIdentifier names: `withdraw` and `deprecate` (pipeline/documents/versions.py),
with their audit entries and the patient's notice. Every target is checked before anything is recorded (another
source's, a missing one, and for a deprecation a withdrawn one: `replaced_document_not_found`); the changes are
applied once the Bundle's documents are taken in. A replayed SubmissionSet changes nothing again; a Bundle of
status changes only records no batch and is answered the same when sent again (both changes are idempotent).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pipeline.documents.versions import deprecate, withdraw
from pipeline.index import repo
from pipeline.index.base import new_id
from pipeline.index.models import BatchItem, Document, DocumentSharing, SubmissionSet
from pipeline.ingest.manifest import MANIFEST_COLUMNS, MANIFEST_NAME
from pipeline.ingest.uploads import receive_zip
from pipeline.runtime import Runtime
from pipeline.sharing.metadata import SHARING_COLUMNS
from pipeline.sharing.provide import Replaced, StatusChange, Submission, SubmissionRefused, read_submission

COLUMNS = (*MANIFEST_COLUMNS, "version_action", *SHARING_COLUMNS)


@dataclass(frozen=True)
class ProvidedItem:
    """What became of one DocumentReference: its document id (as it will be indexed), state and reason."""

    document_id: str
    state: str
    reason: str | None


@dataclass(frozen=True)
class Provided:
    """The answer to an ITI-65 submission: the SubmissionSet's id, the batch, each document's item in Bundle order."""

    submission: Submission
    submission_set_id: str | None  # None: a Bundle of status changes only (no batch)
    batch_id: str | None
    items: list[ProvidedItem]
    replayed: bool
    changed: dict[int, str] = field(default_factory=dict)  # a status change's entry -> the document version it changed


def manifest_of(submission: Submission) -> bytes:
    """The manifest.csv the submission's DocumentReferences make (README's columns plus the sharing ones)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for document in submission.documents:
        writer.writerow([document.row.get(column, "") for column in COLUMNS])
    return out.getvalue().encode("utf-8")


def archive_of(submission: Submission) -> bytes:
    """The submission as a zip batch (entries stored, not compressed): one inbox object for all its documents,
    read back by the workers entry by entry, exactly as an uploaded zip (pipeline/ingest/uploads.py `receive_zip`)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST_NAME, manifest_of(submission))
        for document in submission.documents:
            archive.writestr(document.row["file"], document.content)
    return out.getvalue()


def _known(session: Session, source: str, unique_id: str) -> SubmissionSet | None:
    return session.scalars(select(SubmissionSet).where(SubmissionSet.source == source, SubmissionSet.unique_id == unique_id)).first()


def _recorded(session: Session, source: str, unique_id: str, batch_id: str | None, changes: dict[int, str]) -> tuple[SubmissionSet, bool]:
    """The SubmissionSet row naming `batch_id` (None: status changes only) and the `changes` applied, and True; or
    the row a concurrent sending recorded first (the unique id decides), and False. INSERT … ON CONFLICT DO
    NOTHING RETURNING: the usual case is one statement, not two."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    row = {"id": new_id(), "source": source, "unique_id": unique_id, "batch_id": batch_id, "changes": _changes_json(changes)}
    inserted = session.scalars(dialect.insert(SubmissionSet).values(**row).on_conflict_do_nothing().returning(SubmissionSet.id)).first()
    session.commit()
    if inserted is not None:
        return SubmissionSet(**row), True
    known = _known(session, source, unique_id)
    assert known is not None
    return known, False


def _changes_json(changes: dict[int, str] | None) -> str | None:
    return json.dumps({str(entry): version for entry, version in changes.items()}) if changes else None


def _replayed_changes(rt: Runtime, known: SubmissionSet, source: str, submission: Submission) -> dict[int, str]:
    """A replay's answer for its status changes, changing nothing: the versions the first sending changed, as
    recorded; for a submission recorded before its changes were (migration 0017), each target's latest version."""
    if known.changes:
        return {int(entry): version for entry, version in json.loads(known.changes).items()}
    if not submission.changes:
        return {}
    with rt.sessions() as session:
        latest = {}
        for change in submission.changes:
            target = _replaced_id(session, source, Replaced(unique_id=change.unique_id))
            document = repo.find_document(session, source, target) if target is not None else None
            if document is not None:
                latest[change.entry] = document.id
    return latest


def _items(rt: Runtime, submission: Submission, batch_id: str, session: Session | None = None) -> list[ProvidedItem]:
    if session is None:
        with rt.sessions() as own:
            return _items(rt, submission, batch_id, own)
    rows = session.execute(
        select(BatchItem.row_number, BatchItem.document_id, BatchItem.state, BatchItem.reason).where(BatchItem.batch_id == batch_id)
    ).all()
    by_row = {row.row_number: ProvidedItem(row.document_id, str(row.state), row.reason) for row in rows}
    return [by_row[number] for number in range(1, len(submission.documents) + 1)]


def _replaced_id(session: Session, source: str, target: Replaced) -> str | None:
    """The source_document_id of this source's document `target` names (by server id, or by unique id), or None."""
    query = select(Document.source_document_id).where(Document.source == source)
    if target.document_id is not None:
        query = query.where(Document.id == target.document_id)
    else:
        by_unique_id = select(DocumentSharing.document_id).where(DocumentSharing.unique_id == target.unique_id)
        query = query.where(or_(Document.source_document_id == target.unique_id, Document.id.in_(by_unique_id)))
    return session.scalars(query.limit(1)).first()


def with_replacements(session: Session, submission: Submission, source: str) -> Submission:
    """The submission with each replacement under its target's source_document_id; SubmissionRefused
    `replaced_document_not_found` when a target is not this source's document."""
    documents = []
    for document in submission.documents:
        if document.replaces is not None:
            source_document_id = _replaced_id(session, source, document.replaces)
            if source_document_id is None:
                raise SubmissionRefused("replaced_document_not_found")
            document = replace(document, row={**document.row, "source_document_id": source_document_id})
        documents.append(document)
    return replace(submission, documents=documents)


def change_targets(session: Session, submission: Submission, source: str) -> list[tuple[StatusChange, str]]:
    """Each status change with its target's source_document_id; SubmissionRefused `replaced_document_not_found`
    when the target is not this source's document, or is withdrawn and asked to be deprecated."""
    targets = []
    for change in submission.changes:
        source_document_id = _replaced_id(session, source, Replaced(unique_id=change.unique_id))
        latest = repo.find_document(session, source, source_document_id) if source_document_id is not None else None
        if source_document_id is None or latest is None or (change.action == "deprecate" and not latest.live):
            raise SubmissionRefused("replaced_document_not_found")
        targets.append((change, source_document_id))
    return targets


def apply_changes(rt: Runtime, source: str, targets: list[tuple[StatusChange, str]]) -> dict[int, str]:
    """The status changes applied, in Bundle order: each entry's changed version (the latest one)."""
    changed: dict[int, str] = {}
    for change, source_document_id in targets:
        if change.action == "withdraw":
            withdrawn = withdraw(rt, source, source_document_id)
            if withdrawn:
                changed[change.entry] = withdrawn[-1]
        else:
            deprecated = deprecate(rt, source, source_document_id)
            if deprecated is not None:
                changed[change.entry] = deprecated.id
    return changed


def provide(rt: Runtime, data: bytes, source: str, send: Callable[[str], None]) -> Provided:
    """Take in one ITI-65 Bundle from `source` (checked by the caller for its scope); `send` each item id.

    Raises SubmissionRefused (nothing recorded) or what `receive_batch` raises.
    """
    submission = read_submission(data)
    with rt.sessions() as session:
        known = _known(session, source, submission.unique_id)
        if known is None and any(document.replaces for document in submission.documents):
            submission = with_replacements(session, submission, source)
        targets = change_targets(session, submission, source) if known is None else []
    if known is not None:
        changed = _replayed_changes(rt, known, source, submission)
        items = _items(rt, submission, known.batch_id) if known.batch_id is not None else []
        set_id = known.id if known.batch_id is not None else None
        return Provided(submission, set_id, known.batch_id, items, replayed=True, changed=changed)
    # Taken in, changed, then recorded: a failure before the record leaves the submission unrecorded, and sending
    # it again takes in the same batch (the same manifest) and applies the changes again (both are idempotent);
    # recorded first, a failure would leave it answered as a replay but never applied.
    batch_id = receive_zip(rt, io.BytesIO(archive_of(submission)), source, send).batch_id if submission.documents else None
    changed = apply_changes(rt, source, targets)
    with rt.sessions() as session:
        known, inserted = _recorded(session, source, submission.unique_id, batch_id, changed)
        items = _items(rt, submission, known.batch_id, session) if known.batch_id is not None else []
    if not inserted:  # sent concurrently twice: answered as the sending recorded first
        changed = _replayed_changes(rt, known, source, submission)
    set_id = known.id if known.batch_id is not None else None
    return Provided(submission, set_id, known.batch_id, items, replayed=not inserted, changed=changed)
