"""``kustos agent``: a pod's secrets as files, kept current by push, wiped on revocation.

The injector (and the Helm chart, and scripts) run exactly this interface::

    kustos agent --address URL [--ca-cert F] --role ROLE [--auth-path kubernetes] \\
        --jwt-file F --dir DIR --secret NAME=PATH[#FIELD] ... [--template NAME=FILE ...] \\
        [--exec CMD] [--once]

``--once`` is the init container (render, exit 0; or exit 1 naming what
failed and leaving no file behind); without it the agent is the sidecar. The
work is in :mod:`kustos.agent`; see docs/agent.md.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from kustos.cli.connection import EXIT_BAD_INPUT
from kustos.cli.output import fail
from kustos.errors import KustosError

__all__ = ["register"]

_DEFAULT_JWT = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _logging(level: str) -> None:
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03dZ kustos-agent %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    logger = logging.getLogger("kustos")
    logger.handlers[:] = [handler]
    logger.setLevel(
        logging.getLevelName(level.upper())
        if level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR")
        else logging.INFO
    )
    logger.propagate = False


def agent(
    address: Annotated[
        str,
        typer.Option("--address", envvar="KUSTOS_ADDR", help="Kustos server URL (https://...)."),
    ],
    role: Annotated[str, typer.Option("--role", help="kubernetes auth role to log in as.")],
    directory: Annotated[
        Path,
        typer.Option(
            "--dir", help="Directory for the files (an in-memory emptyDir).", show_default=False
        ),
    ],
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help="NAME=PATH or NAME=PATH#FIELD: write the secret at PATH (secret/app/db or "
            "secret/data/app/db) to DIR/NAME, as JSON, or its FIELD raw. Repeatable.",
            show_default=False,
        ),
    ] = None,
    template: Annotated[
        list[str] | None,
        typer.Option(
            "--template",
            help="NAME=FILE: render the template in FILE (Kustos Jinja, or a Vault agent template) "
            "to DIR/NAME. Repeatable.",
            show_default=False,
        ),
    ] = None,
    jwt_file: Annotated[
        Path, typer.Option("--jwt-file", help="The pod's projected ServiceAccount token.")
    ] = Path(_DEFAULT_JWT),
    auth_path: Annotated[
        str, typer.Option("--auth-path", help="Where the kubernetes auth method is mounted.")
    ] = "kubernetes",
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert", help="CA bundle (PEM) to trust for --address.", show_default=False
        ),
    ] = None,
    audience: Annotated[
        str | None,
        typer.Option(
            "--audience",
            help="Audience the token must carry (checked before logging in; the role's audience).",
            show_default=False,
        ),
    ] = None,
    exec_command: Annotated[
        str | None,
        typer.Option(
            "--exec",
            help="Command to run after each change (e.g. 'kill -HUP 1'); split like a shell, no shell.",
            show_default=False,
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Init container: render, then exit (non-zero on failure)."),
    ] = False,
    listen: Annotated[
        str,
        typer.Option(
            "--listen", help="HOST:PORT for /metrics, /readyz, /healthz ('off' for none)."
        ),
    ] = "0.0.0.0:8098",
    heartbeat: Annotated[
        int,
        typer.Option(
            "--heartbeat",
            help="Seconds between change-stream heartbeats (the server re-checks the token each time).",
            min=1,
            max=300,
        ),
    ] = 5,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Deliver a pod's secrets as files: init container (--once) or push-following sidecar."""
    from kustos.agent import AgentSettings, run_agent

    _logging(log_level)
    try:
        settings = AgentSettings.from_options(
            address=address,
            role=role,
            jwt_file=jwt_file,
            directory=directory,
            secrets=secret or [],
            templates=template or [],
            auth_path=auth_path,
            ca_cert=ca_cert,
            audience=audience,
            exec_command=exec_command,
            once=once,
            listen=listen,
            heartbeat=heartbeat,
        )
    except KustosError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    code = asyncio.run(run_agent(settings))
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``kustos agent`` to the root app."""
    app.command("agent")(agent)
