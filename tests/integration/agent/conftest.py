"""Fixtures for the agent's integration tests: a real server whose kubernetes auth asks the real
kube-apiserver, a ServiceAccount token from TokenRequest, and the agent run as the injector runs it.

:class:`AgentEnv` holds one server and one namespace; :meth:`AgentEnv.agent`
starts ``kustos agent`` (the console script, a subprocess) with the
injector's flags, :meth:`AgentEnv.kustos` runs a CLI command as the root
token (``kustos kv put``, ``kustos policy write``, ``kustos token revoke``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.kube import ControlPlane
from tests.support.kubeauth import AUDIENCE, configure_kubernetes_auth, write_role
from tests.support.server import RunningServer, free_port, start_server

__all__ = ["AgentEnv", "AgentProcess", "env", "wait_for"]

WAIT = 30.0
"""Seconds a test waits for an outcome (generous: a busy machine; the benchmark measures speed)."""


def wait_for(check: Callable[[], bool], *, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _kustos() -> list[str]:
    script = Path(sys.executable).parent / "kustos"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kustos.cli.main"]


@dataclass
class AgentProcess:
    """A running ``kustos agent``."""

    process: subprocess.Popen[bytes]
    log_path: Path
    directory: Path
    port: int | None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def file(self, name: str) -> Path:
        return self.directory / name

    def text(self, name: str) -> str | None:
        try:
            return self.file(name).read_text()
        except FileNotFoundError:
            return None

    def get(self, path: str) -> httpx.Response:
        assert self.port is not None
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def ready(self) -> bool:
        try:
            return self.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def accessor(self) -> str:
        for line in self.log().splitlines():
            if "accessor " in line:
                return line.split("accessor ", 1)[1].split(" ", 1)[0]
        raise AssertionError(f"no accessor in the agent's log:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)


@dataclass
class AgentEnv:
    """One server, one namespace with ServiceAccount ``app`` allowed role ``app``."""

    server: RunningServer
    control_plane: ControlPlane
    namespace: str
    jwt_file: Path
    base: Path
    processes: list[AgentProcess] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """Where this module's secrets live (``secret/<namespace>``)."""
        return f"secret/{self.namespace}"

    def kustos(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUSTOS_ADDR": self.server.addr,
            "KUSTOS_TOKEN": self.server.root_token,
            "HOME": str(self.server.home),
        }
        done = subprocess.run(
            [*_kustos(), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kustos {' '.join(args)} -> {done.returncode}: {done.stderr}")
        return done

    def agent_args(
        self, directory: Path, *extra: str, role: str = "app", jwt_file: Path | None = None
    ) -> list[str]:
        """The flags the injector passes, plus ``extra`` (``jwt_file``: another account's token)."""
        return [
            *_kustos(),
            "agent",
            "--address",
            self.server.addr,
            "--role",
            role,
            "--auth-path",
            "kubernetes",
            "--jwt-file",
            str(jwt_file or self.jwt_file),
            "--audience",
            AUDIENCE,
            "--dir",
            str(directory),
            *extra,
        ]

    def agent(
        self,
        *extra: str,
        listen: bool = True,
        heartbeat: int = 1,
        role: str = "app",
        jwt_file: Path | None = None,
    ) -> AgentProcess:
        """Start the sidecar (no ``--once``) with ``extra`` flags (``--secret ...``)."""
        directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"agent-{uuid.uuid4().hex[:8]}"
        directory.mkdir(mode=0o700)
        port = free_port() if listen else None
        args = self.agent_args(
            directory, *extra, "--heartbeat", str(heartbeat), role=role, jwt_file=jwt_file
        )
        args += ["--listen", f"127.0.0.1:{port}" if port else "off"]
        log_path = self.base / f"{directory.name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        running = AgentProcess(process=process, log_path=log_path, directory=directory, port=port)
        self.processes.append(running)
        return running

    def once(self, directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        """Run the init container (``--once``) to completion."""
        return subprocess.run(
            [*self.agent_args(directory, *extra), "--once"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop(signal.SIGKILL)
        self.processes.clear()


READ_POLICY = """
path "secret/data/{ns}/*" {{
  capabilities = ["read"]
}}
"""


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, control_plane: ControlPlane
) -> Iterator[AgentEnv]:
    base = tmp_path_factory.mktemp("agent")
    namespace = f"shop-{uuid.uuid4().hex[:6]}"
    with start_server(base / "server") as server:
        configure_kubernetes_auth(control_plane, server.addr, server.root_token)
        write_role(
            server.addr,
            server.root_token,
            "app",
            namespaces=[namespace],
            service_accounts=["app"],
            policies=["app-read"],
        )
        jwt_file = base / "token"
        jwt_file.write_text(
            control_plane.service_account_token(namespace, "app", audiences=[AUDIENCE])
        )
        agent_env = AgentEnv(
            server=server,
            control_plane=control_plane,
            namespace=namespace,
            jwt_file=jwt_file,
            base=base,
        )
        policy = base / "app-read.hcl"
        policy.write_text(READ_POLICY.format(ns=namespace))
        agent_env.kustos("policy", "write", "app-read", str(policy))
        try:
            yield agent_env
        finally:
            agent_env.stop_all()
