"""``sys/policies/password/*``: Vault's password policies, and passwords generated from them.

::

    sys/policies/password               LIST            policy names
    sys/policies/password/<name>        PUT/POST {policy: "<hcl>"}, GET {policy}, DELETE
    sys/policies/password/<name>/generate  GET          {password}

The policy format and the generator are in :mod:`kustos.server.passwords`.
Each call needs its method's capability on its own path.
"""

from __future__ import annotations

from typing import Final

from kustos.errors import InvalidRequestError, NotFoundError
from kustos.server.access import require
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.core import Core
from kustos.server.passwords import validate_policy_name

__all__ = ["PasswordPolicyApi"]

_BASE: Final = "sys/policies/password"


class PasswordPolicyApi:
    """Answers ``sys/policies/password`` (exact, for LIST) or ``sys/policies/password/*``."""

    def __init__(self, core: Core, *, prefix: str) -> None:
        self._core = core
        self.prefix = prefix

    @staticmethod
    def route(path: str) -> str:
        trimmed = path.rstrip("/")
        if trimmed == _BASE:
            return _BASE
        return f"{_BASE}/:name/generate" if trimmed.endswith("/generate") else f"{_BASE}/:name"

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    @staticmethod
    def needs_token(path: str) -> bool:
        return True

    def _require(self, call: Call, capability: str) -> None:
        require(self._core.authorizer, call.require_token(), call.path.rstrip("/"), capability)

    async def handle(self, call: Call) -> Reply:
        passwords = self._core.passwords
        path = call.path.rstrip("/")
        if path == _BASE:
            if call.method != "LIST":
                raise unsupported(call)
            self._require(call, "list")
            names = await passwords.names()
            if not names:
                raise NotFoundError("")
            return Reply(data={"keys": names})
        rest = path[len(_BASE) + 1 :]
        name, _, action = rest.partition("/")
        validate_policy_name(name)
        if action == "generate":
            if call.method != "GET":
                raise unsupported(call)
            self._require(call, "read")
            password = await passwords.generate(name)
            return Reply(data={"password": password.reveal()})
        if action:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        if call.method == "GET":
            self._require(call, "read")
            text = await passwords.read_text(name)
            if text is None:
                raise NotFoundError("")
            return Reply(data={"policy": text})
        if call.method in ("PUT", "POST"):
            self._require(call, "update")
            body = call.json()
            unknown = sorted(set(body) - {"policy"})
            if unknown:
                raise InvalidRequestError(f"unknown parameter(s): {', '.join(unknown[:10])}")
            text = body.get("policy")
            if not isinstance(text, str):
                raise InvalidRequestError("policy must be a string of HCL")
            done = answer_at_commit(Reply.no_content())
            await passwords.write(name, text)
            return done
        if call.method == "DELETE":
            self._require(call, "delete")
            done = answer_at_commit(Reply.no_content())
            await passwords.delete(name)
            return done
        raise unsupported(call)
