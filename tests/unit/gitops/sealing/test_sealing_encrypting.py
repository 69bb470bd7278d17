"""Secret → SealedSecret: metadata handling, merge-into, several recipients, bad input."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kustos.crypto.sealing import SealingKeyPair, generate_sealing_key
from kustos.errors import DecryptionError, InvalidRequestError
from kustos.gitops.sealing import (
    KEY_ID_ANNOTATION,
    Scope,
    SealFormat,
    load_manifest,
    merge_into,
    parse_secret,
    seal_raw,
    seal_secret,
    unseal,
)
from kustos.sensitive import Sensitive

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _secret(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app", "namespace": "prod"},
        "stringData": dict(data),
    }


def test_strips_last_applied_and_server_side_metadata(key_a: SealingKeyPair) -> None:
    doc = _secret(password="hunter2")
    doc["metadata"].update(
        uid="123",
        resourceVersion="9",
        creationTimestamp="2024-01-01T00:00:00Z",
        ownerReferences=[{"kind": "X"}],
        labels={"team": "a"},
        annotations={
            "kubectl.kubernetes.io/last-applied-configuration": '{"stringData":{"password":"hunter2"}}',
            "kubecfg.ksonnet.io/last-applied-configuration": "hunter2",
            "note": "keep",
        },
    )
    (sealed,) = seal_secret(parse_secret(doc), certificates=[key_a.certificate], now=NOW)
    meta = sealed["spec"]["template"]["metadata"]
    assert meta == {
        "name": "app",
        "namespace": "prod",
        "labels": {"team": "a"},
        "annotations": {"note": "keep"},
    }
    assert "hunter2" not in str(sealed)


def test_string_data_wins_over_data_and_both_are_sealed(key_a: SealingKeyPair) -> None:
    doc = _secret(a="from-stringData")
    doc["data"] = {
        "a": base64.b64encode(b"from-data").decode(),
        "b": base64.b64encode(b"bee").decode(),
    }
    doc["type"] = "kubernetes.io/basic-auth"
    doc["immutable"] = True
    (sealed,) = seal_secret(parse_secret(doc), certificates=[key_a.certificate], now=NOW)
    assert sealed["spec"]["template"]["type"] == "kubernetes.io/basic-auth"
    assert sealed["spec"]["template"]["immutable"] is True
    secret = unseal(sealed, keys=[key_a.private_key])
    assert {k: v.reveal() for k, v in secret.data.items()} == {"a": b"from-stringData", "b": b"bee"}
    assert secret.immutable is True


def test_json_and_yaml_inputs_parse_the_same() -> None:
    yaml_doc = load_manifest(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {k: v}\n"
    )
    json_doc = load_manifest(
        '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a","namespace":"b"},"stringData":{"k":"v"}}'
    )
    assert yaml_doc == json_doc


@pytest.mark.parametrize("fmt", list(SealFormat))
def test_merge_into_changes_only_the_named_keys(key_a: SealingKeyPair, fmt: SealFormat) -> None:
    (original,) = seal_secret(
        parse_secret(_secret(a="1", b="2", c="3")),
        certificates=[key_a.certificate],
        now=NOW,
        fmt=fmt,
    )
    original["spec"]["template"]["metadata"]["labels"] = {"keep": "me"}
    before = copy.deepcopy(original)
    update = _secret(b="two")
    update["metadata"] = {"name": "ignored", "namespace": "ignored", "labels": {"new": "label"}}
    merged = merge_into(original, parse_secret(update), certificates=[key_a.certificate], now=NOW)
    assert original == before  # input not mutated
    old, new = before["spec"]["encryptedData"], merged["spec"]["encryptedData"]
    assert new["a"] == old["a"] and new["c"] == old["c"]  # byte for byte
    assert new["b"] != old["b"]
    assert merged["metadata"] == before["metadata"]
    assert merged["spec"]["template"]["metadata"]["labels"] == {"keep": "me", "new": "label"}
    values = {k: v.reveal() for k, v in unseal(merged, keys=[key_a.private_key]).data.items()}
    assert values == {"a": b"1", "b": b"two", "c": b"3"}
    if fmt is SealFormat.kustos:
        assert set(merged["spec"]["dataKeys"]) == {"d1", "d2"}
        assert merged["spec"]["dataKeys"]["d1"] == before["spec"]["dataKeys"]["d1"]
        # replacing every d1 value drops the d1 data key
        again = merge_into(
            merged, parse_secret(_secret(a="x", c="y")), certificates=[key_a.certificate], now=NOW
        )
        assert set(again["spec"]["dataKeys"]) == {"d2", "d3"}


def test_merge_into_refuses_another_scope(key_a: SealingKeyPair) -> None:
    (original,) = seal_secret(
        parse_secret(_secret(a="1")), certificates=[key_a.certificate], now=NOW
    )
    with pytest.raises(InvalidRequestError, match="has scope strict"):
        merge_into(
            original,
            parse_secret(_secret(a="2")),
            certificates=[key_a.certificate],
            now=NOW,
            scope=Scope.cluster_wide,
        )


def test_bitnami_with_two_certs_makes_one_object_per_cert(
    key_a: SealingKeyPair, key_b: SealingKeyPair
) -> None:
    docs = seal_secret(
        parse_secret(_secret(a="1")), certificates=[key_a.certificate, key_b.certificate], now=NOW
    )
    assert [d["metadata"]["annotations"][KEY_ID_ANNOTATION] for d in docs] == [
        key_a.certificate.key_id,
        key_b.certificate.key_id,
    ]
    assert unseal(docs[0], keys=[key_a.private_key]).data["a"].reveal() == b"1"
    assert unseal(docs[1], keys=[key_b.private_key]).data["a"].reveal() == b"1"
    with pytest.raises(DecryptionError):
        unseal(docs[0], keys=[key_b.private_key])


def test_native_with_two_certs_opens_with_either_key(
    key_a: SealingKeyPair, key_b: SealingKeyPair
) -> None:
    (doc,) = seal_secret(
        parse_secret(_secret(a="1", b="2")),
        certificates=[key_a.certificate, key_b.certificate],
        now=NOW,
        fmt=SealFormat.kustos,
    )
    assert [r["keyId"] for r in doc["spec"]["dataKeys"]["d1"]] == [
        key_a.certificate.key_id,
        key_b.certificate.key_id,
    ]
    for key in (key_a.private_key, key_b.private_key):
        assert unseal(doc, keys=[key]).data["b"].reveal() == b"2"


def test_native_value_moved_to_another_key_fails(key_a: SealingKeyPair) -> None:
    (doc,) = seal_secret(
        parse_secret(_secret(a="1", b="2")),
        certificates=[key_a.certificate],
        now=NOW,
        fmt=SealFormat.kustos,
    )
    data = doc["spec"]["encryptedData"]
    data["a"], data["b"] = data["b"], data["a"]
    with pytest.raises(DecryptionError, match="'a', 'b'"):
        unseal(doc, keys=[key_a.private_key])


def test_raw_seals_one_value_for_the_given_scope(key_a: SealingKeyPair) -> None:
    value = seal_raw(
        Sensitive(b"v"),
        certificate=key_a.certificate,
        now=NOW,
        scope=Scope.namespace_wide,
        namespace="prod",
    )
    sealed = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {
            "name": "any",
            "namespace": "prod",
            "annotations": {"sealedsecrets.bitnami.com/namespace-wide": "true"},
        },
        "spec": {"encryptedData": {"k": value}},
    }
    assert unseal(sealed, keys=[key_a.private_key]).data["k"].reveal() == b"v"
    with pytest.raises(InvalidRequestError, match="strict scope needs a name"):
        seal_raw(Sensitive(b"v"), certificate=key_a.certificate, now=NOW, namespace="prod")


# ---------------------------------------------------------------- bad input


def test_not_a_secret_is_named() -> None:
    with pytest.raises(InvalidRequestError, match=r"expected a v1 Secret, got ConfigMap prod/cfg"):
        parse_secret(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cfg", "namespace": "prod"},
            }
        )


def test_invalid_base64_names_the_key() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "a", "namespace": "b"},
        "data": {"tls.key": "!!!"},
    }
    with pytest.raises(
        InvalidRequestError, match=r"Secret b/a: data key 'tls.key' is not valid base64"
    ):
        parse_secret(doc)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"name": "app"}, r"Secret app: strict scope needs a namespace"),
        ({"namespace": "prod"}, r"Secret prod/<unnamed>: missing metadata.name"),
        (
            {"name": "app", "annotations": {"sealedsecrets.bitnami.com/namespace-wide": "true"}},
            "namespace-wide scope needs a namespace",
        ),
    ],
)
def test_missing_name_or_namespace_is_refused(
    key_a: SealingKeyPair, metadata: dict[str, Any], message: str
) -> None:
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": {"k": "v"}}
    with pytest.raises(InvalidRequestError, match=message):
        seal_secret(parse_secret(doc), certificates=[key_a.certificate], now=NOW)


def test_cluster_wide_needs_no_namespace(key_a: SealingKeyPair) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app"},
        "stringData": {"k": "v"},
    }
    (sealed,) = seal_secret(
        parse_secret(doc), certificates=[key_a.certificate], now=NOW, scope=Scope.cluster_wide
    )
    assert "namespace" not in sealed["metadata"]


def test_empty_data_needs_the_flag(key_a: SealingKeyPair) -> None:
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app", "namespace": "p"}}
    with pytest.raises(InvalidRequestError, match="allow-empty-data"):
        seal_secret(parse_secret(doc), certificates=[key_a.certificate], now=NOW)
    (sealed,) = seal_secret(
        parse_secret(doc), certificates=[key_a.certificate], now=NOW, allow_empty_data=True
    )
    assert sealed["spec"]["encryptedData"] == {}


def test_expired_certificate_is_refused() -> None:
    old = generate_sealing_key(
        now=NOW - timedelta(days=400), validity=timedelta(days=365), bits=2048
    )
    with pytest.raises(
        InvalidRequestError, match=rf"certificate {old.certificate.key_id} expired on 2025-04-2\d"
    ):
        seal_secret(parse_secret(_secret(a="1")), certificates=[old.certificate], now=NOW)


def test_corrupted_value_names_object_and_key(key_a: SealingKeyPair) -> None:
    (sealed,) = seal_secret(
        parse_secret(_secret(good="1", bad="2")), certificates=[key_a.certificate], now=NOW
    )
    raw = bytearray(base64.b64decode(sealed["spec"]["encryptedData"]["bad"]))
    raw[-1] ^= 1
    sealed["spec"]["encryptedData"]["bad"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(
        DecryptionError,
        match=r"cannot unseal SealedSecret prod/app: no sealing key opens key 'bad' ",
    ):
        unseal(sealed, keys=[key_a.private_key])
    sealed["spec"]["encryptedData"]["bad"] = "not base64!"
    with pytest.raises(DecryptionError, match="'bad'"):
        unseal(sealed, keys=[key_a.private_key])
