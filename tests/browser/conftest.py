"""The portal served on a loopback port, and Debian's Chromium driven by Playwright (never Playwright's own download).

Every browser test module is marked `slow` (left out of `make test-fast`). A machine without Chromium fails them naming what is
missing: `make test` installs it (the Makefile's `browser` target).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from pipeline.core.settings import Settings
from pipeline.index.models import Patient
from pipeline.runtime import Runtime
from tests.conftest import index_batch

CHROMIUM = os.environ.get("DMP_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


@dataclass
class Portal:
    base: str
    rt: Runtime
    patients: list[str]
    ins: dict[str, str]
    documents: list = field(default_factory=list)  # type: ignore[type-arg]
    app: object = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """The app (embedded mode, two patients' documents indexed) served by uvicorn on 127.0.0.1."""
    import uvicorn

    from api.app import create_app
    from pipeline.samples import generate_samples

    root = tmp_path_factory.mktemp("browser")
    settings = Settings(home=root / "home")
    generate_samples(root / "batch", patients=2, documents=14, seed=5, bad=False)
    rt = Runtime.from_settings(settings, prepare=True)
    documents = index_batch(rt, root / "batch", "hospital:CHU-BROWSER")
    with rt.sessions() as session:
        ins = {p.id: p.ins for p in session.scalars(select(Patient))}
    patients = sorted(ins, key=lambda pid: (-sum(d.patient_id == pid for d in documents), pid))
    port = _free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield Portal(f"http://127.0.0.1:{port}", rt, patients, ins, documents, app)
    server.should_exit = True
    thread.join(timeout=10)
    rt.close()


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        missing = f"the browser tests need Chromium at {CHROMIUM}"
        pytest.fail(f"{missing}: run `make test` (it installs Debian's chromium) or apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


class Watched:
    """A browser context whose every request is remembered: the hosts pages load anything from."""

    def __init__(self, browser, base: str, **options) -> None:  # type: ignore[no-untyped-def]
        self.context = browser.new_context(locale="fr-FR", **options)
        self.hosts: set[str] = set()
        self.context.on("request", self._seen)
        self.page = self.context.new_page()
        self.base = base

    def _seen(self, request) -> None:  # type: ignore[no-untyped-def]
        url = urlsplit(request.url)
        if url.scheme not in ("chrome-extension", "chrome", "data", "blob"):  # the browser's own PDF viewer's parts
            self.hosts.add(f"{url.scheme}://{url.netloc}")

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def close(self) -> None:
        self.context.close()


def sign_in(watched: Watched, label_part: str) -> None:
    """Through the sign-in page, picking the demo identity whose label holds `label_part`."""
    page = watched.page
    watched.go("/")
    page.get_by_label(label_part).check()
    with page.expect_navigation():  # the form's POST and its redirect, not the sign-in page still showing
        page.get_by_role("button", name="Se connecter").click()
    page.wait_for_load_state()


def screenshot(watched: Watched, name: str) -> None:
    """Kept under docs/screenshots when DMP_TEST_SCREENSHOTS=1 (`make screenshots`), as a small palette PNG."""
    if os.environ.get("DMP_TEST_SCREENSHOTS") != "1":
        return
    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    watched.page.screenshot(path=str(target), full_page=False)
    with Image.open(target) as image:
        image.convert("RGB").quantize(colors=64).save(target, optimize=True)
