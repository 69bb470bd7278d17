"""Vault password policies: parsing (HCL and JSON), the checks, and the generator."""

from __future__ import annotations

import pytest

from kustos.errors import InvalidRequestError, NotFoundError
from kustos.server.passwords import (
    DEFAULT_POLICY,
    PasswordPolicies,
    parse_password_policy,
    validate_policy_name,
)
from kustos.store import SqliteBackend

POLICY = """
length = 24
rule "charset" {
  charset = "abcdefghijklmnopqrstuvwxyz"
  min-chars = 1
}
rule "charset" {
  charset = "0123456789"
  min-chars = 4
}
rule "charset" {
  charset = "!@#"
}
"""


def test_every_rule_block_is_kept_and_generated_passwords_satisfy_them() -> None:
    policy = parse_password_policy(POLICY)
    assert policy.length == 24
    assert [rule.min_chars for rule in policy.rules] == [1, 4, 0]
    assert policy.alphabet == "abcdefghijklmnopqrstuvwxyz0123456789!@#"
    seen: set[str] = set()
    for _ in range(300):
        password = policy.generate().reveal()
        assert policy.satisfied_by(password), password
        seen.add(password)
    assert len(seen) == 300


def test_json_form_and_default_policy() -> None:
    policy = parse_password_policy(
        '{"length": 8, "rule": [{"charset": {"charset": "ab", "min-chars": 8}}]}'
    )
    assert policy.generate().reveal().strip("ab") == ""
    for _ in range(100):
        assert DEFAULT_POLICY.satisfied_by(DEFAULT_POLICY.generate().reveal())
    assert repr(DEFAULT_POLICY.generate()) == "Sensitive(<redacted>)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "missing policy"),
        ('length = 3\nrule "charset" { charset = "ab" }', "between 4 and 100"),
        ('length = 101\nrule "charset" { charset = "ab" }', "between 4 and 100"),
        ('length = "x"\nrule "charset" { charset = "ab" }', "length must be an integer"),
        ("length = 10", "at least one rule"),
        ('length = 10\nrule "charset" { charset = "" }', "non-empty"),
        ('length = 10\nrule "charset" { charset = "a b" }', "non-space"),
        ('length = 10\nrule "charset" { charset = "ab"\n min-chars = -1 }', "min-chars"),
        ('length = 4\nrule "charset" { charset = "ab"\n min-chars = 5 }', "add up"),
        ('length = 10\nrule "other" { charset = "ab" }', 'only rule "charset"'),
        ('length = 10\ncolor = "red"\nrule "charset" { charset = "ab" }', "unknown setting"),
        ('length = 10\nrule "charset" { charset = "ab"\n max = 1 }', "unknown setting"),
        ("length = = 10", "could not be parsed"),
    ],
)
def test_bad_policies_are_refused_naming_the_problem(text: str, expected: str) -> None:
    with pytest.raises(InvalidRequestError, match=expected):
        parse_password_policy(text)


@pytest.mark.parametrize("name", ["", "a/b", "-x", "x" * 129, "a b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidRequestError, match="invalid password policy name"):
        validate_policy_name(name)


async def test_store_round_trip(storage: SqliteBackend) -> None:
    policies = PasswordPolicies(storage=storage)
    await policies.write("db", POLICY)
    assert await policies.read_text("db") == POLICY
    assert await policies.names() == ["db"]
    assert parse_password_policy(POLICY).satisfied_by((await policies.generate("db")).reveal())
    assert await policies.get("") is DEFAULT_POLICY
    await policies.delete("db")
    assert await policies.read_text("db") is None
    with pytest.raises(NotFoundError):
        await policies.generate("db")
    with pytest.raises(InvalidRequestError, match="does not exist"):
        await policies.get("db")
