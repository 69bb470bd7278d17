"""``kustos secrets enable|disable|list|tune|move``: secrets engines (``sys/mounts``), like ``vault secrets``.

An engine is mounted at a path (``secret/``, ``transit/``); requests under
that path go to it. This server serves KV version 2 (``kv``, ``kv-v2``) and
``transit``. ``disable`` deletes everything stored under the path; ``move``
renames the path and keeps the data (it is bound to the mount, not its name).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kustos.cli.connection import EXIT_BAD_INPUT, Connection, connected
from kustos.cli.kv import DataArgumentError, parse_pairs
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report, stderr

__all__ = ["register", "secrets_app"]

secrets_app = typer.Typer(
    name="secrets",
    help="Enable, list, tune, move and disable secrets engines (sys/mounts), like `vault secrets`.",
    no_args_is_help=True,
)

_TTL_HELP = "like 768h or 30m (0: the server's default)"


def _mount_path(path: str) -> str:
    cleaned = path.strip().strip("/")
    if not cleaned:
        fail("a mount path is required, like secret or transit", code=EXIT_BAD_INPUT)
    return cleaned


def _config(default_lease_ttl: str | None, max_lease_ttl: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if default_lease_ttl is not None:
        config["default_lease_ttl"] = default_lease_ttl
    if max_lease_ttl is not None:
        config["max_lease_ttl"] = max_lease_ttl
    return config


DefaultTtlOption = Annotated[
    str | None,
    typer.Option(
        "--default-lease-ttl", help=f"Default lease TTL, {_TTL_HELP}.", show_default=False
    ),
]
MaxTtlOption = Annotated[
    str | None,
    typer.Option("--max-lease-ttl", help=f"Maximum lease TTL, {_TTL_HELP}.", show_default=False),
]
DescriptionOption = Annotated[
    str | None,
    typer.Option("--description", help="A human-readable description.", show_default=False),
]


@secrets_app.command("enable")
@connected()
def enable(
    connection: Connection,
    engine_type: Annotated[
        str, typer.Argument(metavar="TYPE", help="kv (version 2), kv-v2 or transit.")
    ],
    path: Annotated[
        str | None,
        typer.Option(
            "--path", help="Where to mount it (default: the type's name).", show_default=False
        ),
    ] = None,
    description: DescriptionOption = None,
    version: Annotated[
        str | None,
        typer.Option("--version", help="KV version: 2 (the only one served).", show_default=False),
    ] = None,
    options: Annotated[
        list[str] | None,
        typer.Option("--options", help="key=value engine option (repeatable).", show_default=False),
    ] = None,
    default_lease_ttl: DefaultTtlOption = None,
    max_lease_ttl: MaxTtlOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Mount a secrets engine, e.g. `kustos secrets enable -path=apps kv`."""
    try:
        engine_options = parse_pairs(options, option="--options") if options else {}
    except DataArgumentError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    if version is not None:
        engine_options["version"] = version
    if engine_type in ("kv", "kv-v2"):
        engine_options.setdefault("version", "2")
    where = _mount_path(path or engine_type)
    with connection.client() as client:
        client.sys.enable_mount(
            where,
            backend_type=engine_type,
            description=description or "",
            options=engine_options,
            config=_config(default_lease_ttl, max_lease_ttl) or None,
        )
    report(
        f"Success! Enabled the {engine_type} secrets engine at: {where}/",
        {"path": f"{where}/", "type": engine_type, "options": engine_options},
        output,
    )


@secrets_app.command("disable")
@connected()
def disable(
    connection: Connection,
    path: Annotated[str, typer.Argument(help="The mount path, e.g. secret.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Unmount a secrets engine and delete everything stored under it."""
    where = _mount_path(path)
    with connection.client() as client:
        if f"{where}/" not in client.sys.list_mounts():
            fail(f"no secrets engine is mounted at {where}/")
        client.sys.disable_mount(where)
    report(
        f"Success! Disabled the secrets engine at: {where}/",
        {"path": f"{where}/", "disabled": True},
        output,
    )


@secrets_app.command("list")
@connected()
def list_(
    connection: Connection,
    detailed: Annotated[
        bool, typer.Option("--detailed", help="Also show accessors, TTLs and options.")
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the mounted secrets engines."""
    with connection.client() as client:
        mounts = client.sys.list_mounts()
    if output is not OutputFormat.table:
        render(mounts, output)
        return
    rows = []
    for path, info in sorted(mounts.items()):
        row: dict[str, Any] = {
            "path": path,
            "type": info.get("type", ""),
            "accessor": info.get("accessor", ""),
            "description": info.get("description", ""),
        }
        if detailed:
            config = info.get("config") or {}
            row.update(
                {
                    "default_lease_ttl": config.get("default_lease_ttl"),
                    "max_lease_ttl": config.get("max_lease_ttl"),
                    "options": info.get("options"),
                    "uuid": info.get("uuid"),
                }
            )
        rows.append(row)
    render(rows, output)


@secrets_app.command("tune")
@connected()
def tune(
    connection: Connection,
    path: Annotated[str, typer.Argument(help="The mount path, e.g. secret.")],
    description: DescriptionOption = None,
    default_lease_ttl: DefaultTtlOption = None,
    max_lease_ttl: MaxTtlOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a mount's description or lease TTLs (only those given) and show the result."""
    where = _mount_path(path)
    config = _config(default_lease_ttl, max_lease_ttl)
    if description is None and not config:
        fail(
            "nothing to change: pass --description, --default-lease-ttl or --max-lease-ttl",
            code=EXIT_BAD_INPUT,
        )
    with connection.client() as client:
        client.sys.tune_mount(where, description=description, **config)
        tuned = client.sys.read_mount_tune(where)
    stderr.print(f"Success! Tuned the secrets engine at: {where}/", highlight=False)
    render(tuned, output)


@secrets_app.command("move")
@connected()
def move(
    connection: Connection,
    source: Annotated[str, typer.Argument(help="The mount's current path, e.g. secret.")],
    destination: Annotated[str, typer.Argument(help="Its new path, e.g. apps.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Move a secrets engine to a new path; its data, versions and history come along."""
    old, new = _mount_path(source), _mount_path(destination)
    with connection.client() as client:
        client.sys.move_mount(old, new)
    report(
        f"Success! Moved the secrets engine {old}/ to: {new}/",
        {"from": f"{old}/", "to": f"{new}/"},
        output,
    )


def register(app: typer.Typer) -> None:
    """Add ``kustos secrets ...`` to the root app."""
    app.add_typer(secrets_app)
