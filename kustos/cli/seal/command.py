"""``kustos seal``'s flags: kubeseal's, plus Kustos' (``--format kustos``, several ``--cert``).

This module only declares the options and turns them into a
:class:`~kustos.cli.seal.modes.SealRequest`; the work is in
:mod:`kustos.cli.seal.modes`. The controller is reached with the common
connection options (:func:`~kustos.cli.connection.connected`), its address
given by kubeseal's ``--controller-url`` or ``--address`` (default
``$KUSTOS_ADDR``, ``$VAULT_ADDR``, ``http://127.0.0.1:8200``); ``--ca-cert``
and ``--tls-skip-verify`` apply to it and to ``--cert`` URLs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from kustos.cli.connection import Connection, connected
from kustos.cli.seal.controller import ServerController
from kustos.cli.seal.inputs import PASSPHRASE_ENV
from kustos.cli.seal.modes import ManifestOutput, SealRequest, mode_of, run
from kustos.gitops.sealing import Scope, SealFormat

__all__ = ["seal"]


def _now() -> datetime:
    return datetime.now(UTC)


@connected(require_token=False, address_flags=("--controller-url", "--address"))
def seal(
    connection: Connection,
    ctx: typer.Context,
    file: Annotated[
        list[str] | None,
        typer.Option(
            "--file",
            "-f",
            help="Manifest to read (default: stdin); repeat for several files, "
            "each may hold several documents.",
        ),
    ] = None,
    write: Annotated[
        str | None,
        typer.Option(
            "--sealed-secret-file", "-w", help="Write the result to FILE instead of stdout."
        ),
    ] = None,
    output: Annotated[
        ManifestOutput | None,
        typer.Option("--output", "-o", help="json (default) or yaml.", case_sensitive=False),
    ] = None,
    cert: Annotated[
        list[str] | None,
        typer.Option(
            "--cert",
            help="Certificate file or http(s) URL; repeat (or comma-separate) for several recipients.",
        ),
    ] = None,
    fetch_cert: Annotated[
        bool,
        typer.Option(
            "--fetch-cert",
            help="Print the controller's certificate (GET <controller>/v1/cert.pem) and exit.",
        ),
    ] = False,
    scope: Annotated[
        Scope | None,
        typer.Option(
            "--scope",
            help="strict, namespace-wide or cluster-wide (default: from the Secret's annotations, else strict).",
        ),
    ] = None,
    fmt: Annotated[
        SealFormat,
        typer.Option("--format", help="bitnami (Sealed Secrets, default) or kustos (native)."),
    ] = SealFormat.bitnami,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Seal one value (from --from-file or stdin) and print only its ciphertext.",
        ),
    ] = False,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from-file", help="With --raw: the file whose contents to seal ([key=]path)."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Override metadata.name (needed by --raw in strict scope)."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Override metadata.namespace.")
    ] = None,
    merge_into_file: Annotated[
        Path | None,
        typer.Option(
            "--merge-into", help="Seal the input's keys into this SealedSecret file, in place."
        ),
    ] = None,
    re_encrypt: Annotated[
        bool, typer.Option("--re-encrypt", help="Re-encrypt a SealedSecret with the newest key.")
    ] = False,
    validate: Annotated[
        bool, typer.Option("--validate", help="Check that a SealedSecret can be unsealed.")
    ] = False,
    recovery_unseal: Annotated[
        bool,
        typer.Option(
            "--recovery-unseal",
            help="Unseal offline with --recovery-private-key; print the Secret.",
        ),
    ] = False,
    recovery_private_key: Annotated[
        list[str] | None,
        typer.Option(
            "--recovery-private-key",
            help="PEM key, key backup bundle, keyring or key Secret; repeatable or comma-separated.",
        ),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", help=f"Passphrase of a key backup (or ${PASSPHRASE_ENV})."
        ),
    ] = None,
    age_identity: Annotated[
        list[Path] | None,
        typer.Option("--age-identity", help="age identity file for an age key backup; repeatable."),
    ] = None,
    allow_empty_data: Annotated[
        bool, typer.Option("--allow-empty-data", help="Seal a Secret with no data.")
    ] = False,
    no_key_id_hint: Annotated[
        bool, typer.Option("--no-key-id-hint", help="Omit the kustos.io/sealing-key-id annotation.")
    ] = False,
) -> None:
    """Seal Kubernetes Secrets into SealedSecrets (kubeseal compatible)."""
    if ctx.invoked_subcommand is not None:
        return
    mode = mode_of(
        flags={
            "fetch-cert": fetch_cert,
            "recovery-unseal": recovery_unseal,
            "validate": validate,
            "re-encrypt": re_encrypt,
            "raw": raw,
            "merge-into": merge_into_file is not None,
        }
    )
    request = SealRequest(
        now=_now(),
        connection=connection,
        controller=ServerController(connection),
        files=list(file or []),
        write=write,
        output=output,
        certs=list(cert or []),
        scope=scope,
        fmt=fmt,
        name=name,
        namespace=namespace,
        from_file=from_file,
        merge_into=merge_into_file,
        recovery_private_key=list(recovery_private_key or []),
        passphrase_file=passphrase_file,
        age_identity=list(age_identity or []),
        allow_empty_data=allow_empty_data,
        key_id_hint=not no_key_id_hint,
    )
    run(mode, request)
