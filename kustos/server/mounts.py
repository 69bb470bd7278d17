"""The mount table: which secrets engine answers under which path prefix.

Vault routes ``/v1/<path>`` to the mount with the longest matching prefix;
so does Kustos. The table is one JSON record at ``core/mounts`` (mount paths
and options are not secret), cached in memory and re-read when a request
names an unknown mount (another replica may have added it). Each mount has
a random uuid; its engine keeps its data under ``logical/<uuid>/``, so a
mount can be disabled (all its data deleted) or, later, moved without
touching the data, and ciphertexts are bound to the uuid, not the path.
The table itself is the generic :class:`~kustos.server.pathtable.PathTable`,
shared with the auth method table.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from kustos.errors import InvalidRequestError
from kustos.server.pathtable import PathEntry, PathTable, normalize_table_path

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


@dataclass(frozen=True)
class MountEntry(PathEntry):
    """One mounted secrets engine."""

    options: Mapping[str, str] = field(default_factory=dict)
    storage_prefix: str = field(init=False, repr=False, compare=False)
    """Where this mount's engine keeps its data: ``logical/<uuid>/``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "storage_prefix", f"logical/{self.uuid}/")

    def to_doc(self) -> dict[str, Any]:
        return {**super().to_doc(), "options": dict(self.options)}

    @classmethod
    def _fields(cls, doc: Mapping[str, Any]) -> dict[str, Any]:
        options = {str(k): str(v) for k, v in dict(doc.get("options") or {}).items()}
        return {**super()._fields(doc), "options": options}

    def describe(self) -> dict[str, Any]:
        """The mount as ``sys/mounts`` shows it."""
        return self._listing(
            {"force_no_cache": bool(self.config.get("force_no_cache", False))},
            options=dict(self.options) or None,
            running_plugin_version="",
            running_sha256="",
        )


def normalize_mount_path(path: str) -> str:
    """``secret`` or ``secret/`` → ``secret/``; raise :class:`InvalidRequestError` if malformed."""
    normalized = normalize_table_path(path, what="mount path")
    if any(normalized.startswith(p) for p in RESERVED_PREFIXES):
        raise InvalidRequestError(f"cannot mount at {normalized!r}: the prefix is reserved")
    return normalized


class MountTable(PathTable[MountEntry]):
    """The mount table, cached in memory, stored at ``core/mounts``."""

    _key = MOUNTS_KEY
    _name = "mount table"

    def _parse_entry(self, doc: Mapping[str, Any]) -> MountEntry:
        return MountEntry.from_doc(doc)

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
            self._refuse_overlap(mounts, normalized)
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
            updated = replace(
                entry,
                description=entry.description if description is None else description,
                config={**entry.config, **config},
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
            self._refuse_overlap(mounts, new, moving=old)
            moved = replace(entry, path=new)
            del mounts[old]
            mounts[new] = moved
            return moved

        return await self._change(move)

    async def disable(self, path: str) -> MountEntry | None:
        """Remove the mount and delete all of its data; ``None`` if nothing was mounted there."""
        return await self._remove(normalize_mount_path(path))
