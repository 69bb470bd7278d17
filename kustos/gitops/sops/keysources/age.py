"""age recipients (X25519), through pyrage: the data key as an armored age file.

Identities for decryption come from ``SOPS_AGE_KEY`` (the key text itself),
``SOPS_AGE_KEY_FILE`` (a file of ``AGE-SECRET-KEY-1...`` lines) and the
default ``$XDG_CONFIG_HOME/sops/age/keys.txt``, as sops reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyrage

from kustos.errors import ConfigError, DecryptionError

__all__ = ["decrypt", "encrypt", "load_identities", "parse_recipient"]


def parse_recipient(recipient: str) -> Any:
    """An ``age1...`` recipient; raises :class:`ConfigError` naming it if invalid."""
    try:
        return pyrage.x25519.Recipient.from_str(recipient.strip())
    except Exception:
        raise ConfigError(f"invalid age recipient {recipient!r} (expected age1...)") from None


def encrypt(recipient: str, data_key: bytes) -> str:
    """The data key encrypted to ``recipient`` as an armored age file."""
    sealed: bytes = pyrage.encrypt(data_key, [parse_recipient(recipient)], armored=True)
    return sealed.decode()


def _identities_from_text(text: str) -> list[Any]:
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-1"):
            try:
                found.append(pyrage.x25519.Identity.from_str(line))
            except Exception:
                raise ConfigError("an age identity (AGE-SECRET-KEY-1...) is malformed") from None
    return found


def load_identities(env: Mapping[str, str]) -> list[Any]:
    """Every age identity the environment offers (possibly none)."""
    found = _identities_from_text(env.get("SOPS_AGE_KEY", ""))
    files: list[Path] = []
    if env.get("SOPS_AGE_KEY_FILE"):
        files.append(Path(env["SOPS_AGE_KEY_FILE"]))
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME", "~"), ".config")
    files.append(Path(config_home) / "sops" / "age" / "keys.txt")
    for path in files:
        if path.is_file():
            found.extend(_identities_from_text(path.read_text()))
    return found


def decrypt(enc: str, identities: list[Any]) -> bytes:
    """Recover the data key; :class:`DecryptionError` if no identity matches."""
    if not identities:
        raise DecryptionError("no age identity found (set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)")
    try:
        plain: bytes = pyrage.decrypt(enc.encode(), identities)
    except Exception:
        raise DecryptionError("none of the age identities can decrypt it") from None
    return plain
