"""Go's text/template evaluated in Python: the language, Go's output rules, the limits."""

from __future__ import annotations

from typing import Any

import pytest

from kustos.gitops.gotext import (
    GoTemplateError,
    StringMap,
    execute,
    format_value,
    go_quote,
    go_str,
    parse,
)
from kustos.gitops.sprig import eso_functions

FUNCS = eso_functions()


def render(source: str, data: Any = None, **limits: int) -> str:
    if data is None:
        data = StringMap({"password": "hunter2", "user": "admin", "my-key": "dash"})
    return execute(parse(source, name="t", functions=FUNCS), data, **limits)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("plain text", "plain text"),
        ("{{ .password }}", "hunter2"),
        ("{{.user}}:{{.password}}", "admin:hunter2"),
        ('{{ index . "my-key" }}', "dash"),
        ('{{ index . "absent" }}|', "|"),  # index of a missing key: the zero value
        ("{{ $.user }}", "admin"),
        ("{{ $u := .user }}[{{ $u }}]", "[admin]"),
        ("{{ $u := 1 }}{{ $u = 2 }}{{ $u }}", "2"),
        ("a  {{- .user -}}  b", "aadminb"),
        ("a\n  {{- /* a comment */ -}}\n  b", "ab"),
        ("{{/* only a comment */}}x", "x"),
        ("{{ -3 }}", "-3"),
        ('{{ "a\\tb\\x41\\u00e9" }}', "a\tbAé"),
        ("{{ `raw \\n` }}", "raw \\n"),
        ("{{ 0x1F }} {{ 0o17 }} {{ 1_000 }} {{ 1.5 }} {{ 'a' }}", "31 15 1000 1.5 97"),
        ("{{ true }} {{ false }}", "true false"),
        ('{{ if eq .user "admin" }}yes{{ else }}no{{ end }}', "yes"),
        ('{{ if eq .user "x" }}1{{ else if eq .user "admin" }}2{{ else }}3{{ end }}', "2"),
        ('{{ if and .user (eq .password "hunter2") }}ok{{ end }}', "ok"),
        ('{{ if or "" .user }}{{ or "" .user }}{{ end }}', "admin"),
        ("{{ if not .user }}x{{ else }}y{{ end }}", "y"),
        ('{{ with .user }}<{{ . }}>{{ end }}{{ with "" }}x{{ else }}none{{ end }}', "<admin>none"),
        ('{{ with "" }}a{{ else with .user }}{{ . }}{{ end }}', "admin"),
        (
            "{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}",
            "my-key=dash;password=hunter2;user=admin;",
        ),
        ('{{ range (list "a" "b") }}[{{ . }}]{{ else }}empty{{ end }}', "[a][b]"),
        ("{{ range (list) }}x{{ else }}empty{{ end }}", "empty"),
        ("{{ range $i := 3 }}{{ $i }}{{ end }}", "012"),
        (
            '{{ range $i, $e := (list "a" "b" "c") }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $e }}{{ end }}',
            "ac",
        ),
        (
            '{{ range (list "a" "b" "c") }}{{ if eq . "b" }}{{ break }}{{ end }}{{ . }}{{ end }}',
            "a",
        ),
        ("{{ len .password }} {{ len (list 1 2) }}", "7 2"),
        ('{{ len "é" }}', "2"),  # bytes, as in Go
        (
            '{{ printf "%s:%d %q %5s|%-4s|%05d %x" .user 42 "q" "r" "l" 7 "hi" }}',
            'admin:42 "q"     r|l   |00007 6869',
        ),
        ('{{ print "a" 1 2 "b" }}', "a1 2b"),
        ("{{ println 1 2 }}", "1 2\n"),
        ("{{ slice (list 1 2 3) 1 }}", "[2 3]"),  # sprig's slice (lists only) replaces Go's
        ('{{ html "<a&b>" }} {{ urlquery "a b&c" }}', "&lt;a&amp;b&gt; a+b%26c"),
        ('{{ (fromJson `{"a": {"b": 5432}}`).a.b }}', "5432"),
        ('{{ $m := fromJson `{"a": [1, 2.5, null]}` }}{{ $m.a }}', "[1 2.5 <nil>]"),
        ('{{ (fromJson `{"b": 1, "a": "x"}`) }}', "map[a:x b:1]"),
        (
            "{{ 1e21 }} {{ 100000.0 }} {{ 1e6 }} {{ 0.00001 }} {{ 0.0001 }}",
            "1e+21 100000 1e+06 1e-05 0.0001",
        ),
    ],
)
def test_the_language(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ .missing }}", 'map has no entry for key "missing"'),
        ("{{ .user.name }}", "can't evaluate field name in type string"),
        ("{{ nosuch .user }}", 'function "nosuch" not defined'),
        ('{{ define "x" }}{{ end }}', "{{define}} is not supported"),
        ('{{ template "x" }}', "{{template}} is not supported"),
        ("{{ if .user }}", "has no {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ .user", "unclosed action"),
        ('{{ "open }}', "unterminated quoted string"),
        ("{{ $nope }}", "undefined variable $nope"),
        ("{{ break }}", "outside {{range}}"),
        ("{{ .user 1 }}", "can't give argument to non-function"),
        ("{{ eq .user 1 }}", "incompatible types for comparison"),
        ("{{ index (list 1) 5 }}", "index out of range"),
        ("{{ range .user }}{{ end }}", "range can't iterate over a string"),
        ('{{ fail "the secret is hunter2" }}', "the template called fail"),
        ("{{ b64dec .user }}", "not valid base64"),
        ("{{ upper 1 }}", "expected string"),
    ],
)
def test_errors_name_the_construct(source: str, message: str) -> None:
    with pytest.raises(GoTemplateError, match=r"^template t:") as caught:
        render(source)
    assert message in str(caught.value)


def test_go_builtin_slice_takes_strings_when_sprig_does_not_replace_it() -> None:
    template = parse('{{ slice "hello" 1 3 }}|{{ slice "hello" 2 }}', name="t", functions={})
    assert execute(template, StringMap()) == "el|llo"
    with pytest.raises(GoTemplateError, match="sprig's slice takes no string"):
        render('{{ slice "hello" 1 3 }}')


def test_a_trailing_pipe_is_accepted_and_nil_is_not_a_command() -> None:
    assert render("{{ .user | }}|{{ (.user | upper |) }}") == "admin|ADMIN"
    with pytest.raises(GoTemplateError, match="nil is not a command"):
        render("{{ nil }}")


def test_errors_never_carry_a_value() -> None:
    secret = "S3cr3t-value"
    data = StringMap({"password": secret, "n": "987654"})
    sources = [
        "{{ .password.x }}",
        "{{ index (list 1 2) (atoi .n) }}",
        "{{ fail .password }}",
        "{{ b64dec .password }}",
        "{{ eq .password 3 }}",
        "{{ mustFromJson .password }}",
        '{{ printf "%d" .password }}',
        "{{ range .password }}{{ end }}",
        "{{ repeat 100000000 .password }}",
        "{{ .password | int | upper }}",
    ]
    for source in sources:
        with pytest.raises(GoTemplateError) as caught:
            execute(parse(source, name="k", functions=FUNCS), data)
        assert secret not in str(caught.value), source
        assert "987654" not in str(caught.value), source


def test_work_and_output_are_bounded() -> None:
    with pytest.raises(GoTemplateError, match="too much work"):
        render("{{ range $i := 1000000 }}{{ end }}", max_steps=10_000)
    with pytest.raises(GoTemplateError, match="output larger than"):
        render("{{ range $i := 100 }}0123456789{{ end }}", max_output=500)
    with pytest.raises(GoTemplateError, match="nested too deeply"):
        render("{{ " + "(" * 200 + "1" + ")" * 200 + " }}")
    with pytest.raises(GoTemplateError, match="nested too deeply"):
        render("{{ if true }}" * 100 + "{{ end }}" * 100)


def test_binary_values_survive_b64enc() -> None:
    raw = bytes(range(256))
    out = render("{{ .blob | b64enc }}", StringMap({"blob": go_str(raw)}))
    import base64

    assert base64.b64decode(out) == raw
    assert render('{{ "\\xff" | b64enc }}') == "/w=="


def test_fields_read_map_keys_only_never_attributes() -> None:
    class Thing(dict[str, str]):
        secret_attribute = "nope"

    with pytest.raises(GoTemplateError, match="no entry for key"):
        render("{{ .secret_attribute }}", Thing())
    with pytest.raises(GoTemplateError, match="no entry for key"):
        render("{{ .__class__ }}", StringMap())


def test_format_value_and_quote_follow_go() -> None:
    assert format_value(None) == "<no value>"
    assert format_value([1, "a", None]) == "[1 a <nil>]"
    assert format_value({"b": 2, "a": [True]}) == "map[a:[true] b:2]"
    assert format_value(3.0) == "3" and format_value(-2.5) == "-2.5"
    assert format_value(123456789.0) == "1.23456789e+08"  # fmt's %v for a float64
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'


def test_scopes_end_with_their_block() -> None:
    assert render("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}") == "21"
    assert render("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}") == "2"
    with pytest.raises(GoTemplateError, match="undefined variable"):
        render("{{ if true }}{{ $y := 2 }}{{ end }}{{ $y }}")
