"""The ``local`` key provider: a 256-bit root key in a file next to the data (dev and embedded use).

The key file holds the base64 encoding of 32 random bytes and a newline
(45 bytes). It is created on first use, atomically: the key is written and
fsynced to a private temporary file (mode 0600, ``O_EXCL``) in the same
directory, then hard-linked to its final name, which fails if another process
got there first (that process's key is then used). A key file that group or
others can read or write is refused with :class:`~kustos.errors.ConfigError`,
like ssh refuses a private key.

Guarantees: whoever can read the key file and the storage can read every
secret; this provider protects against a leaked database or backup only. Use
``shamir`` or ``pkcs11`` when the key must not sit on the same disk.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from kustos.crypto import aead
from kustos.crypto.envelope import context
from kustos.errors import ConfigError, KeyProviderError
from kustos.sensitive import Sensitive

__all__ = ["LocalKeyProvider"]

_LABEL: Final = b"kustos/keys/local"


class LocalKeyProvider:
    """Wraps with AES-256-GCM under a key read from (or created in) ``key_file``.

    The file is read (or created) in the constructor, so a bad key file stops
    the server at start with a clear :class:`ConfigError`.
    """

    def __init__(
        self, key_file: Path, *, randbytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> None:
        self._path = Path(key_file)
        self._key: Sensitive[bytes] | None = Sensitive(
            _load_or_create(self._path, randbytes=randbytes)
        )

    @property
    def name(self) -> str:
        return "local"

    @property
    def sealed(self) -> bool:
        return self._key is None

    @property
    def key_id(self) -> str:
        """A public name of the key (see :func:`kustos.crypto.aead.key_id`); changes with the key."""
        return aead.key_id(self._require_key())

    @property
    def key_file(self) -> Path:
        """Where the key lives."""
        return self._path

    def wrap(self, plaintext: bytes, *, aad: bytes) -> bytes:
        return aead.seal(self._require_key(), plaintext, aad=context(_LABEL, aad))

    def unwrap(self, blob: bytes, *, aad: bytes) -> bytes:
        return aead.unseal(self._require_key(), blob, aad=context(_LABEL, aad))

    def close(self) -> None:
        self._key = None

    def _require_key(self) -> bytes:
        if self._key is None:
            raise KeyProviderError("the local key provider was closed")
        return self._key.reveal()

    def __repr__(self) -> str:
        return f"LocalKeyProvider(key_file={str(self._path)!r})"


def _load_or_create(path: Path, *, randbytes: Callable[[int], bytes]) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = aead.generate_key(randbytes=randbytes)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        try:
            os.write(fd, base64.b64encode(key) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            tmp.unlink()
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror or exc}") from None
    return _read(path)


def _read(path: Path) -> bytes:
    """Read and check an existing key file; FileNotFoundError if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot open key file {path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ConfigError(f"key file {path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"key file {path} is accessible by group or others (mode {mode:04o}); "
                f"run 'chmod 600 {path}'"
            )
        data = handle.read(1024)
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != aead.KEY_SIZE:
        raise ConfigError(f"key file {path} does not hold a base64-encoded 32-byte key")
    return key


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
