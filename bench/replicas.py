"""How long a change made on one replica takes to reach another, over a real PostgreSQL.

Why: several ``kustos server`` processes on one database follow each other by
LISTEN/NOTIFY (``kustos/server/replicas.py``), with no polling; this measures
the delay a client sees. Two server processes (A and B) share a throwaway
PostgreSQL on loopback; for each kind of change, ``--repeat`` times, the
script makes the change on A and, from the moment A answered, checks B every
``--interval`` seconds until B shows it:

* ``policy``: a token's read on B turns from 403 to 200 after A writes the policy;
* ``mount``: B's ``sys/mounts`` lists a mount A enabled;
* ``revoke``: a token B had cached is refused on B after A revoked it;
* ``stream``: a subscriber following B's change stream
  (:func:`kustos.client.events.follow`, as the operator's kustos provider
  does) receives a write made on A (no polling: the time the event arrives).

It prints p50/p99/max per kind. Usage: ``.venv/bin/python bench/replicas.py
[--repeat 30] [--interval 0.005]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kustos.client.events import aclose_quietly, follow  # noqa: E402
from kustos.sensitive import Sensitive  # noqa: E402
from tests.support.postgres import PostgresServer, find_pg_bin  # noqa: E402
from tests.support.server import start_server  # noqa: E402


async def _until(check: Callable[[], Awaitable[bool]], interval: float) -> float:
    started = time.perf_counter()
    while not await check():
        await asyncio.sleep(interval)
        if time.perf_counter() - started > 30:
            raise RuntimeError("the change did not reach the other replica in 30 s")
    return time.perf_counter() - started


async def _measure(
    a_addr: str, a_token: str, b_addr: str, b_token: str, args: argparse.Namespace
) -> dict[str, list[float]]:
    delays: dict[str, list[float]] = {"policy": [], "mount": [], "revoke": [], "stream": []}
    async with (
        httpx.AsyncClient(base_url=a_addr, headers={"X-Vault-Token": a_token}, timeout=30) as a,
        httpx.AsyncClient(base_url=b_addr, headers={"X-Vault-Token": b_token}, timeout=30) as b,
    ):
        await a.post("/v1/secret/data/bench/x", json={"data": {"k": "v"}})
        events = follow(b, prefix="secret/bench/", token=lambda: Sensitive(b_token))
        assert (await events.__anext__()).type == "ready"
        try:
            for i in range(args.repeat):
                name = f"p{i}"
                token = (await a.post("/v1/auth/token/create", json={"policies": [name]})).json()[
                    "auth"
                ]["client_token"]
                as_user = {"X-Vault-Token": token}
                assert (await b.get("/v1/secret/data/bench/x", headers=as_user)).status_code == 403
                policy = 'path "secret/data/bench/*" { capabilities = ["read"] }'
                await a.put(f"/v1/sys/policy/{name}", json={"policy": policy})

                async def allowed(as_user: dict[str, str] = as_user) -> bool:
                    return (
                        await b.get("/v1/secret/data/bench/x", headers=as_user)
                    ).status_code == 200

                delays["policy"].append(await _until(allowed, args.interval))

                mount = f"m{i}"
                await a.post(
                    f"/v1/sys/mounts/{mount}", json={"type": "kv", "options": {"version": "2"}}
                )

                async def mounted(mount: str = mount) -> bool:
                    return f"{mount}/" in (await b.get("/v1/sys/mounts")).json()["data"]

                delays["mount"].append(await _until(mounted, args.interval))

                await a.post("/v1/auth/token/revoke", json={"token": token})

                async def refused(as_user: dict[str, str] = as_user) -> bool:
                    return (
                        await b.get("/v1/auth/token/lookup-self", headers=as_user)
                    ).status_code == 403

                delays["revoke"].append(await _until(refused, args.interval))

                await a.post(f"/v1/secret/data/bench/s{i}", json={"data": {"n": i}})
                acked = time.perf_counter()
                async for event in events:
                    if event.type == "change" and event.path == f"bench/s{i}":
                        break
                delays["stream"].append(time.perf_counter() - acked)
        finally:
            await aclose_quietly(events)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between checks on B")
    args = parser.parse_args()
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found (make system-deps)")
    load = os.getloadavg()
    print(
        f"cpus {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True
    )
    pg = PostgresServer(bin_dir)
    pg.start()
    work = Path(tempfile.mkdtemp(prefix="kustos-replicas-"))
    try:
        database = pg.create_database("kustos_replicas")
        shared = ("--storage", database, "--key-file", str(work / "kustos.key"))
        with start_server(work / "a", *shared) as a, start_server(work / "b", *shared) as b:
            delays = asyncio.run(_measure(a.addr, a.root_token, b.addr, b.root_token, args))
    finally:
        pg.stop()
    for kind, values in delays.items():
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        print(
            f"{kind:<7} n={len(values)}  p50 {statistics.median(values) * 1000:7.1f} ms  "
            f"p99 {p99 * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms",
            flush=True,
        )
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)


if __name__ == "__main__":
    main()
