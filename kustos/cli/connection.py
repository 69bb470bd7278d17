"""Where the CLI finds its server and token, and how client errors become CLI messages.

Settings are resolved here, in the CLI layer, never in ``kustos.client``:

* address: ``--address``, then ``KUSTOS_ADDR``, then ``VAULT_ADDR``, then ``http://127.0.0.1:8200``;
* token: ``--token``, then ``KUSTOS_TOKEN``, then ``VAULT_TOKEN``, then the file ``~/.kustos/token``
  written by ``kustos login``;
* TLS: ``--ca-cert`` / ``KUSTOS_CACERT`` / ``VAULT_CACERT`` names a PEM bundle to trust;
  ``--tls-skip-verify`` / ``KUSTOS_SKIP_VERIFY`` / ``VAULT_SKIP_VERIFY`` turns verification off.

:func:`resolve_settings` is pure (environment and home directory are
parameters). :func:`open_client` reads the real ones, connects, and turns every
``kustos.errors`` exception raised inside its block into :func:`~kustos.cli.output.fail`
with a message that names what was wrong and what to do next.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import typer

from kustos.cli.output import fail
from kustos.client import KustosClient, ServerUnreachableError
from kustos.errors import (
    CheckAndSetError,
    ConfigError,
    KustosError,
    NotFoundError,
    PermissionDeniedError,
    SealedError,
)
from kustos.sensitive import Sensitive

__all__ = [
    "DEFAULT_ADDRESS",
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "AddressOption",
    "CaCertOption",
    "ConnectionSettings",
    "TlsSkipVerifyOption",
    "TokenOption",
    "open_client",
    "resolve_settings",
    "save_token",
    "token_file",
]

DEFAULT_ADDRESS: Final = "http://127.0.0.1:8200"
EXIT_FAILURE: Final = 1
"""Exit code when the server refused or failed the request."""
EXIT_BAD_INPUT: Final = 2
"""Exit code when the command line itself was wrong (like Typer's usage errors)."""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Server address (env KUSTOS_ADDR or VAULT_ADDR; default http://127.0.0.1:8200).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Token (env KUSTOS_TOKEN or VAULT_TOKEN; default: the file ~/.kustos/token).",
        show_default=False,
    ),
]
TlsSkipVerifyOption = Annotated[
    bool,
    typer.Option(
        "--tls-skip-verify",
        help="Do not verify the server's TLS certificate (env KUSTOS_SKIP_VERIFY or VAULT_SKIP_VERIFY).",
    ),
]
CaCertOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        help="PEM bundle of CAs to trust (env KUSTOS_CACERT or VAULT_CACERT).",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class ConnectionSettings:
    """Resolved connection settings, and where each came from (for error messages)."""

    address: str
    address_source: str
    token: Sensitive[str] | None
    token_source: str
    verify: bool
    ca_cert: Path | None


def token_file(home: Path) -> Path:
    """The file ``kustos login`` writes: ``<home>/.kustos/token``."""
    return home / ".kustos" / "token"


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value, name
    return None


def resolve_settings(
    *,
    address: str | None,
    token: str | None,
    tls_skip_verify: bool,
    ca_cert: Path | None,
    env: Mapping[str, str],
    home: Path,
) -> ConnectionSettings:
    """Resolve flags, environment variables and the token file, in that order of precedence."""
    if address:
        addr, addr_source = address, "--address"
    else:
        found = _first(env, "KUSTOS_ADDR", "VAULT_ADDR")
        addr, addr_source = found if found else (DEFAULT_ADDRESS, "default")
    addr = addr.rstrip("/")
    if not addr.startswith(("http://", "https://")):
        raise ConfigError(
            f"server address from {addr_source} must start with http:// or https://, got {addr!r}"
        )

    secret: str | None
    if token:
        secret, token_source = token, "--token"
    else:
        found = _first(env, "KUSTOS_TOKEN", "VAULT_TOKEN")
        if found:
            secret, token_source = found
        else:
            path = token_file(home)
            secret, token_source = _read_token_file(path), str(path)

    ca: Path | None
    if ca_cert is not None:
        ca = ca_cert
    else:
        found = _first(env, "KUSTOS_CACERT", "VAULT_CACERT")
        ca = Path(found[0]) if found else None
    skip = tls_skip_verify or any(
        env.get(n, "").strip().lower() in _TRUE for n in ("KUSTOS_SKIP_VERIFY", "VAULT_SKIP_VERIFY")
    )
    return ConnectionSettings(
        address=addr,
        address_source=addr_source,
        token=Sensitive(secret) if secret else None,
        token_source=token_source if secret else "none",
        verify=not skip,
        ca_cert=ca,
    )


def _read_token_file(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
    return text or None


def save_token(token: Sensitive[str], *, home: Path) -> Path:
    """Write ``token`` to ``<home>/.kustos/token`` (directory 0700, file 0600) and return the path.

    The file is created with mode 0600 from the start (never world-readable,
    not even briefly) and tightened if it already existed.
    """
    path = token_file(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(".token.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.reveal().encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    return path


@contextmanager
def open_client(
    *,
    address: str | None,
    token: str | None,
    tls_skip_verify: bool,
    ca_cert: Path | None,
    require_token: bool = True,
) -> Iterator[KustosClient]:
    """Connect with settings resolved from flags, ``os.environ`` and ``~/.kustos/token``.

    Every :class:`~kustos.errors.KustosError` raised in the block ends the
    command through :func:`fail` with a message naming what was wrong.
    """
    try:
        settings = resolve_settings(
            address=address,
            token=token,
            tls_skip_verify=tls_skip_verify,
            ca_cert=ca_cert,
            env=os.environ,
            home=Path.home(),
        )
    except ConfigError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    if require_token and settings.token is None:
        fail(
            "no token: pass --token, set KUSTOS_TOKEN (or VAULT_TOKEN), or run `kustos login`",
            code=EXIT_BAD_INPUT,
        )
    try:
        with KustosClient(
            settings.address, settings.token, verify=settings.verify, ca_cert=settings.ca_cert
        ) as client:
            yield client
    except KustosError as exc:
        fail(describe_error(exc, settings))


def describe_error(exc: KustosError, settings: ConnectionSettings) -> str:
    """A one-line explanation of ``exc`` for a person at a terminal."""
    if isinstance(exc, ServerUnreachableError):
        hint = (
            "is the server running? Start a dev server with `make run` or `kustos server --dev`"
            if settings.address_source == "default"
            else f"check the address (from {settings.address_source}) and that the server is running "
            "(`make run` or `kustos server --dev` for a local dev server)"
        )
        return f"{exc}; {hint}"
    if isinstance(exc, SealedError):
        return f"the server at {settings.address} is sealed ({exc}); unseal it with `kustos operator unseal`"
    if isinstance(exc, PermissionDeniedError):
        detail = str(exc)
        prefix = "" if detail.lower().startswith("permission denied") else "permission denied: "
        return f"{prefix}{detail} (token from {settings.token_source}; log in with `kustos login`)"
    if isinstance(exc, CheckAndSetError):
        return f"check-and-set failed: {exc}"
    if isinstance(exc, NotFoundError):
        return f"not found: {exc}"
    return str(exc)
