"""Names shared by sealing and unsealing: API versions, annotations and the native layout.

``bitnami.com/v1alpha1`` SealedSecret (Sealed Secrets' CRD, unchanged)::

    metadata: {name, namespace, annotations: {scope annotation?, kustos.io/sealing-key-id?}}
    spec:
      encryptedData: {<key>: base64(uint16 len || rsa_ct || gcm_ct)}
      template: {metadata, type, immutable, data}

``kustos.io/v1`` SealedSecret (native)::

    metadata: {name, namespace, annotations: {scope annotation?}}
    spec:
      dataKeys:                       # one data key per sealing run ("d1", "d2" after a merge)
        d1:
          - keyId: <16 hex>           # one entry per recipient certificate
            wrappedKey: base64(RSA-OAEP-SHA256(data key, label = scope label))
      encryptedData: {<key>: "d1:" + base64(nonce || gcm_ct || tag)}
      template: {metadata, type, immutable, data}

The ``kustos.io/sealing-key-id`` annotation is a hint only: Sealed Secrets
controllers ignore it, Kustos tries the named key first and then every key.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

from kustos.errors import InvalidRequestError
from kustos.gitops.sealing.manifests import describe

__all__ = [
    "BITNAMI_API_VERSION",
    "KEY_ID_ANNOTATION",
    "NATIVE_API_VERSION",
    "SKIP_OWNER_REFERENCES_ANNOTATION",
    "SealFormat",
    "format_of",
]

BITNAMI_API_VERSION: Final = "bitnami.com/v1alpha1"
NATIVE_API_VERSION: Final = "kustos.io/v1"
KEY_ID_ANNOTATION: Final = "kustos.io/sealing-key-id"
SKIP_OWNER_REFERENCES_ANNOTATION: Final = "sealedsecrets.bitnami.com/skip-set-owner-references"


class SealFormat(enum.StrEnum):
    """Which SealedSecret to write: Sealed Secrets' (default) or Kustos' native one."""

    bitnami = "bitnami"
    kustos = "kustos"


def format_of(doc: Mapping[str, Any], *, source: str = "input") -> SealFormat:
    """The format of a SealedSecret document; anything else is an error naming it."""
    if doc.get("kind") != "SealedSecret":
        raise InvalidRequestError(f"{source}: expected a SealedSecret, got {describe(doc)}")
    api = doc.get("apiVersion")
    if api == BITNAMI_API_VERSION:
        return SealFormat.bitnami
    if api == NATIVE_API_VERSION:
        return SealFormat.kustos
    raise InvalidRequestError(
        f"{source}: {describe(doc)}: unsupported apiVersion {api!r} (expected {BITNAMI_API_VERSION} or {NATIVE_API_VERSION})"
    )
