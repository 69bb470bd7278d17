"""The agent's templates: Kustos Jinja and Vault agent forms, rendering as a pure function whose
``secret(path)`` calls become the file's dependencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kustos.agent.specs import TemplateSpec
from kustos.agent.templates import (
    SecretNeeded,
    SecretUnavailable,
    TemplateRenderer,
    vault_shape,
)
from kustos.errors import InvalidRequestError

DB = vault_shape({"user": "app", "password": "pw"}, {"version": 4})


def _renderer(source: str) -> TemplateRenderer:
    return TemplateRenderer(TemplateSpec(name="out", file=Path("t.tmpl"), source=source))


def _lookup(known: dict[str, dict[str, Any]]) -> Any:
    def lookup(path: str) -> dict[str, Any]:
        if path not in known:
            raise SecretNeeded(path)
        return known[path]

    return lookup


def test_vault_template_and_its_dependencies() -> None:
    renderer = _renderer(
        '{{ with secret "secret/data/app/db" }}{{ .Data.data.user }}:{{ .Data.data.password }}'
        "@v{{ .Data.metadata.version }}{{ end }}"
    )
    assert renderer.go
    with pytest.raises(SecretNeeded) as needed:
        renderer.render(lookup=_lookup({}), named={})
    assert needed.value.path == "secret/data/app/db"
    rendered = renderer.render(lookup=_lookup({"secret/data/app/db": DB}), named={})
    assert rendered.content == b"app:pw@v4"
    assert rendered.paths == frozenset({"secret/data/app/db"})


def test_jinja_template_with_named_secrets() -> None:
    renderer = _renderer(
        "U={{ db.user }} K={{ secrets['api-key'] }} S={{ secret('secret/x').Data.data.user }}"
    )
    assert not renderer.go
    rendered = renderer.render(
        lookup=_lookup({"secret/x": DB}),
        named={"db": {"user": "app"}, "api-key": "k1"},
    )
    assert rendered.content == b"U=app K=k1 S=app"


def test_unavailable_and_broken_templates() -> None:
    renderer = _renderer('{{ with secret "secret/data/gone" }}{{ .Data.data.x }}{{ end }}')

    def gone(path: str) -> dict[str, Any]:
        raise SecretUnavailable(path, "not found")

    with pytest.raises(SecretUnavailable):
        renderer.render(lookup=gone, named={})
    with pytest.raises(InvalidRequestError, match="--template out"):
        _renderer("{% if %}")
    missing = _renderer("{{ db.password }}")
    with pytest.raises(InvalidRequestError, match="UndefinedError"):
        missing.render(lookup=_lookup({}), named={})
    bad_b64 = _renderer('{{ with secret "secret/x" }}{{ "abc" | base64Decode }}{{ end }}')
    with pytest.raises(InvalidRequestError, match="rendering failed in a function"):
        bad_b64.render(lookup=_lookup({"secret/x": DB}), named={})
