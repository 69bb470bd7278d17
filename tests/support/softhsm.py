"""A throwaway SoftHSM2 token for the PKCS#11 tests.

:func:`create_token` writes a ``softhsm2.conf`` pointing at a fresh token
directory and initializes one token there with ``softhsm2-util``. Callers
must export ``SOFTHSM2_CONF`` before the PKCS#11 library is first loaded:
python-pkcs11 initializes the module once per process and SoftHSM2 reads its
configuration only then, so one token directory serves a whole test session
(tests use distinct key labels instead of distinct tokens).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["SOFTHSM_MODULE", "SoftHsmToken", "create_token", "softhsm_missing"]

SOFTHSM_MODULE: Final = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class SoftHsmToken:
    """Everything a provider needs to reach the token."""

    module: str
    conf: Path
    token_label: str
    pin: str
    so_pin: str


def softhsm_missing() -> str | None:
    """Why SoftHSM2 cannot be used here, or None when it can."""
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util is not installed (make test installs the softhsm2 package)"
    if not Path(SOFTHSM_MODULE).exists():
        return f"the SoftHSM2 PKCS#11 module {SOFTHSM_MODULE} is missing (install softhsm2)"
    return None


def create_token(
    directory: Path, *, label: str = "kustos-test", pin: str = "1234", so_pin: str = "5678"
) -> SoftHsmToken:
    """Create a config file and one initialized token under ``directory``."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, mode=0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            so_pin,
        ],
        check=True,
        capture_output=True,
        env={"SOFTHSM2_CONF": str(conf), "PATH": "/usr/bin:/bin:/usr/local/bin"},
        timeout=60,
    )
    return SoftHsmToken(module=SOFTHSM_MODULE, conf=conf, token_label=label, pin=pin, so_pin=so_pin)
