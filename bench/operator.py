"""Operator benchmark: 1,000 ExternalSecrets on the ``kustos`` provider, against kmock and a real server.

What it measures (one bounded run, it stops by itself):

- time to the first full sync: from the operator's start until every one of
  the N ExternalSecrets has its Secret with the right value;
- change-to-Secret latency with push: a KV write through the server's HTTP
  API, until the Secret in the emulator holds the new value (p50/p99 over
  ``--changes`` writes, one at a time); baseline in the same run: one
  Secret PATCH straight to the emulator and read back (the floor any
  operator pays for the write);
- the operator's peak memory: ``ru_maxrss`` of the operator process (it runs
  in a child process, so kmock and this driver are not counted), against an
  idle operator watching an empty cluster in the same run.

Run: ``.venv/bin/python bench/operator.py`` (``--count 1000 --changes 100``).
Needs nothing but the venv: kmock is the Kubernetes API, ``kustos server
--dev`` the secrets server (subprocess, temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

_RESOURCES = {
    "v1/secrets": ("Secret", True, ()),
    "v1/configmaps": ("ConfigMap", True, ()),
    "v1/events": ("Event", True, ()),
    "v1/namespaces": ("Namespace", False, ()),
    "kustos.io/v1/externalsecrets": ("ExternalSecret", True, ("status",)),
    "kustos.io/v1/secretstores": ("SecretStore", True, ("status",)),
    "kustos.io/v1/clustersecretstores": ("ClusterSecretStore", False, ("status",)),
}
_NS = "bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the operator, in its own process -------------------------------------------------------


def _child(k8s: str, workers: int) -> None:
    import kopf

    from kustos.kube import Connection
    from kustos.operator.main import OperatorOptions, serve

    def fast(settings: kopf.OperatorSettings) -> None:
        settings.watching.server_timeout = 60
        settings.watching.reconnect_backoff = 0.1
        settings.queueing.idle_timeout = 5
        settings.process.ultimate_exiting_timeout = None

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        options = OperatorOptions(
            reloader=False, sealed_secrets=False, workers=workers, extra_settings=(fast,)
        )
        await serve(connection=Connection(server=k8s), options=options, stop_flag=stop)

    asyncio.run(main())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(json.dumps({"peak_rss_mib": round(peak_kib / 1024, 1)}) + "\n")
    sys.stdout.flush()


class _Operator:
    def __init__(self, k8s: str, workers: int) -> None:
        self._args = [sys.executable, __file__, "--child", k8s, "--workers", str(workers)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=self.log,
                                        cwd=Path(__file__).resolve().parents[1])  # fmt: skip

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    async def stop(self) -> dict[str, Any]:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(self.process.communicate, timeout=60)
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
            yield addr, token
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


# --- the run ----------------------------------------------------------------------------------


async def _wait_all(kube: httpx.AsyncClient, count: int, value: bytes, *, deadline: float) -> None:
    while time.monotonic() < deadline:
        items = (await kube.get(f"/api/v1/namespaces/{_NS}/secrets")).json().get("items") or []
        synced = sum(
            1
            for item in items
            if base64.b64decode((item.get("data") or {}).get("value", "")).startswith(value)
        )
        if synced >= count:
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"timed out: the first full sync did not finish ({count} ExternalSecrets)")


async def _secret_value(kube: httpx.AsyncClient, name: str) -> bytes:
    response = await kube.get(f"/api/v1/namespaces/{_NS}/secrets/{name}")
    if response.status_code != 200:
        return b""
    return base64.b64decode((response.json().get("data") or {}).get("value", ""))


async def _trim_request_log(cluster: Any) -> None:
    while True:
        cluster._requests.clear()
        await asyncio.sleep(0.1)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    import kmock

    with _server() as (addr, token):
        async with kmock.KubernetesEmulator() as cluster, kmock.Server(cluster):
            for key, (kind, namespaced, subresources) in _RESOURCES.items():
                cluster.resources[key] = kmock.ResourceInfo(
                    kind=kind, namespaced=namespaced, verbs={"get", "list", "watch", "create", "patch", "delete"},
                    subresources=set(subresources))  # fmt: skip
            k8s = str(cluster.url).rstrip("/")
            # kmock keeps every request for test assertions and matches each new one against that log,
            # so its cost per request grows with the run; the benchmark empties the log as it goes
            trimmer = asyncio.create_task(_trim_request_log(cluster))
            async with httpx.AsyncClient(base_url=k8s, timeout=30) as kube, \
                    httpx.AsyncClient(base_url=addr, headers={"X-Vault-Token": token}, timeout=30) as kv:  # fmt: skip
                # baseline memory: an idle operator on an empty cluster
                idle = _Operator(k8s, args.workers)
                idle.start()
                await asyncio.sleep(3)
                idle_mem = await idle.stop()

                limiter = asyncio.Semaphore(32)

                async def put(index: int, value: str) -> None:
                    async with limiter:
                        response = await kv.post(
                            f"/v1/secret/data/bench/k{index}", json={"data": {"v": value}}
                        )
                        response.raise_for_status()

                async def create(plural: str, body: dict[str, Any], api: str) -> None:
                    async with limiter:
                        body["metadata"].update(uid=secrets.token_hex(8), namespace=_NS)
                        response = await kube.post(f"{api}/namespaces/{_NS}/{plural}", json=body)
                        response.raise_for_status()

                await asyncio.gather(*(put(i, f"initial-{i}") for i in range(args.count)))
                await create(
                    "secrets",
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "kustos-token"},
                        "data": {"token": base64.b64encode(token.encode()).decode()},
                    },
                    "/api/v1",
                )
                await create("secretstores", {"apiVersion": "kustos.io/v1", "kind": "SecretStore",
                                              "metadata": {"name": "kustos"},
                                              "spec": {"provider": {"kustos": {"server": addr, "auth": {
                                                  "tokenSecretRef": {"name": "kustos-token", "key": "token"}}}}}},
                             "/apis/kustos.io/v1")  # fmt: skip
                await asyncio.gather(*(
                    create("externalsecrets", {"apiVersion": "kustos.io/v1", "kind": "ExternalSecret",
                                               "metadata": {"name": f"es-{i}"},
                                               "spec": {"secretStoreRef": {"name": "kustos"}, "refreshInterval": "1h",
                                                        "target": {"name": f"s-{i}"},
                                                        "data": [{"secretKey": "value", "remoteRef": {
                                                            "key": f"bench/k{i}", "property": "v"}}]}},
                           "/apis/kustos.io/v1")
                    for i in range(args.count)))  # fmt: skip

                operator = _Operator(k8s, args.workers)
                started = time.monotonic()
                operator.start()
                try:
                    try:
                        await _wait_all(
                            kube, args.count, b"initial-", deadline=started + args.timeout
                        )
                    except SystemExit:
                        sys.stderr.write(operator.log_tail())
                        raise
                    first_sync = time.monotonic() - started

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
                    mem = await operator.stop()
                    trimmer.cancel()
    return {
        "count": args.count,
        "first_sync_s": round(first_sync, 2),
        "es_per_s": round(args.count / first_sync, 1),
        "changes": len(latencies),
        "push_p50_ms": round(_pct(latencies, 0.5) * 1000, 1),
        "push_p99_ms": round(_pct(latencies, 0.99) * 1000, 1),
        "push_mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "floor_p50_ms": round(_pct(floor, 0.5) * 1000, 2),
        "push_vs_floor_p50": round(_pct(latencies, 0.5) / _pct(floor, 0.5), 1),
        "operator_peak_rss_mib": mem.get("peak_rss_mib"),
        "idle_operator_peak_rss_mib": idle_mem.get("peak_rss_mib"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="ExternalSecrets (and KV secrets)")
    parser.add_argument("--changes", type=int, default=100, help="KV writes timed one by one")
    parser.add_argument("--workers", type=int, default=8, help="operator reconcile workers")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="give up after this many seconds"
    )
    parser.add_argument("--child", metavar="K8S_URL", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.workers)
        return
    result = asyncio.run(_run(args))
    if args.json:
        print(json.dumps(result))
        return
    print(f"ExternalSecrets:              {result['count']}")
    print(
        f"first full sync:              {result['first_sync_s']} s ({result['es_per_s']} ExternalSecrets/s)"
    )
    print(f"change -> Secret (push):      p50 {result['push_p50_ms']} ms, p99 {result['push_p99_ms']} ms "
          f"(mean {result['push_mean_ms']} ms, {result['changes']} changes)")  # fmt: skip
    print(
        f"baseline PATCH+GET on kmock:  p50 {result['floor_p50_ms']} ms (push p50 = {result['push_vs_floor_p50']}x)"
    )
    print(f"operator peak RSS:            {result['operator_peak_rss_mib']} MiB "
          f"(idle operator, empty cluster: {result['idle_operator_peak_rss_mib']} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
