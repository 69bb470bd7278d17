"""CPU per request of the Kustos server's ASGI app, in process, against a bare ASGI app.

Why: ``bench/kv.py`` measures the whole stack over HTTP, where the figures
move with the load on the machine. This script calls the ASGI apps directly
(no sockets, no HTTP parsing) on one event loop, so it isolates what the
server adds per request: routing, token lookup, authorization, the read
cache, envelope decryption, the response envelope and metrics. It also
times the parts on their own.

Usage: ``.venv/bin/python bench/server_hotpath.py [--requests 20000]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.server import Core, create_app

Scope = MutableMapping[str, Any]
App = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]
TOKEN = "hvs.bench-hotpath-token"


async def _bare(
    scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"data":{"data":{"password":"x"}}}'})


async def _call(app: App, method: str, path: str, body: bytes = b"") -> int:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
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


async def _per_request(label: str, fn: Callable[[], Awaitable[object]], n: int) -> float:
    for _ in range(min(n, 500)):
        await fn()
    started = time.perf_counter()
    for _ in range(n):
        await fn()
    micros = (time.perf_counter() - started) / n * 1e6
    print(f"{label:<38} {micros:8.1f} µs/request  {1e6 / micros:10.0f} req/s on one core")
    return micros


async def _measure(
    label: str, config: ServerConfig, *, cache_entries: int | None, requests: int
) -> None:
    core = await Core.open(config, cache_entries=cache_entries)
    await core.dev_bootstrap(root_token_id=TOKEN)
    app = create_app(config, core=core)
    value = b'{"data": {"password": "xxxxxxxxxxxxxxxxxxxxxxxx", "username": "app"}}'
    for i in range(64):
        assert await _call(app, "POST", f"/v1/secret/data/bench/k{i}", value) == 200
    counter = iter(range(10**9))
    print(f"-- {label}")
    bare = await _per_request("bare ASGI app", lambda: _call(_bare, "GET", "/v1/x"), requests)
    read = await _per_request(
        "kustos KV read (GET data/<path>)",
        lambda: _call(app, "GET", f"/v1/secret/data/bench/k{next(counter) % 64}"),
        requests,
    )
    await _per_request("kustos sys/health", lambda: _call(app, "GET", "/v1/sys/health"), requests)
    await _per_request(
        "kustos KV write (POST data/<path>)",
        lambda: _call(app, "POST", f"/v1/secret/data/bench/k{next(counter) % 64}", value),
        max(requests // 20, 100),
    )
    for i in range(200):  # refill the read cache after the writes
        await _call(app, "GET", f"/v1/secret/data/bench/k{i % 64}")
    gc.collect()
    tracemalloc.start()
    for i in range(2000):
        await _call(app, "GET", f"/v1/secret/data/bench/k{i % 64}")
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{'2000 reads: memory kept / peak':<38} {current / 1024:8.1f} KiB / {peak / 1024:.1f} KiB"
    )
    print(f"{'server cost per read (read - bare)':<38} {read - bare:8.1f} µs")
    await core.close()


async def main(requests: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="kustos-hotpath-"))
    for name, label, cache in (
        ("cached", "SQLite, read cache", None),
        ("uncached", "SQLite, no read cache", 0),
    ):
        config = ServerConfig(
            storage=StorageConfig(url=f"sqlite:{work / name}.db"),
            keys=KeyProviderConfig(kind="local", key_file=work / "kustos.key"),
            dev=True,
        )
        await _measure(label, config, cache_entries=cache, requests=requests)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    asyncio.run(main(parser.parse_args().requests))
