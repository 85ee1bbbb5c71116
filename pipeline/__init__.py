"""DMP ingestion pipeline, in layers; a module imports its own layer and those below, never one above.

- entry: `cli/` (the `dmp` command), `samples/` (synthetic samples for `dmp samples` and `dmp demo`);
- adapters: `ingest/` (intake of batches and feeds), `workers/` (dramatiq broker, actors, recovery);
- features: `documents/`, `carehistory/`, `access/`, `notify/`, `retention.py`, `sources.py`, `status.py`;
- `runtime.py`: the process's handles (index, store, keys) built once from Settings;
- `index/`: models, queries, record keys, migrations;
- `core/`: settings, storage, keys and encryption, identity, reason codes, clock.
"""

__version__ = "0.1.0"
