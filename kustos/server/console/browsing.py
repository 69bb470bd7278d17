"""Browsing KV v2 secrets in the console: mounts, paged folders, a secret's versions, reveals, writes.

Every page is a handful of API calls made as the signed-in caller
(:meth:`Pages.call`), so the caller's policy decides what appears:

* a folder is ``LIST <mount>/metadata/<folder>``, shown a page at a time
  (``?page=``, ``?q=`` filters names), so a folder of 10,000 secrets renders
  as fast as one of 100;
* a secret is ``GET metadata`` (versions: when, who, why, key changes),
  ``GET subkeys`` (key names of one version, never values) and
  ``sys/capabilities-self`` (which controls to offer). Values are masked;
* a **reveal** is ``POST /ui/reveal/<path>`` (version and key in the form
  body): a ``GET data/<path>?version=N`` under the caller's policy, audited
  like any read, answering one key's value only;
* a **diff** of two versions marks added, changed and removed keys from
  ``subkeys`` and the versions' recorded changes (values masked unless
  revealed);
* **writes** (a new version by replacing or patching keys), **rollback**,
  **delete / undelete / destroy** are POST forms with a reason; the last four
  go through a confirmation page first. A write never shows the old value: a
  write-only caller writes without reading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kustos.client.histories import diff_rows, history_rows
from kustos.errors import (
    InvalidRequestError,
    KustosError,
    NotFoundError,
    PermissionDeniedError,
    SealedError,
)
from kustos.server.console.dispatching import ApiAnswer
from kustos.server.console.rendering import Pages
from kustos.server.console.sessions import Form, Session
from kustos.server.mounts import MountEntry
from kustos.server.params import enum_param, int_param, str_param

__all__ = ["ACTIONS", "Browsing", "Capabilities", "page_of"]

ACTIONS: Final = {
    "rollback": "Roll back",
    "delete": "Delete",
    "undelete": "Undelete",
    "destroy": "Destroy",
}
"""The version changes that need a confirmation and a reason, with their button labels."""
_MERGE_PATCH: Final = "application/merge-patch+json"
_BLANK_ROWS: Final = 3
_MAX_REASON: Final = 512
_MAX_NUMBER: Final = 2**31 - 1
"""The largest version, page or check-and-set value a URL or form may name."""
_MAX_FILTER: Final = 256
_MAX_PATH: Final = 1024
_MODES: Final = ("replace", "patch")
_REVEAL_HEADER: Final = "x-kustos-console"

T = TypeVar("T")


def page_of(items: Sequence[T], *, page: int, size: int) -> tuple[list[T], int, int]:
    """Rows of page ``page`` (1-based, clamped), that page number and the number of pages."""
    pages = max(1, math.ceil(len(items) / size))
    page = min(max(1, page), pages)
    start = (page - 1) * size
    return list(items[start : start + size]), page, pages


class Capabilities:
    """What the caller may do on one secret, from ``sys/capabilities-self`` (``root``: everything)."""

    def __init__(self, answer: dict[str, Any], *, mount: str, path: str) -> None:
        def caps(operation: str) -> frozenset[str]:
            listed = answer.get(f"{mount}{operation}/{path}")
            found = frozenset(str(c) for c in listed) if isinstance(listed, list) else frozenset()
            if "root" in found:
                return frozenset({"create", "read", "update", "patch", "delete", "list", "sudo"})
            return found

        data = caps("data")
        self.read = "read" in data
        self.write = bool({"create", "update"} & data)
        self.patch = "patch" in data
        self.metadata = "read" in caps("metadata")
        self.subkeys = "read" in caps("subkeys")
        self.delete = "update" in caps("delete")
        self.undelete = "update" in caps("undelete")
        self.destroy = "update" in caps("destroy")
        self.rollback = self.read and self.write

    @property
    def any_write(self) -> bool:
        return self.write or self.patch or self.delete or self.undelete or self.destroy

    def allows(self, action: str) -> bool:
        return bool(getattr(self, action, False))

    @staticmethod
    def paths(mount: str, path: str) -> list[str]:
        return [
            f"{mount}{operation}/{path}"
            for operation in ("data", "metadata", "subkeys", "delete", "undelete", "destroy")
        ]


def _url(path: str, **query: Any) -> str:
    quoted = quote(path, safe="/")
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{quoted}?{urlencode(kept)}" if kept else quoted


def _crumbs(mount: MountEntry, rest: str) -> list[dict[str, str]]:
    crumbs = [{"name": mount.path.rstrip("/"), "href": _url(f"/secrets/{mount.path}")}]
    walked = mount.path
    for segment in [s for s in rest.split("/") if s]:
        walked += segment + "/"
        crumbs.append({"name": segment, "href": _url(f"/secrets/{walked}")})
    if rest and not rest.endswith("/") and crumbs:
        crumbs[-1]["href"] = _url(f"/secrets/{mount.path}{rest}")
    return crumbs


def _int(text: str | None, *, field: str, default: int | None = None) -> int | None:
    """A version, page or check-and-set number from a URL or form (the server's parameter rules)."""
    if default is None and (text is None or not text.strip()):
        return None
    return int_param(
        text, field=field, maximum=_MAX_NUMBER, default=0 if default is None else default
    )


def _reason(form: Form, *, required: bool) -> str | None:
    reason = form.get("reason").strip()
    if len(reason) > _MAX_REASON:
        raise InvalidRequestError(f"the reason is longer than {_MAX_REASON} characters")
    if required and not reason:
        raise InvalidRequestError("give a reason: it is kept in the secret's history")
    return reason or None


def _shown(value: Any) -> str:
    """A revealed value as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class Browsing(Pages):
    """The secrets pages."""

    def routes(self) -> list[Route]:
        g = self.guarded
        return [
            Route("/", g(self.home), methods=["GET"]),
            Route("/go", g(self.go), methods=["GET"]),
            Route("/secrets/", g(self.mounts), methods=["GET"]),
            Route("/secrets/{path:path}", g(self.browse), methods=["GET"]),
            Route("/reveal/{path:path}", g(self.reveal), methods=["POST"]),
            Route("/write/{path:path}", g(self.write_form), methods=["GET"]),
            Route("/write/{path:path}", g(self.write), methods=["POST"]),
            Route("/confirm/{path:path}", g(self.confirm), methods=["GET"]),
            Route("/change/{path:path}", g(self.change), methods=["POST"]),
        ]

    # -- where --------------------------------------------------------------------------------

    def _locate(self, path: str) -> tuple[MountEntry, str]:
        """The KV mount of ``path`` and the path inside it."""
        resolved = self.core().mounts.resolve(path) if path else None
        if resolved is None:
            raise NotFoundError(f"no secrets engine is mounted at {path or '/'}")
        mount, rest = resolved
        if mount.type != "kv":
            raise InvalidRequestError(
                f"{mount.path} is a {mount.type} mount: the console browses KV version 2 mounts"
            )
        return mount, rest

    @staticmethod
    def _secret_of(rest: str) -> str:
        if not rest or rest.endswith("/"):
            raise InvalidRequestError("name a secret, not a folder")
        return rest

    async def home(self, request: Request) -> Response:
        await self.session(request)
        return self.redirect("/secrets/")

    async def go(self, request: Request) -> Response:
        await self.session(request)
        target = str_param(
            request.query_params.get("path"), field="path", max_length=_MAX_PATH, default=""
        ).lstrip("/")
        return self.redirect(_url(f"/secrets/{target}") if target else "/secrets/")

    # -- mounts and folders ------------------------------------------------------------------------

    async def mounts(self, request: Request) -> Response:
        session = await self.session(request)
        answer = await self.call(request, session, "GET", "sys/mounts")
        mounts: list[dict[str, Any]] = []
        if answer.ok:
            for path, info in sorted(answer.data.items()):
                if not isinstance(info, dict):
                    continue
                mounts.append(
                    {
                        "path": path,
                        "type": info.get("type", ""),
                        "description": info.get("description", ""),
                        "href": _url(f"/secrets/{path}") if info.get("type") == "kv" else "",
                    }
                )
        return self.render(
            request,
            "mounts.html",
            session=session,
            mounts=mounts,
            denied="" if answer.ok else answer.error,
        )

    async def browse(self, request: Request) -> Response:
        session = await self.session(request)
        path: str = request.path_params["path"]
        mount, rest = self._locate(path)
        if not rest or rest.endswith("/"):
            return await self._folder(request, session, mount, rest)
        return await self._secret(request, session, mount, rest)

    async def _folder(
        self, request: Request, session: Session, mount: MountEntry, rest: str
    ) -> Response:
        """One page of a folder: ``LIST ?after=&limit=`` (a filter lists it all and pages the matches)."""
        query = request.query_params
        size = self.settings.page_size
        needle = str_param(query.get("q"), field="q", max_length=_MAX_FILTER, default="")
        cursor = str_param(
            query.get("after"), field="after", max_length=_MAX_PATH, default="", strip=False
        )
        here = f"/secrets/{mount.path}{rest}"
        listing: dict[str, str] = {} if needle else {"limit": str(size + 1)}
        if cursor and not needle:
            listing["after"] = cursor
        answer = await self.call(
            request, session, "LIST", f"{mount.path}metadata/{rest}", query=listing
        )
        if answer.status not in (200, 404):
            return self.problem(request, session, status=answer.status, message=answer.error)
        keys = answer.data.get("keys") if answer.ok else []
        names = [str(k) for k in keys] if isinstance(keys, list) else []
        pager: dict[str, Any]
        if needle:
            lowered = needle.lower()
            names = [n for n in names if lowered in n.lower()]
            number = _int(query.get("page"), field="page", default=1) or 1
            rows, number, pages = page_of(names, page=number, size=size)
            pager = {
                "matches": len(names),
                "page": number,
                "pages": pages,
                "previous": _url(here, q=needle, page=number - 1) if number > 1 else "",
                "next": _url(here, q=needle, page=number + 1) if number < pages else "",
            }
        else:
            rows = names[:size]
            pager = {
                "matches": None,
                "page": 0,
                "pages": 0,
                "previous": _url(here) if cursor else "",
                "next": _url(here, after=rows[-1]) if len(names) > size else "",
            }
        caps = await self.call(  # may the caller create a secret in this folder?
            request,
            session,
            "POST",
            "sys/capabilities-self",
            json={"paths": [f"{mount.path}data/{rest}"]},
        )
        listed = caps.data.get(f"{mount.path}data/{rest}") if caps.ok else None
        can_write = isinstance(listed, list) and bool({"create", "root"} & set(listed))
        return self.render(
            request,
            "folder.html",
            session=session,
            crumbs=_crumbs(mount, rest),
            where=f"{mount.path}{rest}",
            entries=[
                {
                    "name": name,
                    "folder": name.endswith("/"),
                    "href": _url(f"/secrets/{mount.path}{rest}{name}"),
                }
                for name in rows
            ],
            q=needle,
            after=cursor if not needle else "",
            write_href=_url(f"/write/{mount.path}{rest}"),
            can_write=can_write,
            **pager,
        )

    # -- one secret ----------------------------------------------------------------------------

    async def _capabilities(
        self, request: Request, session: Session, mount: MountEntry, secret: str
    ) -> Capabilities:
        answer = await self.call(
            request,
            session,
            "POST",
            "sys/capabilities-self",
            json={"paths": Capabilities.paths(mount.path, secret)},
        )
        return Capabilities(answer.data if answer.ok else {}, mount=mount.path, path=secret)

    async def _key_names(
        self, request: Request, session: Session, mount: MountEntry, secret: str, version: int
    ) -> tuple[list[str] | None, str]:
        """Top-level key names of one version (``None`` and why, when they cannot be shown)."""
        answer = await self.call(
            request,
            session,
            "GET",
            f"{mount.path}subkeys/{secret}",
            query={"version": str(version), "depth": "1"},
        )
        if answer.ok:
            subkeys = answer.data.get("subkeys")
            return (sorted(subkeys) if isinstance(subkeys, dict) else []), ""
        if answer.status == 404:
            return None, f"version {version} is deleted or destroyed: its keys cannot be shown"
        return None, answer.error

    async def _secret(
        self,
        request: Request,
        session: Session,
        mount: MountEntry,
        secret: str,
        *,
        revealed: dict[tuple[int, str], str] | None = None,
        status: int = 200,
    ) -> Response:
        where = f"{mount.path}{secret}"
        caps = await self._capabilities(request, session, mount, secret)
        meta_answer = await self.call(request, session, "GET", f"{mount.path}metadata/{secret}")
        meta = meta_answer.data if meta_answer.ok else None
        if meta_answer.status == 404 and not caps.write:
            raise NotFoundError(f"no secret at {where}")
        query = request.query_params
        current = int(meta.get("current_version") or 0) if meta else 0
        version = _int(query.get("version"), field="version", default=current) or current
        keys: list[str] | None = None
        keys_problem = ""
        if meta is not None and version:
            if str(version) not in (meta.get("versions") or {}):
                raise NotFoundError(f"{where} has no version {version}")
            keys, keys_problem = await self._key_names(request, session, mount, secret, version)
        diff = None
        first = _int(query.get("from"), field="from")
        second = _int(query.get("to"), field="to")
        if meta is not None and first and second:
            diff = await self._diff(request, session, mount, secret, meta, first, second)
        history = history_rows(meta) if meta else []
        for row in history:
            row["href"] = _url(f"/secrets/{where}", version=row["version"])
            row["actions"] = [
                {
                    "action": action,
                    "label": label,
                    "href": _url(f"/confirm/{where}", action=action, version=row["version"]),
                }
                for action, label in ACTIONS.items()
                if caps.allows(action) and _offered(action, row)
            ]
        return self.render(
            request,
            "secret.html",
            session=session,
            status=status,
            crumbs=_crumbs(mount, secret),
            where=where,
            meta=meta,
            meta_problem="" if meta_answer.ok or meta_answer.status == 404 else meta_answer.error,
            exists=meta is not None or meta_answer.status != 404,
            caps=caps,
            version=version,
            current=current,
            keys=keys,
            keys_problem=keys_problem,
            revealed=revealed or {},
            history=history,
            diff=diff,
            versions=sorted((int(v) for v in (meta or {}).get("versions", {})), reverse=True),
            notice=str_param(query.get("done"), field="done", max_length=200, default=""),
            reveal_action=_url(f"/reveal/{where}"),
            write_href=_url(f"/write/{where}"),
            self_href=_url(f"/secrets/{where}"),
        )

    async def _diff(
        self,
        request: Request,
        session: Session,
        mount: MountEntry,
        secret: str,
        meta: dict[str, Any],
        first: int,
        second: int,
    ) -> dict[str, Any]:
        where = f"{mount.path}{secret}"
        versions = meta.get("versions") or {}
        for number in (first, second):
            if str(number) not in versions:
                raise NotFoundError(f"{where} has no version {number}")
        names: list[list[str]] = []
        for number in (first, second):
            found, problem = await self._key_names(request, session, mount, secret, number)
            if found is None:
                return {"first": first, "second": second, "rows": [], "problem": problem}
            names.append(found)
        rows = diff_rows(
            meta,
            dict.fromkeys(names[0]),
            dict.fromkeys(names[1]),
            first=first,
            second=second,
        )
        for row in rows:
            row["in_first"] = row["key"] in names[0]
            row["in_second"] = row["key"] in names[1]
        later = versions.get(str(max(first, second))) or {}
        return {
            "first": first,
            "second": second,
            "rows": rows,
            "problem": "",
            "unchanged": sorted(set(names[0]) & set(names[1]) - {r["key"] for r in rows}),
            "who": later.get("identity") or later.get("created_by") or "",
            "reason": later.get("reason") or "",
        }

    # -- reveal ------------------------------------------------------------------------------

    async def reveal(self, request: Request) -> Response:
        """One key of one version, read as the caller (an audited read); JSON for the page's script."""
        session = await self.session(request)
        form = await self.submitted(request, session)
        mount, rest = self._locate(request.path_params["path"])
        secret = self._secret_of(rest)
        version = _int(form.get("version"), field="version", default=0) or 0
        key = form.get("key")
        if not key:
            raise InvalidRequestError("name the key to reveal")
        answer = await self.call(
            request,
            session,
            "GET",
            f"{mount.path}data/{secret}",
            query={"version": str(version)} if version else None,
            reason=f"console: reveal key {key!r}",
        )
        if not answer.ok:
            return self._refused(request, session, answer)
        data = answer.data.get("data")
        if not isinstance(data, dict) or key not in data:
            raise NotFoundError(
                f"version {version or 'latest'} of {mount.path}{secret} has no key {key!r}"
            )
        shown = _shown(data[key])
        read_version = int((answer.data.get("metadata") or {}).get("version") or version)
        if request.headers.get(_REVEAL_HEADER) == "reveal":
            return JSONResponse({"key": key, "version": read_version, "value": shown})
        return await self._secret(
            request, session, mount, secret, revealed={(read_version, key): shown}
        )

    def _refused(self, request: Request, session: Session, answer: ApiAnswer) -> Response:
        if request.headers.get(_REVEAL_HEADER) == "reveal":
            return JSONResponse({"error": answer.error}, status_code=answer.status)
        return self.problem(request, session, status=answer.status, message=answer.error)

    # -- writes -------------------------------------------------------------------------------

    async def write_form(self, request: Request) -> Response:
        session = await self.session(request)
        path: str = request.path_params["path"]
        mount, rest = self._locate(path)
        if not rest or rest.endswith("/"):
            return self._write_page(request, session, folder=f"{mount.path}{rest}")
        caps = await self._capabilities(request, session, mount, rest)
        names: list[str] = []
        current = 0
        if caps.metadata:
            meta = await self.call(request, session, "GET", f"{mount.path}metadata/{rest}")
            current = int(meta.data.get("current_version") or 0) if meta.ok else 0
        if caps.subkeys and current:
            found, _ = await self._key_names(request, session, mount, rest, current)
            names = found or []
        return self._write_page(
            request, session, where=f"{mount.path}{rest}", caps=caps, names=names, cas=current
        )

    def _write_page(
        self,
        request: Request,
        session: Session,
        *,
        where: str = "",
        folder: str = "",
        caps: Capabilities | None = None,
        names: list[str] | None = None,
        cas: int = 0,
        error: str = "",
        status: int = 200,
    ) -> Response:
        names = names or []
        return self.render(
            request,
            "write.html",
            session=session,
            status=status,
            where=where,
            folder=folder,
            caps=caps,
            rows=[*names, *([""] * _BLANK_ROWS)],
            cas=cas,
            mode="patch" if caps is not None and caps.patch and cas else "replace",
            error=error,
            action=_url(f"/write/{where}") if where else "",
        )

    async def write(self, request: Request) -> Response:
        session = await self.session(request)
        form = await self.submitted(request, session)
        path: str = request.path_params["path"]
        mount, rest = self._locate(path)
        if form.get("name"):  # the folder form names the new secret
            rest = rest + form.get("name").strip().strip("/")
        secret = self._secret_of(rest)
        where = f"{mount.path}{secret}"
        keys, values = form.all("key"), form.all("value")
        removed = set(form.all("remove"))
        if len(keys) != len(values):
            raise InvalidRequestError("every key needs a value field")
        data: dict[str, Any] = {}
        for key, value in zip(keys, values, strict=True):
            key = key.strip()
            if not key:
                continue
            if key in data:
                raise InvalidRequestError(f"key {key!r} is given twice")
            data[key] = None if key in removed else value
        mode = enum_param(form.get("mode"), field="mode", choices=_MODES, default="replace")
        reason = _reason(form, required=False)
        cas = _int(form.get("cas"), field="cas")
        if mode == "patch":
            if not data:
                raise InvalidRequestError("give at least one key to change or remove")
            answer = await self.call(
                request,
                session,
                "PATCH",
                f"{mount.path}data/{secret}",
                json={"data": data},
                reason=reason,
                content_type=_MERGE_PATCH,
            )
        elif mode == "replace":
            data = {k: v for k, v in data.items() if v is not None}
            if not data:
                raise InvalidRequestError("give at least one key and its value")
            body: dict[str, Any] = {"data": data}
            if cas:
                body["options"] = {"cas": cas}
            answer = await self.call(
                request, session, "POST", f"{mount.path}data/{secret}", json=body, reason=reason
            )
        else:  # enum_param allows nothing else
            raise AssertionError(mode)
        if not answer.ok:  # the form again, with the key names but never the values typed
            caps = await self._capabilities(request, session, mount, secret)
            return self._write_page(
                request,
                session,
                where=where,
                caps=caps,
                names=list(data),
                cas=cas or 0,
                error=answer.error,
                status=answer.status,
            )
        written = answer.data.get("version")
        return self.redirect(_url(f"/secrets/{where}", done=f"version {written} written"))

    # -- rollback, delete, undelete, destroy ------------------------------------------------------

    async def confirm(self, request: Request) -> Response:
        session = await self.session(request)
        mount, rest = self._locate(request.path_params["path"])
        secret = self._secret_of(rest)
        action = enum_param(
            request.query_params.get("action"), field="action", choices=tuple(ACTIONS)
        )
        version = _int(request.query_params.get("version"), field="version")
        if not version:
            raise InvalidRequestError("name the version")
        where = f"{mount.path}{secret}"
        return self.render(
            request,
            "confirm.html",
            session=session,
            where=where,
            action=action,
            label=ACTIONS[action],
            version=version,
            submit=_url(f"/change/{where}"),
            back=_url(f"/secrets/{where}", version=version),
        )

    async def change(self, request: Request) -> Response:
        session = await self.session(request)
        form = await self.submitted(request, session)
        mount, rest = self._locate(request.path_params["path"])
        secret = self._secret_of(rest)
        where = f"{mount.path}{secret}"
        action = enum_param(form.get("action"), field="action", choices=tuple(ACTIONS))
        version = _int(form.get("version"), field="version")
        if not version:
            raise InvalidRequestError("name the version")
        if form.get("confirm") != "yes":
            raise InvalidRequestError(f"tick the box to confirm: {action} version {version}")
        reason = _reason(form, required=True)
        if action == "rollback":
            done = await self._rollback(request, session, mount, secret, version, reason)
        else:
            answer = await self.call(
                request,
                session,
                "POST",
                f"{mount.path}{action}/{secret}",
                json={"versions": [version]},
                reason=reason,
            )
            if not answer.ok:
                return self.problem(request, session, status=answer.status, message=answer.error)
            done = f"version {version}: {action} done"
        return self.redirect(_url(f"/secrets/{where}", done=done))

    async def _rollback(
        self,
        request: Request,
        session: Session,
        mount: MountEntry,
        secret: str,
        version: int,
        reason: str | None,
    ) -> str:
        """Write version ``version``'s data as a new version (check-and-set on the current one)."""
        meta = await self.call(request, session, "GET", f"{mount.path}metadata/{secret}")
        if not meta.ok:
            raise _refusal(meta)
        current = int(meta.data.get("current_version") or 0)
        if version == current:
            raise InvalidRequestError(f"version {version} is already the current version")
        old = await self.call(
            request,
            session,
            "GET",
            f"{mount.path}data/{secret}",
            query={"version": str(version)},
            reason=reason,
        )
        if old.status == 404:
            raise InvalidRequestError(
                f"version {version} has no data (deleted or destroyed): undelete it first"
            )
        if not old.ok:
            raise _refusal(old)
        written = await self.call(
            request,
            session,
            "POST",
            f"{mount.path}data/{secret}",
            json={"data": old.data.get("data") or {}, "options": {"cas": current}},
            reason=reason,
        )
        if not written.ok:
            raise _refusal(written)
        return (
            f"rolled back: version {written.data.get('version')} has the data of version {version}"
        )


def _offered(action: str, row: dict[str, Any]) -> bool:
    """Whether an action makes sense for a history row (no undelete of a live version, ...)."""
    if row["destroyed"]:
        return False
    if action == "rollback":
        return not row["current"] and not row["deleted"]
    if action == "undelete":
        return bool(row["deleted"])
    if action == "delete":
        return not row["deleted"]
    return True


def _refusal(answer: ApiAnswer) -> KustosError:
    """The error a failed API answer stands for (its page gets the same status)."""
    if answer.status == 403:
        return PermissionDeniedError(answer.error)
    if answer.status == 404:
        return NotFoundError(answer.error)
    if answer.status == 503:
        return SealedError(answer.error)
    if 400 <= answer.status < 500:
        return InvalidRequestError(answer.error)
    return KustosError(answer.error)
