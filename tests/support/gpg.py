"""A throwaway GnuPG home with a fresh key pair, made at test time with the real ``gpg``.

GnuPG's agent puts its socket in the home directory, and a Unix socket path
is limited to about 108 bytes: pytest's ``tmp_path`` (named after the test)
is often longer. :func:`gpg_home` therefore makes a short home under
``/tmp`` (``/tmp/kgpg-XXXXXXXX``), generates an unprotected Ed25519/Curve25519
key in it, and on exit stops the agent and removes the directory.

Session fixture ``gpg_key`` (``tests/conftest.py``) shares one such key with
every test that needs PGP; a test that changes the keyring makes its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["GpgKey", "gpg_home", "import_key"]


@dataclass(frozen=True)
class GpgKey:
    """A GnuPG home holding one secret key, and the environment that selects it."""

    home: Path
    fingerprint: str

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` with ``GNUPGHOME`` pointing here."""
        return {**os.environ, "GNUPGHOME": str(self.home)}


def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", *args],
        env={**os.environ, "GNUPGHOME": str(home)},
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done


def _fingerprints(home: Path) -> list[str]:
    listing = _gpg(home, "--with-colons", "--list-secret-keys").stdout.decode()
    return [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]


@contextmanager
def gpg_home(*, generate: bool = True) -> Iterator[GpgKey]:
    """A short GnuPG home under /tmp with one new key (``generate``), removed afterwards."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed (scripts/install-system-deps.sh installs gnupg)")
    home = Path(tempfile.mkdtemp(prefix="kgpg-", dir="/tmp"))
    home.chmod(0o700)
    try:
        fingerprint = ""
        if generate:
            _gpg(
                home,
                "--quick-gen-key",
                "Kustos Tests <tests@kustos.invalid>",
                "future-default",
                "default",
                "never",
            )
            fingerprint = _fingerprints(home)[0]
        yield GpgKey(home=home, fingerprint=fingerprint)
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "all"],
            env={**os.environ, "GNUPGHOME": str(home)},
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def import_key(key: GpgKey, armored: Path) -> str:
    """Import a secret key file into ``key``'s home; return the imported key's fingerprint."""
    before = set(_fingerprints(key.home))
    _gpg(key.home, "--import", str(armored))
    new = [fp for fp in _fingerprints(key.home) if fp not in before]
    return new[0] if new else ""
