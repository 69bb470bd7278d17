"""Walking a document's leaves in sops order to encrypt or decrypt them and compute the MAC.

A document is nested mappings (``dict``, keys ``str`` or :class:`Comment`),
lists and scalars (``str``, ``int``, ``float``, ``bool``, ``None``,
``datetime``). :class:`LeafEncryptor` and :class:`LeafDecryptor` handle one
leaf at a time with its path (the map keys leading to it, list indices left
out, as in sops's ``walkBranch``) and feed the MAC; :func:`walk` applies them
to a whole tree. The YAML store has its own node walker and calls the same
leaf handlers, so the sops rules live here once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kustos.crypto.sops import MacHasher, ValueCipher, format_float, is_encrypted_value
from kustos.errors import DecryptionError

from .models import EncryptionRules

__all__ = [
    "Comment",
    "LeafDecryptor",
    "LeafEncryptor",
    "aad_for",
    "decode_leaf",
    "encode_leaf",
    "path_display",
    "walk",
]


@dataclass(frozen=True)
class Comment:
    """A comment line kept as a tree item (dotenv, INI); ``seq`` keeps equal comments distinct."""

    text: str
    seq: int = 0


def aad_for(path: Sequence[str]) -> str:
    """The associated data of a leaf: its map keys joined by ``:`` plus a trailing ``:``."""
    return ":".join(path) + ":"


def path_display(path: Sequence[str]) -> str:
    """A path as ``--extract`` syntax, for messages: ``["a"]["b"]``."""
    return "".join(f'["{part}"]' for part in path) or "(top level)"


def encode_leaf(value: Any) -> tuple[bytes, str]:
    """sops's ``ToBytes`` plus the ``type:`` name for one leaf value."""
    if isinstance(value, bool):
        return (b"True" if value else b"False"), "bool"
    if isinstance(value, int):
        return str(int(value)).encode(), "int"
    if isinstance(value, float):
        return format_float(float(value)).encode(), "float"
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape"), "str"
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return (text[:-6] + "Z" if text.endswith("+00:00") else text).encode(), "time"
    if isinstance(value, dt.date):
        return value.isoformat().encode(), "str"
    if isinstance(value, bytes):
        return value, "bytes"
    raise TypeError(f"cannot encrypt a value of type {type(value).__name__}")


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def decode_leaf(plaintext: bytes, value_type: str) -> Any:
    """Turn decrypted bytes back into a value of ``value_type`` (Go's parsing rules)."""
    text = plaintext.decode("utf-8", "surrogateescape")
    try:
        if value_type == "int":
            return int(text)
        if value_type == "float":
            return float(text.replace("Inf", "inf"))
        if value_type == "bool":
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(text)
        if value_type == "time":
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DecryptionError(f"decrypted value is not a valid {value_type}") from None
    return text


class LeafEncryptor:
    """Encrypts leaves in document order and accumulates the MAC."""

    def __init__(self, *, cipher: ValueCipher, rules: EncryptionRules) -> None:
        self.cipher = cipher
        self.rules = rules
        self.mac = MacHasher(mac_only_encrypted=rules.mac_only_encrypted)

    def leaf(self, value: Any, path: Sequence[str]) -> Any:
        """Return the stored form of ``value`` at ``path`` (``ENC[...]`` or unchanged)."""
        if value is None:
            return None
        if is_encrypted_value(value):
            raise DecryptionError(f"the value at {path_display(path)} is already encrypted")
        encrypted = self.rules.should_encrypt(path)
        data, value_type = encode_leaf(value)
        if not self.rules.mac_only_encrypted or encrypted:
            self.mac.update(data)
        if not encrypted or (data == b"" and value_type == "str"):
            return value
        return self.cipher.encrypt(data, aad=aad_for(path), value_type=value_type)

    def comment(self, text: str, path: Sequence[str]) -> str:
        """Encrypt a comment (dotenv/INI), as sops does; comments are not part of the MAC."""
        if not text or not self.rules.should_encrypt(path):
            return text
        return self.cipher.encrypt(text.encode(), aad=aad_for(path), value_type="comment")


class LeafDecryptor:
    """Decrypts leaves in document order and accumulates the MAC to check."""

    def __init__(self, *, cipher: ValueCipher, rules: EncryptionRules) -> None:
        self.cipher = cipher
        self.rules = rules
        self.mac = MacHasher(mac_only_encrypted=rules.mac_only_encrypted)

    def leaf(self, value: Any, path: Sequence[str]) -> Any:
        """Return the plaintext value stored at ``path``; raises naming the path on failure."""
        if value is None:
            return None
        encrypted = self.rules.should_encrypt(path)
        if encrypted:
            if not isinstance(value, str):
                raise DecryptionError(
                    f"the value at {path_display(path)} should be encrypted but is not"
                )
            if value == "":
                return ""
            try:
                data, value_type = self.cipher.decrypt(value, aad=aad_for(path))
            except DecryptionError as exc:
                raise DecryptionError(
                    f"could not decrypt the value at {path_display(path)}: {exc}"
                ) from None
            plain = decode_leaf(data, value_type)
        else:
            plain = value
            data, _ = encode_leaf(value)
        if not self.rules.mac_only_encrypted or encrypted:
            self.mac.update(data)
        return plain

    def comment(self, text: str, path: Sequence[str]) -> str:
        """Decrypt an encrypted comment; a comment that is not encrypted stays as it is."""
        if not is_encrypted_value(text.strip()):
            return text
        try:
            data, _ = self.cipher.decrypt(text.strip(), aad=aad_for(path))
        except DecryptionError:
            return text
        return data.decode("utf-8", "surrogateescape")


Handler = LeafEncryptor | LeafDecryptor


def walk(
    node: Any, handler: Handler, path: tuple[str, ...] = (), *, skip_top: str | None = None
) -> Any:
    """Apply ``handler`` to every leaf and comment of ``node``; returns the new tree."""
    if isinstance(node, dict):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            if isinstance(key, Comment):
                out[Comment(handler.comment(key.text, path), key.seq)] = None
                continue
            if skip_top is not None and key == skip_top:
                continue
            out[key] = walk(value, handler, (*path, str(key)))
        return out
    if isinstance(node, list):
        return [walk(item, handler, path) for item in node]
    return handler.leaf(node, path)


def map_leaves(node: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every scalar of a plain tree (used to stringify values)."""
    if isinstance(node, dict):
        return {k: map_leaves(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [map_leaves(v, fn) for v in node]
    return fn(node)
