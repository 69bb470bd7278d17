"""One store per file format, and how a file's format is chosen.

The format comes from ``--input-type``/``--output-type`` or the file name,
as in sops: ``.yaml``/``.yml``, ``.json``, ``.env``, ``.ini``; anything else
is binary.
"""

from __future__ import annotations

from pathlib import PurePath

from kustos.errors import ConfigError

from .base import Decrypted, EncryptedFile, Store
from .dotenv import DotenvStore, IniStore
from .json import BinaryStore, JsonStore
from .yaml import YamlStore

__all__ = [
    "BinaryStore",
    "Decrypted",
    "DotenvStore",
    "EncryptedFile",
    "IniStore",
    "JsonStore",
    "Store",
    "YamlStore",
    "store_for",
]

_BY_NAME: dict[str, type[YamlStore | JsonStore | DotenvStore | IniStore | BinaryStore]] = {
    "yaml": YamlStore,
    "json": JsonStore,
    "dotenv": DotenvStore,
    "ini": IniStore,
    "binary": BinaryStore,
}


def store_for(*, path: str | None, file_type: str | None = None) -> Store:
    """The store for an explicit type name, or else for the file's extension."""
    if file_type:
        try:
            return _BY_NAME[file_type.lower()]()
        except KeyError:
            raise ConfigError(
                f"unknown file type {file_type!r}: use yaml, json, dotenv, ini or binary"
            ) from None
    name = PurePath(path or "").name.lower()
    if name.endswith((".yaml", ".yml")):
        return YamlStore()
    if name.endswith(".json"):
        return JsonStore()
    if name.endswith(".env") or name == ".env":
        return DotenvStore()
    if name.endswith(".ini"):
        return IniStore()
    return BinaryStore()
