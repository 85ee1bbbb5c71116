"""Retention: what the store and the index must stop keeping.

So far: rejected documents' quarantine copies past their `quarantine_until` date. The care
history window and closed records arrive with the insurer-feed issue.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select

from pipeline.index.models import BatchItem
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)


def purge_quarantine(rt: Runtime, today: dt.date, batch_size: int = 500) -> list[str]:
    """Delete expired quarantine objects, in short transactions of `batch_size`; return the item ids."""
    purged: list[str] = []
    while True:
        with rt.sessions() as session:
            items = session.scalars(
                select(BatchItem).where(BatchItem.quarantine_key.is_not(None), BatchItem.quarantine_until < today).limit(batch_size)
            ).all()
            if not items:
                return purged
            for item in items:
                # Object first: a crash between the two leaves a row pointing at nothing, never bytes without a row.
                rt.store.delete(item.quarantine_key or "")
                item.quarantine_key, item.quarantine_until = None, None
                item.quarantine_master_key_id, item.quarantine_wrapped_key = None, None
                purged.append(item.id)
                log.info("quarantine of item %s removed", item.id)
            session.commit()
