"""``kustos token``: create tokens and look up the current one (``auth/token/*``).

``create`` prints the new token (that is its purpose; ``--field client_token``
prints only the token, for scripts); ``lookup`` shows the calling token's
policies and TTL without printing the token itself.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from kustos.cli.auth import public_token_info
from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    AddressOption,
    CaCertOption,
    TlsSkipVerifyOption,
    TokenOption,
    open_client,
)
from kustos.cli.kv import DataArgumentError, parse_pairs
from kustos.cli.output import OutputFormat, OutputOption, fail, render

__all__ = ["register", "token_app"]

token_app = typer.Typer(
    name="token", help="Create tokens and look up the current one.", no_args_is_help=True
)

_FIELD_ALIASES = {"token": "client_token"}


@token_app.command("create")
def create(
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="Policy to attach (repeatable).", show_default=False),
    ] = None,
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="Time to live, like 1h or 30m.", show_default=False)
    ] = None,
    display_name: Annotated[
        str | None,
        typer.Option(
            "--display-name", help="A name shown in lookups and audit logs.", show_default=False
        ),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option("--meta", help="key=value metadata (repeatable).", show_default=False),
    ] = None,
    renewable: Annotated[
        bool | None,
        typer.Option(
            "--renewable/--not-renewable",
            help="Whether the token can be renewed.",
            show_default=False,
        ),
    ] = None,
    orphan: Annotated[
        bool,
        typer.Option(
            "--orphan", help="Create a token with no parent (not revoked with the caller's)."
        ),
    ] = False,
    no_default_policy: Annotated[
        bool, typer.Option("--no-default-policy", help="Do not attach the default policy.")
    ] = False,
    use_limit: Annotated[
        int | None,
        typer.Option(
            "--use-limit", help="Number of uses before the token expires.", show_default=False
        ),
    ] = None,
    field: Annotated[
        str | None,
        typer.Option(
            "--field",
            help="Print only this field (e.g. client_token, or 'token').",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
    address: AddressOption = None,
    token: TokenOption = None,
    tls_skip_verify: TlsSkipVerifyOption = False,
    ca_cert: CaCertOption = None,
) -> None:
    """Create a new token (a child of the calling token unless --orphan)."""
    try:
        metadata = parse_pairs(meta, option="--meta") if meta else None
    except DataArgumentError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    if use_limit is not None and use_limit < 0:
        fail(f"--use-limit must be 0 or more, got {use_limit}", code=EXIT_BAD_INPUT)
    with open_client(
        address=address, token=token, tls_skip_verify=tls_skip_verify, ca_cert=ca_cert
    ) as client:
        auth = client.auth_token.create(
            policies=policy,
            ttl=ttl,
            display_name=display_name,
            meta=metadata,
            renewable=renewable,
            no_parent=orphan,
            no_default_policy=no_default_policy,
            num_uses=use_limit,
        )
    result: dict[str, Any] = dict(auth)
    if field is not None:
        name = _FIELD_ALIASES.get(field, field)
        if name not in result:
            fail(
                f"the answer has no field {field!r} (fields: {', '.join(sorted(result))})",
                code=EXIT_BAD_INPUT,
            )
        value = result[name]
        sys.stdout.write(f"{value}\n")
        return
    render(result, output)


@token_app.command("lookup")
def lookup(
    output: OutputOption = OutputFormat.table,
    address: AddressOption = None,
    token: TokenOption = None,
    tls_skip_verify: TlsSkipVerifyOption = False,
    ca_cert: CaCertOption = None,
) -> None:
    """Show the calling token's policies, TTL and metadata (the token itself is not printed)."""
    with open_client(
        address=address, token=token, tls_skip_verify=tls_skip_verify, ca_cert=ca_cert
    ) as client:
        info = client.auth_token.lookup_self()
    render(public_token_info(info), output)


def register(app: typer.Typer) -> None:
    """Add ``kustos token ...`` to the root app."""
    app.add_typer(token_app)
