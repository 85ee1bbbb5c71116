"""Crypto benchmark: streaming envelope encryption/decryption vs bare AES-GCM over the same segments.

value: GB/s of the envelope (`EncryptingReader` read in 8 MiB pieces, as the multipart upload reads
it; `decrypt` of the sealed object from a file in the page cache). floor: the cipher alone over
segments of the same size (256 KiB, DMP_SEGMENT_BYTES' default), streamed from the same source: for
encryption, each segment read from the same generated stream and sealed (AES-256-GCM, a nonce per
segment, the same associated data); for decryption, each sealed segment read from a file in the
page cache and opened. Nothing is held whole, so neither side page-faults a whole buffer in.

Each measurement runs in a fresh interpreter, so its peak RSS (reported absolute and above that
interpreter's baseline) belongs to it alone; the interpreter loads the envelope, not the index
(SQLAlchemy alone would add 20 MiB to both baselines). The machine is shared, so the envelope and
the floor run in `rounds` interleaved pairs and each part (encryption, decryption) keeps its best
time; the CPU seconds of those parts are printed too, as a check that load did not pick the winner.
`--pipeline` also sends one document of the given size through the embedded pipeline (intake,
validation, sealing, index) and reads it back, for the end-to-end peak RSS.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

from bench.report import print_parts

SEGMENT = 256 * 1024  # DMP_SEGMENT_BYTES' default
CHUNK = 8 * 1024 * 1024  # what the multipart upload reads at a time
MIB = 1024 * 1024


def parse_size(text: str) -> int:
    units = {"KIB": 1024, "MIB": MIB, "GIB": 1024 * MIB, "KB": 1000, "MB": 10**6, "GB": 10**9, "B": 1}
    upper = text.strip().upper()
    for unit, factor in units.items():
        if upper.endswith(unit):
            return int(float(upper[: -len(unit)]) * factor)
    return int(upper)


class _Clock:
    """Wall and CPU seconds of one timed part, kept as `<part>_s` and `<part>_cpu_s`."""

    def __init__(self, figures: dict[str, Any], part: str) -> None:
        self.figures, self.part = figures, part

    def __enter__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        self.figures[f"{self.part}_s"] = time.perf_counter() - self.wall
        self.figures[f"{self.part}_cpu_s"] = time.process_time() - self.cpu


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class _Pattern:
    """A readable stream of `size` bytes with no memory behind it (a repeated 8 MiB block)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(CHUNK)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        out = self.block[: min(n, CHUNK)]
        while len(out) < n:
            out += self.block[: min(n - len(out), CHUNK)]
        return out


def _streaming(size: int, workdir: Path) -> dict[str, Any]:
    from pipeline.core.envelope import EncryptingReader, decrypt
    from pipeline.core.streams import copy_stream

    baseline = _rss_mib()
    key = os.urandom(32)
    figures: dict[str, Any] = {}
    source = _Pattern(size)  # made before the clock starts, as the floor's is
    # Encryption timed alone (output discarded), so the disk is not what is measured.
    with _Clock(figures, "encrypt"):
        reader = EncryptingReader(source, key, "bench", "doc:bench", SEGMENT)
        while reader.read(CHUNK):
            pass
    del source, reader
    sealed = workdir / "sealed.bin"
    with sealed.open("wb") as out:  # as the file store writes it
        copy_stream(EncryptingReader(_Pattern(size), key, "bench", "doc:bench", SEGMENT), out.write, CHUNK)
    with sealed.open("rb") as warm:  # into the page cache, as a hot object would be
        while warm.read(CHUNK):
            pass
    total = 0
    with _Clock(figures, "decrypt"), sealed.open("rb") as handle:
        for piece in decrypt(handle, key, "doc:bench"):
            total += len(piece)
    sealed.unlink()
    assert total == size
    return figures | {"rss_above_baseline_mib": _rss_mib() - baseline, "peak_rss_mib": _rss_mib()}


def _segments(size: int, workdir: Path) -> dict[str, Any]:
    """The floor: AES-GCM over SEGMENT-sized pieces of the same stream, then back from a file."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    baseline = _rss_mib()
    aead, prefix, aad = AESGCM(os.urandom(32)), os.urandom(7), b"DMPE-header|doc:bench"

    def nonce(index: int, final: bool) -> bytes:
        return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")

    def seal(source: _Pattern, out: BinaryIO | None) -> None:
        left, index = size, 0
        while True:
            piece = source.read(SEGMENT)
            left -= len(piece)
            sealed = aead.encrypt(nonce(index, left == 0), piece, aad)
            if out is not None:
                out.write(sealed)
            if left == 0:
                return
            index += 1

    figures: dict[str, Any] = {}
    source = _Pattern(size)
    with _Clock(figures, "encrypt"):
        seal(source, None)
    sealed_path = workdir / "segments.bin"
    del source
    with sealed_path.open("wb") as out:
        seal(_Pattern(size), out)
    with sealed_path.open("rb") as warm:
        while warm.read(CHUNK):
            pass
    total, index = 0, 0
    with _Clock(figures, "decrypt"), sealed_path.open("rb") as handle:
        while piece := handle.read(SEGMENT + 16):
            total += len(aead.decrypt(nonce(index, total + len(piece) - 16 == size), piece, aad))
            index += 1
    sealed_path.unlink()
    assert total == size
    return figures | {"rss_above_baseline_mib": _rss_mib() - baseline, "peak_rss_mib": _rss_mib()}


def _pipeline(size: int, workdir: Path) -> dict[str, Any]:
    """One document of `size` bytes through the embedded pipeline and back, in this process."""
    from pipeline.core.identity import with_key
    from pipeline.core.settings import Settings
    from pipeline.documents.process import process_item
    from pipeline.documents.stored import read_document
    from pipeline.index.models import Document
    from pipeline.index.states import AttemptOutcome
    from pipeline.ingest.intake import receive_batch
    from pipeline.runtime import Runtime

    batch = workdir / "batch"
    batch.mkdir()
    line = b"Compte rendu de biologie: hemoglobine 13,2 g/dL, plaquettes 250 G/L.\n"
    with (batch / "big.txt").open("wb") as out:
        written = 0
        block = line * (CHUNK // len(line))
        while written < size:
            part = block[: size - written]
            out.write(part)
            written += len(part)
    header = "file,patient_ins,source_document_id,title,document_type,service_date,author_id,author_profession\n"
    row = f"big.txt,{with_key('1850575123456')},BIG-1,Compte rendu de biologie,11502-2,2025-01-02,1,physician\n"
    (batch / "manifest.csv").write_text(header + row)
    settings = Settings(home=workdir / "home", max_file_bytes=size + MIB)
    rt = Runtime.from_settings(settings, prepare=True)
    baseline = _rss_mib()
    start = time.perf_counter()
    sent: list[str] = []
    receive_batch(rt, batch, "lab:BENCH", sent.append)
    state = process_item(rt, sent[0])
    ingest_s = time.perf_counter() - start
    with rt.sessions() as session:
        document = session.query(Document).one()
    start = time.perf_counter()
    total = sum(len(piece) for piece in read_document(rt, document))
    read_s = time.perf_counter() - start
    assert state == AttemptOutcome.INDEXED and total == size
    return {"ingest_s": ingest_s, "read_s": read_s, "rss_above_baseline_mib": _rss_mib() - baseline}


def _child(kind: str, size: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON."""
    code = f"import json,sys; from bench.crypto import _measure; print(json.dumps(_measure({kind!r}, {size})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def _measure(kind: str, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dmp-bench-crypto-") as tmp:
        if kind == "streaming":
            return _streaming(size, Path(tmp))
        if kind == "segments":
            return _segments(size, Path(tmp))
        return _pipeline(size, Path(tmp))


def _best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each part's best (least) time over the rounds; the worst peak RSS."""
    best = {key: min(figures[key] for figures in rounds) for key in rounds[0]}
    best.update({key: max(figures[key] for figures in rounds) for key in ("peak_rss_mib", "rss_above_baseline_mib")})
    return best


def run(size: int, pipeline: bool, rounds: int = 3) -> dict[str, Any]:
    pairs = [(_child("streaming", size), _child("segments", size)) for _ in range(rounds)]
    streaming, floor = _best([pair[0] for pair in pairs]), _best([pair[1] for pair in pairs])
    gb = size / 1e9
    value = 2 * gb / (streaming["encrypt_s"] + streaming["decrypt_s"])
    floor_value = 2 * gb / (floor["encrypt_s"] + floor["decrypt_s"])
    cpu_ratio = (floor["encrypt_cpu_s"] + floor["decrypt_cpu_s"]) / (streaming["encrypt_cpu_s"] + streaming["decrypt_cpu_s"])
    result = {
        "bench": "crypto",
        "metric": "encrypt_decrypt_throughput",
        "value": round(value, 3),
        "unit": "GB/s",
        "floor": round(floor_value, 3),
        "ratio": round(value / floor_value, 3),
        "size_bytes": size,
        "segment_bytes": SEGMENT,
        "rounds": rounds,
        "encrypt_gb_s": round(gb / streaming["encrypt_s"], 3),
        "decrypt_gb_s": round(gb / streaming["decrypt_s"], 3),
        "floor_encrypt_gb_s": round(gb / floor["encrypt_s"], 3),
        "floor_decrypt_gb_s": round(gb / floor["decrypt_s"], 3),
        "encrypt_ratio": round(floor["encrypt_s"] / streaming["encrypt_s"], 3),
        "decrypt_ratio": round(floor["decrypt_s"] / streaming["decrypt_s"], 3),
        "cpu_ratio": round(cpu_ratio, 3),
        "encrypt_cpu_ratio": round(floor["encrypt_cpu_s"] / streaming["encrypt_cpu_s"], 3),
        "decrypt_cpu_ratio": round(floor["decrypt_cpu_s"] / streaming["decrypt_cpu_s"], 3),
        "peak_rss_mib": round(streaming["peak_rss_mib"], 1),
        "peak_rss_above_baseline_mib": round(streaming["rss_above_baseline_mib"], 1),
        "floor_peak_rss_mib": round(floor["peak_rss_mib"], 1),
        "floor_peak_rss_above_baseline_mib": round(floor["rss_above_baseline_mib"], 1),
    }
    r = result
    print_parts("crypto", {
        "envelope": f"{value:.2f} GB/s (encrypt {r['encrypt_gb_s']}, decrypt {r['decrypt_gb_s']} GB/s)",
        "floor (AES-GCM, 256 KiB)": f"{floor_value:.2f} GB/s (encrypt {r['floor_encrypt_gb_s']}, decrypt {r['floor_decrypt_gb_s']})",
        "ratio": f"{r['ratio']} wall, {r['cpu_ratio']} CPU (encrypt {r['encrypt_ratio']}, decrypt {r['decrypt_ratio']})",
        "peak RSS": f"{r['peak_rss_mib']} MiB ({r['peak_rss_above_baseline_mib']} above its baseline); floor {r['floor_peak_rss_mib']} MiB",
        "rounds": f"{rounds} interleaved, best time of each part kept",
    })  # fmt: skip
    if pipeline:
        end_to_end = _child("pipeline", size)
        result.update(
            {
                "pipeline_ingest_s": round(end_to_end["ingest_s"], 2),
                "pipeline_read_s": round(end_to_end["read_s"], 2),
                "pipeline_peak_rss_above_baseline_mib": round(end_to_end["rss_above_baseline_mib"], 1),
            }
        )
    return result
