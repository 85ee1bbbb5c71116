"""`dmp notify failed`: the notifications that failed for good, and sending them again.

Shown: ids, channel, kind, attempts and the error code; never the address or the text. A retry
puts the message back `pending`, due now, with its attempts counted afresh: the next dispatch (a
worker's or API's sweeper, or `dmp notify run`) sends it, still once (its id is the channel's
idempotency key). A message whose address was refused (`address_rejected`…) fails again until the
person changes their address.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from pipeline.index.models import Notification
from pipeline.runtime import Runtime


def failed_notifications(rt: Runtime, limit: int = 1000) -> list[dict]:
    """Notifications in `failed`, newest first."""
    query = select(Notification).where(Notification.status == "failed").order_by(Notification.created_at.desc()).limit(limit)
    with rt.sessions() as session:
        rows = session.scalars(query).all()
    return [
        {
            "notification": n.id,
            "kind": n.kind,
            "channel": n.channel,
            "attempts": n.attempts,
            "last_error": n.last_error,
            "created_at": n.created_at.isoformat() if n.created_at else None,
        }
        for n in rows
    ]


def retry_failed(rt: Runtime, notification_ids: list[str] | None = None, now: dt.datetime | None = None) -> list[str]:
    """Put the failed notifications (all, or those of `notification_ids`) back in line; returns their ids."""
    now = now or dt.datetime.now(dt.UTC)
    chosen = Notification.status == "failed"
    if notification_ids is not None:
        chosen = chosen & Notification.id.in_(notification_ids)
    with rt.sessions() as session:
        ids = list(session.scalars(select(Notification.id).where(chosen)))
        if ids:
            again = {"status": "pending", "attempts": 0, "next_attempt_at": now, "lease_until": None}
            session.execute(update(Notification).where(Notification.id.in_(ids), Notification.status == "failed").values(**again))
            session.commit()
    return ids
