"""ClusterExternalSecret: one ExternalSecret in every namespace a cluster admin selects.

``external-secrets.io/v1`` ClusterExternalSecret, as in External Secrets:
``spec.externalSecretSpec`` is copied into an ExternalSecret named
``spec.externalSecretName`` (default: the ClusterExternalSecret's name),
with ``spec.externalSecretMetadata`` labels and annotations (and its
``force-sync`` annotation), in each namespace that ``spec.namespaces`` names
or that one of ``spec.namespaceSelectors`` (or the older single
``namespaceSelector``) selects. ``status`` reports ``externalSecretName``,
``provisionedNamespaces``, ``failedNamespaces`` (``{namespace, reason}``)
and a ``Ready`` condition.

Each ExternalSecret it makes has the ClusterExternalSecret as its
controlling owner, so:

- a namespace that stops matching (or a changed ``externalSecretName``) has
  its ExternalSecret deleted by the controller;
- deleting the ClusterExternalSecret deletes them all by Kubernetes' garbage
  collection (then their Secrets, owned by them): no finalizer is put on
  the ClusterExternalSecret or on namespaces (External Secrets puts both);
- an ExternalSecret edited or deleted by hand is put back;
- an ExternalSecret of that name that something else owns is left alone
  and its namespace is reported failed (``external secret already exists in
  namespace``).

The pure steps (:func:`parse_cluster_spec`, :func:`target_namespaces`,
:func:`desired_external_secret`, :func:`merge_patch`) are tested on their
own; :class:`ClusterExternalSecretController` does the I/O, on the
namespaces and ExternalSecrets the watches show (it lists nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kustos.errors import InvalidRequestError, KustosError, NotFoundError
from kustos.kube import Body, ConflictError, KubeClient, Resource
from kustos.operator.selecting import Namespaces, selector_matches, validate_selector
from kustos.operator.syncing import ANNOTATION_FORCE_SYNC, ESO_GROUP, parse_duration

__all__ = [
    "CLUSTER_EXTERNAL_SECRETS",
    "ESO_EXTERNAL_SECRETS",
    "ClusterExternalSecretController",
    "ClusterSpec",
    "desired_external_secret",
    "merge_patch",
    "owned_by",
    "parse_cluster_spec",
    "target_namespaces",
]

CLUSTER_EXTERNAL_SECRETS: Final = Resource(
    ESO_GROUP, "v1", "clusterexternalsecrets", "ClusterExternalSecret", namespaced=False
)
ESO_EXTERNAL_SECRETS: Final = Resource(ESO_GROUP, "v1", "externalsecrets", "ExternalSecret")
_ESO_FORCE_SYNC: Final = "external-secrets.io/force-sync"
_ALREADY_EXISTS: Final = "external secret already exists in namespace"

_log = logging.getLogger("kustos.operator")


@dataclass(frozen=True)
class ClusterSpec:
    """The parts of a ClusterExternalSecret the controller acts on."""

    name: str
    uid: str
    external_secret_name: str
    external_secret_spec: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    selectors: tuple[Mapping[str, Any], ...] = ()
    namespaces: tuple[str, ...] = ()
    refresh: float = 3600.0


def parse_cluster_spec(body: Body) -> ClusterSpec:
    """Validate a ClusterExternalSecret; errors name the field."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    es_spec = spec.get("externalSecretSpec")
    if not isinstance(es_spec, Mapping) or not es_spec:
        raise InvalidRequestError("spec.externalSecretSpec is required")
    selectors: list[Mapping[str, Any]] = []
    if isinstance(spec.get("namespaceSelector"), Mapping):
        validate_selector(spec["namespaceSelector"], where="spec.namespaceSelector")
        selectors.append(spec["namespaceSelector"])
    for index, selector in enumerate(spec.get("namespaceSelectors") or []):
        if isinstance(selector, Mapping):
            validate_selector(selector, where=f"spec.namespaceSelectors[{index}]")
            selectors.append(selector)
    metadata = spec.get("externalSecretMetadata") or {}
    annotations = {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}
    own_annotations = meta.get("annotations") or {}
    for force in (_ESO_FORCE_SYNC, ANNOTATION_FORCE_SYNC):
        if force in own_annotations:
            annotations[force] = str(own_annotations[force])
    return ClusterSpec(
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        external_secret_name=str(spec.get("externalSecretName") or meta.get("name") or ""),
        external_secret_spec=dict(es_spec),
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        annotations=annotations,
        selectors=tuple(selectors),
        namespaces=tuple(str(n) for n in spec.get("namespaces") or []),
        refresh=parse_duration(spec.get("refreshTime")),
    )


def target_namespaces(spec: ClusterSpec, namespaces: Namespaces) -> list[str]:
    """The namespaces that get the ExternalSecret: named ones that exist, and selected ones."""
    out = set()
    for name in namespaces.active():
        labels = namespaces.labels(name) or {}
        if name in spec.namespaces or any(selector_matches(s, labels) for s in spec.selectors):
            out.add(name)
    return sorted(out)


def owned_by(body: Body | None, spec_name: str) -> bool:
    """Whether ``body``'s controlling owner is the ClusterExternalSecret ``spec_name``."""
    for reference in ((body or {}).get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("controller"):
            group = str(reference.get("apiVersion") or "").partition("/")[0]
            return (
                group == ESO_GROUP
                and reference.get("kind") == "ClusterExternalSecret"
                and reference.get("name") == spec_name
            )
    return False


def desired_external_secret(spec: ClusterSpec, namespace: str) -> Body:
    """The ExternalSecret ``spec`` wants in ``namespace``."""
    return {
        "apiVersion": ESO_EXTERNAL_SECRETS.api_version,
        "kind": "ExternalSecret",
        "metadata": {
            "name": spec.external_secret_name,
            "namespace": namespace,
            "labels": dict(spec.labels),
            "annotations": dict(spec.annotations),
            "ownerReferences": [
                {
                    "apiVersion": CLUSTER_EXTERNAL_SECRETS.api_version,
                    "kind": "ClusterExternalSecret",
                    "name": spec.name,
                    "uid": spec.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": json.loads(json.dumps(spec.external_secret_spec)),
    }


def merge_patch(current: Any, desired: Any) -> Any:
    """A JSON merge patch (RFC 7386) turning ``current`` into ``desired``; ``{}`` when equal.

    Keys of ``current`` that ``desired`` lacks become ``None`` (removed).
    """
    if not isinstance(current, Mapping) or not isinstance(desired, Mapping):
        return desired
    patch: dict[str, Any] = {}
    for key in current:
        if key not in desired:
            patch[key] = None
    for key, value in desired.items():
        if key not in current:
            patch[key] = value
        elif isinstance(value, Mapping) and isinstance(current[key], Mapping):
            inner = merge_patch(current[key], value)
            if inner:
                patch[key] = inner
        elif current[key] != value:
            patch[key] = value
    return patch


def _fingerprint(body: Body) -> str:
    meta = body.get("metadata") or {}
    payload = {
        "spec": body.get("spec"),
        "annotations": meta.get("annotations"),
        "uid": meta.get("uid"),
        "deleting": bool(meta.get("deletionTimestamp")),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class ClusterExternalSecretController:
    """Keeps each ClusterExternalSecret's ExternalSecrets in their namespaces, and its status."""

    def __init__(self, *, kube: KubeClient, namespaces: Namespaces) -> None:
        self._kube = kube
        self._namespaces = namespaces
        self._bodies: dict[str, Body] = {}
        self._fingerprints: dict[str, str] = {}
        self._external_secrets: dict[tuple[str, str], Body] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._provisioned: dict[str, tuple[str, set[str]]] = {}
        """What this process provisioned last, per ClusterExternalSecret (the watch may lag)."""
        self._task: asyncio.Task[None] | None = None
        self.reconciles = 0
        namespaces.listen(lambda _name: self._enqueue_all())

    async def start(self) -> None:
        """Start the worker."""
        self._task = asyncio.create_task(self._work(), name="kustos-ces-worker")

    async def stop(self) -> None:
        """Stop the worker and the refresh timers."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- events -------------------------------------------------------------------------

    def cluster_event(self, event_type: str | None, body: Body) -> None:
        """A ClusterExternalSecret was listed, added, modified or deleted."""
        name = str((body.get("metadata") or {}).get("name") or "")
        if event_type == "DELETED":
            self._bodies.pop(name, None)
            self._fingerprints.pop(name, None)
            self._provisioned.pop(name, None)
            timer = self._timers.pop(name, None)
            if timer is not None:
                timer.cancel()
            return  # its ExternalSecrets go by garbage collection
        self._bodies[name] = body
        fingerprint = _fingerprint(body)
        if self._fingerprints.get(name) != fingerprint:
            self._fingerprints[name] = fingerprint
            self._enqueue(name)

    def external_secret_event(self, event_type: str | None, body: Body) -> None:
        """An ``external-secrets.io`` ExternalSecret changed: put back what a ClusterExternalSecret owns."""
        meta = body.get("metadata") or {}
        where = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if event_type == "DELETED":
            self._external_secrets.pop(where, None)
        else:
            self._external_secrets[where] = body
        for name in self._bodies:
            if owned_by(body, name):
                self._enqueue(name)
            elif where[1] == self._es_name(name) and event_type == "DELETED":
                self._enqueue(name)  # a foreign one went: this one may now provision there

    def _es_name(self, name: str) -> str:
        spec = (self._bodies.get(name) or {}).get("spec") or {}
        return str(spec.get("externalSecretName") or name)

    # --- scheduling ---------------------------------------------------------------------

    def _enqueue(self, name: str) -> None:
        if name not in self._queued:
            self._queued.add(name)
            self._queue.put_nowait(name)

    def _enqueue_all(self) -> None:
        for name in self._bodies:
            self._enqueue(name)

    async def _work(self) -> None:
        while True:
            name = await self._queue.get()
            self._queued.discard(name)
            try:
                delay = await self.reconcile(name)
            except Exception:
                _log.exception("reconcile of ClusterExternalSecret %s crashed", name)
                delay = 30.0
            if delay is not None and name in self._bodies:
                previous = self._timers.pop(name, None)
                if previous is not None:
                    previous.cancel()
                self._timers[name] = asyncio.get_running_loop().call_later(
                    delay, self._enqueue, name
                )

    # --- one reconcile ------------------------------------------------------------------

    async def reconcile(self, name: str) -> float | None:
        """Provision one ClusterExternalSecret; the delay until its next refresh."""
        body = self._bodies.get(name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        self.reconciles += 1
        status = body.get("status") or {}
        try:
            spec = parse_cluster_spec(body)
        except InvalidRequestError as exc:
            await self._status(body, {"conditions": [_condition(False, str(exc))]})
            return None
        failed: dict[str, str] = {}
        remembered_name, remembered = self._provisioned.get(name, ("", set()))
        previous_names = {str(status.get("externalSecretName") or ""), remembered_name} - {""}
        previous = {str(n) for n in status.get("provisionedNamespaces") or []} | remembered
        targets = target_namespaces(spec, self._namespaces)
        for previous_name in previous_names - {spec.external_secret_name}:
            for namespace in sorted(previous):
                await self._delete(spec, namespace, previous_name, failed)
        for namespace in sorted(previous):
            if namespace not in targets:
                await self._delete(spec, namespace, spec.external_secret_name, failed)
        provisioned: list[str] = []
        for namespace in targets:
            reason = await self._provision(spec, namespace)
            if reason is None:
                provisioned.append(namespace)
            else:
                failed[namespace] = reason
        self._provisioned[name] = (spec.external_secret_name, set(provisioned))
        new_status: Body = {
            "externalSecretName": spec.external_secret_name,
            "provisionedNamespaces": sorted(provisioned),
            "failedNamespaces": [{"namespace": n, "reason": failed[n]} for n in sorted(failed)],
            "conditions": [
                _condition(True)
                if not failed
                else _condition(False, "one or more namespaces failed")
            ],
        }
        await self._status(body, new_status)
        return spec.refresh or None

    async def _provision(self, spec: ClusterSpec, namespace: str) -> str | None:
        desired = desired_external_secret(spec, namespace)
        where = (namespace, spec.external_secret_name)
        existing = self._external_secrets.get(where)
        if existing is None:
            try:
                created = await self._kube.create(
                    ESO_EXTERNAL_SECRETS, body=desired, namespace=namespace
                )
                self._external_secrets[where] = created
                return None
            except ConflictError:  # created meanwhile, or not shown by the watch yet
                existing = await self._kube.get(
                    ESO_EXTERNAL_SECRETS, name=spec.external_secret_name, namespace=namespace
                )
                if existing is None:
                    return "could not create the ExternalSecret (conflict)"
            except KustosError as exc:
                return _reason(exc)
        if not owned_by(existing, spec.name):
            return _ALREADY_EXISTS
        current_meta = existing.get("metadata") or {}
        patch: Body = {}
        spec_patch = merge_patch(existing.get("spec") or {}, desired["spec"])
        if spec_patch:
            patch["spec"] = spec_patch
        meta_patch: Body = {}
        for part in ("labels", "annotations"):
            inner = merge_patch(current_meta.get(part) or {}, desired["metadata"][part])
            if inner:
                meta_patch[part] = inner
        if meta_patch:
            patch["metadata"] = meta_patch
        if not patch:
            return None
        try:
            self._external_secrets[where] = await self._kube.patch(
                ESO_EXTERNAL_SECRETS,
                name=spec.external_secret_name,
                namespace=namespace,
                patch=patch,
            )
        except NotFoundError:
            self._external_secrets.pop(where, None)
            return await self._provision(spec, namespace)
        except KustosError as exc:
            return _reason(exc)
        return None

    async def _delete(
        self, spec: ClusterSpec, namespace: str, es_name: str, failed: dict[str, str]
    ) -> None:
        where = (namespace, es_name)
        existing = self._external_secrets.get(where)
        if existing is not None and not owned_by(existing, spec.name):
            return  # not ours: never delete it
        try:
            await self._kube.delete(ESO_EXTERNAL_SECRETS, name=es_name, namespace=namespace)
            self._external_secrets.pop(where, None)
        except KustosError as exc:
            failed[namespace] = _reason(exc)

    async def _status(self, body: Body, status: Body) -> None:
        meta = body.get("metadata") or {}
        current = body.get("status") or {}
        patch = merge_patch(current, {**current, **status})
        if not patch:
            return
        try:
            updated = await self._kube.patch(
                CLUSTER_EXTERNAL_SECRETS,
                name=str(meta.get("name")),
                patch={"status": patch},
                subresource="status",
            )
        except NotFoundError:
            return
        except KustosError as exc:
            _log.warning(
                "status of ClusterExternalSecret %s not written: %s", meta.get("name"), exc
            )
            return
        name = str(meta.get("name"))
        if name in self._bodies:
            self._bodies[name] = {**self._bodies[name], "status": updated.get("status") or {}}


def _condition(ready: bool, message: str = "") -> Body:
    condition: Body = {"type": "Ready", "status": "True" if ready else "False"}
    if message:
        condition["message"] = message
    return condition


def _reason(exc: KustosError) -> str:
    return str(exc)[:300]
