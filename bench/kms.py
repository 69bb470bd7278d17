"""Encryption at rest with the Kustos KMS v2 plugin: Secret writes through a real API server, and the plugin's own calls.

Why: every Secret write through kube-apiserver is encrypted by the first
provider of its EncryptionConfiguration. With a KMS v2 plugin the API server
derives a fresh DEK per write from a cached seed and calls the plugin only
to wrap a new seed (at start, on key rotation) or to unwrap one it has not
seen (after a restart), so writes should cost about what ``aescbc`` (a key
in a file on the node) costs. The target: the plugin keeps at least 80 % of
``aescbc``'s write rate.

In one run, three etcd + kube-apiserver pairs run side by side
(``KUBEBUILDER_ASSETS``, envtest's convention), each with its own
EncryptionConfiguration — ``kms`` (the plugin, local backend, over its unix
socket), ``aescbc`` and ``identity`` (no encryption) — and after 100 warm-up
creates each, ``--secrets`` Secrets are created through each in
``--rounds`` rounds whose order alternates (kms, aescbc, identity, then
identity, aescbc, kms, ...), ``--concurrency`` requests in flight over
keep-alive HTTPS. A shared machine's changing load hits the three alike
within a round, so besides the total rates the script reports the median of
the per-round kms/aescbc ratios. Per provider it prints Secrets/s and p50/p99
create latency, and how many ``Encrypt``/``Decrypt`` calls the plugin served
meanwhile (from its log).

Then, per backend (``--backends``: local, pkcs11 on SoftHSM2, aws on moto's
server, transit on a ``kustos server --dev``), it starts ``kustos kms-plugin``
and times ``--calls`` ``Encrypt`` and ``Decrypt`` calls one at a time over
the socket, as the API server makes them: p50/p99 and calls/s; and the same
calls on the same backend opened in the benchmark's own process, without
gRPC, which is what the plugin adds its cost to.

Everything listens on loopback and stops by itself (each phase is bounded).

Usage: ``.venv/bin/python bench/kms.py [--secrets 2000] [--rounds 10] [--concurrency 16]
[--calls 1000] [--backends local,pkcs11,aws,transit]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kustos.cluster.encryption_configs import build_config, render_config  # noqa: E402
from kustos.kmsplugin import BackendConfig, open_backend  # noqa: E402
from kustos.kmsplugin.clients import KmsPluginClient  # noqa: E402
from kustos.sensitive import Sensitive  # noqa: E402
from tests.support.kube import ControlPlane, assets_dir  # noqa: E402

PROVIDERS = ("kms", "aescbc", "identity")


@dataclass
class Tally:
    count: int = 0
    seconds: float = 0.0
    latencies: list[float] | None = None

    def add(self, count: int, seconds: float, latencies: list[float]) -> None:
        self.count += count
        self.seconds += seconds
        self.latencies = (self.latencies or []) + latencies

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def kustos_command() -> list[str]:
    script = Path(sys.executable).parent / "kustos"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kustos.cli.main"]


@contextlib.contextmanager
def plugin(
    socket_path: Path,
    args: list[str],
    env: dict[str, str] | None = None,
    log_level: str = "warning",
) -> Iterator[None]:
    """``kustos kms-plugin`` on ``socket_path`` until the block ends."""
    log = socket_path.with_suffix(".log").open("ab")
    process = subprocess.Popen(
        [*kustos_command(), "kms-plugin", "--listen", f"unix://{socket_path}", "--log-level",
         log_level, *args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"kms-plugin exited: {socket_path.with_suffix('.log').read_text()}"
                )
            if socket_path.exists():
                try:
                    with KmsPluginClient(socket_path) as client:
                        if client.status()[1].healthy:
                            break
                except Exception:  # noqa: S110 - not up yet
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("kms-plugin did not become healthy")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def configs(socket_path: Path) -> dict[str, str]:
    """One EncryptionConfiguration per provider under test (that provider, then identity)."""
    kms = build_config(kms_socket=str(socket_path), kms_name="kustos")
    aescbc = build_config(kms_socket=None, kms_name=None, aescbc=True)
    identity = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [{"identity": {}}]}],
    }
    return {
        "kms": render_config(kms),
        "aescbc": render_config(aescbc),
        "identity": render_config(identity),
    }


async def create_secrets(
    plane: ControlPlane, namespace: str, count: int, concurrency: int, prefix: str
) -> tuple[float, list[float]]:
    """Create ``count`` Secrets, ``concurrency`` at a time; (elapsed seconds, latencies)."""
    import httpx

    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=plane.url, verify=plane.ssl_context(), timeout=60, limits=limits
    ) as client:
        path = f"/api/v1/namespaces/{namespace}/secrets"

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"{prefix}-{i}"},
                    "stringData": {"password": f"value-{i}-" + "x" * 32, "user": f"user-{i}"},
                }
                started = time.perf_counter()
                response = await client.post(path, json=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 201:
                    raise RuntimeError(
                        f"create failed: {response.status_code} {response.text[:200]}"
                    )

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def bench_writes(args: argparse.Namespace, work: Path) -> tuple[dict[str, Tally], list[float]]:
    """Secret creates on three control planes, one per provider, in alternating rounds."""
    assets = assets_dir()
    if assets is None:
        raise SystemExit(
            "set KUBEBUILDER_ASSETS (export KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh))"
        )
    socket_path = work / "kms.sock"
    tallies = {p: Tally() for p in PROVIDERS}
    ratios: list[float] = []
    per_round = args.secrets // args.rounds
    texts = configs(socket_path)
    local = ["--backend", "local", "--key-file", str(work / "kek.key")]
    with plugin(socket_path, local, log_level="info"), contextlib.ExitStack() as stack:
        planes = {}
        for provider in PROVIDERS:
            plane = ControlPlane(assets, encryption_config=texts[provider])
            stack.callback(plane.stop)
            plane.start()
            plane.ensure_namespace("bench")
            asyncio.run(create_secrets(plane, "bench", 100, args.concurrency, "warm"))
            planes[provider] = plane
        for round_index in range(args.rounds):
            order = PROVIDERS if round_index % 2 == 0 else tuple(reversed(PROVIDERS))
            rates = {}
            for provider in order:
                seconds, latencies = asyncio.run(
                    create_secrets(
                        planes[provider], "bench", per_round, args.concurrency, f"r{round_index}"
                    )
                )
                tallies[provider].add(per_round, seconds, latencies)
                rates[provider] = per_round / seconds
            ratios.append(rates["kms"] / rates["aescbc"])
            print(
                f"  round {round_index + 1:2d}: "
                + ", ".join(f"{p} {rates[p]:6.1f}/s" for p in PROVIDERS)
                + f"  kms/aescbc {ratios[-1]:.2f}",
                flush=True,
            )
        for provider, plane in planes.items():
            stored = plane.etcd_get("/registry/secrets/bench/r0-0") or b""
            print(f"  {provider:8s} stores {stored[:22]!r}")
    log = socket_path.with_suffix(".log").read_text()
    print(
        f"  plugin calls during the writes: {log.count(' encrypt uid=')} Encrypt, "
        f"{log.count(' decrypt uid=')} Decrypt, for {args.secrets + 100} Secrets on the kms plane",
        flush=True,
    )
    return tallies, ratios


def time_calls(socket_path: Path, calls: int) -> dict[str, list[float]]:
    seed = os.urandom(32)
    times: dict[str, list[float]] = {"encrypt": [], "decrypt": []}
    with KmsPluginClient(socket_path, timeout=30) as client:
        wrapped = client.encrypt(seed)  # warm the channel and the backend
        for _ in range(calls):
            started = time.perf_counter()
            wrapped = client.encrypt(seed)
            times["encrypt"].append(time.perf_counter() - started)
        for _ in range(calls):
            started = time.perf_counter()
            plain = client.decrypt(
                wrapped.ciphertext, key_id=wrapped.key_id, annotations=wrapped.annotations
            )
            times["decrypt"].append(time.perf_counter() - started)
        assert plain == seed
    return times


@contextlib.contextmanager
def backend(
    name: str, work: Path
) -> Iterator[tuple[list[str], dict[str, str], BackendConfig] | None]:
    """Plugin arguments, environment and the same backend's config, with its peer running; None to skip."""
    if name == "local":
        key = work / "local.key"
        yield (
            ["--backend", "local", "--key-file", str(key)],
            {},
            BackendConfig(kind="local", key_files=(key,)),
        )
    elif name == "pkcs11":
        from tests.support.softhsm import create_token, softhsm_missing

        if softhsm_missing():
            print(f"  pkcs11: skipped ({softhsm_missing()})")
            yield None
            return
        token = create_token(work / "hsm")
        os.environ["SOFTHSM2_CONF"] = str(token.conf)  # before this process loads SoftHSM2
        yield (
            ["--backend", "pkcs11", "--pkcs11-module", token.module, "--pkcs11-token",
             token.token_label, "--key-label", "bench"],
            {"SOFTHSM2_CONF": str(token.conf), "KUSTOS_PKCS11_PIN": token.pin},
            BackendConfig(kind="pkcs11", pkcs11_module=token.module,
                          pkcs11_token=token.token_label, pkcs11_pin=Sensitive(token.pin),
                          key_labels=("bench",)),
        )  # fmt: skip
    elif name == "aws":
        import boto3

        from tests.support.moto import start_moto

        env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        os.environ.update(env)
        with start_moto() as url:
            kms = boto3.client("kms", endpoint_url=url, region_name="us-east-1")
            arn = kms.create_key()["KeyMetadata"]["Arn"]
            yield (
                ["--backend", "aws", "--aws-key-id", arn, "--aws-endpoint-url", url],
                env,
                BackendConfig(kind="aws", aws_keys=(arn,), aws_endpoint_url=url),
            )
    elif name == "transit":
        import hvac

        from tests.support.server import start_server

        with start_server(work / "transit") as server:
            admin = hvac.Client(url=server.addr, token=server.root_token)
            admin.sys.enable_secrets_engine("transit", path="transit")
            admin.secrets.transit.create_key("kubernetes", mount_point="transit")
            yield (
                ["--backend", "transit", "--address", server.addr, "--transit-key", "kubernetes"],
                {"KUSTOS_TOKEN": server.root_token},
                BackendConfig(kind="transit", transit_address=server.addr,
                              transit_key="kubernetes", transit_token=Sensitive(server.root_token)),
            )  # fmt: skip
    else:
        raise SystemExit(f"unknown backend {name}")


def time_backend(config: BackendConfig, calls: int) -> dict[str, list[float]]:
    """The same calls on the backend in this process: what the plugin costs on top of it."""
    seed = os.urandom(32)
    times: dict[str, list[float]] = {"encrypt": [], "decrypt": []}
    kms_backend = open_backend(config)
    try:
        wrapped = kms_backend.encrypt(seed)
        for _ in range(calls):
            started = time.perf_counter()
            wrapped = kms_backend.encrypt(seed)
            times["encrypt"].append(time.perf_counter() - started)
        for _ in range(calls):
            started = time.perf_counter()
            kms_backend.decrypt(wrapped.ciphertext, key_id=wrapped.key_id, annotations={})
            times["decrypt"].append(time.perf_counter() - started)
    finally:
        kms_backend.close()
    return times


def bench_calls(args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[float]]]:
    results = {}
    for name in args.backends.split(","):
        with backend(name, work) as setup:
            if setup is None:
                continue
            plugin_args, env, config = setup
            socket_path = work / f"{name}.sock"
            with plugin(socket_path, plugin_args, env):
                results[name] = time_calls(socket_path, args.calls)
                direct = time_backend(config, args.calls)
                results[name]["direct encrypt"] = direct["encrypt"]
                results[name]["direct decrypt"] = direct["decrypt"]
                enc, dec = results[name]["encrypt"], results[name]["decrypt"]
                print(
                    f"  {name:8s} encrypt p50 {percentile(enc, 0.5) * 1000:.2f} ms p99 "
                    f"{percentile(enc, 0.99) * 1000:.2f} ms; decrypt p50 "
                    f"{percentile(dec, 0.5) * 1000:.2f} ms p99 {percentile(dec, 0.99) * 1000:.2f} ms",
                    flush=True,
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--secrets", type=int, default=2000, help="Secrets per provider (all rounds)"
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--calls", type=int, default=1000, help="Encrypt and Decrypt calls per backend"
    )
    parser.add_argument("--backends", default="local,pkcs11,aws,transit")
    parser.add_argument("--skip-writes", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kmsb-", dir="/tmp") as name:
        work = Path(name)
        if not args.skip_writes:
            print(f"Secret creates through kube-apiserver ({args.secrets} per provider, "
                  f"{args.rounds} rounds, concurrency {args.concurrency}):", flush=True)  # fmt: skip
            tallies, ratios = bench_writes(args, work)
            print("\n| provider | Secrets/s | p50 | p99 | rate / aescbc |\n|---|---|---|---|---|")
            for provider in PROVIDERS:
                t = tallies[provider]
                lat = t.latencies or [0.0]
                print(
                    f"| {provider} | {t.rate:.1f} | {percentile(lat, 0.5) * 1000:.1f} ms | "
                    f"{percentile(lat, 0.99) * 1000:.1f} ms | {t.rate / tallies['aescbc'].rate:.2f} |"
                )
            print(
                f"\nkms / aescbc = {tallies['kms'].rate / tallies['aescbc'].rate:.1%} of the total "
                f"rate; median of the per-round ratios {statistics.median(ratios):.1%} (target >= 80%)"
            )
        print(
            f"\nPlugin calls over the unix socket ({args.calls} each, one at a time):", flush=True
        )
        results = bench_calls(args, work)
        print(
            "\n| backend | Encrypt p50 | Encrypt p99 | Decrypt p50 | Decrypt p99 | Encrypt calls/s "
            "| backend alone: encrypt p50 / decrypt p50 |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, times in results.items():
            enc, dec = times["encrypt"], times["decrypt"]
            denc, ddec = times["direct encrypt"], times["direct decrypt"]
            print(
                f"| {name} | {percentile(enc, 0.5) * 1000:.2f} ms | {percentile(enc, 0.99) * 1000:.2f} ms | "
                f"{percentile(dec, 0.5) * 1000:.2f} ms | {percentile(dec, 0.99) * 1000:.2f} ms | "
                f"{1 / statistics.mean(enc):.0f} | {percentile(denc, 0.5) * 1000:.2f} ms / "
                f"{percentile(ddec, 0.5) * 1000:.2f} ms |"
            )


if __name__ == "__main__":
    main()
