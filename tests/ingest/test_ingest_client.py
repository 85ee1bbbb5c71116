"""`dmp ingest PATH --api URL`: the CLI as a client of the HTTP API, over real HTTP (embedded `dmp api`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from infra.services import dmp_environment, free_port
from pipeline.cli import app
from pipeline.core.settings import Settings
from pipeline.index.models import Batch, BatchItem, Document
from pipeline.ingest.client import plan, send
from pipeline.runtime import Runtime
from pipeline.samples.feed import write_feed
from pipeline.sources import add_source
from tests.conftest import read_expected

pytestmark = pytest.mark.slow  # starts an API server process

DMP = str(Path(sys.executable).with_name("dmp"))
runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`dmp api` in embedded mode on a loopback port, with a hospital, a lab and an insurer key."""
    settings = Settings(home=tmp_path_factory.mktemp("client") / "home")
    rt = Runtime.from_settings(settings, prepare=True)
    with rt.sessions() as session:
        keys = {source: add_source(session, rt.hmac_secret, source) for source in ("hospital:CHU-CLI", "lab:BIO-CLI", "insurer:CNAM-CLI")}
    port = free_port()
    process = subprocess.Popen(
        [DMP, "api", "--port", str(port), "--no-access-log"],
        env=dmp_environment(settings),
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield base, keys, rt
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    rt.close()


def _ingest(base: str, key: str, path: Path, source: str, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["ingest", str(path), "--source", source, "--api", base, "--json", *extra], env={"DMP_API_KEY": key})
    return result.exit_code, result.output


def _counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.sessions() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) for model in (Batch, BatchItem, Document))  # type: ignore[return-value]


def test_a_folder_sent_through_the_api_ends_as_expected(server, sample_batch):
    base, keys, _ = server
    code, output = _ingest(base, keys["hospital:CHU-CLI"], sample_batch, "hospital:CHU-CLI", "--wait")
    assert code == 0, output
    summary = json.loads(output.strip().splitlines()[-1])
    assert summary["mode"] == "api" and summary["total"] == len(read_expected(sample_batch))
    status = httpx.get(base + summary["status_url"], headers={"Authorization": f"Bearer {keys['hospital:CHU-CLI']}"}).json()
    expected = read_expected(sample_batch)
    assert {i["file"]: (i["state"], i["reason"] or "") for i in status["items"]} == {
        name: (row["expected_state"], row["expected_reason"]) for name, row in expected.items()
    }


def test_running_the_same_command_again_creates_nothing(server, sample_batch):
    base, keys, rt = server
    first = json.loads(_ingest(base, keys["hospital:CHU-CLI"], sample_batch, "hospital:CHU-CLI", "--wait")[1].strip().splitlines()[-1])
    before = _counts(rt)
    code, output = _ingest(base, keys["hospital:CHU-CLI"], sample_batch, "hospital:CHU-CLI")
    assert code == 0 and json.loads(output.strip().splitlines()[-1])["batch"] == first["batch"]
    assert _counts(rt) == before


def test_an_upload_cut_mid_body_is_resumed_without_duplicates(server, sample_batch, tmp_path):
    base, keys, rt = server
    batch = tmp_path / "batch"
    batch.mkdir()
    for path in sample_batch.iterdir():  # a batch of its own: same documents, another manifest
        (batch / path.name).write_bytes(path.read_bytes() + (b"\n" if path.name == "manifest.csv" else b""))
    submission = plan(batch, "lab:BIO-CLI")
    sent = {"bytes": 0, "cuts": 0}

    def cut_once(count: int) -> None:
        sent["bytes"] += count
        if sent["cuts"] == 0 and sent["bytes"] > submission.size // 2:
            sent["cuts"] += 1
            raise httpx.WriteError("connection lost (simulated)")

    batches_before = _counts(rt)[0]
    answer = send(base, keys["lab:BIO-CLI"], submission, on_bytes=cut_once, sleep=lambda _s: None)
    assert sent["cuts"] == 1 and answer["resumed"] is False
    assert _counts(rt)[0] == batches_before + 1
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _unfinished(rt):
        time.sleep(0.2)
    assert not list(rt.store.list_keys("inbox/"))  # the cut upload's parts were deleted, the rest processed


def _unfinished(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(BatchItem).where(BatchItem.state.in_(("queued", "processing")))) or 0


def test_a_zip_and_a_feed_go_through_the_api(server, sample_batch, tmp_path):
    base, keys, _ = server
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(sample_batch.iterdir()):
            zf.write(path, f"batch/{path.name}")
    code, output = _ingest(base, keys["hospital:CHU-CLI"], archive, "hospital:CHU-CLI")
    assert code == 0, output
    feed = tmp_path / "feed.csv"
    write_feed(feed, 50, patients=5, seed=4)
    code, output = _ingest(base, keys["insurer:CNAM-CLI"], feed, "insurer:CNAM-CLI", "--wait")
    assert code == 0, output
    assert json.loads(output.strip().splitlines()[-1])["total"] == 50


def test_a_refusal_ends_the_command_with_its_code(server, tmp_path):
    base, keys, _ = server
    feed = tmp_path / "feed.csv"
    write_feed(feed, 5, patients=2, seed=5)
    code, output = _ingest(base, keys["lab:BIO-CLI"], feed, "lab:BIO-CLI")
    assert code == 2 and "source_not_allowed" in output


def test_without_a_key_the_command_says_how_to_get_one(server, sample_batch):
    base, _, _ = server
    result = runner.invoke(app, ["ingest", str(sample_batch), "--source", "hospital:X", "--api", base], env={"DMP_API_KEY": ""})
    assert result.exit_code == 2 and "dmp sources add" in result.output


def test_a_source_other_than_the_key_s_is_refused_before_anything_is_sent(server, sample_batch):
    base, keys, rt = server
    before = _counts(rt)
    code, output = _ingest(base, keys["hospital:CHU-CLI"], sample_batch, "lab:BIO-CLI")
    assert code == 2 and "source_mismatch" in output and "hospital:CHU-CLI" in output
    assert _counts(rt) == before


def test_text_mode_names_the_batch_and_wait_prints_its_totals(server, sample_batch):
    base, keys, _ = server
    args = ["ingest", str(sample_batch), "--source", "hospital:CHU-CLI", "--api", base, "--wait"]
    result = runner.invoke(app, args, env={"DMP_API_KEY": keys["hospital:CHU-CLI"]})
    assert result.exit_code == 0, result.output
    expected = [row["expected_state"] for row in read_expected(sample_batch).values()]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("batch ") and f": {len(expected)} items" in lines[0]
    assert f"{expected.count('indexed')} indexed, {expected.count('rejected')} rejected" in lines
