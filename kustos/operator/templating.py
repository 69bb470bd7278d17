"""``target.template`` of an ExternalSecret: Go templates (External Secrets) or Jinja2 (Kustos).

Two engines, picked by the group of the ExternalSecret:

- ``external-secrets.io`` objects use External Secrets' ``engineVersion: v2``:
  Go's ``text/template`` with sprig (:mod:`kustos.gitops.gotext`,
  :mod:`kustos.gitops.sprig`), each fetched key a field of the dot
  (``{{ .password | b64enc }}``, ``{{ index . "my-key" }}``), a missing key an
  error. Manifests written for External Secrets render here unchanged.
- ``kustos.io`` objects use Jinja2 in a :class:`~jinja2.sandbox.SandboxedEnvironment`
  (``{{ password }}``, ``data['my-key']``), so a template written by a
  namespace tenant cannot reach Python internals. Filters beyond Jinja's own:
  ``b64enc``, ``b64dec``, ``fromjson``. Undefined variables are errors.

:func:`apply_template` is External Secrets' order of work, for both engines:
``type``; the fetched data kept when ``mergePolicy: Merge`` (or when there is
nothing to render); each ``templateFrom`` entry (a ConfigMap's or Secret's
keys as templates, or a ``literal``; ``templateAs: Values`` renders each
value, ``KeysAndValues`` renders the whole text into a YAML map of keys and
values) applied to its ``target`` (``Data``, ``Annotations`` or ``Labels``)
with its ``valuesDecodingStrategy``; then ``data``; then the labels and
annotations of ``metadata`` (rendered too with the Go engine, as External
Secrets does; kept as written with Jinja).

Every error names the key (or the ConfigMap/Secret and item) whose template
failed and what failed, never a value.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from kustos.errors import InvalidRequestError
from kustos.gitops.gotext import GoTemplateError, StringMap, execute, go_bytes, go_str, parse
from kustos.gitops.sprig import eso_functions

__all__ = [
    "Engine",
    "Rendered",
    "TemplateSources",
    "apply_template",
    "decode_value",
    "make_environment",
    "render_templates",
    "template_sources",
]


class Engine(enum.StrEnum):
    """Which template language a spec's templates are written in."""

    GO = "go"
    """External Secrets' ``engineVersion: v2``: Go ``text/template`` and sprig."""
    JINJA = "jinja"
    """The Kustos extension: sandboxed Jinja2."""


TemplateSources = Mapping[tuple[str, str], Mapping[str, bytes]]
"""``templateFrom`` sources the controller read: ``(kind, name)`` -> the object's data, decoded."""


@dataclass(frozen=True)
class Rendered:
    """What a template made: the Secret's data, labels, annotations and type."""

    data: dict[str, bytes] = field(repr=False)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    type: str = "Opaque"


def make_environment() -> SandboxedEnvironment:
    """A fresh Jinja sandbox with the Kustos filters; autoescape off (values are not HTML)."""
    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["b64enc"] = lambda value: base64.b64encode(_bytes(value)).decode()
    env.filters["b64dec"] = lambda value: base64.b64decode(_bytes(value)).decode()
    env.filters["fromjson"] = lambda value: json.loads(value)
    return env


class _Renderer:
    """Renders single template texts with one engine over one data map (parsed once per call)."""

    def __init__(self, engine: Engine, data: Mapping[str, bytes]) -> None:
        self.engine = engine
        if engine is Engine.GO:
            self._functions = eso_functions()
            self._go_data = StringMap({key: go_str(value) for key, value in data.items()})
        else:
            self._env = make_environment()
            text = {key: value.decode(errors="replace") for key, value in data.items()}
            self._context: dict[str, Any] = {**text, "data": text}

    def render(self, source: str, *, where: str) -> bytes:
        if self.engine is Engine.GO:
            try:
                template = parse(source, name=where, functions=self._functions)
                return go_bytes(execute(template, self._go_data))
            except GoTemplateError as exc:
                raise InvalidRequestError(f"template for {where} failed: {exc}") from None
        try:
            return self._env.from_string(source).render(self._context).encode()
        except TemplateError as exc:
            raise InvalidRequestError(
                f"template for {where} failed: {type(exc).__name__}: {_safe(exc)}"
            ) from None


def render_templates(
    templates: Mapping[str, str],
    *,
    data: Mapping[str, bytes],
    engine: Engine = Engine.JINJA,
) -> dict[str, bytes]:
    """Render every ``template.data`` entry; errors name the key, never a value."""
    renderer = _Renderer(engine, data)
    return {key: renderer.render(source, where=f"key {key!r}") for key, source in templates.items()}


def decode_value(value: bytes, strategy: str, *, where: str) -> bytes:
    """``decodingStrategy`` (External Secrets' rules): None, Base64, Base64URL or Auto.

    ``Auto`` tries standard base64, then URL-safe base64, and keeps the value
    as it is when neither fits.
    """
    if strategy in ("", "None"):
        return value
    if strategy == "Base64":
        return _b64(value, where=where, strategy=strategy)
    if strategy == "Base64URL":  # padding optional, as JWTs and many tools omit it
        padded = value + b"=" * (-len(value) % 4)
        return _b64(padded, where=where, strategy=strategy, urlsafe=True)
    if strategy == "Auto":
        for urlsafe in (False, True):
            try:
                return _b64(value, where=where, strategy=strategy, urlsafe=urlsafe)
            except InvalidRequestError:
                continue
        return value
    raise InvalidRequestError(f"decodingStrategy {strategy!r} is not supported")


def _b64(value: bytes, *, where: str, strategy: str, urlsafe: bool = False) -> bytes:
    try:
        if urlsafe:
            if b"+" in value or b"/" in value:
                raise binascii.Error("not url-safe")
            return base64.b64decode(value.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"value for {where} is not valid {strategy}") from None


def template_sources(template: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``(kind, name)`` of every ConfigMap and Secret ``templateFrom`` reads."""
    wanted: list[tuple[str, str]] = []
    for item in template.get("templateFrom") or []:
        for kind, field_name in (("ConfigMap", "configMap"), ("Secret", "secret")):
            ref = item.get(field_name)
            if isinstance(ref, Mapping) and ref.get("name"):
                source = (kind, str(ref["name"]))
                if source not in wanted:
                    wanted.append(source)
    return wanted


def apply_template(
    template: Mapping[str, Any],
    data: Mapping[str, bytes],
    *,
    engine: Engine,
    sources: TemplateSources | None = None,
) -> Rendered:
    """External Secrets' ``ApplyTemplate``: what ``target.template`` makes of the fetched ``data``."""
    sources = sources or {}
    metadata = template.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}
    result = _Target(data={}, labels=labels, annotations=annotations)
    template_data = template.get("data") or {}
    template_from = template.get("templateFrom") or []
    if template.get("mergePolicy") == "Merge" or (not template_data and not template_from):
        result.data.update(data)
    renderer = _Renderer(engine, data)
    for index, item in enumerate(template_from):
        _template_from(result, renderer, item, index=index, sources=sources)
    for key, source in template_data.items():
        result.data[str(key)] = renderer.render(str(source), where=f"key {key!r}")
    if engine is Engine.GO:
        for target, values in (("Labels", labels), ("Annotations", annotations)):
            for key, source in dict(values).items():
                rendered = renderer.render(source, where=f"{target.lower()[:-1]} {key!r}")
                result.put(target, key, rendered)
    return Rendered(
        data=result.data,
        labels=result.labels,
        annotations=result.annotations,
        type=str(template.get("type") or "Opaque"),
    )


@dataclass
class _Target:
    data: dict[str, bytes]
    labels: dict[str, str]
    annotations: dict[str, str]

    def put(self, target: str, key: str, value: bytes) -> None:
        if target == "Data":
            self.data[key] = value
            return
        text = value.decode("utf-8", "replace")
        if target == "Labels":
            self.labels[key] = text
        else:
            self.annotations[key] = text


def _template_from(
    result: _Target,
    renderer: _Renderer,
    item: Mapping[str, Any],
    *,
    index: int,
    sources: TemplateSources,
) -> None:
    target = str(item.get("target") or "Data")
    normalized = {"data": "Data", "annotations": "Annotations", "labels": "Labels"}.get(
        target.lower()
    )
    if normalized is None:
        raise InvalidRequestError(
            f"templateFrom[{index}].target {target!r} is not supported (Data, Annotations or Labels)"
        )
    decoding = str(item.get("valuesDecodingStrategy") or "None")
    pieces: list[tuple[str, str, str]] = []  # (scope, key, template text)
    where = f"templateFrom[{index}]"
    if item.get("literal") is not None:
        pieces.append(("KeysAndValues", "literal", str(item["literal"])))
    for kind, field_name in (("ConfigMap", "configMap"), ("Secret", "secret")):
        ref = item.get(field_name)
        if not isinstance(ref, Mapping):
            continue
        name = str(ref.get("name") or "")
        source = sources.get((kind, name))
        if source is None:
            raise InvalidRequestError(f"{where}: {kind} {name!r} does not exist")
        for entry in ref.get("items") or []:
            key = str(entry.get("key") or "")
            if key not in source:
                raise InvalidRequestError(f"{where}: {kind} {name!r} has no key {key!r}")
            scope = str(entry.get("templateAs") or "Values")
            if scope not in ("Values", "KeysAndValues"):
                raise InvalidRequestError(
                    f"{where}: templateAs {scope!r} must be Values or KeysAndValues"
                )
            pieces.append((scope, key, source[key].decode("utf-8", "surrogateescape")))
    for scope, key, text in pieces:
        label = f"{where} key {key!r}"
        rendered = renderer.render(text, where=label)
        if scope == "Values":
            result.put(normalized, key, decode_value(rendered, decoding, where=label))
            continue
        try:
            loaded = yaml.safe_load(rendered) if rendered.strip() else {}
        except yaml.YAMLError:
            raise InvalidRequestError(f"{label}: the rendered text is not a YAML map") from None
        if not isinstance(loaded, dict):
            raise InvalidRequestError(f"{label}: the rendered text is not a YAML map")
        for out_key, out_value in loaded.items():
            value = out_value if isinstance(out_value, str) else json.dumps(out_value)
            result.put(
                normalized,
                str(out_key),
                decode_value(value.encode(), decoding, where=f"{label} -> {out_key!r}"),
            )


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _safe(exc: TemplateError) -> str:
    # Jinja's messages name variables and syntax, not values; cut them short anyway.
    return str(exc.message or "")[:200]
