"""The change stream's access events against a real ``kustos server --dev``: several prefixes on one
stream, ``access`` when a policy the token holds is written, ``revoked`` when the token is revoked."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest

from kustos.client.events import StreamEvent, subscribe
from kustos.errors import InvalidRequestError, PermissionDeniedError
from kustos.sensitive import Sensitive
from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]

POLICY = 'path "secret/data/acc/*" { capabilities = ["read"] }'


async def _next(events: object) -> StreamEvent:
    async with asyncio.timeout(10):
        return await anext(events)  # type: ignore[call-overload,no-any-return]


async def _token(http: httpx.AsyncClient, root: str, policy: str) -> str:
    headers = {"X-Vault-Token": root}
    answer = await http.post(
        f"/v1/sys/policies/acl/{policy}", json={"policy": POLICY}, headers=headers
    )
    assert answer.status_code in (200, 204), answer.text
    created = await http.post("/v1/auth/token/create", json={"policies": [policy]}, headers=headers)
    return str(created.json()["auth"]["client_token"])


async def test_prefixes_access_and_revoked(kustos_server: RunningServer) -> None:
    addr, root = kustos_server
    headers = {"X-Vault-Token": root}
    async with httpx.AsyncClient(base_url=addr, timeout=10) as http:
        token = await _token(http, root, "acc-reader")
        events = subscribe(
            http,
            prefix="",
            prefixes=["secret/acc/a", "secret/acc/b"],
            token=Sensitive(token),
        )
        async with contextlib.aclosing(events):
            assert (await _next(events)).type == "ready"
            for path in ("acc/c", "acc/b", "acc/a"):
                await http.post(
                    f"/v1/secret/data/{path}", json={"data": {"v": "x"}}, headers=headers
                )
            seen = [(await _next(events)).path for _ in range(2)]
            assert seen == ["acc/b", "acc/a"]  # acc/c is not followed
            await http.post(
                "/v1/sys/policies/acl/acc-reader", json={"policy": POLICY}, headers=headers
            )
            access = await _next(events)
            assert (access.type, access.kind, access.policies) == (
                "access",
                "policy",
                ("acc-reader",),
            )
            await http.post(
                "/v1/sys/policies/acl/unrelated", json={"policy": POLICY}, headers=headers
            )
            await http.post("/v1/auth/token/revoke", json={"token": token}, headers=headers)
            revoked = await _next(events)
            assert revoked.type == "revoked"  # the unrelated policy was not sent first
            with pytest.raises(StopAsyncIteration):
                await _next(events)


async def test_access_only_and_refusals(kustos_server: RunningServer) -> None:
    addr, root = kustos_server
    headers = {"X-Vault-Token": root}
    async with httpx.AsyncClient(base_url=addr, timeout=10) as http:
        token = await _token(http, root, "acc-only")
        events = subscribe(http, prefix="", prefixes=[], token=Sensitive(token))
        async with contextlib.aclosing(events):
            assert (await _next(events)).type == "ready"
            await http.post("/v1/secret/data/acc/z", json={"data": {"v": "x"}}, headers=headers)
            await http.delete("/v1/sys/policies/acl/acc-only", headers=headers)
            assert (await _next(events)).type == "access"  # and no change event before it
        # a prefix the token may not read is listed, not refused, and its changes stay hidden
        token = await _token(http, root, "acc-mixed")
        mixed = subscribe(
            http, prefix="", prefixes=["secret/acc/a", "secret/other/x"], token=Sensitive(token)
        )
        async with contextlib.aclosing(mixed):
            assert (await _next(mixed)).type == "ready"
            await http.post("/v1/secret/data/other/x", json={"data": {"v": "x"}}, headers=headers)
            await http.post("/v1/secret/data/acc/a", json={"data": {"v": "x"}}, headers=headers)
            assert (await _next(mixed)).path == "acc/a"
        async with http.stream(
            "GET",
            "/v1/sys/events/subscribe",
            params={"prefixes": json.dumps(["secret/acc/a", "secret/other/x"])},
            headers={"X-Vault-Token": token},
        ) as raw:
            lines = raw.aiter_lines()
            async with asyncio.timeout(10):
                while not (line := await anext(lines)).startswith("data:"):
                    pass
            assert json.loads(line[5:])["denied"] == ["secret/other/x"]
        single = subscribe(http, prefix="secret/other/x", token=Sensitive(token))
        with pytest.raises(PermissionDeniedError):
            await _next(single)
        await single.aclose()
        response = await http.get(
            "/v1/sys/events/subscribe",
            params={"prefixes": json.dumps(["secret/a", 3])},
            headers=headers,
        )
        assert response.status_code == 400 and "JSON array" in response.text
        many = subscribe(
            http, prefix="", prefixes=[f"secret/p{i}" for i in range(501)], token=Sensitive(root)
        )
        with pytest.raises(InvalidRequestError, match="at most 500"):
            await _next(many)
        await many.aclose()
