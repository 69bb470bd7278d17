"""Storage backends: where the server keeps its (already encrypted) data.

One small, ordered key-value interface (:class:`kustos.store.base.StorageBackend`)
with transactions, implemented for SQLite (embedded default) and PostgreSQL
(shared by several server processes). Everything above it (the KV engine,
tokens, the keyring) is written once against that interface. Backends never
see plaintext secrets: values arrive encrypted or are non-secret metadata.

Start here: ``backend = open_backend(config.storage)``, then
``await backend.open()`` (or ``async with backend:``). See ``docs/storage.md``.
"""

from __future__ import annotations

from pathlib import Path

from kustos.config import StorageConfig
from kustos.errors import StorageError
from kustos.store.backends.postgresql import PostgresBackend
from kustos.store.backends.sqlite import SqliteBackend
from kustos.store.base import StorageBackend, Transaction
from kustos.store.migrations import LATEST_VERSION

__all__ = [
    "LATEST_VERSION",
    "PostgresBackend",
    "SqliteBackend",
    "StorageBackend",
    "Transaction",
    "open_backend",
    "sqlite_path",
    "sqlite_url",
]


def sqlite_url(path: Path) -> str:
    """The storage URL of an SQLite file: ``sqlite:`` + the path (relative or absolute)."""
    return f"sqlite:{path}"


def sqlite_path(url: str) -> Path:
    """The file an ``sqlite:`` URL names.

    ``sqlite:///abs/kustos.db`` and ``sqlite:/abs/kustos.db`` are absolute,
    ``sqlite:rel/kustos.db`` is relative to the working directory.
    """
    if not url.startswith("sqlite:"):
        raise StorageError("an SQLite storage URL must start with 'sqlite:'")
    rest = url.removeprefix("sqlite:")
    if rest.startswith("//"):
        rest = rest[2:]  # empty authority of sqlite:///path
    if not rest or "?" in rest or "#" in rest:
        raise StorageError("an SQLite storage URL must name a file: sqlite:///path/to/kustos.db")
    return Path(rest)


def open_backend(config: StorageConfig) -> StorageBackend:
    """Build the backend ``config.url`` names (not connected yet: ``await backend.open()``).

    ``sqlite:...`` gives a :class:`SqliteBackend`; ``postgresql://...``,
    ``postgres://...`` or a ``host=...`` conninfo gives a
    :class:`PostgresBackend` with a pool of ``pool_min``..``pool_max``.
    """
    try:
        kind = config.kind
    except ValueError as exc:
        raise StorageError(str(exc)) from None
    if kind == "sqlite":
        return SqliteBackend(sqlite_path(config.url))
    return PostgresBackend(config.url, pool_min=config.pool_min, pool_max=config.pool_max)
