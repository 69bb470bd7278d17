"""Interop with Sealed Secrets' format, both ways, for every scope.

The independent implementation below is written from REFERENCE.md with
``cryptography`` directly (not through kustos.crypto): RSA-OAEP SHA-256 with
the scope label wraps a 32-byte session key, AES-256-GCM with a zero nonce and
no AAD carries the value, ``uint16 len || rsa_ct || gcm_ct``, base64.
"""

from __future__ import annotations

import base64
import os
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kustos.crypto.sealing import SealingKeyPair
from kustos.errors import DecryptionError
from kustos.gitops.sealing import Scope, SealFormat, parse_secret, seal_secret, unseal

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

LABELS = {
    Scope.strict: b"prod/db",
    Scope.namespace_wide: b"prod",
    Scope.cluster_wide: b"",
}
ANNOTATIONS = {
    Scope.strict: {},
    Scope.namespace_wide: {"sealedsecrets.bitnami.com/namespace-wide": "true"},
    Scope.cluster_wide: {"sealedsecrets.bitnami.com/cluster-wide": "true"},
}


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)


def independent_seal(cert_pem: bytes, plaintext: bytes, label: bytes) -> str:
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    session = os.urandom(32)
    rsa_ct = public.encrypt(session, _oaep(label))  # type: ignore[union-attr]
    gcm = AESGCM(session).encrypt(b"\x00" * 12, plaintext, None)
    return base64.b64encode(struct.pack(">H", len(rsa_ct)) + rsa_ct + gcm).decode()


def independent_open(key_pem: bytes, value: str, label: bytes) -> bytes:
    private = serialization.load_pem_private_key(key_pem, password=None)
    raw = base64.b64decode(value)
    (n,) = struct.unpack(">H", raw[:2])
    session = private.decrypt(raw[2 : 2 + n], _oaep(label))  # type: ignore[union-attr]
    return AESGCM(session).decrypt(b"\x00" * 12, raw[2 + n :], None)


def _secret(annotations: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "prod", "annotations": dict(annotations)},
        "type": "Opaque",
        "data": {"password": base64.b64encode(b"s3cr\x00t").decode()},
        "stringData": {"user": "admin"},
        **extra,
    }


@pytest.mark.parametrize("scope", list(Scope))
def test_kustos_sealed_values_open_with_the_independent_implementation(
    key4096: SealingKeyPair, scope: Scope
) -> None:
    secret = parse_secret(_secret(ANNOTATIONS[scope]))
    (sealed,) = seal_secret(secret, certificates=[key4096.certificate], now=NOW)
    encrypted = sealed["spec"]["encryptedData"]
    assert sealed["apiVersion"] == "bitnami.com/v1alpha1"
    # uint16 0x0200 then the RSA ciphertext (< modulus): "Ag" then A-D; REFERENCE.md's "AgA" is the common case
    assert all(v.startswith("Ag") and v[2] in "ABCD" for v in encrypted.values())
    key_pem = key4096.private_key.pem().reveal()
    assert independent_open(key_pem, encrypted["password"], LABELS[scope]) == b"s3cr\x00t"
    assert independent_open(key_pem, encrypted["user"], LABELS[scope]) == b"admin"
    # the scope is declared on the SealedSecret itself, as Sealed Secrets reads it
    assert {
        k: v
        for k, v in (sealed["metadata"].get("annotations") or {}).items()
        if k.startswith("sealedsecrets")
    } == ANNOTATIONS[scope]


@pytest.mark.parametrize("scope", list(Scope))
def test_independently_sealed_values_unseal_with_kustos(
    key4096: SealingKeyPair, scope: Scope
) -> None:
    cert_pem = key4096.certificate.pem()
    sealed = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "db", "namespace": "prod", "annotations": ANNOTATIONS[scope]},
        "spec": {
            "encryptedData": {
                "password": independent_seal(cert_pem, b"hunter2", LABELS[scope]),
                "token": independent_seal(cert_pem, b"\xff\x00binary", LABELS[scope]),
            },
            "template": {"metadata": {"labels": {"app": "db"}}, "type": "Opaque"},
        },
    }
    secret = unseal(sealed, keys=[key4096.private_key])
    assert secret.data["password"].reveal() == b"hunter2"
    assert secret.data["token"].reveal() == b"\xff\x00binary"
    assert (secret.name, secret.namespace, secret.type) == ("db", "prod", "Opaque")
    assert secret.metadata["labels"] == {"app": "db"}


@pytest.mark.parametrize("fmt", list(SealFormat))
def test_strict_value_fails_under_another_name_or_namespace(
    key_a: SealingKeyPair, fmt: SealFormat
) -> None:
    (sealed,) = seal_secret(
        parse_secret(_secret({})), certificates=[key_a.certificate], now=NOW, fmt=fmt
    )
    assert unseal(sealed, keys=[key_a.private_key]).data["user"].reveal() == b"admin"
    for field, value in (("name", "other"), ("namespace", "staging")):
        moved = {**sealed, "metadata": {**sealed["metadata"], field: value}}
        with pytest.raises(DecryptionError) as err:
            unseal(moved, keys=[key_a.private_key])
        assert "'password'" in str(err.value) and "'user'" in str(err.value)
        assert "SealedSecret" in str(err.value)
        assert "admin" not in str(err.value)


@pytest.mark.parametrize("fmt", list(SealFormat))
def test_namespace_wide_moves_between_names_not_namespaces(
    key_a: SealingKeyPair, fmt: SealFormat
) -> None:
    secret = parse_secret(_secret(ANNOTATIONS[Scope.namespace_wide]))
    (sealed,) = seal_secret(secret, certificates=[key_a.certificate], now=NOW, fmt=fmt)
    renamed = {**sealed, "metadata": {**sealed["metadata"], "name": "other"}}
    assert unseal(renamed, keys=[key_a.private_key]).data["user"].reveal() == b"admin"
    moved = {**sealed, "metadata": {**sealed["metadata"], "namespace": "staging"}}
    with pytest.raises(DecryptionError):
        unseal(moved, keys=[key_a.private_key])


@pytest.mark.parametrize("fmt", list(SealFormat))
def test_cluster_wide_moves_anywhere_but_not_to_another_scope(
    key_a: SealingKeyPair, fmt: SealFormat
) -> None:
    secret = parse_secret(_secret(ANNOTATIONS[Scope.cluster_wide]))
    (sealed,) = seal_secret(secret, certificates=[key_a.certificate], now=NOW, fmt=fmt)
    moved = {**sealed, "metadata": {**sealed["metadata"], "name": "x", "namespace": "y"}}
    assert unseal(moved, keys=[key_a.private_key]).data["password"].reveal() == b"s3cr\x00t"
    downgraded = {**sealed, "metadata": {"name": "db", "namespace": "prod"}}
    with pytest.raises(DecryptionError):
        unseal(downgraded, keys=[key_a.private_key])


def test_scope_flag_overrides_annotations_and_rewrites_them(key_a: SealingKeyPair) -> None:
    secret = parse_secret(_secret(ANNOTATIONS[Scope.namespace_wide]))
    (sealed,) = seal_secret(
        secret, certificates=[key_a.certificate], now=NOW, scope=Scope.cluster_wide
    )
    assert sealed["metadata"]["annotations"]["sealedsecrets.bitnami.com/cluster-wide"] == "true"
    assert (
        "sealedsecrets.bitnami.com/namespace-wide"
        not in sealed["spec"]["template"]["metadata"]["annotations"]
    )
    key_pem = key_a.private_key.pem().reveal()
    assert independent_open(key_pem, sealed["spec"]["encryptedData"]["user"], b"") == b"admin"
