"""SealedSecret + private keys → the Secret it stands for (the unseal library).

Used by the operator (reconciling SealedSecrets) and by ``kustos seal
--recovery-unseal`` (offline, from a key backup). It follows Sealed Secrets'
``Unseal``:

* the scope comes from the SealedSecret's *own* metadata annotations, and the
  label (or native associated data) from its own name and namespace, so a
  value copied to another name/namespace than its scope allows fails;
* the Secret's metadata, type and ``immutable`` come from ``spec.template``;
  name and namespace are forced to the SealedSecret's;
* ``spec.template.data`` entries are rendered with the decrypted values
  (:mod:`kustos.gitops.sealing.templating`); a ``null`` entry removes the key;
* an owner reference to the SealedSecret is set when it has a ``uid``, unless
  the template says ``sealedsecrets.bitnami.com/skip-set-owner-references``.

Keys: in the Sealed Secrets format the key named by the
``kustos.io/sealing-key-id`` hint is tried first, then the key that opened
the previous value, then every key in the order given. In the native format
the wrapped data key names its key id, so one X25519 operation (or one RSA
operation, for objects sealed to a plain RSA certificate) opens the object.

Every failure to decrypt raises :class:`kustos.errors.DecryptionError` whose
message names the object and the keys that failed, never a value or which
check failed.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kustos.crypto.sealing import (
    SealingCertificate,
    SealingPrivateKey,
    hybrid_decrypt,
    native_aad,
    native_decrypt_value,
    native_wrap_aad,
    unwrap_data_key,
    unwrap_data_key_x25519,
)
from kustos.errors import DecryptionError, InvalidRequestError
from kustos.gitops.sealing.encrypting import seal_secret
from kustos.gitops.sealing.formats import (
    KEY_ID_ANNOTATION,
    SKIP_OWNER_REFERENCES_ANNOTATION,
    SealFormat,
    format_of,
)
from kustos.gitops.sealing.manifests import SecretManifest, describe
from kustos.gitops.sealing.scopes import Scope, pinned_name, pinned_namespace, scope_label, scope_of
from kustos.gitops.sealing.templating import render_template
from kustos.sensitive import Sensitive

__all__ = ["UnsealedSecret", "open_values", "reencrypt", "unseal"]


@dataclass(frozen=True)
class UnsealedSecret:
    """The Secret a SealedSecret stands for; values stay :class:`Sensitive` until :meth:`to_manifest`."""

    name: str
    namespace: str
    metadata: dict[str, Any]
    data: dict[str, Sensitive[bytes]] = field(repr=False)
    type: str | None = None
    immutable: bool | None = None
    owner_references: list[dict[str, Any]] = field(default_factory=list)
    key_id: str | None = None
    """The sealing key that opened the values (None when there were none)."""

    def to_manifest(self) -> dict[str, Any]:
        """The ``v1 Secret`` manifest (values base64-encoded: this reveals them)."""
        meta = dict(self.metadata)
        if self.owner_references:
            meta["ownerReferences"] = self.owner_references
        doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": meta}
        if self.type:
            doc["type"] = self.type
        if self.immutable is not None:
            doc["immutable"] = self.immutable
        doc["data"] = {
            k: base64.b64encode(v.reveal()).decode() for k, v in sorted(self.data.items())
        }
        return doc


def _where(sealed: Mapping[str, Any]) -> tuple[str, str, Scope, str]:
    meta = sealed.get("metadata") or {}
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    return name, namespace, scope_of(meta.get("annotations")), describe(sealed)


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise DecryptionError()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError() from None


def _failed(what: str, keys: Sequence[str]) -> DecryptionError:
    listed = ", ".join(repr(k) for k in sorted(keys))
    return DecryptionError(
        f"cannot unseal {what}: no sealing key opens key {listed} "
        "(wrong sealing key, moved to another name/namespace than its scope allows, or a corrupted value)"
    )


def _open_bitnami(
    sealed: Mapping[str, Any], keys: Sequence[SealingPrivateKey], opened_by: list[str]
) -> dict[str, Sensitive[bytes]]:
    name, namespace, scope, what = _where(sealed)
    label = scope_label(scope, namespace=namespace, name=name)
    hint = ((sealed.get("metadata") or {}).get("annotations") or {}).get(KEY_ID_ANNOTATION)
    order = sorted(keys, key=lambda k: k.key_id != hint)  # stable: hinted key first
    out: dict[str, Sensitive[bytes]] = {}
    failed: list[str] = []
    for key_name, value in sorted(((sealed.get("spec") or {}).get("encryptedData") or {}).items()):
        for i, key in enumerate(order):
            try:
                out[key_name] = hybrid_decrypt(key, _b64(value), label=label)
            except DecryptionError:
                continue
            opened_by.append(key.key_id)
            if i:
                order.insert(0, order.pop(i))  # the key that worked likely opens the next value
            break
        else:
            failed.append(key_name)
    if failed:
        raise _failed(what, failed)
    return out


def _open_native(
    sealed: Mapping[str, Any], keys: Sequence[SealingPrivateKey], opened_by: list[str]
) -> dict[str, Sensitive[bytes]]:
    name, namespace, scope, what = _where(sealed)
    label = scope_label(scope, namespace=namespace, name=name)
    spec = sealed.get("spec") or {}
    by_id = {k.key_id: k for k in keys}
    data_keys: dict[str, Sensitive[bytes] | None] = {}

    def data_key(data_key_id: str) -> Sensitive[bytes] | None:
        if data_key_id not in data_keys:
            data_keys[data_key_id] = None
            recipients = (spec.get("dataKeys") or {}).get(data_key_id) or []
            for recipient in recipients if isinstance(recipients, list) else []:
                key = by_id.get(str((recipient or {}).get("keyId")))
                if key is None:
                    continue
                try:
                    if recipient.get("ephemeralKey") is not None:
                        aad = native_wrap_aad(
                            scope=scope.value,
                            namespace=pinned_namespace(scope, namespace),
                            name=pinned_name(scope, name),
                            data_key_id=data_key_id,
                            key_id=key.key_id,
                        )
                        data_keys[data_key_id] = unwrap_data_key_x25519(
                            key,
                            _b64(recipient.get("ephemeralKey")),
                            _b64(recipient.get("wrappedKey")),
                            aad=aad,
                        )
                    else:
                        data_keys[data_key_id] = unwrap_data_key(
                            key, _b64(recipient.get("wrappedKey")), label=label
                        )
                    opened_by.append(key.key_id)
                    break
                except DecryptionError:
                    continue
        return data_keys[data_key_id]

    out: dict[str, Sensitive[bytes]] = {}
    failed: list[str] = []
    for key_name, value in sorted((spec.get("encryptedData") or {}).items()):
        try:
            data_key_id, _, encoded = str(value).partition(":")
            dk = data_key(data_key_id)
            if dk is None:
                raise DecryptionError()
            aad = native_aad(
                scope=scope.value,
                namespace=pinned_namespace(scope, namespace),
                name=pinned_name(scope, name),
                key=key_name,
                data_key_id=data_key_id,
            )
            out[key_name] = native_decrypt_value(dk, _b64(encoded), aad=aad)
        except DecryptionError:
            failed.append(key_name)
    if failed:
        raise _failed(what, failed)
    return out


def _open(
    sealed: Mapping[str, Any], keys: Sequence[SealingPrivateKey]
) -> tuple[dict[str, Sensitive[bytes]], str | None]:
    fmt = format_of(sealed)
    if not keys:
        raise InvalidRequestError("no private key given to unseal with")
    opened_by: list[str] = []
    if fmt is SealFormat.kustos:
        values = _open_native(sealed, keys, opened_by)
    else:
        values = _open_bitnami(sealed, keys, opened_by)
    return values, (opened_by[0] if opened_by else None)


def open_values(
    sealed: Mapping[str, Any], *, keys: Sequence[SealingPrivateKey]
) -> dict[str, Sensitive[bytes]]:
    """Decrypt every ``spec.encryptedData`` value (no template rendering)."""
    return _open(sealed, keys)[0]


def unseal(sealed: Mapping[str, Any], *, keys: Sequence[SealingPrivateKey]) -> UnsealedSecret:
    """The Secret ``sealed`` stands for; see the module docstring for the rules."""
    values, key_id = _open(sealed, keys)
    name, namespace, _, what = _where(sealed)
    meta = sealed.get("metadata") or {}
    spec = sealed.get("spec") or {}
    template = spec.get("template") or {}
    secret_meta = dict(template.get("metadata") or {})
    secret_meta["name"] = name
    if namespace:
        secret_meta["namespace"] = namespace
    data = dict(values)
    for key_name, tmpl in (template.get("data") or {}).items():
        if tmpl is None:
            data.pop(key_name, None)
            continue
        data[key_name] = render_template(
            str(tmpl), values, where=f"{what}: template data key {key_name!r}"
        )
    owners: list[dict[str, Any]] = []
    annotations = secret_meta.get("annotations") or {}
    if meta.get("uid") and annotations.get(SKIP_OWNER_REFERENCES_ANNOTATION) != "true":
        owners.append(
            {
                "apiVersion": sealed.get("apiVersion"),
                "kind": "SealedSecret",
                "name": name,
                "uid": meta["uid"],
                "controller": True,
            }
        )
    immutable = template.get("immutable")
    return UnsealedSecret(
        name=name,
        namespace=namespace,
        metadata=secret_meta,
        data=data,
        type=template.get("type"),
        immutable=bool(immutable) if immutable is not None else None,
        owner_references=owners,
        key_id=key_id,
    )


def reencrypt(
    sealed: Mapping[str, Any],
    *,
    keys: Sequence[SealingPrivateKey],
    certificate: SealingCertificate,
    now: datetime,
    key_id_hint: bool = True,
) -> dict[str, Any]:
    """``/v1/rotate`` and ``kubeseal --re-encrypt``: the same object, its values sealed for ``certificate``.

    Everything but the ciphertexts (``encryptedData``, native ``dataKeys``)
    and the key id hint annotation stays as it was: metadata, template,
    scope. Values that do not open raise :class:`DecryptionError` naming them.
    """
    fmt = format_of(sealed)
    values = open_values(sealed, keys=keys)
    name, namespace, scope, _ = _where(sealed)
    template = (sealed.get("spec") or {}).get("template") or {}
    fresh = seal_secret(
        SecretManifest(metadata={"name": name, "namespace": namespace}, data=values),
        certificates=[certificate],
        now=now,
        fmt=fmt,
        scope=scope,
        name=name,
        namespace=namespace,
        allow_empty_data=True,
        key_id_hint=key_id_hint,
    )[0]
    out: dict[str, Any] = copy.deepcopy(dict(sealed))
    spec = out.setdefault("spec", {})
    spec["template"] = copy.deepcopy(template) if template else spec.get("template", {})
    spec["encryptedData"] = fresh["spec"]["encryptedData"]
    if fmt is SealFormat.kustos:
        spec["dataKeys"] = fresh["spec"]["dataKeys"]
    meta = out.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    hint = ((fresh.get("metadata") or {}).get("annotations") or {}).get(KEY_ID_ANNOTATION)
    if hint:
        annotations[KEY_ID_ANNOTATION] = hint
    else:
        annotations.pop(KEY_ID_ANNOTATION, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return out
