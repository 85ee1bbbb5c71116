"""The embedded data folder (DMP_HOME): owner-only, like the key file it holds.

It holds the index (patients' INS, document titles, care history), the object store (sealed
documents, and plaintext waiting in the inbox), the key file and the notification log: nobody but
its owner may list or read it. A home made by an older version, or by hand, with group or world
permissions is tightened, with a warning, the first time a command prepares it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)
_OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


class HomeError(Exception):
    """DMP_HOME cannot serve as the data folder (a file, no permission, a read-only file system)."""


def _tighten(path: Path) -> bool:
    """Take group and others' permissions away from `path` (not following a link); True if it had some."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode) or not mode & _OPEN_TO_OTHERS:
        return False
    path.chmod(stat.S_IMODE(mode) & ~_OPEN_TO_OTHERS)
    return True


def prepare_home(home: Path) -> None:
    """Create `home` with mode 0700, or make an existing one owner-only along with everything directly
    in it (the index and its journals, the objects folder, logs), saying so; HomeError if it cannot be used.

    Only the top level is tightened: a folder that is 0700 already closes everything below it."""
    if home.exists() and not home.is_dir():
        raise HomeError(f"DMP_HOME ({home}) cannot be used as the data folder: it is a file, not a folder")
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        opened = [path.name for path in (home, *sorted(home.iterdir())) if _tighten(path)]
    except OSError as exc:
        raise HomeError(f"DMP_HOME ({home}) cannot be used as the data folder: {exc.strerror or exc}") from None
    if opened:
        log.warning("DMP_HOME %s held patient data readable by group or others (%s): made owner-only", home, ", ".join(opened[:10]))


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (a SQLite index before SQLite opens it, so
    that the database and the journals SQLite gives the same mode are owner-only from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
