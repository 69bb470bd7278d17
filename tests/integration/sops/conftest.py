"""Fixtures for sops integration tests: the session's fresh PGP key and a moto server (AWS KMS)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gpg import GpgKey


@pytest.fixture
def pgp_env(gpg_key: GpgKey) -> dict[str, str]:
    """The environment of a user holding the session's fresh PGP key (short GNUPGHOME under /tmp)."""
    return gpg_key.env


@pytest.fixture
def fp(gpg_key: GpgKey) -> str:
    """That key's fingerprint."""
    return gpg_key.fingerprint


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
