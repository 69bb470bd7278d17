"""The modes of ``kustos seal``, one function each, over :mod:`kustos.gitops.sealing`.

``kustos seal`` (like kubeseal) is one command whose flags pick what it does:
print the certificate (``--fetch-cert``), unseal offline
(``--recovery-unseal``), check (``--validate``), re-encrypt
(``--re-encrypt``), seal one value (``--raw``), seal into an existing
SealedSecret (``--merge-into``), encrypt one value so only one
ServiceAccount's login opens it (``--for-service-account``, a bound value:
docs/bound.md), or seal Secrets (the default). The command
(:mod:`kustos.cli.seal.command`) turns the flags into one
:class:`SealRequest` and calls the mode's function with it and a
:class:`~kustos.cli.seal.controller.Controller`; each function reads its
input, does its one job and writes its output.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kustos.cli.connection import Connection
from kustos.cli.output import fail
from kustos.cli.seal.controller import Controller, KubeTarget, certificates
from kustos.cli.seal.inputs import (
    age_identities,
    backup_passphrase,
    private_keys,
    read_bytes,
    read_documents,
    sealed_documents,
    write_output,
)
from kustos.cli.writing import write_atomic
from kustos.crypto.bound import BoundIdentity
from kustos.crypto.sealing import SealingCertificate, SealingPrivateKey
from kustos.errors import KustosError
from kustos.gitops.sealing import (
    Scope,
    SealFormat,
    dump_manifest,
    dump_manifests,
    load_manifest,
    merge_into,
    open_values,
    parse_secret,
    reencrypt,
    scope_of,
    seal_raw,
    seal_secret,
    unseal,
)
from kustos.sensitive import Sensitive

__all__ = ["MODES", "ManifestOutput", "SealRequest", "mode_of", "run"]


class ManifestOutput(enum.StrEnum):
    """kubeseal's output formats."""

    json = "json"
    yaml = "yaml"


@dataclass(frozen=True)
class SealRequest:
    """Everything ``kustos seal`` was asked, after parsing its flags."""

    now: datetime
    connection: Connection
    controller: Controller
    kube: KubeTarget = field(default_factory=KubeTarget)
    files: list[str] = field(default_factory=list)
    write: str | None = None
    output: ManifestOutput | None = None
    certs: list[str] = field(default_factory=list)
    scope: Scope | None = None
    fmt: SealFormat = SealFormat.bitnami
    name: str | None = None
    namespace: str | None = None
    from_file: str | None = None
    merge_into: Path | None = None
    recovery_private_key: list[str] = field(default_factory=list)
    passphrase_file: Path | None = None
    age_identity: list[Path] = field(default_factory=list)
    allow_empty_data: bool = False
    key_id_hint: bool = True
    service_account: str | None = None
    """``--for-service-account NS/NAME``."""
    bind_uid: bool = False

    @property
    def out_format(self) -> ManifestOutput:
        return self.output or ManifestOutput.json

    def certificates(self, *, bundle: bool = False) -> list[SealingCertificate]:
        return certificates(
            self.certs, controller=self.controller, connection=self.connection, bundle=bundle
        )

    def namespace_for(self, *, given: str, scope: Scope) -> str | None:
        """The namespace to seal for: ``--namespace``, else ``given``, else the kube context's.

        kubeseal's rule: a Secret without a namespace is sealed for the
        namespace of the current kube context (unless cluster-wide, which
        binds none); without any kube config it stays empty (an error below).
        """
        if self.namespace or given or scope is Scope.cluster_wide:
            return self.namespace
        return self.kube.namespace()

    def private_keys(self) -> list[SealingPrivateKey]:
        return private_keys(
            self.recovery_private_key,
            secret=backup_passphrase(self.passphrase_file),
            identities=age_identities(self.age_identity),
        )


def fetch_cert(request: SealRequest) -> None:
    """``--fetch-cert``: print the controller's certificate (or the ``--cert`` ones)."""
    if request.certs:
        text = "".join(c.pem().decode() for c in request.certificates())
    else:
        text = request.controller.certificate().decode()
    write_output(text, request.write)


def recovery_unseal(request: SealRequest) -> None:
    """``--recovery-unseal``: open SealedSecrets offline with private keys; print the Secrets."""
    keys = request.private_keys()
    secrets = [unseal(d.doc, keys=keys).to_manifest() for d in sealed_documents(request.files)]
    write_output(dump_manifests(secrets, request.out_format.value), request.write, private=True)


def validate(request: SealRequest) -> None:
    """``--validate``: every SealedSecret opens (offline with keys, else the controller says so)."""
    documents = sealed_documents(request.files)
    if request.recovery_private_key:
        keys = request.private_keys()
        for document in documents:
            open_values(document.doc, keys=keys)
        return
    for document in documents:
        if not request.controller.verify(document.doc):
            fail(f"unable to decrypt sealed secret ({document.source})")


def re_encrypt(request: SealRequest) -> None:
    """``--re-encrypt``: seal the values again with the newest key (offline with keys and --cert)."""
    documents = sealed_documents(request.files)
    results: list[dict[str, Any]] = []
    if request.recovery_private_key:
        keys = request.private_keys()
        certs = request.certificates()
        for document in documents:
            results.extend(
                reencrypt(
                    document.doc,
                    keys=keys,
                    certificate=cert,
                    now=request.now,
                    key_id_hint=request.key_id_hint,
                )
                for cert in certs
            )
    else:
        results = [request.controller.rotate(document.doc) for document in documents]
    write_output(dump_manifests(results, request.out_format.value), request.write)


def raw(request: SealRequest) -> None:
    """``--raw``: seal one value (``--from-file`` or stdin) and print only its ciphertext."""
    if request.fmt is SealFormat.kustos:
        fail(
            "--raw makes a Sealed Secrets value; the native format seals whole objects "
            "(drop --format kustos)"
        )
    value = read_bytes(request.from_file.split("=", 1)[-1] if request.from_file else None)
    scope = request.scope or Scope.strict
    namespace = request.namespace_for(given="", scope=scope)
    sealed = [
        seal_raw(
            Sensitive(value),
            certificate=cert,
            now=request.now,
            scope=scope,
            name=request.name or "",
            namespace=namespace or "",
        )
        for cert in request.certificates()
    ]
    write_output("\n".join(sealed), request.write)


def for_service_account(request: SealRequest) -> None:
    """``--for-service-account NS/NAME``: one value (``--from-file`` or stdin) bound to that account.

    The server encrypts it (``sys/bound/encrypt``); only a token from a
    kubernetes login as that account opens it, and with ``--bind-uid`` only
    while the account keeps its current UID. Prints the bound value, or with
    ``-o json|yaml`` the server's whole answer (key version, UID).
    """
    text = request.service_account or ""
    namespace, sep, name = text.strip().partition("/")
    if not sep or not namespace or not name or "/" in name:
        fail(
            f"--for-service-account takes NAMESPACE/NAME (e.g. payments/api), got {text!r}", code=2
        )
    try:
        account = BoundIdentity(namespace=namespace, name=name)
    except KustosError as exc:
        fail(f"--for-service-account: {exc}", code=2)
    value = read_bytes(request.from_file.split("=", 1)[-1] if request.from_file else None)
    if not value:
        fail("nothing to encrypt: the value is empty", code=2)
    with request.connection.client() as client:
        answer = client.bound.encrypt(
            Sensitive(value),
            namespace=account.namespace,
            service_account=account.name,
            bind_uid=request.bind_uid,
        )
    if request.output is None:
        write_output(answer["ciphertext"] + "\n", request.write)
    else:
        write_output(dump_manifest(dict(answer), request.output.value), request.write)


def merge(request: SealRequest) -> None:
    """``--merge-into FILE``: seal the input Secret's keys into an existing SealedSecret, in place."""
    target = request.merge_into
    assert target is not None  # noqa: S101 - mode_of chose this mode for it
    documents = read_documents(request.files)
    if len(documents) != 1:
        fail(f"--merge-into takes one Secret as input, got {len(documents)}")
    (document,) = documents
    secret = parse_secret(document.doc, source=document.source)
    certs = request.certificates()
    existing_bytes = read_bytes(str(target))
    existing = load_manifest(existing_bytes, source=str(target))
    merged = merge_into(
        existing,
        secret,
        certificates=certs,
        now=request.now,
        scope=request.scope,
        allow_empty_data=request.allow_empty_data,
    )
    guessed = ManifestOutput.json if existing_bytes.lstrip().startswith(b"{") else None
    text = dump_manifest(merged, (request.output or guessed or ManifestOutput.yaml).value)
    try:
        write_atomic(target, text.encode(), private=False)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror}")


def seal(request: SealRequest) -> None:
    """The default: seal every Secret in the input into SealedSecrets."""
    documents = read_documents(request.files)
    secrets = [parse_secret(d.doc, source=d.source) for d in documents]
    certs = request.certificates(bundle=request.fmt is SealFormat.kustos)
    docs: list[dict[str, Any]] = []
    for secret in secrets:
        docs.extend(
            seal_secret(
                secret,
                certificates=certs,
                now=request.now,
                fmt=request.fmt,
                scope=request.scope,
                name=request.name,
                namespace=request.namespace_for(
                    given=secret.namespace, scope=request.scope or scope_of(secret.annotations)
                ),
                allow_empty_data=request.allow_empty_data,
                key_id_hint=request.key_id_hint,
            )
        )
    write_output(dump_manifests(docs, request.out_format.value), request.write)


MODES: dict[str, Callable[[SealRequest], None]] = {
    "fetch-cert": fetch_cert,
    "recovery-unseal": recovery_unseal,
    "validate": validate,
    "re-encrypt": re_encrypt,
    "raw": raw,
    "merge-into": merge,
    "for-service-account": for_service_account,
    "seal": seal,
}
"""Mode name (its flag without dashes) -> the function that runs it."""


def mode_of(*, flags: dict[str, bool]) -> str:
    """The one mode the flags ask for (``seal`` when none); two at once is a usage error."""
    chosen = [name for name, on in flags.items() if on]
    if len(chosen) > 1:
        fail(
            "choose one of "
            + ", ".join(f"--{name}" for name in chosen)
            + " (they are different modes)",
            code=2,
        )
    return chosen[0] if chosen else "seal"


def run(mode: str, request: SealRequest) -> None:
    """Run ``mode``; a :class:`~kustos.errors.KustosError` from the sealing library ends the command."""
    try:
        MODES[mode](request)
    except KustosError as exc:
        fail(str(exc))
