"""The interface every file format implements, and what it hands back.

A store knows one format (YAML, JSON, dotenv, INI, binary). It never sees
keys: the operations in :mod:`kustos.gitops.sops.operations` give it a leaf
handler (:class:`~kustos.gitops.sops.trees.LeafEncryptor` or
``LeafDecryptor``) and get back bytes, so every format shares the sops rules
of :mod:`kustos.gitops.sops.trees`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..trees import LeafDecryptor, LeafEncryptor

__all__ = ["Decrypted", "EncryptedFile", "Store", "plain_scalar_text"]

#: Turns the finished ``sops`` block (as a dict, sops layout) into the file's bytes.
Emitter = Callable[[Mapping[str, Any]], bytes]


@dataclass(frozen=True)
class Decrypted:
    """A decrypted document: the file's plaintext bytes and its values as a tree."""

    plaintext: bytes
    tree: Any


class EncryptedFile(Protocol):
    """An encrypted file as loaded: its ``sops`` block and a way to decrypt the data."""

    @property
    def metadata(self) -> Mapping[str, Any]: ...

    def decrypt(self, handler: LeafDecryptor) -> Decrypted: ...


class Store(Protocol):
    """One file format."""

    name: str

    def looks_encrypted(self, data: bytes) -> bool:
        """True if ``data`` carries sops metadata (cheap check, no decryption)."""
        ...

    def load_encrypted(self, data: bytes) -> EncryptedFile:
        """Parse an encrypted file; raises ``DecryptionError`` if it is not sops-encrypted."""
        ...

    def encrypt(self, plaintext: bytes, handler: LeafEncryptor) -> Emitter:
        """Encrypt every leaf; returns a function that adds the ``sops`` block and emits bytes."""
        ...

    def load_plain(self, plaintext: bytes) -> Any:
        """The plaintext file as a tree of Python values (for ``set``/``exec-env``)."""
        ...

    def emit_plain(self, tree: Any) -> bytes:
        """A tree of Python values as a plaintext file of this format."""
        ...


def plain_scalar_text(value: Any) -> str:
    """A scalar as text for flat formats (dotenv, INI, exec-env): Go's formatting."""
    from kustos.crypto.sops import format_float

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    return str(value)
