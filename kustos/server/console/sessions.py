"""The console's session: a Kustos token in a cookie, and the checks every form submission passes.

* The session **is** a Kustos token, kept in an ``HttpOnly``, ``SameSite=Strict``
  cookie (``Secure`` and the ``__Host-`` name prefix when the server speaks TLS).
  The server keeps no session state of its own: revoking the token ends the
  session, and logging out revokes the token.
* **CSRF**: every state-changing request (every ``POST`` under ``/ui/``) must
  carry a form field ``csrf`` equal to :func:`csrf_token` of the session token
  (an HMAC keyed by the token, so only someone who holds the cookie's value
  can compute it, and replicas agree without sharing state), and must not
  come from another origin (``Origin``, else ``Sec-Fetch-Site``). The login
  form, before any session exists, uses a random value in a short-lived
  cookie that the form repeats (double submit).
* Form bodies are ``application/x-www-form-urlencoded`` only, read within a
  size limit; values travel in bodies, never in URLs.

Nothing here logs a token or a form field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl

from starlette.requests import Request

from kustos.errors import InvalidRequestError, PermissionDeniedError
from kustos.sensitive import Sensitive
from kustos.server.errors import RequestTooLargeError
from kustos.server.tokens import TokenEntry

__all__ = [
    "FORM_CONTENT_TYPE",
    "LOGIN_COOKIE",
    "Form",
    "Session",
    "check_csrf",
    "check_origin",
    "cookie_header",
    "csrf_token",
    "expired_cookie_header",
    "login_nonce",
    "read_form",
    "session_cookie_name",
]

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
LOGIN_COOKIE: Final = "kustos_login"
"""The login form's double-submit value (no session exists yet)."""
_SESSION_COOKIE: Final = "kustos_session"
_CSRF_LABEL: Final = b"kustos-console/csrf/v1"
_MAX_FIELDS: Final = 2_000
_SAME_ORIGIN_FETCH: Final = frozenset({"same-origin", "none"})


def session_cookie_name(*, tls: bool) -> str:
    """``__Host-kustos_session`` over TLS (pinned to this host, ``Secure``, ``Path=/``), else ``kustos_session``."""
    return f"__Host-{_SESSION_COOKIE}" if tls else _SESSION_COOKIE


def csrf_token(token: Sensitive[str]) -> str:
    """The CSRF value of a session: HMAC-SHA256 keyed by the session token (hex)."""
    return hmac.new(token.reveal().encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def login_nonce() -> str:
    """A fresh random value for the login form's double submit."""
    return secrets.token_urlsafe(32)


def cookie_header(name: str, value: str, *, tls: bool, max_age: int | None = None) -> str:
    """A ``Set-Cookie`` value: ``HttpOnly; SameSite=Strict; Path=/`` (+ ``Secure`` over TLS)."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if tls:
        parts.append("Secure")
    return "; ".join(parts)


def expired_cookie_header(name: str, *, tls: bool) -> str:
    """A ``Set-Cookie`` value that makes the browser forget ``name``."""
    return cookie_header(name, "", tls=tls, max_age=0)


@dataclass(frozen=True)
class Session:
    """The signed-in caller: the token (masked in repr), what the server knows of it, its CSRF value."""

    token: Sensitive[str] = field(repr=False)
    entry: TokenEntry
    csrf: str = field(repr=False)


@dataclass(frozen=True)
class Form:
    """A parsed form body: each field's values in order."""

    fields: Mapping[str, list[str]] = field(repr=False)

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        return list(self.fields.get(name, ()))


def check_origin(request: Request) -> None:
    """Refuse a request another origin made the browser send (``Origin``, else ``Sec-Fetch-Site``)."""
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own:
            raise PermissionDeniedError(
                "cross-origin request refused: this form must be sent from the console itself"
            )
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in _SAME_ORIGIN_FETCH:
        raise PermissionDeniedError(
            "cross-site request refused: this form must be sent from the console itself"
        )


async def read_form(request: Request, *, max_bytes: int) -> Form:
    """Read an urlencoded body of at most ``max_bytes`` (any other content type is refused)."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != FORM_CONTENT_TYPE:
        raise InvalidRequestError(f"the console accepts form submissions ({FORM_CONTENT_TYPE})")
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > max_bytes
    ):
        raise RequestTooLargeError(f"the form is larger than the maximum of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestTooLargeError(f"the form is larger than the maximum of {max_bytes} bytes")
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=_MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError(
            "the form is not valid UTF-8 url-encoded text, or has too many fields"
        ) from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return Form(fields=fields)


def check_csrf(form: Form, expected: str) -> None:
    """Refuse a form whose ``csrf`` field is not ``expected`` (constant-time)."""
    given = form.get("csrf")
    if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise PermissionDeniedError(
            "the form's CSRF token is missing or wrong: reload the page and try again"
        )
