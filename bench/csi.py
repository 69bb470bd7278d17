"""CSI provider benchmark: what one ``Mount`` costs, against a real server and a real API server.

What it measures (one bounded run):

- ``Mount`` latency over the unix socket (``kustos csi-provider`` in a
  subprocess, a client from the same ``.proto``), p50/p99 over ``--count``
  mounts of ``--objects`` objects from one secret each: a kubernetes login
  (the server asks the real kube-apiserver with a TokenReview), one KV read per
  object with the pod's token, the login token revoked;
- baselines in the same run: the login alone (``auth/kubernetes/login`` over
  HTTP, with its revocation) and one KV read over HTTP with a token, so the
  Mount's time can be read as login + reads + the gRPC hop;
- the provider's peak RSS (``VmHWM`` from ``/proc``).

No peer provider runs here (Vault's CSI provider is a Go binary that no
package registry this project uses ships).

Run: ``KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh) .venv/bin/python bench/csi.py``
(``--count 200 --objects 5``, ``--json``).
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
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kustos.protos import csi_provider_pb2 as pb  # noqa: E402
from kustos.protos import csi_provider_pb2_grpc as pb_grpc  # noqa: E402
from tests.support.kube import ControlPlane, assets_dir  # noqa: E402
from tests.support.kubeauth import AUDIENCE, configure_kubernetes_auth, write_role  # noqa: E402
from tests.support.server import start_server  # noqa: E402

_NS, _SA = "bench", "app"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def run(count: int, objects: int) -> dict[str, Any]:
    assets = assets_dir()
    if assets is None:
        raise SystemExit(
            "set KUBEBUILDER_ASSETS: export KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh)"
        )
    plane = ControlPlane(assets)
    plane.start()
    work = Path(tempfile.mkdtemp(prefix="bcsi-", dir="/tmp"))
    try:
        with start_server(work / "server") as server:
            headers = {"X-Vault-Token": server.root_token}
            configure_kubernetes_auth(plane, server.addr, server.root_token)
            httpx.post(
                f"{server.addr}/v1/sys/policies/acl/bench",
                headers=headers,
                json={"policy": 'path "secret/data/bench/*" { capabilities = ["read"] }'},
            ).raise_for_status()
            write_role(
                server.addr,
                server.root_token,
                "bench",
                namespaces=[_NS],
                service_accounts=[_SA],
                policies=["bench"],
                ttl="5m",
            )
            for i in range(objects):
                httpx.post(
                    f"{server.addr}/v1/secret/data/bench/s{i}",
                    headers=headers,
                    json={"data": {"password": f"value-{i}", "user": "app"}},
                ).raise_for_status()
            jwt = plane.service_account_token(_NS, _SA, audiences=[AUDIENCE], seconds=86400)
            socket_path = work / "kustos.sock"
            provider = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "kustos"),
                    "csi-provider",
                    "--socket",
                    str(socket_path),
                    "--address",
                    server.addr,
                    "--log-level",
                    "warning",
                ],
                start_new_session=True,
            )
            try:
                while not socket_path.exists():
                    if provider.poll() is not None:
                        raise SystemExit("the provider exited")
                    time.sleep(0.05)
                attributes = json.dumps(
                    {
                        "roleName": "bench",
                        "objects": yaml.safe_dump(
                            [
                                {
                                    "objectName": f"s{i}",
                                    "secretPath": f"secret/data/bench/s{i}",
                                    "secretKey": "password",
                                }
                                for i in range(objects)
                            ]
                        ),
                        "csi.storage.k8s.io/serviceAccount.tokens": json.dumps(
                            {AUDIENCE: {"token": jwt, "expirationTimestamp": ""}}
                        ),
                    }
                )
                request = pb.MountRequest(attributes=attributes, secrets="{}", permission="420")
                mounts: list[float] = []
                logins: list[float] = []
                reads: list[float] = []
                with (
                    grpc.insecure_channel(f"unix://{socket_path}") as channel,
                    httpx.Client(base_url=f"{server.addr}/v1") as http,
                ):
                    stub = pb_grpc.CSIDriverProviderStub(channel)
                    for _ in range(10):  # warm-up
                        stub.Mount(request, timeout=30)
                    for _ in range(count):
                        started = time.perf_counter()
                        answer = stub.Mount(request, timeout=30)
                        mounts.append(time.perf_counter() - started)
                        assert len(answer.files) == objects
                        started = time.perf_counter()
                        login = http.post(
                            "auth/kubernetes/login", json={"role": "bench", "jwt": jwt}
                        )
                        token = login.json()["auth"]["client_token"]
                        http.post("auth/token/revoke-self", headers={"X-Vault-Token": token})
                        logins.append(time.perf_counter() - started)
                        started = time.perf_counter()
                        http.get("secret/data/bench/s0", headers=headers).raise_for_status()
                        reads.append(time.perf_counter() - started)
                rss = _peak_rss_mib(provider.pid)
            finally:
                os.killpg(provider.pid, signal.SIGTERM)
                provider.wait(timeout=15)
    finally:
        plane.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "count": count,
        "objects": objects,
        "mount_p50_ms": _ms(statistics.median(mounts)),
        "mount_p99_ms": _ms(_percentile(mounts, 0.99)),
        "login_p50_ms": _ms(statistics.median(logins)),
        "login_p99_ms": _ms(_percentile(logins, 0.99)),
        "read_p50_ms": _ms(statistics.median(reads)),
        "read_p99_ms": _ms(_percentile(reads, 0.99)),
        "provider_peak_rss_mib": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="mounts measured")
    parser.add_argument("--objects", type=int, default=5, help="objects per mount")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.count, args.objects)
    if args.json:
        print(json.dumps(result))
        return
    print(f"mounts:                           {result['count']} x {result['objects']} objects")
    print(
        f"Mount over the socket:            p50 {result['mount_p50_ms']} ms, p99 {result['mount_p99_ms']} ms"
    )
    print(
        f"baseline: login + revoke (HTTP):  p50 {result['login_p50_ms']} ms, p99 {result['login_p99_ms']} ms"
    )
    print(
        f"baseline: one KV read (HTTP):     p50 {result['read_p50_ms']} ms, p99 {result['read_p99_ms']} ms"
    )
    print(f"provider peak RSS:                {result['provider_peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
