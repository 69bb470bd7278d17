"""What every console page shares: templates, security headers, the session, calls into the API.

:class:`Pages` is the base of the page modules (:mod:`.browsing`,
:mod:`.auditing`, :mod:`.sealing`, :mod:`.identity`). It renders Jinja2
templates from this package (autoescaped), finds the caller's session,
checks a form submission (same origin, CSRF, size), calls the API as the
caller (:class:`~.dispatching.InternalApi`) and turns errors into pages
with the status the API would have answered.

:class:`SecurityHeaders` wraps everything under ``/ui/``: a strict
Content-Security-Policy (scripts, styles and images from this server only;
no inline script or style; forms post only here; no framing), ``no-store``
caching (``no-cache`` for the static stylesheet and script: revalidated, not
refetched), ``nosniff``, a referrer only to this origin, and a same-origin
opener policy.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kustos.errors import KustosError, PermissionDeniedError
from kustos.sensitive import Sensitive
from kustos.server.console.dispatching import ApiAnswer, InternalApi
from kustos.server.console.sessions import (
    Form,
    Session,
    check_csrf,
    check_origin,
    csrf_token,
    expired_cookie_header,
    read_form,
    session_cookie_name,
)
from kustos.server.core import Core
from kustos.server.errors import public_message, status_for

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "PREFIX",
    "Pages",
    "SecurityHeaders",
    "Settings",
    "SignInRequired",
    "make_environment",
]

PREFIX: Final = "/ui"
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
_STATIC: Final = f"{PREFIX}/static/"
_STATIC_HEADERS: Final = tuple(
    (name, b"no-cache") if name == b"cache-control" else (name, value) for name, value in _HEADERS
)
"""The stylesheet and script hold nothing secret: kept by the browser, revalidated (ETag) each time."""
_REPLACED: Final = frozenset(name for name, _ in _HEADERS)

_log = logging.getLogger("kustos.server.console")


class SecurityHeaders:
    """ASGI wrapper: adds the console's security headers to every response (replacing any set)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        headers = _STATIC_HEADERS if scope["path"].startswith(_STATIC) else _HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k not in _REPLACED]
                message = {**message, "headers": [*kept, *headers]}
            await send(message)

        await self._app(scope, receive, send_with_headers)


def make_environment() -> jinja2.Environment:
    """The console's templates (package data of this package), autoescaped, strict about undefined names."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("kustos.server.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["prefix"] = PREFIX
    return environment


@dataclass(frozen=True)
class Settings:
    """How the console behaves: the largest form accepted and the rows per page."""

    max_form_bytes: int
    page_size: int = 100
    audit_page_size: int = 100


class SignInRequired(Exception):  # noqa: N818 - a control-flow signal, not an error
    """No valid session: answer with a redirect to the login page (and forget the cookie)."""


Handler = Callable[[Request], Awaitable[Response]]


class Pages:
    """Shared helpers of the console's page handlers."""

    def __init__(
        self,
        *,
        api: InternalApi,
        core: Callable[[], Core | None],
        templates: jinja2.Environment,
        settings: Settings,
    ) -> None:
        self.api = api
        self._core = core
        self.templates = templates
        self.settings = settings

    # -- the caller --------------------------------------------------------------------------

    @staticmethod
    def tls(request: Request) -> bool:
        return request.url.scheme == "https"

    def core(self) -> Core:
        current = self._core()
        if current is None:
            raise SignInRequired()
        return current

    async def session(self, request: Request) -> Session:
        """The caller's session, or :class:`SignInRequired` (no cookie, unknown or expired token)."""
        raw = request.cookies.get(session_cookie_name(tls=self.tls(request)))
        if not raw or len(raw) > 512:
            raise SignInRequired()
        tokens = self.core().tokens
        entry = tokens.cached(raw)
        if entry is None:
            entry = await tokens.lookup(raw)
        if entry is None:
            raise SignInRequired()
        token = Sensitive(raw)
        return Session(token=token, entry=entry, csrf=csrf_token(token))

    async def submitted(self, request: Request, session: Session) -> Form:
        """A state-changing form from the signed-in caller: same origin, right CSRF value, not too big."""
        check_origin(request)
        form = await read_form(request, max_bytes=self.settings.max_form_bytes)
        check_csrf(form, session.csrf)
        return form

    async def call(
        self,
        request: Request,
        session: Session | None,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        json: Any = None,
        reason: str | None = None,
        content_type: str = "application/json",
    ) -> ApiAnswer:
        """Call the API as the caller (``session`` ``None``: without a token, as a login does)."""
        answer = await self.api.call(
            request.scope,
            method,
            path,
            token=session.token if session is not None else None,
            query=query,
            json=json,
            reason=reason,
            content_type=content_type,
        )
        return answer

    # -- answers -------------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        *,
        session: Session | None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        page = self.templates.get_template(template).render(
            session=session,
            csrf=session.csrf if session is not None else "",
            who=_who(session),
            path_of=request.url.path,
            status=status,
            **context,
        )
        return HTMLResponse(page, status_code=status, headers=dict(headers or {}))

    def problem(
        self, request: Request, session: Session | None, *, status: int, message: str
    ) -> HTMLResponse:
        return self.render(request, "problem.html", session=session, status=status, message=message)

    def guarded(self, handler: Handler) -> Handler:
        """Wrap a handler: no session -> login page; a Kustos error -> a page with the API's status."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return self.to_login(request)
            except KustosError as exc:
                status = status_for(exc)
                if status >= 500:
                    _log.error(
                        "console request failed",
                        extra={
                            "route": request.scope.get("route_name", ""),
                            "error": type(exc).__name__,
                        },
                    )
                message = public_message(exc) or "not found"
                session = None
                if not isinstance(exc, PermissionDeniedError):
                    try:
                        session = await self.session(request)
                    except (SignInRequired, KustosError):
                        session = None
                return self.problem(request, session, status=status, message=message)

        return run

    def to_login(self, request: Request) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.headers.append(
            "set-cookie",
            expired_cookie_header(
                session_cookie_name(tls=self.tls(request)), tls=self.tls(request)
            ),
        )
        return response

    @staticmethod
    def redirect(location: str) -> RedirectResponse:
        """303 See Other to a page of the console (``location`` is a path under ``/ui``)."""
        return RedirectResponse(f"{PREFIX}{location}", status_code=303)


def _who(session: Session | None) -> dict[str, Any] | None:
    if session is None:
        return None
    entry = session.entry
    meta = entry.meta
    namespace, account = meta.get("service_account_namespace"), meta.get("service_account_name")
    name = f"{namespace}/{account}" if namespace and account else entry.display_name
    return {"name": name, "policies": list(entry.policies)}
