"""Vault agent templates translated to sandboxed Jinja: the forms Vault's injector docs use render
the same text Go would, and anything unsupported is refused by name."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import UndefinedError

from kustos.errors import InvalidRequestError
from kustos.gitops.gotemplates import HELPERS, is_go_template, translate
from kustos.gitops.rendering import make_environment

SECRETS: dict[str, dict[str, Any]] = {
    "secret/data/app/db": {
        "Data": {
            "data": {"user": "app", "password": "p<a>&ss", "items": "not-a-method"},
            "metadata": {"version": 3},
        }
    },
    "database/creds/app": {"Data": {"username": "v-app", "password": "x1"}},
}


def render(source: str) -> str:
    env = make_environment(lenient_conditions=True)
    env.globals.update(HELPERS)
    env.globals["secret"] = lambda path: SECRETS.get(path, {})
    return env.from_string(translate(source)).render()


def test_vault_injector_forms() -> None:
    source = (
        '{{- with secret "secret/data/app/db" -}}\n'
        "postgres://{{ .Data.data.user }}:{{ .Data.data.password }}@db:5432/app\n"
        "{{- end }}\n"
    )
    assert is_go_template(source)
    assert render(source) == "postgres://app:p<a>&ss@db:5432/app\n"
    assert render('{{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}') == "v-app"


def test_range_over_map_sorted_and_variables() -> None:
    source = (
        '{{ with secret "secret/data/app/db" }}'
        "{{ range $k, $v := .Data.data }}export {{ $k }}={{ $v }}\n{{ end }}"
        "{{ end }}"
    )
    assert render(source) == (
        "export items=not-a-method\nexport password=p<a>&ss\nexport user=app\n"
    )
    assert render('{{ $s := secret "secret/data/app/db" }}{{ $s.Data.data.user }}') == "app"
    assert (
        render(
            '{{ with secret "secret/data/app/db" }}{{ range .Data.data }}[{{ . }}]{{ end }}{{ end }}'
        )
        == "[not-a-method][p<a>&ss][app]"
    )


def test_functions() -> None:
    db = '{{ with secret "secret/data/app/db" }}'
    assert render(db + "{{ .Data.data | toJSON }}{{ end }}") == (
        '{"items":"not-a-method","password":"p\\u003ca\\u003e\\u0026ss","user":"app"}'
    )
    assert render(db + '{{ index .Data.data "user" | toUpper }}{{ end }}') == "APP"
    assert render(db + "{{ .Data.data.user | base64Encode }}{{ end }}") == "YXBw"
    assert render('{{ "YXBw" | base64Decode }}') == "app"
    assert render(db + '{{ printf "%s:%d%%" .Data.data.user 5 }}{{ end }}') == "app:5%"
    assert (
        render(db + '{{ if eq .Data.data.user "app" }}yes{{ else }}no{{ end }}{{ end }}') == "yes"
    )
    assert render(db + "{{ (.Data).data.user }}{{ end }}") == "app"
    assert render("{{/* a comment */}}x") == "x"


def test_with_else_and_missing_fields() -> None:
    assert render('{{ with secret "nope" }}found{{ else }}missing{{ end }}') == "missing"
    db = '{{ with secret "secret/data/app/db" }}'
    assert (
        render(db + "{{ if .Data.data.absent }}a{{ else if .Data.data.user }}u{{ end }}{{ end }}")
        == "u"
    )
    with pytest.raises(UndefinedError):
        render(db + "{{ .Data.data.absent }}{{ end }}")  # Go would write "<no value>" into the file


def test_literal_jinja_syntax_in_text_stays_text() -> None:
    assert render('{% raw %} {# x #}{{ with secret "nope" }}{{ end }}') == "{% raw %} {# x #}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('{{ with secret "a" "ttl=1h" }}{{ end }}', "write parameters"),
        ("{{ with .x }}", "never closed"),
        ("{{ end }}", "without an open block"),
        ("{{ .x | sprig }}", "'sprig' is not supported"),
        ('{{ template "x" }}', "'template' is not supported"),
        ('{{ "unterminated }}', "unterminated string"),
        ("{{ .x ; }}", "unexpected character"),
        ("{{ (.x }}", "unbalanced"),
    ],
)
def test_unsupported_is_named(source: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        translate(source, where="template db")


def test_jinja_templates_are_not_go() -> None:
    assert not is_go_template("{{ db.password }}\n{% if x %}y{% endif %}")
    assert is_go_template("{{ .password }}")
    assert is_go_template("{{- end }}")
