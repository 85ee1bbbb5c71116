"""The process-wide handles built once from Settings: database, object store, keyring."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pipeline.index.db import make_engine, session_factory, upgrade
from pipeline.keys import Keyring, load_keyring
from pipeline.settings import Settings
from pipeline.storage import ObjectStore, open_store


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    keyring: Keyring

    @classmethod
    def from_settings(cls, settings: Settings, *, prepare: bool = False) -> Runtime:
        """Connect to the index and the store and load keys.

        With `prepare`, also create what a first embedded run needs: the key file (0600), the
        schema and the bucket or folder. Workers in distributed mode only connect.
        """
        if prepare:
            # The embedded home holds the index (patient identifiers) and the key file: owner only.
            settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = make_engine(settings.resolved_database_url())
        store = open_store(settings)
        keyring = load_keyring(settings.resolved_key_file(), create=prepare)
        if prepare:
            upgrade(engine)
            store.ensure_ready()
        return cls(settings, engine, session_factory(engine), store, keyring)

    def close(self) -> None:
        self.engine.dispose()
