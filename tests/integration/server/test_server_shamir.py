"""Shamir 3-of-5 over HTTP with hvac: init, partial unseal stays sealed, wrong shares do not count."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import httpx
import hvac
import hvac.exceptions
import pytest

from tests.support.server import RunningServer, start_server

SEALED = {"errors": ["Vault is sealed"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(
        tmp_path_factory.mktemp("shamir"), "--key-provider", "shamir", dev=False, expect=(501,)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def init(server: RunningServer) -> dict[str, object]:
    client = hvac.Client(url=server.addr)
    assert client.sys.is_initialized() is False
    result: dict[str, object] = client.sys.initialize(secret_shares=5, secret_threshold=3)
    return result


def _health(server: RunningServer) -> int:
    return httpx.get(f"{server.addr}/v1/sys/health").status_code


def _data(server: RunningServer, token: str) -> httpx.Response:
    return httpx.get(f"{server.addr}/v1/secret/data/app", headers={"X-Vault-Token": token})


def test_uninitialized_server(server: RunningServer) -> None:
    assert _health(server) == 501
    assert httpx.get(f"{server.addr}/v1/sys/health", params={"uninitcode": 200}).status_code == 200
    response = httpx.get(f"{server.addr}/v1/secret/data/app")
    assert response.status_code == 503 and response.json() == SEALED


def test_three_of_five(server: RunningServer, init: dict[str, object]) -> None:
    keys = init["keys"]
    keys_b64 = init["keys_base64"]
    root = init["root_token"]
    assert isinstance(keys, list) and isinstance(keys_b64, list) and isinstance(root, str)
    assert len(keys) == len(keys_b64) == 5
    assert [bytes.fromhex(k) for k in keys] == [base64.b64decode(k) for k in keys_b64]

    client = hvac.Client(url=server.addr, token=root)
    status = client.sys.read_seal_status()
    assert (status["sealed"], status["t"], status["n"], status["progress"], status["type"]) == (
        True,
        3,
        5,
        0,
        "shamir",
    )
    assert _health(server) == 503
    assert _data(server, root).status_code == 503

    assert client.sys.submit_unseal_key(key=keys_b64[0])["progress"] == 1
    second = client.sys.submit_unseal_key(key=keys[1])  # hex works too, like Vault
    assert second["sealed"] is True and second["progress"] == 2
    sealed = _data(server, root)
    assert sealed.status_code == 503 and sealed.json() == SEALED
    assert _health(server) == 503

    foreign = base64.b64encode(secrets.token_bytes(33)).decode()
    with pytest.raises(hvac.exceptions.InvalidRequest) as wrong:
        client.sys.submit_unseal_key(key=foreign)
    assert "not one of this server's key shares" in str(wrong.value)
    with pytest.raises(hvac.exceptions.InvalidRequest) as repeated:
        client.sys.submit_unseal_key(key=keys_b64[0])
    assert "already submitted" in str(repeated.value)
    with pytest.raises(hvac.exceptions.InvalidRequest) as malformed:
        client.sys.submit_unseal_key(key="not a share!")
    assert "malformed unseal share" in str(malformed.value)
    assert client.sys.read_seal_status()["progress"] == 2  # none of them counted

    third = client.sys.submit_unseal_key(key=keys_b64[4])
    assert third["sealed"] is False and third["progress"] == 0
    assert _health(server) == 200

    client.sys.enable_secrets_engine(backend_type="kv-v2", path="secret")
    client.secrets.kv.v2.create_or_update_secret(
        path="app", secret={"password": "shamir-protected"}
    )

    client.sys.seal()
    assert client.sys.is_sealed() is True
    assert _data(server, root).status_code == 503

    client.sys.submit_unseal_key(key=keys_b64[3])
    assert client.sys.submit_unseal_key(reset=True)["progress"] == 0
    client.sys.submit_unseal_keys(keys=[keys_b64[2], keys_b64[3], keys_b64[1]])
    assert client.sys.is_sealed() is False
    assert _data(server, root).json()["data"]["data"] == {"password": "shamir-protected"}

    server.restart(expect=(503,))  # a restarted shamir server starts sealed
    assert client.sys.is_sealed() is True
    client.sys.submit_unseal_keys(keys=keys_b64[:3])
    assert _data(server, root).json()["data"]["data"] == {"password": "shamir-protected"}

    with pytest.raises(hvac.exceptions.InvalidRequest) as again:
        client.sys.initialize(secret_shares=5, secret_threshold=3)
    assert "already initialized" in str(again.value)


def test_init_rejects_bad_counts(tmp_path_factory: pytest.TempPathFactory) -> None:
    with start_server(
        tmp_path_factory.mktemp("shamir-bad"), "--key-provider", "shamir", dev=False, expect=(501,)
    ) as fresh:
        for shares, threshold, fragment in (
            (5, 6, "secret_threshold"),
            (0, 0, "secret_shares"),
            (3, 1, "greater than one"),
        ):
            response = httpx.put(
                f"{fresh.addr}/v1/sys/init",
                json={"secret_shares": shares, "secret_threshold": threshold},
            )
            assert response.status_code == 400
            assert fragment in response.json()["errors"][0]
        assert httpx.get(f"{fresh.addr}/v1/sys/init").json() == {"initialized": False}
