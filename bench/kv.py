"""KV read/write throughput and latency of ``kustos server``, against a bare ASGI baseline.

Why: the server's overhead (auth, policy, envelope crypto, storage) must stay
small next to the HTTP stack it runs on. In one run this script starts, each
in its own process and with the same uvicorn settings:

* a bare ASGI app that answers every request with a constant JSON body,
* ``kustos server --dev`` on SQLite,
* ``kustos server`` on a throwaway PostgreSQL (skipped if the binaries are absent),

and drives each with the same closed-loop load: ``--concurrency`` keep-alive
HTTP/1.1 clients (default 32), a bounded number of requests, latency measured
per request. It prints requests/s, p50/p99 and the ratio to the bare app.

Usage: ``.venv/bin/python bench/kv.py [--reads 6000] [--writes 1500] [--concurrency 32]``
(``--serve-bare PORT`` is how it starts the baseline process.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# The bare app's body has the shape of a KV v2 read, so both send similar bytes.
_BARE_BODY = json.dumps(
    {
        "request_id": "00000000-0000-0000-0000-000000000000",
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": {
            "data": {"password": "x" * 24, "username": "app"},
            "metadata": {"created_time": "2024-01-01T00:00:00Z", "version": 1},
        },
        "wrap_info": None,
        "warnings": None,
        "auth": None,
    }
).encode()


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The baseline: read the request body, answer 200 with a constant JSON body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = bool(message.get("more_body"))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(_BARE_BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": _BARE_BODY})


def _serve_bare(port: int) -> None:
    """Serve :func:`bare_app` with the uvicorn settings ``kustos server`` uses."""
    import uvicorn

    from kustos.server.running import _loop_factory, http_protocol

    config = uvicorn.Config(
        bare_app,
        host="127.0.0.1",
        port=port,
        http=http_protocol(),
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(uvicorn.Server(config).serve())


# -- load generation ------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    seconds: float
    latencies: list[float]
    errors: int
    client_cpu: float  # share of one core the load generator itself used

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, bytes(body)
            body += chunk[:-2]
    return status, b""


def _request(method: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def run_load(
    name: str, port: int, requests: list[bytes], *, total: int, concurrency: int, warmup: int
) -> Result:
    """Closed loop: ``concurrency`` connections, each sends its next request when the last answered."""
    latencies: list[float] = []
    errors = 0
    issued = 0

    async def worker(measure: bool, budget: list[int]) -> None:
        nonlocal errors, issued
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while budget[0] > 0:
                budget[0] -= 1
                request = requests[issued % len(requests)]
                issued += 1
                started = time.perf_counter()
                writer.write(request)
                status, _ = await _read_response(reader)
                if measure:
                    latencies.append(time.perf_counter() - started)
                    if status >= 300:
                        errors += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    warm = [warmup * concurrency]
    await asyncio.gather(*(worker(False, warm) for _ in range(concurrency)))
    budget = [total]
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(True, budget) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return Result(name, total, seconds, latencies, errors, (time.process_time() - cpu) / seconds)


# -- processes --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


@contextlib.contextmanager
def _process(args: list[str], port: int, *, cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "HOME": str(cwd)}  # the dev server writes ~/.kustos/token
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_command(*, port: int, data_dir: Path, token: str, extra: list[str]) -> list[str]:
    """How ``kustos server`` is started for the benchmark (dev mode, own data dir)."""
    return [
        PYTHON, "-c", "from kustos.cli.main import main; main()", "server", "--dev",
        "--port", str(port), "--data-dir", str(data_dir), "--dev-root-token-id", token, *extra,
    ]


# -- the run ------------------------------------------------------------------------------


def _report(result: Result, baseline: Result | None) -> str:
    ratio = f"{result.rate / baseline.rate:6.1%}" if baseline is not None else "     -"
    return (
        f"{result.name:<28} {result.rate:9.0f} req/s  p50 {result.percentile(0.50):6.2f} ms  "
        f"p99 {result.percentile(0.99):6.2f} ms  errors {result.errors:<4} vs bare {ratio}  "
        f"(load generator cpu {result.client_cpu:4.0%})"
    )


async def _bench_server(
    label: str, port: int, token: str, args: argparse.Namespace, baseline: Result
) -> list[Result]:
    keys = 64
    value = json.dumps({"data": {"password": "x" * 24, "username": "app"}}).encode()
    seed = [_request("POST", f"/v1/secret/data/bench/k{i}", token, value) for i in range(keys)]
    await run_load(f"{label} seed", port, seed, total=keys, concurrency=1, warmup=0)
    reads = [_request("GET", f"/v1/secret/data/bench/k{i}", token) for i in range(keys)]
    writes = [_request("POST", f"/v1/secret/data/bench/w{i}", token, value) for i in range(keys)]
    read = await run_load(f"{label} read", port, reads, total=args.reads, concurrency=args.concurrency, warmup=args.warmup)
    write = await run_load(f"{label} write", port, writes, total=args.writes, concurrency=args.concurrency, warmup=args.warmup)
    for result in (read, write):
        print(_report(result, baseline), flush=True)
    return [read, write]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=6000)
    parser.add_argument("--writes", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=10, help="requests per connection before measuring")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--targets",
        default="sqlite,sqlite-nocache,postgresql",
        help="server setups to measure: sqlite (default read cache), sqlite-nocache, postgresql",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        _serve_bare(args.serve_bare)
        return
    from kustos.server.running import _loop_factory

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_main(args))


async def _main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="kustos-bench-"))
    print(f"concurrency {args.concurrency}, {args.reads} reads, {args.writes} writes per target; cpus {os.cpu_count()}")
    try:
        port = _free_port()
        with _process([PYTHON, __file__, "--serve-bare", str(port)], port, cwd=ROOT, log=work / "bare.log"):
            get = [_request("GET", "/v1/secret/data/bench/k0", "t")]
            bare = await run_load("bare ASGI read", port, get, total=args.reads, concurrency=args.concurrency, warmup=args.warmup)
            print(_report(bare, bare), flush=True)
        for target in filter(None, args.targets.split(",")):
            extra: list[str] = []
            pg: Any = None
            if target == "sqlite-nocache":
                extra = ["--cache-entries", "0"]
            elif target == "postgresql":
                sys.path.insert(0, str(ROOT))
                from tests.support.postgres import PostgresServer, find_pg_bin

                bin_dir = find_pg_bin()
                if bin_dir is None:
                    print("postgresql: binaries not found, skipped")
                    continue
                pg = PostgresServer(bin_dir)
                pg.start()
                extra = ["--storage", pg.create_database("kustos_bench")]
            try:
                port = _free_port()
                token = "hvs.bench-" + os.urandom(8).hex()
                command = server_command(port=port, data_dir=work / f"data-{target}", token=token, extra=extra)
                with _process(command, port, cwd=work, log=work / f"server-{target}.log"):
                    await _bench_server(f"kustos {target}", port, token, args, bare)
            finally:
                if pg is not None:
                    pg.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
