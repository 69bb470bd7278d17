"""dotenv files (``KEY=value`` lines) and INI files, with flattened ``sops_`` metadata.

Both formats are flat, so the ``sops`` block is flattened
(``sops_pgp__list_0__map_fp=...`` in dotenv, a ``[sops]`` section in INI with
``\\n`` escaped). Comment lines are kept as tree items and encrypted as sops
does (``#ENC[...,type:comment]``); they are not part of the MAC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kustos.errors import ConfigError, DecryptionError

from ..models import flatten_metadata, unflatten_metadata
from ..trees import Comment, LeafDecryptor, LeafEncryptor, walk
from .base import Decrypted, Emitter, plain_scalar_text

__all__ = ["DotenvStore", "IniStore"]

_PREFIX = "sops_"


def _parse_dotenv(data: bytes) -> dict[Any, Any]:
    tree: dict[Any, Any] = {}
    for number, raw in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line:
            continue
        if line.startswith("#"):
            tree[Comment(line[1:], number)] = None
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"invalid dotenv line {number}: expected KEY=value")
        tree[key] = value.replace("\\n", "\n")
    return tree


def _emit_dotenv(tree: Mapping[Any, Any]) -> bytes:
    lines: list[str] = []
    for key, value in tree.items():
        if isinstance(key, Comment):
            lines.append(f"#{key.text}")
            continue
        if isinstance(value, dict | list):
            raise ConfigError(f"cannot use a nested value in a dotenv file (key {key})")
        text = plain_scalar_text(value).replace("\n", "\\n")
        lines.append(f"{key}={text}")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape") if lines else b""


class _EncryptedFlat:
    def __init__(self, tree: dict[Any, Any], metadata: Mapping[str, Any], emit_plain: Any) -> None:
        self._tree = tree
        self.metadata = metadata
        self._emit_plain = emit_plain

    def decrypt(self, handler: LeafDecryptor) -> Decrypted:
        tree = walk(self._tree, handler)
        return Decrypted(plaintext=self._emit_plain(tree), tree=_without_comments(tree))


def _without_comments(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _without_comments(v) for k, v in tree.items() if not isinstance(k, Comment)}
    return tree


class DotenvStore:
    """The dotenv format (``.env``)."""

    name = "dotenv"

    def looks_encrypted(self, data: bytes) -> bool:
        return b"\nsops_mac=" in b"\n" + data

    def load_encrypted(self, data: bytes) -> _EncryptedFlat:
        tree = _parse_dotenv(data)
        flat = {
            k[len(_PREFIX) :]: v
            for k, v in tree.items()
            if isinstance(k, str) and k.startswith(_PREFIX)
        }
        if "mac" not in flat:
            raise DecryptionError("sops metadata not found: the file is not sops-encrypted")
        data_tree = {
            k: v for k, v in tree.items() if not (isinstance(k, str) and k.startswith(_PREFIX))
        }
        return _EncryptedFlat(
            data_tree, unflatten_metadata(flat, unescape_newlines=False), _emit_dotenv
        )

    def encrypt(self, plaintext: bytes, handler: LeafEncryptor) -> Emitter:
        tree = _parse_dotenv(plaintext)
        if any(isinstance(k, str) and k.startswith(_PREFIX) for k in tree):
            raise ConfigError("the file already has sops_ keys: is it already encrypted?")
        encrypted = walk(tree, handler)

        def emit(block: Mapping[str, Any]) -> bytes:
            flat = flatten_metadata(block, escape_newlines=False)
            return _emit_dotenv({**encrypted, **{_PREFIX + k: v for k, v in flat.items()}})

        return emit

    def load_plain(self, plaintext: bytes) -> Any:
        return _without_comments(_parse_dotenv(plaintext))

    def emit_plain(self, tree: Any) -> bytes:
        return _emit_dotenv(tree)


def _parse_ini(data: bytes) -> dict[Any, Any]:
    tree: dict[Any, Any] = {}
    section: dict[Any, Any] | None = None
    for number, raw in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith((";", "#")):
            text = line[1:].lstrip(" ") if line[1:2] == " " else line[1:]
            target = section if section is not None else tree.setdefault("DEFAULT", {})
            target[Comment(text, number)] = None
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"invalid INI line {number}: unterminated section header")
            name = line[1:-1].strip()
            section = tree.setdefault(name, {})
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        if not sep:
            raise ConfigError(f"invalid INI line {number}: expected key = value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'`":
            value = value[1:-1]
        target = section if section is not None else tree.setdefault("DEFAULT", {})
        target[key.strip()] = value
    return tree


def _emit_ini(tree: Mapping[Any, Any]) -> bytes:
    blocks: list[str] = []
    for name, section in tree.items():
        if isinstance(name, Comment):
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"INI values must be inside a section (key {name})")
        if name == "DEFAULT" and not section:
            continue
        keys = [k for k in section if not isinstance(k, Comment)]
        width = max((len(k) for k in keys), default=0)
        lines = [f"[{name}]"]
        for key, value in section.items():
            if isinstance(key, Comment):
                lines.append(f"; {key.text}")
            elif isinstance(value, dict | list):
                raise ConfigError(
                    f"cannot nest values deeper than sections in an INI file (key {name}.{key})"
                )
            else:
                lines.append(f"{key.ljust(width)} = {plain_scalar_text(value)}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks).encode("utf-8", "surrogateescape")


class IniStore:
    """The INI format (``.ini``): sections become top-level keys."""

    name = "ini"

    def looks_encrypted(self, data: bytes) -> bool:
        return b"[sops]" in data

    def load_encrypted(self, data: bytes) -> _EncryptedFlat:
        tree = _parse_ini(data)
        meta = tree.pop("sops", None)
        if not isinstance(meta, dict) or "mac" not in meta:
            raise DecryptionError("sops metadata not found: the file is not sops-encrypted")
        flat = {k: v for k, v in meta.items() if isinstance(k, str)}
        return _EncryptedFlat(tree, unflatten_metadata(flat, unescape_newlines=True), _emit_ini)

    def encrypt(self, plaintext: bytes, handler: LeafEncryptor) -> Emitter:
        tree = _parse_ini(plaintext)
        if "sops" in tree:
            raise ConfigError("the file already has a [sops] section: is it already encrypted?")
        encrypted = walk(tree, handler)

        def emit(block: Mapping[str, Any]) -> bytes:
            return _emit_ini({**encrypted, "sops": flatten_metadata(block, escape_newlines=True)})

        return emit

    def load_plain(self, plaintext: bytes) -> Any:
        return _without_comments(_parse_ini(plaintext))

    def emit_plain(self, tree: Any) -> bytes:
        return _emit_ini(tree)
