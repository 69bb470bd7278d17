"""Classifying stored etcd values and building EncryptionConfigurations (no cluster needed)."""

from __future__ import annotations

import base64

import pytest
import yaml

from kustos.cluster.encryption_configs import build_config, render_config
from kustos.cluster.formats import classify
from kustos.errors import ConfigError
from kustos.protos.kms_v2_storage_pb2 import EncryptedObject


def test_each_provider_prefix() -> None:
    assert classify(b'{"kind":"Secret"}').kind == "plaintext"
    assert classify(b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret").plaintext
    assert classify(b"k8s:enc:aescbc:v1:key1:" + b"\x00" * 32).kind == "aescbc"
    assert classify(b"k8s:enc:aescbc:v1:key1:" + b"\x00" * 32).key == "key1"
    assert classify(b"k8s:enc:aesgcm:v1:k2:" + b"\x01" * 40).kind == "aesgcm"
    assert classify(b"k8s:enc:secretbox:v1:k3:" + b"\x02" * 40).kind == "secretbox"
    assert classify(b"k8s:enc:kms:v1:old:" + b"\x03" * 40).kind == "kms:v1:old"
    assert classify(b"k8s:enc:weird").kind.startswith("unknown:")
    assert classify(b"k8s:enc:rot13:v9:x:y").encrypted


def test_kms_v2_names_the_provider_and_the_key_id() -> None:
    stored = EncryptedObject(
        encryptedData=b"\x00" * 40,
        keyID="local:0123456789abcdef",
        encryptedDEKSource=b"\x01" * 60,
        annotations={"format.kms.kustos.io": b"1"},
        encryptedDEKSourceType=1,
    ).SerializeToString()
    found = classify(b"k8s:enc:kms:v2:kustos:" + stored)
    assert (found.kind, found.key, found.key_id) == ("kms:v2:kustos", "kustos", found.key_id)
    assert found.key_id == "local:0123456789abcdef"
    assert classify(b"k8s:enc:kms:v2:kustos:\xff\xff\xff").key_id == ""


def test_encryption_config_kms_first_identity_last() -> None:
    keys = iter([b"\x11" * 32, b"\x22" * 32])
    document = build_config(
        kms_socket="/var/run/kustos/kms.sock",
        kms_name="kustos",
        resources=["configmaps", "secrets"],
        aescbc=True,
        secretbox=True,
        randbytes=lambda n: next(keys),
    )
    entry = document["resources"][0]
    assert entry["resources"] == ["secrets", "configmaps"]
    kinds = [next(iter(p)) for p in entry["providers"]]
    assert kinds == ["kms", "aescbc", "secretbox", "identity"]
    assert entry["providers"][0]["kms"] == {
        "apiVersion": "v2",
        "name": "kustos",
        "endpoint": "unix:///var/run/kustos/kms.sock",
        "timeout": "3s",
    }
    secret = entry["providers"][1]["aescbc"]["keys"][0]["secret"]
    assert base64.b64decode(secret) == b"\x11" * 32
    assert yaml.safe_load(render_config(document)) == document


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kms_socket": None, "kms_name": None}, "give --kms-socket"),
        ({"kms_socket": "/s.sock", "kms_name": None}, "--kms-name"),
        ({"kms_socket": "/s.sock", "kms_name": "bad name"}, "--kms-name"),
        ({"kms_socket": "relative.sock", "kms_name": "k"}, "absolute"),
        ({"kms_socket": None, "kms_name": "k"}, "needs --kms-socket"),
        ({"kms_socket": "/s.sock", "kms_name": "k", "resources": ["Bad Name"]}, "resource"),
        ({"kms_socket": "/s.sock", "kms_name": "k", "timeout": "soon"}, "duration"),
    ],
)
def test_encryption_config_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(**kwargs)  # type: ignore[arg-type]
