"""The one small interface every ExternalSecret provider implements, and its registry.

A provider reads secret values from one backend (a Vault-compatible server,
AWS Secrets Manager, another namespace, a fixed list). The ExternalSecret
controller (:mod:`kustos.operator.syncing`) only talks to :class:`Provider`;
each backend lives in its own module beside this one and registers a factory
under the key it has in a SecretStore's ``spec.provider`` (``vault``, ``aws``,
``kubernetes``, ``fake``, ``kustos``).

Values come back wrapped in :class:`~kustos.sensitive.Sensitive`. A missing
key raises :class:`~kustos.errors.NotFoundError` (it drives the
``deletionPolicy``); any other backend failure raises :class:`ProviderError`,
whose message names the store and key, never a value.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kustos.errors import ConfigError, KustosError, NotFoundError
from kustos.kube import SECRETS, Body, KubeClient
from kustos.sensitive import Sensitive

__all__ = [
    "FindSpec",
    "Provider",
    "ProviderContext",
    "ProviderError",
    "ProviderFactory",
    "ProviderRegistry",
    "PushRef",
    "Pusher",
    "RemoteRef",
    "extract_property",
    "json_to_map",
    "read_secret_key",
    "refuse_metadata",
]


class ProviderError(KustosError):
    """The backend failed (unreachable, denied, malformed answer)."""


@dataclass(frozen=True)
class RemoteRef:
    """``remoteRef`` / ``dataFrom[].extract``: one remote secret, maybe one property of it."""

    key: str
    property: str = ""
    version: str = ""
    metadata_policy: str = "None"
    """``Fetch``: read the remote secret's metadata (tags, labels) instead of its value."""


@dataclass(frozen=True)
class PushRef:
    """A PushSecret's ``remoteRef``: where one value goes (``property``: one member of it)."""

    remote_key: str
    property: str = ""


@dataclass(frozen=True)
class FindSpec:
    """``dataFrom[].find``: every remote secret under ``path`` whose name matches and tags match."""

    path: str = ""
    name_regexp: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def matches_name(self, name: str) -> bool:
        """Does ``name`` fall under ``path`` and match ``name.regexp``?"""
        if self.path and not name.startswith(self.path):
            return False
        return not self.name_regexp or re.search(self.name_regexp, name) is not None


class Provider(Protocol):
    """What the controller needs from a backend."""

    async def get(self, ref: RemoteRef) -> Sensitive[bytes]:
        """One value: the whole remote secret, or its ``ref.property``."""

    async def get_map(self, ref: RemoteRef) -> dict[str, Sensitive[bytes]]:
        """A remote secret holding several keys, as a map (``dataFrom[].extract``)."""

    async def find(self, spec: FindSpec) -> dict[str, Sensitive[bytes]]:
        """Every remote secret ``spec`` selects, name -> value (``dataFrom[].find``)."""

    async def validate(self) -> None:
        """Check that the store's configuration can work; raise ``ConfigError`` if not."""

    async def close(self) -> None:
        """Release connections."""


@runtime_checkable
class Pusher(Protocol):
    """What a provider that PushSecrets can write to adds (``vault``, ``kustos``, ``fake``)."""

    async def push(self, ref: PushRef, value: Sensitive[bytes]) -> None:
        """Write ``value`` at ``ref``; refuse to overwrite what a PushSecret did not write."""

    async def exists(self, ref: PushRef) -> bool:
        """Whether something is at ``ref`` already (``updatePolicy: IfNotExists``)."""

    async def delete(self, ref: PushRef) -> None:
        """Remove what a PushSecret wrote at ``ref`` (``deletionPolicy: Delete``)."""

    async def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class ProviderContext:
    """What a factory gets: the store's provider block and where to read credentials."""

    name: str
    config: Mapping[str, Any]
    store: Body
    namespace: str
    """The namespace of the ExternalSecret being synced (a SecretStore's own namespace)."""
    kube: KubeClient
    cluster_scoped: bool = False


ProviderFactory = Callable[[ProviderContext], Awaitable[Provider]]


class ProviderRegistry:
    """Provider name (the key under ``spec.provider``) -> factory."""

    def __init__(self, factories: Mapping[str, ProviderFactory] | None = None) -> None:
        self._factories: dict[str, ProviderFactory] = dict(factories or {})

    def register(self, name: str, factory: ProviderFactory) -> None:
        """Add or replace the factory for ``name``."""
        self._factories[name] = factory

    @property
    def names(self) -> list[str]:
        """Every registered provider name, sorted."""
        return sorted(self._factories)

    async def create(self, *, store: Body, namespace: str, kube: KubeClient) -> Provider:
        """Build the provider a SecretStore/ClusterSecretStore body describes."""
        block = (store.get("spec") or {}).get("provider") or {}
        chosen = [name for name in block if name in self._factories]
        store_name = store.get("metadata", {}).get("name", "?")
        if len(chosen) != 1:
            raise ConfigError(
                f"store {store_name!r} must configure exactly one provider of {self.names}, found {sorted(block)}"
            )
        name = chosen[0]
        context = ProviderContext(
            name=name,
            config=block[name] or {},
            store=store,
            namespace=namespace,
            kube=kube,
            cluster_scoped=store.get("kind") == "ClusterSecretStore",
        )
        return await self._factories[name](context)


def refuse_metadata(ref: RemoteRef, provider: str) -> None:
    """Fail clearly for ``metadataPolicy: Fetch`` where the backend has no metadata to read."""
    if ref.metadata_policy == "Fetch":
        raise ProviderError(f"metadataPolicy Fetch is not supported by the {provider} provider")


def extract_property(value: bytes, prop: str, *, key: str) -> bytes:
    """``remoteRef.property``: a dotted path into a JSON document; strings come back raw."""
    try:
        node: Any = json.loads(value)
    except ValueError:
        raise NotFoundError(
            f"remote secret {key!r} is not JSON, so it has no property {prop!r}"
        ) from None
    if isinstance(node, dict) and prop in node:  # a key that itself contains dots
        node = node[prop]
    else:
        for part in prop.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise NotFoundError(f"remote secret {key!r} has no property {prop!r}")
    return (
        node.encode() if isinstance(node, str) else json.dumps(node, separators=(",", ":")).encode()
    )


def json_to_map(value: bytes, *, key: str) -> dict[str, Sensitive[bytes]]:
    """``dataFrom[].extract``: a JSON object becomes one key per member (non-strings as JSON)."""
    try:
        node = json.loads(value)
    except ValueError:
        raise ProviderError(
            f"remote secret {key!r} is not a JSON object and cannot be extracted"
        ) from None
    if not isinstance(node, dict):
        raise ProviderError(f"remote secret {key!r} is not a JSON object and cannot be extracted")
    return {
        str(name): Sensitive(
            item.encode()
            if isinstance(item, str)
            else json.dumps(item, separators=(",", ":")).encode()
        )
        for name, item in node.items()
    }


async def read_secret_key(
    context: ProviderContext, selector: Mapping[str, Any], *, what: str
) -> Sensitive[str]:
    """Read a credential a store points at with ``{name, key, namespace}``.

    A namespaced SecretStore may only read Secrets of its own namespace (as in
    External Secrets); a ClusterSecretStore must name the namespace.
    """
    name, key = selector.get("name"), selector.get("key")
    if not name or not key:
        raise ConfigError(f"{what}: a secret reference needs both name and key")
    namespace = context.namespace
    if context.cluster_scoped:
        namespace = selector.get("namespace") or ""
        if not namespace:
            raise ConfigError(
                f"{what}: a ClusterSecretStore must give the namespace of secret {name!r}"
            )
    secret = await context.kube.get(SECRETS, name=name, namespace=namespace)
    if secret is None:
        raise ConfigError(f"{what}: secret {namespace}/{name} does not exist")
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        raise ConfigError(f"{what}: secret {namespace}/{name} has no key {key!r}")
    return Sensitive(base64.b64decode(raw).decode().strip())
