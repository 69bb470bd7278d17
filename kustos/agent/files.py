"""The agent's files in its directory: written atomically with a fixed mode, removed on demand.

A write goes to a temporary file in the same directory (``.<name>.<random>``,
created with mode 0600 by :func:`tempfile.mkstemp`, then set to the final
mode before any byte is written), is flushed, and is renamed over
``DIR/<name>``: a reader sees the old file or the new one, never half of
one. Unchanged content is not rewritten (so ``--exec`` runs only on a real
change); the comparison is against a digest kept in memory, or the file on
disk the first time (an init container may have written it already).

Nothing here logs or returns file contents.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from kustos.errors import ConfigError

__all__ = ["SecretFiles"]


class SecretFiles:
    """The files one agent owns in ``directory``."""

    def __init__(self, directory: Path, *, mode: int = 0o400) -> None:
        if not directory.is_dir():
            raise ConfigError(f"--dir {directory} is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"--dir {directory} is not writable")
        self.directory = directory
        self.mode = mode
        self._digests: dict[str, str] = {}

    @property
    def present(self) -> list[str]:
        """Names written and not removed since."""
        return sorted(self._digests)

    def _current_digest(self, name: str) -> str | None:
        digest = self._digests.get(name)
        if digest is not None:
            return digest
        try:
            return hashlib.sha256((self.directory / name).read_bytes()).hexdigest()
        except OSError:
            return None

    def write(self, name: str, content: bytes) -> bool:
        """Put ``content`` at ``DIR/name`` atomically; False when it was already there."""
        digest = hashlib.sha256(content).hexdigest()
        target = self.directory / name
        if self._current_digest(name) == digest and target.exists():
            self._digests[name] = digest
            return False
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.")
        try:
            os.fchmod(fd, self.mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        self._digests[name] = digest
        return True

    def remove(self, name: str) -> bool:
        """Remove ``DIR/name``; False when there was nothing to remove."""
        self._digests.pop(name, None)
        try:
            (self.directory / name).unlink()
        except FileNotFoundError:
            return False
        return True

    def remove_all(self, names: list[str]) -> list[str]:
        """Remove every one of ``names`` that exists; the names removed."""
        return [name for name in names if self.remove(name)]
