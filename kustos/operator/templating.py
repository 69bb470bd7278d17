"""``target.template`` of an ExternalSecret, rendered with a sandboxed Jinja2.

External Secrets uses Go templates (``{{ .password }}``); Kustos uses Jinja2
in a :class:`~jinja2.sandbox.SandboxedEnvironment` (``{{ password }}``), so a
template written by a namespace tenant cannot reach Python internals. Each
fetched key is a top-level variable (as text), and ``data`` holds them all.
Filters beyond Jinja's own: ``b64enc``, ``b64dec``, ``fromjson``, ``upper``/
``lower`` (built in). Undefined variables are errors, not empty strings.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from kustos.errors import InvalidRequestError

__all__ = ["make_environment", "render_templates"]


def make_environment() -> SandboxedEnvironment:
    """A fresh sandbox with the Kustos filters; autoescape off (values are not HTML)."""
    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["b64enc"] = lambda value: base64.b64encode(_bytes(value)).decode()
    env.filters["b64dec"] = lambda value: base64.b64decode(_bytes(value)).decode()
    env.filters["fromjson"] = lambda value: json.loads(value)
    return env


def render_templates(
    templates: Mapping[str, str],
    *,
    data: Mapping[str, bytes],
    env: SandboxedEnvironment | None = None,
) -> dict[str, bytes]:
    """Render every ``template.data`` entry; errors name the key, never a value."""
    env = env or make_environment()
    text = {key: value.decode(errors="replace") for key, value in data.items()}
    context: dict[str, Any] = {**text, "data": text}
    rendered: dict[str, bytes] = {}
    for key, source in templates.items():
        try:
            rendered[key] = env.from_string(source).render(context).encode()
        except TemplateError as exc:
            raise InvalidRequestError(
                f"template for key {key!r} failed: {type(exc).__name__}: {_safe(exc)}"
            ) from None
    return rendered


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _safe(exc: TemplateError) -> str:
    # Jinja's messages name variables and syntax, not values; cut them short anyway.
    return str(exc.message or "")[:200]
