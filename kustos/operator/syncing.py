"""ExternalSecret reconciliation: from a spec and a provider to a Secret, as pure steps.

The steps, each tested on its own:

1. :func:`parse_spec` turns ``spec`` into an :class:`ExternalSecretSpec`
   (invalid specs raise ``InvalidRequestError`` naming the field);
2. :func:`fetch_data` asks the :class:`~kustos.operator.providers.Provider`
   for ``data[]`` and ``dataFrom[]`` (the only I/O here, through the provider);
3. :func:`desired_secret` applies ``decodingStrategy``, ``rewrite`` and the
   template;
4. :func:`plan_secret` compares the desired Secret with the one in the
   cluster under ``creationPolicy`` and returns what to write (nothing, a
   create, or a merge patch that also reverts hand edits);
5. :func:`plan_deletion` decides what ``deletionPolicy`` does when the remote
   data is gone; :func:`ready_condition` builds the status condition.

The controller in :mod:`kustos.operator.controllers` strings them together.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kustos.errors import InvalidRequestError
from kustos.kube import Body
from kustos.operator.providers.base import FindSpec, Provider, RemoteRef
from kustos.operator.templating import render_templates
from kustos.sensitive import Sensitive

__all__ = [
    "ANNOTATION_DATA_HASH",
    "ANNOTATION_FORCE_SYNC",
    "DEFAULT_REFRESH",
    "LABEL_MANAGED",
    "CreationPolicy",
    "DeletionPolicy",
    "DesiredSecret",
    "ExternalSecretSpec",
    "SecretPlan",
    "data_hash",
    "desired_secret",
    "fetch_data",
    "parse_duration",
    "parse_spec",
    "plan_deletion",
    "plan_secret",
    "ready_condition",
    "remote_keys",
]

LABEL_MANAGED: Final = "reconcile.external-secrets.io/managed"
ANNOTATION_DATA_HASH: Final = "reconcile.external-secrets.io/data-hash"
ANNOTATION_FORCE_SYNC: Final = "force-sync"
DEFAULT_REFRESH: Final = 3600.0

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class CreationPolicy(enum.StrEnum):
    """``target.creationPolicy``."""

    OWNER = "Owner"
    ORPHAN = "Orphan"
    MERGE = "Merge"
    NONE = "None"


class DeletionPolicy(enum.StrEnum):
    """``target.deletionPolicy``: what happens when the remote data is gone."""

    RETAIN = "Retain"
    DELETE = "Delete"
    MERGE = "Merge"


@dataclass(frozen=True)
class DataItem:
    """``data[]``: one Secret key from one remote reference."""

    secret_key: str
    ref: RemoteRef
    decoding: str = "None"


@dataclass(frozen=True)
class DataFromItem:
    """``dataFrom[]``: a whole remote map (``extract``) or a search (``find``)."""

    extract: RemoteRef | None = None
    find: FindSpec | None = None
    decoding: str = "None"
    rewrites: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ExternalSecretSpec:
    """The parts of an ExternalSecret spec the controller acts on."""

    name: str
    namespace: str
    store_name: str
    store_kind: str
    target_name: str
    creation_policy: CreationPolicy
    deletion_policy: DeletionPolicy
    refresh: float
    data: tuple[DataItem, ...] = ()
    data_from: tuple[DataFromItem, ...] = ()
    template: Mapping[str, Any] = field(default_factory=dict)
    immutable: bool = False


@dataclass(frozen=True)
class DesiredSecret:
    """What the target Secret should hold. ``repr`` never shows the data."""

    data: Mapping[str, Sensitive[bytes]]
    type: str = "Opaque"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    immutable: bool = False

    def plain(self) -> dict[str, bytes]:
        """The data revealed, for writing into the Secret body."""
        return {key: value.reveal() for key, value in self.data.items()}


@dataclass(frozen=True)
class SecretPlan:
    """What to do to the target Secret: ``action`` is none|create|patch|delete, and the body to send."""

    action: str
    body: Body = field(default_factory=dict)
    event_reason: str = ""


def parse_duration(value: object) -> float:
    """A Go duration (``1h30m``, ``15s``, ``0``) in seconds; absent means one hour."""
    if value is None or value == "":
        return DEFAULT_REFRESH
    text = str(value).strip()
    if text in ("0", "0s"):
        return 0.0
    if not text or _DURATION.sub("", text):
        raise InvalidRequestError(f"refreshInterval {text!r} is not a duration like 1h, 15m or 30s")
    return sum(float(number) * _UNITS[unit] for number, unit in _DURATION.findall(text))


def parse_spec(body: Body) -> ExternalSecretSpec:
    """Validate an ExternalSecret body; errors name the offending field."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    store = spec.get("secretStoreRef") or {}
    if not store.get("name"):
        raise InvalidRequestError("spec.secretStoreRef.name is required")
    kind = store.get("kind") or "SecretStore"
    if kind not in ("SecretStore", "ClusterSecretStore"):
        raise InvalidRequestError(
            f"spec.secretStoreRef.kind must be SecretStore or ClusterSecretStore, not {kind!r}"
        )
    target = spec.get("target") or {}
    creation_text = target.get("creationPolicy") or "Owner"
    deletion_text = target.get("deletionPolicy") or "Retain"
    if creation_text not in set(CreationPolicy):
        raise InvalidRequestError(
            f"spec.target.creationPolicy must be one of {', '.join(CreationPolicy)}, not {creation_text!r}"
        )
    if deletion_text not in set(DeletionPolicy):
        raise InvalidRequestError(
            f"spec.target.deletionPolicy must be one of {', '.join(DeletionPolicy)}, not {deletion_text!r}"
        )
    creation, deletion = CreationPolicy(creation_text), DeletionPolicy(deletion_text)
    data: list[DataItem] = []
    for index, item in enumerate(spec.get("data") or []):
        ref = item.get("remoteRef") or {}
        if not item.get("secretKey") or not ref.get("key"):
            raise InvalidRequestError(f"spec.data[{index}] needs secretKey and remoteRef.key")
        data.append(
            DataItem(
                secret_key=item["secretKey"],
                ref=_ref(ref),
                decoding=ref.get("decodingStrategy") or "None",
            )
        )
    data_from: list[DataFromItem] = []
    for index, item in enumerate(spec.get("dataFrom") or []):
        rewrites = tuple(
            (str(rw["regexp"].get("source", "")), str(rw["regexp"].get("target", "")))
            for rw in item.get("rewrite") or []
            if isinstance(rw.get("regexp"), dict)
        )
        if item.get("extract"):
            extract = item["extract"]
            if not extract.get("key"):
                raise InvalidRequestError(f"spec.dataFrom[{index}].extract.key is required")
            data_from.append(
                DataFromItem(
                    extract=_ref(extract),
                    decoding=extract.get("decodingStrategy") or "None",
                    rewrites=rewrites,
                )
            )
        elif item.get("find") is not None:
            find = item["find"]
            regexp = (find.get("name") or {}).get("regexp") or ""
            try:
                re.compile(regexp)
            except re.error:
                raise InvalidRequestError(
                    f"spec.dataFrom[{index}].find.name.regexp is not a valid regular expression"
                ) from None
            data_from.append(
                DataFromItem(
                    find=FindSpec(
                        path=find.get("path") or "",
                        name_regexp=regexp,
                        tags=dict(find.get("tags") or {}),
                    ),
                    decoding=find.get("decodingStrategy") or "None",
                    rewrites=rewrites,
                )
            )
        else:
            raise InvalidRequestError(f"spec.dataFrom[{index}] needs extract or find")
    if not data and not data_from and not (target.get("template") or {}).get("data"):
        raise InvalidRequestError("spec needs data, dataFrom or target.template.data")
    return ExternalSecretSpec(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        store_name=store["name"],
        store_kind=kind,
        target_name=target.get("name") or meta.get("name", ""),
        creation_policy=creation,
        deletion_policy=deletion,
        refresh=parse_duration(spec.get("refreshInterval")),
        data=tuple(data),
        data_from=tuple(data_from),
        template=dict(target.get("template") or {}),
        immutable=bool(target.get("immutable")),
    )


async def fetch_data(spec: ExternalSecretSpec, provider: Provider) -> dict[str, Sensitive[bytes]]:
    """Read everything ``data`` and ``dataFrom`` ask for; later entries win on key clashes."""
    out: dict[str, Sensitive[bytes]] = {}
    for item in spec.data_from:
        if item.extract is not None:
            fetched = await provider.get_map(item.extract)
        elif item.find is not None:
            fetched = {
                _find_key(name): value for name, value in (await provider.find(item.find)).items()
            }
        else:
            continue
        for key, value in fetched.items():
            out[_rewrite(key, item.rewrites)] = _decode(value, item.decoding, key=key)
    for data_item in spec.data:
        out[data_item.secret_key] = _decode(
            await provider.get(data_item.ref), data_item.decoding, key=data_item.secret_key
        )
    return out


def desired_secret(spec: ExternalSecretSpec, data: Mapping[str, Sensitive[bytes]]) -> DesiredSecret:
    """Apply ``target.template`` (type, metadata, data with ``mergePolicy``)."""
    template = spec.template
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    result = dict(data)
    if template.get("data"):
        rendered = render_templates(
            template["data"], data={key: value.reveal() for key, value in data.items()}
        )
        templated = {key: Sensitive(value) for key, value in rendered.items()}
        result = {**data, **templated} if template.get("mergePolicy") == "Merge" else templated
    return DesiredSecret(
        data=result,
        type=str(template.get("type") or "Opaque"),
        labels=labels,
        annotations=annotations,
        immutable=spec.immutable,
    )


def data_hash(data: Mapping[str, bytes]) -> str:
    """The data-hash annotation: SHA-256 over the sorted keys and values (on the Secret itself)."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(len(key).to_bytes(4, "big") + key.encode())
        digest.update(len(data[key]).to_bytes(8, "big") + data[key])
    return digest.hexdigest()[:56]


def plan_secret(
    *, spec: ExternalSecretSpec, owner: Body, existing: Body | None, desired: DesiredSecret
) -> SecretPlan:
    """What to write so the target Secret matches ``desired`` under ``creationPolicy``.

    A hand edit shows up as a difference between ``existing`` and ``desired``
    and is reverted by the patch (keys added by hand are removed unless the
    policy is Merge).
    """
    if spec.creation_policy is CreationPolicy.NONE:
        return SecretPlan("none")
    plain = desired.plain()
    encoded = {key: base64.b64encode(value).decode() for key, value in plain.items()}
    digest = data_hash(plain)
    labels = {**desired.labels, LABEL_MANAGED: "true"}
    annotations = {**desired.annotations, ANNOTATION_DATA_HASH: digest}
    if existing is None:
        if spec.creation_policy is CreationPolicy.MERGE:
            raise InvalidRequestError(
                f"target secret {spec.target_name!r} does not exist and creationPolicy is Merge"
            )
        metadata: Body = {
            "name": spec.target_name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": annotations,
        }
        if spec.creation_policy is CreationPolicy.OWNER:
            metadata["ownerReferences"] = [_owner_reference(owner)]
        body: Body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": desired.type,
            "data": encoded,
        }
        if desired.immutable:
            body["immutable"] = True
        return SecretPlan("create", body, "Created")
    meta = existing.get("metadata") or {}
    if spec.creation_policy is CreationPolicy.OWNER:
        for reference in meta.get("ownerReferences") or []:
            if reference.get("controller") and reference.get("uid") != owner.get(
                "metadata", {}
            ).get("uid"):
                raise InvalidRequestError(
                    f"target secret {spec.target_name!r} is owned by {reference.get('kind')} {reference.get('name')!r}"
                )
    current = existing.get("data") or {}
    if spec.creation_policy is CreationPolicy.MERGE:
        wanted_data: dict[str, str | None] = dict(encoded)
    else:
        wanted_data = {**dict.fromkeys(current), **encoded}  # keys not wanted -> None (removed)
    patch_data = {key: value for key, value in wanted_data.items() if current.get(key) != value}
    patch_meta: Body = {}
    current_labels = meta.get("labels") or {}
    current_annotations = meta.get("annotations") or {}
    wanted_labels = labels if spec.creation_policy is not CreationPolicy.MERGE else {}
    if any(current_labels.get(k) != v for k, v in wanted_labels.items()):
        patch_meta["labels"] = wanted_labels
    if any(current_annotations.get(k) != v for k, v in annotations.items()):
        patch_meta["annotations"] = annotations
    if spec.creation_policy is CreationPolicy.OWNER and not _owned_by(meta, owner):
        patch_meta["ownerReferences"] = [
            *(meta.get("ownerReferences") or []),
            _owner_reference(owner),
        ]
    patch: Body = {}
    if patch_data:
        patch["data"] = patch_data
    if patch_meta:
        patch["metadata"] = patch_meta
    if (
        spec.creation_policy is not CreationPolicy.MERGE
        and existing.get("type", "Opaque") != desired.type
    ):
        patch["type"] = desired.type
    if not patch:
        return SecretPlan("none")
    return SecretPlan("patch", patch, "Updated" if patch_data or "type" in patch else "")


def plan_deletion(
    *, spec: ExternalSecretSpec, existing: Body | None, managed_keys: list[str]
) -> SecretPlan:
    """``deletionPolicy`` when the remote data is gone: keep, delete, or drop our keys."""
    if existing is None or spec.deletion_policy is DeletionPolicy.RETAIN:
        return SecretPlan("none")
    if spec.creation_policy is CreationPolicy.NONE:
        return SecretPlan("none")
    labels = (existing.get("metadata") or {}).get("labels") or {}
    if spec.deletion_policy is DeletionPolicy.DELETE and labels.get(LABEL_MANAGED) == "true":
        return SecretPlan("delete", {}, "Deleted")
    current = existing.get("data") or {}
    drop = {key: None for key in managed_keys if key in current}
    if spec.deletion_policy is DeletionPolicy.MERGE and drop:
        return SecretPlan(
            "patch",
            {"data": drop, "metadata": {"annotations": {ANNOTATION_DATA_HASH: None}}},
            "Deleted",
        )
    return SecretPlan("none")


def ready_condition(
    *, status: str, reason: str, message: str, previous: list[Body], now: datetime.datetime
) -> Body:
    """A ``Ready`` condition; ``lastTransitionTime`` moves only when the status changes."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    for condition in previous:
        if condition.get("type") == "Ready" and condition.get("status") == status:
            stamp = condition.get("lastTransitionTime") or stamp
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp,
    }


def _ref(raw: Mapping[str, Any]) -> RemoteRef:
    return RemoteRef(
        key=str(raw["key"]),
        property=str(raw.get("property") or ""),
        version=str(raw.get("version") or ""),
    )


def _find_key(name: str) -> str:
    # Secret keys allow [-._a-zA-Z0-9]; External Secrets maps "/" to "_" the same way.
    return re.sub(r"[^-._a-zA-Z0-9]", "_", name)


def _rewrite(key: str, rewrites: tuple[tuple[str, str], ...]) -> str:
    for source, target in rewrites:
        key = re.sub(source, target.replace("$", "\\"), key)
    return key


def _decode(value: Sensitive[bytes], strategy: str, *, key: str) -> Sensitive[bytes]:
    raw = value.reveal()
    try:
        if strategy == "Base64":
            return Sensitive(base64.b64decode(raw, validate=True))
        if strategy == "Base64URL":
            return Sensitive(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
        if strategy == "Auto":
            try:
                return Sensitive(base64.b64decode(raw, validate=True))
            except binascii.Error:
                return value
    except binascii.Error:
        raise InvalidRequestError(f"value for key {key!r} is not valid {strategy}") from None
    return value


def _owner_reference(owner: Body) -> Body:
    meta = owner.get("metadata") or {}
    return {
        "apiVersion": owner.get("apiVersion", "kustos.io/v1"),
        "kind": owner.get("kind", "ExternalSecret"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned_by(meta: Mapping[str, Any], owner: Body) -> bool:
    uid = owner.get("metadata", {}).get("uid")
    return any(reference.get("uid") == uid for reference in meta.get("ownerReferences") or [])


def remote_keys(spec: ExternalSecretSpec) -> tuple[frozenset[str], tuple[str, ...]]:
    """The remote keys a spec reads (``data``, ``dataFrom.extract``) and the prefixes it searches (``find``).

    A pushing provider's change notice names keys the same way (slashes
    trimmed), so the controller can tell which ExternalSecrets to reconcile.
    """
    keys = {item.ref.key.strip("/") for item in spec.data}
    keys.update(item.extract.key.strip("/") for item in spec.data_from if item.extract is not None)
    prefixes = tuple(item.find.path.strip("/") for item in spec.data_from if item.find is not None)
    return frozenset(keys), prefixes


def status_fingerprint(body: Body) -> str:
    """What makes a new reconcile necessary: the spec and the force-sync annotation."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    payload = {
        "spec": body.get("spec") or {},
        "force": annotations.get(ANNOTATION_FORCE_SYNC),
        "uid": meta.get("uid"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
