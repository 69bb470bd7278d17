"""Go's own ``text/template`` + sprig as a peer: the program in ``main.go``, built offline.

The differential test (tests/integration/peers/test_gotext_vs_go.py) and
``bench/gotext.py`` compare :mod:`kustos.gitops.gotext` with it. It is built
from Debian's Go toolchain and sprig sources in GOPATH mode (no module
download: ``GOPROXY=off``); ``scripts/install-system-deps.sh`` installs
``golang-go`` and ``golang-github-masterminds-sprig-dev``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["PROGRAM", "build", "missing"]

_SOURCES = Path("/usr/share/gocode/src")
_SPRIG = _SOURCES / "github.com/Masterminds/sprig"
_SEMVER = _SOURCES / "github.com/Masterminds/semver"
PROGRAM = Path(__file__).with_name("main.go")


def missing() -> str | None:
    """Why the peer cannot be built here, or ``None`` when it can."""
    if shutil.which("go") is None or not _SPRIG.is_dir() or not _SEMVER.is_dir():
        return (
            "Go or sprig's sources are not installed (scripts/install-system-deps.sh installs "
            "golang-go and golang-github-masterminds-sprig-dev)"
        )
    return None


def build(work: Path) -> Path:
    """Build the renderer under ``work`` (a GOPATH, a build cache, the binary); its path."""
    go = shutil.which("go")
    assert go is not None, missing()
    masterminds = work / "gopath" / "src" / "github.com" / "Masterminds"
    for name, source in (("sprig", _SPRIG), ("semver", _SEMVER)):
        (masterminds / name).mkdir(parents=True, exist_ok=True)
        link = masterminds / name / "v3"  # their module paths end in /v3; Debian's dirs do not
        if not link.exists():
            link.symlink_to(source)
    binary = work / "render"
    env = {
        **os.environ,
        "GOPATH": f"{work / 'gopath'}:{_SOURCES.parent}",
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(work / "cache"),
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    built = subprocess.run(
        [go, "build", "-o", str(binary), str(PROGRAM)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if built.returncode != 0:
        raise RuntimeError(f"go build failed: {built.stderr.strip()}")
    return binary
