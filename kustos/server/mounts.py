"""The mount table: which secrets engine answers under which path prefix.

Vault routes ``/v1/<path>`` to the mount with the longest matching prefix;
so does Kustos. The table is one JSON record at ``core/mounts`` (mount paths
and options are not secret), cached in memory and re-read when a request
names an unknown mount (another replica may have added it). Each mount has
a random uuid; its engine keeps its data under ``logical/<uuid>/``, so a
mount can be disabled (all its data deleted) or, later, moved without
touching the data, and ciphertexts are bound to the uuid, not the path.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from kustos.errors import InvalidRequestError, StorageError
from kustos.server.times import Clock
from kustos.store.base import StorageBackend

__all__ = ["MOUNTS_KEY", "RESERVED_PREFIXES", "MountEntry", "MountTable", "normalize_mount_path"]

MOUNTS_KEY: Final = "core/mounts"
RESERVED_PREFIXES: Final = (
    "sys/",
    "auth/",
    "identity/",
    "cubbyhole/",
    "audit/",
    "cert.pem/",
    "verify/",
    "rotate/",
)
_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_PATH: Final = 256
_RELOAD_INTERVAL: Final = 1.0


@dataclass(frozen=True)
class MountEntry:
    """One mounted secrets engine."""

    path: str
    type: str
    uuid: str
    accessor: str
    description: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    created: float = 0.0
    storage_prefix: str = field(init=False, repr=False, compare=False)
    """Where this mount's engine keeps its data: ``logical/<uuid>/``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "storage_prefix", f"logical/{self.uuid}/")

    def to_doc(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "uuid": self.uuid,
            "accessor": self.accessor,
            "description": self.description,
            "options": dict(self.options),
            "config": dict(self.config),
            "created": self.created,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> MountEntry:
        return cls(
            path=str(doc["path"]),
            type=str(doc["type"]),
            uuid=str(doc["uuid"]),
            accessor=str(doc["accessor"]),
            description=str(doc.get("description", "")),
            options={str(k): str(v) for k, v in dict(doc.get("options") or {}).items()},
            config=dict(doc.get("config") or {}),
            created=float(doc.get("created", 0.0)),
        )

    def describe(self) -> dict[str, Any]:
        """The mount as ``sys/mounts`` shows it."""
        return {
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": int(self.config.get("default_lease_ttl", 0)),
                "max_lease_ttl": int(self.config.get("max_lease_ttl", 0)),
                "force_no_cache": bool(self.config.get("force_no_cache", False)),
            },
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "options": dict(self.options) or None,
            "plugin_version": "",
            "running_plugin_version": "",
            "running_sha256": "",
            "seal_wrap": False,
            "type": self.type,
            "uuid": self.uuid,
        }


def normalize_mount_path(path: str) -> str:
    """``secret`` or ``secret/`` → ``secret/``; raise :class:`InvalidRequestError` if malformed."""
    text = path.strip()
    if not text or text == "/":
        raise InvalidRequestError("mount path is empty")
    if len(text) > _MAX_PATH:
        raise InvalidRequestError(f"mount path is longer than {_MAX_PATH} characters")
    text = text.strip("/")
    for segment in text.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidRequestError(
                f"invalid mount path {text!r}: segments are 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
    normalized = text + "/"
    if any(normalized.startswith(p) for p in RESERVED_PREFIXES):
        raise InvalidRequestError(f"cannot mount at {normalized!r}: the prefix is reserved")
    return normalized


class MountTable:
    """The mount table, cached in memory, stored at ``core/mounts``."""

    def __init__(self, *, storage: StorageBackend, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock
        self._mounts: dict[str, MountEntry] = {}
        self._nested = False
        self._loaded_at = float("-inf")
        self.reload_on_miss = True
        """Re-read the table when a request names an unknown mount (off while changes are announced)."""

    async def load(self) -> None:
        raw = await self._storage.get(MOUNTS_KEY)
        self._set(self._parse(raw))

    def _set(self, mounts: dict[str, MountEntry]) -> None:
        self._mounts = mounts
        # enable() refuses overlapping mounts, so normally no mount path is a prefix of another
        # and resolve() may stop at the first (shortest) match; a table written otherwise is
        # still resolved by the longest prefix
        self._nested = any(a != b and b.startswith(a) for a in mounts for b in mounts)
        self._loaded_at = self._clock()

    @staticmethod
    def _parse(raw: bytes | None) -> dict[str, MountEntry]:
        if raw is None:
            return {}
        try:
            doc = orjson.loads(raw)
            return {path: MountEntry.from_doc(item) for path, item in doc["mounts"].items()}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise StorageError("the stored mount table is malformed") from None

    async def reload_if_stale(self) -> bool:
        """Re-read the table if it was read more than a second ago; True if it was."""
        if not self.reload_on_miss or self._clock() - self._loaded_at < _RELOAD_INTERVAL:
            return False
        await self.load()
        return True

    def entries(self) -> list[MountEntry]:
        return sorted(self._mounts.values(), key=lambda m: m.path)

    def get(self, path: str) -> MountEntry | None:
        return self._mounts.get(path)

    def resolve(self, path: str) -> tuple[MountEntry, str] | None:
        """The mount with the longest prefix of ``path``, and the rest of the path."""
        mounts = self._mounts
        if not self._nested:
            end = path.find("/")
            while end >= 0:
                entry = mounts.get(path[: end + 1])
                if entry is not None:
                    return entry, path[end + 1 :]
                end = path.find("/", end + 1)
            entry = mounts.get(path + "/")
            return None if entry is None else (entry, "")
        trimmed = path[:-1] if path.endswith("/") else path
        entry = mounts.get(trimmed + "/")
        if entry is not None:
            return entry, ""
        end = trimmed.rfind("/")
        while end >= 0:
            entry = mounts.get(path[: end + 1])
            if entry is not None:
                return entry, path[end + 1 :]
            end = trimmed.rfind("/", 0, end)
        return None

    async def enable(
        self,
        path: str,
        *,
        type: str,
        description: str = "",
        options: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> MountEntry:
        """Add a mount at ``path`` (normalized); refuse overlaps with existing mounts."""
        normalized = normalize_mount_path(path)

        def add(mounts: dict[str, MountEntry]) -> MountEntry:
            for existing in mounts:
                if normalized.startswith(existing) or existing.startswith(normalized):
                    raise InvalidRequestError(f"path is already in use at {existing}")
            entry = MountEntry(
                path=normalized,
                type=type,
                uuid=str(uuid.uuid4()),
                accessor=f"{type}_{secrets.token_hex(4)}",
                description=description,
                options=dict(options or {}),
                config=dict(config or {}),
                created=self._clock(),
            )
            mounts[normalized] = entry
            return entry

        return await self._change(add)

    async def tune(
        self, path: str, *, description: str | None, config: Mapping[str, Any]
    ) -> MountEntry:
        normalized = normalize_mount_path(path)

        def tune(mounts: dict[str, MountEntry]) -> MountEntry:
            entry = mounts.get(normalized)
            if entry is None:
                raise InvalidRequestError(f"no mount at {normalized}")
            merged = {**entry.config, **config}
            updated = MountEntry(
                path=entry.path,
                type=entry.type,
                uuid=entry.uuid,
                accessor=entry.accessor,
                description=entry.description if description is None else description,
                options=entry.options,
                config=merged,
                created=entry.created,
            )
            mounts[normalized] = updated
            return updated

        return await self._change(tune)

    async def move(self, source: str, target: str) -> MountEntry:
        """Move the mount at ``source`` to ``target``; its data stays (it is keyed by the uuid)."""
        old, new = normalize_mount_path(source), normalize_mount_path(target)

        def move(mounts: dict[str, MountEntry]) -> MountEntry:
            entry = mounts.get(old)
            if entry is None:
                raise InvalidRequestError(f"no secrets engine is mounted at {old}")
            for existing in mounts:
                if existing != old and (new.startswith(existing) or existing.startswith(new)):
                    raise InvalidRequestError(f"path is already in use at {existing}")
            moved = MountEntry(
                path=new,
                type=entry.type,
                uuid=entry.uuid,
                accessor=entry.accessor,
                description=entry.description,
                options=entry.options,
                config=entry.config,
                created=entry.created,
            )
            del mounts[old]
            mounts[new] = moved
            return moved

        return await self._change(move)

    async def disable(self, path: str) -> MountEntry | None:
        """Remove the mount and delete all of its data; ``None`` if nothing was mounted there."""
        normalized = normalize_mount_path(path)
        removed: MountEntry | None = None
        async with self._storage.transaction() as tx:
            mounts = self._parse(await tx.get(MOUNTS_KEY, for_update=True))
            removed = mounts.pop(normalized, None)
            if removed is not None:
                await tx.put(MOUNTS_KEY, self._dump(mounts))
                await tx.delete_prefix(removed.storage_prefix)
        self._set(mounts)
        return removed

    async def _change(self, change: Callable[[dict[str, MountEntry]], MountEntry]) -> MountEntry:
        async with self._storage.transaction() as tx:
            mounts = self._parse(await tx.get(MOUNTS_KEY, for_update=True))
            entry = change(mounts)
            await tx.put(MOUNTS_KEY, self._dump(mounts))
        self._set(mounts)
        return entry

    @staticmethod
    def _dump(mounts: Mapping[str, MountEntry]) -> bytes:
        return orjson.dumps({"v": 1, "mounts": {p: m.to_doc() for p, m in mounts.items()}})
