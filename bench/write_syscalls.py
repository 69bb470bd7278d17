"""System calls per durable KV write: ``strace -c -f`` on ``kustos server`` under concurrent writers.

Why: a durable write costs at least one ``fdatasync`` (SQLite) or one commit
round trip (PostgreSQL); what it costs beyond that (thread hand-offs show up as
``futex`` calls) is overhead the group commit removes. The script starts
``kustos server --dev`` under ``strace -c -f -o <file>``, writes ``--writes``
secrets with ``--concurrency`` writers (a Python client in this process, a
fixed count, so the totals divide cleanly), stops the server and prints the
count of ``fdatasync``/``fsync``/``futex`` and all calls, per write.

Usage: ``.venv/bin/python bench/write_syscalls.py [--writes 2400] [--concurrency 32]
[--storage postgresql://...]`` (needs ``strace``: ``apt-get install strace``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _write_all(port: int, token: str, *, writes: int, concurrency: int) -> float:
    body = {"data": {"password": "x" * 24, "username": "app"}}
    counter = iter(range(writes))
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"X-Vault-Token": token},
        limits=httpx.Limits(max_connections=concurrency),
        timeout=30,
    ) as http:

        async def worker() -> None:
            for i in counter:
                response = await http.post(f"/v1/secret/data/bench/w{i % 64}", json=body)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


_WRK_SCRIPT = """
local n = 0
wrk.method = "POST"
wrk.headers["X-Vault-Token"] = "%(token)s"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"data":{"password":"xxxxxxxxxxxxxxxxxxxxxxxx","username":"app"}}'
function request()
  n = n + 1
  return wrk.format(nil, "/v1/secret/data/bench/w" .. (n %% 64))
end
function done(summary, latency, requests)
  io.write(string.format("WRITES %%d %%d\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def _wrk_writes(
    port: int, token: str, *, seconds: int, concurrency: int, work: Path
) -> tuple[int, float]:
    script = work / "writes.lua"
    script.write_text(_WRK_SCRIPT % {"token": token})
    started = time.perf_counter()
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    elapsed = time.perf_counter() - started
    line = next(x for x in out.splitlines() if x.startswith("WRITES "))
    done, errors = (int(x) for x in line.split()[1:])
    if errors:
        raise SystemExit(f"{errors} writes failed")
    return done, elapsed


def _wait(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def _summary(path: Path) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
            calls[parts[-1]] = int(parts[3])
        elif len(parts) >= 4 and parts[-1].isidentifier() and parts[2].isdigit():
            calls[parts[-1]] = int(parts[2])
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--seconds", type=int, default=5, help="how long wrk writes")
    parser.add_argument(
        "--writes", type=int, default=2400, help="how many the Python client writes"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--storage", default="", help="a postgresql:// URL (default: SQLite)")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        raise SystemExit("strace is not installed (apt-get install strace)")
    work = Path(tempfile.mkdtemp(prefix="kustos-strace-"))
    port = _free_port()
    token = "hvs.strace-" + os.urandom(6).hex()
    trace = work / "strace.txt"
    command = [
        "strace",
        "-c",
        "-f",
        "-o",
        str(trace),
        sys.executable,
        "-c",
        "from kustos.cli.main import main; main()",
        "server",
        "--dev",
        "--port",
        str(port),
        "--data-dir",
        str(work / "data"),
        "--dev-root-token-id",
        token,
    ]
    if args.storage:
        command += ["--storage", args.storage]
    env = {**os.environ, "HOME": str(work)}
    with (work / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=log)
    try:
        _wait(port, process)
        use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
        if use_wrk:
            writes, seconds = _wrk_writes(
                port, token, seconds=args.seconds, concurrency=args.concurrency, work=work
            )
        else:
            writes = args.writes
            seconds = asyncio.run(
                _write_all(port, token, writes=writes, concurrency=args.concurrency)
            )
    finally:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        for child in children:  # the server under strace; strace then exits with the summary
            os.kill(int(child), signal.SIGTERM)
        process.wait(timeout=60)
    calls = _summary(trace)
    total = sum(calls.values())
    print(
        json.dumps(
            {
                "client": "wrk" if use_wrk else "python",
                "writes": writes,
                "concurrency": args.concurrency,
                "seconds_under_strace": round(seconds, 2),
                "fdatasync": calls.get("fdatasync", 0),
                "fsync": calls.get("fsync", 0),
                "futex": calls.get("futex", 0),
                "all_calls": total,
                "per_write": {
                    "fdatasync": round(calls.get("fdatasync", 0) / writes, 3),
                    "futex": round(calls.get("futex", 0) / writes, 2),
                    "all_calls": round(total / writes, 1),
                },
            },
            indent=2,
        )
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
