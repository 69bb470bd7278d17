"""``kustos seal``'s flags: kubeseal's, plus Kustos' (``--format kustos``, several ``--cert``).

This module only declares the options and turns them into a
:class:`~kustos.cli.seal.modes.SealRequest`; the work is in
:mod:`kustos.cli.seal.modes`. The controller is found one of two ways:

* in the cluster, as kubeseal finds it: ``--controller-namespace`` and
  ``--controller-name`` (or kubeseal's ``SEALED_SECRETS_CONTROLLER_NAMESPACE``
  and ``SEALED_SECRETS_CONTROLLER_NAME``; defaults ``kube-system`` and
  ``sealed-secrets-controller``) name its Service, reached through the API
  server with ``--kubeconfig``/``--context`` (else ``$KUBECONFIG``, the pod's
  ServiceAccount, ``~/.kube/config``). Any of these four flags picks this way,
  unless an address flag is given too;
* at an address, with the common connection options
  (:func:`~kustos.cli.connection.connected`): kubeseal's ``--controller-url``
  or ``--address`` (default ``$KUSTOS_ADDR``, ``$VAULT_ADDR``,
  ``http://127.0.0.1:8200``); ``--ca-cert`` and ``--tls-skip-verify`` apply to
  it and to ``--cert`` URLs.

A Secret without a namespace (and no ``--namespace``) is sealed for the kube
context's namespace, as kubeseal does, unless its scope is cluster-wide.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from kustos.cli.connection import EXIT_BAD_INPUT, Connection, connected
from kustos.cli.output import fail
from kustos.cli.seal.controller import (
    KUBESEAL_CONTROLLER_NAME,
    KUBESEAL_CONTROLLER_NAMESPACE,
    ClusterController,
    Controller,
    KubeTarget,
    ServerController,
)
from kustos.cli.seal.inputs import PASSPHRASE_ENV
from kustos.cli.seal.modes import ManifestOutput, SealRequest, mode_of, run
from kustos.gitops.sealing import Scope, SealFormat
from kustos.sensitive import Sensitive

__all__ = ["seal"]

_CLUSTER = "Controller in the cluster (kubeseal)"


def _now() -> datetime:
    return datetime.now(UTC)


def _explicit_token(connection: Connection) -> Sensitive[str] | None:
    """A token given on purpose (``--token``, ``$KUSTOS_TOKEN``, ``$VAULT_TOKEN``), never a token file.

    It travels to whatever answers behind the Service, so a token saved for
    another server is not sent along unasked.
    """
    for value in (connection.token, os.environ.get("KUSTOS_TOKEN"), os.environ.get("VAULT_TOKEN")):
        if value and value.strip():
            return Sensitive(value.strip())
    return None


def _controller(
    connection: Connection,
    target: KubeTarget,
    *,
    controller_namespace: str | None,
    controller_name: str | None,
) -> Controller:
    """The cluster's controller when a cluster flag is given (and no address flag), else the address's."""
    named = controller_namespace is not None or controller_name is not None
    if named and connection.address:
        fail(
            "--controller-namespace/--controller-name find the controller through the Kubernetes API; "
            "--controller-url/--address name it directly: give one or the other",
            code=EXIT_BAD_INPUT,
        )
    cluster = named or (
        (target.kubeconfig is not None or target.context is not None) and not connection.address
    )
    if not cluster:
        return ServerController(connection)
    return ClusterController(
        target=target,
        namespace=controller_namespace or KUBESEAL_CONTROLLER_NAMESPACE,
        name=controller_name or KUBESEAL_CONTROLLER_NAME,
        token=_explicit_token(connection),
    )


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
            "--from-file", help="With --raw: the file whose contents to seal (\\[key=]path)."
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
    controller_namespace: Annotated[
        str | None,
        typer.Option(
            "--controller-namespace",
            envvar="SEALED_SECRETS_CONTROLLER_NAMESPACE",
            help=f"Namespace of the controller's Service (default {KUBESEAL_CONTROLLER_NAMESPACE}); "
            "reached through the Kubernetes API server.",
            show_default=False,
            rich_help_panel=_CLUSTER,
        ),
    ] = None,
    controller_name: Annotated[
        str | None,
        typer.Option(
            "--controller-name",
            envvar="SEALED_SECRETS_CONTROLLER_NAME",
            help=f"Name of the controller's Service (default {KUBESEAL_CONTROLLER_NAME}; "
            "the Kustos chart's is <release>-server).",
            show_default=False,
            rich_help_panel=_CLUSTER,
        ),
    ] = None,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="Kubeconfig file (default: $KUBECONFIG, the pod's ServiceAccount, ~/.kube/config).",
            show_default=False,
            rich_help_panel=_CLUSTER,
        ),
    ] = None,
    kube_context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Kubeconfig context (default: current-context); its namespace is the default one.",
            show_default=False,
            rich_help_panel=_CLUSTER,
        ),
    ] = None,
    for_service_account: Annotated[
        str | None,
        typer.Option(
            "--for-service-account",
            help="NAMESPACE/NAME: encrypt one value (--from-file or stdin) so that only a login "
            "as this ServiceAccount opens it (a bound value; needs a token that may encrypt).",
            show_default=False,
        ),
    ] = None,
    bind_uid: Annotated[
        bool,
        typer.Option(
            "--bind-uid",
            help="With --for-service-account: also bind to the account's current UID "
            "(an account deleted and recreated cannot open it).",
        ),
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
            "for-service-account": for_service_account is not None,
        }
    )
    target = KubeTarget(kubeconfig=kubeconfig, context=kube_context)
    request = SealRequest(
        now=_now(),
        connection=connection,
        controller=_controller(
            connection,
            target,
            controller_namespace=controller_namespace,
            controller_name=controller_name,
        ),
        kube=target,
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
        service_account=for_service_account,
        bind_uid=bind_uid,
    )
    run(mode, request)
