"""Helpers shared by the sops integration tests (running the kustos CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
