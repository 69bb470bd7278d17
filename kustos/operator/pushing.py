"""PushSecret: a Secret's keys written to stores (the other direction of an ExternalSecret).

``external-secrets.io/v1alpha1`` PushSecret, as in External Secrets:

- ``selector.secret.name`` (or ``selector.secret.selector``, a label
  selector over the namespace's Secrets) names the source Secret(s);
  ``template`` (a Go template, as in an ExternalSecret) may reshape its data
  first;
- ``secretStoreRefs`` name the stores (``name``, or a ``labelSelector``;
  ``kind`` SecretStore or ClusterSecretStore) — their provider must be able
  to push (``vault``, ``kustos``, ``fake``);
- each ``data[].match`` pushes one key (``secretKey``; empty: the whole
  Secret as a JSON object) to ``remoteRef.remoteKey`` (``property``: as one
  member of it); ``conversionStrategy: ReverseUnicode`` turns ``_U0040_``
  back into ``@`` in key names first;
- ``updatePolicy``: ``Replace`` (default) or ``IfNotExists`` (never overwrite);
- ``deletionPolicy``: ``None`` (default) keeps what was pushed; ``Delete``
  removes a remote value when its entry leaves the spec, when the source
  Secret is deleted (condition reason ``SourceDeleted``), and when the
  PushSecret is deleted — for that it carries the finalizer
  ``pushsecret.externalsecrets.io/finalizer``, removed once the remote values
  are gone;
- ``refreshInterval`` (default 1h; ``0``: only on change). A change of the
  source Secret's data pushes at once.

``status``: ``syncedPushSecrets`` (``"<Kind>/<store>" -> "<remoteKey>[/<property>]"
-> data entry``), ``refreshTime``, ``syncedResourceVersion`` and a ``Ready``
condition (``Synced``, ``Errored``, ``SourceDeleted``); Events ``Synced``
(when it becomes ready) and ``Errored`` (Warning). Messages never hold a value.
``dataTo`` and ``selector.generatorRef`` are refused with a clear condition.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kustos.errors import ConfigError, InvalidRequestError, KustosError
from kustos.kube import SECRETS, Body, KubeClient, Resource
from kustos.operator.controllers import StoreKey, store_allows
from kustos.operator.providers import ProviderRegistry, Pusher, PushRef
from kustos.operator.provisioning import merge_patch
from kustos.operator.selecting import Namespaces, selector_matches, validate_selector
from kustos.operator.syncing import ESO_GROUP, parse_duration, ready_condition
from kustos.operator.templating import Engine, apply_template
from kustos.sensitive import Sensitive

__all__ = [
    "FINALIZER",
    "PUSH_SECRETS",
    "PushSecretController",
    "PushSpec",
    "parse_push_spec",
    "push_entries",
    "reverse_unicode",
]

PUSH_SECRETS: Final = Resource(ESO_GROUP, "v1alpha1", "pushsecrets", "PushSecret")
FINALIZER: Final = "pushsecret.externalsecrets.io/finalizer"
_UNICODE: Final = re.compile(r"_U([0-9a-fA-F]{4,5})_")

_log = logging.getLogger("kustos.operator")


@dataclass(frozen=True)
class PushEntry:
    """One ``data[]`` entry: which key goes where."""

    secret_key: str
    remote_key: str
    remote_property: str
    conversion: str
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def status_ref(self) -> str:
        """Its name in ``status.syncedPushSecrets`` (External Secrets': key, or key/property)."""
        if self.remote_property:
            return f"{self.remote_key}/{self.remote_property}"
        return self.remote_key


@dataclass(frozen=True)
class PushSpec:
    """The parts of a PushSecret the controller acts on."""

    namespace: str
    name: str
    secret_name: str
    secret_selector: Mapping[str, Any] | None
    stores: tuple[Mapping[str, Any], ...]
    entries: tuple[PushEntry, ...]
    update_policy: str = "Replace"
    deletion_policy: str = "None"
    refresh: float = 3600.0
    template: Mapping[str, Any] = field(default_factory=dict)


def parse_push_spec(body: Body) -> PushSpec:
    """Validate a PushSecret; errors name the field."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    if spec.get("dataTo"):
        raise InvalidRequestError("spec.dataTo is not supported by Kustos (use spec.data)")
    selector = spec.get("selector") or {}
    if selector.get("generatorRef"):
        raise InvalidRequestError("spec.selector.generatorRef is not supported by Kustos")
    secret = selector.get("secret") or {}
    if not secret.get("name") and not isinstance(secret.get("selector"), Mapping):
        raise InvalidRequestError("spec.selector.secret needs name or selector")
    if isinstance(secret.get("selector"), Mapping):
        validate_selector(secret["selector"], where="spec.selector.secret.selector")
    stores = tuple(spec.get("secretStoreRefs") or [])
    if not stores:
        raise InvalidRequestError("spec.secretStoreRefs needs at least one store")
    for index, ref in enumerate(stores):
        if not ref.get("name") and not isinstance(ref.get("labelSelector"), Mapping):
            raise InvalidRequestError(f"spec.secretStoreRefs[{index}] needs name or labelSelector")
        if (ref.get("kind") or "SecretStore") not in ("SecretStore", "ClusterSecretStore"):
            raise InvalidRequestError(
                f"spec.secretStoreRefs[{index}].kind must be SecretStore or ClusterSecretStore"
            )
    entries = []
    for index, item in enumerate(spec.get("data") or []):
        match = item.get("match") or {}
        remote = match.get("remoteRef") or {}
        if not remote.get("remoteKey"):
            raise InvalidRequestError(f"spec.data[{index}].match.remoteRef.remoteKey is required")
        conversion = str(item.get("conversionStrategy") or "None")
        if conversion not in ("None", "ReverseUnicode"):
            raise InvalidRequestError(
                f"spec.data[{index}].conversionStrategy must be None or ReverseUnicode"
            )
        entries.append(
            PushEntry(
                secret_key=str(match.get("secretKey") or ""),
                remote_key=str(remote["remoteKey"]),
                remote_property=str(remote.get("property") or ""),
                conversion=conversion,
                raw=json.loads(json.dumps(item)),
            )
        )
    update = str(spec.get("updatePolicy") or "Replace")
    if update not in ("Replace", "IfNotExists"):
        raise InvalidRequestError("spec.updatePolicy must be Replace or IfNotExists")
    deletion = str(spec.get("deletionPolicy") or "None")
    if deletion not in ("None", "Delete"):
        raise InvalidRequestError("spec.deletionPolicy must be None or Delete")
    template = dict(spec.get("template") or {})
    if template and str(template.get("engineVersion") or "v2") != "v2":
        raise InvalidRequestError("spec.template.engineVersion must be v2")
    return PushSpec(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        secret_name=str(secret.get("name") or ""),
        secret_selector=secret.get("selector") if not secret.get("name") else None,
        stores=stores,
        entries=tuple(entries),
        update_policy=update,
        deletion_policy=deletion,
        refresh=parse_duration(spec.get("refreshInterval")),
        template=template,
    )


def reverse_unicode(key: str) -> str:
    """``conversionStrategy: ReverseUnicode``: ``_U0040_`` back to ``@``."""
    return _UNICODE.sub(lambda m: chr(int(m.group(1), 16)), key)


def push_entries(
    spec: PushSpec, data: Mapping[str, bytes]
) -> list[tuple[PushEntry, Sensitive[bytes]]]:
    """What each ``data[]`` entry pushes from the source ``data``; a missing key is an error."""
    out: list[tuple[PushEntry, Sensitive[bytes]]] = []
    for entry in spec.entries:
        source = (
            {reverse_unicode(k): v for k, v in data.items()}
            if entry.conversion == "ReverseUnicode"
            else dict(data)
        )
        if entry.secret_key:
            if entry.secret_key not in source:
                raise InvalidRequestError(f"secret key {entry.secret_key!r} does not exist")
            value = source[entry.secret_key]
        else:  # the whole Secret, as a JSON object of strings
            value = json.dumps(
                {k: v.decode("utf-8", "replace") for k, v in sorted(source.items())},
                separators=(",", ":"),
            ).encode()
        out.append((entry, Sensitive(value)))
    return out


def _fingerprint(body: Body) -> str:
    meta = body.get("metadata") or {}
    payload = {
        "spec": body.get("spec"),
        "generation": meta.get("generation"),
        "uid": meta.get("uid"),
        "deleting": bool(meta.get("deletionTimestamp")),
        "finalizers": meta.get("finalizers"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _data_hash(body: Body) -> str:
    return hashlib.sha256(json.dumps(body.get("data") or {}, sort_keys=True).encode()).hexdigest()


StoreLookup = Callable[[StoreKey], Body | None]
StoreSearch = Callable[[str, str, str], list[Body]]
"""``(group, kind, namespace)`` -> every store of that kind there (namespace ``""`` for cluster stores)."""


class PushSecretController:
    """Pushes each PushSecret's source Secret to its stores; removes what it pushed when told to."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        providers: ProviderRegistry,
        stores: StoreLookup,
        search: StoreSearch,
        namespaces: Namespaces | None = None,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(tz=datetime.UTC),
    ) -> None:
        self._kube = kube
        self._providers = providers
        self._stores = stores
        self._search = search
        self._namespaces = namespaces
        self._now = now
        self._bodies: dict[tuple[str, str], Body] = {}
        self._fingerprints: dict[tuple[str, str], str] = {}
        self._sources: dict[tuple[str, str], str] = {}
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._task: asyncio.Task[None] | None = None
        self.pushes = 0
        """Values written to providers (for tests)."""

    async def start(self) -> None:
        """Start the worker."""
        self._task = asyncio.create_task(self._work(), name="kustos-pushsecret-worker")

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

    def push_secret_event(self, event_type: str | None, body: Body) -> None:
        """A PushSecret was listed, added, modified or deleted."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if event_type == "DELETED":
            self._bodies.pop(key, None)
            self._fingerprints.pop(key, None)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            return
        self._bodies[key] = body
        fingerprint = _fingerprint(body)
        if self._fingerprints.get(key) != fingerprint:
            self._fingerprints[key] = fingerprint
            self._enqueue(key)

    def secret_event(self, event_type: str | None, body: Body) -> None:
        """A Secret changed: push again what PushSecrets take from it (when its data changed)."""
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        where = (namespace, str(meta.get("name") or ""))
        if event_type == "DELETED":
            if self._sources.pop(where, None) is None:
                return
        else:
            digest = _data_hash(body)
            if self._sources.get(where) == digest:
                return  # labels or annotations only: nothing to push
            self._sources[where] = digest
        labels = meta.get("labels") or {}
        for key, push in self._bodies.items():
            if key[0] != namespace:
                continue
            secret = ((push.get("spec") or {}).get("selector") or {}).get("secret") or {}
            if secret.get("name") == where[1] or (
                not secret.get("name")
                and isinstance(secret.get("selector"), Mapping)
                and selector_matches(secret["selector"], labels)
            ):
                self._enqueue(key)

    def store_changed(self) -> None:
        """A store appeared or changed: try the failing PushSecrets again."""
        for key in list(self._failures):
            self._enqueue(key)

    # --- scheduling ---------------------------------------------------------------------

    def _enqueue(self, key: tuple[str, str]) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                delay = await self.reconcile(key)
            except Exception:
                _log.exception("reconcile of PushSecret %s/%s crashed", *key)
                delay = 60.0
            previous = self._timers.pop(key, None)
            if previous is not None:
                previous.cancel()
            if delay is not None and key in self._bodies:
                self._timers[key] = asyncio.get_running_loop().call_later(delay, self._enqueue, key)

    # --- one reconcile ------------------------------------------------------------------

    async def reconcile(self, key: tuple[str, str]) -> float | None:
        """Push one PushSecret; the delay until the next push (``None``: only on change)."""
        body = self._bodies.get(key)
        if body is None:
            return None
        meta = body.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        status = body.get("status") or {}
        synced: dict[str, dict[str, Any]] = {
            str(k): dict(v) for k, v in (status.get("syncedPushSecrets") or {}).items()
        }
        deleting = bool(meta.get("deletionTimestamp"))
        try:
            spec = parse_push_spec(body)
        except InvalidRequestError as exc:
            if deleting and FINALIZER in finalizers:
                await self._set_finalizer(body, present=False)
            await self._failed(body, str(exc), synced)
            return None
        if deleting:
            if FINALIZER in finalizers:
                if spec.deletion_policy == "Delete":
                    try:
                        await self._delete_remote(spec, synced, keep={})
                    except KustosError as exc:
                        await self._failed(body, f"could not delete pushed secrets: {exc}", synced)
                        return self._backoff(key)
                await self._set_finalizer(body, present=False)
            return None
        if spec.deletion_policy == "Delete" and FINALIZER not in finalizers:
            body = await self._set_finalizer(body, present=True) or body
        elif spec.deletion_policy != "Delete" and FINALIZER in finalizers:
            body = await self._set_finalizer(body, present=False) or body
        try:
            secrets = await self._source_secrets(spec)
            if not secrets:
                if spec.deletion_policy == "Delete" and synced and spec.secret_name:
                    await self._delete_remote(spec, synced, keep={})
                    await self._status(
                        body,
                        "False",
                        "SourceDeleted",
                        "source secret deleted; provider secrets cleaned up",
                        synced={},
                    )
                    return None
                raise ConfigError(
                    f"source secret {spec.secret_name or '(by selector)'} not found in "
                    f"{spec.namespace}"
                )
            stores = self._resolve_stores(spec)
            pushed: dict[str, dict[str, Any]] = {}
            for store_name, store in stores:
                pushed[store_name] = await self._push_to_store(spec, store, secrets)
            if spec.deletion_policy == "Delete":
                await self._delete_remote(spec, synced, keep=pushed)
        except KustosError as exc:
            await self._failed(body, str(exc), synced)
            return self._backoff(key)
        self._failures.pop(key, None)
        message = "PushSecret synced successfully"
        if spec.update_policy == "IfNotExists":
            message += ". Existing secrets in providers unchanged."
        await self._status(body, "True", "Synced", message, synced=pushed)
        return spec.refresh or None

    def _backoff(self, key: tuple[str, str]) -> float:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        return float(min(2.0 * 2 ** (failures - 1), 300.0))

    async def _source_secrets(self, spec: PushSpec) -> list[dict[str, bytes]]:
        if spec.secret_name:
            found = await self._kube.get(SECRETS, name=spec.secret_name, namespace=spec.namespace)
            bodies = [found] if found is not None else []
        else:
            bodies = [
                secret
                for secret in await self._kube.list(SECRETS, namespace=spec.namespace)
                if selector_matches(
                    spec.secret_selector or {},
                    (secret.get("metadata") or {}).get("labels") or {},
                )
            ]
        out = []
        for secret in bodies:
            data = {k: base64.b64decode(v or "") for k, v in (secret.get("data") or {}).items()}
            if spec.template:
                data = apply_template(spec.template, data, engine=Engine.GO).data
            out.append(data)
        return out

    def _resolve_stores(self, spec: PushSpec) -> list[tuple[str, Body]]:
        found: list[tuple[str, Body]] = []
        for ref in spec.stores:
            kind = str(ref.get("kind") or "SecretStore")
            namespace = spec.namespace if kind == "SecretStore" else ""
            if ref.get("name"):
                store = self._stores((ESO_GROUP, kind, namespace, str(ref["name"])))
                if store is None:
                    raise ConfigError(f"{kind} {ref['name']!r} does not exist")
                candidates = [store]
            else:
                candidates = [
                    store
                    for store in self._search(ESO_GROUP, kind, namespace)
                    if selector_matches(
                        ref["labelSelector"], (store.get("metadata") or {}).get("labels") or {}
                    )
                ]
            for store in candidates:
                name = str((store.get("metadata") or {}).get("name") or "")
                if kind == "ClusterSecretStore" and not store_allows(
                    store,
                    spec.namespace,
                    self._namespaces.labels(spec.namespace) if self._namespaces else None,
                ):
                    raise ConfigError(
                        f"ClusterSecretStore {name!r} does not allow namespace {spec.namespace!r}"
                    )
                found.append((f"{kind}/{name}", {**store, "kind": kind}))
        return found

    async def _open(self, spec: PushSpec, store: Body) -> Pusher:
        provider = await self._providers.create(
            store=store, namespace=spec.namespace, kube=self._kube
        )
        if not isinstance(provider, Pusher):
            await provider.close()
            name = (store.get("metadata") or {}).get("name")
            raise ConfigError(f"the provider of store {name!r} cannot receive PushSecrets")
        return provider

    async def _push_to_store(
        self, spec: PushSpec, store: Body, secrets: list[dict[str, bytes]]
    ) -> dict[str, Any]:
        provider = await self._open(spec, store)
        pushed: dict[str, Any] = {}
        try:
            for data in secrets:
                for entry, value in push_entries(spec, data):
                    ref = PushRef(remote_key=entry.remote_key, property=entry.remote_property)
                    if spec.update_policy == "IfNotExists" and await provider.exists(ref):
                        pushed[entry.status_ref] = entry.raw
                        continue
                    await provider.push(ref, value)
                    self.pushes += 1
                    pushed[entry.status_ref] = entry.raw
        finally:
            with contextlib.suppress(Exception):
                await provider.close()
        return pushed

    async def _delete_remote(
        self, spec: PushSpec, synced: Mapping[str, Mapping[str, Any]], *, keep: Mapping[str, Any]
    ) -> None:
        """Delete what ``synced`` names and ``keep`` does not (a store's whole set when it left)."""
        for store_name, entries in synced.items():
            gone = [ref for ref in entries if ref not in (keep.get(store_name) or {})]
            if not gone:
                continue
            kind, _, name = store_name.partition("/")
            namespace = spec.namespace if kind == "SecretStore" else ""
            store = self._stores((ESO_GROUP, kind, namespace, name))
            if store is None:
                raise ConfigError(
                    f"{kind} {name!r} does not exist (needed to delete what was pushed)"
                )
            provider = await self._open(spec, {**store, "kind": kind})
            try:
                for status_ref in gone:
                    raw = entries[status_ref]
                    remote = ((raw.get("match") or {}).get("remoteRef")) or {}
                    await provider.delete(
                        PushRef(
                            remote_key=str(remote.get("remoteKey") or status_ref),
                            property=str(remote.get("property") or ""),
                        )
                    )
            finally:
                with contextlib.suppress(Exception):
                    await provider.close()

    # --- writing on the PushSecret -------------------------------------------------------

    async def _set_finalizer(self, body: Body, *, present: bool) -> Body | None:
        meta = body.get("metadata") or {}
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        if present:
            finalizers.append(FINALIZER)
        try:  # resourceVersion: a concurrent change of the list is a 409, not a lost finalizer
            updated = await self._kube.patch(
                PUSH_SECRETS,
                name=str(meta.get("name")),
                namespace=str(meta.get("namespace")),
                patch={
                    "metadata": {
                        "finalizers": finalizers or None,
                        "resourceVersion": meta.get("resourceVersion"),
                    }
                },
            )
        except KustosError as exc:
            _log.warning("finalizer of PushSecret %s/%s not updated: %s",
                         meta.get("namespace"), meta.get("name"), exc)  # fmt: skip
            return None
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if key in self._bodies:
            self._bodies[key] = updated
            self._fingerprints[key] = _fingerprint(updated)
        return updated

    async def _failed(self, body: Body, message: str, synced: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        _log.warning("PushSecret %s/%s: %s", meta.get("namespace"), meta.get("name"), message)
        await self._event(body, "Warning", "Errored", message)
        await self._status(body, "False", "Errored", message, synced=dict(synced))

    async def _status(
        self, body: Body, status: str, reason: str, message: str, *, synced: Mapping[str, Any]
    ) -> None:
        meta = body.get("metadata") or {}
        current = body.get("status") or {}
        previous = list(current.get("conditions") or [])
        was_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in previous)
        now = self._now()
        desired: Body = {
            **current,
            "conditions": [
                ready_condition(
                    status=status, reason=reason, message=message, previous=previous, now=now
                ),
                *(c for c in previous if c.get("type") != "Ready"),
            ],
            "syncedPushSecrets": dict(synced),
        }
        if status == "True":
            desired["refreshTime"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            desired["syncedResourceVersion"] = str(
                meta.get("generation", meta.get("resourceVersion", ""))
            )
        patch = merge_patch(current, desired)
        if not patch:
            return
        try:
            updated = await self._kube.patch(
                PUSH_SECRETS,
                name=str(meta.get("name")),
                namespace=str(meta.get("namespace")),
                patch={"status": patch},
                subresource="status",
            )
        except KustosError as exc:
            _log.warning("status of PushSecret %s/%s not written: %s",
                         meta.get("namespace"), meta.get("name"), exc)  # fmt: skip
            return
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if key in self._bodies:
            self._bodies[key] = {**self._bodies[key], "status": updated.get("status") or {}}
        if status == "True" and not was_ready:
            await self._event(body, "Normal", "Synced", message)

    async def _event(self, involved: Body, type_: str, reason: str, message: str) -> None:
        involved = {**involved, "apiVersion": PUSH_SECRETS.api_version, "kind": "PushSecret"}
        try:
            await self._kube.post_event(
                involved=involved, type_=type_, reason=reason, message=message, now=self._now()
            )
        except KustosError as exc:
            _log.debug("event %s not posted: %s", reason, exc)
