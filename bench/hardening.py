"""What issue 11's hardening costs on the KV paths: this tree against a base revision, in one run.

Why: the hardening adds work to every request (the body's nesting checked,
the body read under a timeout, a token required before the body), to every
audited write (the answer's audit entry written from the storage commit
hook), and to the KV engine (each metadata record's attestation: one
envelope encryption per write, one verification per metadata read from
storage). This script measures that cost where it lands: two ``kustos server
--dev`` processes on SQLite, side by side, one running the code of ``--base``
(a git revision, extracted with ``git archive`` and put first on
``PYTHONPATH``; same virtualenv) and one this tree, both with a file audit
device (no fsync) and the same 64 secrets. Each round loads both with KV
writes and then KV reads (``wrk``, ``--concurrency`` keep-alive connections,
order alternating from round to round), so the machine's changing load hits
both alike. It prints every round and the medians: rate, p50/p99, server CPU
per request, and the ratio this tree / base.

Reads come from the read cache (the attestation is verified when a record is
read from storage, not on a cache hit); ``--server-args "--cache-entries 0"``
measures reads that go to storage every time.

Usage: ``.venv/bin/python bench/hardening.py [--base main] [--rounds 8] [--round-seconds 3]
[--concurrency 32] [--server-args ...]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kv as kvbench

TOKEN = "hvs.bench-hardening-token"


@dataclass
class _Side:
    label: str
    pid: int
    port: int


@contextmanager
def _server(
    label: str, work: Path, *, pythonpath: Path | None, extra: list[str]
) -> Iterator[_Side]:
    port = kvbench._free_port()
    home = work / label
    home.mkdir()
    args = kvbench.server_command(
        port=port, data_dir=home / "data", token=TOKEN, extra=["--no-access-log", *extra]
    )
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = str(pythonpath)
    try:
        with kvbench._process(args, port, cwd=home, log=work / f"{label}.log") as process:
            yield _Side(label, process.pid, port)
    finally:
        if pythonpath is not None:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved


def _extract(base: str, work: Path) -> Path:
    """The ``kustos`` package of revision ``base``, in a directory to put on ``PYTHONPATH``."""
    target = work / "base-code"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(kvbench.ROOT), "archive", "--format=tar", base, "kustos"],
        check=True,
        capture_output=True,
    ).stdout
    tar_path = work / "base.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(target, filter="data")
    return target


def _requests() -> tuple[list[kvbench.Request], list[kvbench.Request]]:
    value = json.dumps({"data": {"password": "y" * 24, "username": "app"}}).encode()
    writes = [kvbench.Request("POST", f"/v1/secret/data/bench/k{i}", value) for i in range(64)]
    reads = [kvbench.Request("GET", f"/v1/secret/data/bench/k{i}") for i in range(64)]
    return writes, reads


async def _main(args: argparse.Namespace) -> None:
    wrk = kvbench._find_wrk("auto")
    if wrk is None:
        print("note: wrk is not installed; the Python client's figures are lower and noisier")
    with tempfile.TemporaryDirectory(prefix="kustos-bench-hardening-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        bench = kvbench.Bench(argparse.Namespace(concurrency=args.concurrency, warmup=1), work, wrk)
        extra = args.server_args.split() if args.server_args else []
        base = stack.enter_context(
            _server("base", work, pythonpath=_extract(args.base, work), extra=extra)
        )
        this = stack.enter_context(_server("this", work, pythonpath=None, extra=extra))
        for side in (base, this):
            await kvbench._seed(side.label, side.port, TOKEN, audit=work / f"{side.label}.audit")
        writes, reads = _requests()
        rows: dict[tuple[str, str], list[kvbench.Result]] = {}
        print(
            f"base = {args.base}, this = the working tree; {args.rounds} rounds of {args.round_seconds} s"
        )
        for number in range(args.rounds):
            order = (base, this) if number % 2 == 0 else (this, base)
            for op, load in (("write", writes), ("read", reads)):
                for side in order:
                    result = await bench.load(
                        f"{side.label} {op}",
                        side.pid,
                        side.port,
                        load,
                        TOKEN,
                        seconds=args.round_seconds,
                    )
                    if result.errors:
                        raise RuntimeError(f"{result.name}: {result.errors} failed requests")
                    rows.setdefault((side.label, op), []).append(result)
                    print(
                        f"round {number + 1} {result.name}: {result.rate:,.0f} req/s, "
                        f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                        f"{result.server_cpu_us:,.0f} µs CPU/request"
                    )
        print()
        print(
            "| op | base req/s | this req/s | this / base (median of rounds) | p99 base → this (ms) | CPU/request base → this |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for op in ("write", "read"):
            old, new = rows[("base", op)], rows[("this", op)]
            ratios = [n.rate / o.rate for o, n in zip(old, new, strict=True)]
            print(
                f"| {op} | {statistics.median(r.rate for r in old):,.0f} "
                f"| {statistics.median(r.rate for r in new):,.0f} "
                f"| {statistics.median(ratios):.1%} ({min(ratios):.0%}-{max(ratios):.0%}) "
                f"| {statistics.median(r.p99_ms for r in old):.2f} → {statistics.median(r.p99_ms for r in new):.2f} "
                f"| {statistics.median(r.server_cpu_us for r in old):,.0f} → "
                f"{statistics.median(r.server_cpu_us for r in new):,.0f} µs |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", default="main", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--round-seconds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--server-args", default="", help="extra arguments for both servers")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
