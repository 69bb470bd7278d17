"""Sealing in the console: a pasted (or uploaded) Secret manifest in, a SealedSecret out.

What ``kustos seal`` does, with the server's own certificate: the page
posts the manifest (form body, over the console's session), the server
fetches its sealing certificate bundle through the API
(``GET sys/sealing/cert``, audited like any call) and seals with
:func:`kustos.gitops.sealing.seal_secret`, in either format (Sealed Secrets'
``bitnami.com/v1alpha1`` or Kustos' native one) and scope. The Secret's
values exist in plaintext only in this request's memory: nothing is
stored, logged or audited of them, and the answer holds only ciphertext.
The result is shown on the page or sent as a file download.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kustos.crypto.sealing import load_certificates
from kustos.errors import InvalidRequestError, SealedError
from kustos.gitops.sealing import (
    Scope,
    SealFormat,
    dump_manifests,
    load_manifests,
    parse_secret,
    seal_secret,
)
from kustos.server.console.rendering import Pages
from kustos.server.params import enum_param

__all__ = ["SCOPES", "SealingPages"]

SCOPES: Final = ("", *(scope.value for scope in Scope))
"""``""`` keeps the scope the Secret's annotations declare."""
_OUTPUTS: Final = ("yaml", "json")
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


class SealingPages(Pages):
    """``/ui/seal``: the form, and the sealed result (shown or downloaded)."""

    def routes(self) -> list[Route]:
        g = self.guarded
        return [
            Route("/seal", g(self.form), methods=["GET"]),
            Route("/seal", g(self.seal), methods=["POST"]),
        ]

    def _page(self, request: Request, session: Any, **context: Any) -> Response:
        defaults: dict[str, Any] = {
            "formats": [f.value for f in SealFormat],
            "scopes": SCOPES,
            "outputs": _OUTPUTS,
            "chosen": {"format": "bitnami", "scope": "", "output": "yaml"},
            "sealed": "",
            "error": "",
            "count": 0,
        }
        defaults.update(context)
        status = int(defaults.pop("status", 200))
        return self.render(request, "seal.html", session=session, status=status, **defaults)

    async def form(self, request: Request) -> Response:
        session = await self.session(request)
        return self._page(request, session)

    async def seal(self, request: Request) -> Response:
        session = await self.session(request)
        form = await self.submitted(request, session)
        chosen = {
            "format": enum_param(
                form.get("format"),
                field="format",
                choices=tuple(f.value for f in SealFormat),
                default="bitnami",
            ),
            "scope": enum_param(
                form.get("scope"), field="scope", choices=tuple(s for s in SCOPES if s), default=""
            ),
            "output": enum_param(
                form.get("output"), field="output", choices=_OUTPUTS, default="yaml"
            ),
        }
        try:
            secrets = [
                parse_secret(doc, source="the manifest")
                for doc in load_manifests(form.get("manifest"), source="the manifest")
            ]
        except InvalidRequestError as exc:
            return self._page(request, session, chosen=chosen, error=str(exc), status=400)
        answer = await self.call(request, session, "GET", "sys/sealing/cert")
        if not answer.ok:
            if answer.status == 503:
                raise SealedError(answer.error)
            return self._page(
                request, session, chosen=chosen, error=answer.error, status=answer.status
            )
        fmt = SealFormat(chosen["format"])
        certificates = load_certificates(answer.body)[:1]
        docs: list[dict[str, Any]] = []
        try:
            for secret in secrets:
                docs.extend(
                    seal_secret(
                        secret,
                        certificates=certificates,
                        now=datetime.now(UTC),
                        fmt=fmt,
                        scope=Scope(chosen["scope"]) if chosen["scope"] else None,
                    )
                )
        except InvalidRequestError as exc:
            return self._page(request, session, chosen=chosen, error=str(exc), status=400)
        text = dump_manifests(docs, "json" if chosen["output"] == "json" else "yaml")
        if form.get("download") == "1":
            stem = _SAFE_NAME.sub("-", str(docs[0]["metadata"]["name"]))[:100] or "sealed"
            return Response(
                text,
                media_type="application/json" if chosen["output"] == "json" else "application/yaml",
                headers={
                    "content-disposition": f'attachment; filename="{stem}.sealedsecret.{chosen["output"]}"'
                },
            )
        return self._page(request, session, chosen=chosen, sealed=text, count=len(docs))
