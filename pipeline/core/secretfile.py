"""Files holding secrets (the key file, the API signing key): written whole, owner-only, atomically."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """Write `data` aside with mode 0600, then put it in place in one step.

    replace=False never overwrites: os.link fails if the name exists (FileExistsError), so
    concurrent first runs agree on one file and nobody reads a half-written one.
    replace=True swaps the file atomically: readers see the old content or the new, never half.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # a folder made for a secret is the owner's only
    staging = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(staging, path)
        else:
            os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def is_private(path: Path) -> bool:
    """True when neither group nor others have any permission on `path` (FileNotFoundError if missing)."""
    return not path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)
