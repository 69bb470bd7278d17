"""The versioned storage schema: an ordered list of migrations per SQL dialect.

Every database Kustos writes to carries a ``schema_migrations`` table with one
row per applied migration. :meth:`StorageBackend.open` reads the highest
applied version, refuses to run on a schema *newer* than this code knows
(a downgrade would silently misread data), and applies the pending migrations
in one transaction, so a crash mid-upgrade leaves the old schema intact.

To change the schema, append a :class:`Migration` to :data:`MIGRATIONS` with
the next version number and statements for both dialects; never edit one that
has shipped. The backends (``kustos.store.backends.*``) execute the plan; this
module only decides what to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from kustos.errors import StorageError

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Dialect",
    "Migration",
    "bookkeeping_ddl",
    "pending_migrations",
]

Dialect = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class Migration:
    """One step of the schema: the same change written for each dialect."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        """The SQL statements of this step for ``dialect``, in order."""
        return self.sqlite if dialect == "sqlite" else self.postgresql


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        version=1,
        description="ordered key-value table",
        # Keys compare byte-wise (UTF-8 order = code point order = Python str
        # order): SQLite's default BINARY collation, PostgreSQL's "C" collation.
        sqlite=("CREATE TABLE entries (key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL)",),
        postgresql=(
            'CREATE TABLE entries (key text COLLATE "C" NOT NULL PRIMARY KEY, value bytea NOT NULL)',
        ),
    ),
)
"""Every schema step ever shipped, oldest first; versions are 1, 2, 3, ..."""

LATEST_VERSION: Final[int] = MIGRATIONS[-1].version
"""The schema version this code writes and expects."""

_BOOKKEEPING: Final[dict[Dialect, str]] = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER NOT NULL PRIMARY KEY, description TEXT NOT NULL, "
        "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
    ),
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version integer NOT NULL PRIMARY KEY, description text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())"
    ),
}


def bookkeeping_ddl(dialect: Dialect) -> str:
    """The statement that creates ``schema_migrations`` if it is missing."""
    return _BOOKKEEPING[dialect]


def pending_migrations(
    current: int, *, migrations: tuple[Migration, ...] = MIGRATIONS
) -> tuple[Migration, ...]:
    """The migrations to apply to a database at schema version ``current``, in order.

    ``current`` is 0 for an empty database. Raises :class:`StorageError` when
    the database is newer than ``migrations`` knows, or when ``migrations``
    is not numbered 1, 2, 3, ... (a programming error caught by the tests).
    """
    expected = list(range(1, len(migrations) + 1))
    if [m.version for m in migrations] != expected:
        raise StorageError("schema migrations must be numbered 1, 2, 3, ... without gaps")
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise StorageError(
            f"the database schema is version {current}, newer than this Kustos knows "
            f"(version {latest}); upgrade Kustos instead of running an older release on it"
        )
    if current < 0:
        raise StorageError(f"the database reports an invalid schema version {current}")
    return migrations[current:]
