"""approle and userpass in process: secret-id use counts and TTL, hashing, same error for every bad login."""

from __future__ import annotations

from tests.unit.server.auth.conftest import Server


async def _approle(server: Server, **role: object) -> tuple[str, str]:
    assert (
        await server.http.post("/v1/sys/auth/approle", json={"type": "approle"})
    ).status_code == 204
    body = {"token_policies": ["ci"], "token_ttl": "20m", **role}
    assert (await server.http.post("/v1/auth/approle/role/ci", json=body)).status_code == 204
    role_id = (await server.http.get("/v1/auth/approle/role/ci/role-id")).json()["data"]["role_id"]
    secret = (await server.http.post("/v1/auth/approle/role/ci/secret-id", json={})).json()["data"]
    return role_id, secret["secret_id"]


async def test_approle_login_and_metadata(server: Server) -> None:
    role_id, secret_id = await _approle(server)
    response = await server.login(
        "auth/approle/login", {"role_id": role_id, "secret_id": secret_id}
    )
    assert response.status_code == 200, response.text
    auth = response.json()["auth"]
    assert auth["policies"] == ["ci", "default"] and auth["metadata"] == {"role_name": "ci"}
    assert auth["lease_duration"] == 1200
    bad = await server.login("auth/approle/login", {"role_id": role_id, "secret_id": "wrong"})
    assert bad.status_code == 400 and bad.json()["errors"] == ["invalid role or secret ID"]
    bad_role = await server.login("auth/approle/login", {"role_id": "nope", "secret_id": secret_id})
    assert bad_role.json()["errors"] == ["invalid role or secret ID"]
    async for _key, value in server.core.storage.scan(""):
        assert secret_id.encode() not in value and role_id.encode() not in value


async def test_approle_secret_id_num_uses_and_ttl(server: Server) -> None:
    role_id, secret_id = await _approle(server, secret_id_num_uses=2, secret_id_ttl="10m")
    body = {"role_id": role_id, "secret_id": secret_id}
    assert (await server.login("auth/approle/login", body)).status_code == 200
    assert (await server.login("auth/approle/login", body)).status_code == 200
    third = await server.login("auth/approle/login", body)
    assert third.status_code == 400 and third.json()["errors"] == ["invalid role or secret ID"]
    fresh = (await server.http.post("/v1/auth/approle/role/ci/secret-id", json={})).json()["data"]
    assert fresh["secret_id_ttl"] == 600 and fresh["secret_id_num_uses"] == 2
    server.clock.now += 601
    late = await server.login(
        "auth/approle/login", {"role_id": role_id, "secret_id": fresh["secret_id"]}
    )
    assert late.status_code == 400 and late.json()["errors"] == ["invalid role or secret ID"]


async def test_approle_secret_id_accessors_lookup_destroy(server: Server) -> None:
    role_id, secret_id = await _approle(server)
    accessors = (await server.http.request("LIST", "/v1/auth/approle/role/ci/secret-id")).json()[
        "data"
    ]["keys"]
    assert len(accessors) == 1
    looked = await server.http.post(
        "/v1/auth/approle/role/ci/secret-id/lookup", json={"secret_id": secret_id}
    )
    assert looked.json()["data"]["secret_id_accessor"] == accessors[0]
    destroy = await server.http.post(
        "/v1/auth/approle/role/ci/secret-id-accessor/destroy",
        json={"secret_id_accessor": accessors[0]},
    )
    assert destroy.status_code == 204
    gone = await server.login("auth/approle/login", {"role_id": role_id, "secret_id": secret_id})
    assert gone.status_code == 400
    custom = await server.http.post(
        "/v1/auth/approle/role/ci/role-id", json={"role_id": "my-ci-role"}
    )
    assert custom.status_code == 204
    again = (
        await server.http.post(
            "/v1/auth/approle/role/ci/secret-id", json={"metadata": '{"pipeline": "42"}'}
        )
    ).json()
    login = await server.login(
        "auth/approle/login", {"role_id": "my-ci-role", "secret_id": again["data"]["secret_id"]}
    )
    assert login.json()["auth"]["metadata"] == {"role_name": "ci", "pipeline": "42"}


async def test_userpass_login_and_no_user_enumeration(server: Server) -> None:
    assert (
        await server.http.post("/v1/sys/auth/userpass", json={"type": "userpass"})
    ).status_code == 204
    created = await server.http.post(
        "/v1/auth/userpass/users/Alice", json={"password": "correct horse", "policies": "ops,audit"}
    )
    assert created.status_code == 204, created.text
    good = await server.login("auth/userpass/login/alice", {"password": "correct horse"})
    assert good.status_code == 200, good.text
    auth = good.json()["auth"]
    assert auth["policies"] == ["audit", "default", "ops"] and auth["metadata"] == {
        "username": "alice"
    }
    wrong = await server.login("auth/userpass/login/alice", {"password": "wrong"})
    unknown = await server.login("auth/userpass/login/mallory", {"password": "wrong"})
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json() == {"errors": ["invalid username or password"]}
    user = (await server.http.get("/v1/auth/userpass/users/alice")).json()["data"]
    assert (
        "password" not in user
        and "password_hash" not in user
        and user["token_policies"] == ["ops", "audit"]
    )
    async for _key, value in server.core.storage.scan(""):
        assert b"correct horse" not in value and b"argon2id" not in value
    changed = await server.http.post(
        "/v1/auth/userpass/users/alice/password", json={"password": "new one"}
    )
    assert changed.status_code == 204
    assert (
        await server.login("auth/userpass/login/alice", {"password": "correct horse"})
    ).status_code == 400
    assert (
        await server.login("auth/userpass/login/alice", {"password": "new one"})
    ).status_code == 200
    listed = await server.http.request("LIST", "/v1/auth/userpass/users")
    assert listed.json()["data"]["keys"] == ["alice"]
    missing = await server.http.post("/v1/auth/userpass/users/bob", json={"policies": "x"})
    assert missing.status_code == 400 and missing.json()["errors"] == ["missing password"]
