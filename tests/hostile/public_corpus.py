"""A public corpus of real-world PDFs: the test files that pinned PyPI source distributions ship.

Nothing third-party is committed. `public_corpus.csv` lists each PDF by the sdist it comes from, its
path inside, its sha256 and the verdict expected (`indexed`, or `rejected` with its reason, and a
note saying why). On first use the sdists are downloaded with pip (pinned by version and sha256,
checked by pip before anything is built) into a cache outside the repository,
`~/.cache/dmp-test-corpus` (or `$DMP_TEST_CORPUS_CACHE`), and the listed files extracted there
under their sha256. Later runs only check the cache.
"""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = Path(__file__).with_name("public_corpus.csv")
COLUMNS = ("archive", "member", "sha256", "expected_state", "expected_reason", "note")


@dataclass(frozen=True)
class Source:
    requirement: str  # what pip downloads
    sha256: str  # of the sdist, as PyPI publishes it


SOURCES = {
    "pypdf-7.1.1.tar.gz": Source("pypdf==7.1.1", "2eff4e2fc5fb22a6d6711e6f1166cdc9ab5765d90cd0d77dfea3f4aa91a27b1d"),
    "pikepdf-10.18.0.tar.gz": Source("pikepdf==10.18.0", "cb555ebff93482e8a6eb55881488b469bbb2b5675161c1b93a0510a8642d98d0"),
    "ocrmypdf-17.13.0.tar.gz": Source("ocrmypdf==17.13.0", "151c35d810eb628fbc5cb9bbe80b834ecf094737efa0e7a2e9e1fac3c730ed49"),
    "pdfminer-20191125.tar.gz": Source("pdfminer==20191125", "9e700bc731300ed5c8936343c1dd4529638184198e54e91dd2b59b64a755dc01"),
}


@dataclass(frozen=True)
class Entry:
    archive: str
    member: str
    sha256: str
    expected_state: str  # "indexed" or "rejected"
    expected_reason: str  # "" when indexed
    note: str


class CorpusUnavailable(Exception):
    """The sdists could not be downloaded (no access to PyPI) or do not hold what the manifest says."""


def cache_dir() -> Path:
    return Path(os.environ.get("DMP_TEST_CORPUS_CACHE") or Path.home() / ".cache" / "dmp-test-corpus")


def entries() -> list[Entry]:
    with MANIFEST.open(encoding="utf-8", newline="") as handle:
        return [Entry(**row) for row in csv.DictReader(line for line in handle if not line.startswith("#"))]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sdist(name: str) -> Path:
    """The sdist `name` from the cache, downloaded with pip (hash-checked) when missing."""
    source = SOURCES[name]
    path = cache_dir() / "sdists" / name
    if path.is_file() and _sha256(path) == source.sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text(f"{source.requirement} --hash=sha256:{source.sha256}\n")
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        command += ["--require-hashes", "-r", str(requirements), "-d", scratch]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            raise CorpusUnavailable(f"pip download {source.requirement} took over 10 minutes") from None
        downloaded = Path(scratch) / name
        if result.returncode != 0 or not downloaded.is_file():
            raise CorpusUnavailable(f"pip download {source.requirement} failed:\n{result.stderr.strip()[-2000:]}")
        downloaded.replace(path)
    return path


def files(wanted: list[Entry]) -> dict[Entry, Path]:
    """Each entry's file in the cache (named by its sha256), extracted from its sdist when missing."""
    out: dict[Entry, Path] = {}
    missing: dict[str, list[Entry]] = {}
    for entry in wanted:
        path = cache_dir() / "files" / f"{entry.sha256}.pdf"
        out[entry] = path
        if not (path.is_file() and _sha256(path) == entry.sha256):
            missing.setdefault(entry.archive, []).append(entry)
    for archive, group in missing.items():
        by_member = {entry.member: entry for entry in group}
        with tarfile.open(sdist(archive)) as tar:
            for member in tar:
                entry = by_member.pop(member.name, None)
                if entry is None or not member.isfile():
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if hashlib.sha256(data).hexdigest() != entry.sha256:
                    raise CorpusUnavailable(f"{archive}:{entry.member} does not have the manifest's sha256")
                out[entry].parent.mkdir(parents=True, exist_ok=True)
                out[entry].write_bytes(data)
        if by_member:
            raise CorpusUnavailable(f"{archive} lacks {', '.join(sorted(by_member))}")
    return out
