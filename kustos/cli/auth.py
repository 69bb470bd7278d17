"""``kustos login``: check a token against the server and keep it in ``~/.kustos/token``.

Later commands find the saved token when neither ``--token`` nor
``KUSTOS_TOKEN``/``VAULT_TOKEN`` is given (see :mod:`kustos.cli.connection`).
The token is prompted for without echo when not given, and never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    AddressOption,
    CaCertOption,
    TlsSkipVerifyOption,
    open_client,
    save_token,
)
from kustos.cli.output import OutputFormat, OutputOption, fail, render, stderr
from kustos.sensitive import Sensitive

__all__ = ["public_token_info", "register"]

_SECRET_FIELDS = frozenset({"id", "client_token"})
_FROM_STDIN = "-"


def public_token_info(info: dict[str, Any]) -> dict[str, Any]:
    """A token's lookup data without the token itself (``id``)."""
    return {k: v for k, v in info.items() if k not in _SECRET_FIELDS}


def login(
    token: Annotated[
        str | None,
        typer.Argument(
            help="The token ('-' reads it from stdin; omitted: prompt without echo).",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
    address: AddressOption = None,
    tls_skip_verify: TlsSkipVerifyOption = False,
    ca_cert: CaCertOption = None,
) -> None:
    """Verify a token with the server (lookup-self) and save it to ~/.kustos/token (mode 0600)."""
    if token == _FROM_STDIN or (token is None and not sys.stdin.isatty()):
        secret = sys.stdin.readline().strip()
    elif token is not None:
        secret = token.strip()
    else:
        secret = typer.prompt("Token (input hidden)", hide_input=True, err=True).strip()
    if not secret:
        fail("a token is required", code=EXIT_BAD_INPUT)
    with open_client(
        address=address, token=secret, tls_skip_verify=tls_skip_verify, ca_cert=ca_cert
    ) as client:
        info = client.auth_token.lookup_self()
    path = save_token(Sensitive(secret), home=Path.home())
    stderr.print(f"Logged in; token saved to {path} (mode 0600).", highlight=False)
    render(public_token_info(info), output)


def register(app: typer.Typer) -> None:
    """Add ``kustos login`` to the root app."""
    app.command("login")(login)
