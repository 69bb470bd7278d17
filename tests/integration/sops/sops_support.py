"""Helpers shared by the sops integration tests (constants and running the kustos CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import SOPS_VECTORS

VECTORS = SOPS_VECTORS
TEST_FP = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4"
REPO = Path(__file__).resolve().parents[3]
KUSTOS = str(Path(sys.executable).with_name("kustos"))


def kustos(*args: str, env: dict[str, str], cwd: Path | None = None, stdin: bytes | None = None,
           check: bool = True) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """Run the real ``kustos`` console script."""
    done = subprocess.run(
        [KUSTOS, *args], env=env, cwd=cwd, input=stdin, capture_output=True, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kustos {' '.join(args)} failed: {done.stderr.decode()}")
    return done
