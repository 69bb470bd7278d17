"""``kustos csi-provider``: serve the Secrets Store CSI driver's provider protocol on a unix socket.

A thin command over :mod:`kustos.csi`: it checks the flags, builds the
:class:`~kustos.csi.Mounter` for one Kustos server and serves
``v1alpha1.CSIDriverProvider`` until SIGINT/SIGTERM. It runs as a DaemonSet
beside the driver, sharing ``/var/run/secrets-store-csi-providers``; see
``docs/csi.md``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from kustos.cli.connection import EXIT_BAD_INPUT
from kustos.cli.output import fail

__all__ = ["register"]


def csi_provider(
    address: Annotated[
        str,
        typer.Option(
            "--address", envvar="KUSTOS_ADDR", help="The Kustos server pods' secrets come from."
        ),
    ] = "",
    socket: Annotated[
        Path,
        typer.Option(
            "--socket",
            help="Unix socket the driver dials (its providers directory + <name>.sock).",
        ),
    ] = Path("/var/run/secrets-store-csi-providers/kustos.sock"),
    ca_cert: Annotated[
        Path | None,
        typer.Option("--ca-cert", help="CA bundle (PEM) to verify the server's certificate."),
    ] = None,
    auth_path: Annotated[
        str,
        typer.Option(
            "--auth-path",
            help="Mount path of the server's kubernetes auth method (a SecretProviderClass "
            "may override it with vaultKubernetesMountPath).",
        ),
    ] = "kubernetes",
    workers: Annotated[int, typer.Option("--workers", help="Mounts served at once.")] = 8,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the Secrets Store CSI driver provider until interrupted.

    Pods mount a `secrets-store.csi.k8s.io` volume naming a SecretProviderClass
    with `provider: kustos`; the driver calls this provider with the pod's
    ServiceAccount token, and the provider logs in as the pod and returns its
    secrets as files. See docs/csi.md.
    """
    from kustos.csi.mounting import Mounter
    from kustos.csi.serving import serve

    if not address.startswith(("http://", "https://")):
        fail(
            f"--address must be the Kustos server's URL (http:// or https://), got {address!r}",
            code=EXIT_BAD_INPUT,
        )
    if ca_cert is not None and not ca_cert.is_file():
        fail(f"--ca-cert {ca_cert}: no such file", code=EXIT_BAD_INPUT)
    if len(str(socket)) > 107:
        fail(f"--socket {socket}: a unix socket path must be under 108 bytes", code=EXIT_BAD_INPUT)
    if not 1 <= workers <= 256:
        fail(f"--workers must be between 1 and 256, got {workers}", code=EXIT_BAD_INPUT)
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail(
            f"--log-level must be debug, info, warning or error, got {log_level!r}",
            code=EXIT_BAD_INPUT,
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("kustos")
    logger.handlers[:] = [handler]
    logger.setLevel(log_level.upper())
    logger.propagate = False
    mounter = Mounter(
        address=address, ca_cert=ca_cert, auth_path=auth_path.strip("/").removeprefix("auth/")
    )
    try:
        serve(mounter, socket, workers=workers)
    except OSError as exc:
        fail(f"cannot serve on {socket}: {exc.strerror or exc}")


def register(app: typer.Typer) -> None:
    """Add ``kustos csi-provider`` to the root app."""
    app.command("csi-provider")(csi_provider)
