"""A real ``kustos server`` in a subprocess, on a free loopback port, for integration tests.

:func:`start_server` runs the console script (``kustos server --dev`` by
default) with a temporary data directory and ``HOME`` (so the dev token file
lands there), waits until ``/v1/sys/health`` answers, and stops it (SIGTERM,
then SIGKILL) on exit. The dev root token is chosen by the test
(``--dev-root-token-id``) so no output parsing is needed.

Fixture ``kustos_server`` (module-scoped) yields ``(addr, root_token)``;
import it into a test module or conftest with::

    from tests.support.server import kustos_server  # noqa: F401
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

__all__ = [
    "RunningServer",
    "assert_audit_file_verifies",
    "free_port",
    "free_ports",
    "kustos_command",
    "kustos_server",
    "start_server",
]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    The sockets stay bound until all are chosen: two calls of :func:`free_port`
    in a row may return the same port (a server given it twice, as its API
    and cluster address, then never starts).
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def kustos_command() -> list[str]:
    """The ``kustos`` console script of this environment (or ``python -c`` running its entry point)."""
    script = Path(sys.executable).parent / "kustos"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from kustos.cli.main import main; main()"]


@dataclass
class RunningServer:
    """A server subprocess and what a test needs to talk to it."""

    addr: str
    root_token: str
    data_dir: Path
    home: Path
    args: tuple[str, ...]
    stdout_path: Path
    stderr_path: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[str]:
        """Unpack as ``addr, root_token``."""
        return iter((self.addr, self.root_token))

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def start(self, *, expect: tuple[int, ...] = (200,), timeout: float = 90.0) -> None:
        """Start the process and wait until ``sys/health`` answers one of ``expect``.

        Patient on purpose: on a loaded 2-core host a fresh clone's full run saw a dev server
        take more than 30 s to answer its first request (it builds its routes then); a server
        that never answers still fails, only later.
        """
        env = {**os.environ, **self.env, "HOME": str(self.home)}
        env.pop("KUSTOS_DEV_ROOT_TOKEN_ID", None)
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(
                [*kustos_command(), "server", *self.args],
                cwd=self.data_dir.parent,
                env=env,
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"kustos server exited with {self.process.returncode}:\n{self.stderr()[-4000:]}"
                )
            try:
                response = httpx.get(f"{self.addr}/v1/sys/health", timeout=5.0, verify=False)  # noqa: S501 - self-signed test certificates
                if response.status_code in expect:
                    return
                last_error = f"status {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = type(exc).__name__
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"kustos server did not become ready ({last_error}):\n{self.stderr()[-4000:]}"
        )

    def stop(self, *, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self, **kwargs: object) -> None:
        self.stop()
        self.start(**kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def start_server(
    base: Path,
    *extra: str,
    dev: bool = True,
    expect: tuple[int, ...] = (200,),
    scheme: str = "http",
    env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Run ``kustos server`` with ``extra`` flags under ``base``; yield it running, stop it after."""
    data_dir = base / "data"
    home = base / "home"
    data_dir.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    root_token = "hvs." + secrets.token_urlsafe(24)
    args: list[str] = ["--port", str(port), "--data-dir", str(data_dir)]
    if dev:
        args += ["--dev", "--dev-root-token-id", root_token]
    args += list(extra)
    server = RunningServer(
        addr=f"{scheme}://127.0.0.1:{port}",
        root_token=root_token if dev else "",
        data_dir=data_dir,
        home=home,
        args=tuple(args),
        stdout_path=base / "server.out",
        stderr_path=base / "server.err",
        env=dict(env or {}),
    )
    server.start(expect=expect)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def kustos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A ``kustos server --dev`` for the module; unpacks as ``(addr, root_token)``."""
    with start_server(tmp_path_factory.mktemp("kustos-server")) as server:
        yield server


def assert_audit_file_verifies(path: Path) -> None:
    """``kustos audit verify <path>`` (the real CLI, as an operator runs it) says the chain is sound."""
    result = subprocess.run(
        [*kustos_command(), "audit", "verify", str(path), "-o", "json"],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert json.loads(result.stdout)["ok"] is True
