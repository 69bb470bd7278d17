"""The auth method table: which auth method answers under which ``auth/<path>/``.

Vault keeps enabled auth methods apart from secrets engines (``sys/auth``
versus ``sys/mounts``); so does Kustos. The table is one JSON record at
``core/auth`` (paths and types are not secret). Each enabled method gets a
random uuid and keeps its records under ``auth-methods/<uuid>/``, encrypted
by the barrier (see :mod:`kustos.server.auth.records`), so disabling a
method deletes exactly its data. The built-in ``token/`` method is listed
but lives in :mod:`kustos.server.tokens`.

The table is cached in memory. Another replica's change reaches it when
that commit is announced (:mod:`kustos.server.replicas` calls
:meth:`AuthTable.load`); without announcements (or while they are down) it
is re-read when a request names a path that is not in it, at most once a
second.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from kustos.errors import InvalidRequestError, StorageError
from kustos.server.times import Clock
from kustos.store.base import StorageBackend

__all__ = [
    "AUTH_TABLE_KEY",
    "METHOD_PREFIX",
    "AuthMount",
    "AuthTable",
    "normalize_auth_path",
]

AUTH_TABLE_KEY: Final = "core/auth"
METHOD_PREFIX: Final = "auth-methods/"
"""Storage prefix of every auth method's records (``auth-methods/<uuid>/...``)."""
_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RELOAD_INTERVAL: Final = 1.0


@dataclass(frozen=True)
class AuthMount:
    """One enabled auth method."""

    path: str
    """``kubernetes/`` (always with a trailing slash, without ``auth/``)."""
    type: str
    uuid: str
    accessor: str
    description: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    created: float = 0.0

    @property
    def storage_prefix(self) -> str:
        return f"{METHOD_PREFIX}{self.uuid}/"

    @property
    def display_prefix(self) -> str:
        """What issued tokens' display names start with (``kubernetes`` for ``auth/kubernetes/``)."""
        return self.path.strip("/").replace("/", "-")

    def to_doc(self) -> dict[str, Any]:
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
    def from_doc(cls, doc: Mapping[str, Any]) -> AuthMount:
        return cls(
            path=str(doc["path"]),
            type=str(doc["type"]),
            uuid=str(doc["uuid"]),
            accessor=str(doc["accessor"]),
            description=str(doc.get("description", "")),
            config=dict(doc.get("config") or {}),
            created=float(doc.get("created", 0.0)),
        )

    def describe(self) -> dict[str, Any]:
        """The method as ``sys/auth`` lists it."""
        return {
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": int(self.config.get("default_lease_ttl", 0)),
                "max_lease_ttl": int(self.config.get("max_lease_ttl", 0)),
                "token_type": "default-service",
            },
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "options": None,
            "plugin_version": "",
            "seal_wrap": False,
            "type": self.type,
            "uuid": self.uuid,
        }


TOKEN_MOUNT: Final = AuthMount(
    path="token/",
    type="token",
    uuid="token",
    accessor="auth_token_builtin",
    description="token based credentials",
)


def normalize_auth_path(path: str) -> str:
    """``kubernetes`` or ``kubernetes/`` → ``kubernetes/``; refuse malformed or reserved paths."""
    text = path.strip().strip("/")
    if not text:
        raise InvalidRequestError("auth method path is empty")
    if len(text) > 256:
        raise InvalidRequestError("auth method path is longer than 256 characters")
    for segment in text.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidRequestError(
                f"invalid auth method path {text!r}: segments are 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
    normalized = text + "/"
    if normalized == "token/" or normalized.startswith("token/"):
        raise InvalidRequestError(
            "the token auth method is built in at auth/token/ and cannot be changed"
        )
    return normalized


class AuthTable:
    """The enabled auth methods, cached in memory, stored at ``core/auth``."""

    def __init__(self, *, storage: StorageBackend, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock
        self._mounts: dict[str, AuthMount] = {}
        self._loaded_at = float("-inf")
        self._loaded = False
        self.reload_on_miss = True
        """Re-read the table when a request names an unknown path (off while changes are announced)."""

    async def load(self) -> None:
        self._mounts = self._parse(await self._storage.get(AUTH_TABLE_KEY))
        self._loaded_at = self._clock()
        self._loaded = True

    async def ensure_loaded(self) -> None:
        if not self._loaded:
            await self.load()

    @staticmethod
    def _parse(raw: bytes | None) -> dict[str, AuthMount]:
        if raw is None:
            return {}
        try:
            doc = orjson.loads(raw)
            return {str(path): AuthMount.from_doc(entry) for path, entry in doc["mounts"].items()}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise StorageError("the stored auth method table is malformed") from None

    def entries(self) -> list[AuthMount]:
        """Enabled methods, sorted by path (without the built-in ``token/``)."""
        return [self._mounts[p] for p in sorted(self._mounts)]

    def resolve(self, path: str) -> tuple[AuthMount, str] | None:
        """``(mount, rest)`` for an API path after ``auth/`` (longest matching mount path)."""
        best: AuthMount | None = None
        for mount_path, mount in self._mounts.items():
            if (path + "/").startswith(mount_path) and (
                best is None or len(mount_path) > len(best.path)
            ):
                best = mount
        if best is None:
            return None
        return best, path[len(best.path) :] if len(path) >= len(best.path) else ""

    async def resolve_fresh(self, path: str) -> tuple[AuthMount, str] | None:
        """Like :meth:`resolve`, re-reading the table once if nothing matched and it may be stale."""
        await self.ensure_loaded()
        found = self.resolve(path)
        if (
            found is None
            and self.reload_on_miss
            and self._clock() - self._loaded_at >= _RELOAD_INTERVAL
        ):
            await self.load()
            found = self.resolve(path)
        return found

    async def enable(
        self, path: str, *, type: str, description: str, config: Mapping[str, Any]
    ) -> AuthMount:
        mount = AuthMount(
            path=path,
            type=type,
            uuid=str(uuid.uuid4()),
            accessor=f"auth_{type}_{secrets.token_hex(4)}",
            description=description,
            config=dict(config),
            created=self._clock(),
        )
        async with self._storage.transaction() as tx:
            mounts = self._parse(await tx.get(AUTH_TABLE_KEY, for_update=True))
            for existing in mounts:
                if existing.startswith(path) or path.startswith(existing):
                    raise InvalidRequestError(f"path is already in use at {existing}")
            mounts[path] = mount
            await tx.put(AUTH_TABLE_KEY, self._dump(mounts))
        self._mounts = mounts
        self._loaded_at = self._clock()
        return mount

    async def disable(self, path: str) -> AuthMount | None:
        """Remove the method at ``path`` and delete all its records; ``None`` if none was there."""
        async with self._storage.transaction() as tx:
            mounts = self._parse(await tx.get(AUTH_TABLE_KEY, for_update=True))
            removed = mounts.pop(path, None)
            if removed is not None:
                await tx.put(AUTH_TABLE_KEY, self._dump(mounts))
                await tx.delete_prefix(removed.storage_prefix)
        self._mounts = mounts
        self._loaded_at = self._clock()
        return removed

    @staticmethod
    def _dump(mounts: Mapping[str, AuthMount]) -> bytes:
        return orjson.dumps({"v": 1, "mounts": {p: m.to_doc() for p, m in sorted(mounts.items())}})
