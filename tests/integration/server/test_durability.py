"""A write the server answered 2xx survives SIGKILL of the server (SQLite and PostgreSQL).

Several writer threads loop over HTTP against a real ``kustos server``
subprocess; once enough writes are acknowledged the server is killed with
SIGKILL while requests are still in flight, restarted on the same storage,
and every acknowledged write must read back exactly. (SIGKILL loses the
process, not the OS page cache: this proves writes are committed before the
answer, not that the disk honours fsync.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import create_database, postgres_url  # noqa: F401
from tests.support.server import RunningServer, start_server

WRITERS = 4
ACKED_BEFORE_KILL = 60


@dataclass
class WriteLog:
    """What each writer thread saw, shared with the test thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, dict[str, object]] = field(default_factory=dict)
    hot_acked: dict[int, dict[str, object]] = field(default_factory=dict)  # version -> data
    interrupted: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def count(self) -> int:
        with self.lock:
            return len(self.acked) + len(self.hot_acked)


def _write_loop(server: RunningServer, writer: int, log: WriteLog, stop: threading.Event) -> None:
    headers = {"X-Vault-Token": server.root_token}
    with httpx.Client(base_url=server.addr, headers=headers, timeout=15.0) as client:
        number = 0
        while not stop.is_set():
            number += 1
            hot = number % 3 == 0
            path = "durability/hot" if hot else f"durability/w{writer}/n{number}"
            data: dict[str, object] = {"writer": writer, "number": number, "filler": "x" * 200}
            try:
                response = client.post(f"/v1/secret/data/{path}", json={"data": data})
            except httpx.TransportError as exc:
                with log.lock:
                    log.interrupted.append(type(exc).__name__)
                return
            if response.status_code not in (200, 204):
                with log.lock:
                    log.unexpected.append(f"{path}: {response.status_code}")
                return
            with log.lock:
                if hot:
                    log.hot_acked[int(response.json()["data"]["version"])] = data
                else:
                    log.acked[path] = data


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    if request.param == "sqlite":
        return ()
    return ("--storage", create_database(request.getfixturevalue("postgres_url")))


def test_every_acknowledged_write_reads_back_after_sigkill(
    tmp_path: Path, storage_args: tuple[str, ...]
) -> None:
    with start_server(tmp_path, *storage_args) as server:
        assert server.process is not None
        log, stop = WriteLog(), threading.Event()
        threads = [
            threading.Thread(target=_write_loop, args=(server, n, log, stop), daemon=True)
            for n in range(WRITERS)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while (
            log.count() < ACKED_BEFORE_KILL and time.monotonic() < deadline and not log.unexpected
        ):
            time.sleep(0.005)
        server.process.kill()  # SIGKILL, with the writers still sending
        server.process.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=30)
        stop.set()

        assert not log.unexpected, log.unexpected
        assert log.count() >= ACKED_BEFORE_KILL
        # Every writer was cut off by the kill, i.e. the kill landed mid-loop.
        assert len(log.interrupted) == WRITERS, log.interrupted

        server.start()
        with httpx.Client(
            base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=15.0
        ) as client:
            for path, data in log.acked.items():
                response = client.get(f"/v1/secret/data/{path}")
                assert response.status_code == 200, path
                assert response.json()["data"]["data"] == data, path

            newest = max(log.hot_acked)
            meta = client.get("/v1/secret/metadata/durability/hot").json()["data"]
            assert meta["current_version"] >= newest
            # Up to WRITERS hot writes were in flight, so the newest acknowledged
            # version is still within the kept history (max_versions 10).
            for version in range(max(1, meta["current_version"] - 9), newest + 1):
                if version in log.hot_acked:
                    response = client.get(
                        "/v1/secret/data/durability/hot", params={"version": version}
                    )
                    assert response.status_code == 200, version
                    assert response.json()["data"]["data"] == log.hot_acked[version], version
