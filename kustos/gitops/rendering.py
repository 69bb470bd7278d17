"""The template language of Kustos: sandboxed Jinja2, shared by the operator and the agent.

External Secrets and Vault agent use Go templates (``{{ .password }}``);
Kustos uses Jinja2 in a :class:`~jinja2.sandbox.SandboxedEnvironment`
(``{{ password }}``), so a template written by a namespace tenant cannot
reach Python internals. The operator renders an ExternalSecret's
``target.template`` with :func:`render_templates` (each fetched key a
top-level variable, as text, and ``data`` holding them all); the agent
renders ``--template`` files with :func:`make_environment` plus its own
globals. Vault agent templates are translated to this language first
(:mod:`kustos.gitops.gotemplates`).

Filters beyond Jinja's own: ``b64enc``, ``b64dec``, ``fromjson``,
``upper``/``lower`` (built in). Undefined variables are errors, not empty
strings; an undefined value in a condition (``{% if x %}``) is false.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, NoReturn

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from kustos.errors import InvalidRequestError

__all__ = ["MissingValue", "make_environment", "render_templates", "safe_message"]


class MissingValue(Undefined):
    """An undefined value: false in a condition and empty in a loop, an error when printed."""

    __slots__ = ()

    def __str__(self) -> str:
        self._fail_with_undefined_error()


def make_environment(*, lenient_conditions: bool = False) -> SandboxedEnvironment:
    """A fresh sandbox with the Kustos filters; autoescape off (values are not HTML).

    ``lenient_conditions`` makes an undefined value false in ``if`` and empty
    in ``for`` (Go templates behave so); printing it is still an error.
    """
    env = SandboxedEnvironment(
        undefined=MissingValue if lenient_conditions else StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
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
            _fail(f"template for key {key!r}", exc)
    return rendered


def safe_message(exc: TemplateError) -> str:
    """A template error's message, cut short (Jinja's name variables and syntax, never values)."""
    return str(exc.message or "")[:200]


def _fail(what: str, exc: TemplateError) -> NoReturn:
    raise InvalidRequestError(f"{what} failed: {type(exc).__name__}: {safe_message(exc)}") from None


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
