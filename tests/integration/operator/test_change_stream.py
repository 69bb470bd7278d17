"""The server's change stream (``sys/events/subscribe``) against a real ``kustos server --dev``."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from kustos.client.events import StreamEvent, follow, subscribe
from kustos.errors import InvalidRequestError, PermissionDeniedError
from kustos.sensitive import Sensitive
from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]


async def _next(events: object, *, what: str) -> StreamEvent:
    async with asyncio.timeout(10):
        return await anext(events)  # type: ignore[call-overload,no-any-return]


async def test_a_write_arrives_as_a_change_without_its_value(kustos_server: RunningServer) -> None:
    addr, root = kustos_server
    async with httpx.AsyncClient(
        base_url=addr, headers={"X-Vault-Token": root}, timeout=10
    ) as http:
        events = subscribe(http, prefix="secret/stream/", token=Sensitive(root))
        async with contextlib.aclosing(events):
            ready = await _next(events, what="ready")
            assert ready.type == "ready" and ready.id
            await http.post(
                "/v1/secret/data/elsewhere/x", json={"data": {"v": "1"}}
            )  # outside the prefix
            await http.post(
                "/v1/secret/data/stream/db", json={"data": {"password": "hunter2-value"}}
            )
            change = await _next(events, what="change")
            assert (change.type, change.mount, change.path, change.version, change.kind) == (
                "change",
                "secret/",
                "stream/db",
                1,
                "write",
            )
            assert change.id and change.time > 0
            await http.post("/v1/secret/destroy/stream/db", json={"versions": [1]})
            destroyed = await _next(events, what="destroy")
            assert (destroyed.path, destroyed.kind) == ("stream/db", "destroy")
            await http.delete("/v1/secret/metadata/stream/db")
            assert (await _next(events, what="metadata delete")).kind == "metadata-delete"


async def test_the_raw_stream_never_carries_values(kustos_server: RunningServer) -> None:
    addr, root = kustos_server
    async with httpx.AsyncClient(base_url=addr, timeout=10) as http:
        async with http.stream(
            "GET",
            "/v1/sys/events/subscribe",
            params={"prefix": "secret/raw/"},
            headers={"X-Vault-Token": root},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            seen: list[str] = []
            async with asyncio.timeout(10):
                while "event: ready" not in seen:
                    seen.append(await anext(lines))
                written = await http.post(
                    "/v1/secret/data/raw/k",
                    json={"data": {"pw": "s3cr3t-never-streamed"}},
                    headers={"X-Vault-Token": root},
                )
                assert written.status_code == 200
                while not any(line.startswith("data:") and "raw/k" in line for line in seen):
                    seen.append(await anext(lines))
            assert "s3cr3t-never-streamed" not in "\n".join(seen)


async def test_subscribing_needs_a_valid_prefix_and_a_token(kustos_server: RunningServer) -> None:
    addr, root = kustos_server
    async with httpx.AsyncClient(base_url=addr, timeout=10) as http:
        with pytest.raises(PermissionDeniedError):
            await anext(subscribe(http, prefix="secret/", token=None))
        with pytest.raises(PermissionDeniedError):
            await anext(subscribe(http, prefix="secret/", token=Sensitive("not-a-token")))
        with pytest.raises(InvalidRequestError, match="not under any mount"):
            await anext(subscribe(http, prefix="nosuchmount/x", token=Sensitive(root)))
        created = await http.post(
            "/v1/auth/token/create", json={"policies": ["default"]}, headers={"X-Vault-Token": root}
        )
        weak = created.json()["auth"]["client_token"]
        with pytest.raises(PermissionDeniedError):
            await anext(subscribe(http, prefix="secret/", token=Sensitive(weak)))


async def test_follow_resumes_after_the_stream_ends_and_sends_heartbeats(
    kustos_server: RunningServer,
) -> None:
    addr, root = kustos_server
    async with httpx.AsyncClient(
        base_url=addr, headers={"X-Vault-Token": root}, timeout=10
    ) as http:
        events = follow(http, prefix="secret/follow/", token=lambda: Sensitive(root), heartbeat=1)
        async with contextlib.aclosing(events):
            assert (await _next(events, what="ready")).type == "ready"
            for version in (1, 2, 3):
                await http.post("/v1/secret/data/follow/app", json={"data": {"n": str(version)}})
            versions = [(await _next(events, what="change")).version for _ in range(3)]
            assert versions == [1, 2, 3]
            await asyncio.sleep(2.5)  # heartbeats keep the idle stream open (no disconnected event)
            await http.post("/v1/secret/data/follow/app", json={"data": {"n": "4"}})
            later = await _next(events, what="change after idle")
            assert (later.type, later.version) == ("change", 4)
