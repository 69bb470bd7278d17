"""kustos.gitops.gotext against Go's own text/template and sprig: the same templates, the same output.

External Secrets renders templates with Go's ``text/template`` and sprig;
:mod:`kustos.gitops.gotext` re-implements both in Python. This test builds a
small Go program (``tests/support/gotemplate/main.go``: ``missingkey=error``,
sprig's ``TxtFuncMap`` without ``env``/``expandenv``, a map of strings as the
data, as External Secrets' engine v2 does) with Debian's Go toolchain and
sprig sources (``scripts/install-system-deps.sh`` installs ``golang-go`` and
``golang-github-masterminds-sprig-dev``), renders every case with it, and
requires Kustos to give the same output, or an error where Go gives one.
Nothing is fetched: the build is offline (GOPATH mode over Debian's sources).

Excluded on purpose (documented in docs/operator.md): ``b64dec`` of invalid
input (sprig returns the error text as the value; Kustos fails), ``fail``'s
message, and functions Kustos refuses (dates, random values, regular
expressions, crypto). Debian's Go is 1.19: no ``else with`` (1.23) or
``range`` over an integer (1.22) here; the unit tests cover those.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kustos.errors import InvalidRequestError
from kustos.gitops.gotext import StringMap, execute, parse
from kustos.gitops.sprig import eso_functions
from tests.support import gotemplate

DATA = {
    "password": "p@ss w/rd&<x>",
    "user": "admin",
    "my-key": "dash",
    "empty": "",
    "num": "42",
    "b64": "aGVsbG8gd29ybGQ=",
    "spaces": "  padded  ",
    "multi": "line1\nline2\n",
    "unicode": "héllo ✓",
    "csv": "a,b,,c",
    "path": "/etc/app/../conf/db.yaml",
    "config": json.dumps(
        {
            "host": "db.internal",
            "port": 5432,
            "ratio": 0.5,
            "big": 1000000,
            "tiny": 0.0001,
            "neg": -3,
            "on": True,
            "none": None,
            "tags": ["b", "a", "b"],
            "nested": {"k": "v", "n": 1},
            "html": "<a&b>",
        }
    ),
}

CASES = [
    # the language
    "{{ .password }}",
    "{{ .user }}:{{ .password }}",
    '{{ index . "my-key" }}',
    '[{{ index . "absent" }}]',
    "{{ .absent }}",
    "{{ $.user }}",
    "{{ $u := .user }}[{{ $u }}]",
    "{{ $u := 1 }}{{ $u = 2 }}{{ $u }}",
    "a  {{- .user -}}  b",
    "a {{/* a comment */}} b",
    "{{- /* trimmed */ -}}  x",
    "{{ if .empty }}yes{{ else }}no{{ end }}",
    '{{ if eq .user "root" }}R{{ else if eq .user "admin" }}A{{ else }}-{{ end }}',
    "{{ range $k, $v := . }}{{ $k }}={{ len $v }};{{ end }}",
    "{{ range $i, $e := list 1 2 3 }}{{ $i }}{{ $e }},{{ end }}",
    "{{ range list }}x{{ else }}empty{{ end }}",
    "{{ range list 1 2 3 4 5 }}{{ if eq . 2 }}{{ continue }}{{ end }}"
    "{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}",
    "{{ range $x := list 1 2 }}{{ $y := $x }}{{ end }}{{ $y }}",
    "{{ with .user }}<{{ . }}>{{ end }}",
    "{{ with .empty }}x{{ else }}none{{ end }}",
    "{{ with $x := .num }}{{ $x }}{{ end }}",
    '{{ printf "%s-%d-%05.2f-%q-%v-%x-%t-%%" .user 42 3.14159 .user 1.5 "hi" true }}',
    '{{ printf "%v %v %v" (list 1 "a") (dict "k" 1) nil }}',
    '{{ printf "%x %X %o %b %c" 255 "hi" 8 5 65 }}',
    '{{ printf "[%5d][%-5s][%08.3f][%.2s][%6.1f]" 42 "ab" 3.14159 "abcdef" 2.25 }}',
    '{{ printf "%e %g %g %g" 1234.5678 0.000012 100000000.0 1.0 }}',
    '{{ printf "%v|%v|%v|%s" true 1.0 (list "a" 1 (dict "k" "v")) .unicode }}',
    '{{ printf "%q|%v" .multi (.config | fromJson).tags }}',
    '{{ print 1 2 "a" "b" 3 nil }}',
    "{{ println .user 1 }}",
    "{{ html \"<a href='x'>&</a>\" }}",
    "{{ urlquery .password }}",
    "{{ len .unicode }}",
    "{{ slice .user 1 3 }}",  # sprig's slice replaces Go's: lists only
    "{{ slice (list 1 2 3) 1 }}|{{ slice (list 1 2 3) 0 2 }}|{{ slice (list) 1 }}",
    "{{ slice (list 1 2 3) 2 9 }}",
    '{{ and 1 0 "x" }}|{{ and 1 2 }}|{{ or 0 "" "x" }}|{{ or 0 "" }}',
    "{{ not .empty }}|{{ not 1 }}",
    "{{ eq 1 3 2 1 }}|{{ ne 1 2 }}|{{ lt 1 2 }}|{{ le 2 2 }}|{{ gt 1.5 1.4 }}|{{ ge 1 2 }}",
    '{{ lt 1 "a" }}',
    '{{ eq .num "42" }}|{{ lt "a" "b" }}',
    "{{ 0x1F }} {{ 1_000 }} {{ 0b101 }} {{ 0o17 }} {{ 017 }} {{ 1e3 }} {{ 1.5e-7 }} {{ 'a' }}",
    '{{ "a\\tb\\u00e9\\x41" }}|{{ `raw\\n` }}',
    "{{ true }} {{ false }}",
    "{{ nil }}",
    "{{ .user.x }}",
    "{{ (.config | fromJson).host }}",
    "{{ (.config | fromJson).port }} {{ (.config | fromJson).big }}",
    "{{ (.config | fromJson).ratio }} {{ (.config | fromJson).tiny }} {{ (.config | fromJson).neg }}",
    "{{ (.config | fromJson).tags }} {{ (.config | fromJson).nested }}",
    "{{ (.config | fromJson).on }} {{ (.config | fromJson).none }}",
    "{{ $c := .config | fromJson }}{{ range $k, $v := $c.nested }}{{ $k }}{{ $v }}{{ end }}",
    "{{ $c := fromJson .config }}{{ index $c.tags 1 }} {{ len $c.tags }}",
    "{{ index (fromJson .config).tags 5 }}",
    "{{ undefinedFunction .user }}",
    "{{ .user | }}|{{ (.user | upper |) }}",
    "{{ | .user }}",
    "{{ .user | | upper }}",
    "{{ .user | nil }}",
    "{{ if }}x{{ end }}",
    "{{ end }}",
    "{{ range .user }}{{ . }}{{ end }}",
    # sprig: encodings and JSON
    "{{ .password | b64enc }}|{{ .b64 | b64dec }}|{{ .unicode | b64enc | b64dec }}",
    "{{ .user | b32enc }}|{{ .user | b32enc | b32dec }}",
    "{{ .config | fromJson | toJson }}",
    "{{ .config | fromJson | toPrettyJson }}",
    "{{ .config | fromJson | toRawJson }}",
    '{{ "not json" | fromJson }}',
    '{{ "[1, 2]" | fromJson }}',
    "{{ .password | toJson }}|{{ list 1 2.5 true nil | toJson }}",
    '{{ dict "b" 1 "a" (list "x") | toJson }}',
    # sprig: strings
    '{{ .user | upper }}|{{ .unicode | upper }}|{{ "ABC" | lower }}',
    '{{ "hello wORLD" | title }}|{{ "Hello World" | untitle }}',
    '{{ .spaces | trim }}|{{ "$$x$$" | trimAll "$" }}|{{ "prefix-x" | trimPrefix "prefix-" }}'
    '|{{ "x.yaml" | trimSuffix ".yaml" }}',
    '{{ .password | replace "/" "_" }}|{{ .csv | replace "," "" }}',
    '{{ repeat 3 "ab" }}|{{ substr 1 3 "hello" }}|{{ substr 2 99 "hello" }}|{{ substr -1 3 "hello" }}',
    '{{ substr 3 1 "hello" }}',
    '{{ substr -1 9 "hello" }}',
    '{{ substr 7 9 "hello" }}',
    '{{ trunc 3 "hello" }}|{{ trunc -2 "hello" }}|{{ trunc 99 "hi" }}',
    '{{ nospace " a b\\tc " }}|{{ contains "ss" .password }}|{{ hasPrefix "ad" .user }}'
    '|{{ hasSuffix "x" .user }}',
    "{{ .password | quote }}|{{ .multi | quote }}|{{ quote .user 1 }}|{{ .user | squote }}",
    '{{ cat "a" 1 .user nil "b" }}',
    "{{ .multi | indent 4 }}|{{ .multi | nindent 2 }}",
    '{{ splitList "," .csv }}|{{ (split "," .csv)._1 }}|{{ join "-" (splitList "," .csv) }}',
    '{{ join "," (list 1 "a" 2.5) }}',
    '{{ list "b" "a" "C" | sortAlpha }}|{{ toString 42 }}|{{ toString 1.5 }}',
    # sprig: defaults and logic
    '{{ .empty | default "dflt" }}|{{ .user | default "dflt" }}|{{ 0 | default 7 }}',
    "{{ empty .empty }}|{{ empty .user }}|{{ empty 0 }}|{{ empty (list) }}|{{ empty (dict) }}",
    '{{ coalesce .empty "" "third" }}|{{ ternary "yes" "no" true }}|{{ ternary "yes" "no" false }}',
    '{{ compact (list 1 0 "" "a" nil) }}|{{ all 1 "a" }}|{{ all 1 0 }}|{{ any 0 "" 3 }}',
    # sprig: dicts
    '{{ $d := dict "a" 1 "b" 2 }}{{ get $d "a" }}|{{ get $d "z" }}|{{ hasKey $d "b" }}',
    '{{ $d := dict "a" 1 }}{{ $_ := set $d "b" 2 }}{{ $_ := unset $d "a" }}{{ $d }}',
    '{{ keys (dict "b" 1 "a" 2) | sortAlpha }}',
    '{{ pick (dict "a" 1 "b" 2 "c" 3) "a" "c" }}|{{ omit (dict "a" 1 "b" 2) "a" }}',
    '{{ dig "nested" "k" "none" (.config | fromJson) }}|{{ dig "x" "y" "none" (.config | fromJson) }}',
    '{{ dict "a" }}',
    # sprig: lists
    "{{ $l := list 1 2 3 }}{{ first $l }} {{ last $l }} {{ rest $l }} {{ initial $l }}",
    "{{ append (list 1 2) 3 }} {{ prepend (list 1 2) 0 }} {{ reverse (list 1 2 3) }}",
    '{{ uniq (list 1 1 "a" "a" 2) }} {{ has 2 (list 1 2) }} {{ without (list 1 2 3 2) 2 }}',
    "{{ concat (list 1) (list 2 3) }} {{ until 3 }} {{ first (list) }}",
    # sprig: numbers
    "{{ add 1 2 3 }} {{ add1 5 }} {{ sub 5 7 }} {{ mul 2 3 4 }} {{ div 7 2 }} {{ mod 7 3 }}",
    '{{ max 1 9 3 }} {{ min 4 2 8 }} {{ atoi .num }} {{ atoi "x" }} {{ int "12" }} {{ int64 3.9 }}',
    '{{ float64 "1.5" }} {{ add .num 1 }} {{ div 1 0 }}',
    # sprig: digests and paths
    "{{ sha1sum .password }}|{{ sha256sum .password }}|{{ adler32sum .password }}",
    "{{ base .path }}|{{ dir .path }}|{{ ext .path }}|{{ clean .path }}",
    '{{ base "" }}|{{ base "///" }}|{{ base "a/b/" }}|{{ dir "" }}|{{ dir "file" }}|{{ dir "/" }}',
    '{{ dir "//a//b" }}|{{ clean "" }}|{{ clean "//a/./b/../c/" }}|{{ clean "../../x" }}',
    '{{ ext ".bashrc" }}|{{ ext "a.b/c" }}|{{ ext "x.tar.gz" }}|{{ ext "" }}',
]


@pytest.fixture(scope="module")
def go_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go renderer, built offline from Debian's Go and sprig sources."""
    reason = gotemplate.missing()
    if reason:
        pytest.skip(reason)
    return gotemplate.build(tmp_path_factory.mktemp("gotemplate"))


def _go(binary: Path, templates: list[str]) -> list[dict[str, Any]]:
    cases = [{"template": template, "data": DATA} for template in templates]
    done = subprocess.run(
        [str(binary)], input=json.dumps(cases), capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    return list(json.loads(done.stdout))


def _kustos(template: str) -> dict[str, Any]:
    try:
        parsed = parse(template, name="t", functions=eso_functions())
        return {"output": execute(parsed, StringMap(DATA)), "error": False}
    except InvalidRequestError:
        return {"output": "", "error": True}


def test_every_case_renders_as_go_renders_it(go_render: Path) -> None:
    expected = _go(go_render, CASES)
    differences = []
    for template, want in zip(CASES, expected, strict=True):
        got = _kustos(template)
        if got != want:
            differences.append(f"{template!r}\n    go:     {want}\n    kustos: {got}")
    assert not differences, f"{len(differences)} of {len(CASES)} differ:\n" + "\n".join(differences)


def test_the_go_renderer_is_the_real_thing(go_render: Path) -> None:
    """The harness itself: a value renders, a missing key is an error (missingkey=error)."""
    assert _go(go_render, ["{{ .user | upper }}", "{{ .absent }}"]) == [
        {"output": "ADMIN", "error": False},
        {"output": "", "error": True},
    ]
