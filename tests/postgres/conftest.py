"""A throwaway PostgreSQL cluster for the session, and a fresh empty database per test."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, create_engine, text

from app.gallery.db import engine_url
from benchmarks.ports import free_port

# The gallery fixtures of the SQLite tests, reused: their `engine` is built on `db_url`,
# which this folder points at PostgreSQL.
from tests.unit.gallery.conftest import (  # noqa: F401
    engine,
    enrol,
    model,
    session,
    session_factory,
    unit_vector,
)

DEBIAN_BINARIES = Path("/usr/lib/postgresql")  # apt's postgresql puts initdb here, not on PATH
OS_USER = "postgres"  # the server refuses to run as root


def postgres_bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl: from PATH, else Debian's newest server version."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    installed = [
        p.parent for p in DEBIAN_BINARIES.glob("*/bin/initdb") if p.parents[1].name.isdigit()
    ]
    return max(installed, key=lambda bin_dir: int(bin_dir.parent.name), default=None)


class PostgresCluster:
    """initdb, start and stop a cluster in `root`, trusting local connections on 127.0.0.1."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.port = free_port()
        self._admin: Engine | None = None
        self._names = itertools.count()

    def url(self, database: str) -> str:
        # A plain postgresql:// URL, as operators write it; the service picks the driver.
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        data = self.root / "data"
        cluster = ["--username=postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"]
        self._run("initdb", "-D", data, "--no-sync", *cluster)
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
            # Throwaway data: skip the disk flushes. A zone other than UTC, so tests see
            # timestamps that come back in the server's zone.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c timezone=America/New_York"
        )
        self._run(
            "pg_ctl", "-D", data, "-l", self.root / "server.log", "-o", options, "-w", "start"
        )
        self._admin = create_engine(engine_url(self.url("postgres")), isolation_level="AUTOCOMMIT")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.dispose()
        if (self.root / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", self.root / "data", "-m", "fast", "-w", "stop")

    def create_database(self) -> str:
        name = f"test_{next(self._names)}"
        assert self._admin is not None
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        return name

    def drop_database(self, name: str) -> None:
        assert self._admin is not None
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))

    def _run(self, program: str, *args: str | Path) -> None:
        command = [str(self.bin_dir / program), *map(str, args)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", OS_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed:\n{done.stdout}{done.stderr}{tail}")


def postgres_missing(reason: str) -> NoReturn:
    """Skip, except in CI (FACE_REQUIRE_POSTGRES=1), where PostgreSQL must be tested."""
    if os.environ.get("FACE_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        postgres_missing(
            f"PostgreSQL server binaries not found (initdb on PATH or under {DEBIAN_BINARIES})"
        )
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            postgres_missing(f"running as root, and there is no {OS_USER!r} user to run the server")
    # Not under pytest's tmp folder: it is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="face-postgres-"))
    if as_root:
        shutil.chown(root, OS_USER)
    cluster = PostgresCluster(bin_dir, root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db_url(postgres: PostgresCluster) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = postgres.create_database()
    yield postgres.url(name)
    postgres.drop_database(name)
