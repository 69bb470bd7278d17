"""The kopf handlers: thin adapters from watch events to the controllers.

:func:`build_registry` declares every handler on a fresh
:class:`kopf.OperatorRegistry` (no import-time global registry), closing over
the controllers it was given. Only ``@kopf.on.event`` and ``@kopf.index``
handlers are used: they write nothing on the watched objects, so kopf adds no
finalizers or bookkeeping annotations that GitOps tools would see as drift.
Every handler is ``async``: kopf runs synchronous handlers in worker threads,
and the controllers' state and queues belong to the event loop.

- ExternalSecrets of each served group (``kustos.io``, and ``external-secrets.io``
  unless ``--no-eso-group``) -> :meth:`ExternalSecretController.observe` / ``forget``;
- Namespaces -> :class:`~kustos.operator.selecting.Namespaces` (their labels,
  for ClusterSecretStore ``conditions`` and ClusterExternalSecret selectors);
- SecretStores, ClusterSecretStores and the Secrets labelled
  ``reconcile.external-secrets.io/managed`` -> kopf indexes that feed the
  controller (complete before its first reconcile), plus event handlers for
  later changes and deletions;
- Secrets -> drift repair (``secret_event``) and the Reloader;
- ConfigMaps -> the Reloader;
- ClusterExternalSecrets -> :class:`~kustos.operator.provisioning.ClusterExternalSecretController`
  (which also sees every ``external-secrets.io`` ExternalSecret, to put back what it owns);
- PushSecrets -> :class:`~kustos.operator.pushing.PushSecretController` (and the
  Secrets they push, through the Secret handler);
- SealedSecrets (both groups) -> :meth:`SealedSecretController.sealed_event`;
  a deleted Secret -> ``secret_event`` (recreated when a SealedSecret controls it);
- Deployments, StatefulSets, DaemonSets carrying a Reloader annotation are
  kept in kopf indexes, so the Reloader never lists workloads (kopf fills the
  indexes before any other handler runs, so a restart sees every workload).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from kustos.kube import (
    DAEMONSETS,
    DEPLOYMENTS,
    STATEFULSETS,
    Body,
    Connection,
    Login,
    Resource,
)
from kustos.operator.controllers import (
    KUSTOS_KINDS,
    ExternalSecretController,
    ExternalSecretKinds,
    Reloader,
)
from kustos.operator.provisioning import CLUSTER_EXTERNAL_SECRETS, ClusterExternalSecretController
from kustos.operator.pushing import PUSH_SECRETS, PushSecretController
from kustos.operator.reloading import (
    ANNOTATION_AUTO,
    ANNOTATION_CONFIGMAP_RELOAD,
    ANNOTATION_SEARCH,
    ANNOTATION_SECRET_RELOAD,
    SourceKind,
)
from kustos.operator.sealed import SEALED_SECRETS, SealedSecretController
from kustos.operator.selecting import Namespaces
from kustos.operator.syncing import LABEL_MANAGED

__all__ = ["build_registry", "connection_info"]

_RELOADER_KEYS = (
    ANNOTATION_AUTO,
    "secret.reloader.stakater.com/auto",
    "configmap.reloader.stakater.com/auto",
    ANNOTATION_SECRET_RELOAD,
    ANNOTATION_CONFIGMAP_RELOAD,
    ANNOTATION_SEARCH,
)
_WORKLOADS: dict[str, Resource] = {
    "reloader_deployments": DEPLOYMENTS,
    "reloader_statefulsets": STATEFULSETS,
    "reloader_daemonsets": DAEMONSETS,
}


def connection_info(login: Login) -> kopf.ConnectionInfo:
    """kopf's login result for one :class:`~kustos.kube.Login` (one set of credentials for both stacks)."""
    return kopf.ConnectionInfo(
        server=login.server,
        scheme=login.scheme,
        token=login.token.reveal() if login.token is not None else None,
        ca_path=login.ca_path,
        insecure=login.insecure or None,
        certificate_path=login.certificate_path,
        private_key_path=login.private_key_path,
        default_namespace=login.default_namespace,
        proxy_url=login.proxy,
        expiration=login.expiration,
    )


def _annotated(body: Mapping[str, Any], **_: Any) -> bool:
    own = body.get("metadata", {}).get("annotations") or {}
    template = body.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
    return any(key in own or key in template for key in _RELOADER_KEYS)


def _plain(body: Mapping[str, Any]) -> Body:
    return copy.deepcopy(dict(body))


def build_registry(
    *,
    connection: Connection,
    controller: ExternalSecretController | None,
    reloader: Reloader | None,
    sealed: SealedSecretController | None = None,
    groups: Iterable[ExternalSecretKinds] = (KUSTOS_KINDS,),
    namespaces: Namespaces | None = None,
    cluster_external_secrets: ClusterExternalSecretController | None = None,
    push_secrets: PushSecretController | None = None,
) -> kopf.OperatorRegistry:
    """A registry with the login handler and the handlers of each enabled controller.

    ``groups`` are the API groups whose ExternalSecrets and stores are
    served; ``namespaces``, when given, is kept current by a namespace watch.
    """
    registry = kopf.OperatorRegistry()

    logins = 0

    @kopf.on.login(registry=registry)
    async def _login(**_: Any) -> kopf.ConnectionInfo:
        # kopf logs in again only when the API server refused the credentials
        # (401) or they expired: then load them anew (an exec plugin re-runs,
        # a rotated ServiceAccount token is re-read) before handing them over.
        nonlocal logins
        if logins:
            await connection.refresh()
        logins += 1
        return connection_info(await connection.login())

    if namespaces is not None:

        @kopf.on.event("", "v1", "namespaces", registry=registry)
        async def _namespace(type: str | None, body: kopf.Body, **_: Any) -> None:
            namespaces.event(type, _plain(body))

        @kopf.index("", "v1", "namespaces", id="namespaces", registry=registry)
        async def _namespace_index(body: kopf.Body, **_: Any) -> bool:
            namespaces.event("ADDED", _plain(body))  # complete before the first reconcile
            return True

    if controller is not None:
        _register_external_secrets(
            registry, controller, list(groups), cluster_external_secrets, push_secrets
        )

    if cluster_external_secrets is not None:
        resource = CLUSTER_EXTERNAL_SECRETS

        @kopf.on.event(resource.group, resource.version, resource.plural, registry=registry)
        async def _cluster_external_secret(type: str | None, body: kopf.Body, **_: Any) -> None:
            cluster_external_secrets.cluster_event(type, _plain(body))

    if push_secrets is not None:
        pushed = PUSH_SECRETS

        @kopf.on.event(pushed.group, pushed.version, pushed.plural, registry=registry)
        async def _push_secret(type: str | None, body: kopf.Body, **_: Any) -> None:
            push_secrets.push_secret_event(type, _plain(body))

    if reloader is not None:
        for index_id, resource in _WORKLOADS.items():
            _register_index(registry, index_id, resource)

    @kopf.on.event("", "v1", "secrets", registry=registry)
    async def _secret(type: str | None, body: kopf.Body, **kwargs: Any) -> None:
        plain = _plain(body)
        if controller is not None:
            controller.secret_event(type, plain)
        if push_secrets is not None:
            push_secrets.secret_event(type, plain)
        if sealed is not None:
            await sealed.secret_event(type, plain)
        if reloader is not None:
            await reloader.source_event(SourceKind.SECRET, type, plain, _candidates(plain, kwargs))

    if reloader is not None:

        @kopf.on.event("", "v1", "configmaps", registry=registry)
        async def _configmap(type: str | None, body: kopf.Body, **kwargs: Any) -> None:
            plain = _plain(body)
            await reloader.source_event(
                SourceKind.CONFIGMAP, type, plain, _candidates(plain, kwargs)
            )

    if sealed is not None:
        for resource in SEALED_SECRETS:
            _register_sealed(registry, resource, sealed)

    return registry


def _register_external_secrets(
    registry: kopf.OperatorRegistry,
    controller: ExternalSecretController,
    groups: list[ExternalSecretKinds],
    cluster_external_secrets: ClusterExternalSecretController | None,
    push_secrets: PushSecretController | None,
) -> None:
    # Indexes are filled from the initial listing before any other handler
    # runs, so the controller knows every store and every Secret it manages
    # before its first reconcile: it never reads them back per ExternalSecret.
    for kinds in groups:
        for resource in (kinds.secret_stores, kinds.cluster_secret_stores):
            _register_stores(registry, resource, controller, push_secrets)

    @kopf.index("", "v1", "secrets", labels={LABEL_MANAGED: "true"}, id="managed_secrets",
                registry=registry)  # fmt: skip
    async def _managed(body: kopf.Body, **_: Any) -> bool:
        controller.secret_event("ADDED", _plain(body))
        return True

    for kinds in groups:
        _register_external_secret_kind(
            registry,
            controller,
            kinds.external_secrets,
            cluster_external_secrets if kinds.group == CLUSTER_EXTERNAL_SECRETS.group else None,
        )


def _register_external_secret_kind(
    registry: kopf.OperatorRegistry,
    controller: ExternalSecretController,
    resource: Resource,
    cluster_external_secrets: ClusterExternalSecretController | None,
) -> None:
    @kopf.on.event(resource.group, resource.version, resource.plural, registry=registry)
    async def _external_secret(type: str | None, body: kopf.Body, **_: Any) -> None:
        meta = body.get("metadata", {})
        plain = _plain(body)
        plain.setdefault("apiVersion", resource.api_version)
        plain.setdefault("kind", resource.kind)
        if type == "DELETED":
            controller.forget(meta.get("namespace", ""), meta.get("name", ""), group=resource.group)
        else:
            controller.observe(plain)
        if cluster_external_secrets is not None:
            cluster_external_secrets.external_secret_event(type, plain)


def _register_stores(
    registry: kopf.OperatorRegistry,
    resource: Resource,
    controller: ExternalSecretController,
    push_secrets: PushSecretController | None,
) -> None:
    @kopf.index(resource.group, resource.version, resource.plural,
                id=f"stores_{resource.group.replace('.', '_')}_{resource.plural}",
                registry=registry)  # fmt: skip
    async def _store_index(body: kopf.Body, **_: Any) -> bool:
        plain = _plain(body)
        plain.setdefault("apiVersion", resource.api_version)
        plain.setdefault("kind", resource.kind)
        controller.store_event("ADDED", plain)
        return True

    @kopf.on.event(resource.group, resource.version, resource.plural, registry=registry)
    async def _store(type: str | None, body: kopf.Body, **_: Any) -> None:
        plain = _plain(body)
        plain.setdefault("apiVersion", resource.api_version)
        plain.setdefault("kind", resource.kind)
        controller.store_event(type, plain)
        if push_secrets is not None:
            push_secrets.store_changed()


def _register_sealed(
    registry: kopf.OperatorRegistry, resource: Resource, sealed: SealedSecretController
) -> None:
    @kopf.on.event(resource.group, resource.version, resource.plural, registry=registry)
    async def _sealed(type: str | None, body: kopf.Body, **_: Any) -> None:
        plain = _plain(body)
        plain.setdefault("apiVersion", resource.api_version)
        plain.setdefault("kind", resource.kind)
        await sealed.sealed_event(type, plain)


def _register_index(registry: kopf.OperatorRegistry, index_id: str, resource: Resource) -> None:
    @kopf.index(
        resource.group,
        resource.version,
        resource.plural,
        id=index_id,
        when=_annotated,
        registry=registry,
    )
    async def _index(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, Body]:
        return {namespace or "": _plain(body)}


def _candidates(source: Body, kwargs: Mapping[str, Any]) -> Iterable[tuple[Resource, Body]]:
    namespace = source.get("metadata", {}).get("namespace", "")
    for index_id, resource in _WORKLOADS.items():
        index = kwargs.get(index_id)
        if index is None:
            continue
        for workload in index.get(namespace, []):
            workload.setdefault("kind", resource.kind)
            yield resource, workload
