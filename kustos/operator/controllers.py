"""The running controllers: ExternalSecret scheduling/reconciling and the Reloader.

kopf delivers watch events to the thin handlers in
:mod:`kustos.operator.handlers`; they hand the bodies to these objects, which
keep the little state a controller needs in memory and do the I/O around the
pure steps of :mod:`kustos.operator.syncing` and
:mod:`kustos.operator.reloading`.

:class:`ExternalSecretController` keeps one entry per ExternalSecret and a
heap of due times, so a thousand objects cost one scheduler task and a small
pool of workers (not a task each), and nothing is written on the
ExternalSecret but its status: no kopf bookkeeping annotations that would make
Argo CD report drift. A reconcile runs when an object appears, when its spec
or ``force-sync`` annotation changes, when ``refreshInterval`` elapses, when
its Secret is edited or deleted by hand (drift), and after a failure (with a
growing back-off).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import heapq
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from kustos.errors import ConfigError, InvalidRequestError, KustosError, NotFoundError
from kustos.kube import SECRETS, Body, ConflictError, KubeClient, Resource
from kustos.operator.providers import Provider, ProviderRegistry
from kustos.operator.reloading import SourceKind, Strategy, plan_reloads, source_hash
from kustos.operator.syncing import (
    DeletionPolicy,
    ExternalSecretSpec,
    SecretPlan,
    data_hash,
    desired_secret,
    fetch_data,
    parse_spec,
    plan_deletion,
    plan_secret,
    ready_condition,
    remote_keys,
    status_fingerprint,
)

__all__ = [
    "CLUSTER_SECRET_STORES",
    "EXTERNAL_SECRETS",
    "SECRET_STORES",
    "ExternalSecretController",
    "Reloader",
]

EXTERNAL_SECRETS: Final = Resource("kustos.io", "v1", "externalsecrets", "ExternalSecret")
SECRET_STORES: Final = Resource("kustos.io", "v1", "secretstores", "SecretStore")
CLUSTER_SECRET_STORES: Final = Resource(
    "kustos.io", "v1", "clustersecretstores", "ClusterSecretStore", namespaced=False
)

_log = logging.getLogger("kustos.operator")

Key = tuple[str, str]


@dataclass
class _Entry:
    body: Body
    fingerprint: str
    target: str = ""
    due: float | None = None
    failures: int = 0
    written_hash: str | None = None
    managed_keys: list[str] = field(default_factory=list)
    store_key: tuple[str, str, str, str] | None = None
    remote_keys: frozenset[str] = frozenset()
    remote_prefixes: tuple[str, ...] = ()


class ExternalSecretController:
    """Keeps every ExternalSecret's Secret in sync with its store."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        providers: ProviderRegistry,
        workers: int = 8,
        retry_backoff: tuple[float, float] = (2.0, 300.0),
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(tz=datetime.UTC),
    ) -> None:
        self._kube = kube
        self._providers = providers
        self._workers = workers
        self._retry_first, self._retry_max = retry_backoff
        self._clock = clock
        self._now = now
        self._entries: dict[Key, _Entry] = {}
        self._targets: dict[Key, Key] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._again: set[Key] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._store_cache: dict[tuple[str, str, str, str], tuple[str, Provider]] = {}
        self.reconciles = 0
        """How many reconciles ran (for tests and the benchmark)."""
        self.pushes = 0
        """How many change notices pushing providers delivered."""

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler and the workers."""
        self._tasks.append(asyncio.create_task(self._schedule_loop(), name="kustos-es-scheduler"))
        for index in range(self._workers):
            self._tasks.append(
                asyncio.create_task(self._work_loop(), name=f"kustos-es-worker-{index}")
            )

    async def stop(self) -> None:
        """Stop every task and close the cached providers."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for _, provider in self._store_cache.values():
            with contextlib.suppress(Exception):
                await provider.close()
        self._store_cache.clear()

    # --- events from the handlers -----------------------------------------------

    def observe(self, body: Body) -> None:
        """An ExternalSecret was listed, added or modified."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if meta.get("deletionTimestamp"):
            self.forget(*key)
            return
        fingerprint = status_fingerprint(body)
        entry = self._entries.get(key)
        target = ((body.get("spec") or {}).get("target") or {}).get("name") or key[1]
        if entry is None:
            self._entries[key] = _Entry(body=body, fingerprint=fingerprint, target=target)
        else:
            entry.body = body
            if entry.fingerprint == fingerprint:
                return
            entry.fingerprint = fingerprint
            self._targets.pop((key[0], entry.target), None)
            entry.target = target
            entry.failures = 0
        self._targets[(key[0], target)] = key
        self._enqueue(key)

    def forget(self, namespace: str, name: str) -> None:
        """An ExternalSecret was deleted: stop syncing it (its Secret follows ownerReferences)."""
        entry = self._entries.pop((namespace, name), None)
        if entry is not None:
            self._targets.pop((namespace, entry.target), None)

    def secret_event(self, event_type: str | None, body: Body) -> None:
        """A Secret changed: if it is a target and differs from what we wrote, reconcile (drift repair)."""
        meta = body.get("metadata") or {}
        owner = self._targets.get((meta.get("namespace", ""), meta.get("name", "")))
        if owner is None or owner not in self._entries:
            return
        if event_type != "DELETED":
            data = {k: base64.b64decode(v or "") for k, v in (body.get("data") or {}).items()}
            if data_hash(data) == self._entries[owner].written_hash:
                return
        self._enqueue(owner)

    # --- scheduling -------------------------------------------------------------

    def _enqueue(self, key: Key) -> None:
        if key in self._running:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _schedule(self, key: Key, delay: float | None) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return
        if delay is None:
            entry.due = None
            return
        entry.due = self._clock() + delay
        heapq.heappush(self._heap, (entry.due, next(self._seq), key))
        self._wake.set()

    async def _schedule_loop(self) -> None:
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                due, _, key = heapq.heappop(self._heap)
                entry = self._entries.get(key)
                if entry is not None and entry.due == due:
                    entry.due = None
                    self._enqueue(key)
            timeout = self._heap[0][0] - now if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # no helper task, unlike wait_for in 3.11
                    await self._wake.wait()

    async def _work_loop(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._running.add(key)
            try:
                delay = await self.reconcile(key)
            except Exception:
                _log.exception("reconcile of ExternalSecret %s/%s crashed", *key)
                delay = self._retry_max
            finally:
                self._running.discard(key)
            self._schedule(key, delay)
            if key in self._again:
                self._again.discard(key)
                self._enqueue(key)

    # --- one reconcile ----------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        """Sync one ExternalSecret; returns the delay until the next sync (``None``: only on change)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self.reconciles += 1
        body = entry.body
        try:
            spec = parse_spec(body)
        except InvalidRequestError as exc:  # the spec must change before anything can work
            await self._failed(entry, str(exc))
            return None
        try:
            provider, entry.store_key = await self._provider(spec)
            entry.remote_keys, entry.remote_prefixes = remote_keys(spec)
            existing = await self._kube.get(
                SECRETS, name=spec.target_name, namespace=spec.namespace
            )
            try:
                data = await fetch_data(spec, provider)
            except NotFoundError as exc:
                return await self._remote_gone(entry, spec, existing, str(exc))
            if not data and (spec.data_from and not spec.data):
                return await self._remote_gone(entry, spec, existing, "no remote secret matched")
            desired = desired_secret(spec, data)
            plan = plan_secret(spec=spec, owner=body, existing=existing, desired=desired)
            entry.written_hash = data_hash(desired.plain())
            entry.managed_keys = sorted(desired.data)
            await self._apply(
                spec,
                plan,
                body,
                desired_plan=lambda current: plan_secret(
                    spec=spec, owner=body, existing=current, desired=desired
                ),
            )
        except KustosError as exc:
            entry.failures += 1
            await self._failed(entry, str(exc))
            return float(min(self._retry_first * 2.0 ** (entry.failures - 1), self._retry_max))
        entry.failures = 0
        message = "secret synced"
        if spec.creation_policy.value == "None":
            message = "secret synced (creationPolicy None: no Secret written)"
        await self._status(entry, "True", "SecretSynced", message)
        return spec.refresh or None

    async def _provider(
        self, spec: ExternalSecretSpec
    ) -> tuple[Provider, tuple[str, str, str, str]]:
        if spec.store_kind == "ClusterSecretStore":
            store = await self._kube.get(CLUSTER_SECRET_STORES, name=spec.store_name)
        else:
            store = await self._kube.get(
                SECRET_STORES, name=spec.store_name, namespace=spec.namespace
            )
        if store is None:
            raise ConfigError(f"{spec.store_kind} {spec.store_name!r} does not exist")
        cache_key = (
            spec.store_kind,
            store.get("metadata", {}).get("namespace") or "",
            spec.store_name,
            spec.namespace,
        )
        fingerprint = hashlib.sha256(
            json.dumps(store.get("spec") or {}, sort_keys=True).encode()
        ).hexdigest()
        cached = self._store_cache.get(cache_key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1], cache_key
        provider = await self._providers.create(
            store=store, namespace=spec.namespace, kube=self._kube
        )
        if cached is not None:
            with contextlib.suppress(Exception):
                await cached[1].close()
        self._store_cache[cache_key] = (fingerprint, provider)
        watch = getattr(provider, "watch", None)
        if watch is not None:  # a pushing provider (kustos): reconcile as soon as a key changes
            await watch(lambda keys: self.remote_changed(cache_key, keys))
        return provider, cache_key

    def remote_changed(
        self, store_key: tuple[str, str, str, str], keys: frozenset[str] | None
    ) -> None:
        """A pushing provider saw ``keys`` change (``None``: anything may have): reconcile their readers now."""
        self.pushes += 1
        for key, entry in self._entries.items():
            if entry.store_key != store_key:
                continue
            if (
                keys is None
                or not entry.remote_keys.isdisjoint(keys)
                or any(
                    changed.startswith(prefix)
                    for prefix in entry.remote_prefixes
                    for changed in keys
                )
            ):
                self._enqueue(key)

    async def _apply(
        self,
        spec: ExternalSecretSpec,
        plan: SecretPlan,
        owner: Body,
        *,
        desired_plan: Callable[[Body | None], SecretPlan],
    ) -> None:
        if plan.action == "create":
            try:
                await self._kube.create(SECRETS, body=plan.body, namespace=spec.namespace)
            except ConflictError:  # created meanwhile: plan again against what is there
                current = await self._kube.get(
                    SECRETS, name=spec.target_name, namespace=spec.namespace
                )
                plan = desired_plan(current)
                if plan.action == "patch":
                    await self._kube.patch(
                        SECRETS, name=spec.target_name, namespace=spec.namespace, patch=plan.body
                    )
        elif plan.action == "patch":
            await self._kube.patch(
                SECRETS, name=spec.target_name, namespace=spec.namespace, patch=plan.body
            )
        elif plan.action == "delete":
            await self._kube.delete(SECRETS, name=spec.target_name, namespace=spec.namespace)
        if plan.event_reason:
            await self._event(
                owner,
                "Normal",
                plan.event_reason,
                f"secret {spec.target_name} {plan.event_reason.lower()}",
            )

    async def _remote_gone(
        self, entry: _Entry, spec: ExternalSecretSpec, existing: Body | None, why: str
    ) -> float | None:
        plan = plan_deletion(spec=spec, existing=existing, managed_keys=entry.managed_keys)
        entry.written_hash = None
        if (
            plan.action == "none"
            and existing is None
            and spec.deletion_policy is DeletionPolicy.DELETE
        ):  # deleted already (by us, a moment ago): the status stays what it was
            await self._status(
                entry,
                "True",
                "SecretDeleted",
                "secret deleted because the remote data is gone (Delete)",
            )
            return spec.refresh or None
        if plan.action == "none":
            await self._failed(entry, f"could not get secret data from provider: {why}")
            return spec.refresh or None
        await self._apply(spec, plan, entry.body, desired_plan=lambda current: SecretPlan("none"))
        await self._status(
            entry,
            "True",
            "SecretDeleted",
            f"secret deleted because the remote data is gone ({spec.deletion_policy.value})",
        )
        return spec.refresh or None

    async def _failed(self, entry: _Entry, message: str) -> None:
        _log.warning(
            "ExternalSecret %s/%s: %s",
            entry.body["metadata"].get("namespace"),
            entry.body["metadata"].get("name"),
            message,
        )
        await self._event(entry.body, "Warning", "UpdateFailed", message)
        await self._status(entry, "False", "SecretSyncedError", message)

    async def _status(self, entry: _Entry, status: str, reason: str, message: str) -> None:
        meta = entry.body.get("metadata") or {}
        previous = list((entry.body.get("status") or {}).get("conditions") or [])
        now = self._now()
        condition = ready_condition(
            status=status, reason=reason, message=message, previous=previous, now=now
        )
        patch: Body = {
            "status": {
                "conditions": [condition, *(c for c in previous if c.get("type") != "Ready")],
                "refreshTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "syncedResourceVersion": str(
                    meta.get("generation", meta.get("resourceVersion", ""))
                ),
                "binding": {
                    "name": ((entry.body.get("spec") or {}).get("target") or {}).get("name")
                    or meta.get("name")
                },
            }
        }
        try:
            await self._kube.patch(
                EXTERNAL_SECRETS,
                name=meta["name"],
                namespace=meta.get("namespace"),
                patch=patch,
                subresource="status",
            )
        except NotFoundError:
            self.forget(meta.get("namespace", ""), meta.get("name", ""))
        except KustosError as exc:
            _log.warning(
                "status of ExternalSecret %s/%s not written: %s",
                meta.get("namespace"),
                meta.get("name"),
                exc,
            )

    async def _event(self, involved: Body, type_: str, reason: str, message: str) -> None:
        try:
            await self._kube.post_event(
                involved=involved, type_=type_, reason=reason, message=message, now=self._now()
            )
        except KustosError as exc:
            _log.debug("event %s not posted: %s", reason, exc)


class Reloader:
    """Rolls annotated workloads when a Secret's or ConfigMap's data changes."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        strategy: Strategy = Strategy.ENV_VARS,
        unix_time: Callable[[], float] = time.time,
    ) -> None:
        self._kube = kube
        self._strategy = strategy
        self._unix_time = unix_time
        self._seen: dict[tuple[SourceKind, str, str], str] = {}
        self.patches = 0
        """How many workload patches were sent (for tests and the benchmark)."""

    async def source_event(
        self,
        kind: SourceKind,
        event_type: str | None,
        body: Body,
        workloads: Iterable[tuple[Resource, Body]],
    ) -> None:
        """A Secret/ConfigMap was listed, added, modified or deleted; ``workloads`` are its namespace's candidates."""
        meta = body.get("metadata") or {}
        seen_key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self._seen.pop(seen_key, None)
            return
        new_hash = source_hash(kind, body)
        previous = self._seen.get(seen_key)
        self._seen[seen_key] = new_hash
        if previous == new_hash:
            return
        resources = {}
        bodies = []
        for resource, workload in workloads:
            resources[workload.get("metadata", {}).get("name"), workload.get("kind")] = resource
            bodies.append(workload)
        planned = plan_reloads(
            kind=kind,
            source=body,
            new_hash=new_hash,
            previous_hash=previous,
            workloads=bodies,
            strategy=self._strategy,
            now=int(self._unix_time()),
        )
        for reload in planned:
            resource = resources[reload.name, reload.kind]
            fresh = await self._kube.get(resource, name=reload.name, namespace=reload.namespace)
            if fresh is None:
                continue
            fresh.setdefault("kind", resource.kind)
            again = plan_reloads(
                kind=kind,
                source=body,
                new_hash=new_hash,
                previous_hash=previous,
                workloads=[fresh],
                strategy=self._strategy,
                now=int(self._unix_time()),
            )
            for item in again:
                await self._kube.patch(
                    resource, name=item.name, namespace=item.namespace, patch=item.patch
                )
                self.patches += 1
                _log.info(
                    "reloaded %s %s/%s after %s %s changed",
                    resource.kind,
                    item.namespace,
                    item.name,
                    kind.value,
                    meta.get("name"),
                )
