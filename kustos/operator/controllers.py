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
import dataclasses
import datetime
import hashlib
import heapq
import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from kustos.errors import ConfigError, InvalidRequestError, KustosError, NotFoundError
from kustos.kube import CONFIGMAPS, SECRETS, Body, ConflictError, KubeClient, Resource
from kustos.operator.bound import BoundOpener, contains_bound
from kustos.operator.providers import Provider, ProviderRegistry
from kustos.operator.reloading import SourceKind, Strategy, plan_reloads, source_hash
from kustos.operator.selecting import Namespaces, selector_matches
from kustos.operator.syncing import (
    ESO_GROUP,
    KUSTOS_GROUP,
    LABEL_MANAGED,
    CreationPolicy,
    DeletionPolicy,
    DesiredSecret,
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
from kustos.operator.templating import template_sources
from kustos.sensitive import Sensitive

__all__ = [
    "CLUSTER_SECRET_STORES",
    "ESO_KINDS",
    "EXTERNAL_SECRETS",
    "KINDS",
    "KUSTOS_KINDS",
    "SECRET_STORES",
    "ExternalSecretController",
    "ExternalSecretKinds",
    "Key",
    "ProviderKey",
    "Reloader",
    "StoreKey",
    "group_of",
    "store_allows",
    "store_key_of",
]

EXTERNAL_SECRETS: Final = Resource("kustos.io", "v1", "externalsecrets", "ExternalSecret")
SECRET_STORES: Final = Resource("kustos.io", "v1", "secretstores", "SecretStore")
CLUSTER_SECRET_STORES: Final = Resource(
    "kustos.io", "v1", "clustersecretstores", "ClusterSecretStore", namespaced=False
)


@dataclass(frozen=True)
class ExternalSecretKinds:
    """One API group serving ExternalSecrets and their stores."""

    group: str
    external_secrets: Resource
    secret_stores: Resource
    cluster_secret_stores: Resource


KUSTOS_KINDS: Final = ExternalSecretKinds(
    KUSTOS_GROUP, EXTERNAL_SECRETS, SECRET_STORES, CLUSTER_SECRET_STORES
)
ESO_KINDS: Final = ExternalSecretKinds(
    ESO_GROUP,
    Resource(ESO_GROUP, "v1", "externalsecrets", "ExternalSecret"),
    Resource(ESO_GROUP, "v1", "secretstores", "SecretStore"),
    Resource(ESO_GROUP, "v1", "clustersecretstores", "ClusterSecretStore", namespaced=False),
)
KINDS: Final = {kinds.group: kinds for kinds in (KUSTOS_KINDS, ESO_KINDS)}
"""Every group the ExternalSecret controller serves, by name."""

_log = logging.getLogger("kustos.operator")

Key = tuple[str, str, str]
"""An ExternalSecret: ``(group, namespace, name)``."""
StoreKey = tuple[str, str, str, str]
"""A store: ``(group, kind, namespace, name)``; a ClusterSecretStore's namespace is ``""``."""
ProviderKey = tuple[str, str, str, str, str]
"""A store and, for a ClusterSecretStore, the namespace it serves (its credentials may depend on it)."""


def group_of(body: Body) -> str:
    """The API group of an object body (``kustos.io`` when it does not say)."""
    return str(body.get("apiVersion") or f"{KUSTOS_GROUP}/v1").partition("/")[0]


def store_key_of(body: Body) -> StoreKey:
    """The :data:`StoreKey` of a SecretStore or ClusterSecretStore body."""
    meta = body.get("metadata") or {}
    kind = body.get("kind") or ("SecretStore" if meta.get("namespace") else "ClusterSecretStore")
    return (
        group_of(body),
        kind,
        meta.get("namespace") or "" if kind == "SecretStore" else "",
        meta.get("name", ""),
    )


def _store_ref(body: Body) -> StoreKey:
    meta = body.get("metadata") or {}
    ref = (body.get("spec") or {}).get("secretStoreRef") or {}
    kind = ref.get("kind") or "SecretStore"
    namespace = meta.get("namespace", "") if kind == "SecretStore" else ""
    return (group_of(body), kind, namespace, ref.get("name") or "")


def store_allows(store: Body, namespace: str, labels: Mapping[str, str] | None) -> bool:
    """A ClusterSecretStore's ``spec.conditions``: may ExternalSecrets of ``namespace`` use it?

    No conditions: every namespace. Otherwise any one condition must match:
    its ``namespaces`` list, one of its ``namespaceRegexes``, or its
    ``namespaceSelector`` (against the namespace's labels; unknown labels
    match nothing, so an unknown namespace is refused).
    """
    conditions = (store.get("spec") or {}).get("conditions") or []
    if not conditions:
        return True
    for condition in conditions:
        if namespace in (condition.get("namespaces") or []):
            return True
        for pattern in condition.get("namespaceRegexes") or []:
            with contextlib.suppress(re.error):
                if re.search(str(pattern), namespace):
                    return True
        selector = condition.get("namespaceSelector")
        if selector is not None and labels is not None and selector_matches(selector, labels):
            return True
    return False


def _fingerprint(spec: object) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _resource_version(body: Body | None) -> int:
    value = ((body or {}).get("metadata") or {}).get("resourceVersion") or ""
    return int(value) if str(value).isdigit() else -1


@dataclass
class _Entry:
    body: Body
    fingerprint: str
    target: str = ""
    store: StoreKey = ("", "", "", "")
    due: float | None = None
    failures: int = 0
    written_hash: str | None = None
    managed_keys: list[str] = field(default_factory=list)
    provider_key: ProviderKey | None = None
    remote_keys: frozenset[str] = frozenset()
    remote_prefixes: tuple[str, ...] = ()


@dataclass
class _Slot:
    """One provider of one store, shared by every ExternalSecret that reads it.

    ``opening`` is created once; every worker that needs the provider awaits
    the same task, so racing workers never build a second provider (nor a
    second change-stream subscription).
    """

    fingerprint: str
    opening: asyncio.Task[Provider]


class ExternalSecretController:
    """Keeps every ExternalSecret's Secret in sync with its store.

    What it knows about the cluster comes from the watches, not from extra
    requests: SecretStores and ClusterSecretStores (:meth:`store_event`, fed
    by kopf indexes, complete before the first ExternalSecret is handled),
    and the Secrets it manages (:meth:`secret_event`, labelled
    ``reconcile.external-secrets.io/managed``, also from an index). A new
    ExternalSecret therefore costs two API calls: create its Secret (on 409,
    read it and patch) and patch its status.
    """

    def __init__(
        self,
        *,
        kube: KubeClient,
        providers: ProviderRegistry,
        workers: int = 16,
        retry_backoff: tuple[float, float] = (2.0, 300.0),
        bound: BoundOpener | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(tz=datetime.UTC),
        namespaces: Namespaces | None = None,
    ) -> None:
        self._kube = kube
        self._providers = providers
        self._namespaces = namespaces
        self._bound = bound
        self._workers = workers
        self._retry_first, self._retry_max = retry_backoff
        self._clock = clock
        self._now = now
        self._entries: dict[Key, _Entry] = {}
        self._targets: dict[tuple[str, str], Key] = {}
        self._secrets: dict[tuple[str, str], Body] = {}
        self._stores: dict[StoreKey, Body] = {}
        self._slots: dict[ProviderKey, _Slot] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._again: set[Key] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.reconciles = 0
        """How many reconciles ran (for tests and the benchmark)."""
        self.pushes = 0
        """How many change notices pushing providers delivered."""
        self.providers_opened = 0
        """How many providers were built (one per store and configuration; for tests and the benchmark)."""
        self.providers_closed = 0

    @property
    def open_providers(self) -> int:
        """Providers open now (each pushing one holds one change-stream subscription)."""
        return len(self._slots)

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler and the workers."""
        self._tasks.append(asyncio.create_task(self._schedule_loop(), name="kustos-es-scheduler"))
        for index in range(self._workers):
            self._tasks.append(
                asyncio.create_task(self._work_loop(), name=f"kustos-es-worker-{index}")
            )

    async def stop(self) -> None:
        """Stop every task and close every provider."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for key in list(self._slots):
            self._retire(key)
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    # --- events from the handlers -----------------------------------------------

    def observe(self, body: Body) -> None:
        """An ExternalSecret (of either group) was listed, added or modified."""
        meta = body.get("metadata") or {}
        key = (group_of(body), meta.get("namespace", ""), meta.get("name", ""))
        if meta.get("deletionTimestamp"):
            self.forget(key[1], key[2], group=key[0])
            return
        fingerprint = status_fingerprint(body)
        entry = self._entries.get(key)
        target = ((body.get("spec") or {}).get("target") or {}).get("name") or key[2]
        if entry is None:
            entry = _Entry(body=body, fingerprint=fingerprint, target=target)
            self._entries[key] = entry
        else:
            entry.body = body
            if entry.fingerprint == fingerprint:
                return
            entry.fingerprint = fingerprint
            self._targets.pop((key[1], entry.target), None)
            entry.target = target
            entry.failures = 0
        entry.store = _store_ref(body)
        self._targets[(key[1], target)] = key
        self._enqueue(key)

    def forget(self, namespace: str, name: str, *, group: str = KUSTOS_GROUP) -> None:
        """An ExternalSecret was deleted: stop syncing it (its Secret follows ownerReferences)."""
        entry = self._entries.pop((group, namespace, name), None)
        if entry is None:
            return
        if self._targets.get((namespace, entry.target)) == (group, namespace, name):
            del self._targets[(namespace, entry.target)]
        if entry.provider_key is not None:
            self._release_if_unused(entry.provider_key)

    def store_event(self, event_type: str | None, body: Body) -> None:
        """A SecretStore/ClusterSecretStore was listed, changed or deleted.

        A changed or deleted store closes its providers and reconciles the
        ExternalSecrets that read it.
        """
        key = store_key_of(body)
        if event_type == "DELETED" or (body.get("metadata") or {}).get("deletionTimestamp"):
            if self._stores.pop(key, None) is None:
                return
        else:
            previous = self._stores.get(key)
            self._stores[key] = body
            if previous is None:
                if any(entry.store == key for entry in self._entries.values()):
                    self._enqueue_readers(key)  # they failed while it was missing
                return
            if _fingerprint(previous.get("spec")) == _fingerprint(body.get("spec")):
                return
        for provider_key in [k for k in self._slots if k[:4] == key]:
            self._retire(provider_key)
        self._enqueue_readers(key)

    def store(self, key: StoreKey) -> Body | None:
        """The store ``key`` names, as the watch last showed it."""
        return self._stores.get(key)

    def stores_of(self, group: str, kind: str, namespace: str) -> list[Body]:
        """Every store of ``kind`` in ``namespace`` (``""`` for ClusterSecretStores)."""
        return [
            body
            for (g, k, ns, _), body in self._stores.items()
            if (g, k, ns) == (group, kind, namespace)
        ]

    def _enqueue_readers(self, key: StoreKey) -> None:
        for entry_key, entry in self._entries.items():
            if entry.store == key:
                self._enqueue(entry_key)

    def secret_event(self, event_type: str | None, body: Body) -> None:
        """A Secret changed: keep what we manage in view; repair drift by reconciling its owner."""
        meta = body.get("metadata") or {}
        where = (meta.get("namespace", ""), meta.get("name", ""))
        owner = self._targets.get(where)
        managed = (meta.get("labels") or {}).get(LABEL_MANAGED) == "true"
        if event_type == "DELETED":
            self._secrets.pop(where, None)
        elif owner is not None or managed:
            if _resource_version(body) >= _resource_version(self._secrets.get(where)):
                self._secrets[where] = body
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
                _log.exception(
                    "reconcile of ExternalSecret %s/%s (%s) crashed", key[1], key[2], key[0]
                )
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
            provider = await self._provider(entry, spec)
            entry.remote_keys, entry.remote_prefixes = remote_keys(spec)
            try:
                data = await fetch_data(spec, provider)
            except NotFoundError as exc:
                return await self._remote_gone(entry, spec, str(exc))
            if not data and (spec.data_from and not spec.data):
                return await self._remote_gone(entry, spec, "no remote secret matched")
            desired = await self._open_bound(
                desired_secret(spec, data, sources=await self._template_sources(spec)), spec
            )
            existing = await self._existing(
                spec,
                need=spec.creation_policy in (CreationPolicy.MERGE, CreationPolicy.CREATE_OR_MERGE),
            )
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
        if spec.creation_policy is CreationPolicy.NONE:
            message = "secret synced (creationPolicy None: no Secret written)"
        await self._status(entry, "True", "SecretSynced", message)
        return spec.refresh or None

    async def _template_sources(
        self, spec: ExternalSecretSpec
    ) -> dict[tuple[str, str], dict[str, bytes]]:
        """The ConfigMaps and Secrets ``templateFrom`` names, read now (missing ones left out)."""
        sources: dict[tuple[str, str], dict[str, bytes]] = {}
        for kind, name in template_sources(spec.template):
            resource = CONFIGMAPS if kind == "ConfigMap" else SECRETS
            body = await self._kube.get(resource, name=name, namespace=spec.namespace)
            if body is None:
                continue
            if kind == "Secret":
                data = {k: base64.b64decode(v or "") for k, v in (body.get("data") or {}).items()}
            else:
                data = {k: str(v).encode() for k, v in (body.get("data") or {}).items()}
                data.update(
                    (k, base64.b64decode(v or ""))
                    for k, v in (body.get("binaryData") or {}).items()
                )
            sources[(kind, name)] = data
        return sources

    async def _open_bound(self, desired: DesiredSecret, spec: ExternalSecretSpec) -> DesiredSecret:
        """Open the bound values among the data (docs/bound.md); others stay as they are."""
        plain = desired.plain()
        if not contains_bound(plain):
            return desired
        where = f"ExternalSecret {spec.namespace}/{spec.name}"
        if self._bound is None:
            raise InvalidRequestError(
                f"{where} holds bound values: start the controller with --bound-role to open them"
            )
        opened = await self._bound.open(plain, namespace=spec.namespace, where=where)
        return dataclasses.replace(
            desired, data={key: Sensitive(value) for key, value in opened.items()}
        )

    async def _existing(self, spec: ExternalSecretSpec, *, need: bool) -> Body | None:
        """The target Secret as the watch last showed it; read only when ``need`` and not known.

        Secrets this controller manages are labelled and come from an index
        complete at start; an unknown target is created (a 409 then reads it).
        """
        where = (spec.namespace, spec.target_name)
        known = self._secrets.get(where)
        if known is not None or not need:
            return known
        return await self._kube.get(SECRETS, name=spec.target_name, namespace=spec.namespace)

    def _remember(self, body: Body | None) -> None:
        if body is None:
            return
        meta = body.get("metadata") or {}
        where = (meta.get("namespace", ""), meta.get("name", ""))
        if _resource_version(body) >= _resource_version(self._secrets.get(where)):
            self._secrets[where] = body

    # --- providers: one per store, shared, closed when unused -------------------

    async def _provider(self, entry: _Entry, spec: ExternalSecretSpec) -> Provider:
        store_key: StoreKey = (
            entry.store[0],
            spec.store_kind,
            spec.namespace if spec.store_kind == "SecretStore" else "",
            spec.store_name,
        )
        store = self._stores.get(store_key)
        if store is None:
            raise ConfigError(f"{spec.store_kind} {spec.store_name!r} does not exist")
        if spec.store_kind == "ClusterSecretStore" and not store_allows(
            store,
            spec.namespace,
            self._namespaces.labels(spec.namespace) if self._namespaces is not None else None,
        ):
            raise ConfigError(
                f"ClusterSecretStore {spec.store_name!r} does not allow namespace "
                f"{spec.namespace!r} (spec.conditions)"
            )
        key: ProviderKey = (
            *store_key,
            spec.namespace if spec.store_kind == "ClusterSecretStore" else "",
        )
        previous = entry.provider_key
        entry.provider_key = key
        if previous is not None and previous != key:
            self._release_if_unused(previous)
        fingerprint = _fingerprint(store.get("spec"))
        slot = self._slots.get(key)
        if slot is not None and slot.fingerprint != fingerprint:
            self._retire(key)
            slot = None
        if slot is None:
            slot = _Slot(
                fingerprint=fingerprint,
                opening=asyncio.create_task(
                    self._open(store, spec.namespace, key), name=f"kustos-provider-{key[3]}"
                ),
            )
            self._slots[key] = slot
        try:
            return await asyncio.shield(slot.opening)
        except asyncio.CancelledError:
            raise
        except BaseException:
            if self._slots.get(key) is slot:  # let the next reconcile try again
                del self._slots[key]
            raise

    async def _open(self, store: Body, namespace: str, key: ProviderKey) -> Provider:
        provider = await self._providers.create(store=store, namespace=namespace, kube=self._kube)
        self.providers_opened += 1
        watch = getattr(provider, "watch", None)
        if watch is not None:  # a pushing provider (kustos): reconcile as soon as a key changes
            await watch(lambda keys: self.remote_changed(key, keys))
        return provider

    def _retire(self, key: ProviderKey) -> None:
        """Forget the provider of ``key`` and close it in the background (once it is built)."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return

        async def close() -> None:
            try:
                provider = await slot.opening
            except BaseException:  # never built: nothing to close
                return
            with contextlib.suppress(Exception):
                await provider.close()
            self.providers_closed += 1

        task = asyncio.create_task(close(), name=f"kustos-provider-close-{key[3]}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _release_if_unused(self, key: ProviderKey) -> None:
        if key in self._slots and not any(
            entry.provider_key == key for entry in self._entries.values()
        ):
            self._retire(key)

    def remote_changed(self, provider_key: ProviderKey, keys: frozenset[str] | None) -> None:
        """A pushing provider saw ``keys`` change (``None``: anything may have): reconcile their readers now."""
        self.pushes += 1
        for key, entry in self._entries.items():
            if entry.provider_key != provider_key:
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

    # --- writing ----------------------------------------------------------------

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
                self._remember(
                    await self._kube.create(SECRETS, body=plan.body, namespace=spec.namespace)
                )
            except ConflictError:  # there already: plan again against what is there
                current = await self._kube.get(
                    SECRETS, name=spec.target_name, namespace=spec.namespace
                )
                self._remember(current)
                plan = desired_plan(current)
                if plan.action == "patch":
                    self._remember(
                        await self._kube.patch(
                            SECRETS,
                            name=spec.target_name,
                            namespace=spec.namespace,
                            patch=plan.body,
                        )
                    )
        elif plan.action == "patch":
            try:
                self._remember(
                    await self._kube.patch(
                        SECRETS, name=spec.target_name, namespace=spec.namespace, patch=plan.body
                    )
                )
            except NotFoundError:  # deleted since the watch showed it: create it again
                self._secrets.pop((spec.namespace, spec.target_name), None)
                await self._apply(spec, desired_plan(None), owner, desired_plan=desired_plan)
                return
        elif plan.action == "delete":
            await self._kube.delete(SECRETS, name=spec.target_name, namespace=spec.namespace)
            self._secrets.pop((spec.namespace, spec.target_name), None)
        if plan.event_reason and plan.event_reason != "Created":
            # A first creation shows in the status (Ready, refreshTime); events
            # report what changed afterwards, so a new ExternalSecret costs two calls.
            await self._event(
                owner,
                "Normal",
                plan.event_reason,
                f"secret {spec.target_name} {plan.event_reason.lower()}",
            )

    async def _remote_gone(self, entry: _Entry, spec: ExternalSecretSpec, why: str) -> float | None:
        existing = await self._existing(
            spec, need=spec.deletion_policy is not DeletionPolicy.RETAIN
        )
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
        group = group_of(entry.body)
        try:
            await self._kube.patch(
                KINDS[group].external_secrets,
                name=meta["name"],
                namespace=meta.get("namespace"),
                patch=patch,
                subresource="status",
            )
        except NotFoundError:
            self.forget(meta.get("namespace", ""), meta.get("name", ""), group=group)
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
