"""Signing in and out of the console, and who the caller is: token details, policies, capabilities.

**Login** takes a token, a userpass username and password, or an AppRole
role id and secret id, and calls the API's own login endpoints
(``auth/<mount>/login/<user>``, ``auth/<mount>/login``). A pasted token is
checked with ``auth/token/lookup-self``; when it may create tokens, the
session runs on a child token of it (TTL at most :data:`SESSION_TTL`), so
logging out revokes the child and leaves the pasted token alive; otherwise
the session runs on the pasted token itself and logging out revokes it (the
login page says so). The session token goes into the cookie
(:mod:`.sessions`), never into a page or a URL.

**Logout** (a POST with the CSRF value) revokes the session token
(``auth/token/revoke-self``) and clears the cookie.

The other pages read what the API answers the caller: ``auth/token/lookup-self``
(without the token itself), ``sys/policies/acl``, and
``sys/capabilities-self`` for a path the caller types.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kustos.errors import PermissionDeniedError
from kustos.sensitive import Sensitive
from kustos.server.console.rendering import Pages
from kustos.server.console.sessions import (
    LOGIN_COOKIE,
    check_origin,
    cookie_header,
    expired_cookie_header,
    login_nonce,
    read_form,
    session_cookie_name,
)
from kustos.server.params import enum_param, str_param

__all__ = ["LOGIN_METHODS", "SESSION_TTL", "Identity"]

SESSION_TTL: Final = 8 * 3600
"""Longest life of a child token made for a session from a pasted token (seconds)."""
LOGIN_METHODS: Final = ("token", "userpass", "approle")
_LOGIN_NONCE_AGE: Final = 3600
_HIDDEN_TOKEN_FIELDS: Final = frozenset({"id"})


class Identity(Pages):
    """Login, logout, the caller's token, policies and capabilities."""

    def routes(self) -> list[Route]:
        g = self.guarded
        return [
            Route("/login", g(self.login_form), methods=["GET"]),
            Route("/login", g(self.login), methods=["POST"]),
            Route("/logout", g(self.logout), methods=["POST"]),
            Route("/token", g(self.token), methods=["GET"]),
            Route("/policies", g(self.policies), methods=["GET"]),
            Route("/policies/{name}", g(self.policy), methods=["GET"]),
            Route("/capabilities", g(self.capabilities), methods=["GET"]),
        ]

    # -- login ----------------------------------------------------------------------------------

    def _login_page(
        self, request: Request, *, error: str = "", method: str = "token", status: int = 200
    ) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE) or ""
        fresh = not nonce or len(nonce) > 128
        if fresh:
            nonce = login_nonce()
        response = self.render(
            request,
            "login.html",
            session=None,
            status=status,
            login_csrf=nonce,
            error=error,
            method=method if method in LOGIN_METHODS else "token",
            bye=request.query_params.get("bye") == "1",
        )
        if fresh:
            response.headers.append(
                "set-cookie",
                cookie_header(LOGIN_COOKIE, nonce, tls=self.tls(request), max_age=_LOGIN_NONCE_AGE),
            )
        return response

    async def login_form(self, request: Request) -> Response:
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        check_origin(request)
        form = await read_form(request, max_bytes=self.settings.max_form_bytes)
        expected = request.cookies.get(LOGIN_COOKIE) or ""
        given = form.get("csrf")
        if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise PermissionDeniedError(
                "the login form's CSRF token is missing or wrong: reload the login page"
            )
        method = enum_param(
            form.get("method"), field="method", choices=LOGIN_METHODS, default="token"
        )
        if method == "token":
            token, ttl, error = await self._with_token(request, form.get("token").strip())
        else:
            token, ttl, error = await self._with_method(request, method, form)
        if token is None:
            return self._login_page(request, error=error, method=method, status=403)
        response = self.redirect("/secrets/")
        tls = self.tls(request)
        response.headers.append(
            "set-cookie",
            cookie_header(
                session_cookie_name(tls=tls), token.reveal(), tls=tls, max_age=ttl or None
            ),
        )
        response.headers.append("set-cookie", expired_cookie_header(LOGIN_COOKIE, tls=tls))
        return response

    async def _with_token(
        self, request: Request, text: str
    ) -> tuple[Sensitive[str] | None, int, str]:
        if not text or len(text) > 512 or not text.isprintable():
            return None, 0, "paste a Kustos (or Vault) token"
        pasted = Sensitive(text)
        looked = await self.api.call(request.scope, "GET", "auth/token/lookup-self", token=pasted)
        if not looked.ok:
            return None, 0, "that token is not valid (unknown, expired or revoked)"
        remaining = int(looked.data.get("ttl") or 0)
        display = str(looked.data.get("display_name") or "console")
        child = await self.api.call(  # the server caps the child's TTL at the parent's
            request.scope,
            "POST",
            "auth/token/create",
            token=pasted,
            json={"ttl": f"{SESSION_TTL}s", "display_name": display.removeprefix("token-")},
        )
        issued = child.document.get("auth") if child.ok else None
        if isinstance(issued, dict) and isinstance(issued.get("client_token"), str):
            return Sensitive(issued["client_token"]), int(issued.get("lease_duration") or 0), ""
        return pasted, remaining, ""

    async def _with_method(
        self, request: Request, method: str, form: Any
    ) -> tuple[Sensitive[str] | None, int, str]:
        mount = (form.get("mount") or method).strip().strip("/")
        if not mount or "/" in mount or not mount.isprintable():
            return None, 0, "the auth mount is a single path segment, like userpass or approle"
        if method == "userpass":
            username = form.get("username").strip()
            if not username or "/" in username or not username.isprintable():
                return None, 0, "give your username"
            path, body = f"auth/{mount}/login/{username}", {"password": form.get("password")}
        else:
            path = f"auth/{mount}/login"
            body = {"role_id": form.get("role_id").strip(), "secret_id": form.get("secret_id")}
        answer = await self.api.call(request.scope, "POST", path, token=None, json=body)
        issued = answer.document.get("auth") if answer.ok else None
        if not isinstance(issued, dict) or not isinstance(issued.get("client_token"), str):
            return None, 0, f"login failed: {answer.error}"
        return Sensitive(issued["client_token"]), int(issued.get("lease_duration") or 0), ""

    async def logout(self, request: Request) -> Response:
        session = await self.session(request)
        await self.submitted(request, session)
        await self.call(request, session, "POST", "auth/token/revoke-self")
        response = self.redirect("/login?bye=1")
        tls = self.tls(request)
        response.headers.append(
            "set-cookie", expired_cookie_header(session_cookie_name(tls=tls), tls=tls)
        )
        return response

    # -- who am I ------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        session = await self.session(request)
        answer = await self.call(request, session, "GET", "auth/token/lookup-self")
        details = {k: v for k, v in answer.data.items() if k not in _HIDDEN_TOKEN_FIELDS}
        return self.render(
            request,
            "token.html",
            session=session,
            details=sorted(details.items()),
            problem="" if answer.ok else answer.error,
        )

    async def policies(self, request: Request) -> Response:
        session = await self.session(request)
        answer = await self.call(request, session, "LIST", "sys/policies/acl")
        keys = answer.data.get("keys") if answer.ok else []
        return self.render(
            request,
            "policies.html",
            session=session,
            names=sorted(str(k) for k in keys) if isinstance(keys, list) else [],
            problem="" if answer.ok else answer.error,
        )

    async def policy(self, request: Request) -> Response:
        session = await self.session(request)
        name: str = request.path_params["name"]
        answer = await self.call(request, session, "GET", f"sys/policies/acl/{name}")
        if not answer.ok:
            return self.problem(request, session, status=answer.status, message=answer.error)
        return self.render(
            request,
            "policy.html",
            session=session,
            name=name,
            text=str(answer.data.get("policy") or ""),
        )

    async def capabilities(self, request: Request) -> Response:
        session = await self.session(request)
        path = str_param(
            request.query_params.get("path"), field="path", max_length=1024, default=""
        ).lstrip("/")
        found: list[str] | None = None
        problem = ""
        if path:
            answer = await self.call(
                request, session, "POST", "sys/capabilities-self", json={"paths": [path]}
            )
            listed = answer.data.get(path) if answer.ok else None
            if isinstance(listed, list):
                found = [str(c) for c in listed]
            else:
                problem = answer.error
        return self.render(
            request,
            "capabilities.html",
            session=session,
            path=path,
            found=found,
            problem=problem,
            policies=list(session.entry.policies),
        )
