"""Controller benchmark on a real kube-apiserver: 1,000 ExternalSecrets on the ``kustos`` provider.

What it measures (one bounded run, it stops by itself):

- time to the first full sync: from the controller's start until every one
  of the N existing ExternalSecrets has its Secret with the right value;
- API calls per new ExternalSecret during that first sync, counted by the
  API server itself: its audit log records every request of the
  controller's ServiceAccount (kopf's lists and watches included);
- change-to-Secret latency with push: a KV write through the server's HTTP
  API until the Secret holds the new value (p50/p99 over ``--changes``
  writes, one at a time); baseline in the same run: one Secret PATCH
  straight to the API server and read back (the floor any controller pays);
- the controller's peak memory (``ru_maxrss`` of its own process), against
  an idle controller watching an empty cluster in the same run;
- providers opened (one per store: each holds one change-stream
  subscription), from the controller's own report when it stops.

The controller runs in a child process as the Helm chart's ServiceAccount
with the chart's ClusterRole (the CRDs of ``deploy/crds/``), exactly as
installed. Everything listens on 127.0.0.1.

Run: ``KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh) .venv/bin/python bench/operator.py``
(``--count 1000 --changes 100``). Needs the kube-apiserver and etcd binaries
(envtest's ``KUBEBUILDER_ASSETS``) and ``kustos server --dev`` (the venv).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.chart import (  # noqa: E402
    CONTROLLER_ACCOUNT,
    RELEASE_NAMESPACE,
    controller_kubeconfig,
    install_controller_rbac,
    install_crds,
)
from tests.support.kube import ControlPlane, assets_dir  # noqa: E402

_NS = "bench"
_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:{CONTROLLER_ACCOUNT}"
_AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["{_USER}"]
  - level: None
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the controller, in its own process -----------------------------------------------------


def _child(kubeconfig: str, workers: int, ready_file: str | None) -> None:
    stopping = asyncio.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())  # before the slow imports

    import kopf

    from kustos.kube import load_kubeconfig
    from kustos.operator.main import OperatorOptions, serve

    def tune(settings: kopf.OperatorSettings) -> None:
        settings.watching.server_timeout = 300
        settings.process.ultimate_exiting_timeout = None

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        if stopping.is_set():
            stop.set()
        ready = asyncio.Event()

        async def mark_ready() -> None:
            await ready.wait()
            if ready_file:
                Path(ready_file).touch()

        marker = asyncio.create_task(mark_ready())
        options = OperatorOptions(
            reloader=False, sealed_secrets=False, workers=workers, extra_settings=(tune,)
        )
        connection = await load_kubeconfig(path=kubeconfig)
        report = await serve(
            connection=connection, options=options, stop_flag=stop, ready_flag=ready
        )
        marker.cancel()
        return {
            "providers_opened": report.providers_opened,
            "reconciles": report.reconciles,
            "pushes": report.pushes,
            "client_calls": dict(report.api_calls),
        }

    result = asyncio.run(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


class _Controller:
    """The controller in a child process (optionally sampled by py-spy)."""

    def __init__(self, kubeconfig: Path, workers: int, profile: str | None = None) -> None:
        self.ready_file = Path(tempfile.mkdtemp()) / "ready"
        self._args = [sys.executable, __file__, "--child", str(kubeconfig)]
        self._args += ["--workers", str(workers), "--ready-file", str(self.ready_file)]
        self._profile = profile
        self._spy: subprocess.Popen[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self._args, stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT
        )
        if self._profile:  # sample the controller until it exits (pip install py-spy)
            spy = Path(sys.executable).with_name("py-spy")
            self._spy = subprocess.Popen(
                [str(spy), "record", "--pid", str(self.process.pid), "-o", self._profile,
                 "-f", "raw", "-r", "50", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    async def stop(self) -> dict[str, Any]:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(self.process.communicate, timeout=120)
        if self._spy is not None:
            await asyncio.to_thread(self._spy.wait, 60)
        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


# --- the Kustos server ------------------------------------------------------------------------


@contextlib.contextmanager
def _server() -> Any:
    token = secrets.token_hex(16)
    port = _free_port()
    with tempfile.TemporaryDirectory() as home:
        script = Path(sys.executable).parent / "kustos"
        process = subprocess.Popen(
            [str(script), "server", "--dev", "--dev-root-token-id", token, "--port", str(port),
             "--data-dir", str(Path(home) / "data")],
            env={**os.environ, "HOME": home}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        addr = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{addr}/v1/sys/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise SystemExit("kustos server did not start")
            yield addr, token, process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the API server's own count ---------------------------------------------------------------


def _audit_calls(path: Path) -> collections.Counter[str]:
    """Requests of the controller's ServiceAccount so far, as ``verb resource[/subresource]``."""
    counts: collections.Counter[str] = collections.Counter()
    if not path.exists():
        return counts
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("user", {}).get("username") != _USER:
            continue
        verb = entry.get("verb", "")
        # a watch is logged when it starts streaming (and again when it ends): count it once
        stage = entry.get("stage")
        if (verb == "watch" and stage != "ResponseStarted") or (
            verb != "watch" and stage != "ResponseComplete"
        ):
            continue
        ref = entry.get("objectRef") or {}
        what = ref.get("resource", entry.get("requestURI", "?"))
        if ref.get("subresource"):
            what += "/" + ref["subresource"]
        counts[f"{verb} {what}"] += 1
    return counts


# --- the run ----------------------------------------------------------------------------------


async def _wait_all(
    kube: httpx.AsyncClient, count: int, value: bytes, *, deadline: float
) -> tuple[float, float]:
    """Watch the Secrets until every one holds ``value``; when the first and the last arrived.

    A watch (not repeated lists of 1,000 Secrets) so the measuring costs the
    API server little next to what is measured.
    """
    path = f"/api/v1/namespaces/{_NS}/secrets"
    listed = (await kube.get(path)).json()
    synced: set[str] = set()

    def see(item: dict[str, Any]) -> None:
        if base64.b64decode((item.get("data") or {}).get("value", "")).startswith(value):
            synced.add(item["metadata"]["name"])

    for item in listed.get("items") or []:
        see(item)
    first: float | None = time.monotonic() if synced else None
    params = {
        "watch": "1",
        "resourceVersion": listed["metadata"]["resourceVersion"],
        "timeoutSeconds": str(int(max(1, deadline - time.monotonic()))),
    }
    async with kube.stream("GET", path, params=params, timeout=None) as response:
        async for line in response.aiter_lines():
            if not line:
                continue
            event = json.loads(line)
            if event.get("type") in ("ADDED", "MODIFIED"):
                see(event["object"])
                if synced and first is None:
                    first = time.monotonic()
            if len(synced) >= count:
                done = time.monotonic()
                return first or done, done
    raise SystemExit(f"timed out: the first full sync did not finish ({count} ExternalSecrets)")


async def _secret_value(kube: httpx.AsyncClient, name: str) -> bytes:
    response = await kube.get(f"/api/v1/namespaces/{_NS}/secrets/{name}")
    if response.status_code != 200:
        return b""
    return base64.b64decode((response.json().get("data") or {}).get("value", ""))


async def _run(args: argparse.Namespace, plane: ControlPlane, audit: Path) -> dict[str, Any]:
    install_crds(plane)
    install_controller_rbac(plane)
    plane.ensure_namespace(_NS)
    kubeconfig = controller_kubeconfig(plane, plane.root / "controller.kubeconfig")
    with _server() as (addr, token, server_pid):
        async with plane.async_http(timeout=60) as kube, \
                httpx.AsyncClient(base_url=addr, headers={"X-Vault-Token": token}, timeout=30) as kv:  # fmt: skip
            # baseline memory: an idle controller on an empty cluster
            idle = _Controller(kubeconfig, args.workers)
            idle.start()
            while not idle.ready_file.exists():  # started, logged in, listed (empty) and idle
                await asyncio.sleep(0.1)
            await asyncio.sleep(3)
            idle_mem = await idle.stop()
            if not idle_mem:
                sys.stderr.write("the idle controller reported nothing:\n" + idle.log_tail())

            limiter = asyncio.Semaphore(16)

            async def put(index: int, value: str) -> None:
                async with limiter:
                    response = await kv.post(
                        f"/v1/secret/data/bench/k{index}", json={"data": {"v": value}}
                    )
                    response.raise_for_status()

            async def create(path: str, body: dict[str, Any]) -> None:
                async with limiter:
                    body["metadata"]["namespace"] = _NS
                    response = await kube.post(path, json=body)
                    if response.status_code >= 300:
                        raise SystemExit(f"POST {path} -> {response.status_code}: {response.text}")

            await asyncio.gather(*(put(i, f"initial-{i}") for i in range(args.count)))
            await create(f"/api/v1/namespaces/{_NS}/secrets", {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kustos-token"},
                "data": {"token": base64.b64encode(token.encode()).decode()}})  # fmt: skip
            await create(f"/apis/kustos.io/v1/namespaces/{_NS}/secretstores", {
                "apiVersion": "kustos.io/v1", "kind": "SecretStore", "metadata": {"name": "kustos"},
                "spec": {"provider": {"kustos": {"server": addr, "auth": {
                    "tokenSecretRef": {"name": "kustos-token", "key": "token"}}}}}})  # fmt: skip
            await asyncio.gather(*(
                create(f"/apis/kustos.io/v1/namespaces/{_NS}/externalsecrets", {
                    "apiVersion": "kustos.io/v1", "kind": "ExternalSecret", "metadata": {"name": f"es-{i}"},
                    "spec": {"secretStoreRef": {"name": "kustos"}, "refreshInterval": "1h",
                             "target": {"name": f"s-{i}"},
                             "data": [{"secretKey": "value",
                                       "remoteRef": {"key": f"bench/k{i}", "property": "v"}}]}})
                for i in range(args.count)))  # fmt: skip

            before = _audit_calls(audit)
            controller = _Controller(kubeconfig, args.workers, args.profile)
            peers = {"kube-apiserver": plane.pid("kube-apiserver"), "etcd": plane.pid("etcd"),
                     "kustos server": server_pid}  # fmt: skip
            cpu_before = {name: _cpu_seconds(pid) for name, pid in peers.items()}
            started = time.monotonic()
            controller.start()
            try:
                try:
                    first_seen, done = await _wait_all(
                        kube, args.count, b"initial-", deadline=started + args.timeout
                    )
                except SystemExit:
                    sys.stderr.write(controller.log_tail())
                    raise
                first_sync = done - started
                assert controller.process is not None
                cpu = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in peers.items()}
                cpu["controller"] = _cpu_seconds(controller.process.pid)
                await asyncio.sleep(1.0)  # let the last status patches land before counting
                during = _audit_calls(audit) - before

                latencies: list[float] = []
                step = max(1, args.count // args.changes)
                for n, index in enumerate(range(0, args.count, step)):
                    if n >= args.changes or time.monotonic() > started + args.timeout:
                        break
                    new = f"changed-{n}".encode()
                    t0 = time.perf_counter()
                    await put(index, new.decode())
                    while await _secret_value(kube, f"s-{index}") != new:
                        if time.perf_counter() - t0 > 30:
                            raise SystemExit(
                                f"timed out waiting for change {n} to reach the Secret"
                            )
                        await asyncio.sleep(0.002)
                    latencies.append(time.perf_counter() - t0)

                floor: list[float] = []
                for n in range(min(args.changes, 50)):
                    t0 = time.perf_counter()
                    await kube.patch(f"/api/v1/namespaces/{_NS}/secrets/kustos-token",
                                     json={"metadata": {"annotations": {"n": str(n)}}},
                                     headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
                    await kube.get(f"/api/v1/namespaces/{_NS}/secrets/kustos-token")
                    floor.append(time.perf_counter() - t0)
            finally:
                report = await controller.stop()
    calls = sum(during.values())
    return {
        "count": args.count,
        "first_sync_s": round(first_sync, 2),
        "first_secret_s": round(first_seen - started, 2),
        "es_per_s": round(args.count / first_sync, 1),
        "api_calls_first_sync": calls,
        "cpu_s_first_sync": {name: round(value, 2) for name, value in cpu.items()},
        "api_calls_per_es": round(calls / args.count, 3),
        "api_calls_by_kind": dict(during.most_common()),
        "changes": len(latencies),
        "push_p50_ms": round(_pct(latencies, 0.5) * 1000, 1),
        "push_p99_ms": round(_pct(latencies, 0.99) * 1000, 1),
        "push_mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "floor_p50_ms": round(_pct(floor, 0.5) * 1000, 2),
        "push_vs_floor_p50": round(_pct(latencies, 0.5) / _pct(floor, 0.5), 1),
        "providers_opened": report.get("providers_opened"),
        "reconciles": report.get("reconciles"),
        "controller_peak_rss_mib": report.get("peak_rss_mib"),
        "controller_cpu_s": report.get("cpu_s"),
        "idle_controller_peak_rss_mib": idle_mem.get("peak_rss_mib"),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="ExternalSecrets (and KV secrets)")
    parser.add_argument("--changes", type=int, default=100, help="KV writes timed one by one")
    parser.add_argument("--workers", type=int, default=16, help="controller reconcile workers")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="give up after this many seconds"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="sample the controller with py-spy into FILE (collapsed stacks)",
    )
    parser.add_argument("--child", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.workers, args.ready_file)
        return
    assets = assets_dir()
    if assets is None:
        raise SystemExit(
            "set KUBEBUILDER_ASSETS (export KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh))"
        )
    plane = ControlPlane(assets)
    audit = plane.root / "audit.log"
    policy = plane.root / "audit-policy.yaml"
    policy.write_text(_AUDIT_POLICY)
    plane.extra_apiserver_args += [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={audit}",
        "--audit-log-format=json",
    ]
    try:
        plane.start()
        result = asyncio.run(_run(args, plane, audit))
    finally:
        plane.stop()
    if args.json:
        print(json.dumps(result))
        return
    print(f"ExternalSecrets:                {result['count']}")
    print(
        f"first full sync:                {result['first_sync_s']} s ({result['es_per_s']} ExternalSecrets/s)"
    )
    print(
        f"API calls in the first sync:    {result['api_calls_first_sync']} "
        f"({result['api_calls_per_es']} per ExternalSecret; audit log of the controller's account)"
    )
    for what, count in result["api_calls_by_kind"].items():
        print(f"    {count:6d}  {what}")
    print(
        f"change -> Secret (push):        p50 {result['push_p50_ms']} ms, p99 {result['push_p99_ms']} ms "
        f"(mean {result['push_mean_ms']} ms, {result['changes']} changes)"
    )
    print(
        f"baseline PATCH+GET, API server: p50 {result['floor_p50_ms']} ms (push p50 = {result['push_vs_floor_p50']}x)"
    )
    print(f"providers opened (one store):   {result['providers_opened']}")
    print(f"controller CPU (whole run):     {result['controller_cpu_s']} s")
    print(
        f"controller peak RSS:            {result['controller_peak_rss_mib']} MiB "
        f"(idle controller, empty cluster: {result['idle_controller_peak_rss_mib']} MiB)"
    )
    print(f"load average (1 min) at the end: {result['load_average_1m']}")  # fmt: skip


if __name__ == "__main__":
    main()
