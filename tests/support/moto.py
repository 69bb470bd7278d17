"""moto's server (real HTTP, AWS APIs emulated) on a free loopback port, for AWS KMS tests.

:func:`start_moto` runs the ``moto_server`` console script installed with
``moto[server]`` and waits until it accepts connections; fixture
``moto_kms`` (module-scoped) yields its URL with dummy credentials and a
region exported, so boto3 clients pointed at it work without configuration.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["moto_kms", "start_moto"]


@contextlib.contextmanager
def start_moto() -> Iterator[str]:
    """Run moto's server until the block ends; yield its ``http://127.0.0.1:<port>`` URL."""
    program = Path(sys.executable).with_name("moto_server")
    if not program.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = subprocess.Popen(
        [str(program), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def moto_kms() -> Iterator[str]:
    """moto's server URL, with dummy AWS credentials and ``us-east-1`` in the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.delenv("AWS_PROFILE", raising=False)
        with start_moto() as url:
            yield url
