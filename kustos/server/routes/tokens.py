"""``auth/token/*``: Vault's token auth method (create, lookup, renew, revoke).

Shapes follow Vault: creation and renewal answer in ``auth`` (the new
token in ``client_token``, shown once), lookups in ``data``. A token can
only give its children a subset of its own policies, create orphans
(``no_parent``) or choose a token id if it has ``sudo`` on
``auth/token/create``; only a root token creates root tokens.
``lookup``, ``lookup-accessor`` and ``revoke-orphan`` are root-protected:
they need ``sudo`` on their path besides ``update``. Revoking a token
revokes its children; ``revoke-orphan`` revokes one token and makes its
children orphans.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from kustos.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from kustos.sensitive import Sensitive
from kustos.server.access import require
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.core import Core
from kustos.server.params import bool_param, str_list_param
from kustos.server.times import parse_duration, rfc3339
from kustos.server.tokens import TokenEntry

__all__ = ["TokenApi"]

_Handler = Callable[[Call], Awaitable[Reply]]
_ROUTES: Final = (
    "create",
    "create-orphan",
    "lookup",
    "lookup-self",
    "lookup-accessor",
    "renew",
    "renew-self",
    "renew-accessor",
    "revoke",
    "revoke-self",
    "revoke-accessor",
    "revoke-orphan",
)


def _auth(token: Sensitive[str], entry: TokenEntry, now: float) -> dict[str, Any]:
    policies = list(entry.policies)
    return {
        "client_token": token.reveal(),
        "accessor": entry.accessor,
        "policies": policies,
        "token_policies": policies,
        "identity_policies": None,
        "metadata": dict(entry.meta) or None,
        "lease_duration": entry.remaining(now),
        "renewable": entry.renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": entry.orphan,
        "mfa_requirement": None,
        "num_uses": 0,
    }


def _lookup(entry: TokenEntry, now: float, *, token: Sensitive[str] | None) -> dict[str, Any]:
    return {
        "accessor": entry.accessor,
        "creation_time": int(entry.creation_time),
        "creation_ttl": int(entry.ttl),
        "display_name": entry.display_name,
        "entity_id": "",
        "expire_time": rfc3339(entry.expire_time) if entry.expire_time is not None else None,
        "explicit_max_ttl": int(entry.explicit_max_ttl),
        "id": token.reveal() if token is not None else "",
        "issue_time": rfc3339(entry.creation_time),
        "meta": dict(entry.meta) or None,
        "num_uses": 0,
        "orphan": entry.orphan,
        "path": entry.path,
        "policies": list(entry.policies),
        "renewable": entry.renewable,
        "ttl": entry.remaining(now),
        "type": "service",
    }


class TokenApi:
    """Answers ``auth/token/*``."""

    prefix = "auth/token/"

    def __init__(self, core: Core) -> None:
        self._core = core
        self._handlers: dict[str, _Handler] = {
            "create": self._create,
            "create-orphan": self._create,
            "lookup": self._lookup_other,
            "lookup-self": self._lookup_self,
            "lookup-accessor": self._lookup_accessor,
            "renew": self._renew_other,
            "renew-self": self._renew_self,
            "renew-accessor": self._renew_accessor,
            "revoke": self._revoke_other,
            "revoke-self": self._revoke_self,
            "revoke-accessor": self._revoke_accessor,
            "revoke-orphan": self._revoke_orphan,
        }

    @staticmethod
    def route(path: str) -> str:
        name = path[len("auth/token/") :].rstrip("/")
        return f"auth/token/{name}" if name in _ROUTES else "auth/unknown"

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    @staticmethod
    def needs_token(path: str) -> bool:
        return True

    async def handle(self, call: Call) -> Reply:
        name = call.path[len("auth/token/") :].rstrip("/")
        handler = self._handlers.get(name)
        if handler is None:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        return await handler(call)

    def _require(self, call: Call, capability: str) -> TokenEntry:
        token = call.require_token()
        require(self._core.authorizer, token, call.path.rstrip("/"), capability)
        return token

    async def _create(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        parent = self._require(call, "update")
        sudo = self._core.authorizer(parent, call.path.rstrip("/"), "sudo")
        body = call.json()
        orphan = call.path.rstrip("/").endswith("create-orphan")
        if body.get("no_parent") is not None and bool_param(body["no_parent"], field="no_parent"):
            if not sudo:
                raise PermissionDeniedError(
                    "root or sudo privileges required to create an orphan token"
                )
            orphan = True
        requested = str_list_param(body.get("policies"), field="policies")
        policies = (
            requested or [p for p in parent.policies if p != "default"] or list(parent.policies)
        )
        if not sudo and not set(policies) <= set(parent.policies) | {"default"}:
            raise PermissionDeniedError("child policies must be subset of parent")
        if "root" in policies and not parent.is_root:
            raise PermissionDeniedError("only a root token can create a root token")
        no_default = body.get("no_default_policy") is not None and bool_param(
            body["no_default_policy"], field="no_default_policy"
        )
        if not no_default and "root" not in policies and "default" not in policies:
            policies.append("default")
        ttl = None if body.get("ttl") in (None, "") else parse_duration(body["ttl"], field="ttl")
        explicit_max = (
            0.0
            if body.get("explicit_max_ttl") in (None, "")
            else parse_duration(body["explicit_max_ttl"], field="explicit_max_ttl")
        )
        if parent.expire_time is not None and not orphan:
            # a child never outlives its parent
            left = float(parent.remaining(self._core.clock()))
            ttl = min(ttl, left) if ttl else left
        display_name = body.get("display_name")
        if display_name is not None and not isinstance(display_name, str):
            raise InvalidRequestError("display_name must be a string")
        meta = body.get("meta") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise InvalidRequestError("meta must be a JSON object of string values")
        renewable = (
            True
            if body.get("renewable") is None
            else bool_param(body["renewable"], field="renewable")
        )
        if body.get("num_uses") not in (None, 0, "0"):
            raise InvalidRequestError(
                "num_uses is not supported; limited-use tokens are not available"
            )
        token_id = body.get("id")
        if token_id is not None:
            if not sudo:
                raise PermissionDeniedError("root or sudo privileges required to specify token id")
            if not isinstance(token_id, str):
                raise InvalidRequestError("id must be a string")
        async with self._core.storage.transaction() as tx:
            token, entry = await self._core.tokens.create(
                policies=policies,
                ttl=ttl,
                explicit_max_ttl=explicit_max,
                display_name=display_name,
                meta=meta,
                parent=parent,
                orphan=orphan,
                renewable=renewable,
                token_id=token_id,
                path="auth/token/create-orphan" if orphan else "auth/token/create",
                tx=tx,
            )
            reply = answer_at_commit(Reply(auth=_auth(token, entry, self._core.clock())))
        return reply

    async def _lookup_self(self, call: Call) -> Reply:
        if call.method not in ("GET", "POST", "PUT"):
            raise unsupported(call)
        entry = self._require(call, "read")
        return Reply(data=_lookup(entry, self._core.clock(), token=call.raw_token))

    async def _target(self, call: Call, *, by: str) -> TokenEntry:
        body = call.json()
        value = body.get(by)
        if not isinstance(value, str) or not value:
            raise InvalidRequestError(f"missing required parameter '{by}'")
        tokens = self._core.tokens
        entry = await (tokens.lookup(value) if by == "token" else tokens.lookup_accessor(value))
        if entry is None:
            raise InvalidRequestError("bad token" if by == "token" else "invalid accessor")
        return entry

    def _require_sudo(self, call: Call, capability: str) -> TokenEntry:
        """Root-protected endpoints need ``sudo`` on the path as well as ``capability``."""
        token = self._require(call, capability)
        require(self._core.authorizer, token, call.path.rstrip("/"), "sudo")
        return token

    async def _lookup_other(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require_sudo(call, "update")
        entry = await self._target(call, by="token")
        return Reply(
            data=_lookup(entry, self._core.clock(), token=Sensitive(str(call.json()["token"])))
        )

    async def _lookup_accessor(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require_sudo(call, "update")
        entry = await self._target(call, by="accessor")
        return Reply(data=_lookup(entry, self._core.clock(), token=None))

    async def _renew_self(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        entry = self._require(call, "update")
        body = call.json()
        increment = (
            None
            if body.get("increment") in (None, "")
            else parse_duration(body["increment"], field="increment")
        )
        return await self._renewed(entry, increment, call.raw_token or Sensitive(""))

    async def _renew_other(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require(call, "update")
        entry = await self._target(call, by="token")
        token = Sensitive(str(call.json()["token"]))
        return await self._renewed(entry, self._increment(call), token)

    async def _renew_accessor(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require(call, "update")
        entry = await self._target(call, by="accessor")
        return await self._renewed(entry, self._increment(call), None)

    async def _renewed(
        self, entry: TokenEntry, increment: float | None, token: Sensitive[str] | None
    ) -> Reply:
        """Renew ``entry``; the answer (its ``auth``) is declared before the renewal commits.

        ``token`` is the token to echo (``None``: renewed by accessor, which never reveals it).
        """
        declared: list[Reply] = []

        def answer(renewed: TokenEntry) -> Reply:
            auth = _auth(token or Sensitive(""), renewed, self._core.clock())
            if token is None:
                auth["client_token"] = ""  # an accessor never reveals its token
            return Reply(auth=auth)

        renewed = await self._core.tokens.renew(
            entry,
            increment=increment,
            before_commit=lambda renewed: declared.append(answer_at_commit(answer(renewed))),
        )
        return declared[-1] if declared else answer(renewed)

    @staticmethod
    def _increment(call: Call) -> float | None:
        body = call.json()
        return (
            None
            if body.get("increment") in (None, "")
            else parse_duration(body["increment"], field="increment")
        )

    async def _revoke_orphan(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require_sudo(call, "update")
        entry = await self._target(call, by="token")
        done = answer_at_commit(Reply.no_content())
        await self._core.tokens.revoke_orphan(entry)
        return done

    async def _revoke_self(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        entry = self._require(call, "update")
        done = answer_at_commit(Reply.no_content())
        await self._core.tokens.revoke(entry)
        return done

    async def _revoke_other(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require(call, "update")
        body = call.json()
        value = body.get("token")
        if not isinstance(value, str) or not value:
            raise InvalidRequestError("missing required parameter 'token'")
        entry = await self._core.tokens.lookup(value)
        done = answer_at_commit(Reply.no_content())
        if entry is not None:
            await self._core.tokens.revoke(entry)
        return done

    async def _revoke_accessor(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require(call, "update")
        entry = await self._target(call, by="accessor")
        done = answer_at_commit(Reply.no_content())
        await self._core.tokens.revoke(entry)
        return done
