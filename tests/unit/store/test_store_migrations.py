"""The migration plan: what runs on which schema version, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kustos.config import StorageConfig
from kustos.errors import StorageError
from kustos.store import PostgresBackend, SqliteBackend, open_backend, sqlite_path, sqlite_url
from kustos.store.migrations import LATEST_VERSION, MIGRATIONS, Migration, pending_migrations


def test_migrations_are_numbered_from_one_and_cover_both_dialects() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST_VERSION == MIGRATIONS[-1].version
    for migration in MIGRATIONS:
        assert migration.statements("sqlite") and migration.statements("postgresql")


def test_pending_migrations_start_after_the_current_version() -> None:
    steps = tuple(Migration(v, f"step {v}", ("s",), ("p",)) for v in (1, 2, 3))
    assert pending_migrations(0, migrations=steps) == steps
    assert pending_migrations(2, migrations=steps) == steps[2:]
    assert pending_migrations(3, migrations=steps) == ()


def test_a_newer_database_is_refused_with_a_clear_message() -> None:
    newer = LATEST_VERSION + 1
    with pytest.raises(
        StorageError, match=rf"schema is version {newer}, newer than this Kustos knows"
    ):
        pending_migrations(newer)


def test_gaps_in_the_migration_list_are_a_programming_error() -> None:
    steps = (Migration(1, "a", ("s",), ("p",)), Migration(3, "c", ("s",), ("p",)))
    with pytest.raises(StorageError, match="without gaps"):
        pending_migrations(0, migrations=steps)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/kustos/kustos.db", Path("/var/lib/kustos/kustos.db")),
        ("sqlite:/var/lib/kustos.db", Path("/var/lib/kustos.db")),
        ("sqlite:.kustos/kustos.db", Path(".kustos/kustos.db")),
    ],
)
def test_sqlite_urls_name_a_file(url: str, path: Path) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("path", [Path("/abs/k.db"), Path("rel/k.db")])
def test_sqlite_url_round_trips(path: Path) -> None:
    assert sqlite_path(sqlite_url(path)) == path


@pytest.mark.parametrize("url", ["sqlite:", "sqlite://", "sqlite:///x.db?mode=ro"])
def test_bad_sqlite_urls_are_rejected(url: str) -> None:
    with pytest.raises(StorageError, match="SQLite storage URL"):
        sqlite_path(url)


def test_open_backend_picks_the_backend_by_url() -> None:
    assert isinstance(open_backend(StorageConfig(url="sqlite:/tmp/x.db")), SqliteBackend)
    pg = open_backend(StorageConfig(url="postgresql://kustos:pw@db:5432/kustos", pool_max=3))
    assert isinstance(pg, PostgresBackend)
    assert "pw" not in repr(pg) and "db:5432/kustos" in repr(pg)
    with pytest.raises(StorageError, match="unsupported storage URL scheme"):
        open_backend(StorageConfig(url="mysql://x"))
