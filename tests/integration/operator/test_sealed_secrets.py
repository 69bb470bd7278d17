"""The SealedSecret controller on a real kube-apiserver, with a real ``kustos server --dev`` that unseals.

SealedSecrets are sealed here with the server's public certificate
(``GET /v1/cert.pem``) and the project's sealing library; the operator sends
them to ``POST /v1/sys/sealing/unseal`` and writes the Secret.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

import httpx
import pytest

from kustos.crypto.sealing import load_certificates
from kustos.gitops.sealing import SealFormat, parse_secret, seal_secret
from kustos.sensitive import Sensitive
from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]

BITNAMI = "bitnami.com/v1alpha1"
KUSTOS = "kustos.io/v1"


def _decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


@pytest.fixture()
def sealer(kustos_server: RunningServer) -> Any:
    addr, _ = kustos_server
    response = httpx.get(f"{addr}/v1/cert.pem", timeout=10)
    assert response.status_code == 200, response.text
    certificates = load_certificates(response.content)

    def seal(name: str, values: dict[str, str], *, fmt: SealFormat, labels: dict[str, str] | None = None,
             type_: str = "Opaque", namespace: str) -> dict[str, Any]:  # fmt: skip
        manifest = parse_secret({"apiVersion": "v1", "kind": "Secret", "type": type_,
                                 "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                                 "stringData": values})  # fmt: skip
        sealed = seal_secret(
            manifest, certificates=certificates, now=datetime.datetime.now(tz=datetime.UTC), fmt=fmt
        )
        return sealed[0]

    return seal


def _options(server: RunningServer) -> dict[str, Any]:
    return {"kustos_addr": server.addr, "kustos_token": Sensitive(server.root_token), "external_secrets": False,
            "reloader": False}  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "api_version"), [(SealFormat.bitnami, BITNAMI), (SealFormat.kustos, KUSTOS)]
)
async def test_a_sealed_secret_of_either_group_becomes_a_secret(
    api, run_operator, wait, kustos_server: RunningServer, sealer, fmt: SealFormat, api_version: str
) -> None:
    sealed = sealer("db", {"password": "s3cret", "user": "app"}, fmt=fmt, labels={"team": "payments"},
                    type_="kubernetes.io/basic-auth", namespace=api.ns)  # fmt: skip
    assert sealed["apiVersion"] == api_version
    created = await api.create("sealedsecrets", sealed)
    async with run_operator(**_options(kustos_server)):

        async def unsealed() -> bool:
            return _decoded(await api.get("v1", "secrets", api.ns, "db")) == {
                "password": b"s3cret",
                "user": b"app",
            }

        await wait(unsealed, what="the unsealed Secret", timeout=15)
        secret = await api.get("v1", "secrets", api.ns, "db")
        assert secret is not None
        assert secret["type"] == "kubernetes.io/basic-auth"
        assert secret["metadata"]["labels"]["team"] == "payments"
        [owner] = secret["metadata"]["ownerReferences"]
        assert (
            owner["apiVersion"],
            owner["kind"],
            owner["name"],
            owner["uid"],
            owner["controller"],
        ) == (api_version, "SealedSecret", "db", created["metadata"]["uid"], True)

        async def synced() -> bool:
            body = await api.get(api_version, "sealedsecrets", api.ns, "db")
            conditions = ((body or {}).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Synced" and c["status"] == "True" for c in conditions)

        await wait(synced, what="Synced=True", timeout=10)

        async def event() -> bool:
            return bool(await api.events(api.ns, reason="Unsealed"))

        await wait(event, what="the Unsealed event")

        # a deleted Secret comes back
        await api.delete("v1", "secrets", api.ns, "db")
        await wait(unsealed, what="the recreated Secret", timeout=15)

        # deleting the SealedSecret lets the garbage collector remove its Secret
        await api.delete(api_version, "sealedsecrets", api.ns, "db")

        async def collected() -> bool:
            return await api.get("v1", "secrets", api.ns, "db") is None

        await wait(collected, what="the Secret garbage-collected", timeout=60)


async def test_an_unmanaged_secret_is_refused_until_annotated_managed(
    api, run_operator, wait, kustos_server: RunningServer, sealer
) -> None:
    await api.create("secrets", {"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": "taken", "namespace": api.ns},
                                 "data": {"mine": base64.b64encode(b"hand-made").decode()}})  # fmt: skip
    await api.create(
        "sealedsecrets",
        sealer("taken", {"password": "sealed-value"}, fmt=SealFormat.bitnami, namespace=api.ns),
    )
    async with run_operator(**_options(kustos_server)):

        async def refused() -> bool:
            body = await api.get(BITNAMI, "sealedsecrets", api.ns, "taken")
            conditions = ((body or {}).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Synced" and c["status"] == "False" for c in conditions)

        await wait(refused, what="Synced=False", timeout=15)

        async def warned() -> bool:
            return bool(await api.events(api.ns, reason="ErrUpdateFailed"))

        await wait(warned, what="the ErrUpdateFailed event")
        [event] = await api.events(api.ns, reason="ErrUpdateFailed")
        assert "already exists and is not managed by SealedSecret" in event["message"]
        assert event["type"] == "Warning"
        assert _decoded(await api.get("v1", "secrets", api.ns, "taken")) == {"mine": b"hand-made"}

        # the managed annotation lets the SealedSecret take it over (no change to the SealedSecret needed)
        await api.patch(
            "v1",
            "secrets",
            api.ns,
            "taken",
            {"metadata": {"annotations": {"sealedsecrets.bitnami.com/managed": "true"}}},
        )

        async def taken_over() -> bool:
            return _decoded(await api.get("v1", "secrets", api.ns, "taken")) == {
                "password": b"sealed-value"
            }

        await wait(taken_over, what="the managed Secret taken over", timeout=15)
        secret = await api.get("v1", "secrets", api.ns, "taken")
        assert (
            secret is not None
            and secret["metadata"]["ownerReferences"][0]["kind"] == "SealedSecret"
        )


async def test_a_value_that_does_not_open_is_reported(
    api, run_operator, wait, kustos_server: RunningServer, sealer
) -> None:
    sealed = sealer("broken", {"password": "x"}, fmt=SealFormat.bitnami, namespace=api.ns)
    sealed["spec"]["encryptedData"]["password"] = base64.b64encode(
        b"\x00\x10" + b"garbage" * 40
    ).decode()
    await api.create("sealedsecrets", sealed)
    async with run_operator(**_options(kustos_server)):

        async def failed() -> bool:
            return bool(await api.events(api.ns, reason="ErrUnsealFailed"))

        await wait(failed, what="an ErrUnsealFailed event", timeout=15)
        assert await api.get("v1", "secrets", api.ns, "broken") is None
