"""The ACL evaluator: a capability matrix, Vault's priority rules, and properties checked by hypothesis."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kustos.errors import UnsupportedOperationError
from kustos.policy import (
    ACL,
    CAPABILITIES,
    Operation,
    PathRule,
    Policy,
    PolicyError,
    default_policy,
    operation_for,
    root_policy,
)


def acl_of(*documents: str) -> ACL:
    return ACL([Policy.parse(f"p{i}", text) for i, text in enumerate(documents)])


MATRIX_POLICY = """
path "secret/data/writeonly/*" { capabilities = ["create", "update"] }
path "secret/data/app/*"       { capabilities = ["read", "list"] }
path "secret/data/app/admin"   { capabilities = ["deny"] }
path "secret/data/app/patch"   { capabilities = ["read", "patch"] }
path "secret/data/trash/*"     { capabilities = ["delete"] }
path "secret/metadata/+/config" { capabilities = ["list"] }
path "secret/data/+/shared"    { capabilities = ["read"] }
path "sys/policies/acl/*"      { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }
"""

# (path, capability, expected) for every capability, both globs, deny and write-only.
MATRIX = [
    # write-only: create and update, never read or list
    ("secret/data/writeonly/db", "create", True),
    ("secret/data/writeonly/db", "update", True),
    ("secret/data/writeonly/db", "read", False),
    ("secret/data/writeonly/db", "list", False),
    ("secret/data/writeonly/db", "patch", False),
    ("secret/data/writeonly/db", "delete", False),
    ("secret/data/writeonly", "create", False),  # the prefix includes the slash
    # prefix glob grants read and list, nothing else
    ("secret/data/app/db", "read", True),
    ("secret/data/app/a/b/c", "read", True),
    ("secret/data/app/db", "list", True),
    ("secret/data/app/db", "update", False),
    ("secret/data/app/db", "create", False),
    ("secret/data/app/db", "delete", False),
    # explicit deny on an exact path beats the glob around it
    ("secret/data/app/admin", "read", False),
    ("secret/data/app/admin", "list", False),
    ("secret/data/app/admin/x", "read", True),  # deny was exact, not a prefix
    # exact rule replaces the glob's capabilities (no merge across patterns)
    ("secret/data/app/patch", "patch", True),
    ("secret/data/app/patch", "read", True),
    ("secret/data/app/patch", "list", False),
    # delete only
    ("secret/data/trash/old", "delete", True),
    ("secret/data/trash/old", "read", False),
    # '+' matches exactly one segment
    ("secret/metadata/app/config", "list", True),
    ("secret/metadata/app/sub/config", "list", False),
    ("secret/metadata/config", "list", False),
    ("secret/data/team/shared", "read", True),
    ("secret/data/team/shared/x", "read", False),
    # sudo
    ("sys/policies/acl/admin", "sudo", True),
    ("sys/policies/acl/admin", "delete", True),
    ("sys/mounts", "sudo", False),
    # default deny
    ("secret/data/other", "read", False),
    ("kv/anything", "list", False),
]


@pytest.mark.parametrize(("path", "capability", "expected"), MATRIX)
def test_capability_matrix(path: str, capability: str, expected: bool) -> None:
    acl = acl_of(MATRIX_POLICY)
    assert acl.allows(path, capability) is expected
    assert (capability in acl.capabilities(path, listing=capability == "list")) is expected


def test_matrix_covers_every_capability_granted_and_refused() -> None:
    granted = {c for _, c, ok in MATRIX if ok}
    refused = {c for _, c, ok in MATRIX if not ok}
    assert granted >= set(CAPABILITIES) - {"deny"}
    assert refused >= set(CAPABILITIES) - {"deny"}


def test_write_only_can_write_but_never_read_back() -> None:
    acl = acl_of('path "secret/data/ci/*" { capabilities = ["create", "update"] }')
    first = acl.check(operation_for("POST", exists=False), "secret/data/ci/token")
    again = acl.check(operation_for("PUT", exists=True), "secret/data/ci/token")
    read = acl.check(operation_for("GET"), "secret/data/ci/token")
    listed = acl.check(operation_for("LIST"), "secret/data/ci/")
    assert (first.operation, first.allowed) == (Operation.create, True)
    assert (again.operation, again.allowed) == (Operation.update, True)
    assert read.allowed is False and "does not grant 'read'" in read.reason
    assert listed.allowed is False


@pytest.mark.parametrize(
    ("documents", "path", "expected"),
    [
        # exact match beats any glob, even a glob that denies
        (
            [
                'path "secret/*" { capabilities = ["deny"] }\npath "secret/foo" { capabilities = ["read"] }'
            ],
            "secret/foo",
            {"read"},
        ),
        # longest prefix wins
        (
            [
                'path "secret/*" { capabilities = ["read"] }\npath "secret/app/*" { capabilities = ["list"] }'
            ],
            "secret/app/x",
            {"list"},
        ),
        # 1. the later first wildcard wins: prefix 'secret/a/' (9) beats '+' at 7
        (
            [
                'path "secret/+/x" { capabilities = ["read"] }\npath "secret/a/*" { capabilities = ["list"] }'
            ],
            "secret/a/x",
            {"list"},
        ),
        # 2. same position: a pattern not ending in '*' beats one that does
        (
            [
                'path "secret/*" { capabilities = ["read"] }\npath "secret/+/bar" { capabilities = ["list"] }'
            ],
            "secret/foo/bar",
            {"list"},
        ),
        # 3. fewer '+' segments win
        (
            [
                'path "secret/+/+/c" { capabilities = ["read"] }\npath "secret/+/b/c" { capabilities = ["list"] }'
            ],
            "secret/a/b/c",
            {"list"},
        ),
        # 4. longer wins
        (
            [
                'path "secret/+/b*" { capabilities = ["read"] }\npath "secret/+/bc*" { capabilities = ["list"] }'
            ],
            "secret/a/bcd",
            {"list"},
        ),
        # 5. lexicographically greater wins ('x' sorts after '+')
        (
            [
                'path "secret/+/x/+" { capabilities = ["read"] }\npath "secret/+/+/y" { capabilities = ["list"] }'
            ],
            "secret/a/x/y",
            {"read"},
        ),
        # the same pattern in two policies: union
        (
            [
                'path "secret/*" { capabilities = ["read"] }',
                'path "secret/*" { capabilities = ["list"] }',
            ],
            "secret/a",
            {"read", "list"},
        ),
        # the same pattern with deny in one policy: deny wins
        (
            [
                'path "secret/*" { capabilities = ["read"] }',
                'path "secret/*" { capabilities = ["deny"] }',
            ],
            "secret/a",
            set(),
        ),
        (
            [
                'path "secret/+" { capabilities = ["deny"] }',
                'path "secret/+" { capabilities = ["read"] }',
            ],
            "secret/a",
            set(),
        ),
        # different patterns in two policies do not merge: only the best one applies
        (
            [
                'path "secret/*" { capabilities = ["read"] }',
                'path "secret/app" { capabilities = ["list"] }',
            ],
            "secret/app",
            {"list"},
        ),
        # '*' alone matches everything, including the empty path
        (['path "*" { capabilities = ["read"] }'], "any/thing", {"read"}),
        # '+*' style: a prefix inside the last segment after a '+'
        (['path "secret/+/ap*" { capabilities = ["read"] }'], "secret/x/app/deeper", {"read"}),
    ],
)
def test_priority_rules(documents: list[str], path: str, expected: set[str]) -> None:
    assert acl_of(*documents).capabilities(path) == expected


def test_listing_with_trailing_slash() -> None:
    # A rule written without the trailing slash still governs a LIST on "name/".
    acl = acl_of('path "secret/metadata/app" { capabilities = ["list"] }')
    assert acl.allows("secret/metadata/app/", "list")
    acl = acl_of('path "secret/metadata/+" { capabilities = ["list"] }')
    assert acl.allows("secret/metadata/app/", "list")
    assert not acl.allows("secret/metadata/app/", "read")
    # ... but a more specific deny still wins
    acl = acl_of(
        'path "secret/metadata/+" { capabilities = ["list"] }\n'
        'path "secret/metadata/app/*" { capabilities = ["deny"] }'
    )
    assert not acl.allows("secret/metadata/app/", "list")
    assert acl.allows("secret/metadata/other/", "list")


def test_root_and_default() -> None:
    root = ACL([root_policy()])
    assert root.is_root and root.capabilities("anything/at/all") == set(CAPABILITIES) - {"deny"}
    assert root.allows("sys/seal", "sudo")
    assert root.capabilities_response("x") == ["root"]
    with pytest.raises(PolicyError, match="other policies present along with root"):
        ACL([root_policy(), default_policy()])
    default = ACL([default_policy()])
    assert default.allows("auth/token/lookup-self", "read")
    assert default.allows("cubbyhole/mine", "create")
    assert not default.allows("auth/token/create", "update")
    assert not default.allows("secret/data/app", "read")
    assert default.capabilities_response("secret/data/app") == ["deny"]
    assert default.capabilities_response("cubbyhole/x") == [
        "create",
        "delete",
        "list",
        "read",
        "update",
    ]


def test_parameter_constraints() -> None:
    acl = acl_of(
        'path "auth/token/create" {\n'
        '  capabilities = ["update"]\n'
        '  allowed_parameters = {\n    "policies" = ["app-*", "default"]\n    "ttl" = []\n  }\n'
        '  denied_parameters = {\n    "no_parent" = []\n  }\n'
        '  required_parameters = ["ttl"]\n}'
    )

    def ok(data: dict[str, object]) -> bool:
        return acl.check("update", "auth/token/create", data=data).allowed

    assert ok({"ttl": "1h", "policies": ["app-web", "default"]})
    assert ok({"TTL": "1h", "policies": "app-web,default"})
    assert not ok({"policies": ["default"]})  # ttl is required
    assert not ok({"ttl": "1h", "policies": ["admin"]})
    assert not ok({"ttl": "1h", "policies": ["app-web", "admin"]})
    assert not ok({"ttl": "1h", "no_parent": True})  # denied
    assert not ok({"ttl": "1h", "display_name": "x"})  # not in the allowed list
    decision = acl.check("update", "auth/token/create", data={"ttl": "1h", "policies": ["root"]})
    assert "'policies'" in decision.reason and "root" not in decision.reason.replace(
        "'policies'", ""
    )
    # merged across policies: an empty list ("any value") wins
    acl2 = acl_of(
        'path "x" {\n capabilities = ["update"]\n allowed_parameters = {\n  "a" = ["1"]\n }\n}',
        'path "x" {\n capabilities = ["update"]\n allowed_parameters = {\n  "a" = []\n }\n}',
    )
    assert acl2.check("update", "x", data={"a": "2"}).allowed
    acl3 = acl_of(
        'path "x" {\n capabilities = ["update"]\n denied_parameters = {\n  "*" = []\n }\n}',
    )
    assert not acl3.check("update", "x", data={"a": "2"}).allowed
    assert acl3.check("update", "x", data={}).allowed


def test_operation_mapping() -> None:
    assert operation_for("GET") is Operation.read
    assert operation_for("get", list_query=True) is Operation.list
    assert operation_for("LIST") is Operation.list
    assert operation_for("POST", exists=False) is Operation.create
    assert operation_for("POST", exists=True) is Operation.update
    assert operation_for("PUT") is Operation.update
    assert operation_for("PATCH") is Operation.patch
    assert operation_for("DELETE") is Operation.delete
    with pytest.raises(UnsupportedOperationError, match="'TRACE'"):
        operation_for("TRACE")


def test_decision_reasons_name_the_rule() -> None:
    acl = acl_of(MATRIX_POLICY)
    assert "explicitly denied" in acl.check("read", "secret/data/app/admin").reason
    assert "default deny" in acl.check("read", "nope").reason
    granted = acl.check("read", "/secret/data/app/x")
    assert (
        granted.allowed and granted.pattern == "secret/data/app/*" and granted.policies == ("p0",)
    )
    assert granted.path == "secret/data/app/x"
    with pytest.raises(PolicyError, match="unknown capability"):
        acl.allows("x", "fly")


# --- properties ---------------------------------------------------------------------------

_SEGMENTS = ["a", "b", "ab", "+"]
_PATH_SEGMENTS = ["a", "b", "ab", "ba"]


@st.composite
def patterns(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=3))
    tail = draw(st.sampled_from(["", "*", "/*", "a*"]))
    if tail == "a*":
        parts.append("a*")
        tail = ""
    return "/".join(parts) + tail


@st.composite
def rules(draw: st.DrawFn) -> PathRule:
    caps = draw(st.lists(st.sampled_from(CAPABILITIES), min_size=1, max_size=4, unique=True))
    return PathRule(path=draw(patterns()), capabilities=tuple(caps))


@st.composite
def policies(draw: st.DrawFn, name: str) -> Policy:
    chosen = draw(st.lists(rules(), max_size=4, unique_by=lambda r: r.path))
    return Policy(name=name, rules=tuple(chosen))


@st.composite
def policy_sets(draw: st.DrawFn) -> list[Policy]:
    count = draw(st.integers(1, 3))
    return [draw(policies(f"p{i}")) for i in range(count)]


request_paths = st.builds(
    lambda parts, slash: "/".join(parts) + slash,
    st.lists(st.sampled_from(_PATH_SEGMENTS), min_size=1, max_size=4),
    st.sampled_from(["", "/"]),
)


def _regex(pattern: str) -> re.Pattern[str]:
    # An independent matcher: '+' is any one segment, a trailing '*' anything.
    prefix = pattern.endswith("*")
    stem = pattern[:-1] if prefix else pattern
    body = "/".join("[^/]*" if part == "+" else re.escape(part) for part in stem.split("/"))
    return re.compile(body + (".*" if prefix else ""), re.DOTALL)


def _reference(policies_: list[Policy], path: str) -> frozenset[str]:
    """Vault's documented rule, computed the slow, obvious way."""
    merged: dict[str, set[str]] = {}
    for policy in policies_:
        for rule in policy.rules:
            if _regex(rule.path).fullmatch(path):
                merged.setdefault(rule.path, set()).update(rule.capabilities)
    if not merged:
        return frozenset()

    def priority(pattern: str) -> tuple[int, bool, int, int, str]:
        stem = pattern[:-1] if pattern.endswith("*") else pattern
        first = min(i for i in (pattern.find("+"), pattern.find("*"), len(pattern)) if i >= 0)
        return (first, not pattern.endswith("*"), -stem.split("/").count("+"), len(stem), stem)

    exact = [p for p in merged if "+" not in p and not p.endswith("*")]
    winner = exact[0] if exact else max(merged, key=priority)
    caps = merged[winner]
    return frozenset() if "deny" in caps else frozenset(caps)


@given(policy_sets(), st.lists(request_paths, min_size=1, max_size=8))
@settings(max_examples=150, deadline=None)
def test_never_grants_what_no_matching_rule_grants(
    policies_: list[Policy], paths: list[str]
) -> None:
    acl = ACL(policies_)
    for path in paths:
        for listing in (False, True):
            granted = acl.capabilities(path, listing=listing)
            assert "deny" not in granted
            for capability in granted:
                assert any(
                    capability in rule.capabilities
                    and "deny" not in rule.capabilities
                    and (
                        _regex(rule.path).fullmatch(path)
                        or (listing and _regex(rule.path).fullmatch(path.rstrip("/")))
                    )
                    for policy in policies_
                    for rule in policy.rules
                ), (path, capability)


@given(policy_sets(), st.lists(request_paths, min_size=1, max_size=8))
@settings(max_examples=150, deadline=None)
def test_matches_the_reference_priority_rule(policies_: list[Policy], paths: list[str]) -> None:
    acl = ACL(policies_)
    for path in paths:
        assert acl.capabilities(path) == _reference(policies_, path), path


@given(policy_sets(), patterns(), st.data(), st.lists(request_paths, min_size=1, max_size=8))
@settings(max_examples=150, deadline=None)
def test_adding_a_deny_never_adds_capabilities(
    policies_: list[Policy], pattern: str, data: st.DataObject, paths: list[str]
) -> None:
    before = ACL(policies_)
    index = data.draw(st.integers(0, len(policies_) - 1))
    target = policies_[index]
    others = tuple(r for r in target.rules if r.path != pattern)
    existing = [r for r in target.rules if r.path == pattern]
    caps = ("deny", *existing[0].capabilities) if existing else ("deny",)
    changed = Policy(name=target.name, rules=(*others, PathRule(path=pattern, capabilities=caps)))
    after = ACL([*policies_[:index], changed, *policies_[index + 1 :]])
    for path in paths:
        for listing in (False, True):
            assert after.capabilities(path, listing=listing) <= before.capabilities(
                path, listing=listing
            )
        if _regex(pattern).fullmatch(path) and "+" not in pattern and not pattern.endswith("*"):
            assert after.capabilities(path) == frozenset()


@given(policy_sets(), st.lists(request_paths, min_size=1, max_size=6))
@settings(max_examples=100, deadline=None)
def test_policy_order_does_not_matter(policies_: list[Policy], paths: list[str]) -> None:
    reference = ACL(policies_)
    for ordering in itertools.islice(itertools.permutations(policies_), 6):
        acl = ACL(ordering)
        for path in paths:
            assert acl.capabilities(path, listing=True) == reference.capabilities(
                path, listing=True
            )
            assert acl.capabilities(path) == reference.capabilities(path)


@given(policies("gen"))
@settings(max_examples=100, deadline=None)
def test_fmt_round_trip(policy: Policy) -> None:
    assert Policy.parse("gen", policy.to_hcl()) == policy
