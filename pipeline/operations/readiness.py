"""Readiness (`GET /v1/ready`): can this process serve, that is, do the database, the broker, the
object store and the key provider answer?

Each check is one cheap round trip, the four run concurrently and each gets CHECK_SECONDS: a
dependency that hangs makes the answer `timeout`, never a hung probe. A failure is named by the
dependency and a fixed word, never by the driver's text (which can quote a URL or a password).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.runtime import Runtime

log = logging.getLogger(__name__)
CHECK_SECONDS = 2.0


class Dependency(StrEnum):
    DATABASE = "database"
    BROKER = "broker"
    STORE = "store"
    KEYS = "keys"


class CheckResult(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Readiness:
    checks: dict[Dependency, CheckResult]

    @property
    def ready(self) -> bool:
        return all(result is CheckResult.OK for result in self.checks.values())

    @property
    def failing(self) -> list[Dependency]:
        return [dependency for dependency, result in self.checks.items() if result is not CheckResult.OK]


class ReadinessProbe:
    """The checks of one process, built once (it keeps its own small Redis client and thread pool)."""

    def __init__(self, rt: Runtime, timeout: float = CHECK_SECONDS) -> None:
        self.rt, self.timeout = rt, timeout
        self._redis = None
        if not rt.settings.embedded_broker:
            import redis

            # Its own client with short timeouts: the broker's client waits minutes on purpose.
            self._redis = redis.Redis.from_url(
                rt.settings.broker_url, socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False
            )
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dmp-ready")
        self._checks: dict[Dependency, Callable[[], None]] = {
            Dependency.DATABASE: self._database,
            Dependency.BROKER: self._broker,
            Dependency.STORE: self._store,
            Dependency.KEYS: self._keys,
        }

    def check(self) -> Readiness:
        """Run the four checks concurrently, each bounded by the probe's timeout."""
        futures = {dependency: self._pool.submit(run) for dependency, run in self._checks.items()}
        concurrent.futures.wait(futures.values(), timeout=self.timeout)
        results = {}
        for dependency, future in futures.items():
            if not future.done():
                results[dependency] = CheckResult.TIMEOUT
            elif future.exception() is not None:
                log.warning("readiness: %s unavailable (%s)", dependency, type(future.exception()).__name__)
                results[dependency] = CheckResult.UNAVAILABLE
            else:
                results[dependency] = CheckResult.OK
        return Readiness(results)

    def _database(self) -> None:
        from sqlalchemy import text

        with self.rt.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def _broker(self) -> None:
        if self._redis is not None:
            self._redis.ping()

    def _store(self) -> None:
        from pipeline.core.storage import FileStore, S3Store

        store = self.rt.store
        if isinstance(store, S3Store):
            store.client.head_bucket(Bucket=store.bucket)
        elif isinstance(store, FileStore) and not store.root.is_dir():
            raise FileNotFoundError("store root")

    def _keys(self) -> None:
        from pipeline.core.keys import FileKeyProvider, new_key, read_key_file

        provider = self.rt.keys
        if isinstance(provider, FileKeyProvider):
            read_key_file(provider.path)
        else:  # a KMS: one wrap of a throwaway key is what every new record needs
            provider.wrap(new_key(), "readiness")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._redis is not None:
            self._redis.close()
