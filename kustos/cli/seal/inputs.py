"""What ``kustos seal`` reads and writes: manifests, private keys, passphrases, keyrings.

Each reader ends the command through :func:`~kustos.cli.output.fail` with a
message naming the file and what was wrong with it; writers go through
:func:`~kustos.cli.writing.write_atomic` (mode 0600 for anything that holds
plaintext or private keys).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kustos.cli.output import fail
from kustos.cli.writing import write_atomic
from kustos.crypto.sealing import SealingPrivateKey, load_private_keys
from kustos.errors import KustosError
from kustos.gitops.sealing import (
    SealingKeyring,
    format_of,
    import_sealed_secrets_keys,
    is_backup,
    load_manifests,
    read_backup,
)
from kustos.sensitive import Sensitive

__all__ = [
    "PASSPHRASE_ENV",
    "Document",
    "age_identities",
    "backup_passphrase",
    "is_keyring",
    "load_keyring",
    "private_keys",
    "read_bytes",
    "read_documents",
    "save_keyring",
    "sealed_documents",
    "split_refs",
    "write_output",
]

PASSPHRASE_ENV: Final = "KUSTOS_BACKUP_PASSPHRASE"  # noqa: S105 - the name of an env var


@dataclass(frozen=True)
class Document:
    """One manifest read from the input, and where it came from (for messages)."""

    doc: dict[str, Any]
    source: str


def split_refs(values: Sequence[str] | None) -> list[str]:
    """Repeated and comma-separated option values, flattened (``--cert a,b --cert c``)."""
    return [part.strip() for v in values or [] for part in v.split(",") if part.strip()]


def read_bytes(path: str | None) -> bytes:
    """A file's bytes, or stdin for ``None``/``-``."""
    if path in (None, "-"):
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def read_documents(files: Sequence[str] | None) -> list[Document]:
    """Every manifest in every ``-f`` file (stdin when none), multi-document YAML and Lists included."""
    documents: list[Document] = []
    paths: list[str | None] = list(files) if files else [None]
    for path in paths:
        source = path if path not in (None, "-") else "stdin"
        try:
            docs = load_manifests(read_bytes(path), source=source)
        except KustosError as exc:
            fail(str(exc))
        documents.extend(Document(doc=doc, source=source) for doc in docs)
    return documents


def sealed_documents(files: Sequence[str] | None) -> list[Document]:
    """Like :func:`read_documents`, and each must be a SealedSecret (either group)."""
    documents = read_documents(files)
    for document in documents:
        try:
            format_of(document.doc, source=document.source)
        except KustosError as exc:
            fail(str(exc))
    return documents


def write_output(text: str, path: str | None, *, private: bool = False) -> None:
    """``text`` to stdout, or atomically to ``path`` (mode 0600 when ``private``)."""
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_atomic(Path(path), text.encode(), private=private)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")


def backup_passphrase(passphrase_file: Path | None) -> Sensitive[str] | None:
    """A key backup's passphrase: ``--passphrase-file``, else ``$KUSTOS_BACKUP_PASSPHRASE``."""
    if passphrase_file is not None:
        try:
            return Sensitive(passphrase_file.read_text().rstrip("\r\n"))
        except OSError as exc:
            fail(f"cannot read passphrase file {passphrase_file}: {exc.strerror}")
    env = os.environ.get(PASSPHRASE_ENV)
    return Sensitive(env) if env else None


def age_identities(paths: Sequence[Path] | None) -> list[bytes]:
    out = []
    for path in paths or []:
        try:
            out.append(path.read_bytes())
        except OSError as exc:
            fail(f"cannot read age identity {path}: {exc.strerror}")
    return out


def is_keyring(data: bytes) -> bool:
    """A local keyring file (JSON holding private keys), as ``--keyring`` writes it."""
    return data.lstrip().startswith(b"{") and b"sealing-keyring" in data


def _private_keys_from(
    data: bytes, *, source: str, secret: Sensitive[str] | None, identities: list[bytes]
) -> list[SealingPrivateKey]:
    """PEM keys, a backup bundle, a keyring file, or Sealed Secrets key Secrets."""
    if is_backup(data):
        return read_backup(data, passphrase=secret, age_identities=identities).private_keys()
    if is_keyring(data):
        return SealingKeyring.from_bytes(data).private_keys()
    if data.lstrip().startswith(b"-----BEGIN"):
        return load_private_keys(data)
    docs = load_manifests(data, source=source)
    return [e.private_key for e in import_sealed_secrets_keys(docs, require_label=False)]


def private_keys(
    refs: Sequence[str] | None, *, secret: Sensitive[str] | None, identities: list[bytes]
) -> list[SealingPrivateKey]:
    """Every key in the ``--recovery-private-key`` files (at least one)."""
    keys: list[SealingPrivateKey] = []
    for ref in split_refs(refs):
        try:
            data = Path(ref).read_bytes()
        except OSError as exc:
            fail(f"cannot read private key {ref}: {exc.strerror}")
        try:
            keys.extend(_private_keys_from(data, source=ref, secret=secret, identities=identities))
        except KustosError as exc:
            fail(f"private key {ref}: {exc}")
    if not keys:
        fail(
            "no private key given: use --recovery-private-key FILE "
            "(PEM, key backup or Sealed Secrets key Secret)"
        )
    return keys


def load_keyring(path: Path, *, must_exist: bool = True) -> SealingKeyring:
    """The local keyring at ``path`` (an empty one when it does not exist and need not)."""
    if not path.exists():
        if must_exist:
            fail(
                f"keyring {path} does not exist "
                f"(create it with `kustos seal keys generate --keyring {path}`)"
            )
        return SealingKeyring()
    try:
        return SealingKeyring.from_bytes(path.read_bytes())
    except KustosError as exc:
        fail(f"keyring {path}: {exc}")


def save_keyring(path: Path, keyring: SealingKeyring) -> None:
    """Write the keyring (it holds private keys: mode 0600)."""
    try:
        write_atomic(path, keyring.to_bytes().reveal(), private=True)
    except OSError as exc:
        fail(f"cannot write keyring {path}: {exc.strerror}")
