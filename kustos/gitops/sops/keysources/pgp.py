"""OpenPGP recipients through the ``gpg`` program (honours ``GNUPGHOME`` and ``SOPS_GPG_EXEC``).

The data key is encrypted to a fingerprint as an ASCII-armored message, as
sops does (``--trusted-key`` so an unsigned test key needs no trust setup).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from kustos.errors import ConfigError, DecryptionError, KeyProviderError

__all__ = ["decrypt", "encrypt"]


def _gpg(env: Mapping[str, str]) -> str:
    return env.get("SOPS_GPG_EXEC") or "gpg"


def encrypt(fingerprint: str, data_key: bytes, *, env: Mapping[str, str]) -> str:
    """The data key encrypted to ``fingerprint`` as an armored PGP message."""
    fp = fingerprint.replace(" ", "")
    if not fp:
        raise ConfigError("empty PGP fingerprint")
    args = [
        _gpg(env), "--batch", "--no-default-recipient", "--yes", "--encrypt", "--armor",
        "--recipient", fp, "--trusted-key", fp[-16:], "--no-encrypt-to",
    ]  # fmt: skip
    try:
        done = subprocess.run(args, input=data_key, capture_output=True, env=dict(env), check=False)  # noqa: S603
    except OSError as exc:
        raise KeyProviderError(f"cannot run gpg: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise KeyProviderError(
            f"gpg could not encrypt to {fp}: {detail[-1] if detail else 'failed'}"
        )
    return done.stdout.decode()


def decrypt(enc: str, *, env: Mapping[str, str]) -> bytes:
    """Recover the data key with whatever secret key gpg holds for the message."""
    args = [_gpg(env), "--batch", "--quiet", "--decrypt"]
    try:
        done = subprocess.run(  # noqa: S603
            args, input=enc.encode(), capture_output=True, env=dict(env), check=False
        )
    except OSError as exc:
        raise DecryptionError(f"cannot run gpg: {exc}") from None
    if done.returncode != 0:
        raise DecryptionError("gpg has no secret key for it")
    return done.stdout
