"""Secret → SealedSecret: what ``kustos seal`` does, as a library.

:func:`seal_secret` follows kubeseal: overrides of name and namespace, the
scope (flag or annotations), read-only metadata and last-applied annotations
stripped (they would hold the plaintext), ``data`` and ``stringData`` both
sealed. Beyond kubeseal:

* several certificates (production + disaster recovery): in the Sealed
  Secrets format, one SealedSecret per certificate (same name; route each to
  its cluster), since that format has no room for a second recipient; in the
  native format, one object whose data key is wrapped once per certificate
  (X25519 ECIES when the certificate bundle carries the exchange key, else
  RSA-OAEP);
* the ``kustos.io/sealing-key-id`` hint annotation;
* :func:`merge_into` keeps every other key's ciphertext byte for byte (native:
  the new values get a new data key ``dN``; data keys no value uses are dropped).

Certificates past their NotAfter are refused, as kubeseal does.
"""

from __future__ import annotations

import base64
import copy
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kustos.crypto.sealing import (
    SealingCertificate,
    generate_data_key,
    hybrid_encrypt,
    native_aad,
    native_encrypt_value,
    native_wrap_aad,
    wrap_data_key,
    wrap_data_key_x25519,
)
from kustos.errors import InvalidRequestError
from kustos.gitops.sealing.formats import (
    BITNAMI_API_VERSION,
    KEY_ID_ANNOTATION,
    NATIVE_API_VERSION,
    SealFormat,
    format_of,
)
from kustos.gitops.sealing.manifests import (
    LAST_APPLIED_ANNOTATIONS,
    SERVER_SIDE_METADATA,
    SecretManifest,
    describe,
)
from kustos.gitops.sealing.scopes import (
    Scope,
    pinned_name,
    pinned_namespace,
    scope_label,
    scope_of,
    with_scope_annotations,
)
from kustos.sensitive import Sensitive

__all__ = ["check_certificates", "merge_into", "seal_raw", "seal_secret", "seal_values"]

RandBytes = Callable[[int], bytes]


def check_certificates(certificates: Sequence[SealingCertificate], *, now: datetime) -> None:
    """Refuse an empty list or an expired certificate (naming it)."""
    if not certificates:
        raise InvalidRequestError("no sealing certificate given (use --cert or --fetch-cert)")
    for cert in certificates:
        if cert.is_expired(now=now):
            raise InvalidRequestError(
                f"certificate {cert.key_id} expired on {cert.not_after.date().isoformat()}: refusing to seal with it"
            )


def _check_target(scope: Scope, *, name: str, namespace: str, what: str) -> None:
    if scope is Scope.strict and not name:
        raise InvalidRequestError(f"{what}: strict scope needs a name (metadata.name or --name)")
    if scope is not Scope.cluster_wide and not namespace:
        raise InvalidRequestError(
            f"{what}: {scope.value} scope needs a namespace (metadata.namespace or --namespace)"
        )


def _template_metadata(
    secret: SecretManifest, *, name: str, namespace: str, scope: Scope
) -> dict[str, Any]:
    meta = {
        k: copy.deepcopy(v) for k, v in secret.metadata.items() if k not in SERVER_SIDE_METADATA
    }
    meta["name"] = name
    if namespace:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    annotations = with_scope_annotations(
        {k: v for k, v in secret.annotations.items() if k not in LAST_APPLIED_ANNOTATIONS}, scope
    )
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return meta


def seal_values(
    values: Mapping[str, Sensitive[bytes]],
    *,
    certificate: SealingCertificate,
    scope: Scope,
    name: str,
    namespace: str,
    randbytes: RandBytes = secrets.token_bytes,
) -> dict[str, str]:
    """Sealed Secrets ``encryptedData`` for ``values`` (sorted by key)."""
    label = scope_label(scope, namespace=namespace, name=name)
    return {
        key: base64.b64encode(
            hybrid_encrypt(certificate, values[key].reveal(), label=label, randbytes=randbytes)
        ).decode()
        for key in sorted(values)
    }


def _native_values(
    values: Mapping[str, Sensitive[bytes]],
    *,
    certificates: Sequence[SealingCertificate],
    scope: Scope,
    name: str,
    namespace: str,
    data_key_id: str,
    randbytes: RandBytes,
) -> tuple[list[dict[str, str]], dict[str, str]]:
    label = scope_label(scope, namespace=namespace, name=name)
    data_key = generate_data_key(randbytes=randbytes)
    recipients: list[dict[str, str]] = []
    for cert in certificates:
        if cert.has_exchange_key:
            aad = native_wrap_aad(
                scope=scope.value,
                namespace=pinned_namespace(scope, namespace),
                name=pinned_name(scope, name),
                data_key_id=data_key_id,
                key_id=cert.key_id,
            )
            ephemeral, wrapped = wrap_data_key_x25519(cert, data_key, aad=aad, randbytes=randbytes)
            recipients.append(
                {
                    "keyId": cert.key_id,
                    "ephemeralKey": base64.b64encode(ephemeral).decode(),
                    "wrappedKey": base64.b64encode(wrapped).decode(),
                }
            )
        else:
            recipients.append(
                {
                    "keyId": cert.key_id,
                    "wrappedKey": base64.b64encode(
                        wrap_data_key(cert, data_key, label=label)
                    ).decode(),
                }
            )
    encrypted: dict[str, str] = {}
    for key in sorted(values):
        aad = native_aad(
            scope=scope.value,
            namespace=pinned_namespace(scope, namespace),
            name=pinned_name(scope, name),
            key=key,
            data_key_id=data_key_id,
        )
        blob = native_encrypt_value(data_key, values[key].reveal(), aad=aad, randbytes=randbytes)
        encrypted[key] = f"{data_key_id}:{base64.b64encode(blob).decode()}"
    return recipients, encrypted


def seal_secret(
    secret: SecretManifest,
    *,
    certificates: Sequence[SealingCertificate],
    now: datetime,
    fmt: SealFormat = SealFormat.bitnami,
    scope: Scope | None = None,
    name: str | None = None,
    namespace: str | None = None,
    allow_empty_data: bool = False,
    key_id_hint: bool = True,
    randbytes: RandBytes = secrets.token_bytes,
) -> list[dict[str, Any]]:
    """Seal ``secret``; returns one SealedSecret (native) or one per certificate (bitnami).

    ``scope`` None keeps the scope the Secret's annotations declare.
    """
    name = name or secret.name
    namespace = namespace or secret.namespace
    what = (
        f"Secret {namespace}/{name or '<unnamed>'}"
        if namespace
        else f"Secret {name or '<unnamed>'}"
    )
    if not secret.data and not allow_empty_data:
        raise InvalidRequestError(
            f"{what}: data and stringData are empty; assuming this is an error (use --allow-empty-data to seal it anyway)"
        )
    if not name:
        raise InvalidRequestError(f"{what}: missing metadata.name (set it or pass --name)")
    scope = scope or scope_of(secret.annotations)
    _check_target(scope, name=name, namespace=namespace, what=what)
    check_certificates(certificates, now=now)

    template: dict[str, Any] = {
        "metadata": _template_metadata(secret, name=name, namespace=namespace, scope=scope)
    }
    if secret.type:
        template["type"] = secret.type
    if secret.immutable is not None:
        template["immutable"] = secret.immutable

    def metadata(hint: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if namespace:
            meta["namespace"] = namespace
        annotations = with_scope_annotations({}, scope)
        if hint:
            annotations[KEY_ID_ANNOTATION] = hint
        if annotations:
            meta["annotations"] = annotations
        return meta

    if fmt is SealFormat.kustos:
        recipients, encrypted = _native_values(
            secret.data,
            certificates=certificates,
            scope=scope,
            name=name,
            namespace=namespace,
            data_key_id="d1",
            randbytes=randbytes,
        )
        return [
            {
                "apiVersion": NATIVE_API_VERSION,
                "kind": "SealedSecret",
                "metadata": metadata(None),
                "spec": {
                    "template": copy.deepcopy(template),
                    "dataKeys": {"d1": recipients} if encrypted else {},
                    "encryptedData": encrypted,
                },
            }
        ]
    return [
        {
            "apiVersion": BITNAMI_API_VERSION,
            "kind": "SealedSecret",
            "metadata": metadata(cert.key_id if key_id_hint else None),
            "spec": {
                "template": copy.deepcopy(template),
                "encryptedData": seal_values(
                    secret.data,
                    certificate=cert,
                    scope=scope,
                    name=name,
                    namespace=namespace,
                    randbytes=randbytes,
                ),
            },
        }
        for cert in certificates
    ]


def seal_raw(
    value: Sensitive[bytes],
    *,
    certificate: SealingCertificate,
    now: datetime,
    scope: Scope = Scope.strict,
    name: str = "",
    namespace: str = "",
    randbytes: RandBytes = secrets.token_bytes,
) -> str:
    """``kubeseal --raw``: one base64 Sealed Secrets value for pasting into ``encryptedData``."""
    _check_target(scope, name=name, namespace=namespace, what="--raw")
    check_certificates([certificate], now=now)
    label = scope_label(scope, namespace=namespace, name=name)
    return base64.b64encode(
        hybrid_encrypt(certificate, value.reveal(), label=label, randbytes=randbytes)
    ).decode()


def _merge_map(target: dict[str, Any], key: str, update: Mapping[str, Any] | None) -> None:
    if update:
        merged = dict(target.get(key) or {})
        merged.update(update)
        target[key] = merged


def merge_into(
    existing: Mapping[str, Any],
    secret: SecretManifest,
    *,
    certificates: Sequence[SealingCertificate],
    now: datetime,
    scope: Scope | None = None,
    allow_empty_data: bool = False,
    randbytes: RandBytes = secrets.token_bytes,
) -> dict[str, Any]:
    """``kubeseal --merge-into``: seal ``secret``'s keys into ``existing``; other keys keep their bytes.

    Name, namespace and scope come from ``existing`` (a ``scope`` that
    disagrees is an error rather than values that would never unseal).
    Template labels, annotations and data are merged like kubeseal does.
    """
    fmt = format_of(existing, source="--merge-into")
    out: dict[str, Any] = copy.deepcopy(dict(existing))
    meta = out.get("metadata") or {}
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    existing_scope = scope_of(meta.get("annotations"))
    if scope is not None and scope is not existing_scope:
        raise InvalidRequestError(
            f"{describe(existing)} has scope {existing_scope.value}; cannot merge values sealed with scope {scope.value}"
        )
    if fmt is SealFormat.bitnami and len(certificates) != 1:
        raise InvalidRequestError(
            "--merge-into a bitnami.com/v1alpha1 SealedSecret takes exactly one --cert"
        )
    update = seal_secret(
        secret,
        certificates=certificates,
        now=now,
        fmt=fmt,
        scope=existing_scope,
        name=name,
        namespace=namespace,
        allow_empty_data=allow_empty_data,
        randbytes=randbytes,
    )[0]
    spec = out.setdefault("spec", {})
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    update_meta = update["spec"]["template"].get("metadata") or {}
    _merge_map(template_meta, "annotations", update_meta.get("annotations"))
    _merge_map(template_meta, "labels", update_meta.get("labels"))
    encrypted = dict(spec.get("encryptedData") or {})
    if fmt is SealFormat.kustos:
        data_keys: dict[str, Any] = dict(spec.get("dataKeys") or {})
        numbers = [int(k[1:]) for k in data_keys if k.startswith("d") and k[1:].isdigit()]
        new_id = f"d{max(numbers, default=0) + 1}"
        recipients, values = _native_values(
            secret.data,
            certificates=certificates,
            scope=existing_scope,
            name=name,
            namespace=namespace,
            data_key_id=new_id,
            randbytes=randbytes,
        )
        encrypted.update(values)
        if values:
            data_keys[new_id] = recipients
        used = {str(v).split(":", 1)[0] for v in encrypted.values()}
        spec["dataKeys"] = {k: v for k, v in data_keys.items() if k in used}
    else:
        encrypted.update(update["spec"]["encryptedData"])
    spec["encryptedData"] = encrypted
    return out
