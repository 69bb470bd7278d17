"""``kustos server``: run the Kustos server (``--dev`` for a ready-to-use local one).

Builds a :class:`~kustos.config.ServerConfig` from the flags and hands it to
:func:`kustos.server.serve`. ``--dev`` means: 127.0.0.1:8200, SQLite and a
local key file under ``./.kustos/``, initialized on first start with a
``secret/`` kv-v2 mount, the root token printed and written to
``~/.kustos/token`` (mode 0600), like Vault's dev mode writes ``~/.vault-token``.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from kustos.cli.connection import save_token, token_file
from kustos.cli.output import fail, stderr
from kustos.config import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_VALUE_BYTES,
    KeyProviderConfig,
    ServerConfig,
    StorageConfig,
    redact_storage_url,
)
from kustos.errors import KustosError

__all__ = ["register"]

_PROVIDERS = ("local", "shamir", "pkcs11")


def _port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (checked before any file is created), or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"--host {host!r} is not an address this machine can listen on ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is already in use (another server is listening there); "
                    "stop it or pick another port with --port"
                )
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def server(
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            help="Dev mode: 127.0.0.1:8200, SQLite + local key under ./.kustos, auto-init, prints the root token.",
        ),
    ] = False,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8200,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Storage URL: sqlite:///path/kustos.db or postgresql://... (default: SQLite in"
            " --data-dir). Prefer the environment variable for a URL with a password: an argument"
            " is visible to every process on the host.",
            envvar="KUSTOS_STORAGE",
        ),
    ] = None,
    key_provider: Annotated[
        str,
        typer.Option("--key-provider", help="What protects the keyring: local, shamir or pkcs11."),
    ] = "local",
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file", help="Key file of the local provider (default: <data-dir>/kustos.key)."
        ),
    ] = None,
    pkcs11_module: Annotated[
        str | None,
        typer.Option(
            "--pkcs11-module",
            help="Path of the PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so).",
        ),
    ] = None,
    pkcs11_token_label: Annotated[
        str | None, typer.Option("--pkcs11-token-label", help="Label of the PKCS#11 token.")
    ] = None,
    pkcs11_pin: Annotated[
        str | None,
        typer.Option(
            "--pkcs11-pin",
            envvar="KUSTOS_PKCS11_PIN",
            help="User PIN of the token (prefer the KUSTOS_PKCS11_PIN environment variable).",
            show_default=False,
        ),
    ] = None,
    pkcs11_key_label: Annotated[
        str, typer.Option("--pkcs11-key-label", help="Label of the AES key in the token.")
    ] = "kustos-root",
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="TLS certificate (PEM); serve HTTPS with --tls-key."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")
    ] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Directory for the SQLite file and the local key.")
    ] = Path(".kustos"),
    max_value_bytes: Annotated[
        int,
        typer.Option(
            "--max-value-bytes", help="Largest secret (JSON-encoded data) accepted in one write."
        ),
    ] = DEFAULT_MAX_VALUE_BYTES,
    body_timeout: Annotated[
        float,
        typer.Option(
            "--body-timeout",
            help="Seconds a client has to send a request body once its headers arrived (then 408).",
        ),
    ] = DEFAULT_BODY_TIMEOUT,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log one JSON line per request (no values, no tokens).",
        ),
    ] = False,
    ui: Annotated[
        bool,
        typer.Option(
            "--ui/--no-ui",
            help="Serve the web console under /ui/ (login with a token, userpass or AppRole).",
        ),
    ] = True,
    cache_entries: Annotated[
        int | None,
        typer.Option(
            "--cache-entries",
            help="Records kept in the in-memory read cache (default 50000; on PostgreSQL kept correct across replicas by LISTEN/NOTIFY; 0 turns it off).",
        ),
    ] = None,
    initial_kv_mount: Annotated[
        list[str] | None,
        typer.Option(
            "--initial-kv-mount",
            help="Create a KV version 2 mount at this path when the server is initialised "
            "(repeatable; e.g. secret, as a dev server has). An existing mount is left alone.",
            show_default=False,
        ),
    ] = None,
    dev_root_token_id: Annotated[
        str | None,
        typer.Option(
            "--dev-root-token-id",
            envvar="KUSTOS_DEV_ROOT_TOKEN_ID",
            help="Dev mode: use this root token instead of a random one.",
        ),
    ] = None,
) -> None:
    """Run the Kustos server (Vault-compatible API on /v1, metrics on /metrics)."""
    from kustos.server import serve
    from kustos.server.mounts import normalize_mount_path

    if key_provider not in _PROVIDERS:
        fail(f"--key-provider must be one of {', '.join(_PROVIDERS)}, not {key_provider!r}")
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together: give both or neither")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not path.is_file():
            fail(f"{flag}: no such file: {path}")
    if dev and key_provider == "shamir":
        fail("--dev needs a key provider that unseals by itself: use local (the default) or pkcs11")
    if dev_root_token_id is not None and not dev:
        fail("--dev-root-token-id only applies with --dev")
    try:
        mounts = tuple(normalize_mount_path(m) for m in (initial_kv_mount or []))
    except KustosError as exc:
        fail(f"--initial-kv-mount: {exc}")
    if max_value_bytes < 1:
        fail("--max-value-bytes must be positive")
    if not 0 < body_timeout <= 3600:
        fail("--body-timeout must be more than 0 and at most 3600 seconds")
    if cache_entries is not None and cache_entries < 0:
        fail("--cache-entries must be 0 (off) or more")
    if not 0 < port < 65536:
        fail(f"--port must be between 1 and 65535, got {port}")
    problem = _port_problem(host, port)
    if problem is not None:
        fail(problem)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--data-dir: cannot create {data_dir}: {exc.strerror}")
    storage_url = storage or f"sqlite:{data_dir / 'kustos.db'}"
    config = ServerConfig(
        storage=StorageConfig(url=storage_url),
        keys=KeyProviderConfig(
            kind=cast(Literal["local", "shamir", "pkcs11"], key_provider),
            key_file=key_file or data_dir / "kustos.key",
            pkcs11_module=pkcs11_module,
            pkcs11_token_label=pkcs11_token_label,
            pkcs11_pin=pkcs11_pin,
            pkcs11_key_label=pkcs11_key_label,
        ),
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        data_dir=data_dir,
        dev=dev,
        max_value_bytes=max_value_bytes,
        body_timeout=body_timeout,
        log_level=log_level,
        access_log=access_log,
        ui=ui,
        initial_kv_mounts=mounts,
    )
    scheme = "https" if tls_cert is not None else "http"
    address = f"{scheme}://{host}:{port}"

    def announce(core: object, boot: object) -> None:
        from kustos.server.core import DevBootstrap

        lines = [
            f"Kustos server listening on {address}",
            f"    Storage:      {redact_storage_url(storage_url)}",
            f"    Key provider: {key_provider}",
        ]
        if ui:
            lines.append(f"    Web console:  {address}/ui/")
        if isinstance(boot, DevBootstrap):
            lines.insert(0, "Kustos dev server (do not use in production)")
            if boot.root_token is not None:
                token = boot.root_token.reveal()
                where = save_token(boot.root_token, home=Path.home())
                lines += [
                    f"    Root Token:   {token}",
                    "    Mount:        secret/ (kv version 2)",
                    f"The root token was written to {where} (mode 0600).",
                ]
            else:
                lines.append(
                    f"Already initialized: the root token from the first start is in {token_file(Path.home())} "
                    "(or pass --dev-root-token-id)."
                )
            lines.append(f"    export KUSTOS_ADDR={address}")
        typer.echo("\n".join(lines), err=False)

    try:
        serve(
            config,
            dev_root_token_id=dev_root_token_id,
            cache_entries=cache_entries,
            on_ready=announce,
        )
    except KustosError as exc:
        fail(f"cannot start the server: {exc}")
    except KeyboardInterrupt:
        stderr.print("stopped")


def register(app: typer.Typer) -> None:
    """Add ``kustos server`` to the root app."""
    app.command("server")(server)
