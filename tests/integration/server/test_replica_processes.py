"""Two ``kustos server`` processes on one real PostgreSQL, both active: what one does, the other knows.

Replica A and replica B are separate processes started with the same
``--storage`` database and key file. A policy change, a new mount, a new auth
method and a token revocation made on A take effect on B without B being
restarted; a subscriber following B's change stream with the client the
operator's kustos provider uses (:func:`kustos.client.events.follow`) hears
a write made on A; and SIGKILL of A under a write load, with the writers
retrying on B, loses no acknowledged write. Waits poll with a generous
timeout; nothing asserts on elapsed time (``bench/replicas.py`` measures it).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from kustos.client.events import StreamEvent, aclose_quietly, follow
from kustos.sensitive import Sensitive
from tests.support.postgres import create_database, postgres_url  # noqa: F401
from tests.support.server import RunningServer, start_server

pytestmark = pytest.mark.postgres

_WAIT = 20.0


@dataclass
class Replicas:
    a: RunningServer
    b: RunningServer

    def client(self, server: RunningServer, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=server.addr,
            headers={"X-Vault-Token": token or server.root_token},
            timeout=15.0,
        )


@pytest.fixture
def replicas(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811 - the fixture imported above
) -> Iterator[Replicas]:
    database = create_database(postgres_url)
    shared = ("--storage", database, "--key-file", str(tmp_path / "kustos.key"))
    with (
        start_server(tmp_path / "a", *shared) as a,
        start_server(tmp_path / "b", *shared) as b,
    ):
        yield Replicas(a=a, b=b)


def eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the other replica did not catch up")
        time.sleep(0.02)


def test_a_policy_change_on_one_replica_takes_effect_on_the_other(replicas: Replicas) -> None:
    with replicas.client(replicas.a) as a, replicas.client(replicas.b) as b:
        assert a.post("/v1/secret/data/team/db", json={"data": {"k": "v"}}).status_code == 200
        token = a.post("/v1/auth/token/create", json={"policies": ["team-reader"]}).json()
        with replicas.client(replicas.b, token["auth"]["client_token"]) as reader:
            assert reader.get("/v1/secret/data/team/db").status_code == 403
            policy = 'path "secret/data/team/*" { capabilities = ["read"] }'
            assert a.put("/v1/sys/policy/team-reader", json={"policy": policy}).status_code == 204
            eventually(lambda: reader.get("/v1/secret/data/team/db").status_code == 200)
            assert reader.get("/v1/secret/data/team/db").json()["data"]["data"] == {"k": "v"}
            assert a.delete("/v1/sys/policy/team-reader").status_code == 204
            eventually(lambda: reader.get("/v1/secret/data/team/db").status_code == 403)
        assert "team-reader" not in b.get("/v1/sys/policy").json()["data"]["policies"]


def test_a_mount_and_an_auth_method_enabled_on_one_replica_appear_on_the_other(
    replicas: Replicas,
) -> None:
    with replicas.client(replicas.a) as a, replicas.client(replicas.b) as b:
        assert "kv2/" not in b.get("/v1/sys/mounts").json()["data"]
        enabled = a.post("/v1/sys/mounts/kv2", json={"type": "kv", "options": {"version": "2"}})
        assert enabled.status_code == 204
        # sys/mounts lists B's table as it is in memory: only A's announcement can add it
        eventually(lambda: "kv2/" in b.get("/v1/sys/mounts").json()["data"])
        assert b.post("/v1/kv2/data/x", json={"data": {"from": "b"}}).status_code == 200
        assert a.get("/v1/kv2/data/x").json()["data"]["data"] == {"from": "b"}

        assert a.post("/v1/sys/auth/people", json={"type": "userpass"}).status_code == 204
        eventually(lambda: "people/" in b.get("/v1/sys/auth").json()["data"])

        assert a.delete("/v1/sys/mounts/kv2").status_code == 204
        eventually(lambda: "kv2/" not in b.get("/v1/sys/mounts").json()["data"])
        assert b.get("/v1/kv2/data/x").status_code == 404


def test_a_token_revoked_on_one_replica_stops_working_on_the_other(replicas: Replicas) -> None:
    with replicas.client(replicas.a) as a:
        token = a.post("/v1/auth/token/create", json={"policies": ["default"]}).json()
        with replicas.client(replicas.b, token["auth"]["client_token"]) as user:
            assert user.get("/v1/auth/token/lookup-self").status_code == 200
            assert user.get("/v1/auth/token/lookup-self").status_code == 200  # now cached on B
            revoked = a.post("/v1/auth/token/revoke", json={"token": token["auth"]["client_token"]})
            assert revoked.status_code == 204
            eventually(lambda: user.get("/v1/auth/token/lookup-self").status_code == 403)


async def test_a_subscriber_of_one_replica_hears_writes_made_on_the_other(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    async with (
        httpx.AsyncClient(base_url=b.addr, timeout=30.0) as http_b,
        httpx.AsyncClient(
            base_url=a.addr, headers={"X-Vault-Token": a.root_token}, timeout=30.0
        ) as http_a,
    ):
        events = follow(http_b, prefix="secret/app/", token=lambda: Sensitive(b.root_token))
        try:
            first = await asyncio.wait_for(events.__anext__(), _WAIT)
            assert first.type == "ready"
            written = await http_a.post("/v1/secret/data/app/db", json={"data": {"p": "1"}})
            assert written.status_code == 200

            async def next_change() -> StreamEvent:
                async for event in events:
                    if event.type == "change":
                        return event
                raise AssertionError("the stream ended")

            change = await asyncio.wait_for(next_change(), _WAIT)
            assert (change.mount, change.path, change.version, change.kind) == (
                "secret/",
                "app/db",
                1,
                "write",
            )
        finally:
            await aclose_quietly(events)


@dataclass
class Ledger:
    """Acknowledged writes (path -> data), shared by the writer threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, dict[str, object]] = field(default_factory=dict)
    retried: int = 0
    failed: list[str] = field(default_factory=list)


def _writer(
    number: int, servers: list[RunningServer], ledger: Ledger, stop: threading.Event
) -> None:
    """Write new secrets in a loop; when a replica fails, retry the same write on the next one."""
    clients = [
        httpx.Client(base_url=s.addr, headers={"X-Vault-Token": s.root_token}, timeout=10.0)
        for s in servers
    ]
    current = 0
    try:
        sequence = 0
        while not stop.is_set():
            sequence += 1
            path = f"load/w{number}/s{sequence}"
            data: dict[str, object] = {"writer": number, "sequence": sequence}
            for _attempt in range(len(clients) * 3):
                try:
                    response = clients[current].post(f"/v1/secret/data/{path}", json={"data": data})
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 200:
                    with ledger.lock:
                        ledger.acked[path] = data
                    break
                with ledger.lock:
                    ledger.retried += 1
                current = (current + 1) % len(clients)
            else:
                with ledger.lock:
                    ledger.failed.append(path)
                return
    finally:
        for client in clients:
            client.close()


def test_sigkill_of_one_replica_under_load_loses_no_acknowledged_write(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    ledger = Ledger()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(n, [a, b], ledger, stop), daemon=True)
        for n in range(6)
    ]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: len(ledger.acked) >= 60)
        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)  # mid-load: requests to A are in flight
        a.process.wait(timeout=10)
        killed_at = len(ledger.acked)
        eventually(lambda: len(ledger.acked) >= killed_at + 60)  # the writers carry on against B
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not ledger.failed
    assert ledger.retried >= 1  # at least one write was interrupted by the kill and retried on B
    with replicas.client(b) as client:
        for path, data in ledger.acked.items():
            response = client.get(f"/v1/secret/data/{path}")
            assert response.status_code == 200, path
            assert response.json()["data"]["data"] == data, path
