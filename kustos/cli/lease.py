"""``kustos lease``: look up, list, renew and revoke the leases of dynamic secrets (``sys/leases/*``).

A lease id is what ``kustos read database/creds/<role>`` printed as
``lease_id`` (``database/creds/app/Xk3...``)::

    kustos lease lookup database/creds/app/Xk3...
    kustos lease renew --increment 1h database/creds/app/Xk3...
    kustos lease revoke database/creds/app/Xk3...
    kustos lease revoke --prefix database/creds/app      # every user of the role (sudo)
    kustos lease list database/creds/app
"""

from __future__ import annotations

from typing import Annotated

import typer

from kustos.cli.connection import EXIT_BAD_INPUT, Connection, connected
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report

__all__ = ["lease_app", "register"]

lease_app = typer.Typer(
    name="lease",
    help="Look up, renew and revoke leases of dynamic secrets (database credentials).",
    no_args_is_help=True,
)

LeaseIdArgument = Annotated[
    str, typer.Argument(help="The lease id, e.g. database/creds/app/Xk3... (or a prefix).")
]


def _clean(value: str) -> str:
    text = value.strip().strip("/")
    if not text:
        fail("a lease id (or prefix) is required", code=EXIT_BAD_INPUT)
    return text


@lease_app.command("lookup")
@connected()
def lookup(
    connection: Connection,
    lease_id: LeaseIdArgument,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a lease: when it was issued, when it ends, its TTL and whether it can be renewed."""
    with connection.client() as client:
        info = client.leases.read_lease(_clean(lease_id))
    render(info, output)


@lease_app.command("list")
@connected()
def list_leases(
    connection: Connection,
    prefix: Annotated[str, typer.Argument(help="A lease id prefix, e.g. database/creds/app.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the lease ids under a prefix (needs sudo on sys/leases/lookup)."""
    with connection.client() as client:
        keys = client.leases.list_leases(_clean(prefix))
    if not keys:
        fail(f"no leases found under {prefix.strip('/')}")
    render([{"key": key} for key in keys], output, columns=["key"])


@lease_app.command("renew")
@connected()
def renew(
    connection: Connection,
    lease_id: LeaseIdArgument,
    increment: Annotated[
        str | None,
        typer.Option(
            "--increment",
            help="New TTL from now, like 1h (default: the lease's TTL).",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Extend a lease (never past its role's max TTL)."""
    with connection.client() as client:
        answer = client.leases.renew_lease(_clean(lease_id), increment=increment)
    render(
        {
            "lease_id": answer.get("lease_id", ""),
            "lease_duration": answer.get("lease_duration", 0),
            "lease_renewable": answer.get("renewable", False),
        },
        output,
    )


@lease_app.command("revoke")
@connected()
def revoke(
    connection: Connection,
    lease_id: LeaseIdArgument,
    prefix: Annotated[
        bool, typer.Option("--prefix", help="Revoke every lease under this prefix (needs sudo).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With --prefix: remove the leases even if the database refuses (users may remain).",
        ),
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Revoke a lease now: its secret (the database user) is dropped."""
    if force and not prefix:
        fail("--force needs --prefix", code=EXIT_BAD_INPUT)
    target = _clean(lease_id)
    with connection.client() as client:
        if prefix:
            client.leases.revoke_prefix(target, force=force)
        else:
            client.leases.revoke_lease(target)
    report(
        f"All revocation operations queued successfully under {target}"
        if prefix
        else f"Lease {target} revoked",
        {"lease_id": target, "prefix": prefix, "revoked": True},
        output,
    )


@lease_app.command("tidy")
@connected()
def tidy(
    connection: Connection,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Clean up: drop links to leases that are gone; revoke leases whose token is gone."""
    with connection.client() as client:
        tidied = client.leases.tidy()
    render(tidied, output)


def register(app: typer.Typer) -> None:
    """Add ``kustos lease ...`` to the root app."""
    app.add_typer(lease_app)
