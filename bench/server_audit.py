"""KV read throughput of the server's ASGI app with and without one file audit device, in one run.

Why: issue 3 records every API call in the audit trail (a request entry
before the handler, a response entry after, values HMAC'd, hash-chained).
That cost lands on the KV read hot path; the target is under 30% of read
throughput. This script opens two servers in process (SQLite, read cache on,
same data), enables a file audit device on one of them through
``sys/audit``, and calls the ASGI apps directly (no sockets, no HTTP
parsing: the audit share is measured against the server's own cost, the
strictest comparison). Rounds alternate between the two so machine load hits
both alike; it prints reads/s, p50/p99 per read, the ratio, the audit bytes
per read, and checks the audit file's chain at the end.

Usage: ``.venv/bin/python bench/server_audit.py [--reads 4000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson

from kustos.audit import verify_file
from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.server import Core, create_app

Scope = MutableMapping[str, Any]
App = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]
TOKEN = "hvs.bench-audit-token"


async def _call(app: App, method: str, path: str, body: bytes = b"") -> int:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"bench"),
            (b"x-vault-token", TOKEN.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _open(base: Path, audit_file: Path | None) -> tuple[Core, App]:
    base.mkdir(parents=True)
    config = ServerConfig(
        storage=StorageConfig(url=f"sqlite:{base / 'kustos.db'}"),
        keys=KeyProviderConfig(kind="local", key_file=base / "kustos.key"),
        dev=True,
    )
    core = await Core.open(config)
    await core.dev_bootstrap(root_token_id=TOKEN)
    app: App = create_app(config, core=core)
    for i in range(64):
        body = orjson.dumps(
            {"data": {"username": f"svc-{i}", "password": f"pw-{i}-0123456789abcdef"}}
        )
        assert await _call(app, "POST", f"/v1/secret/data/bench/k{i}", body) == 200
    if audit_file is not None:
        device = orjson.dumps({"type": "file", "options": {"file_path": str(audit_file)}})
        assert await _call(app, "PUT", "/v1/sys/audit/file", device) == 204
    return core, app


async def _round(app: App, reads: int) -> list[float]:
    times: list[float] = []
    clock = time.perf_counter
    for i in range(reads):
        started = clock()
        status = await _call(app, "GET", f"/v1/secret/data/bench/k{i % 64}")
        times.append(clock() - started)
        if status != 200:
            raise SystemExit(f"read answered {status}")
    return times


def _summary(label: str, times: list[float]) -> float:
    rate = len(times) / sum(times)
    ordered = sorted(times)
    p50 = ordered[len(ordered) // 2] * 1e6
    p99 = ordered[int(len(ordered) * 0.99)] * 1e6
    print(
        f"{label:<22} {rate:10.0f} reads/s   p50 {p50:7.1f} µs   p99 {p99:7.1f} µs   ({len(times)} reads)"
    )
    return rate


async def main(reads: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        audit_file = base / "audit.log"
        plain_core, plain = await _open(base / "plain", None)
        audited_core, audited = await _open(base / "audited", audit_file)
        gc.collect()
        gc.freeze()
        for app in (plain, audited):
            await _round(app, 500)  # warm-up: caches, contexts
        start_size = audit_file.stat().st_size
        results: dict[str, list[float]] = {"no audit": [], "file audit device": []}
        medians: dict[str, list[float]] = {"no audit": [], "file audit device": []}
        for _ in range(rounds):
            for label, app in (("no audit", plain), ("file audit device", audited)):
                times = await _round(app, reads)
                results[label] += times
                medians[label].append(len(times) / sum(times))
        print(
            f"KV read (GET secret/data/..., root token, SQLite, read cache), {rounds} alternating rounds of {reads}"
        )
        base_rate = _summary("no audit", results["no audit"])
        audit_rate = _summary("file audit device", results["file audit device"])
        print(
            f"throughput ratio audited/plain: {audit_rate / base_rate:.2f} (audit costs {100 * (1 - audit_rate / base_rate):.0f}% of read throughput)"
        )
        per_round = [
            a / p for a, p in zip(medians["file audit device"], medians["no audit"], strict=True)
        ]
        print(
            f"per-round ratios: {', '.join(f'{r:.2f}' for r in per_round)} (median {statistics.median(per_round):.2f})"
        )
        written = audit_file.stat().st_size - start_size
        print(
            f"audit file: {written / (reads * rounds):.0f} bytes per read (request + response entry)"
        )
        result = verify_file(audit_file)
        print(f"audit chain verified: {result.ok} ({result.entries} entries)")
        await plain_core.close()
        await audited_core.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.reads, args.rounds))
