"""One path table for secrets engines and auth methods: path prefixes → entries, in one record.

Vault keeps two such tables, ``sys/mounts`` (secrets engines) and ``sys/auth``
(auth methods); so does Kustos (:mod:`kustos.server.mounts`,
:mod:`kustos.server.auth.mounts`). Both are the same thing: a JSON record in
storage (paths and options are not secret) mapping a normalized path with a
trailing slash to an entry with a random uuid, whose data lives under a
storage prefix of its own, cached in memory and resolved by the longest
matching prefix. This module holds what they share: :class:`PathEntry` (the
fields, their stored form and their common part of Vault's listing) and
:class:`PathTable` (loading, resolving, changing in one transaction,
removing an entry with all its data).

The cache is re-read when another replica's change is announced
(:mod:`kustos.server.replicas` calls :meth:`PathTable.load`); without
announcements (or while they are down) it is re-read when a request names a
path that is not in it, at most once a second.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Generic, Protocol, Self, TypeVar

import orjson

from kustos.errors import InvalidRequestError, StorageError
from kustos.server.times import Clock
from kustos.store.base import StorageBackend

__all__ = ["PathEntry", "PathTable", "normalize_table_path"]

_RELOAD_INTERVAL: Final = 1.0
_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_PATH: Final = 256


def normalize_table_path(path: str, *, what: str) -> str:
    """``secret`` or ``/secret/`` → ``secret/``; an :class:`InvalidRequestError` naming ``what`` if malformed."""
    text = path.strip().strip("/")
    if not text:
        raise InvalidRequestError(f"{what} is empty")
    if len(text) > _MAX_PATH:
        raise InvalidRequestError(f"{what} is longer than {_MAX_PATH} characters")
    for segment in text.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidRequestError(
                f"invalid {what} {text!r}: segments are 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
    return text + "/"


@dataclass(frozen=True)
class PathEntry:
    """What every entry of a path table has: where it is, what it is, and its tuning."""

    path: str
    """``secret/`` or ``kubernetes/``: normalized, with a trailing slash."""
    type: str
    uuid: str
    accessor: str
    description: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    created: float = 0.0

    def to_doc(self) -> dict[str, Any]:
        """The entry as the table's record stores it."""
        return {
            "path": self.path,
            "type": self.type,
            "uuid": self.uuid,
            "accessor": self.accessor,
            "description": self.description,
            "config": dict(self.config),
            "created": self.created,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Self:
        """The entry ``doc`` (from :meth:`to_doc`) stores."""
        return cls(**cls._fields(doc))

    @classmethod
    def _fields(cls, doc: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "path": str(doc["path"]),
            "type": str(doc["type"]),
            "uuid": str(doc["uuid"]),
            "accessor": str(doc["accessor"]),
            "description": str(doc.get("description", "")),
            "config": dict(doc.get("config") or {}),
            "created": float(doc.get("created", 0.0)),
        }

    def _listing(self, config: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """Vault's listing of the entry (``sys/mounts``, ``sys/auth``) with ``config`` and ``extra``."""
        return {
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": int(self.config.get("default_lease_ttl", 0)),
                "max_lease_ttl": int(self.config.get("max_lease_ttl", 0)),
                **config,
            },
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "plugin_version": "",
            "seal_wrap": False,
            "type": self.type,
            "uuid": self.uuid,
            **extra,
        }


class _Stored(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def storage_prefix(self) -> str: ...

    def to_doc(self) -> dict[str, Any]: ...


E = TypeVar("E", bound=_Stored)


class PathTable(Generic[E]):
    """Entries by path, cached in memory, stored as one JSON record at ``_key``."""

    _key: ClassVar[str]
    """Where the table's record is stored (``core/mounts``, ``core/auth``)."""
    _name: ClassVar[str]
    """What the table is called in errors."""

    def __init__(self, *, storage: StorageBackend, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock
        self._entries: dict[str, E] = {}
        self._nested = False
        self._loaded = False
        self._loaded_at = float("-inf")
        self.reload_on_miss = True
        """Re-read the table when a request names an unknown path (off while changes are announced)."""

    def _parse_entry(self, doc: Mapping[str, Any]) -> E:
        """The entry ``doc`` stores (each table knows its entry type)."""
        raise NotImplementedError

    async def load(self) -> None:
        self._set(self._parse(await self._storage.get(self._key)))

    async def ensure_loaded(self) -> None:
        if not self._loaded:
            await self.load()

    async def reload_if_stale(self) -> bool:
        """Re-read the table if it was read more than a second ago; True if it was."""
        if not self.reload_on_miss or self._clock() - self._loaded_at < _RELOAD_INTERVAL:
            return False
        await self.load()
        return True

    def entries(self) -> list[E]:
        """Every entry, sorted by path."""
        return [self._entries[path] for path in sorted(self._entries)]

    def get(self, path: str) -> E | None:
        """The entry at exactly ``path`` (normalized, with its trailing slash)."""
        return self._entries.get(path)

    def resolve(self, path: str) -> tuple[E, str] | None:
        """The entry with the longest prefix of ``path``, and the rest of the path."""
        entries = self._entries
        if not self._nested:
            end = path.find("/")
            while end >= 0:
                entry = entries.get(path[: end + 1])
                if entry is not None:
                    return entry, path[end + 1 :]
                end = path.find("/", end + 1)
            entry = entries.get(path + "/")
            return None if entry is None else (entry, "")
        trimmed = path[:-1] if path.endswith("/") else path
        entry = entries.get(trimmed + "/")
        if entry is not None:
            return entry, ""
        end = trimmed.rfind("/")
        while end >= 0:
            entry = entries.get(path[: end + 1])
            if entry is not None:
                return entry, path[end + 1 :]
            end = trimmed.rfind("/", 0, end)
        return None

    async def resolve_fresh(self, path: str) -> tuple[E, str] | None:
        """Like :meth:`resolve`, re-reading the table once if nothing matched and it may be stale."""
        await self.ensure_loaded()
        found = self.resolve(path)
        if found is None and await self.reload_if_stale():
            found = self.resolve(path)
        return found

    @staticmethod
    def _refuse_overlap(entries: Mapping[str, E], path: str, *, moving: str | None = None) -> None:
        """Refuse ``path`` if it is a prefix of an entry's path or has one (``moving`` aside)."""
        for existing in entries:
            if existing != moving and (path.startswith(existing) or existing.startswith(path)):
                raise InvalidRequestError(f"path is already in use at {existing}")

    async def _change(self, change: Callable[[dict[str, E]], E]) -> E:
        """Apply ``change`` to the stored table in one transaction; return what it returns."""
        async with self._storage.transaction() as tx:
            entries = self._parse(await tx.get(self._key, for_update=True))
            entry = change(entries)
            await tx.put(self._key, self._dump(entries))
        self._set(entries)
        return entry

    async def _remove(self, path: str) -> E | None:
        """Remove the entry at ``path`` and delete all its data; ``None`` if there was none."""
        async with self._storage.transaction() as tx:
            entries = self._parse(await tx.get(self._key, for_update=True))
            removed = entries.pop(path, None)
            if removed is not None:
                await tx.put(self._key, self._dump(entries))
                await tx.delete_prefix(removed.storage_prefix)
        self._set(entries)
        return removed

    def _set(self, entries: dict[str, E]) -> None:
        self._entries = entries
        # enabling refuses overlapping paths, so normally no path is a prefix of another and
        # resolve() may stop at the first (shortest) match; a table written otherwise is still
        # resolved by the longest prefix
        self._nested = any(a != b and b.startswith(a) for a in entries for b in entries)
        self._loaded = True
        self._loaded_at = self._clock()

    def _parse(self, raw: bytes | None) -> dict[str, E]:
        if raw is None:
            return {}
        try:
            doc = orjson.loads(raw)
            return {str(path): self._parse_entry(item) for path, item in doc["mounts"].items()}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise StorageError(f"the stored {self._name} is malformed") from None

    @staticmethod
    def _dump(entries: Mapping[str, E]) -> bytes:
        return orjson.dumps({"v": 1, "mounts": {p: e.to_doc() for p, e in sorted(entries.items())}})
