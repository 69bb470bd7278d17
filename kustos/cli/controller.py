"""``kustos controller``: the in-cluster controllers (SealedSecrets, ExternalSecrets, Reloader).

``kustos controller run`` starts them in one process (kopf, see
:mod:`kustos.operator.main`); it finds the Kubernetes API as kubectl does
(``--kubeconfig``, ``$KUBECONFIG``, the pod's ServiceAccount,
``~/.kube/config``; ``--context``). ``kustos operator run`` is a hidden alias
for manifests written before the rename: ``kustos operator`` is Vault's
word for the server's keys (init, unseal, seal, rotate-key).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from kustos.cli.connection import EXIT_BAD_INPUT
from kustos.cli.output import fail
from kustos.errors import KustosError
from kustos.sensitive import Sensitive

__all__ = ["register", "run_controller"]

controller_app = typer.Typer(
    name="controller",
    help="Run the Kubernetes controllers: SealedSecrets, ExternalSecrets, Reloader.",
    no_args_is_help=True,
)


@controller_app.command("run")
def run_controller(
    namespaces: Annotated[
        str,
        typer.Option(
            "--namespaces", help="Comma-separated namespaces to watch (default: the whole cluster)."
        ),
    ] = "",
    reload_strategy: Annotated[
        str, typer.Option("--reload-strategy", help="Reloader strategy: env-vars or annotations.")
    ] = "env-vars",
    liveness: Annotated[
        str | None,
        typer.Option("--liveness", help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz."),
    ] = None,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="Kubeconfig file (default: $KUBECONFIG, then the pod's ServiceAccount, then ~/.kube/config).",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Kubeconfig context to use (default: current-context).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Concurrent ExternalSecret reconciles (each waits on the network; they are cheap).",
        ),
    ] = 16,
    kustos_addr: Annotated[
        str | None,
        typer.Option(
            "--kustos-addr", envvar="KUSTOS_ADDR", help="Kustos server that unseals SealedSecrets."
        ),
    ] = None,
    kustos_token: Annotated[
        str | None,
        typer.Option(
            "--kustos-token",
            envvar="KUSTOS_TOKEN",
            help="Token for --kustos-addr.",
            show_default=False,
        ),
    ] = None,
    kustos_ca: Annotated[
        str | None, typer.Option("--kustos-ca", help="CA bundle (PEM file) for --kustos-addr.")
    ] = None,
    sealed_secrets: Annotated[
        bool,
        typer.Option(
            "--sealed-secrets/--no-sealed-secrets", help="Run the SealedSecret controller."
        ),
    ] = True,
    eso_group: Annotated[
        bool,
        typer.Option(
            "--eso-group/--no-eso-group",
            help="Also serve External Secrets' group, external-secrets.io (ExternalSecret, "
            "SecretStore, ClusterSecretStore, ClusterExternalSecret, PushSecret). Turn it off "
            "where External Secrets itself runs.",
        ),
    ] = True,
    bound_role: Annotated[
        str | None,
        typer.Option(
            "--bound-role",
            envvar="KUSTOS_BOUND_ROLE",
            help="Open bound values (docs/bound.md) in the Secrets written: log in at this "
            "kubernetes auth role of --kustos-addr as each value's ServiceAccount (needs create "
            "on serviceaccounts/token).",
            show_default=False,
        ),
    ] = None,
    bound_audience: Annotated[
        str,
        typer.Option("--bound-audience", help="Audience of those ServiceAccount tokens."),
    ] = "kustos",
    bound_auth_path: Annotated[
        str, typer.Option("--bound-auth-path", help="Where that kubernetes auth is mounted.")
    ] = "kubernetes",
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            help="debug, info, warning or error (kopf's own messages from debug only).",
        ),
    ] = "info",
) -> None:
    """Run the Kubernetes controllers (SealedSecrets, ExternalSecrets, Reloader) until interrupted."""
    from kustos.operator.main import OperatorOptions, run
    from kustos.operator.reloading import Strategy

    if reload_strategy not in ("env-vars", "annotations"):
        fail("--reload-strategy must be env-vars or annotations", code=EXIT_BAD_INPUT)
    if log_level not in ("debug", "info", "warning", "error"):
        fail("--log-level must be debug, info, warning or error", code=EXIT_BAD_INPUT)
    _configure_logging(log_level)
    options = OperatorOptions(
        namespaces=[n.strip() for n in namespaces.split(",") if n.strip()],
        reload_strategy=Strategy(reload_strategy),
        workers=workers,
        liveness_endpoint=liveness,
        sealed_secrets=sealed_secrets,
        eso_group=eso_group,
        kustos_addr=kustos_addr,
        kustos_token=Sensitive(kustos_token) if kustos_token else None,
        kustos_ca_path=kustos_ca,
        bound_role=bound_role,
        bound_audience=bound_audience,
        bound_auth_path=bound_auth_path,
    )
    try:
        run(kubeconfig=kubeconfig, context=context, options=options)
    except KustosError as exc:
        fail(str(exc))


def _configure_logging(level: str) -> None:
    """Log lines on stderr: ours at ``level``; kopf's per-object chatter only when debugging."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    logging.getLogger("kopf").setLevel("DEBUG" if level == "debug" else "WARNING")


def register(app: typer.Typer) -> None:
    """Add ``kustos controller ...`` to the root app."""
    app.add_typer(controller_app)
