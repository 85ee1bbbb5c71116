"""Which patients' "new reimbursement data" row of a feed a worker has seen committed (pipeline/carehistory/chunkstore.py).

A feed queues one outbox row per patient (unique on patient, kind and feed): every chunk of it tried to insert a row for
each of its ~8,000 patients, and after a worker's first chunks nearly all of them conflicted: ~40 ms of the server's CPU
per chunk spent finding that out, ~4 µs per line. A row once committed stays until the dispatcher has composed it and
retention removes it, days later (DMP_NOTIFY_KEEP_DAYS), or its record is destroyed (no line goes into a closed record):
a patient seen here for a few minutes needs no insert, which would have done nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

# How long a patient seen committed is trusted: a feed's chunks come minutes apart at most, and a row pruned meanwhile
# (composed and past DMP_NOTIFY_KEEP_DAYS) costs at most one notification fewer, which a shorter window only narrows.
SEEN_SECONDS = 300.0


class FeedNotices:
    """Per feed, the patients whose outbox row this process saw committed, for `seconds` from the feed's first."""

    def __init__(self, seconds: float = SEEN_SECONDS, feeds: int = 4) -> None:
        self.seconds = seconds
        self.feeds = feeds  # the latest ones kept: a worker stores chunks of one or two feeds at a time
        self._seen: dict[str, tuple[float, set[str]]] = {}
        self._lock = threading.Lock()

    def unseen(self, feed_id: str, patient_ids: Iterable[str]) -> set[str]:
        """Those of `patient_ids` whose row this process has not seen committed (lately) for the feed."""
        with self._lock:
            held = self._seen.get(feed_id)
            if held is None or held[0] <= time.monotonic():
                return set(patient_ids)
            return set(patient_ids) - held[1]

    def committed(self, feed_id: str, patient_ids: Iterable[str]) -> None:
        """The feed's rows of these patients are committed (inserted now, or found there)."""
        with self._lock:
            held = self._seen.pop(feed_id, None)
            if held is None or held[0] <= time.monotonic():
                held = (time.monotonic() + self.seconds, set())
            held[1].update(patient_ids)
            self._seen[feed_id] = held  # last: the latest feed
            while len(self._seen) > self.feeds:
                del self._seen[next(iter(self._seen))]
