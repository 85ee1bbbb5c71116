"""The open records with a key that a feed worker has read, kept while no record has changed (pipeline/carehistory/chunkstore.py).

Each chunk must see a record closed or a key destroyed before its transaction: it read its ~8,000 patients and their
keys again, every chunk (~26 ms of PostgreSQL's CPU and ~25 ms of the worker's). PostgreSQL counts such changes in
one row (`record_changes`, bumped by triggers in the transaction that makes them: migration 0020). A chunk reads the
count first, in its transaction: while it is the count under which the kept records were read, none of them changed
since (a change commits with its bump); once it moves, every kept record is dropped and read again.

The count is read before the records it stands for: a change committed in between moves it past what was kept, so the
records are read again once more than needed, never once fewer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

# Patients kept at most (~300 bytes each): past it the kept ones are dropped and read again as chunks come.
KEPT_RECORDS = 200_000


class KnownRecords:
    """Open records with a key, INS -> (patient id, record key id), as read under one count of record changes."""

    def __init__(self, limit: int = KEPT_RECORDS) -> None:
        self.limit = limit
        self._changes: int | None = None
        self._records: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def known(self, changes: int, ins_values: Iterable[str]) -> tuple[dict[str, tuple[str, str]], list[str]]:
        """Those of `ins_values` kept, and the others (to read), given the count of changes just read."""
        with self._lock:
            if self._changes is not None and changes < self._changes:
                return {}, list(ins_values)  # a transaction older than another thread's: it reads them all
            if changes != self._changes:
                self._records, self._changes = {}, changes
            records = self._records
            found: dict[str, tuple[str, str]] = {}
            rest: list[str] = []
            for ins in ins_values:
                record = records.get(ins)
                if record is None:
                    rest.append(ins)
                else:
                    found[ins] = record
            return found, rest

    def read(self, changes: int, records: dict[str, tuple[str, str]]) -> None:
        """These open records with a key were read after the count `changes` was."""
        with self._lock:
            if changes != self._changes:
                return  # another thread saw the count move since: these may be older than its kept ones
            if len(self._records) + len(records) > self.limit:
                self._records = {}
            self._records.update(records)
