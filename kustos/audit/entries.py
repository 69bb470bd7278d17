"""What one audit entry says, and how a request or response becomes one.

The server describes each API call with :class:`AuditAuth` (who),
:class:`AuditRequest` (what was asked) and :class:`AuditResponse` (what was
answered). :func:`format_entry` turns them into the JSON object written on
one line, in Vault's audit shape::

    {"type": "request" | "response", "time": ..., "auth": {...}, "request": {...},
     "response": {...}, "error": "", "seq": N, "prev_hash": ..., "hash": ..., "mac": ...}

Left readable, as in Vault: times, ids, operation, mount type and point, path,
remote address and port, token accessor, display name, policy names, auth
metadata (role, service account name and namespace), entity id, token type and
TTL, HTTP status, error and warnings, and the change reason.
HMAC'd with the device key: the client token wherever it appears, every
string and number inside request and response ``data``, header values, and
the token a login response hands out (its accessor stays readable). The chain fields are added by the
device (:mod:`kustos.audit.devices`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from kustos.audit.hashing import ValueHasher
from kustos.sensitive import Sensitive

__all__ = [
    "AuditAuth",
    "AuditRequest",
    "AuditResponse",
    "AuthPayload",
    "EntryType",
    "RequestPayload",
    "ResponsePayload",
    "format_auth",
    "format_call",
    "format_entry",
    "format_request",
    "format_response",
    "format_time",
]

EntryType = Literal["request", "response"]


@dataclass(frozen=True, kw_only=True)
class AuditAuth:
    """Who made the call: the token's properties (the token itself only as :class:`Sensitive`).

    A device keeps the serialized form of an instance it has logged and reuses it
    when the same object comes back: do not change its ``metadata`` mapping afterwards.
    """

    client_token: Sensitive[str] | None = None
    accessor: str = ""
    display_name: str = ""
    policies: tuple[str, ...] = ()
    token_policies: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    entity_id: str = ""
    token_type: str = ""
    token_ttl: int = 0
    token_issue_time: str = ""


@dataclass(kw_only=True, slots=True)
class AuditRequest:
    """What was asked. ``data`` is the body (or query parameters); it will be HMAC'd.

    Not frozen (built on every audited call, and frozen dataclasses are slow to
    build): a device keeps its serialized form from the request entry to the
    response entry, so do not change it once logged.
    """

    id: str
    operation: str
    path: str
    mount_type: str = ""
    mount_point: str = ""
    remote_address: str = ""
    remote_port: int = 0
    client_token: Sensitive[str] | None = None
    client_token_accessor: str = ""
    data: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""


@dataclass(kw_only=True, slots=True)
class AuditResponse:
    """What was answered. ``auth`` is set when the call created a token (a login)."""

    status: int
    data: Mapping[str, Any] | None = None
    auth: AuditAuth | None = None
    mount_type: str = ""
    warnings: tuple[str, ...] = ()


class AuthPayload(TypedDict):
    client_token: str
    accessor: str
    display_name: str
    policies: list[str]
    token_policies: list[str]
    metadata: dict[str, str]
    entity_id: str
    token_type: str
    token_ttl: int
    token_issue_time: str


class RequestPayload(TypedDict):
    id: str
    operation: str
    mount_type: str
    mount_point: str
    path: str
    remote_address: str
    remote_port: int
    client_token: str
    client_token_accessor: str
    data: Any
    headers: dict[str, str]
    reason: str


class ResponsePayload(TypedDict, total=False):
    status: int
    mount_type: str
    data: Any
    auth: AuthPayload
    warnings: list[str]


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as Vault writes it: ``2024-05-01T12:00:00.000000Z``."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    utc = moment.astimezone(UTC)
    if utc.year < 1000:  # isoformat pads the year, strftime does not: keep strftime's text
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"  # drop "+00:00"


def _token(hasher: ValueHasher, token: Sensitive[str] | None) -> str:
    return "" if token is None or not token.reveal() else hasher.value(token.reveal())


def _auth(auth: AuditAuth, token_mac: str) -> AuthPayload:
    return {
        "client_token": token_mac,
        "accessor": auth.accessor,
        "display_name": auth.display_name,
        "policies": list(auth.policies),
        "token_policies": list(auth.token_policies),
        "metadata": {str(k): str(v) for k, v in auth.metadata.items()},
        "entity_id": auth.entity_id,
        "token_type": auth.token_type,
        "token_ttl": auth.token_ttl,
        "token_issue_time": auth.token_issue_time,
    }


def _request(
    hasher: ValueHasher, request: AuditRequest, clear_keys: Collection[str], token_mac: str
) -> RequestPayload:
    data, headers = request.data, request.headers
    return {
        "id": request.id,
        "operation": request.operation,
        "mount_type": request.mount_type,
        "mount_point": request.mount_point,
        "path": request.path,
        "remote_address": request.remote_address,
        "remote_port": request.remote_port,
        "client_token": token_mac,
        "client_token_accessor": request.client_token_accessor,
        "data": None if data is None else hasher.structure(data, clear_keys),
        "headers": {str(k).lower(): hasher.value(str(v)) for k, v in headers.items()}
        if headers
        else {},
        "reason": request.reason,
    }


def _response(
    hasher: ValueHasher, response: AuditResponse, clear_keys: Collection[str]
) -> ResponsePayload:
    payload: ResponsePayload = {
        "status": response.status,
        "mount_type": response.mount_type,
        "data": None if response.data is None else hasher.structure(response.data, clear_keys),
        "warnings": list(response.warnings),
    }
    if response.auth is not None:
        payload["auth"] = _auth(response.auth, _token(hasher, response.auth.client_token))
    return payload


def format_entry(
    key: Sensitive[bytes] | ValueHasher,
    *,
    entry_type: EntryType,
    time: datetime,
    auth: AuditAuth,
    request: AuditRequest,
    response: AuditResponse | None = None,
    error: str = "",
    clear_request_keys: Collection[str] = (),
    clear_response_keys: Collection[str] = (),
) -> dict[str, Any]:
    """Build the entry body (without chain fields) with every sensitive value HMAC'd.

    ``key`` is the device key, or a :class:`ValueHasher` keyed with it (faster
    for a device that writes many entries).
    """
    hasher = key if isinstance(key, ValueHasher) else ValueHasher(key)
    auth_payload, request_payload = format_call(
        hasher, auth=auth, request=request, clear_request_keys=clear_request_keys
    )
    entry: dict[str, Any] = {
        "type": entry_type,
        "time": format_time(time),
        "auth": auth_payload,
        "request": request_payload,
        "error": error,
    }
    if entry_type == "response":
        entry["response"] = format_response(
            hasher, response or AuditResponse(status=0), clear_response_keys
        )
    return entry


def format_call(
    hasher: ValueHasher,
    *,
    auth: AuditAuth,
    request: AuditRequest,
    clear_request_keys: Collection[str] = (),
) -> tuple[AuthPayload, RequestPayload]:
    """The ``auth`` and ``request`` parts of an entry (the same in a call's request and response entries)."""
    auth_token = _token(hasher, auth.client_token)
    if request.client_token is auth.client_token:  # the usual case: one token, one HMAC
        request_token = auth_token
    else:
        request_token = _token(hasher, request.client_token)
    return _auth(auth, auth_token), _request(hasher, request, clear_request_keys, request_token)


def format_auth(hasher: ValueHasher, auth: AuditAuth) -> tuple[AuthPayload, str]:
    """The ``auth`` part of an entry, and the HMAC of its client token (``""`` without one)."""
    token_mac = _token(hasher, auth.client_token)
    return _auth(auth, token_mac), token_mac


def format_request(
    hasher: ValueHasher,
    request: AuditRequest,
    *,
    token_mac: str,
    clear_request_keys: Collection[str] = (),
) -> RequestPayload:
    """The ``request`` part of an entry; ``token_mac`` is the HMAC of ``request.client_token``."""
    return _request(hasher, request, clear_request_keys, token_mac)


def format_response(
    hasher: ValueHasher, response: AuditResponse, clear_response_keys: Collection[str] = ()
) -> ResponsePayload:
    """The ``response`` part of a response entry."""
    return _response(hasher, response, clear_response_keys)
