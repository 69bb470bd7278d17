"""Where the CLI finds its server and token, and how client errors become CLI messages.

Settings are resolved here, in the CLI layer, never in ``kustos.client``:

* address: ``--address``, then ``KUSTOS_ADDR``, then ``VAULT_ADDR``, then ``http://127.0.0.1:8200``;
* token: ``--token``, then ``KUSTOS_TOKEN``, then ``VAULT_TOKEN``, then the file ``~/.kustos/token``
  written by ``kustos login``, then Vault's ``~/.vault-token``;
* TLS: ``--ca-cert`` / ``KUSTOS_CACERT`` / ``VAULT_CACERT`` names a PEM bundle to trust;
  ``--tls-skip-verify`` / ``KUSTOS_SKIP_VERIFY`` / ``VAULT_SKIP_VERIFY`` turns verification off.

:func:`resolve_settings` is pure (environment and home directory are
parameters). A command that talks to a server is decorated with
:func:`connected`, which declares the four connection options once for every
command and passes them as a :class:`Connection`; ``Connection.client()``
resolves them against the real environment, connects, and turns every
``kustos.errors`` exception raised inside its block into
:func:`~kustos.cli.output.fail` with a message that names what was wrong and
what to do next.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import typer

from kustos.cli.output import fail
from kustos.cli.writing import write_atomic
from kustos.client import KustosClient, ServerUnreachableError
from kustos.errors import (
    CheckAndSetError,
    ConfigError,
    InvalidTokenError,
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
    "Connection",
    "ConnectionSettings",
    "connected",
    "describe_error",
    "resolve_settings",
    "save_token",
    "token_file",
    "vault_token_file",
]

DEFAULT_ADDRESS: Final = "http://127.0.0.1:8200"
EXIT_FAILURE: Final = 1
"""Exit code when the server refused or failed the request."""
EXIT_BAD_INPUT: Final = 2
"""Exit code when the command line itself was wrong (like Typer's usage errors)."""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_PANEL: Final = "Connection"
_KW: Final = inspect.Parameter.KEYWORD_ONLY
_Command = TypeVar("_Command", bound=Callable[..., Any])

_Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Token (env KUSTOS_TOKEN or VAULT_TOKEN; default: ~/.kustos/token, then ~/.vault-token).",
        show_default=False,
        rich_help_panel=_PANEL,
    ),
]
_SkipVerify = Annotated[
    bool,
    typer.Option(
        "--tls-skip-verify",
        help="Do not verify the server's TLS certificate (env KUSTOS_SKIP_VERIFY or VAULT_SKIP_VERIFY).",
        rich_help_panel=_PANEL,
    ),
]
_CaCert = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        help="PEM bundle of CAs to trust (env KUSTOS_CACERT or VAULT_CACERT).",
        show_default=False,
        rich_help_panel=_PANEL,
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


def vault_token_file(home: Path) -> Path:
    """The file Vault's CLI keeps its token in (``vault login``): ``<home>/.vault-token``."""
    return home / ".vault-token"


def _check_address(address: str, *, source: str) -> str:
    """``address`` if it is an http(s) URL with a host and a valid port; else a ConfigError naming ``source``."""
    if not address.startswith(("http://", "https://")):
        raise ConfigError(
            f"server address from {source} must start with http:// or https://, got {address!r}"
        )
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(
            f"server address from {source} is not a valid URL ({exc}): {address!r}"
        ) from None
    if not parts.hostname:
        raise ConfigError(f"server address from {source} has no host: {address!r}")
    del port
    return address


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
    addr = _check_address(addr.rstrip("/"), source=addr_source)

    secret: str | None
    if token:
        secret, token_source = token, "--token"
    else:
        found = _first(env, "KUSTOS_TOKEN", "VAULT_TOKEN")
        if found:
            secret, token_source = found
        else:
            secret, token_source = None, "none"
            for path in (token_file(home), vault_token_file(home)):
                secret = _read_token_file(path)
                if secret:
                    token_source = str(path)
                    break

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
    write_atomic(path, token.reveal().encode("utf-8") + b"\n", private=True)
    return path


class Connection:
    """The connection flags one command was given; :meth:`client` connects with them.

    Commands never declare ``--address``, ``--token``, ``--tls-skip-verify``
    and ``--ca-cert`` themselves: they take a parameter annotated
    ``Connection`` and are decorated with :func:`connected`, which adds the
    four options (once, here) and hands the command this object.
    """

    __slots__ = ("address", "ca_cert", "require_token", "tls_skip_verify", "token")

    def __init__(
        self,
        *,
        address: str | None = None,
        token: str | None = None,
        tls_skip_verify: bool = False,
        ca_cert: Path | None = None,
        require_token: bool = True,
    ) -> None:
        self.address = address
        self.token = token
        self.tls_skip_verify = tls_skip_verify
        self.ca_cert = ca_cert
        self.require_token = require_token

    def __repr__(self) -> str:
        token = "<masked>" if self.token else None
        return f"Connection(address={self.address!r}, token={token})"

    def settings(self) -> ConnectionSettings:
        """Resolve the flags against ``os.environ`` and the home directory (exit 2 on a bad address)."""
        try:
            return resolve_settings(
                address=self.address,
                token=self.token,
                tls_skip_verify=self.tls_skip_verify,
                ca_cert=self.ca_cert,
                env=os.environ,
                home=Path.home(),
            )
        except ConfigError as exc:
            fail(str(exc), code=EXIT_BAD_INPUT)

    @contextmanager
    def client(self, *, token: str | None = None) -> Iterator[KustosClient]:
        """Connect; every :class:`~kustos.errors.KustosError` in the block ends the command clearly.

        ``token`` replaces the resolved one (``kustos login`` checks the token it was given).
        """
        settings = self.settings()
        if token is not None:
            settings = replace(settings, token=Sensitive(token), token_source="the argument")  # noqa: S106
        if self.require_token and settings.token is None:
            fail(
                "no token: pass --token, set KUSTOS_TOKEN (or VAULT_TOKEN), or run `kustos login`",
                code=EXIT_BAD_INPUT,
            )
        try:
            with KustosClient(
                settings.address,
                settings.token,
                verify=settings.verify,
                ca_cert=settings.ca_cert,
            ) as client:
                yield client
        except ConfigError as exc:
            fail(str(exc), code=EXIT_BAD_INPUT)
        except KustosError as exc:
            fail(describe_error(exc, settings))


def _connection_parameters(
    *, token: bool, address_flags: tuple[str, ...]
) -> list[inspect.Parameter]:
    address = Annotated[
        str | None,
        typer.Option(
            *address_flags,
            help="Server address (env KUSTOS_ADDR or VAULT_ADDR; default http://127.0.0.1:8200).",
            show_default=False,
            rich_help_panel=_PANEL,
        ),
    ]
    params = [
        inspect.Parameter("connection_address", _KW, default=None, annotation=address),
        inspect.Parameter("connection_tls_skip_verify", _KW, default=False, annotation=_SkipVerify),
        inspect.Parameter("connection_ca_cert", _KW, default=None, annotation=_CaCert),
    ]
    if token:
        params.insert(
            1, inspect.Parameter("connection_token", _KW, default=None, annotation=_Token)
        )
    return params


def connected(
    *,
    token: bool = True,
    require_token: bool | None = None,
    address_flags: tuple[str, ...] = ("--address",),
) -> Callable[[_Command], _Command]:
    """Give a command the connection options; it receives them as its ``Connection`` parameter.

    ``token=False`` leaves out ``--token`` (commands that need none, like
    ``kustos operator unseal``); ``require_token=False`` keeps ``--token`` but
    connects without one when none is found (``kustos seal``: a certificate
    needs none, ``--validate`` sends one when it is set).
    ``address_flags`` names the address option (``kustos seal`` also accepts
    kubeseal's ``--controller-url``).
    """

    def decorate(command: _Command) -> _Command:
        signature = inspect.signature(command, eval_str=True)
        targets = [p.name for p in signature.parameters.values() if p.annotation is Connection]
        if len(targets) != 1:
            raise TypeError(f"{command.__qualname__} needs one parameter annotated Connection")
        (target,) = targets
        kept = [p for p in signature.parameters.values() if p.name != target]
        params = kept + _connection_parameters(token=token, address_flags=address_flags)

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            kwargs[target] = Connection(
                address=kwargs.pop("connection_address"),
                token=kwargs.pop("connection_token", None),
                tls_skip_verify=kwargs.pop("connection_tls_skip_verify"),
                ca_cert=kwargs.pop("connection_ca_cert"),
                require_token=token if require_token is None else require_token,
            )
            return command(*args, **kwargs)

        run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return cast(_Command, run)

    return decorate


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
    if isinstance(exc, InvalidTokenError):
        return (
            f"the token from {settings.token_source} is not valid: it is unknown, expired or "
            "revoked; log in again with `kustos login` or pass another with --token"
        )
    if isinstance(exc, PermissionDeniedError):
        detail = str(exc)
        prefix = "" if detail.lower().startswith("permission denied") else "permission denied: "
        return (
            f"{prefix}{detail}: the token (from {settings.token_source}) is valid, but its policies "
            "do not allow this; `kustos token lookup` shows them"
        )
    if isinstance(exc, CheckAndSetError):
        return f"check-and-set failed: {exc}"
    if isinstance(exc, NotFoundError):
        return f"not found: {exc}"
    return str(exc)
