"""The sprig (and External Secrets) functions of Go templates: sprig's argument order and results."""

from __future__ import annotations

import hashlib

import pytest

from kustos.gitops.gotext import GoTemplateError, StringMap, execute, parse
from kustos.gitops.sprig import eso_functions, go_json

DATA = StringMap(
    {
        "password": "p@ss w<rd>",
        "user": "  admin  ",
        "config": '{"host": "db", "port": 5432, "tags": ["a", "b"], "nested": {"k": "v"}}',
        "yaml": "a: 1\nb: [x, y]\n",
        "b64": "aGVsbG8=",
    }
)


def render(source: str) -> str:
    return execute(parse(source, name="t", functions=eso_functions()), DATA)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ .password | b64enc }}", "cEBzcyB3PHJkPg=="),
        ("{{ .b64 | b64dec }}", "hello"),
        ("{{ .b64 | b64dec | b32enc }}", "NBSWY3DP"),
        ('{{ "NBSWY3DP" | b32dec }}', "hello"),
        ("{{ .user | trim }}|", "admin|"),
        ('{{ .user | trim | upper }} {{ "ABC" | lower }}', "ADMIN abc"),
        ('{{ "hello world" | title }} {{ "Hello World" | untitle }}', "Hello World hello world"),
        (
            '{{ "xxhixx" | trimAll "x" }} {{ "pre-x" | trimPrefix "pre-" }} {{ "x.yaml" | trimSuffix ".yaml" }}',
            "hi x x",
        ),
        ('{{ .password | replace " " "_" }}', "p@ss_w<rd>"),
        ('{{ .password | quote }} {{ "it" | squote }}', "\"p@ss w<rd>\" 'it'"),
        ('{{ "a\\nb" | indent 2 }}', "  a\n  b"),
        ('{{ "a\\nb" | nindent 2 }}', "\n  a\n  b"),
        ('{{ "" | default "fallback" }} {{ "set" | default "fallback" }}', "fallback set"),
        ('{{ empty "" }} {{ empty "x" }} {{ coalesce "" "" "c" }}', "true false c"),
        ('{{ ternary "y" "n" true }} {{ true | ternary "y" "n" }}', "y y"),
        ("{{ (.config | fromJson).host }}:{{ (.config | fromJson).port }}", "db:5432"),
        (
            "{{ .config | fromJson | toJson }}",
            '{"host":"db","nested":{"k":"v"},"port":5432,"tags":["a","b"]}',
        ),
        ('{{ dict "b" "<2>" "a" 1 | toJson }}', '{"a":1,"b":"\\u003c2\\u003e"}'),
        ('{{ dict "b" "<2>" | toRawJson }}', '{"b":"<2>"}'),
        ('{{ dict "a" (list 1 2) | toPrettyJson }}', '{\n  "a": [\n    1,\n    2\n  ]\n}'),
        ("{{ .yaml | fromYaml | toJson }}", '{"a":1,"b":["x","y"]}'),
        ('{{ dict "b" (list "x") "a" "1" | toYaml }}', "a: '1'\nb:\n- x"),
        ('{{ "a,b,c" | splitList "," | join "-" }} {{ (split "," "a,b")._1 }}', "a-b-c b"),
        (
            '{{ list "b" "a" | sortAlpha }} {{ list 1 2 3 | first }} {{ list 1 2 3 | last }}',
            "[a b] 1 3",
        ),
        (
            "{{ list 1 2 3 | rest }} {{ list 1 2 3 | initial }} {{ list 1 1 2 | uniq }}",
            "[2 3] [1 2] [1 2]",
        ),
        (
            "{{ has 2 (list 1 2) }} {{ without (list 1 2 3) 2 }} {{ concat (list 1) (list 2) }}",
            "true [1 3] [1 2]",
        ),
        (
            '{{ $d := dict "a" 1 }}{{ $_ := set $d "b" 2 }}{{ keys $d }} {{ hasKey $d "a" }} {{ get $d "z" }}|',
            "[a b] true |",
        ),
        (
            '{{ pick (dict "a" 1 "b" 2) "a" }} {{ omit (dict "a" 1 "b" 2) "a" }}',
            "map[a:1] map[b:2]",
        ),
        ('{{ dig "x" "y" "none" (dict "x" (dict "y" "found")) }}', "found"),
        (
            "{{ add 1 2 3 }} {{ sub 5 7 }} {{ mul 2 3 4 }} {{ div 7 2 }} {{ mod -7 3 }} {{ add1 4 }}",
            "6 -2 24 3 -1 5",
        ),
        (
            '{{ max 1 5 3 }} {{ min 4 2 }} {{ atoi "42" }} {{ atoi "x" }} {{ int "7" }} {{ float64 "1.5" }}',
            "5 2 42 0 7 1.5",
        ),
        (
            '{{ repeat 3 "ab" }} {{ substr 1 3 "hello" }} {{ trunc 3 "hello" }} {{ nospace "a b\tc" }}',
            "ababab el hel abc",
        ),
        (
            '{{ contains "ss" .password }} {{ hasPrefix "p@" .password }} {{ hasSuffix "x" .password }}',
            "true true false",
        ),
        ('{{ cat "a" 1 nil "b" }} {{ toString 12 }}', "a 1 b 12"),
        (
            '{{ base "a/b/c.txt" }} {{ dir "a/b/c.txt" }} {{ ext "c.txt" }} {{ clean "a//b/../c" }}',
            "c.txt a/b .txt a/c",
        ),
        (
            '{{ until 3 }} {{ compact (list "" "a") }} {{ all "a" 1 }} {{ any "" 0 }}',
            "[0 1 2] [a] true false",
        ),
        ('{{ "abc" | sha256sum }}', hashlib.sha256(b"abc").hexdigest()),
        ('{{ "abc" | sha1sum }}', hashlib.sha1(b"abc").hexdigest()),  # noqa: S324 (a test vector)
        ('{{ "abc" | adler32sum }}', "38600999"),
    ],
)
def test_functions(source: str, expected: str) -> None:
    assert render(source) == expected


def test_filter_pem_keeps_only_blocks_of_the_type() -> None:
    pem = (
        "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"
        "-----BEGIN PRIVATE KEY-----\nREVG\n-----END PRIVATE KEY-----\n"
    )
    out = execute(
        parse('{{ .pem | filterPEM "CERTIFICATE" }}', name="t", functions=eso_functions()),
        StringMap({"pem": pem}),
    )
    assert out == "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"


def test_from_json_of_bad_input_is_nil_and_must_from_json_fails() -> None:
    assert render('{{ fromJson "not json" }}') == "<no value>"
    with pytest.raises(GoTemplateError, match="not valid JSON"):
        render('{{ mustFromJson "not json" }}')


@pytest.mark.parametrize(
    "name", ["now", "randAlphaNum", "uuidv4", "genCA", "regexReplaceAll", "env", "pkcs12key"]
)
def test_unsupported_functions_are_refused_when_parsed(name: str) -> None:
    with pytest.raises(GoTemplateError, match=f'function "{name}" not defined'):
        parse(f"{{{{ {name} }}}}", name="t", functions=eso_functions())


def test_go_json_escapes_like_encoding_json() -> None:
    assert go_json({"k": "a&b\u2028"}) == '{"k":"a\\u0026b\\u2028"}'
    assert go_json([1.0, 2.5]) == "[1,2.5]"


@pytest.mark.parametrize(
    ("source", "expected"),
    [  # the answers of Go's path package and sprig 3, as its real build gives them
        ('{{ dir "/etc/app/../conf/db.yaml" }}', "/etc/conf"),
        ('{{ base "" }}|{{ base "///" }}|{{ base "a/b/" }}', ".|/|b"),
        ('{{ dir "" }}|{{ dir "file" }}|{{ dir "/" }}|{{ dir "//a//b" }}', ".|.|/|/a"),
        ('{{ clean "" }}|{{ clean "//a/./b/../c/" }}|{{ clean "../../x" }}', ".|/a/c|../../x"),
        ('{{ ext ".bashrc" }}|{{ ext "a.b/c" }}|{{ ext "x.tar.gz" }}', ".bashrc||.gz"),
        ('{{ substr 1 3 "hello" }}|{{ substr 2 99 "hello" }}|{{ substr -1 3 "hello" }}', "el|llo|hel"),
        ("{{ slice (list 1 2 3) 1 }}|{{ slice (list 1 2 3) 0 2 }}|{{ slice (list) 1 }}",
         "[2 3]|[1 2]|<no value>"),
    ],
)  # fmt: skip
def test_paths_substr_and_slice_as_go_and_sprig(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        '{{ substr 3 1 "hello" }}',  # where Go's s[start:end] panics
        '{{ substr -1 9 "hello" }}',
        '{{ substr 7 9 "hello" }}',
        '{{ slice "hello" 1 }}',
        "{{ slice (list 1 2 3) 2 9 }}",
    ],
)
def test_what_panics_in_go_is_an_error(source: str) -> None:
    with pytest.raises(GoTemplateError):
        render(source)
