"""The portal's sessions in the index: rows by keyed hash of the session id, sealed content, expiry.

What a session holds and how it is sealed is the portal's business (api/portal/sessions.py); this module
only keeps the rows, so every API process sees the same sessions and a sign-out anywhere ends one everywhere.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from pipeline.index.models import PortalSessionRow


def add(session: Session, id_hash: str, content: bytes, now: dt.datetime, expires: dt.datetime) -> None:
    """Keep a new session; rows already expired are purged on the way (the table's only cleanup needed)."""
    session.execute(delete(PortalSessionRow).where(PortalSessionRow.expires_at <= now))
    session.add(PortalSessionRow(id_hash=id_hash, content_sealed=content, created_at=now, seen_at=now, expires_at=expires))
    session.commit()


def find(session: Session, id_hash: str, now: dt.datetime) -> PortalSessionRow | None:
    """The live session of this hash; None when there is none or it expired."""
    return session.scalars(select(PortalSessionRow).where(PortalSessionRow.id_hash == id_hash, PortalSessionRow.expires_at > now)).first()


def touch(session: Session, id_hash: str, now: dt.datetime, expires: dt.datetime, content: bytes | None = None) -> None:
    """Record a visit (and the new content, when it changed)."""
    values: dict[str, object] = {"seen_at": now, "expires_at": expires}
    if content is not None:
        values["content_sealed"] = content
    session.execute(update(PortalSessionRow).where(PortalSessionRow.id_hash == id_hash).values(**values))
    session.commit()


def remove(session: Session, id_hash: str) -> None:
    """End a session (sign-out, or a new one replacing it at sign-in)."""
    session.execute(delete(PortalSessionRow).where(PortalSessionRow.id_hash == id_hash))
    session.commit()


def purge_expired(session: Session, now: dt.datetime) -> int:
    """Delete the expired sessions; how many went."""
    count = session.execute(delete(PortalSessionRow).where(PortalSessionRow.expires_at <= now)).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(count or 0)
