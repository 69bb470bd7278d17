"""``sys/auth`` (enable, list, disable auth methods) and ``auth/<path>/...`` (the enabled methods).

Three :class:`~kustos.server.routes.PathApi` areas share one
:class:`~kustos.server.auth.AuthTable`: :class:`SysAuthApi` (prefixes
``sys/auth`` and ``sys/auth/``, tried before ``sys/``) and :class:`AuthMethodsApi` (prefix
``auth/``, tried after ``auth/token/``), which sends each request to the
method type of the longest matching path. Login endpoints need no token:
the dispatcher only looks a token up when one is sent. Shapes follow Vault:
``GET sys/auth`` lists ``token/`` and every enabled method under ``data``
and at the top level; ``POST sys/auth/<path> {"type": ...}`` enables;
``DELETE sys/auth/<path>`` disables, deleting the method's records and
revoking the tokens it issued.
"""

from __future__ import annotations

from typing import Any, Final

from kustos.errors import InvalidRequestError, NotFoundError, StorageError
from kustos.server.access import is_login_path, require
from kustos.server.auth import (
    METHOD_TYPES,
    AuthMethod,
    AuthTable,
    MethodDeps,
    build_methods,
    normalize_auth_path,
)
from kustos.server.auth.issuing import str_field
from kustos.server.auth.mounts import TOKEN_MOUNT
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.core import Core
from kustos.server.params import duration_param
from kustos.server.tokens import TokenEntry

__all__ = ["AuthMethodsApi", "SysAuthApi"]

_TOKEN_ID_PREFIX: Final = "auth/token/id/"  # noqa: S105 - a storage prefix, not a secret


class SysAuthApi:
    """Answers ``sys/auth`` and ``sys/auth/<path>`` (one instance per prefix: the dispatcher
    matches a prefix without a trailing ``/`` exactly)."""

    def __init__(self, core: Core, table: AuthTable, *, prefix: str) -> None:
        self.prefix = prefix
        self._core = core
        self._table = table

    @staticmethod
    def route(path: str) -> str:
        return "sys/auth" if path.rstrip("/") == "sys/auth" else "sys/auth/:path"

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    @staticmethod
    def needs_token(path: str) -> bool:
        return True

    async def handle(self, call: Call) -> Reply:
        path = call.path.rstrip("/")
        if path == "sys/auth":
            return await self._list(call)
        if not path.startswith("sys/auth/"):
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        await self._table.ensure_loaded()
        mount_path = normalize_auth_path(path[len("sys/auth/") :])
        if call.method in ("POST", "PUT"):
            return await self._enable(call, mount_path)
        if call.method == "DELETE":
            return await self._disable(call, mount_path)
        if call.method == "GET":
            require(self._core.authorizer, call.require_token(), path, "read")
            await self._table.load()
            for mount in self._table.entries():
                if mount.path == mount_path:
                    return Reply(data=mount.describe())
            raise InvalidRequestError(f"no auth method enabled at {mount_path}")
        raise unsupported(call)

    async def _list(self, call: Call) -> Reply:
        if call.method not in ("GET", "LIST"):
            raise unsupported(call)
        require(self._core.authorizer, call.require_token(), "sys/auth", "read")
        await self._table.load()
        listing = {TOKEN_MOUNT.path: TOKEN_MOUNT.describe()}
        listing.update({m.path: m.describe() for m in self._table.entries()})
        return Reply(data=listing, top=dict(listing))

    async def _enable(self, call: Call, mount_path: str) -> Reply:
        token = call.require_token()
        require(self._core.authorizer, token, call.path.rstrip("/"), "update")
        require(self._core.authorizer, token, call.path.rstrip("/"), "sudo")
        body = call.json()
        method_type = str_field(body, "type").strip()
        if not method_type:
            raise InvalidRequestError(
                f'missing auth method type: give "type" ({", ".join(METHOD_TYPES)})'
            )
        if method_type == "token":
            raise InvalidRequestError(
                "the token auth method is built in at auth/token/; it cannot be enabled again"
            )
        if method_type not in METHOD_TYPES:
            raise InvalidRequestError(
                f'unknown auth method type "{method_type[:64]}"; supported: {", ".join(METHOD_TYPES)}'
            )
        raw_config = body.get("config") or {}
        if not isinstance(raw_config, dict):
            raise InvalidRequestError("config must be a JSON object")
        config: dict[str, Any] = {}
        for name in ("default_lease_ttl", "max_lease_ttl"):
            if raw_config.get(name) not in (None, ""):
                config[name] = duration_param(raw_config[name], field=f"config.{name}")
        done = answer_at_commit(Reply.no_content())
        await self._table.enable(
            mount_path, type=method_type, description=str_field(body, "description"), config=config
        )
        return done

    async def _disable(self, call: Call, mount_path: str) -> Reply:
        token = call.require_token()
        require(self._core.authorizer, token, call.path.rstrip("/"), "delete")
        require(self._core.authorizer, token, call.path.rstrip("/"), "sudo")
        done = answer_at_commit(Reply.no_content())
        removed = await self._table.disable(mount_path)
        if removed is not None:
            await self._revoke_issued(f"auth/{removed.path}")
        return done

    async def _revoke_issued(self, path_prefix: str) -> None:
        """Revoke every token a disabled method issued (their ``path`` starts with its prefix)."""
        issued: list[TokenEntry] = []
        async for _key, raw in self._core.storage.scan(_TOKEN_ID_PREFIX):
            try:
                entry = TokenEntry.from_json(raw)
            except StorageError:
                continue
            if entry.path.startswith(path_prefix):
                issued.append(entry)
        for entry in issued:
            await self._core.tokens.revoke(entry)


class AuthMethodsApi:
    """Answers ``auth/<path>/...`` for every enabled method (``auth/token/`` is :class:`TokenApi`)."""

    prefix = "auth/"

    def __init__(self, core: Core) -> None:
        self._core = core
        self._table = core.auth_table
        deps = MethodDeps(
            storage=core.storage,
            barrier=core.barrier,
            tokens=core.tokens,
            clock=core.clock,
            authorizer=core.authorizer,
        )
        self._methods: dict[str, AuthMethod] = build_methods(deps)
        self.sys_apis = (
            SysAuthApi(core, self._table, prefix="sys/auth"),
            SysAuthApi(core, self._table, prefix="sys/auth/"),
        )
        """The ``sys/auth`` and ``sys/auth/<path>`` areas, sharing this table; list them before ``sys/``."""

    def route(self, path: str) -> str:
        found = self._table.resolve(path[len("auth/") :])
        if found is None:
            return "auth/unknown"
        mount, rest = found
        method = self._methods.get(mount.type)
        return f"auth/{mount.type}/{method.route(rest)}" if method is not None else "auth/unknown"

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    @staticmethod
    def needs_token(path: str) -> bool:
        """Logins (``auth/<mount>/login``, ``auth/<mount>/login/<name>``) take no token."""
        return not is_login_path(path)

    async def handle(self, call: Call) -> Reply:
        found = await self._table.resolve_fresh(call.path[len("auth/") :])
        if found is None:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        mount, rest = found
        method = self._methods.get(mount.type)
        if method is None:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        return await method.handle(call, mount, rest)
