"""The CLI's one way to write a file: atomically, and private when it holds a secret.

Every command that writes a file it was asked for (``kustos decrypt --output``,
``encrypt -i``, ``seal -w``, ``seal --merge-into``, ``cluster encryption-config
--output``, a sealing keyring, the token file ``kustos login`` keeps) goes through :func:`write_atomic`: the data
goes to a temporary file in the same directory (created 0600, so no other user
sees it even briefly), is flushed to disk, and replaces the target in one
``rename(2)``. A reader sees the old file or the new one, never half of one;
a failure leaves the target as it was and removes the temporary file.

``private=True`` (decrypted data, private keys, tokens) makes the result
mode 0600 whatever the target's mode was before. Otherwise an existing file
keeps its mode and a new one gets ``0666`` less the umask, as ``open(2)`` would.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Final

__all__ = ["PRIVATE_MODE", "write_atomic"]

PRIVATE_MODE: Final = 0o600
"""The mode of every file that holds plaintext secrets, keys or tokens."""


def _umask() -> int:
    # os.umask has no read-only form: set and restore at once (single-threaded CLI)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path, *, private: bool) -> int:
    if private:
        return PRIVATE_MODE
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def write_atomic(path: Path, data: bytes, *, private: bool) -> None:
    """Replace ``path`` with ``data`` in one rename; mode 0600 when ``private``.

    Raises :class:`OSError` (the target unchanged) when the directory is not
    writable or the disk is full.
    """
    mode = _mode_for(path, private=private)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
