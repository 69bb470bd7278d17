"""The ``kubernetes`` provider: a Secret in another namespace, read through the Kubernetes API.

``spec.provider.kubernetes.remoteNamespace`` (default ``default``) names where
the Secrets live; ``remoteRef.key`` is a Secret name and ``property`` one of
its keys. The operator reads with its own connection but, for a namespaced
SecretStore, *impersonates* the store's service account
(``auth.serviceAccount.name``, else ``default``) so that Kubernetes RBAC, not
the operator's wide permissions, decides what a namespace may copy.
``metadataPolicy: Fetch`` reads ``{"labels": ..., "annotations": ...}`` of
the Secret instead of its data (``property`` picks one, e.g. ``labels.team``). A
ClusterSecretStore (created by a cluster admin) reads as the operator unless
it names a service account too.
"""

from __future__ import annotations

import base64
import json

from kustos.errors import NotFoundError
from kustos.kube import SECRETS, Body, KubeClient
from kustos.operator.providers.base import (
    FindSpec,
    Provider,
    ProviderContext,
    RemoteRef,
    extract_property,
    json_to_map,
)
from kustos.sensitive import Sensitive

__all__ = ["KubernetesProvider", "create"]


class KubernetesProvider:
    """Reads Secrets of ``remote_namespace``."""

    def __init__(self, *, kube: KubeClient, remote_namespace: str, owns_client: bool) -> None:
        self._kube = kube
        self._namespace = remote_namespace
        self._owns_client = owns_client

    async def _secret(self, name: str) -> Body:
        secret = await self._kube.get(SECRETS, name=name, namespace=self._namespace)
        if secret is None:
            raise NotFoundError(f"secret {self._namespace}/{name} does not exist")
        return secret

    @staticmethod
    def _decoded(secret: Body) -> dict[str, bytes]:
        return {
            key: base64.b64decode(value or "") for key, value in (secret.get("data") or {}).items()
        }

    async def _metadata(self, ref: RemoteRef) -> bytes:
        meta = (await self._secret(ref.key)).get("metadata") or {}
        document = json.dumps(
            {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        return extract_property(document, ref.property, key=ref.key) if ref.property else document

    async def get(self, ref: RemoteRef) -> Sensitive[bytes]:
        if ref.metadata_policy == "Fetch":  # {"labels": ..., "annotations": ...}
            return Sensitive(await self._metadata(ref))
        data = self._decoded(await self._secret(ref.key))
        if ref.property:
            if ref.property not in data:
                raise NotFoundError(
                    f"secret {self._namespace}/{ref.key} has no key {ref.property!r}"
                )
            return Sensitive(data[ref.property])
        as_text = {key: value.decode(errors="replace") for key, value in data.items()}
        return Sensitive(json.dumps(as_text, separators=(",", ":"), sort_keys=True).encode())

    async def get_map(self, ref: RemoteRef) -> dict[str, Sensitive[bytes]]:
        if ref.metadata_policy == "Fetch":
            return json_to_map(await self._metadata(ref), key=ref.key)
        return {
            key: Sensitive(value)
            for key, value in self._decoded(await self._secret(ref.key)).items()
        }

    async def find(self, spec: FindSpec) -> dict[str, Sensitive[bytes]]:
        found: dict[str, Sensitive[bytes]] = {}
        for secret in await self._kube.list(SECRETS, namespace=self._namespace):
            meta = secret.get("metadata", {})
            labels = meta.get("labels") or {}
            if not spec.matches_name(meta.get("name", "")):
                continue
            if any(labels.get(tag) != value for tag, value in spec.tags.items()):
                continue
            as_text = {
                key: value.decode(errors="replace") for key, value in self._decoded(secret).items()
            }
            found[meta["name"]] = Sensitive(
                json.dumps(as_text, separators=(",", ":"), sort_keys=True).encode()
            )
        return found

    async def validate(self) -> None:
        await self._kube.list(SECRETS, namespace=self._namespace)

    async def close(self) -> None:
        if self._owns_client:
            await self._kube.close()


async def create(context: ProviderContext) -> Provider:
    """Factory registered as ``kubernetes``."""
    remote = str(context.config.get("remoteNamespace") or "default")
    auth = context.config.get("auth") or {}
    account = (auth.get("serviceAccount") or {}).get("name")
    if context.cluster_scoped and not account:
        return KubernetesProvider(kube=context.kube, remote_namespace=remote, owns_client=False)
    store_namespace = context.store.get("metadata", {}).get("namespace") or context.namespace
    user = f"system:serviceaccount:{store_namespace}:{account or 'default'}"
    kube = KubeClient(connection=context.kube.connection, headers={"Impersonate-User": user})
    return KubernetesProvider(kube=kube, remote_namespace=remote, owns_client=True)
