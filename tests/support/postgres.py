"""A real PostgreSQL server for tests, from Debian's `postgresql` package.

Each server gets its own data directory in a temp dir, a free loopback port and its own
Unix-socket directory, and trusts local connections (it listens on 127.0.0.1 only). PostgreSQL
refuses to run as root, so under root (CI) the server runs as the `postgres` system user the
package creates. `stop()` and `start()` on the same data directory let tests take the database
away and bring it back.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.promstack import free_port, poll_until

__all__ = ["PostgresServer", "find_pg_bin", "fresh_database", "postgres"]


def find_pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise RuntimeError(
            f"{name} not found: install Debian's postgresql package (apt-get install postgresql)"
        )
    return found


class PostgresServer:
    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is private to root (0700), and under root the
        # server runs as `postgres`, which must reach its own directory.
        self.workdir = Path(tempfile.mkdtemp(prefix="incident-bot-pg-"))
        self.workdir.chmod(0o755)
        self.data = self.workdir / "pgdata"
        self.sockets = self.workdir / "pgsock"
        self.log = self.workdir / "postgres.log"
        self.port = free_port()
        self._user = "postgres" if os.geteuid() == 0 else None
        self._init()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

    def _init(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self._user:
            entry = pwd.getpwnam(self._user)
            for path in (self.workdir, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        result = self._run(
            find_pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> PostgresServer:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.sockets}"
            " -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=100"
        )
        result = self._run(
            find_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"postgres failed to start:\n{result.stdout}\n{result.stderr}\n{self._log_tail()}"
            )
        poll_until(self._accepting, timeout=30, what="postgres to accept connections")
        return self

    def _accepting(self) -> bool:
        result = self._run(find_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port))
        return result.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        self._run(find_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"


def fresh_database(server: PostgresServer) -> str:
    """A new, empty database on `server` for one test: tests share a server, never data.
    The URL is the plain one an operator writes (no `+psycopg` driver suffix)."""
    name = f"bot_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return f"postgresql://postgres@127.0.0.1:{server.port}/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One server for the whole run (each test takes a `fresh_database` on it); a module that
    stops and restarts its server defines a `postgres` fixture of its own."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.remove()
