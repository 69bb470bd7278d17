"""The audit pages of the console: search the audit file, the access map, the chain's status.

The same questions ``kustos audit search``, ``kustos audit access-map`` and
``kustos audit verify`` answer, asked of the server's own file audit devices
(:mod:`kustos.audit.searching`, :meth:`kustos.server.auditing.Auditing.verify`).
Who may look is decided by the API: the page first calls ``GET sys/audit``
as the caller, which needs ``read`` and ``sudo`` on ``sys/audit`` (as
listing audit devices does in Vault) and is itself audited; its answer names
the devices and their files. The chain is verified with the device's own
HMAC key (every ``mac`` checked) up to the entry the device wrote last.

Search filters (path prefix, who, operation, time) are not secret and sit in
the URL; audit entries hold HMACs of values, never values.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kustos.audit import access_map, search
from kustos.audit.searching import parse_time
from kustos.errors import InvalidRequestError
from kustos.server.console.browsing import page_of
from kustos.server.console.rendering import Pages
from kustos.server.console.sessions import Session
from kustos.server.params import enum_param, int_param, str_param

__all__ = ["OPERATIONS", "AuditPages"]

OPERATIONS: Final = ("create", "read", "update", "patch", "delete", "list")
"""The operations an audit entry records, offered as a search filter."""
_ENTRY_TYPES: Final = ("response", "request", "")
_MAX_PATH: Final = 512
_MAX_WHO: Final = 256
_MAX_TIME: Final = 40
_MAX_PAGE: Final = 2**31 - 1


def _moment(text: str, *, field: str) -> datetime | None:
    """A time from a form: ``2026-11-23T13:59`` (an HTML datetime-local, UTC) or RFC 3339."""
    text = text.strip()
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise InvalidRequestError(
            f"{field}: expected a time like 2026-11-23T13:59 (UTC), got {text[:40]!r}"
        ) from None


class AuditPages(Pages):
    """``/ui/audit`` (search) and ``/ui/access`` (access map)."""

    def routes(self) -> list[Route]:
        g = self.guarded
        return [
            Route("/audit", g(self.audit), methods=["GET"]),
            Route("/access", g(self.access), methods=["GET"]),
        ]

    async def _devices(
        self, request: Request, session: Session
    ) -> tuple[list[dict[str, str]], str]:
        """The caller's view of ``sys/audit``: file devices (name, file), or why there are none."""
        answer = await self.call(request, session, "GET", "sys/audit")
        if not answer.ok:
            return [], answer.error
        devices = []
        for name, info in sorted(answer.data.items()):
            options = info.get("options") if isinstance(info, dict) else None
            if isinstance(options, dict) and isinstance(options.get("file_path"), str):
                devices.append({"name": name, "file": options["file_path"]})
        if not devices:
            return [], "no file audit device is enabled (kustos audit enable file file_path=...)"
        return devices, ""

    @staticmethod
    def _pick(request: Request, devices: list[dict[str, str]]) -> dict[str, str]:
        wanted = request.query_params.get("device", "")
        return next((d for d in devices if d["name"] == wanted), devices[0])

    async def _status(self, device: dict[str, str]) -> dict[str, Any]:
        result = await self.core().audit.verify(device["name"])
        if result is None:
            return {"ok": False, "entries": 0, "reason": "not a file device", "line": None}
        return {
            "ok": result.ok,
            "entries": result.entries,
            "reason": result.reason or "",
            "line": result.first_bad_line,
        }

    async def audit(self, request: Request) -> Response:
        session = await self.session(request)
        devices, problem = await self._devices(request, session)
        query = request.query_params
        filters = {
            "path": str_param(query.get("path"), field="path", max_length=_MAX_PATH, default=""),
            "who": str_param(query.get("who"), field="who", max_length=_MAX_WHO, default=""),
            "operation": enum_param(
                query.get("operation"), field="operation", choices=OPERATIONS, default=""
            ),
            "type": query.get("type", "response"),
            "since": str_param(query.get("since"), field="since", max_length=_MAX_TIME, default=""),
            "until": str_param(query.get("until"), field="until", max_length=_MAX_TIME, default=""),
        }
        if filters["type"] not in _ENTRY_TYPES:  # "" (the form's "both") is a choice here
            raise InvalidRequestError("type must be request, response or empty (both)")
        context: dict[str, Any] = {
            "devices": devices,
            "problem": problem,
            "filters": filters,
            "operations": OPERATIONS,
            "device": None,
            "chain_state": None,
            "rows": [],
            "total": 0,
            "page": 1,
            "pages": 1,
        }
        if devices:
            device = self._pick(request, devices)
            since = _moment(filters["since"], field="since")
            until = _moment(filters["until"], field="until")
            found = await asyncio.to_thread(
                search,
                device["file"],
                path_prefix=filters["path"] or None,
                who=filters["who"] or None,
                operation=filters["operation"] or None,
                since=since,
                until=until,
                entry_type=filters["type"] or None,
            )
            found.reverse()  # newest first
            number = int_param(
                query.get("page"), field="page", minimum=1, maximum=_MAX_PAGE, default=1
            )
            rows, page, pages = page_of(
                found,
                page=number,
                size=self.settings.audit_page_size,
            )
            context.update(
                device=device,
                chain_state=await self._status(device),
                rows=[r.as_dict() for r in rows],
                total=len(found),
                page=page,
                pages=pages,
            )
        return self.render(request, "audit.html", session=session, **context)

    async def access(self, request: Request) -> Response:
        session = await self.session(request)
        devices, problem = await self._devices(request, session)
        query = request.query_params
        prefix = str_param(
            query.get("path"), field="path", max_length=_MAX_PATH, default=""
        ).lstrip("/")
        since_text = str_param(query.get("since"), field="since", max_length=_MAX_TIME, default="")
        since = _moment(since_text, field="since")
        rows: list[dict[str, Any]] = []
        device = None
        status = None
        if devices:
            device = self._pick(request, devices)
            found = await asyncio.to_thread(access_map, device["file"], since=since)
            rows = [r.as_dict() for r in found if r.path.lstrip("/").startswith(prefix)]
            status = await self._status(device)
        return self.render(
            request,
            "access.html",
            session=session,
            devices=devices,
            device=device,
            problem=problem,
            chain_state=status,
            rows=rows,
            path=prefix,
            since=since_text,
        )
