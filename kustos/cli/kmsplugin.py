"""``kustos kms-plugin``: run the Kubernetes KMS v2 plugin on a unix socket.

kube-apiserver, given an EncryptionConfiguration with a ``kms`` provider
(``apiVersion: v2``, ``endpoint: unix:///path/kms.sock``; ``kustos cluster
encryption-config`` writes one), calls this plugin to wrap the data keys it
encrypts Secrets with. The key-encryption key stays in the backend:

    kustos kms-plugin --listen unix:///var/run/kustos/kms.sock --backend local --key-file /etc/kustos/kms.key
    kustos kms-plugin --listen unix:///tmp/kms.sock --backend pkcs11 \\
        --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --pkcs11-token kms --key-label kek-2 --key-label kek-1
    kustos kms-plugin --listen unix:///tmp/kms.sock --backend aws --aws-key-id alias/kubernetes
    kustos kms-plugin --listen unix:///tmp/kms.sock --backend transit \\
        --address https://kustos:8200 --transit-key kubernetes --auth approle --approle-role-id ...

Rotation: give the new key first and keep the old ones listed (local,
pkcs11), point the alias at a new key (aws), or rotate the transit key on
the server (transit). Secrets (PIN, token, secret id) come from files or the
environment, never from the command line, where ``ps`` would show them.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Final

import typer

from kustos.cli.output import fail
from kustos.errors import KustosError
from kustos.sensitive import Sensitive

__all__ = ["kms_plugin", "register"]

_BACKENDS: Final = ("local", "pkcs11", "aws", "transit")
_AUTHS: Final = ("token", "approle", "kubernetes")
_SA_TOKEN: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _read_secret(path: Path | None, env: str, *, what: str) -> Sensitive[str] | None:
    """A secret from ``path`` (first line) or the environment variable ``env``."""
    if path is not None:
        try:
            return Sensitive(path.expanduser().read_text().strip())
        except OSError as exc:
            fail(f"cannot read the {what} from {path}: {exc.strerror}")
    value = os.environ.get(env)
    return Sensitive(value) if value else None


def kms_plugin(
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            help="Unix socket to serve on, e.g. unix:///var/run/kustos/kms.sock (paths under 108 bytes).",
            show_default=False,
        ),
    ],
    backend: Annotated[
        str,
        typer.Option(
            "--backend", help="Where the key-encryption key lives: local, pkcs11, aws or transit."
        ),
    ] = "local",
    key_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--key-file",
            help="local: a key file (created with a new key if missing). Repeat to keep old keys: the first wraps, all unwrap.",
            show_default=False,
        ),
    ] = None,
    pkcs11_module: Annotated[
        str | None,
        typer.Option(
            "--pkcs11-module", help="pkcs11: path of the PKCS#11 module (.so).", show_default=False
        ),
    ] = None,
    pkcs11_token: Annotated[
        str | None,
        typer.Option("--pkcs11-token", help="pkcs11: label of the token.", show_default=False),
    ] = None,
    pkcs11_pin_file: Annotated[
        Path | None,
        typer.Option(
            "--pkcs11-pin-file",
            help="pkcs11: file holding the user PIN (default: env KUSTOS_PKCS11_PIN).",
            show_default=False,
        ),
    ] = None,
    key_label: Annotated[
        list[str] | None,
        typer.Option(
            "--key-label",
            help="pkcs11: label of an AES-256 key in the token (created if missing). Repeat: the first wraps, all unwrap.",
            show_default=False,
        ),
    ] = None,
    aws_key_id: Annotated[
        list[str] | None,
        typer.Option(
            "--aws-key-id",
            help="aws: key id, ARN or alias (alias/name). Repeat to keep old keys listed.",
            show_default=False,
        ),
    ] = None,
    aws_region: Annotated[
        str | None,
        typer.Option(
            "--aws-region",
            help="aws: region (default: from the ARN or AWS_REGION).",
            show_default=False,
        ),
    ] = None,
    aws_endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--aws-endpoint-url",
            help="aws: another KMS endpoint (a VPC endpoint; env AWS_ENDPOINT_URL_KMS also works).",
            show_default=False,
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="transit: the Kustos server (env KUSTOS_ADDR or VAULT_ADDR).",
            show_default=False,
        ),
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert", help="transit: PEM bundle to trust for the server.", show_default=False
        ),
    ] = None,
    transit_key: Annotated[
        str | None,
        typer.Option("--transit-key", help="transit: name of the transit key.", show_default=False),
    ] = None,
    transit_mount: Annotated[
        str, typer.Option("--transit-mount", help="transit: path of the transit mount.")
    ] = "transit",
    auth: Annotated[
        str,
        typer.Option("--auth", help="transit: how to log in: token, approle or kubernetes."),
    ] = "token",
    auth_mount: Annotated[
        str | None,
        typer.Option(
            "--auth-mount",
            help="transit: path of the auth method (default: approle or kubernetes).",
            show_default=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="transit, token auth: file holding the token (default: env KUSTOS_TOKEN or VAULT_TOKEN).",
            show_default=False,
        ),
    ] = None,
    approle_role_id: Annotated[
        str | None,
        typer.Option(
            "--approle-role-id", help="transit, approle auth: the role id.", show_default=False
        ),
    ] = None,
    approle_secret_id_file: Annotated[
        Path | None,
        typer.Option(
            "--approle-secret-id-file",
            help="transit, approle auth: file holding the secret id (default: env KUSTOS_APPROLE_SECRET_ID).",
            show_default=False,
        ),
    ] = None,
    kubernetes_role: Annotated[
        str | None,
        typer.Option(
            "--kubernetes-role", help="transit, kubernetes auth: the role.", show_default=False
        ),
    ] = None,
    kubernetes_token_file: Annotated[
        Path,
        typer.Option(
            "--kubernetes-token-file",
            help="transit, kubernetes auth: the service-account token file (re-read at each login).",
        ),
    ] = _SA_TOKEN,
    workers: Annotated[int, typer.Option("--workers", help="Concurrent calls served.", min=1)] = 8,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the Kubernetes KMS v2 plugin (gRPC on a unix socket) so kube-apiserver's keys never sit in the cluster."""
    from kustos.kmsplugin import BackendConfig, open_backend
    from kustos.kmsplugin.serving import parse_listen, serve

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if backend not in _BACKENDS:
        fail(f"unknown --backend {backend!r}; expected one of {', '.join(_BACKENDS)}")
    if auth not in _AUTHS:
        fail(f"unknown --auth {auth!r}; expected one of {', '.join(_AUTHS)}")
    config = BackendConfig(
        kind=backend,
        key_files=tuple(key_file or ()),
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
        pkcs11_pin=(
            _read_secret(pkcs11_pin_file, "KUSTOS_PKCS11_PIN", what="PKCS#11 PIN")
            if backend == "pkcs11"
            else None
        ),
        key_labels=tuple(key_label or ()),
        aws_keys=tuple(aws_key_id or ()),
        aws_region=aws_region,
        aws_endpoint_url=aws_endpoint_url,
        transit_address=address or os.environ.get("KUSTOS_ADDR") or os.environ.get("VAULT_ADDR"),
        transit_ca_cert=ca_cert,
        transit_key=transit_key,
        transit_mount=transit_mount,
        transit_auth=auth,
        transit_auth_mount=auth_mount,
        transit_token=(
            _read_secret(token_file, "KUSTOS_TOKEN", what="token")
            or _read_secret(None, "VAULT_TOKEN", what="token")
            if backend == "transit" and auth == "token"
            else None
        ),
        approle_role_id=approle_role_id,
        approle_secret_id=(
            _read_secret(approle_secret_id_file, "KUSTOS_APPROLE_SECRET_ID", what="secret id")
            if backend == "transit" and auth == "approle"
            else None
        ),
        kubernetes_role=kubernetes_role,
        kubernetes_jwt_file=kubernetes_token_file,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        socket_path = parse_listen(listen)
        plugin_backend = open_backend(config)
    except KustosError as exc:
        fail(f"kms-plugin: {exc}")
    try:
        serve(plugin_backend, socket_path=socket_path, stop=stop, workers=workers)
    except KustosError as exc:
        fail(f"kms-plugin: {exc}")
    finally:
        plugin_backend.close()


def register(app: typer.Typer) -> None:
    """Add ``kustos kms-plugin`` to the root app."""
    app.command("kms-plugin")(kms_plugin)
