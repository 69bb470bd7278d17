"""Audit devices inside the server: their configuration in storage, and one entry pair per API call.

``sys/audit/<path>`` enables a device; :class:`Auditing` keeps its
configuration at ``core/audit/<path>`` with the device's HMAC key encrypted
by the barrier (context ``("kustos/audit-key", path)``), opens the devices
once the barrier is unsealed (on start, or on the first request after an
unseal) and feeds them through :class:`kustos.audit.AuditBroker`.

The dispatcher (:mod:`kustos.server.app`) asks :meth:`Auditing.begin` for an
:class:`AuditCall` per request. :meth:`AuditCall.request` writes the request
entry *before* the handler runs; if no device can write it the request is
refused with 503 and nothing is changed (fail closed).
:meth:`AuditCall.response` writes the response entry before the answer is
sent (a request refused earlier, e.g. with 403, still gets both entries);
if that fails the client gets 503 instead of the answer. With no device
enabled nothing is recorded (as in Vault). The status endpoints that answer
without a token and while sealed (``sys/health``, ``sys/seal-status``,
``sys/leader``) are not audited, as in Vault.

A device that cannot be reopened at start (its file was removed, the disk is
read-only) stays in the list as a broken device: every write through it
fails, so the server refuses requests instead of running unaudited.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from kustos.audit import (
    AuditAuth,
    AuditBroker,
    AuditRequest,
    AuditResponse,
    AuditWriteError,
    FileAuditDevice,
    StagedBatch,
    VerifyResult,
    generate_hmac_key,
)
from kustos.crypto.envelope import context
from kustos.errors import InvalidRequestError, NotFoundError
from kustos.sensitive import Sensitive
from kustos.server.barrier import Barrier
from kustos.server.calls import Call, Reply
from kustos.server.errors import error_body
from kustos.server.mounts import MountEntry
from kustos.server.times import Clock, rfc3339
from kustos.server.tokens import TokenEntry
from kustos.store.base import StorageBackend

__all__ = ["AUDIT_PREFIX", "UNAUDITED", "AuditCall", "AuditDeviceConfig", "Auditing"]

AUDIT_PREFIX: Final = "core/audit/"
UNAUDITED: Final = frozenset({"sys/health", "sys/seal-status", "sys/leader"})
"""Paths never audited: status endpoints served without a token and while sealed (as in Vault)."""

_log = logging.getLogger("kustos.server.audit")
_KEY_LABEL: Final = "kustos/audit-key"
_AUTH_CACHE_LIMIT: Final = 1024
_DEVICE_PATH: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FILE_OPTIONS: Final = frozenset({"file_path", "fsync", "mode"})
_OPERATIONS: Final = {
    "GET": "read",
    "HEAD": "read",
    "LIST": "list",
    "POST": "update",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


def normalize_device_path(path: str) -> str:
    """``file`` / ``file/`` -> ``file/``; refuse names that are not one simple segment."""
    name = path.strip().strip("/")
    if not _DEVICE_PATH.fullmatch(name):
        raise InvalidRequestError(
            f"invalid audit device path {path!r}: use 1-64 characters from A-Z, a-z, 0-9, '_', '-', '.'"
        )
    return name + "/"


@dataclass(frozen=True, kw_only=True)
class AuditDeviceConfig:
    """One enabled device as ``sys/audit`` lists it (the key is never part of it)."""

    path: str
    type: str
    description: str
    options: Mapping[str, str]

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "description": self.description,
            "options": dict(self.options),
            "path": self.path,
            "local": False,
        }


class _BrokenDevice:
    """Stands in for a configured device that could not be opened: every write fails."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def hash_value(self, value: str) -> str:
        raise AuditWriteError(self._reason)

    def log_request(self, *, auth: AuditAuth, request: AuditRequest, error: str = "") -> str:
        raise AuditWriteError(self._reason)

    def log_response(
        self, *, auth: AuditAuth, request: AuditRequest, response: AuditResponse, error: str = ""
    ) -> str:
        raise AuditWriteError(self._reason)

    def stage_call(
        self, *, auth: AuditAuth, request: AuditRequest, response: AuditResponse, error: str = ""
    ) -> StagedBatch:
        raise AuditWriteError(self._reason)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def _file_options(raw: object) -> dict[str, str]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidRequestError("'options' must be a JSON object")
    unknown = sorted(set(raw) - _FILE_OPTIONS)
    if unknown:
        raise InvalidRequestError(
            f"unsupported option(s) for a file audit device: {', '.join(unknown)} (supported: file_path, fsync, mode)"
        )
    options = {str(k): str(v) for k, v in raw.items()}
    file_path = options.get("file_path", "")
    if not file_path or not Path(file_path).is_absolute():
        raise InvalidRequestError(
            "options.file_path must be an absolute path to the audit log file"
        )
    if options.get("fsync", "false").lower() not in ("true", "false", "1", "0"):
        raise InvalidRequestError("options.fsync must be true or false")
    mode = options.get("mode", "0600")
    if not re.fullmatch(r"0?[0-7]{3}", mode):
        raise InvalidRequestError("options.mode must be an octal file mode such as 0600")
    return options


class Auditing:
    """The enabled audit devices of this server, and the broker that writes to them."""

    def __init__(self, *, storage: StorageBackend, barrier: Barrier, clock: Clock) -> None:
        self._storage = storage
        self._barrier = barrier
        self._clock = clock
        self.broker = AuditBroker()
        self._configs: dict[str, AuditDeviceConfig] = {}
        self.needs_load = True
        self.active = False
        """True when at least one device is enabled (then every API call is recorded)."""
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        """The loop a flush of staged reads is scheduled on (``None``: none is)."""
        self._auths: dict[int, tuple[TokenEntry, int, AuditAuth]] = {}
        """The AuditAuth last built per token entry (the token store hands out the same entry object for a
        while): the device then reuses that caller's serialized auth part and token HMAC."""

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _open(self, config: AuditDeviceConfig, key: Sensitive[bytes]) -> FileAuditDevice:
        options = config.options
        return FileAuditDevice(
            options["file_path"],
            hmac_key=key,
            fsync=options.get("fsync", "false").lower() in ("true", "1"),
            mode=int(options.get("mode", "0600"), 8),
            clock=self._now,
            epoch_clock=self._clock,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """Reopen every configured device (needs the barrier unsealed: the keys are encrypted)."""
        if self._barrier.sealed or not self._barrier.initialized:
            return
        self.broker.close()
        self.broker = AuditBroker()
        self._configs = {}
        for name in await self._storage.list(AUDIT_PREFIX):
            raw = await self._storage.get(AUDIT_PREFIX + name)
            if raw is None:
                continue
            doc = orjson.loads(raw)
            path = str(doc["path"])
            config = AuditDeviceConfig(
                path=path,
                type=str(doc["type"]),
                description=str(doc.get("description", "")),
                options={str(k): str(v) for k, v in doc["options"].items()},
            )
            self._configs[path] = config
            try:
                plain = await self._barrier.decrypt(
                    base64.b64decode(doc["key"]), context=context(_KEY_LABEL, path)
                )
                device: Any = self._open(config, Sensitive(plain))
            except AuditWriteError as exc:
                _log.error(
                    "audit device cannot be reopened; requests will be refused",
                    extra={"device": path, "error": str(exc)},
                )
                device = _BrokenDevice(f"{path}: {exc}")
            self.broker.enable(path, device)
        self.active = bool(self._configs)
        self.needs_load = False

    def close(self) -> None:
        self.broker.close()

    # -- sys/audit -------------------------------------------------------------------------

    def list(self) -> dict[str, dict[str, Any]]:
        return {path: config.describe() for path, config in sorted(self._configs.items())}

    async def enable(
        self, path: str, *, type: str, description: str, options: object
    ) -> AuditDeviceConfig:
        """Create the device (its file must be writable now), then store its configuration."""
        name = normalize_device_path(path)
        if type != "file":
            raise InvalidRequestError(
                f"unknown audit device type {type!r}; this server supports 'file'"
            )
        if name in self._configs:
            raise InvalidRequestError(f"an audit device is already enabled at {name}")
        config = AuditDeviceConfig(
            path=name, type=type, description=description, options=_file_options(options)
        )
        for other in self._configs.values():
            if other.options.get("file_path") == config.options["file_path"]:
                raise InvalidRequestError(
                    f"audit device {other.path} already writes to {config.options['file_path']}"
                )
        key = generate_hmac_key()
        try:
            device = self._open(config, key)
        except AuditWriteError as exc:
            raise InvalidRequestError(f"cannot enable audit device {name}: {exc}") from None
        sealed_key = self._barrier.encrypt(key.reveal(), context=context(_KEY_LABEL, name))
        doc = {
            "path": name,
            "type": type,
            "description": description,
            "options": dict(config.options),
            "key": base64.b64encode(sealed_key).decode("ascii"),
            "created_time": rfc3339(self._clock()),
        }
        try:
            async with self._storage.transaction() as tx:
                await tx.put(AUDIT_PREFIX + name.rstrip("/"), orjson.dumps(doc))
        except BaseException:
            device.close()
            raise
        self.broker.enable(name, device)
        self._configs[name] = config
        self.active = True
        return config

    async def disable(self, path: str) -> None:
        name = normalize_device_path(path)
        if name not in self._configs:
            return
        async with self._storage.transaction() as tx:
            await tx.delete(AUDIT_PREFIX + name.rstrip("/"))
        del self._configs[name]
        self.broker.disable(name)
        self.active = bool(self._configs)

    def hash(self, path: str, value: str) -> str:
        """``sys/audit-hash/<path>``: the HMAC device ``path`` writes for ``value``."""
        name = normalize_device_path(path)
        if name not in self._configs:
            raise NotFoundError(f"no audit device is enabled at {name}")
        return self.broker.hash_value(name, value)

    async def verify(self, path: str) -> VerifyResult | None:
        """Check device ``path``'s file chain and macs with its own key (``None``: not a file device).

        Reads the whole file in a worker thread (the web console shows the result).
        """
        name = normalize_device_path(path)
        if name not in self._configs:
            raise NotFoundError(f"no audit device is enabled at {name}")
        return await asyncio.to_thread(self.broker.verify, name)

    # -- per request -----------------------------------------------------------------------

    async def begin(
        self, *, scope: Mapping[str, Any], request_id: str, method: str, path: str
    ) -> AuditCall | None:
        """An :class:`AuditCall` for this request, or ``None`` when nothing is audited."""
        if self.needs_load:
            await self.load()
        return self.start(scope=scope, request_id=request_id, method=method, path=path)

    async def flushed(self, call: AuditCall) -> tuple[int, bytes] | None:
        """Wait until the entries ``call`` staged are written (with those of every read staged
        in the same turn of the event loop); ``None``, or the 503 answer to send instead."""
        loop = asyncio.get_running_loop()
        if self._flush_loop is not loop:
            self._flush_loop = loop
            loop.call_soon(self._flush_staged)
        # One turn of the loop: callbacks run in the order they were scheduled, so the flush
        # scheduled before this task's wake-up has run when it resumes (written() checks).
        await asyncio.sleep(0)
        return call.written()

    def _flush_staged(self) -> None:
        self._flush_loop = None
        try:
            self.broker.flush()
        except Exception:  # a batch that was not written says so; its calls get 503
            _log.exception("audit flush failed")

    def start(
        self, *, scope: Mapping[str, Any], request_id: str, method: str, path: str
    ) -> AuditCall | None:
        """:meth:`begin` once the devices are loaded (``needs_load`` is false): no coroutine on the hot path."""
        if not self.active or path.rstrip("/") in UNAUDITED:
            return None
        return AuditCall(
            self.broker, request_id, method, path, scope.get("client"), self._clock, self._auths
        )


def _error_text(body: bytes) -> str:
    try:
        errors = orjson.loads(body).get("errors")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""


@functools.lru_cache(maxsize=1024)
def _issue_time(creation_time: float) -> str:
    """:func:`rfc3339` of a token's creation time (the same few tokens make most calls)."""
    return rfc3339(creation_time)


def _token_auth(entry: TokenEntry | None, token: Sensitive[str] | None, now: float) -> AuditAuth:
    if entry is None:
        return AuditAuth(client_token=token)
    return AuditAuth(
        client_token=token,
        accessor=entry.accessor,
        display_name=entry.display_name,
        policies=entry.policies,
        token_policies=entry.policies,
        metadata=entry.meta,
        token_type="service",  # noqa: S106 - a token type name, not a secret
        token_ttl=entry.remaining(now),
        token_issue_time=_issue_time(entry.creation_time),
    )


def _issued_auth(auth: Mapping[str, Any]) -> AuditAuth:
    token = auth.get("client_token")
    return AuditAuth(
        client_token=Sensitive(token) if isinstance(token, str) and token else None,
        accessor=str(auth.get("accessor") or ""),
        display_name=str(auth.get("display_name") or ""),
        policies=tuple(auth.get("policies") or ()),
        token_policies=tuple(auth.get("token_policies") or ()),
        metadata={str(k): str(v) for k, v in (auth.get("metadata") or {}).items()},
        token_type=str(auth.get("token_type") or ""),
        token_ttl=int(auth.get("lease_duration") or 0),
    )


class AuditCall:
    """The audit entries of one API call: the request entry before it runs, the response entry after.

    ``client`` is the ASGI scope's ``(host, port)`` (or ``None``); ``auths`` is
    :class:`Auditing`'s cache of callers' :class:`AuditAuth`.
    """

    __slots__ = (
        "_auth",
        "_auths",
        "_broker",
        "_call",
        "_client",
        "_clock",
        "_method",
        "_mount",
        "_path",
        "_request",
        "_request_id",
        "staged",
    )

    def __init__(
        self,
        broker: AuditBroker,
        request_id: str,
        method: str,
        path: str,
        client: tuple[str, int] | None,
        clock: Clock,
        auths: dict[int, tuple[TokenEntry, int, AuditAuth]] | None = None,
    ) -> None:
        self._broker = broker
        self._request_id = request_id
        self._method = method
        self._path = path
        self._client = client
        self._clock = clock
        self._auths = {} if auths is None else auths
        self._auth: AuditAuth | None = None
        self._request: AuditRequest | None = None
        self._call: Call | None = None
        self._mount: MountEntry | None = None
        self.staged: list[tuple[str, StagedBatch]] | None = None
        """A read's entries, staged by :meth:`response`: the answer waits for :meth:`Auditing.flushed`."""

    def _describe(
        self, call: Call | None, mount: MountEntry | None
    ) -> tuple[AuditAuth, AuditRequest]:
        data: Mapping[str, Any] | None = None
        token: Sensitive[str] | None = None
        entry: TokenEntry | None = None
        reason = ""
        if call is not None:
            token, entry, reason = call.raw_token, call.token, call.reason or ""
            if call.body.strip():
                try:
                    data = call.json()
                except InvalidRequestError:
                    data = {"unparsed_body": Sensitive(call.body.decode("utf-8", "replace"))}
            elif call.query:
                data = dict(call.query)
        auth = self._token_auth(entry, token)
        client = self._client
        request = AuditRequest(
            id=self._request_id,
            operation=_OPERATIONS.get(self._method) or self._method.lower(),
            path=self._path,
            mount_type=mount.type if mount is not None else "",
            mount_point=mount.path if mount is not None else "",
            remote_address=str(client[0]) if client else "",
            remote_port=int(client[1]) if client else 0,
            client_token=auth.client_token,
            client_token_accessor=entry.accessor if entry is not None else "",
            data=data,
            reason=reason,
        )
        return auth, request

    def _token_auth(self, entry: TokenEntry | None, token: Sensitive[str] | None) -> AuditAuth:
        """The caller's :class:`AuditAuth`: the same object as last time for the same token entry and TTL
        (the token store found ``entry`` by the token's hash, so the same entry means the same token)."""
        if entry is None:
            return _token_auth(None, token, 0.0)
        now = self._clock()
        ttl = entry.remaining(now)
        known = self._auths.get(id(entry))
        if known is not None and known[0] is entry and known[1] == ttl:
            return known[2]
        auth = _token_auth(entry, token, now)
        if len(self._auths) >= _AUTH_CACHE_LIMIT:
            self._auths.clear()
        self._auths[id(entry)] = (entry, ttl, auth)
        return auth

    def written(self) -> tuple[int, bytes] | None:
        """After the flush of staged entries: ``None`` if a device wrote them, else the 503 answer to send."""
        staged = self.staged or []
        for _, batch in staged:
            if batch.written:
                return None
        if any(batch.error is None for _, batch in staged):  # not flushed yet: do it now
            self._broker.flush()
        try:
            self._broker.check_staged(staged)
        except AuditWriteError as exc:
            _log.error(
                "audit entries could not be written",
                extra={"request_id": self._request_id, "error": str(exc)},
            )
            return 503, error_body(f"audit log unavailable: {exc}")
        return None

    def request(self, call: Call, mount: MountEntry | None, *, read_only: bool = False) -> None:
        """Write the request entry; raises :class:`AuditWriteError` (refuse the request) if no device can.

        ``read_only``: the call changes nothing (a KV read), so its request entry
        may wait and be written with the response entry before the answer
        leaves: :meth:`response` describes the call and stages both entries,
        and the reads staged during one turn of the event loop reach each file
        with one write (:meth:`Auditing.flushed`); if that fails the client
        gets 503 and has learnt nothing.
        """
        if read_only:
            self._call, self._mount = call, mount
            return
        self._auth, self._request = self._describe(call, mount)
        self._broker.log_request(auth=self._auth, request=self._request)

    def response(self, *, status: int, reply: object, body: bytes) -> tuple[int, bytes] | None:
        """Write the response entry (and the request entry if the call failed before it).

        ``reply`` is the handler's :class:`Reply` (``None`` when it failed);
        for an error, the message is taken from ``body``. Returns ``None``
        when recorded, or the 503 answer to send instead when no device could
        record it.
        """
        error = _error_text(body) if status >= 400 else ""
        if reply.__class__ is not Reply:
            reply = reply if isinstance(reply, Reply) else None
        try:
            self._log_response(status=status, reply=reply, error=error)
        except AuditWriteError as exc:
            _log.error(
                "audit response entry could not be written",
                extra={"request_id": self._request_id, "error": str(exc)},
            )
            return 503, error_body(f"audit log unavailable: {exc}")
        except Exception:  # whatever went wrong, the answer must not leave unaudited
            _log.exception(
                "audit response entry could not be built", extra={"request_id": self._request_id}
            )
            return 503, error_body(
                f"audit log unavailable; see the server log for request id {self._request_id}"
            )
        return None

    def response_before_commit(self, reply: Reply) -> None:
        """Write the response entry for ``reply`` now, before the call's change commits.

        Raises :class:`AuditWriteError` when no device could write it (the
        transaction then rolls back; see :mod:`kustos.server.committing`).
        """
        try:
            self._log_response(status=reply.status, reply=reply, error="")
        except AuditWriteError as exc:
            _log.error(
                "audit response entry could not be written before the commit; rolled back",
                extra={"request_id": self._request_id, "error": str(exc)},
            )
            raise
        except Exception as exc:
            _log.exception(
                "audit response entry could not be built", extra={"request_id": self._request_id}
            )
            raise AuditWriteError(
                f"the response entry could not be built (request id {self._request_id})"
            ) from exc

    def _log_response(self, *, status: int, reply: Reply | None, error: str) -> None:
        """Describe the call if needed and write (or, for a read, stage) its response entry."""
        deferred = self._call
        if deferred is not None:
            self._auth, self._request = self._describe(deferred, self._mount)
        elif self._request is None or self._auth is None:
            self._auth, self._request = self._describe(None, None)
            self._broker.log_request(auth=self._auth, request=self._request, error=error)
        data: Any = None
        auth: AuditAuth | None = None
        mount_type = ""
        warnings: tuple[str, ...] = ()
        if reply is not None:
            data = reply.raw if reply.raw is not None else reply.data
            if (
                data is not None
            ):  # pre-encoded JSON (orjson.Fragment) is HMAC'd by the device as it is
                if data.__class__ is not dict and not isinstance(data, Mapping):
                    data = {"value": data}
            if reply.auth is not None and isinstance(reply.auth, Mapping):
                auth = _issued_auth(reply.auth)
            mount_type = reply.mount_type
            if reply.warnings:
                warnings = tuple(reply.warnings)
        response = AuditResponse(
            status=status, data=data, auth=auth, mount_type=mount_type, warnings=warnings
        )
        if deferred is not None:
            self.staged = self._broker.stage_call(
                auth=self._auth, request=self._request, response=response, error=error
            )
        else:
            self._broker.log_response(
                auth=self._auth, request=self._request, response=response, error=error
            )
