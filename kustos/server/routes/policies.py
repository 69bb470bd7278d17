"""``sys/policies/acl/*``, ``sys/policy/*`` and ``sys/capabilities*``: the policy API.

Two spellings of policy CRUD, both as in Vault (hvac uses both):

* ``sys/policies/acl/<name>``: GET ``{"data": {"name", "policy"}}``, PUT/POST
  ``{"policy": "<hcl or json>"}``, DELETE; LIST (or GET ``?list=true``) on
  ``sys/policies/acl`` answers ``{"data": {"keys": [...]}}``.
* ``sys/policy/<name>`` (legacy): GET ``{"name", "rules"}``, PUT ``{"policy"}``
  (or ``{"rules"}``), DELETE; GET ``sys/policy`` lists ``{"policies", "keys"}``.

``root`` cannot be read as a document, written or deleted; ``default`` cannot
be deleted. Every call needs the capability of its method on its own path
(read, update, delete, list), through the one authorizer.

``sys/capabilities-self`` (the caller's token), ``sys/capabilities``
(``token``) and ``sys/capabilities-accessor`` (``accessor``) answer, per
path in ``paths``, the capabilities Vault would list.
"""

from __future__ import annotations

from typing import Any, Final

from kustos.errors import InvalidRequestError, NotFoundError
from kustos.server.access import require
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.core import Core
from kustos.server.params import str_list_param
from kustos.server.tokens import TokenEntry

__all__ = ["CapabilitiesApi", "PolicyApi"]

_ACL: Final = "sys/policies/acl"
_LEGACY: Final = "sys/policy"


class PolicyApi:
    """Answers ``sys/policies/acl*`` or ``sys/policy*`` (one instance per spelling)."""

    def __init__(self, core: Core, *, legacy: bool, prefix: str) -> None:
        self._core = core
        self._legacy = legacy
        self._base = _LEGACY if legacy else _ACL
        self.prefix = prefix
        """What the dispatcher matches: a ``/``-terminated prefix, or an exact path."""

    def route(self, path: str) -> str:
        trimmed = path.rstrip("/")
        if trimmed == self._base:
            return trimmed
        if trimmed.startswith(self._base + "/"):
            return f"{self._base}/:name"
        return "sys/unknown"

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    @staticmethod
    def needs_token(path: str) -> bool:
        return True

    def _require(self, call: Call, capability: str) -> None:
        require(self._core.authorizer, call.require_token(), call.path.rstrip("/"), capability)

    async def handle(self, call: Call) -> Reply:
        path = call.path.rstrip("/")
        if path == self._base:
            return await self._list(call)
        if not path.startswith(self._base + "/"):
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        name = path[len(self._base) + 1 :]
        if call.method == "GET":
            return await self._read(call, name)
        if call.method in ("PUT", "POST"):
            return await self._write(call, name)
        if call.method == "DELETE":
            self._require(call, "delete")
            done = answer_at_commit(Reply.no_content())
            await self._core.policies.delete(name)
            return done
        raise unsupported(call)

    async def _list(self, call: Call) -> Reply:
        if call.method == "LIST" or (self._legacy and call.method == "GET"):
            self._require(call, "list" if call.method == "LIST" else "read")
            names = self._core.policies.names()
            if self._legacy:
                data: dict[str, Any] = {"policies": names, "keys": names}
                return Reply(data=data, top=data)
            return Reply(data={"keys": names})
        raise unsupported(call)

    async def _read(self, call: Call, name: str) -> Reply:
        self._require(call, "read")
        store = self._core.policies
        policy = store.get(name)
        if policy is None:
            raise NotFoundError(f"no policy named {name!r}")
        text = store.text(policy.name)
        if self._legacy:
            data: dict[str, Any] = {"name": policy.name, "rules": text}
            return Reply(data=data, top=data)
        return Reply(data={"name": policy.name, "policy": text})

    async def _write(self, call: Call, name: str) -> Reply:
        body = call.json()
        text = body.get("policy")
        if text is None and self._legacy:
            text = body.get("rules")
        if not isinstance(text, str):
            raise InvalidRequestError(
                "missing required parameter 'policy' (the policy document, HCL or JSON, as a string)"
            )
        self._require(call, "update")
        done = answer_at_commit(Reply.no_content())
        await self._core.policies.write(name, text)
        return done


class CapabilitiesApi:
    """Answers ``sys/capabilities``, ``sys/capabilities-self`` and ``sys/capabilities-accessor``."""

    def __init__(self, core: Core, *, prefix: str) -> None:
        self._core = core
        self.prefix = prefix
        """One of the three exact paths (the dispatcher matches a prefix without ``/`` exactly)."""

    @staticmethod
    def route(path: str) -> str:
        trimmed = path.rstrip("/")
        return (
            trimmed
            if trimmed in ("sys/capabilities", "sys/capabilities-self", "sys/capabilities-accessor")
            else "sys/unknown"
        )

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    @staticmethod
    def needs_token(path: str) -> bool:
        return True

    async def handle(self, call: Call) -> Reply:
        path = call.path.rstrip("/")
        if path not in ("sys/capabilities", "sys/capabilities-self", "sys/capabilities-accessor"):
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        caller = call.require_token()
        require(self._core.authorizer, caller, path, "update")
        body = call.json()
        raw_paths = body.get("paths") if body.get("paths") is not None else body.get("path")
        paths = str_list_param(raw_paths, field="paths")
        if not paths:
            raise InvalidRequestError("missing required parameter 'paths'")
        target = await self._target(call, path, body, caller)
        acl = self._core.policies.acl(target.policies)
        answer: dict[str, Any] = {p: acl.capabilities_response(p.lstrip("/")) for p in paths}
        if len(paths) == 1:
            answer["capabilities"] = answer[paths[0]]
        return Reply(data=answer, top=answer)

    async def _target(
        self, call: Call, path: str, body: dict[str, Any], caller: TokenEntry
    ) -> TokenEntry:
        if path == "sys/capabilities-self":
            return caller
        field = "token" if path == "sys/capabilities" else "accessor"
        value = body.get(field)
        if not isinstance(value, str) or not value:
            raise InvalidRequestError(f"missing required parameter '{field}'")
        tokens = self._core.tokens
        entry = await (tokens.lookup(value) if field == "token" else tokens.lookup_accessor(value))
        if entry is None:
            raise InvalidRequestError("invalid token" if field == "token" else "invalid accessor")
        return entry
