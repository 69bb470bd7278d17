"""``kustos token``: create, look up, renew and revoke tokens (``auth/token/*``).

``create`` prints the new token (that is its purpose; ``--field client_token``
prints only the token, for scripts); ``lookup`` shows the calling token's
policies and TTL without printing the token itself (``--target`` or
``--accessor`` for another token, which needs sudo); ``renew`` and ``revoke``
act on the calling token or on ``--target``/``--accessor``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from kustos.cli.auth import public_token_info
from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    Connection,
    connected,
)
from kustos.cli.kv import DataArgumentError, parse_pairs
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report

__all__ = ["register", "token_app"]

token_app = typer.Typer(
    name="token", help="Create tokens and look up the current one.", no_args_is_help=True
)

_FIELD_ALIASES = {"token": "client_token"}


@token_app.command("create")
@connected()
def create(
    connection: Connection,
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
) -> None:
    """Create a new token (a child of the calling token unless --orphan)."""
    try:
        metadata = parse_pairs(meta, option="--meta") if meta else None
    except DataArgumentError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    if use_limit is not None and use_limit < 0:
        fail(f"--use-limit must be 0 or more, got {use_limit}", code=EXIT_BAD_INPUT)
    with connection.client() as client:
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


TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="Another token to act on (read from stdin with '-'); default: the calling token.",
        show_default=False,
    ),
]
AccessorOption = Annotated[
    str | None,
    typer.Option("--accessor", help="Act on the token with this accessor.", show_default=False),
]


def _target(value: str | None) -> str | None:
    if value == "-":
        return sys.stdin.readline().strip() or None
    return value


@token_app.command("lookup")
@connected()
def lookup(
    connection: Connection,
    target: TargetOption = None,
    accessor: AccessorOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a token's policies, TTL and metadata (the token itself is not printed); others need sudo."""
    other = _target(target)
    with connection.client() as client:
        if accessor:
            info = client.auth_token.lookup_accessor(accessor)
        elif other:
            info = client.auth_token.lookup(other)
        else:
            info = client.auth_token.lookup_self()
    render(public_token_info(info), output)


@token_app.command("renew")
@connected()
def renew(
    connection: Connection,
    increment: Annotated[
        str | None,
        typer.Option("--increment", help="New TTL from now, like 1h.", show_default=False),
    ] = None,
    target: TargetOption = None,
    accessor: AccessorOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Extend a token's TTL (capped by its max TTL); the token itself is not printed."""
    other = _target(target)
    with connection.client() as client:
        if accessor:
            auth = client.auth_token.renew_accessor(accessor, increment=increment)
        elif other:
            auth = client.auth_token.renew(other, increment=increment)
        else:
            auth = client.auth_token.renew_self(increment=increment)
    render({k: v for k, v in dict(auth).items() if k != "client_token"}, output)


@token_app.command("revoke")
@connected()
def revoke(
    connection: Connection,
    target: TargetOption = None,
    accessor: AccessorOption = None,
    orphan: Annotated[
        bool,
        typer.Option(
            "--orphan", help="Revoke only this token; its children become orphans (needs sudo)."
        ),
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Revoke a token and the tokens it created (the calling token unless --target/--accessor)."""
    other = _target(target)
    if orphan and not other:
        fail("--orphan needs --target TOKEN", code=EXIT_BAD_INPUT)
    with connection.client() as client:
        if accessor:
            client.auth_token.revoke_accessor(accessor)
        elif other and orphan:
            client.auth_token.revoke_orphan(other)
        elif other:
            client.auth_token.revoke(other)
        else:
            client.auth_token.revoke_self()
    revoked = "accessor" if accessor else "target" if other else "self"
    report(
        "Token revoked" + (" (its children became orphans)" if orphan else " with its children"),
        {"revoked": revoked, "accessor": accessor, "orphan": orphan},
        output,
    )


def register(app: typer.Typer) -> None:
    """Add ``kustos token ...`` to the root app."""
    app.add_typer(token_app)
