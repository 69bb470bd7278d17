"""Label selectors (namespaceSelectors, ClusterSecretStore conditions) and the namespaces view."""

from __future__ import annotations

from typing import Any

import pytest

from kustos.errors import InvalidRequestError
from kustos.operator.selecting import Namespaces, selector_matches, validate_selector

LABELS = {"team": "pay", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, True),
        ({"matchLabels": {"team": "pay"}}, True),
        ({"matchLabels": {"team": "pay", "env": "dev"}}, False),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stg"]}]}, True),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, False),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, False),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, False),
        (  # every term must hold
            {
                "matchLabels": {"team": "pay"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}],
            },
            False,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "Like", "values": ["p"]}]}, False),
    ],
)
def test_selector_matches_follows_kubernetes_label_selectors(
    selector: dict[str, Any], expected: bool
) -> None:
    assert selector_matches(selector, LABELS) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"key": "a", "operator": "Like", "values": ["x"]}, "operator must be one of"),
        ({"operator": "Exists"}, "matchExpressions[0].key is required"),
        ({"key": "a", "operator": "In"}, "matchExpressions[0] needs values"),
        ({"key": "a", "operator": "Exists", "values": ["x"]}, "takes no values"),
    ],
)
def test_a_malformed_selector_is_refused_naming_the_field(
    expression: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate_selector({"matchExpressions": [expression]}, where="spec.namespaceSelectors[2]")
    assert str(caught.value).startswith("spec.namespaceSelectors[2].")
    assert message in str(caught.value)


def test_namespaces_tracks_labels_and_deletion_and_tells_only_of_changes() -> None:
    namespaces = Namespaces()
    heard: list[str] = []
    namespaces.listen(heard.append)
    namespaces.event(None, {"metadata": {"name": "b", "labels": {"team": "pay"}}})
    namespaces.event("ADDED", {"metadata": {"name": "a"}})
    assert namespaces.active() == ["a", "b"] and namespaces.labels("b") == {"team": "pay"}
    namespaces.event("MODIFIED", {"metadata": {"name": "b", "labels": {"team": "pay"}}})
    assert heard == ["b", "a"]  # the same labels again: nobody is told
    namespaces.event("MODIFIED", {"metadata": {"name": "b", "labels": {}}})
    assert heard[-1] == "b" and namespaces.labels("b") == {}
    namespaces.event("MODIFIED", {"metadata": {"name": "a", "deletionTimestamp": "2026-01-01"}})
    assert namespaces.terminating("a") and namespaces.active() == ["b"]
    namespaces.event("DELETED", {"metadata": {"name": "a"}})
    assert namespaces.labels("a") is None and not namespaces.terminating("a")
    assert heard == ["b", "a", "b", "a", "a"]
    namespaces.event("ADDED", {"metadata": {}})  # nameless: ignored
    assert namespaces.active() == ["b"]
