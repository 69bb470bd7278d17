"""``kustos injector``: run the mutating admission webhook that adds ``kustos agent`` to pods.

A thin command over :mod:`kustos.injector`: it checks the flags, builds the
:class:`~kustos.injector.InjectorSettings` every pod gets by default, and
serves ``POST /mutate`` over TLS until SIGINT/SIGTERM. The chart
(``injector.enabled``) runs it and registers the MutatingWebhookConfiguration;
see ``docs/injector.md``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Final

import typer

from kustos.cli.connection import EXIT_BAD_INPUT
from kustos.cli.output import fail

__all__ = ["register"]

_QUANTITY: Final = re.compile(r"\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([mkMGTPE]|[KMGTPE]i)?")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        fail(f"--listen must be HOST:PORT (e.g. 0.0.0.0:8443), got {value!r}", code=EXIT_BAD_INPUT)
    return host.strip("[]"), int(port)


def _readable(path: Path, flag: str) -> Path:
    if not path.is_file():
        fail(f"{flag} {path}: no such file", code=EXIT_BAD_INPUT)
    return path


def injector(
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to serve HTTPS on.")
    ] = "0.0.0.0:8443",
    tls_cert: Annotated[
        Path,
        typer.Option(
            "--tls-cert", help="The webhook's serving certificate (PEM); the API server checks it."
        ),
    ] = Path("/etc/kustos/tls/tls.crt"),
    tls_key: Annotated[
        Path, typer.Option("--tls-key", help="The private key of --tls-cert (PEM).")
    ] = Path("/etc/kustos/tls/tls.key"),
    address: Annotated[
        str,
        typer.Option(
            "--address",
            help="The Kustos server the injected agents log in to (a pod may override it with "
            "kustos.io/service).",
        ),
    ] = "",
    agent_image: Annotated[
        str, typer.Option("--agent-image", help="The image of the injected agent containers.")
    ] = "",
    audience: Annotated[
        str,
        typer.Option(
            "--audience",
            help="Audience of the projected ServiceAccount token the agent logs in with; the "
            "server's kubernetes role must name the same audience ('' = the API server's).",
        ),
    ] = "kustos",
    auth_path: Annotated[
        str, typer.Option("--auth-path", help="Mount path of the server's kubernetes auth method.")
    ] = "kubernetes",
    secret_volume_path: Annotated[
        str,
        typer.Option("--secret-volume-path", help="Where the memory volume appears in containers."),
    ] = "/kustos/secrets",  # noqa: S107 - a directory, not a password
    token_seconds: Annotated[
        int,
        typer.Option(
            "--token-seconds", help="Lifetime of the projected token (the kubelet renews it)."
        ),
    ] = 3600,
    agent_memory_limit: Annotated[
        str, typer.Option("--agent-memory-limit", help="Memory limit of the agent containers.")
    ] = "128Mi",
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the agent injector (a mutating admission webhook) until interrupted.

    Pods annotated kustos.io/agent-inject: "true" (or Vault's
    vault.hashicorp.com/agent-inject) get `kustos agent` as an init container
    and a native sidecar, an in-memory volume with their secrets, and a
    projected ServiceAccount token. See docs/injector.md for every annotation.
    """
    from kustos.injector.mutating import DEFAULT_AGENT_IMAGE, InjectorSettings
    from kustos.injector.serving import serve

    host, port = _listen(listen)
    if not address.startswith(("http://", "https://")):
        fail(
            f"--address must be the Kustos server's URL (http:// or https://), got {address!r}",
            code=EXIT_BAD_INPUT,
        )
    if not 600 <= token_seconds <= 2**32:
        fail(
            f"--token-seconds must be at least 600 (the API server's minimum), got {token_seconds}",
            code=EXIT_BAD_INPUT,
        )
    if not _QUANTITY.fullmatch(agent_memory_limit):
        fail(
            f"--agent-memory-limit must be a Kubernetes quantity such as 128Mi, got {agent_memory_limit!r}",
            code=EXIT_BAD_INPUT,
        )
    if not secret_volume_path.startswith("/"):
        fail("--secret-volume-path must be an absolute path", code=EXIT_BAD_INPUT)
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail(
            f"--log-level must be debug, info, warning or error, got {log_level!r}",
            code=EXIT_BAD_INPUT,
        )
    settings = InjectorSettings(
        address=address,
        image=agent_image or DEFAULT_AGENT_IMAGE,
        audience=audience,
        auth_path=auth_path.strip("/").removeprefix("auth/"),
        volume_path=secret_volume_path.rstrip("/") or "/",
        token_seconds=token_seconds,
        limits_memory=agent_memory_limit,
    )
    serve(
        settings,
        host=host,
        port=port,
        tls_cert=_readable(tls_cert, "--tls-cert"),
        tls_key=_readable(tls_key, "--tls-key"),
        log_level=log_level.lower(),
    )


def register(app: typer.Typer) -> None:
    """Add ``kustos injector`` to the root app."""
    app.command("injector")(injector)
