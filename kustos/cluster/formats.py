"""What a value kube-apiserver stored in etcd is, read from its prefix; never decrypted.

The API server marks every encrypted value with a prefix naming the
provider that wrote it::

    k8s:enc:aescbc:v1:<key name>:     AES-CBC (PKCS#7), key in the config file
    k8s:enc:aesgcm:v1:<key name>:     AES-GCM, key in the config file
    k8s:enc:secretbox:v1:<key name>:  XSalsa20-Poly1305, key in the config file
    k8s:enc:kms:v1:<provider name>:   KMS v1 envelope
    k8s:enc:kms:v2:<provider name>:   KMS v2: a protobuf EncryptedObject follows

Anything else is plaintext (the ``identity`` provider, or no encryption at
all): a protobuf object (``k8s\\x00``) or JSON. For KMS v2 the key id the
plugin reported is read from the EncryptedObject
(``kustos/protos/kms_v2_storage.proto``); it is public metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["PLAINTEXT", "StoredFormat", "classify"]

PLAINTEXT: Final = "plaintext"
_PREFIX: Final = b"k8s:enc:"
_LOCAL: Final = {b"aescbc": "aescbc", b"aesgcm": "aesgcm", b"secretbox": "secretbox"}


@dataclass(frozen=True)
class StoredFormat:
    """How one stored value is protected.

    ``kind`` is ``plaintext``, ``aescbc``, ``aesgcm``, ``secretbox``,
    ``kms:v1:<name>``, ``kms:v2:<name>`` or ``unknown:<prefix>``; ``key`` names
    the local key or the KMS provider; ``key_id`` is the KMS v2 plugin's key id.
    """

    kind: str
    key: str = ""
    key_id: str = ""

    @property
    def plaintext(self) -> bool:
        return self.kind == PLAINTEXT

    @property
    def encrypted(self) -> bool:
        return not self.plaintext


def classify(value: bytes) -> StoredFormat:
    """Classify one raw etcd value (the bytes the API server wrote)."""
    if not value.startswith(_PREFIX):
        return StoredFormat(PLAINTEXT)
    parts = value[len(_PREFIX) :].split(b":", 3)
    if len(parts) < 4:
        return StoredFormat(f"unknown:{_text(parts[0])}")
    provider, version, name, rest = parts
    if provider in _LOCAL and version == b"v1":
        return StoredFormat(_LOCAL[provider], key=_text(name))
    if provider == b"kms" and version in (b"v1", b"v2"):
        kind = f"kms:{version.decode()}:{_text(name)}"
        key_id = _kms_v2_key_id(rest) if version == b"v2" else ""
        return StoredFormat(kind, key=_text(name), key_id=key_id)
    return StoredFormat(f"unknown:{_text(provider)}:{_text(version)}")


def _kms_v2_key_id(data: bytes) -> str:
    from google.protobuf.message import DecodeError

    from kustos.protos.kms_v2_storage_pb2 import EncryptedObject

    try:
        return EncryptedObject.FromString(data).keyID
    except DecodeError:
        return ""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")[:200]
