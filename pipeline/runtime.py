"""The process-wide handles built once from Settings: database, object store, keys."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pipeline.carehistory.knownrecords import KnownRecords
from pipeline.carehistory.notices import FeedNotices
from pipeline.core.home import prepare_home
from pipeline.core.inbox import Inbox
from pipeline.core.keys import FileKeyProvider, KeyProvider, audit_key, keyed_hash, load_key_file
from pipeline.core.sealedfields import KeyCache, LineSealer
from pipeline.core.settings import Settings
from pipeline.core.storage import ObjectStore, open_store
from pipeline.index.db import make_engine, session_factory, upgrade
from pipeline.index.recordkeys import RecordKeys


def key_provider(settings: Settings) -> KeyProvider:
    """The master keys: AWS KMS when DMP_KMS_KEY_ID is set, else the key file."""
    if settings.kms_key_id:
        from pipeline.core.kms import AwsKmsProvider

        return AwsKmsProvider(
            settings.kms_key_id, settings.kms_endpoint, settings.s3_region, settings.s3_access_key, settings.s3_secret_key
        )
    return FileKeyProvider(settings.resolved_key_file())


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    keys: KeyProvider
    hmac_secret: bytes
    record_keys: RecordKeys
    # Called after an urgent notification is queued; a notification Sweeper in this process replaces it.
    wake_notifier: Callable[[], None] = field(default=lambda: None, repr=False)
    inbox: Inbox = field(init=False, repr=False)
    # Unwrapped batch keys (the titles of items waiting in the queue), by batch id.
    batch_keys: KeyCache[bytes] = field(init=False, repr=False)
    # Care-line sealers (pipeline/carehistory/chunkstore.py), by record key id: a feed's chunks share most patients.
    line_sealers: KeyCache[LineSealer] = field(init=False, repr=False)
    # The feeds' notification rows this process saw committed (pipeline/carehistory/notices.py).
    feed_notices: FeedNotices = field(init=False, repr=False)
    # The open records with a key the feed's chunks read, kept until a record changes (pipeline/carehistory/knownrecords.py).
    known_records: KnownRecords = field(init=False, repr=False)
    # Sessions for reads that write nothing (see `reads`).
    reads: sessionmaker[Session] = field(init=False, repr=False)
    # Threads reading a document's bytes while its access is audited (pipeline/documents/stored.py, ReadAhead): as many
    # as the store's connections; none is started before the first read ahead.
    read_ahead: ThreadPoolExecutor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.inbox = Inbox(self.store)
        self.batch_keys = KeyCache()
        self.line_sealers = KeyCache()
        self.feed_notices = FeedNotices()
        self.known_records = KnownRecords()
        # Autocommit: each statement runs alone, with no BEGIN before it nor ROLLBACK when the session ends (two
        # round trips of a short read's four), and the driver keeps its prepared statements (a ROLLBACK drops
        # them). Under READ COMMITTED every statement sees its own snapshot anyway: a transaction adds no
        # consistency to a series of reads. For reads only: a write through these sessions commits at once.
        self.reads = session_factory(self.engine.execution_options(isolation_level="AUTOCOMMIT"))
        self.read_ahead = ThreadPoolExecutor(self.settings.s3_max_connections, thread_name_prefix="dmp-read-ahead")

    @classmethod
    def from_settings(cls, settings: Settings, *, prepare: bool = False) -> Runtime:
        """Connect to the index and the store and load keys.

        With `prepare`, also create what a first embedded run needs: the home folder (0700), the
        key file (0600), the schema and the bucket or folder. Workers in distributed mode only connect.
        """
        if prepare:
            prepare_home(settings.home)  # it holds the index (patient identifiers) and the key file: owner only
        engine = make_engine(settings.resolved_database_url(), settings.db_pool_size)
        store = open_store(settings)
        # The key file always holds the keyed-hash secret, also when a KMS holds the master keys.
        hmac_secret = load_key_file(settings.resolved_key_file(), create=prepare).hmac_secret
        keys = key_provider(settings)
        if prepare:
            upgrade(engine, keys=keys)
            store.ensure_ready()
        sessions = session_factory(engine)
        return cls(settings, engine, sessions, store, keys, hmac_secret, RecordKeys(sessions, keys))

    @property
    def audit_key(self) -> bytes:
        return audit_key(self.hmac_secret)

    def hasher(self) -> hmac.HMAC:
        return keyed_hash(self.hmac_secret)

    def close(self) -> None:
        self.read_ahead.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
