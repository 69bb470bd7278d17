"""Fixtures for sops integration tests: a throwaway GNUPGHOME, the kustos CLI, a moto server, sops 1.18."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sops_support import REPO, VECTORS


@pytest.fixture
def pgp_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment with GNUPGHOME in tmp_path holding the published sops test key."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        ["gpg", "--batch", "--quiet", "--import", str(VECTORS / "sops_functional_tests_key.asc")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    yield env
    subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, capture_output=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server (real HTTP, KMS emulated) on a free loopback port."""
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        pytest.skip("moto_server is not installed")
    port = _free_port()
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


SOPS118_VENV = REPO / ".venv-sops118"


@pytest.fixture(scope="session")
def sops118() -> Path:
    """The sops 1.18 (Python) executable in its own cached virtualenv, created once if missing."""
    exe = SOPS118_VENV / "bin" / "sops"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SOPS118_VENV)], check=True)
        subprocess.run(
            [str(SOPS118_VENV / "bin" / "pip"), "install", "--quiet", "sops==1.18", "ruamel.yaml<0.17"],
            check=True, capture_output=True,
        )  # fmt: skip
    return exe
