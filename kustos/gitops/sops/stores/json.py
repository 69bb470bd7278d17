"""JSON files and binary files (which sops stores as JSON with one ``data`` key).

JSON has no comments, so the document is loaded with the standard library
(fast, order kept) and written back with tab indentation, as sops does. A
binary file of any bytes becomes ``{"data": "ENC[...]", "sops": {...}}``:
its associated data is ``data:`` and its type ``str`` (bytes that are not
UTF-8 survive through ``surrogateescape``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from kustos.errors import ConfigError, DecryptionError

from ..trees import LeafDecryptor, LeafEncryptor, walk
from .base import Decrypted, Emitter

__all__ = ["BinaryStore", "JsonStore"]


def _go_numbers(value: Any) -> Any:
    """Whole floats as Go's encoding/json prints them (``2``, not ``2.0``), as sops writes them."""
    if isinstance(value, float):
        return (
            int(value)
            if math.isfinite(value) and value.is_integer() and abs(value) < 1e21
            else value
        )
    if isinstance(value, dict):
        return {k: _go_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_numbers(v) for v in value]
    return value


def _dumps(tree: Any) -> bytes:
    return (json.dumps(_go_numbers(tree), indent="\t", ensure_ascii=False) + "\n").encode(
        "utf-8", "surrogateescape"
    )


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"invalid JSON: {exc}") from None


class _EncryptedTree:
    def __init__(self, tree: dict[str, Any], metadata: Mapping[str, Any], *, binary: bool) -> None:
        self._tree = tree
        self.metadata = metadata
        self._binary = binary

    def decrypt(self, handler: LeafDecryptor) -> Decrypted:
        tree = walk(self._tree, handler, skip_top="sops")
        if self._binary:
            data = tree.get("data")
            raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else b""
            return Decrypted(plaintext=raw, tree=tree)
        return Decrypted(plaintext=_dumps(tree), tree=tree)


def _load_encrypted(data: bytes, *, binary: bool) -> _EncryptedTree:
    try:
        tree = json.loads(data.decode("utf-8", "surrogateescape"))
    except json.JSONDecodeError:
        raise DecryptionError(
            "the file is not sops-encrypted (not a JSON document with sops metadata)"
        ) from None
    if not isinstance(tree, dict) or not isinstance(tree.get("sops"), dict):
        raise DecryptionError("sops metadata not found: the file is not sops-encrypted")
    return _EncryptedTree(tree, tree["sops"], binary=binary)


class JsonStore:
    """The JSON format (``.json``); the top level must be an object."""

    name = "json"

    def looks_encrypted(self, data: bytes) -> bool:
        return b'"sops"' in data and b'"mac"' in data

    def load_encrypted(self, data: bytes) -> _EncryptedTree:
        return _load_encrypted(data, binary=False)

    def encrypt(self, plaintext: bytes, handler: LeafEncryptor) -> Emitter:
        tree = _loads(plaintext)
        if not isinstance(tree, dict):
            raise ConfigError("the top level of a JSON file to encrypt must be an object")
        if "sops" in tree:
            raise ConfigError(
                "the file already has a top-level 'sops' key: is it already encrypted?"
            )
        encrypted = walk(tree, handler)

        def emit(block: Mapping[str, Any]) -> bytes:
            return _dumps({**encrypted, "sops": dict(block)})

        return emit

    def load_plain(self, plaintext: bytes) -> Any:
        return _loads(plaintext)

    def emit_plain(self, tree: Any) -> bytes:
        return _dumps(tree)


class BinaryStore:
    """Any file as one blob: ``{"data": "ENC[...]", "sops": {...}}``."""

    name = "binary"

    def looks_encrypted(self, data: bytes) -> bool:
        return data.lstrip().startswith(b"{") and b'"sops"' in data and b'"data"' in data

    def load_encrypted(self, data: bytes) -> _EncryptedTree:
        return _load_encrypted(data, binary=True)

    def encrypt(self, plaintext: bytes, handler: LeafEncryptor) -> Emitter:
        encrypted = walk({"data": plaintext.decode("utf-8", "surrogateescape")}, handler)

        def emit(block: Mapping[str, Any]) -> bytes:
            return _dumps({**encrypted, "sops": dict(block)})

        return emit

    def load_plain(self, plaintext: bytes) -> Any:
        return {"data": plaintext.decode("utf-8", "surrogateescape")}

    def emit_plain(self, tree: Any) -> bytes:
        data = tree.get("data", "") if isinstance(tree, dict) else tree
        return str(data).encode("utf-8", "surrogateescape")
