"""Cost of the file audit device per API call, in process, against the same call without audit.

Why: issue 3 puts a :class:`kustos.audit.FileAuditDevice` behind every
request (one request entry before the handler, one response entry after), so
its cost per call adds straight to the KV read path measured by
``bench/kv.py``. This script logs the entries a KV read produces (root token,
GET of a secret, a KV v2 read response with two values and metadata) through
an :class:`kustos.audit.AuditBroker` with one file device, and reports
microseconds per call (request + response entry), calls/s on one core, p50/p99
per call, the file bytes per call, and what fsync per entry costs. As in the
server, the entries are dated from an epoch clock and each call's
:class:`AuditAuth` is one object reused for the same token (the server keeps it
per token entry), so the device reuses that caller's serialized auth part.

The *staged* row logs the same calls as the server logs reads
(:meth:`AuditBroker.stage_call`, eight calls per :meth:`AuditBroker.flush`,
about what one event-loop turn gathers under ``bench/kv.py``'s load) and
prints its time against the one-by-one row of the same run.

Usage: ``.venv/bin/python bench/audit.py [--calls 20000] [--fsync-calls 300]``
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from kustos.audit import (
    AuditAuth,
    AuditBroker,
    AuditRequest,
    AuditResponse,
    FileAuditDevice,
    generate_hmac_key,
    verify_file,
)
from kustos.sensitive import Sensitive


def _call_objects(i: int) -> tuple[AuditAuth, AuditRequest, AuditResponse]:
    token = Sensitive("hvs.bench-audit-token-0123456789abcdef")
    auth = AuditAuth(
        client_token=token,
        accessor="a1b2c3d4e5f6a7b8c9d0e1f2",
        display_name="root",
        policies=("root",),
        token_policies=("root",),
        token_type="service",
    )
    request = AuditRequest(
        id=f"5f0c6a1e-0000-4000-8000-{i:012x}",
        operation="read",
        path=f"secret/data/bench/k{i % 64}",
        mount_type="kv",
        mount_point="secret/",
        remote_address="127.0.0.1",
        remote_port=50000 + i % 1000,
        client_token=token,
        client_token_accessor="a1b2c3d4e5f6a7b8c9d0e1f2",
    )
    response = AuditResponse(
        status=200,
        mount_type="kv",
        data={
            "data": {"password": "x" * 24, "username": "app"},
            "metadata": {
                "created_time": "2024-01-01T00:00:00.000000Z",
                "custom_metadata": None,
                "deletion_time": "",
                "destroyed": False,
                "version": 3,
            },
        },
    )
    return auth, request, response


def _run(broker: AuditBroker, calls: int) -> list[float]:
    objects = [_call_objects(i) for i in range(64)]
    timings: list[float] = []
    for i in range(calls):
        auth, request, response = objects[i % 64]
        started = time.perf_counter()
        broker.log_request(auth=auth, request=request)
        broker.log_response(auth=auth, request=request, response=response)
        timings.append(time.perf_counter() - started)
    return timings


def _run_staged(broker: AuditBroker, calls: int, batch: int = 8) -> list[float]:
    """Reads as the server logs them: both entries staged, ``batch`` calls per write (one event-loop turn)."""
    objects = [_call_objects(i) for i in range(64)]
    timings: list[float] = []
    for start in range(0, calls, batch):
        size = min(batch, calls - start)
        started = time.perf_counter()
        staged = [
            broker.stage_call(auth=auth, request=request, response=response)
            for auth, request, response in (objects[i % 64] for i in range(start, start + size))
        ]
        broker.flush()
        for one in staged:
            broker.check_staged(one)
        timings += [(time.perf_counter() - started) / size] * size
    return timings


def _row(label: str, timings: list[float], cpu: float) -> float:
    ordered = sorted(timings)
    total = sum(ordered)
    per_call = total / len(ordered) * 1e6
    p50 = ordered[len(ordered) // 2] * 1e6
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e6
    print(
        f"{label:<34} {per_call:8.1f} µs/call  {1e6 / per_call:9.0f} calls/s  "
        f"p50 {p50:7.1f} µs  p99 {p99:8.1f} µs  cpu {cpu / len(ordered) * 1e6:7.1f} µs/call"
    )
    return per_call


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(calls: int, fsync_calls: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="kustos-audit-bench-"))
    try:
        _main(work, calls, fsync_calls)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # ~50 MB of audit file per 20,000 calls


def _main(work: Path, calls: int, fsync_calls: int) -> None:
    key = generate_hmac_key()
    clock = lambda: datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)  # noqa: E731 - fixed time: same bytes each run
    epoch = clock().timestamp()
    epoch_clock = lambda: epoch  # noqa: E731 - entries dated from seconds, as the server's devices are
    print(
        f"{calls} calls (request + response entry each), KV read shaped; fsync row: {fsync_calls} calls"
    )
    modes = (
        ("file device, no fsync (default)", False, calls, _run),
        ("  staged reads, 8 per write(2)", False, calls, _run_staged),
        ("file device, fsync per entry", True, fsync_calls, _run),
    )
    one_by_one = 0.0
    for label, fsync, n, run in modes:
        path = work / f"audit-{fsync}-{run.__name__}.log"
        broker = AuditBroker(
            {
                "file": FileAuditDevice(
                    path, hmac_key=key, fsync=fsync, clock=clock, epoch_clock=epoch_clock
                )
            }
        )
        run(broker, min(n, 500))  # warm up
        gc.collect()
        cpu = _cpu()
        timings = run(broker, n)
        per_call = _row(label, timings, _cpu() - cpu)
        broker.close()
        size = path.stat().st_size
        if run is _run_staged:
            print(f"{'  staged vs one by one':<34} {per_call / one_by_one:8.2f}x the time per call")
            continue
        if not fsync:
            one_by_one = per_call
            print(f"{'file bytes per call':<34} {size / (n + min(n, 500)):8.0f}")
            started = time.perf_counter()
            result = verify_file(path, hmac_key=key)
            print(
                f"{'verify_file':<34} {(time.perf_counter() - started) / (2 * (n + 500)) * 1e6:8.1f} µs/entry  "
                f"ok={result.ok}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--fsync-calls", type=int, default=300)
    args = parser.parse_args()
    main(args.calls, args.fsync_calls)
