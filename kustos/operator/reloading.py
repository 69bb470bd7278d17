"""Reloader: roll the workloads that use a Secret or ConfigMap when its data changes.

Pure functions, no I/O: the kopf handlers in :mod:`kustos.operator.handlers`
feed them the changed object and the workloads of its namespace, and send the
patches they return. Manifests written for Stakater Reloader carry over:

- workload annotations ``reloader.stakater.com/auto: "true"`` (every Secret and
  ConfigMap the pod template references), ``secret.reloader.stakater.com/auto``
  and ``configmap.reloader.stakater.com/auto`` (one kind only),
  ``secret.reloader.stakater.com/reload: "a,b"`` and
  ``configmap.reloader.stakater.com/reload`` (by name), and
  ``reloader.stakater.com/search: "true"`` (every source annotated
  ``reloader.stakater.com/match: "true"``);
- ``reloader.stakater.com/ignore: "true"`` on a Secret or ConfigMap makes the
  Reloader ignore it;
- Stakater's hash: SHA-1 hex of the sorted ``key=value`` strings joined by
  ``;`` (ConfigMap ``binaryData`` values in base64);
- the ``env-vars`` strategy sets ``STAKATER_<NAME>_SECRET=<hash>`` (or
  ``_CONFIGMAP``) on the containers that use the source; the ``annotations``
  strategy sets ``reloader.stakater.com/last-reloaded-from`` on the pod template.

A workload whose recorded hash already equals the new one is not patched, so
an operator restart with unchanged data patches nothing.
"""

from __future__ import annotations

import base64
import copy
import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kustos.kube import Body

__all__ = [
    "ANNOTATION_AUTO",
    "ANNOTATION_CONFIGMAP_RELOAD",
    "ANNOTATION_HASHES",
    "ANNOTATION_IGNORE",
    "ANNOTATION_LAST_RELOADED_FROM",
    "ANNOTATION_MATCH",
    "ANNOTATION_SEARCH",
    "ANNOTATION_SECRET_RELOAD",
    "Reload",
    "SourceKind",
    "Strategy",
    "configmap_hash",
    "env_var_name",
    "plan_reloads",
    "recorded_hash",
    "referenced_sources",
    "secret_hash",
    "source_hash",
    "wants_reload",
]

ANNOTATION_AUTO: Final = "reloader.stakater.com/auto"
ANNOTATION_SECRET_AUTO: Final = "secret.reloader.stakater.com/auto"  # noqa: S105 (a name, not a password)
ANNOTATION_CONFIGMAP_AUTO: Final = "configmap.reloader.stakater.com/auto"
ANNOTATION_SECRET_RELOAD: Final = "secret.reloader.stakater.com/reload"  # noqa: S105 (a name, not a password)
ANNOTATION_CONFIGMAP_RELOAD: Final = "configmap.reloader.stakater.com/reload"
ANNOTATION_SEARCH: Final = "reloader.stakater.com/search"
ANNOTATION_MATCH: Final = "reloader.stakater.com/match"
ANNOTATION_IGNORE: Final = "reloader.stakater.com/ignore"
ANNOTATION_LAST_RELOADED_FROM: Final = "reloader.stakater.com/last-reloaded-from"
ANNOTATION_HASHES: Final = "reloader.kustos.io/hashes"
"""Pod-template annotation (annotations strategy): JSON ``{"secret/<name>": hash}`` of every source applied."""


class SourceKind(enum.StrEnum):
    """What changed: a Secret or a ConfigMap."""

    SECRET = "secret"  # noqa: S105 (a kind, not a password)
    CONFIGMAP = "configmap"


class Strategy(enum.StrEnum):
    """How a workload is rolled (Stakater's ``--reload-strategy``)."""

    ENV_VARS = "env-vars"
    ANNOTATIONS = "annotations"


@dataclass(frozen=True)
class Reload:
    """One workload to patch: ``kind``/``name`` and the merge patch to send."""

    kind: str
    name: str
    namespace: str
    patch: Body


def secret_hash(data: Mapping[str, bytes]) -> str:
    """Stakater's hash of a Secret's decoded ``data``."""
    return _sha1_of(sorted(key.encode() + b"=" + value for key, value in data.items()))


def configmap_hash(data: Mapping[str, str], binary_data: Mapping[str, bytes] | None = None) -> str:
    """Stakater's hash of a ConfigMap (``binaryData`` values in standard base64)."""
    values = [f"{key}={value}".encode() for key, value in data.items()]
    values += [
        key.encode() + b"=" + base64.b64encode(value) for key, value in (binary_data or {}).items()
    ]
    return _sha1_of(sorted(values))


def source_hash(kind: SourceKind, body: Body) -> str:
    """The hash of a Secret or ConfigMap body as the API returns it."""
    if kind is SourceKind.SECRET:
        raw = body.get("data") or {}
        return secret_hash({key: base64.b64decode(value or "") for key, value in raw.items()})
    binary = {
        key: base64.b64decode(value or "") for key, value in (body.get("binaryData") or {}).items()
    }
    return configmap_hash(body.get("data") or {}, binary)


def env_var_name(*, kind: SourceKind, name: str) -> str:
    """``STAKATER_<NAME>_SECRET``: runs of non-alphanumerics become one ``_``, upper case."""
    out: list[str] = []
    last_valid = False
    for char in name.upper():
        if ("A" <= char <= "Z") or ("0" <= char <= "9"):
            out.append(char)
            last_valid = True
        else:
            if last_valid:
                out.append("_")
            last_valid = False
    return f"STAKATER_{''.join(out)}_{kind.value.upper()}"


def referenced_sources(pod_spec: Mapping[str, Any]) -> dict[tuple[SourceKind, str], list[str]]:
    """Every Secret/ConfigMap the pod spec uses, with the containers that use it.

    Volumes (``secret``, ``configMap``, ``projected``) count for the containers
    that mount them; ``env[].valueFrom`` and ``envFrom`` for their container.
    """
    volumes: dict[str, set[tuple[SourceKind, str]]] = {}
    for volume in pod_spec.get("volumes") or []:
        refs: set[tuple[SourceKind, str]] = set()
        if volume.get("secret", {}).get("secretName"):
            refs.add((SourceKind.SECRET, volume["secret"]["secretName"]))
        if volume.get("configMap", {}).get("name"):
            refs.add((SourceKind.CONFIGMAP, volume["configMap"]["name"]))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if source.get("secret", {}).get("name"):
                refs.add((SourceKind.SECRET, source["secret"]["name"]))
            if source.get("configMap", {}).get("name"):
                refs.add((SourceKind.CONFIGMAP, source["configMap"]["name"]))
        volumes[volume.get("name", "")] = refs
    found: dict[tuple[SourceKind, str], list[str]] = {}
    containers = list(pod_spec.get("containers") or []) + list(pod_spec.get("initContainers") or [])
    for container in containers:
        cname = container.get("name", "")
        refs = set()
        for mount in container.get("volumeMounts") or []:
            refs |= volumes.get(mount.get("name", ""), set())
        for env in container.get("env") or []:
            value_from = env.get("valueFrom") or {}
            if value_from.get("secretKeyRef", {}).get("name"):
                refs.add((SourceKind.SECRET, value_from["secretKeyRef"]["name"]))
            if value_from.get("configMapKeyRef", {}).get("name"):
                refs.add((SourceKind.CONFIGMAP, value_from["configMapKeyRef"]["name"]))
        for env_from in container.get("envFrom") or []:
            if env_from.get("secretRef", {}).get("name"):
                refs.add((SourceKind.SECRET, env_from["secretRef"]["name"]))
            if env_from.get("configMapRef", {}).get("name"):
                refs.add((SourceKind.CONFIGMAP, env_from["configMapRef"]["name"]))
        for ref in refs:
            found.setdefault(ref, []).append(cname)
    for volume_refs in volumes.values():  # a volume nobody mounts still counts (no container)
        for ref in volume_refs:
            found.setdefault(ref, [])
    return found


def wants_reload(
    workload: Body, *, kind: SourceKind, name: str, source_annotations: Mapping[str, str]
) -> bool:
    """Does this workload's Reloader annotation select the Secret/ConfigMap ``name``?"""
    if _true(source_annotations.get(ANNOTATION_IGNORE)):
        return False
    annotations = _workload_annotations(workload)
    explicit = (
        ANNOTATION_SECRET_RELOAD if kind is SourceKind.SECRET else ANNOTATION_CONFIGMAP_RELOAD
    )
    if name in _names(annotations.get(explicit, "")):
        return True
    if (kind, name) not in referenced_sources(_pod_spec(workload)):
        return False  # auto and search act only on what the pod template uses
    kind_auto = ANNOTATION_SECRET_AUTO if kind is SourceKind.SECRET else ANNOTATION_CONFIGMAP_AUTO
    if _true(annotations.get(ANNOTATION_AUTO)) or _true(annotations.get(kind_auto)):
        return True
    return _true(annotations.get(ANNOTATION_SEARCH)) and _true(
        source_annotations.get(ANNOTATION_MATCH)
    )


def recorded_hash(workload: Body, *, kind: SourceKind, name: str, strategy: Strategy) -> str | None:
    """The hash of ``name`` this workload was last rolled for, if any."""
    template = workload.get("spec", {}).get("template", {})
    if strategy is Strategy.ENV_VARS:
        var = env_var_name(kind=kind, name=name)
        for container in template.get("spec", {}).get("containers") or []:
            for env in container.get("env") or []:
                if env.get("name") == var and "value" in env:
                    return str(env["value"])
        return None
    hashes = _json_object(
        template.get("metadata", {}).get("annotations", {}).get(ANNOTATION_HASHES)
    )
    value = hashes.get(f"{kind.value}/{name}")
    return value if isinstance(value, str) else None


def plan_reloads(
    *,
    kind: SourceKind,
    source: Body,
    new_hash: str,
    previous_hash: str | None,
    workloads: Iterable[Body],
    strategy: Strategy,
    now: int,
) -> list[Reload]:
    """The workloads to roll because ``source`` now hashes to ``new_hash``.

    ``previous_hash`` is the hash this operator process saw last for the
    source (``None`` when it sees it for the first time, e.g. after a
    restart). Then only workloads that already record a *different* hash are
    rolled (the data changed while the operator was away); workloads with no
    record are left alone, like Stakater with ``--reload-on-create=false``.
    ``now`` (Unix seconds) goes into ``last-reloaded-from``.
    """
    if previous_hash == new_hash:
        return []
    meta = source.get("metadata", {})
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    annotations = meta.get("annotations") or {}
    reloads: list[Reload] = []
    for workload in workloads:
        if workload.get("metadata", {}).get("namespace", namespace) != namespace:
            continue
        if not wants_reload(workload, kind=kind, name=name, source_annotations=annotations):
            continue
        recorded = recorded_hash(workload, kind=kind, name=name, strategy=strategy)
        if recorded == new_hash or (previous_hash is None and recorded is None):
            continue
        patch = _patch(
            workload,
            kind=kind,
            name=name,
            namespace=namespace,
            new_hash=new_hash,
            strategy=strategy,
            now=now,
        )
        reloads.append(
            Reload(
                kind=workload.get("kind", ""),
                name=workload["metadata"]["name"],
                namespace=namespace,
                patch=patch,
            )
        )
    return reloads


def _patch(
    workload: Body,
    *,
    kind: SourceKind,
    name: str,
    namespace: str,
    new_hash: str,
    strategy: Strategy,
    now: int,
) -> Body:
    template = workload.get("spec", {}).get("template", {})
    refs = referenced_sources(_pod_spec(workload)).get((kind, name)) or []
    source_info = {
        "type": kind.value.upper(),
        "name": name,
        "namespace": namespace,
        "hash": new_hash,
        "containerRefs": sorted(set(refs)),
        "observedAt": now,
    }
    if strategy is Strategy.ANNOTATIONS:
        hashes = _json_object(
            template.get("metadata", {}).get("annotations", {}).get(ANNOTATION_HASHES)
        )
        hashes[f"{kind.value}/{name}"] = new_hash
        annotations = {
            ANNOTATION_LAST_RELOADED_FROM: json.dumps(source_info, separators=(",", ":")),
            ANNOTATION_HASHES: json.dumps(dict(sorted(hashes.items())), separators=(",", ":")),
        }
        return {"spec": {"template": {"metadata": {"annotations": annotations}}}}
    # env-vars: a merge patch replaces the whole containers list, so send all of it.
    containers = copy.deepcopy(template.get("spec", {}).get("containers") or [])
    targets = set(refs) or ({containers[0].get("name")} if containers else set())
    var = env_var_name(kind=kind, name=name)
    for container in containers:
        if container.get("name") not in targets:
            continue
        env = [item for item in container.get("env") or [] if item.get("name") != var]
        env.append({"name": var, "value": new_hash})
        container["env"] = env
    return {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        ANNOTATION_LAST_RELOADED_FROM: json.dumps(
                            source_info, separators=(",", ":")
                        )
                    }
                },
                "spec": {"containers": containers},
            }
        }
    }


def _sha1_of(values: list[bytes]) -> str:
    return hashlib.sha1(b";".join(values), usedforsecurity=False).hexdigest()


def _pod_spec(workload: Body) -> Mapping[str, Any]:
    spec: Mapping[str, Any] = workload.get("spec", {}).get("template", {}).get("spec", {}) or {}
    return spec


def _workload_annotations(workload: Body) -> dict[str, str]:
    # Stakater reads the workload's annotations, then the pod template's.
    template = (
        workload.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
    )
    own = workload.get("metadata", {}).get("annotations") or {}
    return {**template, **own}


def _names(value: str) -> set[str]:
    return {part.strip() for part in re.split(r"[,\s]+", value) if part.strip()}


def _true(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() == "true"


def _json_object(value: object) -> dict[str, Any]:
    if not isinstance(value, str):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
