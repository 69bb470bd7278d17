"""``kustos read|write|list|delete PATH``: Vault's generic commands, for any API path.

They cover paths without a dedicated command, above all auth method roles,
users and configs::

    kustos write auth/kubernetes/config jwks=@jwks.json issuer=https://kubernetes.default.svc
    kustos write auth/kubernetes/role/app bound_service_account_names=app \\
        bound_service_account_namespaces=prod token_policies=app-read
    kustos read auth/kubernetes/role/app

``write`` takes ``key=value`` pairs: ``key=@file`` reads the value from a
file, ``key=-`` from stdin, and a key given twice becomes a list.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    Connection,
    connected,
)
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report

__all__ = ["parse_pairs", "register"]

_SECRET_AUTH_FIELDS = frozenset({"client_token"})


def parse_pairs(pairs: list[str], *, stdin_text: str | None = None) -> dict[str, Any]:
    """``["a=1", "b=@f", "a=2"]`` → ``{"a": ["1", "2"], "b": <file text>}``; raise ``ValueError`` naming the bad pair."""
    data: dict[str, Any] = {}
    stdin_used = False
    for pair in pairs:
        if pair == "-":  # a JSON object on stdin, as `vault write path -`
            if stdin_used:
                raise ValueError("only one value can be read from stdin ('-')")
            stdin_used = True
            try:
                doc = json.loads(stdin_text if stdin_text is not None else sys.stdin.read())
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"stdin is not valid JSON: {exc.msg} at line {exc.lineno}"
                ) from None
            if not isinstance(doc, dict):
                raise ValueError("stdin must hold a JSON object")
            data.update(doc)
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        if value == "-":
            if stdin_used:
                raise ValueError("only one value can be read from stdin ('-')")
            stdin_used = True
            value = (stdin_text if stdin_text is not None else sys.stdin.read()).rstrip("\n")
        elif value.startswith("@"):
            try:
                value = Path(value[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(
                    f"cannot read {value[1:]} for {key}: {exc.strerror or exc}"
                ) from None
        if key in data:
            current = data[key]
            data[key] = [*current, value] if isinstance(current, list) else [current, value]
        else:
            data[key] = value
    return data


@connected()
def write(
    connection: Connection,
    path: Annotated[
        str, typer.Argument(help="API path after /v1/, e.g. auth/kubernetes/role/app.")
    ],
    pairs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY=VALUE...", help="Fields to send; '-' alone reads JSON from stdin."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="Write even with no fields (an empty body), as `vault write -f`."
        ),
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Write data to any path (POST), like `vault write`."""
    try:
        data = parse_pairs(pairs or [])
    except ValueError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    if not data and not force:
        fail(
            "no data to write: give KEY=VALUE fields, or --force (-f) to write an empty body",
            code=EXIT_BAD_INPUT,
        )
    with connection.client() as client:
        answer = client.generic.write(path.strip("/"), data)
    shown = _shown(answer)
    if shown:
        render(shown, output)
    else:
        report(
            f"Success! Data written to: {path.strip('/')}",
            {"path": path.strip("/"), "written": True},
            output,
        )


@connected()
def read(
    connection: Connection,
    path: Annotated[
        str, typer.Argument(help="API path after /v1/, e.g. auth/kubernetes/role/app.")
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Read any path (GET), like `vault read`."""
    with connection.client() as client:
        answer = client.generic.read(path.strip("/"))
    if answer is None:
        fail(f"no value found at {path.strip('/')}")
    render(_shown(answer) or {}, output)


@connected()
def list_keys(
    connection: Connection,
    path: Annotated[str, typer.Argument(help="API path after /v1/, e.g. auth/kubernetes/role.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the keys under any path (LIST), like `vault list`."""
    with connection.client() as client:
        keys = client.generic.list(path.strip("/"))
    if not keys:
        fail(f"no entries found at {path.strip('/')}")
    render([{"key": k} for k in keys], output, columns=["key"])


@connected()
def delete(
    connection: Connection,
    path: Annotated[
        str, typer.Argument(help="API path after /v1/, e.g. auth/kubernetes/role/app.")
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete any path (DELETE), like `vault delete`."""
    with connection.client() as client:
        client.generic.delete(path.strip("/"))
    report(
        f"Success! Data deleted (if it existed) at: {path.strip('/')}",
        {"path": path.strip("/"), "deleted": True},
        output,
    )


def _shown(answer: dict[str, Any] | None) -> dict[str, Any] | None:
    """What to print of an answer: its ``data`` (with its lease, if any), or its ``auth`` (a login)."""
    if not answer:
        return None
    if isinstance(answer.get("data"), dict):
        if answer.get("lease_id"):  # a dynamic secret: its lease first, as `vault read` shows it
            return {
                "lease_id": answer["lease_id"],
                "lease_duration": answer.get("lease_duration", 0),
                "lease_renewable": answer.get("renewable", False),
                **answer["data"],
            }
        return dict(answer["data"])
    if isinstance(answer.get("auth"), dict):
        return dict(answer["auth"])
    return None


def register(app: typer.Typer) -> None:
    """Add ``kustos read``, ``write``, ``list`` and ``delete`` to the root app."""
    app.command("write")(write)
    app.command("read")(read)
    app.command("list")(list_keys)
    app.command("delete")(delete)
