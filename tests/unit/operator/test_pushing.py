"""PushSecret's pure steps: the spec (refusals name the field) and what each ``data[]`` entry pushes.

The controller itself (finalizer, deletion, refusals of unmanaged remote
secrets) runs against a real API server and a real ``kustos server`` in
tests/integration/operator/test_eso_cluster_and_push.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kustos.errors import InvalidRequestError
from kustos.operator.pushing import parse_push_spec, push_entries, reverse_unicode


def _push(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "secretStoreRefs": [{"name": "kustos", "kind": "SecretStore"}],
        "selector": {"secret": {"name": "app-source"}},
        "data": [{"match": {"secretKey": "password", "remoteRef": {"remoteKey": "app"}}}],
    }
    base.update(spec)
    return {
        "apiVersion": "external-secrets.io/v1alpha1",
        "kind": "PushSecret",
        "metadata": {"name": "push-app", "namespace": "team"},
        "spec": base,
    }


def test_the_spec_has_external_secrets_defaults() -> None:
    spec = parse_push_spec(_push())
    assert (spec.namespace, spec.name, spec.secret_name) == ("team", "push-app", "app-source")
    assert spec.secret_selector is None
    assert (spec.update_policy, spec.deletion_policy, spec.refresh) == ("Replace", "None", 3600.0)
    (entry,) = spec.entries
    assert (entry.secret_key, entry.remote_key, entry.remote_property) == ("password", "app", "")
    assert entry.status_ref == "app"
    selected = parse_push_spec(
        _push(
            selector={"secret": {"selector": {"matchLabels": {"push": "yes"}}}},
            updatePolicy="IfNotExists",
            deletionPolicy="Delete",
            refreshInterval="0",
            data=[
                {"match": {"remoteRef": {"remoteKey": "whole"}}},
                {"match": {"secretKey": "u", "remoteRef": {"remoteKey": "k", "property": "p"}}},
            ],
        )
    )
    assert selected.secret_selector == {"matchLabels": {"push": "yes"}}
    assert (selected.update_policy, selected.deletion_policy) == ("IfNotExists", "Delete")
    assert selected.refresh == 0.0
    assert [e.status_ref for e in selected.entries] == ["whole", "k/p"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"dataTo": [{"storeRef": {"name": "x"}}]}, "spec.dataTo is not supported"),
        ({"selector": {"generatorRef": {"name": "g"}}}, "spec.selector.generatorRef"),
        ({"selector": {"secret": {}}}, "spec.selector.secret needs name or selector"),
        (
            {"selector": {"secret": {"selector": {"matchExpressions": [{"operator": "In"}]}}}},
            "spec.selector.secret.selector.matchExpressions[0].key is required",
        ),
        ({"secretStoreRefs": []}, "spec.secretStoreRefs needs at least one store"),
        ({"secretStoreRefs": [{"kind": "SecretStore"}]}, "spec.secretStoreRefs[0] needs name"),
        (
            {"secretStoreRefs": [{"name": "a"}, {"name": "b", "kind": "Vault"}]},
            "spec.secretStoreRefs[1].kind must be SecretStore or ClusterSecretStore",
        ),
        ({"data": [{"match": {"remoteRef": {}}}]}, "spec.data[0].match.remoteRef.remoteKey"),
        (
            {"data": [{"match": {"remoteRef": {"remoteKey": "k"}}, "conversionStrategy": "X"}]},
            "spec.data[0].conversionStrategy must be None or ReverseUnicode",
        ),
        ({"updatePolicy": "Always"}, "spec.updatePolicy must be Replace or IfNotExists"),
        ({"deletionPolicy": "Retain"}, "spec.deletionPolicy must be None or Delete"),
        ({"template": {"engineVersion": "v1"}}, "spec.template.engineVersion must be v2"),
        ({"refreshInterval": "often"}, "'often' is not a duration"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_push_spec(_push(**spec))
    assert message in str(caught.value)


def test_reverse_unicode_undoes_external_secrets_unicode_conversion() -> None:
    assert reverse_unicode("db_U0040_host") == "db@host"
    assert reverse_unicode("a_U1F600_b") == "a\U0001f600b"
    assert reverse_unicode("plain_key") == "plain_key"


def test_push_entries_take_one_key_or_the_whole_secret_as_json() -> None:
    data = {"password": b"pw-1", "user": b"app", "db_U0040_host": b"db1"}
    spec = parse_push_spec(
        _push(
            data=[
                {"match": {"secretKey": "password", "remoteRef": {"remoteKey": "a"}}},
                {"match": {"remoteRef": {"remoteKey": "whole"}}},
                {
                    "match": {"secretKey": "db@host", "remoteRef": {"remoteKey": "h"}},
                    "conversionStrategy": "ReverseUnicode",
                },
            ]
        )
    )
    pushed = push_entries(spec, data)
    assert [(entry.remote_key, value.reveal()) for entry, value in pushed] == [
        ("a", b"pw-1"),
        ("whole", json.dumps(
            {"db_U0040_host": "db1", "password": "pw-1", "user": "app"}, separators=(",", ":")
        ).encode()),
        ("h", b"db1"),
    ]  # fmt: skip
    assert "pw-1" not in repr(pushed)  # values stay wrapped


def test_a_missing_source_key_is_an_error_that_names_the_key_not_a_value() -> None:
    spec = parse_push_spec(
        _push(data=[{"match": {"secretKey": "token", "remoteRef": {"remoteKey": "t"}}}])
    )
    with pytest.raises(InvalidRequestError) as caught:
        push_entries(spec, {"password": b"pw-1"})
    assert "'token' does not exist" in str(caught.value) and "pw-1" not in str(caught.value)
