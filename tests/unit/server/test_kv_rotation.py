"""Scheduled rotation of KV fields and password policies, through the API in process with a fake clock.

The timers are run by the test (``core.timers.run_due()``) after moving the
clock, so "on schedule" is checked without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.server import Core, create_app
from kustos.server.passwords import parse_password_policy
from tests.unit.server.conftest import FakeClock

ROOT = "hvs.rotation-root"
POLICY = 'length = 12\nrule "charset" {\n  charset = "xyz"\n  min-chars = 2\n}\nrule "charset" {\n  charset = "0123"\n}\n'


@dataclass
class Server:
    core: Core
    http: httpx.AsyncClient
    clock: FakeClock


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    clock = FakeClock()
    config = ServerConfig(
        storage=StorageConfig(url=f"sqlite:{tmp_path / 'kustos.db'}"),
        keys=KeyProviderConfig(kind="local", key_file=tmp_path / "kustos.key"),
        dev=True,
    )
    core = await Core.open(config, clock=clock)
    await core.dev_bootstrap(root_token_id=ROOT)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(config, core=core)),
        base_url="http://kustos",
        headers={"X-Vault-Token": ROOT},
    )
    try:
        yield Server(core, http, clock)
    finally:
        await http.aclose()
        await core.close()


async def _data(server: Server, path: str) -> dict[str, object]:
    answer = await server.http.get(f"/v1/secret/data/{path}")
    assert answer.status_code == 200, answer.text
    body = answer.json()["data"]
    return {"data": body["data"], **body["metadata"]}


async def test_password_policy_api(server: Server) -> None:
    put = await server.http.put("/v1/sys/policies/password/db", json={"policy": POLICY})
    assert put.status_code == 204, put.text
    assert (await server.http.get("/v1/sys/policies/password/db")).json()["data"][
        "policy"
    ] == POLICY
    generated = await server.http.get("/v1/sys/policies/password/db/generate")
    password = generated.json()["data"]["password"]
    assert parse_password_policy(POLICY).satisfied_by(password)
    listed = await server.http.request("LIST", "/v1/sys/policies/password")
    assert listed.json()["data"]["keys"] == ["db"]
    bad = await server.http.put("/v1/sys/policies/password/db", json={"policy": "length = 2"})
    assert bad.status_code == 400 and "length" in bad.json()["errors"][0]
    bad = await server.http.put("/v1/sys/policies/password/db", json={"policy": POLICY, "x": 1})
    assert bad.status_code == 400 and "x" in bad.json()["errors"][0]
    assert (await server.http.delete("/v1/sys/policies/password/db")).status_code == 204
    missing = await server.http.get("/v1/sys/policies/password/db/generate")
    assert missing.status_code == 404


async def test_a_rule_rotates_its_fields_on_schedule_and_keeps_the_others(server: Server) -> None:
    await server.http.put("/v1/sys/policies/password/db", json={"policy": POLICY})
    await server.http.post(
        "/v1/secret/data/app/db", json={"data": {"user": "app", "password": "first"}}
    )
    subscription = server.core.events.subscribe(mount="secret/", prefix="app/")
    rule = await server.http.put(
        "/v1/secret/rotation/app/db",
        json={"fields": ["password"], "password_policy": "db", "rotation_period": "1h"},
    )
    assert rule.status_code == 204, rule.text
    shown = (await server.http.get("/v1/secret/rotation/app/db")).json()["data"]
    assert shown["fields"] == ["password"] and shown["rotation_period"] == 3600
    assert shown["ttl"] == 3600 and shown["last_rotation"] is None

    server.clock.advance(3599)
    await server.core.timers.run_due()
    assert (await _data(server, "app/db"))["version"] == 1  # not yet
    server.clock.advance(1)
    await server.core.timers.run_due()
    latest = await _data(server, "app/db")
    data = latest["data"]
    assert isinstance(data, dict)
    assert latest["version"] == 2 and data["user"] == "app"
    assert data["password"] != "first"
    assert parse_password_policy(POLICY).satisfied_by(str(data["password"]))
    history = (await server.http.get("/v1/secret/metadata/app/db")).json()["data"]["versions"]
    assert history["2"]["reason"] == "scheduled rotation"
    assert history["2"]["created_by"] == "kustos-rotation"
    changes = await subscription.next(timeout=1)
    assert changes is not None and (changes[-1].kind, changes[-1].version) == ("write", 2)

    server.clock.advance(3600)  # the schedule goes on from the last rotation
    await server.core.timers.run_due()
    assert (await _data(server, "app/db"))["version"] == 3

    now = await server.http.post("/v1/secret/rotate/app/db")
    assert now.status_code == 200 and now.json()["data"]["version"] == 4
    history = (await server.http.get("/v1/secret/metadata/app/db")).json()["data"]["versions"]
    assert history["4"]["reason"] == "manual rotation"
    assert (await server.http.delete("/v1/secret/rotation/app/db")).status_code == 204
    server.clock.advance(7200)
    await server.core.timers.run_due()
    assert (await _data(server, "app/db"))["version"] == 4


async def test_a_rule_on_a_missing_secret_creates_it(server: Server) -> None:
    await server.http.put(
        "/v1/secret/rotation/new/key", json={"fields": "api_key,pin", "rotation_period": 60}
    )
    server.clock.advance(60)
    await server.core.timers.run_due()
    data = (await _data(server, "new/key"))["data"]
    assert isinstance(data, dict) and sorted(data) == ["api_key", "pin"]
    assert len(str(data["api_key"])) == 20  # Vault's default policy
    listed = await server.http.request("LIST", "/v1/secret/rotation/new")
    assert listed.json()["data"]["keys"] == ["key"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"rotation_period": "1h"}, "fields"),
        ({"fields": [], "rotation_period": "1h"}, "fields"),
        ({"fields": ["a", "a"], "rotation_period": "1h"}, "named twice"),
        ({"fields": ["a\nb"], "rotation_period": "1h"}, "fields"),
        ({"fields": ["a"]}, "rotation_period is required"),
        ({"fields": ["a"], "rotation_period": "1s"}, "5 seconds"),
        ({"fields": ["a"], "rotation_period": "soon"}, "rotation_period"),
        ({"fields": ["a"], "rotation_period": "1h", "password_policy": "nope"}, "does not exist"),
        ({"fields": ["a"], "rotation_period": "1h", "schedule": "x"}, "schedule"),
    ],
)
async def test_bad_rules_are_refused(
    server: Server, body: dict[str, object], expected: str
) -> None:
    answer = await server.http.put("/v1/secret/rotation/app/x", json=body)
    assert answer.status_code == 400, answer.text
    assert expected in answer.json()["errors"][0]
    missing = await server.http.post("/v1/secret/rotate/app/x")
    assert missing.status_code == 400
