"""``kustos kv``: read and write versioned secrets in a KV v2 mount, like ``vault kv``.

Paths name the mount first: ``secret/app/db`` is path ``app/db`` in mount
``secret`` (or pass ``--mount`` and a path inside it). Data for ``put`` and
``patch`` comes as ``key=value`` pairs, ``key=@file``, ``key=-`` (stdin), a
JSON object from stdin (``-``) or a file (``@data.json`` or ``--file``).

The parsing helpers (:func:`parse_data_args`, :func:`split_path`,
:func:`parse_versions`) are pure functions, tested on their own. Secret values
reach stdout only when a command is asked to print them (``get``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    Connection,
    connected,
)
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report, stderr
from kustos.client import KustosClient, SecretMetadata
from kustos.client.histories import CHANGE_KINDS, diff_rows, history_rows
from kustos.errors import KustosError, NotFoundError, PermissionDeniedError

__all__ = [
    "DataArgumentError",
    "diff_rows",
    "history_rows",
    "parse_data_args",
    "parse_pairs",
    "parse_versions",
    "register",
    "split_path",
]

kv_app = typer.Typer(
    name="kv",
    help="Read and write versioned secrets (KV version 2), like `vault kv`.",
    no_args_is_help=True,
)
metadata_app = typer.Typer(
    name="metadata",
    help="Read and change a secret's settings and version history.",
    no_args_is_help=True,
)
kv_app.add_typer(metadata_app)


class DataArgumentError(ValueError):
    """A ``key=value`` argument, a file or stdin could not be turned into secret data."""


# ---------------------------------------------------------------- parsing


def split_path(path: str, *, mount: str | None, allow_mount_only: bool = False) -> tuple[str, str]:
    """Split ``secret/app/db`` into ``("secret", "app/db")``; with ``mount``, the whole path is inside it."""
    cleaned = path.strip().strip("/")
    if mount is not None:
        mount_name = mount.strip().strip("/")
        if not mount_name:
            raise DataArgumentError("--mount must not be empty")
        if not cleaned and not allow_mount_only:
            raise DataArgumentError("a secret path is required")
        return mount_name, cleaned
    if not cleaned:
        raise DataArgumentError(
            "a path is required, like secret/app/db (the first segment is the mount)"
        )
    mount_name, _, rest = cleaned.partition("/")
    if not rest and not allow_mount_only:
        raise DataArgumentError(
            f"{path!r} names only a mount: give the secret's path too, like {mount_name}/app/db, "
            "or pass --mount and a path"
        )
    if any(seg in {"", ".", ".."} for seg in rest.split("/")) and rest:
        raise DataArgumentError(
            f"invalid path {path!r}: empty, '.' or '..' segments are not allowed"
        )
    return mount_name, rest


def _read_file(path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataArgumentError(f"file not found: {path}") from None
    except UnicodeDecodeError:
        raise DataArgumentError(f"file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise DataArgumentError(f"cannot read {path}: {exc.strerror}") from None


def _json_object(text: str, *, source: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataArgumentError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise DataArgumentError(f"{source} must hold a JSON object, got {type(value).__name__}")
    return value


class _Stdin:
    """Stdin that may be consumed once, by one argument."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._used_by: str | None = None

    def read(self, *, by: str) -> str:
        if self._used_by is not None:
            raise DataArgumentError(
                f"stdin can be read only once: both {self._used_by!r} and {by!r} ask for it"
            )
        self._used_by = by
        return self._stream.read()


def parse_data_args(
    args: Sequence[str], *, stdin: IO[str], file: str | None = None
) -> dict[str, Any]:
    """Turn ``put``/``patch`` arguments into the secret's data.

    * ``key=value``: a string value (the first ``=`` splits; the value may contain more);
    * ``key=@path``: the value is the file's text, unchanged (trailing newline kept, like Vault);
    * ``key=-``: the value is all of stdin;
    * ``-``: stdin holds a JSON object, merged in;
    * ``@path`` or ``file``: the file holds a JSON object, merged in (``-`` means stdin).

    Later arguments override earlier ones. Raises :class:`DataArgumentError`
    naming the argument at fault; the message never contains a value.
    """
    reader = _Stdin(stdin)
    data: dict[str, Any] = {}
    if file is not None:
        text = reader.read(by="--file -") if file == "-" else _read_file(file)
        data.update(_json_object(text, source="stdin" if file == "-" else file))
    for position, arg in enumerate(args, start=1):
        if arg == "-":
            data.update(_json_object(reader.read(by="-"), source="stdin"))
            continue
        if arg.startswith("@"):
            data.update(_json_object(_read_file(arg[1:]), source=arg[1:]))
            continue
        key, sep, value = arg.partition("=")
        if not sep:
            raise DataArgumentError(
                f"data argument {position} is not key=value, key=@file, key=-, - or @file.json "
                "(its text is not shown: it may be a secret)"
            )
        if not key:
            raise DataArgumentError("an argument has an empty key before '='")
        if value == "-":
            data[key] = reader.read(by=f"{key}=-")
        elif value.startswith("@"):
            data[key] = _read_file(value[1:])
        else:
            data[key] = value
    if not data:
        raise DataArgumentError(
            "no data given: pass key=value pairs, '-' for JSON on stdin, or --file"
        )
    return data


def parse_pairs(pairs: Sequence[str], *, option: str) -> dict[str, str]:
    """Parse repeated ``k=v`` option values (``--custom-metadata``, ``--meta``)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DataArgumentError(f"{option} expects key=value, got {pair!r}")
        out[key] = value
    return out


def parse_versions(text: str | None, *, required: bool) -> list[int]:
    """Parse ``--versions 1,2,5`` into ``[1, 2, 5]``."""
    if text is None or not text.strip():
        if required:
            raise DataArgumentError("--versions is required, like --versions 1,2")
        return []
    versions: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise DataArgumentError(
                f"--versions expects positive integers separated by commas, got {part!r}"
            )
        versions.append(int(part))
    return versions


# ---------------------------------------------------------------- commands

PathArg = Annotated[
    str,
    typer.Argument(
        help="Secret path; the first segment is the mount (secret/app/db).", show_default=False
    ),
]
MountOption = Annotated[
    str | None,
    typer.Option(
        "--mount", help="Mount of the secret; the path is then inside it.", show_default=False
    ),
]
DataArgs = Annotated[
    list[str] | None,
    typer.Argument(
        help="key=value, key=@file, key=- (stdin), - (JSON on stdin) or @file.json.",
        show_default=False,
    ),
]
DataFileOption = Annotated[
    str | None,
    typer.Option(
        "--file",
        "-f",
        help="Read the data as a JSON object from this file ('-' for stdin).",
        show_default=False,
    ),
]
ReasonOption = Annotated[
    str | None,
    typer.Option(
        "--reason", help="Why this change is made (kept in the history).", show_default=False
    ),
]


def _values(data: list[str] | None, file: str | None) -> dict[str, Any]:
    try:
        return parse_data_args(data or [], stdin=sys.stdin, file=file)
    except DataArgumentError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)


def _split(path: str, mount: str | None, *, allow_mount_only: bool = False) -> tuple[str, str]:
    try:
        return split_path(path, mount=mount, allow_mount_only=allow_mount_only)
    except DataArgumentError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)


def _show_write(result: Mapping[str, Any], fmt: OutputFormat, *, where: str, verb: str) -> None:
    if fmt is OutputFormat.table:
        stderr.print(f"{verb} {where}, version {result.get('version')}", highlight=False)
    render(dict(result), fmt)


def _versions_text(versions: Sequence[int]) -> str:
    return ("version " if len(versions) == 1 else "versions ") + ", ".join(map(str, versions))


def _display(mount: str, path: str) -> str:
    return f"{mount}/{path}" if path else f"{mount}/"


def _mount_missing(client: KustosClient, mount: str) -> str | None:
    """If ``mount`` is not a mounted engine, say so and list the mounts; else ``None``."""
    try:
        mounts = client.sys.list_mounts()
    except KustosError:
        return None
    if f"{mount}/" in mounts:
        return None
    kv_mounts = sorted(k for k, v in mounts.items() if v.get("type") == "kv")
    return f"no secrets engine is mounted at {mount}/ (KV mounts: {', '.join(kv_mounts) or 'none'})"


def _metadata(client: KustosClient, mount: str, path: str) -> SecretMetadata:
    """The secret's metadata; a missing secret (or mount) ends the command saying which."""
    try:
        return client.kv_v2.read_metadata(path, mount_point=mount)
    except NotFoundError:
        fail(_mount_missing(client, mount) or f"no secret at {_display(mount, path)}")


def _not_found(client: KustosClient, mount: str, path: str, version: int | None) -> str:
    """Explain a 404 on a data read: missing, or a deleted/destroyed version."""
    where = _display(mount, path)
    try:
        meta = client.kv_v2.read_metadata(path, mount_point=mount)
    except NotFoundError:
        return _mount_missing(client, mount) or f"no secret at {where}"
    wanted = version if version is not None else meta.get("current_version")
    info = (meta.get("versions") or {}).get(str(wanted), {})
    if info.get("destroyed"):
        return f"version {wanted} of {where} was destroyed and cannot be recovered"
    if info.get("deletion_time"):
        return f"version {wanted} of {where} was deleted at {info['deletion_time']}; restore it with `kustos kv undelete --versions {wanted} {where}`"
    return f"{where} has no version {wanted}"


CasOption = Annotated[
    int | None,
    typer.Option(
        "--cas",
        help="Write only if the current version is this one (put: 0 means only if absent).",
        show_default=False,
    ),
]


def _write_command(*, patch: bool) -> Callable[..., None]:
    """``kv put`` (replace all keys) or ``kv patch`` (change the given keys): the same options."""

    @connected()
    def command(
        connection: Connection,
        path: PathArg,
        data: DataArgs = None,
        file: DataFileOption = None,
        cas: CasOption = None,
        reason: ReasonOption = None,
        mount: MountOption = None,
        output: OutputOption = OutputFormat.table,
    ) -> None:
        mount_name, secret = _split(path, mount)
        where = _display(mount_name, secret)
        values = _values(data, file)
        with connection.client() as client:
            write = client.kv_v2.patch if patch else client.kv_v2.create_or_update_secret
            try:
                result = write(secret, values, cas=cas, reason=reason, mount_point=mount_name)
            except NotFoundError:
                fail(
                    f"no secret at {where} to patch; create it with `kustos kv put`"
                    if patch
                    else _mount_missing(client, mount_name) or f"cannot write {where}: not found"
                )
        _show_write(result, output, where=where, verb="Patched" if patch else "Wrote")

    command.__doc__ = (
        "Write a new version that changes only the given keys (JSON merge patch; null removes a key)."
        if patch
        else "Write a new version of a secret (replacing all its keys)."
    )
    return command


kv_app.command("put")(_write_command(patch=False))
kv_app.command("patch")(_write_command(patch=True))


@kv_app.command("get")
@connected()
def get(
    connection: Connection,
    path: PathArg,
    version: Annotated[
        int | None,
        typer.Option(
            "--version", help="Read this version instead of the latest.", show_default=False
        ),
    ] = None,
    field: Annotated[
        str | None,
        typer.Option(
            "--field", help="Print only this key's value, unformatted.", show_default=False
        ),
    ] = None,
    mount: MountOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Read a secret (the latest version, or --version N) and print its data."""
    mount_name, secret = _split(path, mount)
    with connection.client() as client:
        try:
            result = client.kv_v2.read_secret_version(
                secret, version=version, mount_point=mount_name
            )
        except NotFoundError:
            fail(_not_found(client, mount_name, secret, version))
    values = result.get("data") or {}
    if field is not None:
        if field not in values:
            fail(
                f"{_display(mount_name, secret)} has no key {field!r} (keys: {', '.join(sorted(values)) or 'none'})"
            )
        value = values[field]
        sys.stdout.write((value if isinstance(value, str) else json.dumps(value)) + "\n")
        return
    if output is OutputFormat.table:
        render(
            dict(result.get("metadata") or {}),
            output,
            title=f"{_display(mount_name, secret)} (metadata)",
        )
        render(values, output, title="Data")
        return
    render({"data": values, "metadata": result.get("metadata")}, output)


@kv_app.command("list")
@connected()
def list_(
    connection: Connection,
    path: PathArg,
    mount: MountOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the secrets and folders (ending in /) below a path, like `secret/` or `secret/app`."""
    mount_name, prefix = _split(path, mount, allow_mount_only=True)
    with connection.client() as client:
        try:
            keys = client.kv_v2.list_secrets(prefix, mount_point=mount_name)
        except NotFoundError:
            fail(
                _mount_missing(client, mount_name)
                or f"nothing below {_display(mount_name, prefix)}"
            )
    render(keys, output, columns=["Keys"])


def _wanted(versions: str | None, *, required: bool) -> list[int]:
    try:
        return parse_versions(versions, required=required)
    except DataArgumentError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)


def _version_states(
    client: KustosClient, mount: str, path: str, wanted: Sequence[int]
) -> tuple[SecretMetadata, dict[int, str]]:
    """The secret's metadata and, per wanted version, ``live``, ``deleted`` or ``destroyed``.

    A missing secret, or a version it never had, ends the command naming it.
    """
    where = _display(mount, path)
    meta = _metadata(client, mount, path)
    versions = meta.get("versions") or {}
    missing = [v for v in wanted if str(v) not in versions]
    if missing:
        known = ", ".join(sorted(versions, key=int)) or "none"
        fail(f"{where} has no {_versions_text(missing)} (versions: {known})")
    states: dict[int, str] = {}
    for number in wanted:
        info = versions[str(number)] or {}
        states[number] = (
            "destroyed"
            if info.get("destroyed")
            else "deleted"
            if info.get("deletion_time")
            else "live"
        )
    return meta, states


VersionsOption = Annotated[
    str | None,
    typer.Option(
        "--versions",
        help="Comma-separated versions, like 1,3 (kv delete: default the latest).",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class _VersionChange:
    """What ``kv delete``, ``kv undelete`` or ``kv destroy`` does to the versions it is given."""

    name: str
    doc: str
    done: str
    """Past tense for the report: "Deleted", "Restored", "Destroyed"."""
    changes: frozenset[str]
    """The version states it changes; the others are reported unchanged."""
    refuses: str | None
    """A state that makes the command fail (a destroyed version cannot be restored)."""
    call: Callable[[KustosClient, str, list[int], str], None]
    latest_by_default: bool = False


def _change_versions(
    change: _VersionChange,
    connection: Connection,
    path: str,
    versions: str | None,
    mount: str | None,
    output: OutputFormat,
) -> None:
    mount_name, secret = _split(path, mount)
    where = _display(mount_name, secret)
    wanted = _wanted(versions, required=not change.latest_by_default)
    with connection.client() as client:
        meta, states = _version_states(client, mount_name, secret, wanted)
        if not wanted:
            latest = int(meta.get("current_version") or 0)
            wanted = [latest]
            _, states = _version_states(client, mount_name, secret, wanted)
            if states[latest] not in change.changes:
                fail(f"the latest version ({latest}) of {where} is already {states[latest]}")
        refused = [v for v in wanted if states[v] == change.refuses]
        if refused:
            fail(
                f"{_versions_text(refused)} of {where} was {change.refuses} and cannot be restored"
            )
        changed = [v for v in wanted if states[v] in change.changes]
        if changed:
            change.call(client, secret, changed, mount_name)
    unchanged = {
        state: [v for v in wanted if states[v] == state and v not in changed]
        for state in ("live", "deleted", "destroyed")
    }
    notes = [
        f"{_versions_text(numbers)} {'is' if len(numbers) == 1 else 'are'} "
        + ("not deleted" if state == "live" else f"already {state}")
        for state, numbers in unchanged.items()
        if numbers
    ]
    note = "; ".join(notes)
    report(
        f"{change.done} {_versions_text(changed)} of {where}" + (f" ({note})" if note else "")
        if changed
        else f"Nothing {change.done.lower()}: {note} at {where}",
        {
            "path": where,
            change.done.lower(): changed,
            "unchanged": [v for v in wanted if v not in changed],
        },
        output,
    )


def _version_command(change: _VersionChange) -> Callable[..., None]:
    """The Typer command for ``change`` (the three commands share their options)."""

    @connected()
    def command(
        connection: Connection,
        path: PathArg,
        versions: VersionsOption = None,
        mount: MountOption = None,
        output: OutputOption = OutputFormat.table,
    ) -> None:
        _change_versions(change, connection, path, versions, mount, output)

    command.__doc__ = change.doc
    command.__name__ = change.name
    return command


_DELETE = _VersionChange(
    name="delete",
    doc="Soft-delete the latest version, or the given ones (`kv undelete` restores them).",
    done="Deleted",
    changes=frozenset({"live"}),
    refuses=None,
    call=lambda c, path, versions, mount: c.kv_v2.delete_versions(
        path, versions, mount_point=mount
    ),
    latest_by_default=True,
)
_UNDELETE = _VersionChange(
    name="undelete",
    doc="Restore soft-deleted versions (a destroyed version cannot be restored).",
    done="Restored",
    changes=frozenset({"deleted"}),
    refuses="destroyed",
    call=lambda c, path, versions, mount: c.kv_v2.undelete_versions(
        path, versions, mount_point=mount
    ),
)
_DESTROY = _VersionChange(
    name="destroy",
    doc="Erase the given versions permanently (they cannot be undeleted).",
    done="Destroyed",
    changes=frozenset({"live", "deleted"}),
    refuses=None,
    call=lambda c, path, versions, mount: c.kv_v2.destroy_versions(
        path, versions, mount_point=mount
    ),
)
for _change in (_DELETE, _UNDELETE, _DESTROY):
    kv_app.command(_change.name)(_version_command(_change))


@kv_app.command("rollback")
@connected()
def rollback(
    connection: Connection,
    path: PathArg,
    version: Annotated[
        int,
        typer.Option(
            "--version",
            help="The version whose data becomes the new latest version.",
            show_default=False,
        ),
    ],
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", help="Why (default: 'rollback to version N').", show_default=False
        ),
    ] = None,
    mount: MountOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Write the data of an older version as a new version (check-and-set against the current one)."""
    mount_name, secret = _split(path, mount)
    where = _display(mount_name, secret)
    if version < 1:
        fail(f"--version must be 1 or more, got {version}", code=EXIT_BAD_INPUT)
    with connection.client() as client:
        meta = _metadata(client, mount_name, secret)
        current = int(meta.get("current_version") or 0)
        if version == current:
            fail(
                f"version {version} is already the current version of {where}", code=EXIT_BAD_INPUT
            )
        try:
            old = client.kv_v2.read_secret_version(secret, version=version, mount_point=mount_name)
        except NotFoundError:
            fail(f"cannot roll back: {_not_found(client, mount_name, secret, version)}")
        if old.get("data") is None:
            fail(
                f"cannot roll back: version {version} of {where} has no data (deleted or destroyed)"
            )
        result = client.kv_v2.create_or_update_secret(
            secret,
            old["data"] or {},
            cas=current,
            reason=reason if reason is not None else f"rollback to version {version}",
            mount_point=mount_name,
        )
    _show_write(result, output, where=where, verb=f"Rolled back (data of version {version}) to")


@kv_app.command("history")
@connected()
def history(
    connection: Connection,
    path: PathArg,
    mount: MountOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show every version of a secret: when, who and why, and which keys it added, changed or removed (never values)."""
    mount_name, secret = _split(path, mount)
    with connection.client() as client:
        meta = _metadata(client, mount_name, secret)
    rows = history_rows(meta)
    render(
        _for_table(rows) if output is OutputFormat.table else rows,
        output,
        title=f"History of {_display(mount_name, secret)}",
    )


@kv_app.command("diff")
@connected()
def diff(
    connection: Connection,
    path: PathArg,
    first: Annotated[int, typer.Argument(help="The earlier version.", min=1)],
    second: Annotated[int, typer.Argument(help="The later version.", min=1)],
    show_values: Annotated[
        bool,
        typer.Option(
            "--show-values", help="Also print the old and new values (needs read permission)."
        ),
    ] = False,
    mount: MountOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show which keys differ between two versions, with who wrote the later one and why; values only with --show-values."""
    mount_name, secret = _split(path, mount)
    where = _display(mount_name, secret)
    with connection.client() as client:
        meta = _metadata(client, mount_name, secret)
        versions = meta.get("versions") or {}
        for number in (first, second):
            if str(number) not in versions:
                fail(
                    f"{where} has no version {number} (versions: {', '.join(sorted(versions, key=int))})"
                )
        pair: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None
        try:
            if show_values:
                read = [
                    client.kv_v2.read_secret_version(secret, version=n, mount_point=mount_name)
                    for n in (first, second)
                ]
                pair = (read[0].get("data") or {}, read[1].get("data") or {})
                keys = (pair[0], pair[1])
            else:
                keys = (
                    client.kv_v2.read_subkeys(
                        secret, version=first, depth=1, mount_point=mount_name
                    ).get("subkeys")
                    or {},
                    client.kv_v2.read_subkeys(
                        secret, version=second, depth=1, mount_point=mount_name
                    ).get("subkeys")
                    or {},
                )
        except PermissionDeniedError:
            what = "read the values (data)" if show_values else "read the key names (subkeys)"
            fail(
                f"permission denied: --show-values needs read on {mount_name}/data/{secret}"
                if show_values
                else f"permission denied: diff needs read on {mount_name}/subkeys/{secret} to {what}"
            )
        except NotFoundError:
            fail(
                f"version {first} or {second} of {where} was deleted or destroyed; undelete it first or pick another"
            )
    rows = diff_rows(meta, keys[0], keys[1], first=first, second=second, values=pair)
    later = versions[str(max(first, second))]
    if output is OutputFormat.table:
        who = later.get("identity") or later.get("created_by") or "?"
        stderr.print(
            f"{where}: version {first} -> {second}, version {max(first, second)} by {who}: {later.get('reason') or '(no reason given)'}",
            highlight=False,
        )
        render(
            rows, output, columns=["key", "change", *([f"v{first}", f"v{second}"] if pair else [])]
        )
    else:
        render(
            {
                "path": where,
                "from": first,
                "to": second,
                "who": later.get("identity") or later.get("created_by"),
                "reason": later.get("reason"),
                "keys": rows,
            },
            output,
        )


def _short_time(value: Any) -> Any:
    """``2026-11-23T13:59:03.447272Z`` -> ``2026-11-23T13:59:03Z`` (tables only; JSON/YAML keep the full value)."""
    if isinstance(value, str) and len(value) > 20 and value[10] == "T":
        return f"{value[:19]}Z"
    return value


def _table_cell(key: str, value: Any) -> Any:
    if key in ("created", "deleted"):
        return _short_time(value)
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if value is None and key in CHANGE_KINDS:
        return "?"
    return "" if value is None else value


def _for_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _table_cell(k, v) for k, v in row.items()} for row in rows]


# ---------------------------------------------------------------- metadata


def _settings_of(meta: SecretMetadata) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k != "versions"}


@metadata_app.command("get")
@connected()
def metadata_get(
    connection: Connection,
    path: PathArg,
    mount: MountOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a secret's settings, custom metadata and versions."""
    mount_name, secret = _split(path, mount)
    with connection.client() as client:
        meta = _metadata(client, mount_name, secret)
    if output is OutputFormat.table:
        render(_settings_of(meta), output, title=f"{_display(mount_name, secret)} (metadata)")
        render(_for_table(history_rows(meta)), output, title="Versions")
        return
    render(dict(meta), output)


@metadata_app.command("put")
@connected()
def metadata_put(
    connection: Connection,
    path: PathArg,
    max_versions: Annotated[
        int | None,
        typer.Option(
            "--max-versions", help="Versions to keep (0: the mount's setting).", show_default=False
        ),
    ] = None,
    cas_required: Annotated[
        bool | None,
        typer.Option(
            "--cas-required/--no-cas-required",
            help="Require --cas on every write.",
            show_default=False,
        ),
    ] = None,
    delete_version_after: Annotated[
        str | None,
        typer.Option(
            "--delete-version-after",
            help="Soft-delete versions this long after they are written (e.g. 720h; 0s: never).",
            show_default=False,
        ),
    ] = None,
    custom_metadata: Annotated[
        list[str] | None,
        typer.Option(
            "--custom-metadata",
            help="key=value, repeatable; replaces the whole custom metadata.",
            show_default=False,
        ),
    ] = None,
    mount: MountOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a secret's settings (only the options given) and its custom metadata."""
    mount_name, secret = _split(path, mount)
    if max_versions is not None and max_versions < 0:
        fail(f"--max-versions must be 0 or more, got {max_versions}", code=EXIT_BAD_INPUT)
    try:
        custom = (
            parse_pairs(custom_metadata, option="--custom-metadata") if custom_metadata else None
        )
    except DataArgumentError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    if (
        max_versions is None
        and cas_required is None
        and delete_version_after is None
        and custom is None
    ):
        fail(
            "nothing to change: pass --max-versions, --cas-required, --delete-version-after or --custom-metadata",
            code=EXIT_BAD_INPUT,
        )
    with connection.client() as client:
        client.kv_v2.update_metadata(
            secret,
            max_versions=max_versions,
            cas_required=cas_required,
            delete_version_after=delete_version_after,
            custom_metadata=custom,
            mount_point=mount_name,
        )
    report(
        f"Updated the metadata of {_display(mount_name, secret)}",
        {
            "path": _display(mount_name, secret),
            "max_versions": max_versions,
            "cas_required": cas_required,
            "delete_version_after": delete_version_after,
            "custom_metadata": custom,
        },
        output,
    )


@metadata_app.command("delete")
@connected()
def metadata_delete(
    connection: Connection,
    path: PathArg,
    mount: MountOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete a secret entirely: its metadata and every version, for good."""
    mount_name, secret = _split(path, mount)
    with connection.client() as client:
        client.kv_v2.delete_metadata_and_all_versions(secret, mount_point=mount_name)
    report(
        f"Deleted {_display(mount_name, secret)} and all its versions",
        {"path": _display(mount_name, secret), "deleted": True},
        output,
    )


def register(app: typer.Typer) -> None:
    """Add ``kustos kv ...`` to the root app."""
    app.add_typer(kv_app)
