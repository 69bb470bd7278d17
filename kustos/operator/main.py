"""``kustos operator run``: start the in-cluster controllers in one process.

:func:`run` is the blocking entry point the CLI calls; :func:`serve` is the
same operator as a coroutine, which tests and embedders run in their own
event loop (with a ``stop_flag``). Both wire everything explicitly: the
Kubernetes connection (given, or found like kubectl: the pod's service
account, then ``$KUBECONFIG``/``~/.kube/config``), the kopf settings, the
provider registry and the controllers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import kopf

from kustos.errors import ConfigError
from kustos.operator.controllers import ExternalSecretController, Reloader
from kustos.operator.handlers import build_registry
from kustos.operator.kube import Connection, KubeClient
from kustos.operator.providers import ProviderRegistry, default_registry
from kustos.operator.reloading import Strategy
from kustos.operator.sealed import SealedSecretController, ServerUnsealer
from kustos.sensitive import Sensitive

__all__ = ["OperatorOptions", "find_connection", "run", "serve"]

_log = logging.getLogger("kustos.operator")


@dataclass(frozen=True)
class OperatorOptions:
    """What ``kustos operator run`` can change."""

    namespaces: Sequence[str] = ()
    """Watch only these namespaces (glob patterns allowed); empty means the whole cluster."""
    external_secrets: bool = True
    reloader: bool = True
    reload_strategy: Strategy = Strategy.ENV_VARS
    workers: int = 8
    retry_backoff: tuple[float, float] = (2.0, 300.0)
    watch_timeout: float = 300.0
    """Server-side timeout of each watch request, in seconds (kopf reconnects after it)."""
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


def find_connection() -> Connection:
    """The API server and credentials, found the way kubectl finds them."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise ConfigError(
            "no Kubernetes credentials: not in a pod, and no KUBECONFIG or ~/.kube/config"
        )
    if info.certificate_data or info.private_key_data:
        raise ConfigError(
            "client certificates embedded in a kubeconfig are not supported yet; use a token"
        )
    ca_data = info.ca_data.encode() if isinstance(info.ca_data, str) else info.ca_data
    return Connection(
        server=info.server,
        token=Sensitive(info.token) if info.token else None,
        ca_path=str(info.ca_path) if info.ca_path else None,
        ca_data=ca_data,
        insecure=bool(info.insecure),
        certificate_path=str(info.certificate_path) if info.certificate_path else None,
        private_key_path=str(info.private_key_path) if info.private_key_path else None,
        default_namespace=info.default_namespace,
    )


def _settings(options: OperatorOptions) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # the controllers post their own, documented events
    settings.watching.server_timeout = options.watch_timeout
    settings.watching.client_timeout = options.watch_timeout + 30
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
) -> None:
    """Run the operator until ``stop_flag`` is set (or the task is cancelled)."""
    options = options or OperatorOptions()
    async with KubeClient(connection=connection) as kube:
        controller = (
            ExternalSecretController(
                kube=kube,
                providers=providers or default_registry(),
                workers=options.workers,
                retry_backoff=options.retry_backoff,
            )
            if options.external_secrets
            else None
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
            sealed = SealedSecretController(kube=kube, unsealer=unsealer)
        elif options.sealed_secrets:
            _log.warning(
                "SealedSecrets are not handled: no Kustos server address (--kustos-addr) to unseal them"
            )
        registry = build_registry(
            connection=connection, controller=controller, reloader=reloader, sealed=sealed
        )
        if controller is not None:
            await controller.start()
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
            if controller is not None:
                await controller.stop()
            if sealed is not None:
                await sealed.close()


def run(
    *,
    server: str | None = None,
    token: str | None = None,
    ca_path: str | None = None,
    insecure: bool = False,
    options: OperatorOptions | None = None,
) -> None:
    """Blocking entry point of ``kustos operator run``.

    ``server``/``token``/``ca_path`` override the discovered credentials
    (useful against a local API server); otherwise :func:`find_connection`.
    """
    if server:
        connection = Connection(
            server=server,
            token=Sensitive(token) if token else None,
            ca_path=ca_path,
            insecure=insecure,
        )
    else:
        connection = find_connection()
    _log.info("kustos operator connecting to %s", connection.server)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(connection=connection, options=options))
