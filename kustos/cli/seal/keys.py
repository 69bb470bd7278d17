"""``kustos seal keys list|rotate|cert|backup|import|config|generate``: the sealing keys.

The keys a Kustos server holds (stored encrypted by its barrier; the server is
named by ``--address``/``--server`` or ``$KUSTOS_ADDR``), or a local keyring
file with ``--keyring`` (``generate`` is local only). Backups are encrypted
for age recipients or with a passphrase; keyrings and backups are written
with mode 0600.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from kustos.cli.connection import Connection, connected
from kustos.cli.output import OutputFormat, OutputOption, fail, render, stderr
from kustos.cli.seal.inputs import (
    PASSPHRASE_ENV,
    age_identities,
    backup_passphrase,
    is_keyring,
    load_keyring,
    save_keyring,
    split_refs,
    write_output,
)
from kustos.crypto.sealing import generate_sealing_key
from kustos.errors import KustosError
from kustos.gitops.sealing import (
    RenewalPolicy,
    SealingKeyEntry,
    SealingKeyring,
    import_sealed_secrets_keys,
    is_backup,
    load_manifests,
    read_backup,
    renew,
    write_backup,
)

__all__ = ["keys_app"]


def _now() -> datetime:
    return datetime.now(UTC)


KeyringOption = Annotated[
    Path,
    typer.Option(
        "--keyring",
        envvar="KUSTOS_SEALING_KEYRING",
        help="Local keyring file (JSON, holds private keys: mode 0600).",
    ),
]
LocalOrServerKeyring = Annotated[
    Path | None,
    typer.Option(
        "--keyring",
        envvar="KUSTOS_SEALING_KEYRING",
        help="Local keyring file (offline mode); without it the command talks to the server.",
        show_default=False,
    ),
]
_SERVER = ("--address", "--server")
"""The keys' server is named by ``--address`` (or ``--server``), like every command's."""


def _server_mode(keyring: Path | None, connection: Connection) -> bool:
    """Server mode unless a local ``--keyring`` is given; a server address must be known then."""
    if keyring is not None:
        return False
    if connection.address or os.environ.get("KUSTOS_ADDR") or os.environ.get("VAULT_ADDR"):
        return True
    fail(
        "no keyring: pass --keyring FILE (local keys) or --address URL / $KUSTOS_ADDR "
        "(keys held by a Kustos server)",
        code=2,
    )


_KEY_COLUMNS = ["key_id", "created", "not_after", "bits", "origin", "active"]


def _parse_duration(text: str) -> timedelta:
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    text = text.strip()
    if text[-1:] in units and text[:-1].isdigit():
        return timedelta(**{units[text[-1]]: int(text[:-1])})
    fail(f"invalid duration {text!r} (use e.g. 30d, 720h)")


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"invalid time {text!r} (use RFC 3339, e.g. 2025-01-31T00:00:00Z)")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _keys_generate(
    keyring_path: KeyringOption,
    bits: Annotated[int, typer.Option("--bits", help="RSA key size.")] = 4096,
    if_due: Annotated[
        bool,
        typer.Option("--if-due", help="Only add a key when the renewal policy says one is due."),
    ] = False,
    period: Annotated[
        str,
        typer.Option("--renew-period", help="Renewal period for --if-due (e.g. 30d; 0 disables)."),
    ] = "30d",
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--key-cutoff-time", help="A newest key older than this is replaced (RFC 3339)."
        ),
    ] = None,
    cert_out: Annotated[
        Path | None,
        typer.Option("--cert-out", help="Also write the newest certificate (PEM) here."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Add a sealing key (RSA + self-signed certificate) to a local keyring file."""
    now = _now()
    keyring = load_keyring(keyring_path, must_exist=False)
    policy = RenewalPolicy(
        period=None if period.strip() in ("0", "0d") else _parse_duration(period),
        cutoff=_parse_time(cutoff) if cutoff else None,
    )
    if not if_due:
        policy = RenewalPolicy(period=timedelta(microseconds=1), cutoff=None)
    try:
        with stderr.status(f"generating an RSA-{bits} sealing key"):
            keyring, entry = renew(
                keyring,
                policy=policy,
                now=now,
                generate=lambda t: generate_sealing_key(now=t, bits=bits),
            )
    except KustosError as exc:
        fail(str(exc))
    if entry is not None:
        save_keyring(keyring_path, keyring)
    if cert_out is not None:
        write_output(keyring.sealing_certificate().pem().decode(), str(cert_out))
    render({"generated": entry is not None, **(entry or keyring.entries[-1]).describe()}, output)


def _local_rows(keyring: SealingKeyring) -> list[dict[str, Any]]:
    newest = keyring.newest
    return [
        {
            "key_id": e.key_id,
            "created": e.created_at.isoformat(),
            "not_after": e.certificate.not_after.isoformat(),
            "bits": e.certificate.key_size,
            "origin": e.origin,
            "active": e is newest,
        }
        for e in keyring.entries
    ]


@connected(address_flags=_SERVER)
def _keys_list(
    connection: Connection,
    keyring_path: LocalOrServerKeyring = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the sealing keys (the active one seals, all unseal): on the server, or in --keyring."""
    if _server_mode(keyring_path, connection):
        with connection.client() as client:
            rows: list[dict[str, Any]] = [dict(k) for k in client.sealing.list_keys()]
    else:
        assert keyring_path is not None  # noqa: S101 - _server_mode returned False
        rows = _local_rows(load_keyring(keyring_path))
    render(rows, output, columns=_KEY_COLUMNS)


@connected(token=False, address_flags=_SERVER)
def _keys_cert(
    connection: Connection,
    keyring_path: LocalOrServerKeyring = None,
    rsa_only: Annotated[
        bool,
        typer.Option(
            "--rsa-only",
            help="Only the RSA certificate (what /v1/cert.pem serves), no X25519 exchange cert.",
        ),
    ] = False,
) -> None:
    """Print the sealing certificate bundle: the newest RSA cert and its X25519 exchange cert."""
    if _server_mode(keyring_path, connection):
        with connection.client() as client:
            pem = (
                client.sealing.read_certificate()
                if rsa_only
                else client.sealing.read_certificate_bundle()
            )
        sys.stdout.write(pem.decode())
        return
    assert keyring_path is not None  # noqa: S101
    try:
        keyring = load_keyring(keyring_path)
        bundle = keyring.sealing_bundle()
        sys.stdout.write((bundle.pem() if rsa_only else bundle.bundle_pem()).decode())
    except KustosError as exc:
        fail(str(exc))


@connected(address_flags=_SERVER)
def _keys_rotate(
    connection: Connection,
    keyring_path: LocalOrServerKeyring = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Make a new sealing key now (old keys stay for unsealing)."""
    if _server_mode(keyring_path, connection):
        with (
            connection.client() as client,
            stderr.status("generating a sealing key on the server"),
        ):
            info = dict(client.sealing.rotate_key())
        render(info, output)
        return
    assert keyring_path is not None  # noqa: S101
    keyring = load_keyring(keyring_path, must_exist=False)
    with stderr.status("generating an RSA-4096 sealing key"):
        keyring, _ = renew(
            keyring, policy=RenewalPolicy(period=timedelta(microseconds=1)), now=_now()
        )
    save_keyring(keyring_path, keyring)
    render(_local_rows(keyring)[-1], output)


@connected(address_flags=_SERVER)
def _keys_config(
    connection: Connection,
    renew_period: Annotated[
        str | None,
        typer.Option("--renew-period", help="Renewal period (e.g. 30d, 720h; 0 disables)."),
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--key-cutoff-time",
            help="RFC 3339 time: a newest key made before it is replaced at once ('' clears).",
        ),
    ] = None,
    key_bits: Annotated[
        int | None, typer.Option("--key-bits", help="Size of new RSA sealing keys (>= 2048).")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show or change the server's sealing key renewal settings."""
    with connection.client() as client:
        if renew_period is None and cutoff is None and key_bits is None:
            config = client.sealing.read_config()
        else:
            config = client.sealing.configure(
                renew_period=renew_period, key_cutoff_time=cutoff, key_bits=key_bits
            )
    render(config, output)


@connected(address_flags=_SERVER)
def _keys_backup(
    connection: Connection,
    write: Annotated[
        Path, typer.Option("--write", "-w", help="Where to write the encrypted bundle.")
    ],
    age_recipient: Annotated[
        list[str] | None,
        typer.Option("--age-recipient", help="age X25519 recipient (age1...); repeatable."),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option("--passphrase-file", help=f"Passphrase file (or ${PASSPHRASE_ENV})."),
    ] = None,
    keyring_path: LocalOrServerKeyring = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Write an encrypted backup bundle of every key (age or passphrase); the server's needs sudo."""
    recipients = split_refs(age_recipient)
    passphrase = None if recipients else backup_passphrase(passphrase_file)
    if not recipients and passphrase is None:
        fail(
            f"give --age-recipient or a passphrase (--passphrase-file or ${PASSPHRASE_ENV})",
            code=2,
        )
    if _server_mode(keyring_path, connection):
        with connection.client() as client:
            answer = client.sealing.backup_keys(
                passphrase=passphrase.reveal() if passphrase is not None else None,
                age_recipients=recipients,
            )
        write_output(str(answer["backup"]), str(write), private=True)
        render(
            {
                "written": str(write),
                "keys": answer.get("keys"),
                "encryption": answer.get("encryption"),
            },
            output,
        )
        return
    assert keyring_path is not None  # noqa: S101
    keyring = load_keyring(keyring_path)
    try:
        bundle = write_backup(keyring, passphrase=passphrase, age_recipients=recipients)
    except KustosError as exc:
        fail(str(exc))
    write_output(bundle.decode(), str(write), private=True)
    render(
        {
            "written": str(write),
            "keys": len(keyring),
            "encryption": "age" if recipients else "passphrase",
        },
        output,
    )


@connected(address_flags=_SERVER)
def _keys_import(
    connection: Connection,
    files: Annotated[
        list[Path],
        typer.Option(
            "--file",
            "-f",
            help="Sealed Secrets key Secrets (YAML/JSON/List), a key backup, or a keyring; repeatable.",
        ),
    ],
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", help=f"Passphrase of a key backup (or ${PASSPHRASE_ENV})."
        ),
    ] = None,
    age_identity: Annotated[
        list[Path] | None,
        typer.Option("--age-identity", help="age identity file for an age backup."),
    ] = None,
    keyring_path: LocalOrServerKeyring = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Import Sealed Secrets key Secrets or a backup bundle (into the server: sudo; or --keyring)."""
    if _server_mode(keyring_path, connection):
        _import_to_server(
            files,
            passphrase_file=passphrase_file,
            age_identity=age_identity,
            connection=connection,
            output=output,
        )
        return
    assert keyring_path is not None  # noqa: S101
    keyring = load_keyring(keyring_path, must_exist=False)
    new: list[SealingKeyEntry] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
        try:
            if is_backup(data):
                new.extend(
                    read_backup(
                        data,
                        passphrase=backup_passphrase(passphrase_file),
                        age_identities=age_identities(age_identity),
                    ).entries
                )
            elif is_keyring(data):
                new.extend(SealingKeyring.from_bytes(data).entries)
            else:
                new.extend(import_sealed_secrets_keys(load_manifests(data, source=str(path))))
        except KustosError as exc:
            fail(f"{path}: {exc}")
    before = {e.key_id for e in keyring.entries}
    keyring = keyring.with_entries(new)
    save_keyring(keyring_path, keyring)
    render(
        [{**e.describe(), "imported": e.key_id not in before} for e in new],
        output,
        columns=["key_id", "created_at", "origin", "imported"],
    )


def _import_to_server(
    files: list[Path],
    *,
    passphrase_file: Path | None,
    age_identity: list[Path] | None,
    connection: Connection,
    output: OutputFormat,
) -> None:
    manifests: list[str] = []
    backups: list[str] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
        if is_backup(data):
            backups.append(data.decode())
        elif is_keyring(data):
            fail(f"{path}: a plaintext keyring file; import it with --keyring, or back it up first")
        else:
            try:
                load_manifests(data, source=str(path))  # a clear local error for bad YAML
            except KustosError as exc:
                fail(f"{path}: {exc}")
            manifests.append(data.decode())
    passphrase = backup_passphrase(passphrase_file)
    identities = [i.decode() for i in age_identities(age_identity)]
    rows: list[dict[str, Any]] = []
    with connection.client() as client:
        for text in manifests:
            rows.extend(dict(k) for k in client.sealing.import_keys(manifest=text))
        for text in backups:
            rows.extend(
                dict(k)
                for k in client.sealing.import_keys(
                    backup=text,
                    passphrase=passphrase.reveal() if passphrase is not None else None,
                    age_identities=identities,
                )
            )
    render(rows, output, columns=["key_id", "created", "origin", "active", "imported"])


keys_app = typer.Typer(
    name="keys",
    help="Sealing keys on a Kustos server (--address / $KUSTOS_ADDR) or in a local --keyring file.",
    no_args_is_help=True,
)
keys_app.command("generate")(_keys_generate)
keys_app.command("list")(_keys_list)
keys_app.command("cert")(_keys_cert)
keys_app.command("rotate")(_keys_rotate)
keys_app.command("config")(_keys_config)
keys_app.command("backup")(_keys_backup)
keys_app.command("import")(_keys_import)
