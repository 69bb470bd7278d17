"""The unseal library: template rendering, owner references, key order and hints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kustos.crypto.sealing import SealingKeyPair
from kustos.errors import DecryptionError, InvalidRequestError
from kustos.gitops.sealing import KEY_ID_ANNOTATION, SealFormat, parse_secret, seal_secret, unseal
from kustos.gitops.sealing.templating import render_template
from kustos.sensitive import Sensitive

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _sealed(
    key: SealingKeyPair, fmt: SealFormat = SealFormat.bitnami, **data: str
) -> dict[str, Any]:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app", "namespace": "prod"},
        "stringData": data,
    }
    return seal_secret(parse_secret(doc), certificates=[key.certificate], now=NOW, fmt=fmt)[0]


@pytest.mark.parametrize("fmt", list(SealFormat))
def test_template_data_is_rendered_with_the_values(key_a: SealingKeyPair, fmt: SealFormat) -> None:
    sealed = _sealed(key_a, fmt, user="admin", password="hunter2", drop="x")
    sealed["spec"]["template"]["data"] = {
        "dsn": 'postgres://{{ .user }}:{{ index . "password" }}@db/app',
        "basic": "{{ .user | b64enc }}",
        "drop": None,
    }
    sealed["spec"]["template"]["metadata"]["annotations"] = {"a": "b"}
    secret = unseal(sealed, keys=[key_a.private_key])
    assert secret.data["dsn"].reveal() == b"postgres://admin:hunter2@db/app"
    assert secret.data["basic"].reveal() == b"YWRtaW4="
    assert "drop" not in secret.data
    manifest = secret.to_manifest()
    assert manifest["metadata"] == {"name": "app", "namespace": "prod", "annotations": {"a": "b"}}
    assert "hunter2" not in repr(secret)


def test_template_errors_name_object_and_key() -> None:
    values = {"a": Sensitive(b"1")}
    assert (
        render_template('{{- .a -}} x {{ "lit" | upper }}', values, where="w").reveal() == b"1x LIT"
    )
    with pytest.raises(
        InvalidRequestError,
        match=r"SealedSecret p/n: template data key 'k': template refers to 'missing'",
    ):
        render_template("{{ .missing }}", values, where="SealedSecret p/n: template data key 'k'")
    with pytest.raises(InvalidRequestError, match="unsupported template function 'sha256sum'"):
        render_template("{{ .a | sha256sum }}", values, where="w")
    with pytest.raises(InvalidRequestError, match="unsupported template action"):
        render_template("{{ range . }}", values, where="w")


def test_owner_reference_unless_skipped(key_a: SealingKeyPair) -> None:
    sealed = _sealed(key_a, a="1")
    sealed["metadata"]["uid"] = "u-1"
    owners = unseal(sealed, keys=[key_a.private_key]).owner_references
    assert owners == [
        {
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "name": "app",
            "uid": "u-1",
            "controller": True,
        }
    ]
    sealed["spec"]["template"]["metadata"]["annotations"] = {
        "sealedsecrets.bitnami.com/skip-set-owner-references": "true"
    }
    assert unseal(sealed, keys=[key_a.private_key]).owner_references == []


def test_every_key_is_tried_when_the_hint_is_missing_or_wrong(
    key_a: SealingKeyPair, key_b: SealingKeyPair
) -> None:
    sealed = _sealed(key_b, a="1", b="2")
    del sealed["metadata"]["annotations"][KEY_ID_ANNOTATION]
    assert unseal(sealed, keys=[key_a.private_key, key_b.private_key]).data["b"].reveal() == b"2"
    sealed["metadata"]["annotations"] = {KEY_ID_ANNOTATION: key_a.certificate.key_id}
    assert unseal(sealed, keys=[key_a.private_key, key_b.private_key]).data["a"].reveal() == b"1"
    with pytest.raises(DecryptionError):
        unseal(sealed, keys=[key_a.private_key])


def test_native_without_the_recipient_key_fails(
    key_a: SealingKeyPair, key_b: SealingKeyPair
) -> None:
    sealed = _sealed(key_a, SealFormat.kustos, a="1")
    with pytest.raises(DecryptionError, match="'a'"):
        unseal(sealed, keys=[key_b.private_key])
    # a recipient entry that lies about its key id is not trusted either
    sealed["spec"]["dataKeys"]["d1"][0]["keyId"] = key_b.certificate.key_id
    with pytest.raises(DecryptionError):
        unseal(sealed, keys=[key_b.private_key])


def test_not_a_sealed_secret_is_named(key_a: SealingKeyPair) -> None:
    with pytest.raises(InvalidRequestError, match="expected a SealedSecret, got Secret prod/x"):
        unseal(
            {"kind": "Secret", "metadata": {"name": "x", "namespace": "prod"}},
            keys=[key_a.private_key],
        )
    with pytest.raises(InvalidRequestError, match=r"unsupported apiVersion 'bitnami\.com/v2'"):
        unseal(
            {"kind": "SealedSecret", "apiVersion": "bitnami.com/v2", "metadata": {}},
            keys=[key_a.private_key],
        )


def test_native_x25519_objects_unseal_and_bind_their_place(
    key_a: SealingKeyPair, key_b: SealingKeyPair
) -> None:
    bundle_a = key_a.private_key.with_exchange(key_a.certificate)
    secret = parse_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "prod"},
            "stringData": {"user": "u", "password": "p"},
        }
    )
    [doc] = seal_secret(
        secret, certificates=[bundle_a, key_b.certificate], now=NOW, fmt=SealFormat.kustos
    )
    recipients = doc["spec"]["dataKeys"]["d1"]
    assert "ephemeralKey" in recipients[0] and "ephemeralKey" not in recipients[1]
    opened = unseal(doc, keys=[key_a.private_key])
    assert opened.data["password"].reveal() == b"p" and opened.key_id == key_a.private_key.key_id
    assert (
        unseal(doc, keys=[key_b.private_key]).key_id == key_b.private_key.key_id
    )  # RSA-OAEP recipient
    moved = {**doc, "metadata": {**doc["metadata"], "name": "other"}}
    with pytest.raises(DecryptionError, match="prod/other"):
        unseal(moved, keys=[key_a.private_key, key_b.private_key])
    swapped = {
        **doc,
        "spec": {
            **doc["spec"],
            "dataKeys": {"d1": [{**recipients[0], "keyId": key_b.private_key.key_id}]},
        },
    }
    with pytest.raises(DecryptionError):
        unseal(swapped, keys=[key_b.private_key])
