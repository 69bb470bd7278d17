"""One API request as handlers see it (:class:`Call`), and what they answer (:class:`Reply`).

The dispatcher in :mod:`kustos.server.app` validates the path, reads the body
within the size limit and authenticates the token; handlers get a
:class:`Call` and return a :class:`Reply`, which is turned into Vault's
response envelope (``request_id``, ``lease_id``, ``data``, ``auth``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from kustos.errors import InvalidRequestError, PermissionDeniedError, UnsupportedOperationError
from kustos.sensitive import Sensitive
from kustos.server.errors import UnsupportedMediaTypeError
from kustos.server.params import parse_json_object
from kustos.server.tokens import TokenEntry

__all__ = [
    "MAX_PATH_LENGTH",
    "MERGE_PATCH",
    "Call",
    "Reply",
    "envelope",
    "json_object",
    "unsupported",
    "validate_api_path",
]

MAX_PATH_LENGTH: Final = 1024
MERGE_PATCH: Final = "application/merge-patch+json"
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_SUSPECT: Final = re.compile(r"[\x00-\x1f\x7f]|//|^/|(?:^|/)\.\.?(?:/|$)")
_HEAD: Final = b'{"request_id":'
_MIDDLE: Final = b',"lease_id":"","renewable":false,"lease_duration":0,"data":'
_TAIL: Final = b',"wrap_info":null,"warnings":null,"auth":null,"mount_type":'


def validate_api_path(path: str) -> None:
    """Refuse ``..``/``.`` and empty segments, a leading ``/``, NUL and control characters, over-long paths.

    A trailing ``/`` is allowed (Vault lists ``secret/metadata/app/``).
    """
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidRequestError(f"request path is longer than {MAX_PATH_LENGTH} characters")
    if (
        "//" not in path
        and "/." not in path
        and path[:1] not in "/."
        and path.isascii()
        and path.isprintable()
    ):
        return  # the common case: printable ASCII, no empty segment, no segment starting with '.'
    if _SUSPECT.search(path) is None:
        return  # no control character, no '//', no dot segment
    if "\x00" in path:
        raise InvalidRequestError("request path contains a NUL character")
    if _CONTROL.search(path) is not None:
        raise InvalidRequestError("request path contains a control character")
    if path.startswith("/"):
        raise InvalidRequestError(
            "request path has an empty segment: it starts with '//' after /v1"
        )
    segments = path.split("/")
    if segments and segments[-1] == "":
        segments.pop()
    for segment in segments:
        if segment == "":
            raise InvalidRequestError("request path has an empty segment ('//')")
        if segment in ("..", "."):
            raise InvalidRequestError(f"request path contains a '{segment}' segment")


def json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object (an empty body or ``null``: ``{}``),
    depth-limited: :func:`kustos.server.params.parse_json_object`.

    ``vault write -f`` and ``bao write -f`` send ``null`` when there is no data.
    """
    return parse_json_object(body)


@dataclass(slots=True)
class Call:
    """One authenticated API request, after routing."""

    method: str
    """``GET``, ``LIST``, ``POST``, ``PUT``, ``PATCH``, ``DELETE`` or ``HEAD``."""
    path: str
    """The API path after ``/v1/``."""
    query: Mapping[str, str]
    body: bytes = field(repr=False)
    content_type: str
    request_id: str
    token: TokenEntry | None = None
    reason: str | None = None
    raw_token: Sensitive[str] | None = field(default=None, repr=False)
    """The token as presented (``lookup-self`` echoes it, like Vault)."""
    _json: dict[str, Any] | None = field(default=None, repr=False)

    # body, data, auth and raw may hold secret values or tokens: they never appear in repr()

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (parsed once)."""
        if self._json is None:
            self._json = json_object(self.body)
        return self._json

    def require_token(self) -> TokenEntry:
        if self.token is None:
            raise PermissionDeniedError("permission denied")
        return self.token

    def require_merge_patch(self) -> None:
        if self.content_type.split(";", 1)[0].strip().lower() != MERGE_PATCH:
            raise UnsupportedMediaTypeError(f"PATCH requires Content-Type: {MERGE_PATCH}")


def unsupported(call: Call) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"unsupported operation: {call.method} is not allowed on {call.path}"
    )


@dataclass(slots=True)
class Reply:
    """What a handler answers: a status and either envelope parts or a raw JSON body."""

    status: int = 200
    data: Any = field(default=None, repr=False)
    auth: Any = field(default=None, repr=False)
    warnings: list[str] | None = None
    raw: Any = field(default=None, repr=False)
    """A document sent as is instead of the envelope (``sys/health``, ``sys/seal-status``)."""
    mount_type: str = ""
    top: dict[str, Any] | None = None
    """Extra top-level fields next to the envelope (``sys/mounts`` lists mounts there too)."""
    body: bytes | None = field(default=None, repr=False)
    """A non-JSON body sent as is, with :attr:`content_type` (``/v1/cert.pem`` answers PEM text)."""
    content_type: str | None = None
    lease_id: str = ""
    """A dynamic secret's lease (``database/creds/<role>/<suffix>``); ``""`` for everything else."""
    lease_duration: int = 0
    renewable: bool = False

    @classmethod
    def no_content(cls) -> Reply:
        return cls(status=204)


def envelope(reply: Reply, *, request_id: str) -> bytes:
    """The JSON body for ``reply`` (``b""`` for 204)."""
    if reply.status == 204:
        return b""
    if reply.body is not None:
        return reply.body
    if reply.raw is not None:
        return orjson.dumps(reply.raw)
    if reply.top is None and reply.warnings is None and reply.auth is None and not reply.lease_id:
        # the common shape, joined from constant pieces: the same bytes as dumping the dict below
        return b"".join(
            (
                _HEAD,
                orjson.dumps(request_id),
                _MIDDLE,
                orjson.dumps(reply.data),
                _TAIL,
                orjson.dumps(reply.mount_type),
                b"}",
            )
        )
    doc = {
        "request_id": request_id,
        "lease_id": reply.lease_id,
        "renewable": reply.renewable,
        "lease_duration": reply.lease_duration,
        "data": reply.data,
        "wrap_info": None,
        "warnings": reply.warnings,
        "auth": reply.auth,
        "mount_type": reply.mount_type,
    }
    if reply.top:
        doc = {**reply.top, **doc}
    return orjson.dumps(doc)
