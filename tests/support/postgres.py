"""A throwaway PostgreSQL server on loopback, for tests that need the real thing.

:class:`PostgresServer` runs ``initdb`` and ``pg_ctl`` from the installed
binaries (``/usr/lib/postgresql/<n>/bin``) in a temporary directory: loopback
TCP on a free port, trust authentication, ``fsync=on`` (the durability tests
rely on it). PostgreSQL refuses to run as root, so when the tests run as root
the server runs as the ``postgres`` user. Stopped and deleted at teardown.

Fixture: ``postgres_url`` (session-scoped, the URL of a database created for
the session). :func:`create_database` gives a test its own empty database.
Import the fixture into a test module (or ``tests/conftest.py``) with::

    from tests.support.postgres import postgres_url  # noqa: F401
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

__all__ = ["PostgresServer", "create_database", "find_pg_bin", "postgres_url"]


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest installed major), or None."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1.

    ``password_auth``: every role but the superuser ``postgres`` must log in
    over TCP with its password (scram-sha-256), so tests can see a password
    stop working; the default trusts every role.
    """

    def __init__(self, bin_dir: Path, *, password_auth: bool = False) -> None:
        self.bin_dir = bin_dir
        self.password_auth = password_auth
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="kustos-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def admin_url(self) -> str:
        """URL of the ``postgres`` maintenance database (superuser ``postgres``)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        """URL of database ``dbname`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            user=self._user,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=self.root,
        )
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def start(self) -> None:
        """initdb (trust auth, UTF-8, C locale) and start on the chosen port."""
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if self.password_auth:
            (self.data_dir / "pg_hba.conf").write_text(
                "local all all trust\n"
                "host all postgres 127.0.0.1/32 trust\n"
                "host all all 127.0.0.1/32 scram-sha-256\n"
            )
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=on",
                "-c max_connections=200",
            ]
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            if self.data_dir.exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        dbname = name or f"kustos_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')  # test helper: name is ours
        return self.url(dbname)


def create_database(url: str) -> str:
    """A fresh, empty database on the server that ``url`` points at; returns its URL."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    dbname = f"kustos_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    host, port, user = (
        info.get("host", "127.0.0.1"),
        info.get("port", "5432"),
        info.get("user", "postgres"),
    )
    return f"postgresql://{user}@{host}:{port}/{dbname}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database created for this test session on a throwaway server.

    Self-contained (no other fixture needed), so importing this one name is
    enough. :func:`create_database` makes more databases on the same server.
    """
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL binaries not found (run `make system-deps`)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server.create_database("kustos_test")
    finally:
        server.stop()
