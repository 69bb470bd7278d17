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
    """The format of a SealedSecret document; anything else is an error naming it.

    Also checks the shape every reader of the document relies on (mappings
    where the layout above has mappings, strings where it has strings), so a
    ``spec`` that is a list or a number is a clear error, not a crash later.
    """
    if doc.get("kind") != "SealedSecret":
        raise InvalidRequestError(f"{source}: expected a SealedSecret, got {describe(doc)}")
    api = doc.get("apiVersion")
    if api == BITNAMI_API_VERSION:
        fmt = SealFormat.bitnami
    elif api == NATIVE_API_VERSION:
        fmt = SealFormat.kustos
    else:
        raise InvalidRequestError(
            f"{source}: {describe(doc)}: unsupported apiVersion {str(api)[:64]!r} (expected {BITNAMI_API_VERSION} or {NATIVE_API_VERSION})"
        )
    _check_shape(doc, where=f"{source}: {describe(doc)}")
    return fmt


def _mapping(value: object, *, where: str, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{where}: {field} must be a mapping (an object)")
    return value


def _strings(value: Mapping[str, Any], *, where: str, field: str, nullable: bool = False) -> None:
    for key, item in value.items():
        if not isinstance(key, str) or not (isinstance(item, str) or (nullable and item is None)):
            raise InvalidRequestError(f"{where}: {field} must map names to strings")


def _check_shape(doc: Mapping[str, Any], *, where: str) -> None:
    meta = _mapping(doc.get("metadata"), where=where, field="metadata")
    for name in ("name", "namespace", "uid"):
        if meta.get(name) is not None and not isinstance(meta[name], str):
            raise InvalidRequestError(f"{where}: metadata.{name} must be a string")
    _strings(
        _mapping(meta.get("annotations"), where=where, field="metadata.annotations"),
        where=where,
        field="metadata.annotations",
    )
    spec = _mapping(doc.get("spec"), where=where, field="spec")
    _strings(
        _mapping(spec.get("encryptedData"), where=where, field="spec.encryptedData"),
        where=where,
        field="spec.encryptedData",
    )
    data_keys = _mapping(spec.get("dataKeys"), where=where, field="spec.dataKeys")
    for recipients in data_keys.values():
        if recipients is not None and not (
            isinstance(recipients, list) and all(isinstance(r, Mapping) for r in recipients)
        ):
            raise InvalidRequestError(
                f"{where}: spec.dataKeys must map data key ids to lists of recipients"
            )
    template = _mapping(spec.get("template"), where=where, field="spec.template")
    template_meta = _mapping(template.get("metadata"), where=where, field="spec.template.metadata")
    for name in ("labels", "annotations"):
        _strings(
            _mapping(template_meta.get(name), where=where, field=f"spec.template.metadata.{name}"),
            where=where,
            field=f"spec.template.metadata.{name}",
        )
    _strings(
        _mapping(template.get("data"), where=where, field="spec.template.data"),
        where=where,
        field="spec.template.data",
        nullable=True,
    )
    if template.get("type") is not None and not isinstance(template["type"], str):
        raise InvalidRequestError(f"{where}: spec.template.type must be a string")
