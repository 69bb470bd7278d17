"""``kustos controller run``: start the in-cluster controllers in one process.

:func:`run` is the blocking entry point the CLI calls; :func:`serve` is the
same operator as a coroutine, which tests and embedders run in their own
event loop (with a ``stop_flag``). Both wire everything explicitly: the
Kubernetes connection (given, or found by :func:`kustos.kube.find_connection`:
``--kubeconfig``, ``$KUBECONFIG``, the pod's ServiceAccount, ``~/.kube/config``),
the kopf settings, the provider registry and the controllers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kopf

from kustos.errors import KustosError
from kustos.kube import Connection, KubeClient, find_connection
from kustos.operator.bound import BoundOpener
from kustos.operator.controllers import (
    ESO_KINDS,
    KUSTOS_KINDS,
    ExternalSecretController,
    ExternalSecretKinds,
    Reloader,
)
from kustos.operator.handlers import build_registry
from kustos.operator.providers import ProviderRegistry, default_registry
from kustos.operator.provisioning import ClusterExternalSecretController
from kustos.operator.pushing import PushSecretController
from kustos.operator.reloading import Strategy
from kustos.operator.sealed import SealedSecretController, ServerUnsealer
from kustos.operator.selecting import Namespaces
from kustos.sensitive import Sensitive

__all__ = ["OperatorOptions", "OperatorReport", "run", "serve"]

_log = logging.getLogger("kustos.operator")


@dataclass(frozen=True)
class OperatorOptions:
    """What ``kustos controller run`` can change."""

    namespaces: Sequence[str] = ()
    """Watch only these namespaces (glob patterns allowed); empty means the whole cluster."""
    external_secrets: bool = True
    eso_group: bool = True
    """Also serve External Secrets' own group, ``external-secrets.io`` (ExternalSecret,
    SecretStore, ClusterSecretStore, ClusterExternalSecret, PushSecret), so its manifests
    work unchanged; off (``--no-eso-group``) where External Secrets itself runs."""
    reloader: bool = True
    reload_strategy: Strategy = Strategy.ENV_VARS
    workers: int = 16
    retry_backoff: tuple[float, float] = (2.0, 300.0)
    watch_timeout: int = 300
    """Server-side timeout of each watch request, in whole seconds (kopf reconnects after it).

    An integer: the API server parses ``timeoutSeconds`` as one and answers 400 to ``300.0``.
    """
    liveness_endpoint: str | None = None
    """e.g. ``http://0.0.0.0:8080/healthz`` for the Deployment's probes."""
    extra_settings: Collection[Callable[[kopf.OperatorSettings], None]] = field(
        default_factory=tuple
    )
    sealed_secrets: bool = True
    """Run the SealedSecret controller (it needs ``kustos_addr``: the server unseals)."""
    kustos_addr: str | None = None
    """The Kustos server that unseals SealedSecrets (``--kustos-addr``)."""
    kustos_token: Sensitive[str] | None = field(default=None, repr=False)
    """Its token (``--kustos-token`` / ``KUSTOS_TOKEN``); needs ``update`` on ``sys/sealing/unseal``."""
    kustos_ca_path: str | None = None
    bound_role: str | None = None
    """Open bound values in the Secrets written (docs/bound.md), logging in at this kubernetes auth
    role of ``kustos_addr`` as each value's ServiceAccount (``--bound-role``)."""
    bound_audience: str = "kustos"
    """Audience of the ServiceAccount tokens requested for it (the role's ``audience``)."""
    bound_auth_path: str = "kubernetes"


@dataclass(frozen=True)
class OperatorReport:
    """What one run of :func:`serve` did (for tests, the benchmark and embedders)."""

    reconciles: int
    """ExternalSecret reconciles."""
    pushes: int
    """Change notices from pushing providers."""
    providers_opened: int
    """Providers built: one per store (and configuration), however many ExternalSecrets read it."""
    providers_closed: int
    workload_patches: int
    """Workloads the Reloader patched."""
    api_calls: Mapping[str, int]
    """Requests of the controllers' own client by HTTP method (kopf's watches not included)."""


def _settings(options: OperatorOptions) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # the controllers post their own, documented events
    settings.watching.server_timeout = int(options.watch_timeout)
    settings.watching.client_timeout = int(options.watch_timeout) + 30
    settings.networking.request_timeout = 60
    settings.scanning.disabled = True  # our resources are known; no CRD watching needed
    for tune in options.extra_settings:
        tune(settings)
    return settings


async def serve(
    *,
    connection: Connection,
    options: OperatorOptions | None = None,
    providers: ProviderRegistry | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> OperatorReport:
    """Run the operator until ``stop_flag`` is set; then say what it did."""
    options = options or OperatorOptions()
    async with KubeClient(connection=connection) as kube:
        groups: list[ExternalSecretKinds] = [KUSTOS_KINDS]
        if options.external_secrets and options.eso_group:
            if await _served(kube, ESO_KINDS.external_secrets.group):
                groups.append(ESO_KINDS)
            else:
                _log.warning(
                    "the external-secrets.io CRDs are not installed: that group is not served "
                    "(apply deploy/crds/external-secrets.io_*.yaml, or pass --no-eso-group)"
                )
        namespaces = Namespaces() if options.external_secrets else None
        registry_of_providers = providers or default_registry()
        bound = None
        if options.bound_role and options.kustos_addr:
            bound = BoundOpener(
                kube=kube,
                address=options.kustos_addr,
                role=options.bound_role,
                auth_path=options.bound_auth_path,
                audience=options.bound_audience,
                ca_path=options.kustos_ca_path,
            )
        elif options.bound_role:
            _log.warning("bound values are not opened: --bound-role needs --kustos-addr")
        controller = (
            ExternalSecretController(
                kube=kube,
                providers=registry_of_providers,
                workers=options.workers,
                retry_backoff=options.retry_backoff,
                namespaces=namespaces,
                bound=bound,
            )
            if options.external_secrets
            else None
        )
        cluster_external_secrets = None
        push_secrets = None
        if controller is not None and namespaces is not None and ESO_KINDS in groups:
            cluster_external_secrets = ClusterExternalSecretController(
                kube=kube, namespaces=namespaces
            )
            push_secrets = PushSecretController(
                kube=kube,
                providers=registry_of_providers,
                stores=controller.store,
                search=controller.stores_of,
                namespaces=namespaces,
            )
        reloader = (
            Reloader(kube=kube, strategy=options.reload_strategy) if options.reloader else None
        )
        sealed = None
        if options.sealed_secrets and options.kustos_addr:
            unsealer = ServerUnsealer(
                address=options.kustos_addr,
                token=options.kustos_token,
                ca_path=options.kustos_ca_path,
            )
            sealed = SealedSecretController(kube=kube, unsealer=unsealer, bound=bound)
        elif options.sealed_secrets:
            _log.warning(
                "SealedSecrets are not handled: no Kustos server address (--kustos-addr) to unseal them"
            )
        registry = build_registry(
            connection=connection,
            controller=controller,
            reloader=reloader,
            sealed=sealed,
            groups=groups,
            namespaces=namespaces,
            cluster_external_secrets=cluster_external_secrets,
            push_secrets=push_secrets,
        )
        if controller is not None:
            await controller.start()
        for extra in (cluster_external_secrets, push_secrets):
            if extra is not None:
                await extra.start()
        try:
            await kopf.operator(
                registry=registry,
                settings=_settings(options),
                standalone=True,
                clusterwide=not options.namespaces,
                namespaces=list(options.namespaces),
                stop_flag=stop_flag,
                ready_flag=ready_flag,
                liveness_endpoint=options.liveness_endpoint,
                memo=kopf.Memo(),
            )
        finally:
            for extra in (cluster_external_secrets, push_secrets):
                if extra is not None:
                    await extra.stop()
            if controller is not None:
                await controller.stop()
            if sealed is not None:
                await sealed.close()
            if bound is not None:
                await bound.close()
        return OperatorReport(
            reconciles=controller.reconciles if controller else 0,
            pushes=controller.pushes if controller else 0,
            providers_opened=controller.providers_opened if controller else 0,
            providers_closed=controller.providers_closed if controller else 0,
            workload_patches=reloader.patches if reloader else 0,
            api_calls=dict(kube.calls),
        )


async def _served(kube: KubeClient, group: str) -> bool:
    """Whether the API server serves ``group`` (its CRDs are installed): one discovery request."""
    try:
        return bool(await kube.get_path(f"/apis/{group}"))
    except KustosError as exc:
        _log.warning("could not ask the API server about %s: %s", group, exc)
        return False


def run(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    options: OperatorOptions | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> None:
    """Blocking entry point of ``kustos controller run``.

    The Kubernetes connection is found as kubectl and controller-runtime find
    it (:func:`kustos.kube.find_connection`): ``kubeconfig``, ``$KUBECONFIG``,
    the pod's ServiceAccount, ``~/.kube/config``; ``context`` picks a context.
    """

    async def _main() -> None:
        connection = await find_connection(
            kubeconfig=kubeconfig,
            context=context,
            environ=os.environ if environ is None else environ,
            home=Path.home() if home is None else home,
        )
        _log.info("kustos controller connecting to %s", connection.server)
        await serve(connection=connection, options=options)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
