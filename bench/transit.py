"""CPU per request of the transit engine, in process, against a KV read and a bare ASGI app in the same run.

Why: transit sits on the path of every sops ``hc_vault`` file and every
application that encrypts through the server; its cost per request should
stay close to a KV read (both are: route, token, authorize, one cached
record, one barrier unwrap, one AEAD). The ASGI apps are called directly on
one event loop (no sockets, no HTTP parsing), like ``bench/server_hotpath.py``.

Usage: ``.venv/bin/python bench/transit.py [--requests 5000]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
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
TOKEN = "hvs.bench-transit-token"


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
    await send({"type": "http.response.body", "body": b'{"data":{"ciphertext":"vault:v1:x"}}'})


async def _call(app: App, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    scope = {
        "type": "http", "method": method, "path": path, "query_string": b"",
        "headers": [(b"host", b"bench"), (b"x-vault-token", TOKEN.encode()), (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def _per_request(
    label: str, fn: Callable[[], Awaitable[object]], n: int, *, items: int = 1
) -> float:
    for _ in range(min(n, 300)):
        await fn()
    started = time.perf_counter()
    for _ in range(n):
        await fn()
    micros = (time.perf_counter() - started) / n / items * 1e6
    unit = "µs/item   " if items > 1 else "µs/request"
    print(f"{label:<44} {micros:8.1f} {unit} {1e6 / micros:10.0f} /s on one core")
    return micros


async def main(requests: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="kustos-transit-bench-"))
    config = ServerConfig(
        storage=StorageConfig(url=f"sqlite:{work / 'kustos.db'}"),
        keys=KeyProviderConfig(kind="local", key_file=work / "kustos.key"),
        dev=True,
    )
    core = await Core.open(config)
    await core.dev_bootstrap(root_token_id=TOKEN)
    app = create_app(config, core=core)
    assert (await _call(app, "POST", "/v1/sys/mounts/transit", b'{"type":"transit"}'))[0] == 204
    for name, body in (("k", b"{}"), ("d", b'{"derived":true}')):
        assert (await _call(app, "POST", f"/v1/transit/keys/{name}", body))[0] == 200
    assert (
        await _call(
            app,
            "POST",
            "/v1/secret/data/bench/k",
            b'{"data":{"password":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}',
        )
    )[0] == 200
    small = json.dumps({"plaintext": base64.b64encode(b"x" * 32).decode()}).encode()
    large = json.dumps({"plaintext": base64.b64encode(b"x" * 4096).decode()}).encode()
    derived = json.dumps(
        {"plaintext": base64.b64encode(b"x" * 32).decode(), "context": "dGVuYW50"}
    ).encode()
    batch = json.dumps(
        {"batch_input": [{"plaintext": base64.b64encode(b"x" * 32).decode()}] * 100}
    ).encode()
    status, answer = await _call(app, "POST", "/v1/transit/encrypt/k", small)
    assert status == 200
    ciphertext = json.loads(answer)["data"]["ciphertext"]
    decrypt = json.dumps({"ciphertext": ciphertext}).encode()

    print(f"-- SQLite, read cache on; {requests} requests each")
    bare = await _per_request(
        "bare ASGI app (baseline)", lambda: _call(_bare, "POST", "/v1/x"), requests
    )
    kv = await _per_request(
        "KV read (GET secret/data/<path>)",
        lambda: _call(app, "GET", "/v1/secret/data/bench/k"),
        requests,
    )
    enc = await _per_request(
        "transit encrypt, 32 B",
        lambda: _call(app, "POST", "/v1/transit/encrypt/k", small),
        requests,
    )
    dec = await _per_request(
        "transit decrypt, 32 B",
        lambda: _call(app, "POST", "/v1/transit/decrypt/k", decrypt),
        requests,
    )
    await _per_request(
        "transit encrypt, 4 KiB",
        lambda: _call(app, "POST", "/v1/transit/encrypt/k", large),
        requests,
    )
    await _per_request(
        "transit encrypt, derived key (HKDF)",
        lambda: _call(app, "POST", "/v1/transit/encrypt/d", derived),
        requests,
    )
    await _per_request(
        "transit encrypt, batch of 100",
        lambda: _call(app, "POST", "/v1/transit/encrypt/k", batch),
        max(requests // 50, 20),
        items=100,
    )
    gc.collect()
    tracemalloc.start()
    for _ in range(2000):
        await _call(app, "POST", "/v1/transit/encrypt/k", small)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{'2000 encrypts: memory kept / peak':<44} {current / 1024:8.1f} KiB / {peak / 1024:.1f} KiB"
    )
    print(f"{'encrypt / KV read (server cost, minus bare)':<44} {(enc - bare) / (kv - bare):8.2f}x")
    print(f"{'decrypt / KV read (server cost, minus bare)':<44} {(dec - bare) / (kv - bare):8.2f}x")
    await core.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    asyncio.run(main(parser.parse_args().requests))
