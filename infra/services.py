"""Throwaway service processes for tests and benchmarks: redis-server, moto_server (S3), and a
fresh database on a running PostgreSQL. Each runs on a free loopback port so it can be killed and
restarted without touching the machine's own services."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.core.settings import Settings


def dmp_environment(settings: Settings) -> dict[str, str]:
    """The environment a `dmp` subprocess needs to see `settings` (a pipeline Settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
    env.update({f"DMP_{name.upper()}": str(value) for name, value in settings.model_dump().items() if value is not None})
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class RedisServer:
    """A redis-server with an append-only file, so a kill and restart keeps the queued messages
    (`persistent=False`: none, so a restart loses them, as a cache-configured Redis would)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    persistent: bool = True

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.workdir / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.kill()


@dataclass
class MotoServer:
    """moto's S3 HTTP server as its own process (state lives in memory: pause it, do not restart it).

    With `log`, its request log (one line per HTTP request, which benchmarks count) goes to that file."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = Path(sys.executable).with_name("moto_server")
        command = [str(binary)] if binary.exists() else [sys.executable, "-m", "moto.server"]
        with ExitStack() as stack:
            log = stack.enter_context(self.log.open("ab")) if self.log else subprocess.DEVNULL
            self.process = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=log)
        wait_for_port(self.port)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class PostgresDatabase:
    """A fresh database on a running PostgreSQL server, dropped afterwards."""

    server_url: str = field(
        default_factory=lambda: os.environ.get("DMP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    name: str = field(default_factory=lambda: f"dmp_test_{uuid.uuid4().hex[:12]}")

    @property
    def url(self) -> str:
        base = self.server_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}/{self.name}"

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(statement)

    def start(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')

    def stop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class PostgresCluster:
    """A PostgreSQL server of its own (initdb and pg_ctl from /usr/lib/postgresql/*/bin) on a free
    loopback port, with one database, `dmp`: stop it and start it again to make an outage of the
    index alone. Its files live in a folder of their own, removed by `destroy`.

    It runs without fsync unless `durable` (benchmarks: commits cost what they cost on a real server);
    `settings` are more server settings (`-c name=value`), e.g. shared_preload_libraries."""

    port: int = field(default_factory=free_port)
    root: Path | None = None
    durable: bool = False
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/dmp"

    @staticmethod
    def _binary(name: str) -> str:
        found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
        if not found:
            raise RuntimeError(f"{name} is not installed (Debian: apt-get install postgresql)")
        return found[-1]

    def _run(self, *args: str) -> None:
        # initdb and postgres refuse to run as root: as root, run them as the postgres user.
        user = "postgres" if os.geteuid() == 0 else None
        subprocess.run(args, check=True, capture_output=True, user=user, cwd="/")

    def init(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dmp-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(self._binary("initdb"), "-D", str(self.root / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run(self._binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "dmp")

    def start(self) -> None:
        assert self.root is not None
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run(self._binary("pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-o", options, "-w", "start")

    def postmaster_pid(self) -> int:
        """The server's main process (its backends and helpers are its children)."""
        assert self.root is not None
        return int((self.root / "data" / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Stop the server at once: open connections are cut, as when it crashes or is restarted."""
        assert self.root is not None
        self._run(self._binary("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        if self.root is None:
            return
        if (self.root / "data" / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


def distributed_settings(root: Path, redis: RedisServer, s3_endpoint: str, database: PostgresDatabase, **overrides: Any) -> Settings:
    """Settings pointing at throwaway services (benchmarks): Redis, PostgreSQL, an S3 endpoint, keys under `root`."""
    from pipeline.core.settings import Settings

    return Settings(
        home=root / "home",
        broker_url=redis.url,
        database_url=database.url,
        storage_url=f"s3://dmp-bench-{uuid.uuid4().hex[:8]}",
        s3_endpoint=os.environ.get("DMP_TEST_S3_ENDPOINT", s3_endpoint),
        s3_access_key=os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
        s3_secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
        key_file=root / "keys.json",
        **overrides,
    )


@contextmanager
def throwaway_database() -> Iterator[PostgresDatabase]:
    """A fresh database on the running PostgreSQL at the current schema, dropped on the way out."""
    from pipeline.index.db import make_engine, upgrade

    database = PostgresDatabase()
    database.start()
    try:
        engine = make_engine(database.url)
        upgrade(engine)
        engine.dispose()
        yield database
    finally:
        database.stop()


@dataclass
class ThrowawayServices:
    """What `throwaway_services` yields: the settings and the running services they point at."""

    settings: Settings
    redis: RedisServer
    moto: MotoServer
    postgres: PostgresDatabase


@contextmanager
def throwaway_services(root: Path, **overrides: object) -> Iterator[ThrowawayServices]:
    """Redis, moto_server and a `throwaway_database` (benchmarks), the `distributed_settings` for them
    with `overrides`, and their key file under `root`; every service stopped on the way out."""
    from pipeline.core.keys import load_key_file

    with ExitStack() as stack:
        redis, moto = RedisServer(root / "redis"), MotoServer()
        for service in (redis, moto):
            stack.callback(service.stop)  # also kills a process that started but never listened
            service.start()
        postgres = stack.enter_context(throwaway_database())
        settings = distributed_settings(root, redis, moto.endpoint, postgres, **overrides)
        load_key_file(settings.resolved_key_file(), create=True)
        yield ThrowawayServices(settings, redis, moto, postgres)
