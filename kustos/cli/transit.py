"""``kustos transit``: encryption as a service with a server's transit keys, like ``vault write transit/...``.

The data never stays on the server: ``encrypt`` prints ``vault:vN:...``
ciphertext for the caller to keep; ``decrypt`` gives the plaintext back;
``rotate`` adds a key version and ``rewrap`` moves old ciphertexts to it
without showing the plaintext to anyone. Keys live under a transit mount
(``--mount``, default ``transit``; enable one with
``POST /v1/sys/mounts/transit {"type": "transit"}``).

Plaintext for ``encrypt`` comes from the argument, ``--file`` or stdin
(``-`` or nothing); ``decrypt`` writes the plaintext bytes to stdout
unchanged (``-o json|yaml`` gives it base64 in a document instead).
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    Connection,
    connected,
)
from kustos.cli.output import OutputFormat, OutputOption, fail, render
from kustos.client.transit import DEFAULT_TRANSIT_MOUNT

__all__ = ["read_plaintext", "register"]

transit_app = typer.Typer(
    name="transit",
    help="Encrypt and decrypt with a server's transit keys (Vault-compatible), rotate and rewrap.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The key's name.", show_default=False)]
MountOption = Annotated[
    str, typer.Option("--mount", help="Path of the transit mount.", show_default=True)
]
ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context", help="Derivation context (text) for a derived key.", show_default=False
    ),
]
KeyVersionOption = Annotated[
    int | None,
    typer.Option(
        "--key-version",
        help="Encrypt with this key version instead of the latest.",
        show_default=False,
    ),
]


def read_plaintext(value: str | None, *, file: Path | None, stdin: Any = None) -> bytes:
    """The bytes to encrypt: ``--file``, the argument's UTF-8 text, or stdin (``-`` or no argument)."""
    if file is not None and value is not None:
        raise ValueError("give the plaintext either as an argument or with --file, not both")
    if file is not None:
        try:
            return file.expanduser().read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {file}: {exc.strerror}") from None
    if value is None or value == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        data: bytes = stream.read()
        return data
    return value.encode("utf-8")


def _context(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8")


@transit_app.command("create-key")
@connected()
def create_key(
    connection: Connection,
    name: NameArg,
    key_type: Annotated[
        str, typer.Option("--type", help="aes256-gcm96 or chacha20-poly1305.")
    ] = "aes256-gcm96",
    derived: Annotated[
        bool, typer.Option("--derived", help="Derive a key per request from a --context.")
    ] = False,
    auto_rotate_period: Annotated[
        str | None,
        typer.Option(
            "--auto-rotate-period",
            help="Rotate after this long, like 720h (at least 1h).",
            show_default=False,
        ),
    ] = None,
    mount: MountOption = DEFAULT_TRANSIT_MOUNT,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a named key (nothing changes if it exists)."""
    with connection.client() as client:
        info = client.transit.create_key(
            name, key_type=key_type, derived=derived or None, auto_rotate_period=auto_rotate_period,
            mount_point=mount,
        )  # fmt: skip
    render(dict(info), output, title=f"{mount}/keys/{name}")


@transit_app.command("list-keys")
@connected()
def list_keys(
    connection: Connection,
    mount: MountOption = DEFAULT_TRANSIT_MOUNT,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the keys of a transit mount."""
    with connection.client() as client:
        keys = client.transit.list_keys(mount_point=mount)
    render(keys, output, columns=["Key"])


@transit_app.command("read-key")
@connected()
def read_key(
    connection: Connection,
    name: NameArg,
    mount: MountOption = DEFAULT_TRANSIT_MOUNT,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a key's type, versions (with creation times) and settings; never its material."""
    with connection.client() as client:
        info = client.transit.read_key(name, mount_point=mount)
    render(dict(info), output, title=f"{mount}/keys/{name}")


@transit_app.command("rotate")
@connected()
def rotate(
    connection: Connection,
    name: NameArg,
    mount: MountOption = DEFAULT_TRANSIT_MOUNT,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Add a key version; new ciphertexts use it, old ones still decrypt (then `rewrap` them)."""
    with connection.client() as client:
        info = client.transit.rotate_key(name, mount_point=mount)
    render({"name": name, "latest_version": info.get("latest_version")}, output)


@transit_app.command("config")
@connected()
def config(
    connection: Connection,
    name: NameArg,
    min_decryption_version: Annotated[
        int | None,
        typer.Option(
            "--min-decryption-version",
            help="Refuse ciphertexts of older versions.",
            show_default=False,
        ),
    ] = None,
    min_encryption_version: Annotated[
        int | None,
        typer.Option(
            "--min-encryption-version",
            help="Refuse --key-version below this (0: latest).",
            show_default=False,
        ),
    ] = None,
    deletion_allowed: Annotated[
        bool | None,
        typer.Option(
            "--deletion-allowed/--no-deletion-allowed",
            help="Allow deleting the key.",
            show_default=False,
        ),
    ] = None,
    mount: MountOption = DEFAULT_TRANSIT_MOUNT,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a key's settings (only those given) and show the result."""
    with connection.client() as client:
        client.transit.update_key_configuration(
            name, min_decryption_version=min_decryption_version, min_encryption_version=min_encryption_version,
            deletion_allowed=deletion_allowed, mount_point=mount,
        )  # fmt: skip
        info = client.transit.read_key(name, mount_point=mount)
    render(dict(info), output, title=f"{mount}/keys/{name}")


@transit_app.command("encrypt")
@connected()
def encrypt(
    connection: Connection,
    name: NameArg,
    plaintext: Annotated[
        str | None,
        typer.Argument(help="Text to encrypt; '-' or nothing reads stdin.", show_default=False),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Encrypt this file's bytes.", show_default=False)
    ] = None,
    context: ContextOption = None,
    key_version: KeyVersionOption = None,
    mount: MountOption = DEFAULT_TRANSIT_MOUNT,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Encrypt data; print the vault:vN:... ciphertext (table: the ciphertext alone)."""
    try:
        data = read_plaintext(plaintext, file=file)
    except ValueError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    with connection.client() as client:
        result = client.transit.encrypt_data(
            name, data, context=_context(context), key_version=key_version, mount_point=mount
        )
    if output is OutputFormat.table:
        sys.stdout.write(result["ciphertext"] + "\n")
        return
    render(dict(result), output)


@transit_app.command("decrypt")
@connected()
def decrypt(
    connection: Connection,
    name: NameArg,
    ciphertext: Annotated[
        str, typer.Argument(help="A vault:vN:... ciphertext; '-' reads it from stdin.")
    ],
    context: ContextOption = None,
    mount: MountOption = DEFAULT_TRANSIT_MOUNT,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Decrypt; write the plaintext bytes to stdout (json/yaml: base64 in 'plaintext')."""
    text = sys.stdin.read().strip() if ciphertext == "-" else ciphertext.strip()
    with connection.client() as client:
        plain = client.transit.decrypt_data(
            name, text, context=_context(context), mount_point=mount
        )
    if output is OutputFormat.table:
        sys.stdout.buffer.write(plain.reveal())
        sys.stdout.buffer.flush()
        return
    render({"plaintext": base64.b64encode(plain.reveal()).decode("ascii")}, output)


@transit_app.command("rewrap")
@connected()
def rewrap(
    connection: Connection,
    name: NameArg,
    ciphertexts: Annotated[
        list[str], typer.Argument(help="vault:vN:... ciphertexts to move to the latest version.")
    ],
    context: ContextOption = None,
    key_version: KeyVersionOption = None,
    mount: MountOption = DEFAULT_TRANSIT_MOUNT,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Re-encrypt ciphertexts under the latest key version; the plaintext is never shown."""
    results: list[dict[str, Any]] = []
    with connection.client() as client:
        for text in ciphertexts:
            result = client.transit.rewrap_data(
                name,
                text.strip(),
                context=_context(context),
                key_version=key_version,
                mount_point=mount,
            )
            results.append(dict(result))
    if output is OutputFormat.table:
        sys.stdout.write("".join(r["ciphertext"] + "\n" for r in results))
        return
    render(results, output)


def register(app: typer.Typer) -> None:
    """Add ``kustos transit ...`` to the root app."""
    app.add_typer(transit_app)
