"""The web console: ``kustos server`` serves it under ``/ui/`` (``--no-ui`` turns it off).

Server-rendered HTML (Jinja2 templates, package data of this package) with
one small script of our own for progressive enhancement (in-place reveals,
reading an uploaded file into the seal form); every page works without it.
Nothing is fetched from elsewhere at run time: styles, script and pages
come from this server, under a strict Content-Security-Policy.

The console is a client of the server's own API, in process: each page is a
few calls into the ``/v1/`` dispatcher as the signed-in user
(:mod:`.dispatching`), so authorization, parameter checks and the audit trail
are the API's, not a copy. Modules:

* :mod:`.dispatching` - calls into the API as the caller;
* :mod:`.sessions` - the session cookie (a Kustos token), CSRF and origin checks, form parsing;
* :mod:`.rendering` - templates, security headers, the :class:`~.rendering.Pages` base;
* :mod:`.identity` - login (token, userpass, AppRole), logout, token details, policies, capabilities;
* :mod:`.browsing` - KV v2 mounts, folders (paged), secrets, reveals, diffs, writes, rollback/delete/destroy;
* :mod:`.auditing` - audit search, the access map, the chain's verification status;
* :mod:`.sealing` - Secret manifest -> SealedSecret with the server's certificate.

See docs/console.md.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles

from kustos.server.console.auditing import AuditPages
from kustos.server.console.browsing import Browsing
from kustos.server.console.dispatching import InternalApi, Serve
from kustos.server.console.identity import Identity
from kustos.server.console.rendering import PREFIX, SecurityHeaders, Settings, make_environment
from kustos.server.console.sealing import SealingPages
from kustos.server.core import Core

__all__ = ["PREFIX", "Settings", "console_routes"]


def console_routes(
    *, serve: Serve, core: Callable[[], Core | None], settings: Settings
) -> list[BaseRoute]:
    """The routes of the console: ``/ui`` (redirect) and everything under ``/ui/``."""
    api = InternalApi(serve)
    templates = make_environment()
    routes: list[BaseRoute] = [
        Mount("/static", app=StaticFiles(packages=[("kustos.server.console", "static")])),
    ]
    for kind in (Identity, Browsing, AuditPages, SealingPages):
        pages = kind(api=api, core=core, templates=templates, settings=settings)
        routes.extend(pages.routes())

    async def bare(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    return [
        Route(PREFIX, bare, methods=["GET", "HEAD"]),
        Mount(PREFIX, app=SecurityHeaders(Router(routes=routes))),
    ]
