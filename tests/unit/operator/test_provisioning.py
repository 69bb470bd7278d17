"""ClusterExternalSecret's pure steps: the spec, the namespaces it selects, the ExternalSecret it wants.

The controller itself (watches, garbage collection, status) runs on a real
API server in tests/integration/operator/test_eso_cluster_and_push.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from kustos.errors import InvalidRequestError
from kustos.operator.provisioning import (
    desired_external_secret,
    merge_patch,
    owned_by,
    parse_cluster_spec,
    target_namespaces,
)
from kustos.operator.selecting import Namespaces

ES_SPEC = {
    "secretStoreRef": {"kind": "ClusterSecretStore", "name": "fake"},
    "target": {"name": "db"},
    "dataFrom": [{"extract": {"key": "/shared/db"}}],
}


def _ces(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterExternalSecret",
        "metadata": {"name": "shared", "uid": "uid-1"},
        "spec": {"externalSecretSpec": ES_SPEC, **spec},
    }


def _namespaces(**labelled: dict[str, str]) -> Namespaces:
    namespaces = Namespaces()
    for name, labels in labelled.items():
        namespaces.event(None, {"metadata": {"name": name.replace("_", "-"), "labels": labels}})
    return namespaces


def test_the_spec_defaults_the_name_and_refresh_and_keeps_every_selector() -> None:
    body = _ces(
        namespaceSelector={"matchLabels": {"old": "style"}},
        namespaceSelectors=[{"matchLabels": {"team": "pay"}}],
        namespaces=["named"],
        externalSecretMetadata={"labels": {"a": "1"}, "annotations": {"b": "2"}},
    )
    body["metadata"]["annotations"] = {"external-secrets.io/force-sync": "now", "other": "x"}
    spec = parse_cluster_spec(body)
    assert spec.external_secret_name == "shared" and spec.uid == "uid-1"
    assert spec.refresh == 3600.0
    assert spec.selectors == ({"matchLabels": {"old": "style"}}, {"matchLabels": {"team": "pay"}})
    assert spec.namespaces == ("named",)
    assert spec.labels == {"a": "1"}
    # force-sync reaches every ExternalSecret; the CES's other annotations do not
    assert spec.annotations == {"b": "2", "external-secrets.io/force-sync": "now"}
    assert parse_cluster_spec(_ces(externalSecretName="x", refreshTime="1m")).refresh == 60.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"metadata": {"name": "x"}, "spec": {}}, "spec.externalSecretSpec is required"),
        (
            _ces(namespaceSelectors=[{}, {"matchExpressions": [{"key": "a", "operator": "Is"}]}]),
            "spec.namespaceSelectors[1].matchExpressions[0].operator",
        ),
        (
            _ces(namespaceSelector={"matchExpressions": [{"key": "a", "operator": "In"}]}),
            "spec.namespaceSelector.matchExpressions[0] needs values",
        ),
        (_ces(refreshTime="soon"), "'soon' is not a duration"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_cluster_spec(body)
    assert message in str(caught.value)


def test_target_namespaces_are_named_ones_that_exist_and_selected_ones_not_terminating() -> None:
    namespaces = _namespaces(
        team_a={"team": "pay"}, team_b={"team": "pay"}, other={"team": "ops"}, named={}
    )
    namespaces.event(
        "MODIFIED",
        {"metadata": {"name": "team-b", "labels": {"team": "pay"}, "deletionTimestamp": "t"}},
    )
    spec = parse_cluster_spec(
        _ces(namespaceSelectors=[{"matchLabels": {"team": "pay"}}], namespaces=["named", "absent"])
    )
    assert target_namespaces(spec, namespaces) == ["named", "team-a"]
    assert target_namespaces(parse_cluster_spec(_ces()), namespaces) == []  # selects nothing


def test_the_desired_external_secret_is_controlled_by_the_cluster_external_secret() -> None:
    spec = parse_cluster_spec(
        _ces(externalSecretName="db-credentials", externalSecretMetadata={"labels": {"x": "y"}})
    )
    desired = desired_external_secret(spec, "team-a")
    assert desired["apiVersion"] == "external-secrets.io/v1"
    assert desired["metadata"]["name"] == "db-credentials"
    assert desired["metadata"]["namespace"] == "team-a"
    assert desired["metadata"]["labels"] == {"x": "y"}
    assert desired["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ClusterExternalSecret",
            "name": "shared",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert desired["spec"] == ES_SPEC
    desired["spec"]["target"]["name"] = "changed"  # a copy: the spec is not shared
    assert ES_SPEC["target"] == {"name": "db"}
    assert owned_by(desired, "shared")
    assert not owned_by(desired, "another")


@pytest.mark.parametrize(
    ("references", "expected"),
    [
        ([], False),
        (  # not the controller: someone else's reference
            [{"apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
              "name": "shared"}],
            False,
        ),
        (
            [{"apiVersion": "example.com/v1", "kind": "ClusterExternalSecret", "name": "shared",
              "controller": True}],
            False,
        ),
        (
            [{"apiVersion": "external-secrets.io/v1beta1", "kind": "ClusterExternalSecret",
              "name": "shared", "controller": True}],
            True,
        ),
    ],
)  # fmt: skip
def test_owned_by_needs_the_controlling_reference(
    references: list[dict[str, Any]], expected: bool
) -> None:
    body = {"metadata": {"ownerReferences": references}}
    assert owned_by(body, "shared") is expected
    assert not owned_by(None, "shared")


def test_merge_patch_is_empty_when_equal_and_removes_what_is_no_longer_wanted() -> None:
    current = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": [1], "y": "same"}}
    assert merge_patch(current, current) == {}
    desired = {"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"x": [2], "y": "same"}}
    patch = merge_patch(current, desired)
    assert patch == {"metadata": {"labels": {"b": None, "c": "3"}}, "spec": {"x": [2]}}
    assert merge_patch({"a": {"b": 1}}, {"a": "flat"}) == {"a": "flat"}
