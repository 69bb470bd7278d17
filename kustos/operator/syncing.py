"""ExternalSecret reconciliation: from a spec and a provider to a Secret, as pure steps.

The steps, each tested on its own:

1. :func:`parse_spec` turns ``spec`` into an :class:`ExternalSecretSpec`
   (invalid specs raise ``InvalidRequestError`` naming the field);
2. :func:`fetch_data` asks the :class:`~kustos.operator.providers.Provider`
   for ``data[]`` and ``dataFrom[]`` (the only I/O here, through the provider);
3. :func:`fetch_data` also applies, per ``dataFrom`` entry and in External
   Secrets' order, ``rewrite`` (regexp, transform), ``conversionStrategy``
   (when there is no rewrite) and ``decodingStrategy``; ``metadataPolicy:
   Fetch`` is passed to the provider with each reference;
   :func:`desired_secret` applies the template (:mod:`kustos.operator.templating`:
   Go templates for ``external-secrets.io`` objects, Jinja2 for ``kustos.io``);
4. :func:`plan_secret` compares the desired Secret with the one in the
   cluster under ``creationPolicy`` and returns what to write (nothing, a
   create, or a merge patch that also reverts hand edits);
5. :func:`plan_deletion` decides what ``deletionPolicy`` does when the remote
   data is gone; :func:`ready_condition` builds the status condition.

The controller in :mod:`kustos.operator.controllers` strings them together.
"""

from __future__ import annotations

import base64
import datetime
import enum
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kustos.errors import InvalidRequestError
from kustos.gitops.gotext import GoTemplateError, StringMap, execute, go_str, parse
from kustos.gitops.sprig import eso_functions
from kustos.kube import Body
from kustos.operator.providers.base import FindSpec, Provider, RemoteRef
from kustos.operator.templating import Engine, TemplateSources, apply_template, decode_value
from kustos.sensitive import Sensitive

__all__ = [
    "ANNOTATION_DATA_HASH",
    "ANNOTATION_FORCE_SYNC",
    "DEFAULT_REFRESH",
    "ESO_GROUP",
    "KUSTOS_GROUP",
    "LABEL_MANAGED",
    "CreationPolicy",
    "DeletionPolicy",
    "DesiredSecret",
    "ExternalSecretSpec",
    "SecretPlan",
    "convert_key",
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

KUSTOS_GROUP: Final = "kustos.io"
ESO_GROUP: Final = "external-secrets.io"
"""External Secrets' own group, served so its manifests work unchanged (``--no-eso-group`` turns it off)."""
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
    CREATE_OR_MERGE = "CreateOrMerge"
    """Create the Secret (without an owner) when it is missing, else merge into it."""


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
    null_bytes: str = "Ignore"


@dataclass(frozen=True)
class Rewrite:
    """``dataFrom[].rewrite[]``: ``regexp`` (``source`` -> ``target``) or ``transform`` (a Go template)."""

    kind: str
    source: str = ""
    target: str = ""


@dataclass(frozen=True)
class DataFromItem:
    """``dataFrom[]``: a whole remote map (``extract``) or a search (``find``)."""

    extract: RemoteRef | None = None
    find: FindSpec | None = None
    decoding: str = "None"
    rewrites: tuple[Rewrite, ...] = ()
    conversion: str = "Default"
    null_bytes: str = "Ignore"


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
    engine: Engine = Engine.JINJA
    """Go templates for ``external-secrets.io`` objects, Jinja2 for ``kustos.io`` ones."""


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


_STRATEGIES: Final = ("Auto", "Base64", "Base64URL", "None")


def _group(body: Body) -> str:
    return str(body.get("apiVersion") or f"{KUSTOS_GROUP}/v1").partition("/")[0]


def _choice(value: object, allowed: tuple[str, ...], default: str, *, where: str) -> str:
    text = str(value or default)
    if text not in allowed:
        raise InvalidRequestError(f"{where} must be one of {', '.join(allowed)}, not {text!r}")
    return text


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
    creation = CreationPolicy(
        _choice(
            target.get("creationPolicy"),
            tuple(CreationPolicy),
            "Owner",
            where="spec.target.creationPolicy",
        )
    )
    deletion = DeletionPolicy(
        _choice(
            target.get("deletionPolicy"),
            tuple(DeletionPolicy),
            "Retain",
            where="spec.target.deletionPolicy",
        )
    )
    for unsupported in ("manifest", "syncWindows"):
        if (target if unsupported == "manifest" else spec).get(unsupported):
            raise InvalidRequestError(f"spec.{'target.' if unsupported == 'manifest' else ''}"
                                      f"{unsupported} is not supported by Kustos")  # fmt: skip
    data: list[DataItem] = []
    for index, item in enumerate(spec.get("data") or []):
        ref = item.get("remoteRef") or {}
        where = f"spec.data[{index}]"
        if not item.get("secretKey") or not ref.get("key"):
            raise InvalidRequestError(f"{where} needs secretKey and remoteRef.key")
        _no_generator(item, where)
        data.append(
            DataItem(
                secret_key=item["secretKey"],
                ref=_ref(ref, where=f"{where}.remoteRef"),
                decoding=_choice(
                    ref.get("decodingStrategy"),
                    _STRATEGIES,
                    "None",
                    where=f"{where}.remoteRef.decodingStrategy",
                ),
                null_bytes=_null_bytes(ref, f"{where}.remoteRef"),
            )
        )
    data_from: list[DataFromItem] = []
    for index, item in enumerate(spec.get("dataFrom") or []):
        where = f"spec.dataFrom[{index}]"
        _no_generator(item, where)
        rewrites = tuple(_rewrite_of(rw, f"{where}.rewrite[{i}]")
                         for i, rw in enumerate(item.get("rewrite") or []))  # fmt: skip
        if item.get("extract"):
            extract = item["extract"]
            if not extract.get("key"):
                raise InvalidRequestError(f"{where}.extract.key is required")
            data_from.append(
                DataFromItem(
                    extract=_ref(extract, where=f"{where}.extract"),
                    decoding=_choice(
                        extract.get("decodingStrategy"),
                        _STRATEGIES,
                        "None",
                        where=f"{where}.extract.decodingStrategy",
                    ),
                    rewrites=rewrites,
                    conversion=_conversion(extract, f"{where}.extract"),
                    null_bytes=_null_bytes(extract, f"{where}.extract"),
                )
            )
        elif item.get("find") is not None:
            find = item["find"]
            regexp = (find.get("name") or {}).get("regexp") or ""
            try:
                re.compile(regexp)
            except re.error:
                raise InvalidRequestError(
                    f"{where}.find.name.regexp is not a valid regular expression"
                ) from None
            data_from.append(
                DataFromItem(
                    find=FindSpec(
                        path=find.get("path") or "",
                        name_regexp=regexp,
                        tags=dict(find.get("tags") or {}),
                    ),
                    decoding=_choice(
                        find.get("decodingStrategy"),
                        _STRATEGIES,
                        "None",
                        where=f"{where}.find.decodingStrategy",
                    ),
                    rewrites=rewrites,
                    conversion=_conversion(find, f"{where}.find"),
                    null_bytes=_null_bytes(find, f"{where}.find"),
                )
            )
        else:
            raise InvalidRequestError(f"{where} needs extract or find")
    template = dict(target.get("template") or {})
    engine = Engine.GO if _group(body) == ESO_GROUP else Engine.JINJA
    if engine is Engine.GO and str(template.get("engineVersion") or "v2") != "v2":
        raise InvalidRequestError(
            "spec.target.template.engineVersion must be v2 (Go templates; v1 is not supported)"
        )
    if not data and not data_from and not template.get("data") and not template.get("templateFrom"):
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
        template=template,
        immutable=bool(target.get("immutable")),
        engine=engine,
    )


def _no_generator(item: Mapping[str, Any], where: str) -> None:
    source = item.get("sourceRef") or {}
    if source.get("generatorRef") or source.get("storeRef"):
        raise InvalidRequestError(f"{where}.sourceRef is not supported by Kustos")


def _conversion(raw: Mapping[str, Any], where: str) -> str:
    return _choice(
        raw.get("conversionStrategy"),
        ("Default", "Unicode"),
        "Default",
        where=f"{where}.conversionStrategy",
    )


def _null_bytes(raw: Mapping[str, Any], where: str) -> str:
    return _choice(
        raw.get("nullBytePolicy"), ("Ignore", "Fail"), "Ignore", where=f"{where}.nullBytePolicy"
    )


def _rewrite_of(raw: Mapping[str, Any], where: str) -> Rewrite:
    regexp = raw.get("regexp")
    if isinstance(regexp, Mapping):
        source = str(regexp.get("source", ""))
        try:
            re.compile(source)
        except re.error:
            raise InvalidRequestError(
                f"{where}.regexp.source is not a valid regular expression"
            ) from None
        return Rewrite("regexp", source, str(regexp.get("target", "")))
    transform = raw.get("transform")
    if isinstance(transform, Mapping):
        text = str(transform.get("template", ""))
        parse(text, name=f"{where}.transform", functions=eso_functions())  # errors now, not later
        return Rewrite("transform", text)
    raise InvalidRequestError(f"{where} needs regexp or transform (merge is not supported)")


async def fetch_data(spec: ExternalSecretSpec, provider: Provider) -> dict[str, Sensitive[bytes]]:
    """Read everything ``data`` and ``dataFrom`` ask for; later entries win on key clashes.

    For each ``dataFrom`` entry, in External Secrets' order: the names the
    provider returned are rewritten (``rewrite``), or, without a rewrite,
    converted to valid Secret keys (``conversionStrategy``: ``Default``
    replaces each invalid character with ``_``, ``Unicode`` with ``_U<hex>_``);
    then every value is decoded (``decodingStrategy``).
    """
    out: dict[str, Sensitive[bytes]] = {}
    for index, item in enumerate(spec.data_from):
        if item.extract is not None:
            fetched = await provider.get_map(item.extract)
        elif item.find is not None:
            fetched = await provider.find(item.find)
        else:
            continue
        where = f"spec.dataFrom[{index}]"
        for name, value in fetched.items():
            key = (
                _rewrite(name, item.rewrites, where=where)
                if item.rewrites
                else convert_key(name, item.conversion)
            )
            if not _VALID_KEY.fullmatch(key):
                raise InvalidRequestError(
                    f"{where}: remote name {name!r} gives {key!r}, not a valid Secret key"
                )
            decoded = decode_value(value.reveal(), item.decoding, where=f"key {key!r}")
            _check_null_bytes(decoded, item.null_bytes, key)
            out[key] = Sensitive(decoded)
    for data_item in spec.data:
        key = data_item.secret_key
        decoded = decode_value(
            (await provider.get(data_item.ref)).reveal(), data_item.decoding, where=f"key {key!r}"
        )
        _check_null_bytes(decoded, data_item.null_bytes, key)
        out[key] = Sensitive(decoded)
    return out


_VALID_KEY: Final = re.compile(r"[-._a-zA-Z0-9]+")


def _check_null_bytes(value: bytes, policy: str, key: str) -> None:
    if policy == "Fail" and b"\0" in value:
        raise InvalidRequestError(
            f"value for key {key!r} contains null bytes and nullBytePolicy is Fail"
        )


def convert_key(name: str, strategy: str = "Default") -> str:
    """``conversionStrategy``: a remote name as a valid Secret key (letters, digits, ``-._``)."""
    out = []
    for char in name:
        if char in "-._" or unicodedata.category(char)[0] in ("L", "N"):
            out.append(char)
        elif strategy == "Unicode":
            out.append(f"_U{ord(char):04x}_")
        else:
            out.append("_")
    return "".join(out)


def desired_secret(
    spec: ExternalSecretSpec,
    data: Mapping[str, Sensitive[bytes]],
    *,
    sources: TemplateSources | None = None,
) -> DesiredSecret:
    """Apply ``target.template`` (type, metadata, ``templateFrom``, data, ``mergePolicy``).

    ``sources`` are the ConfigMaps and Secrets ``templateFrom`` names, read by
    the controller (:func:`~kustos.operator.templating.template_sources`).
    """
    if not spec.template:
        return DesiredSecret(data=dict(data), immutable=spec.immutable)
    rendered = apply_template(
        spec.template,
        {key: value.reveal() for key, value in data.items()},
        engine=spec.engine,
        sources=sources,
    )
    return DesiredSecret(
        data={key: Sensitive(value) for key, value in rendered.data.items()},
        type=rendered.type,
        labels=rendered.labels,
        annotations=rendered.annotations,
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
    merging = spec.creation_policy in (CreationPolicy.MERGE, CreationPolicy.CREATE_OR_MERGE)
    if merging:
        wanted_data: dict[str, str | None] = dict(encoded)
    else:
        wanted_data = {**dict.fromkeys(current), **encoded}  # keys not wanted -> None (removed)
    patch_data = {key: value for key, value in wanted_data.items() if current.get(key) != value}
    patch_meta: Body = {}
    current_labels = meta.get("labels") or {}
    current_annotations = meta.get("annotations") or {}
    wanted_labels = labels if not merging else {}
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
    if not merging and existing.get("type", "Opaque") != desired.type:
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


def _ref(raw: Mapping[str, Any], *, where: str) -> RemoteRef:
    return RemoteRef(
        key=str(raw["key"]),
        property=str(raw.get("property") or ""),
        version=str(raw.get("version") or ""),
        metadata_policy=_choice(
            raw.get("metadataPolicy"), ("None", "Fetch"), "None", where=f"{where}.metadataPolicy"
        ),
    )


_GO_GROUP: Final = re.compile(r"\$(?:\{(\w+)\}|(\w+)|(\$))")


def _rewrite(key: str, rewrites: tuple[Rewrite, ...], *, where: str) -> str:
    for index, rewrite in enumerate(rewrites):
        if rewrite.kind == "regexp":
            # Go's Expand: $1, ${1}, $name, ${name}; $$ is a dollar sign.
            target = _GO_GROUP.sub(
                lambda m: "$" if m.group(3) else f"\\g<{m.group(1) or m.group(2)}>",
                rewrite.target.replace("\\", "\\\\"),
            )
            try:
                key = re.sub(rewrite.source, target, key)
            except (re.error, IndexError):
                raise InvalidRequestError(
                    f"{where}.rewrite[{index}].regexp.target names a group the source lacks"
                ) from None
        else:
            template = parse(
                rewrite.source, name=f"{where}.rewrite[{index}]", functions=eso_functions()
            )
            try:
                key = execute(template, StringMap({"value": go_str(key.encode())}))
            except GoTemplateError as exc:
                raise InvalidRequestError(str(exc)) from None
    return key


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
