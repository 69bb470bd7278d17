"""``sys/audit`` and ``sys/audit-hash``: manage audit devices and hash values the way they write them.

As in Vault (and hvac's ``sys.enable_audit_device`` & co.):

* ``GET sys/audit`` lists the enabled devices (``{"file/": {"type", "description", "options", "path", "local"}}``);
* ``PUT sys/audit/<path>`` ``{"type": "file", "description": "...", "options": {"file_path": "/abs/path"}}``
  enables one (the file must be writable now; ``fsync`` and ``mode`` are optional);
* ``DELETE sys/audit/<path>`` disables one;
* ``POST sys/audit-hash/<path>`` ``{"input": "value"}`` answers ``{"hash": "hmac-sha256:..."}``,
  the string that device writes for the value, to search the file for it.

Managing devices needs ``sudo`` on the path (besides read/update/delete), as in Vault.
"""

from __future__ import annotations

from typing import Any, Final

from kustos.errors import InvalidRequestError, NotFoundError
from kustos.server.access import require
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.core import Core

__all__ = ["AuditApi"]

_DEVICES: Final = "sys/audit"
_HASH: Final = "sys/audit-hash/"


class AuditApi:
    """Answers ``sys/audit``, ``sys/audit/<path>`` and ``sys/audit-hash/<path>``."""

    def __init__(self, core: Core, *, prefix: str) -> None:
        self._core = core
        self.prefix = prefix
        """``sys/audit`` (exact), ``sys/audit/`` or ``sys/audit-hash/``."""

    @staticmethod
    def route(path: str) -> str:
        trimmed = path.rstrip("/")
        if trimmed == _DEVICES:
            return trimmed
        if trimmed.startswith(_DEVICES + "/"):
            return "sys/audit/:path"
        if trimmed.startswith(_HASH):
            return "sys/audit-hash/:path"
        return "sys/unknown"

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    @staticmethod
    def needs_token(path: str) -> bool:
        return True

    def _require(self, call: Call, *capabilities: str) -> None:
        token = call.require_token()
        for capability in capabilities:
            require(self._core.authorizer, token, call.path.rstrip("/"), capability)

    async def handle(self, call: Call) -> Reply:
        path = call.path.rstrip("/")
        if path == _DEVICES:
            if call.method != "GET":
                raise unsupported(call)
            self._require(call, "read", "sudo")
            devices: dict[str, Any] = self._core.audit.list()
            return Reply(data=devices, top=devices)
        if path.startswith(_DEVICES + "/"):
            return await self._device(call, path[len(_DEVICES) + 1 :])
        if path.startswith(_HASH):
            if call.method not in ("POST", "PUT"):
                raise unsupported(call)
            value = call.json().get("input")
            if not isinstance(value, str):
                raise InvalidRequestError("missing required parameter 'input' (the string to hash)")
            self._require(call, "update")
            data: dict[str, Any] = {"hash": self._core.audit.hash(path[len(_HASH) :], value)}
            return Reply(data=data, top=data)
        raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')

    async def _device(self, call: Call, name: str) -> Reply:
        audit = self._core.audit
        if call.method in ("PUT", "POST"):
            body = call.json()
            device_type = body.get("type")
            if not isinstance(device_type, str) or not device_type:
                raise InvalidRequestError(
                    "missing required parameter 'type' (this server supports 'file')"
                )
            description = body.get("description") or ""
            if not isinstance(description, str):
                raise InvalidRequestError("'description' must be a string")
            self._require(call, "update", "sudo")
            done = answer_at_commit(Reply.no_content())
            await audit.enable(
                name, type=device_type, description=description, options=body.get("options")
            )
            return done
        if call.method == "DELETE":
            self._require(call, "delete", "sudo")
            done = answer_at_commit(Reply.no_content())
            await audit.disable(name)
            return done
        raise unsupported(call)
