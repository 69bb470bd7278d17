"""Parsing policy documents: HCL and JSON agree, errors name the line, path and capability."""

from __future__ import annotations

import json

import pytest

from kustos.errors import InvalidRequestError
from kustos.policy import DEFAULT_POLICY_TEXT, Policy, PolicyError, default_policy

HCL = """\
# app policy
path "secret/data/app/*" {
  capabilities = ["create", "read", "update"]
}

/* a block comment
path "ignored/in/comment" {
*/

path "/secret/metadata/+/config" {
  capabilities = ["list", "read", "list"]
  allowed_parameters = {
    "Foo" = ["a", "b*"]
    "bar" = []
  }
  denied_parameters = {
    "baz" = []
  }
  required_parameters = ["Foo"]
}

path "sys/*" {
  capabilities = ["deny"]
}
"""


def test_hcl_rules_in_order_with_lines_and_normalised_fields() -> None:
    policy = Policy.parse("  App ", HCL)
    assert policy.name == "app"
    assert [r.path for r in policy.rules] == [
        "secret/data/app/*",
        "secret/metadata/+/config",
        "sys/*",
    ]
    first, second, third = policy.rules
    assert first.line == 2 and second.line == 10 and third.line == 22
    assert first.capabilities == ("create", "read", "update")
    assert first.is_prefix and first.prefix == "secret/data/app/"
    assert second.capabilities == ("list", "read")
    assert second.has_segment_wildcards and not second.is_prefix
    assert dict(second.allowed_parameters) == {"foo": ("a", "b*"), "bar": ()}
    assert dict(second.denied_parameters) == {"baz": ()}
    assert second.required_parameters == ("foo",)
    assert third.effective_capabilities == frozenset({"deny"})


def test_json_document_means_the_same_as_hcl() -> None:
    document = {
        "path": {
            "secret/data/app/*": {"capabilities": ["create", "read", "update"]},
            "secret/metadata/+/config": {
                "capabilities": ["list", "read"],
                "allowed_parameters": {"foo": ["a", "b*"], "bar": []},
                "denied_parameters": {"baz": []},
                "required_parameters": ["foo"],
            },
            "sys/*": {"capabilities": ["deny"]},
        }
    }
    from_json = Policy.parse("app", json.dumps(document, indent=2))
    assert from_json == Policy.parse("app", HCL)
    assert from_json.to_json() == document


def test_fmt_output_round_trips() -> None:
    policy = Policy.parse("app", HCL)
    text = policy.to_hcl()
    assert text.startswith(
        'path "secret/data/app/*" {\n  capabilities = ["create", "read", "update"]\n}\n'
    )
    assert Policy.parse("app", text) == policy
    assert Policy.parse("app", text).to_hcl() == text


def test_legacy_policy_field_expands() -> None:
    policy = Policy.parse("old", 'path "a/*" { policy = "write" }\npath "b" { policy = "read" }')
    assert set(policy.rules[0].capabilities) == {"create", "read", "update", "delete", "list"}
    assert set(policy.rules[1].capabilities) == {"read", "list"}


def test_empty_document_grants_nothing_and_default_policy_parses() -> None:
    assert Policy.parse("empty", "").rules == ()
    default = default_policy()
    assert default.name == "default" and default.raw == DEFAULT_POLICY_TEXT
    assert "auth/token/lookup-self" in {r.path for r in default.rules}


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            'path "a" {\n  capabilities = ["read", "fly"]\n}',
            ["line 1", "'a'", "'fly'", "invalid capability"],
        ),
        (
            '\n\npath "x/*/y" {\n  capabilities = ["read"]\n}',
            ["line 3", "'*' is only allowed as the last"],
        ),
        (
            'path "x/a+b" {\n  capabilities = ["read"]\n}',
            ["line 1", "'+' must be a whole path segment"],
        ),
        ('path "a" {\n  capabilities = ["read"\n}', ["HCL syntax error", "Line 3"]),
        (
            'path "a" {\n  capabilities = ["read"]\n  color = "red"\n}',
            ["unknown key 'color'", "'a'"],
        ),
        (
            'path "a" {\n  capabilities = ["read"]\n  control_group = {}\n}',
            ["'control_group'", "does not support"],
        ),
        (
            'path "a" {\n capabilities = ["read"]\n}\n\npath "a" {\n capabilities = ["list"]\n}',
            ["'a'", "lines 1, 5"],
        ),
        ('path "" {\n capabilities = ["read"]\n}', ["empty path"]),
        ('path "a" { policy = "all" }', ["invalid policy value 'all'"]),
        ('name = "x"\nfoo = 1', ["unknown top-level key 'foo'"]),
        (
            'path "a" {\n capabilities = ["read"]\n allowed_parameters = { "k" = "v" }\n}',
            ["allowed_parameters.k"],
        ),
        (
            '{"path": {"a": {"capabilities": ["read"]}, "a": {"capabilities": ["list"]}}}',
            ["'a' appears twice"],
        ),
        ('{"path": {"a": {"capabilities": ["read"]}\n', ["JSON syntax error at line"]),
        ('{"path": {"b": {"capabilities": ["reed"]}}}', ["'b'", "'reed'"]),
    ],
)
def test_errors_name_what_is_wrong(text: str, fragments: list[str]) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.parse("p", text)
    message = str(info.value)
    assert "policy 'p'" in message or "Line" in message
    for fragment in fragments:
        assert fragment in message
    assert isinstance(info.value, InvalidRequestError)


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 200, "a/b"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(PolicyError, match="invalid policy name"):
        Policy.parse(name, "")
