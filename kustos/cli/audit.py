"""CLI area ``audit``: check and question an audit file offline.

``kustos audit verify FILE`` walks the hash chain and exits 1 naming the first
bad line; ``kustos audit search FILE`` filters entries by path, identity, time
and operation; ``kustos audit access-map FILE`` shows which identities and
workloads read which paths, how often and when last. All three read the file
directly (no server) through :mod:`kustos.audit`. See docs/audit.md.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from kustos.audit import access_map, search, verify_file
from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    Connection,
    connected,
)
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report, stderr
from kustos.sensitive import Sensitive

__all__ = ["parse_moment", "register"]

_DURATION_RE: Final = re.compile(r"^(\d+)([smhdw])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

audit_app = typer.Typer(
    name="audit",
    help="Manage the server's audit devices; verify, search and summarise audit files offline (see docs/audit.md).",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, readable=True, help="The audit file (JSON lines)."),
]


def parse_moment(value: str, *, now: datetime) -> datetime:
    """Parse ``--since``/``--until``: ISO 8601 (naive means UTC) or an age like ``30m``, ``24h``, ``7d``."""
    match = _DURATION_RE.fullmatch(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid time {value!r}: use ISO 8601 (2024-05-01T12:00:00Z) or an age such as 30m, 24h, 7d"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value, now=datetime.now(UTC))
    except ValueError as exc:
        fail(f"{option}: {exc}", code=EXIT_BAD_INPUT)


def _read_key(path: Path) -> Sensitive[bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read key file {str(path)!r}: {exc.strerror}", code=EXIT_BAD_INPUT)
    text = raw.strip()
    if re.fullmatch(rb"[0-9a-fA-F]{64}", text):
        return Sensitive(bytes.fromhex(text.decode()))
    if len(raw) == 32:
        return Sensitive(raw)
    fail(
        f"key file {str(path)!r} must hold the 32-byte device key, raw or as 64 hex digits",
        code=EXIT_BAD_INPUT,
    )


@audit_app.command("verify")
def verify(
    file: FileArgument,
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="A chain hash recorded earlier (sha256:...); it must still be in the file.",
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="The device's HMAC key (raw or hex): also checks the macs (each vouches for the lines before it; "
            "the file must end with one), which someone rewriting the file cannot forge.",
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Check the hash chain; exit 1 naming the first deleted, edited, reordered, inserted or truncated line."""
    key = _read_key(key_file) if key_file is not None else None
    size = file.stat().st_size
    with Progress(
        TextColumn("verifying"),
        BarColumn(),
        DownloadColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    ) as progress:
        task = progress.add_task("verify", total=size)
        try:
            result = verify_file(
                file,
                hmac_key=key,
                expected_head=head,
                progress=lambda done: progress.update(task, completed=done),
            )
        except OSError as exc:
            fail(f"cannot read {str(file)!r}: {exc.strerror}")
    render(result.as_dict(), output)
    if not result.ok:
        fail(f"{file}: line {result.first_bad_line}: {result.reason}")


@audit_app.command("search")
def search_command(
    file: FileArgument,
    path: Annotated[
        str | None, typer.Option("--path", help="Request path prefix, e.g. secret/data/payments/.")
    ] = None,
    who: Annotated[
        str | None,
        typer.Option(
            "--who",
            help="Part of an identity: namespace/serviceaccount, display name, accessor, metadata.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="From this time: ISO 8601 or an age (30m, 24h, 7d)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Up to this time: ISO 8601 or an age.")
    ] = None,
    operation: Annotated[
        str | None, typer.Option("--operation", help="create, read, update, patch, delete or list.")
    ] = None,
    entry_type: Annotated[
        str | None, typer.Option("--type", help="Only 'request' or only 'response' entries.")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the entries matching every filter given."""
    if entry_type is not None and entry_type not in {"request", "response"}:
        fail(f"--type must be 'request' or 'response', got {entry_type!r}", code=EXIT_BAD_INPUT)
    try:
        records = search(
            file,
            path_prefix=path,
            who=who,
            since=_moment(since, "--since"),
            until=_moment(until, "--until"),
            operation=operation,
            entry_type=entry_type,
        )
    except OSError as exc:
        fail(f"cannot read {str(file)!r}: {exc.strerror}")
    rows = [r.as_dict() for r in records]
    render(
        rows,
        output,
        columns=["line", "time", "type", "identity", "operation", "path", "status", "reason"],
    )


@audit_app.command("access-map")
def access_map_command(
    file: FileArgument,
    operation: Annotated[
        list[str] | None,
        typer.Option("--operation", help="Operations to count (repeatable); default: read."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this time: ISO 8601 or an age.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Up to this time: ISO 8601 or an age.")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Which identities and workloads read which paths: reads, denials, first and last time."""
    try:
        rows = access_map(
            file,
            operations=tuple(operation or ("read",)),
            since=_moment(since, "--since"),
            until=_moment(until, "--until"),
        )
    except OSError as exc:
        fail(f"cannot read {str(file)!r}: {exc.strerror}")
    render(
        [r.as_dict() for r in rows],
        output,
        columns=["identity", "kind", "path", "reads", "denied", "first", "last"],
    )


@audit_app.command("enable")
@connected()
def enable_command(
    connection: Connection,
    device_type: Annotated[str, typer.Argument(metavar="TYPE", help="Device type: file.")],
    options: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[OPTION=VALUE]...",
            help="Device options, e.g. file_path=/var/log/kustos/audit.log.",
        ),
    ] = None,
    path: Annotated[
        str | None, typer.Option("--path", help="Where to mount the device (default: the type).")
    ] = None,
    description: Annotated[
        str, typer.Option("--description", help="Free text shown by `audit list`.")
    ] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Enable an audit device on the server (PUT sys/audit/PATH); every request is then logged, fail-closed."""
    parsed: dict[str, str] = {}
    for position, item in enumerate(options or [], start=1):
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"device option {position} is not OPTION=VALUE", code=EXIT_BAD_INPUT)
        parsed[key] = value
    with connection.client() as client:
        client.audit.enable_audit_device(
            device_type, path=path, description=description, options=parsed
        )
    where = (path or device_type).strip("/")
    report(
        f"Enabled the {device_type} audit device at {where}/",
        {"path": f"{where}/", "type": device_type, "enabled": True},
        output,
    )


@audit_app.command("disable")
@connected()
def disable_command(
    connection: Connection,
    path: Annotated[str, typer.Argument(help="Mount path of the device, e.g. file.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Disable an audit device (DELETE sys/audit/PATH); its file is kept."""
    with connection.client() as client:
        client.audit.disable_audit_device(path)
    report(
        f"Disabled the audit device at {path.strip('/')}/",
        {"path": f"{path.strip('/')}/", "disabled": True},
        output,
    )


@audit_app.command("list")
@connected()
def list_command(
    connection: Connection,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the server's enabled audit devices (GET sys/audit)."""
    with connection.client() as client:
        devices = client.audit.list_enabled_audit_devices()
    rows = [
        {
            "path": path,
            "type": d.get("type"),
            "description": d.get("description"),
            "options": d.get("options"),
        }
        for path, d in sorted(devices.items())
    ]
    render(rows, output, columns=["path", "type", "description", "options"])


@audit_app.command("hash")
@connected()
def hash_command(
    connection: Connection,
    path: Annotated[str, typer.Argument(help="Mount path of the device, e.g. file.")],
    value: Annotated[
        str, typer.Argument(help="The value to hash ('-' reads one line from stdin).")
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print the hmac-sha256 that device writes for VALUE, to search its file (sys/audit-hash)."""
    import sys

    text = sys.stdin.readline().rstrip("\n") if value == "-" else value
    with connection.client() as client:
        hashed = client.audit.calculate_hash(path, text)
    if output is OutputFormat.table:
        typer.echo(hashed)
    else:
        render({"hash": hashed}, output)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(audit_app)
