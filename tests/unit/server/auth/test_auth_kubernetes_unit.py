"""The kubernetes auth method in process: config, roles, offline JWT login and each rejection."""

from __future__ import annotations

import pytest

from tests.unit.server.auth.conftest import Server
from tests.unit.server.auth.k8s_jwts import AUDIENCE, ISSUER, ClusterKeys


@pytest.fixture(scope="module")
def keys() -> ClusterKeys:
    return ClusterKeys()


async def _setup(server: Server, keys: ClusterKeys, **config: object) -> None:
    assert (
        await server.http.post("/v1/sys/auth/kubernetes", json={"type": "kubernetes"})
    ).status_code == 204
    body = {"jwks": keys.jwks(), "issuer": ISSUER, **config}
    response = await server.http.post("/v1/auth/kubernetes/config", json=body)
    assert response.status_code == 204, response.text
    role = {
        "bound_service_account_names": ["web", "worker-*"],
        "bound_service_account_namespaces": "apps",
        "audience": AUDIENCE,
        "token_policies": ["app-read"],
        "token_ttl": "1h",
    }
    assert (await server.http.post("/v1/auth/kubernetes/role/app", json=role)).status_code == 204


async def test_login_with_jwks_returns_token_with_metadata(
    server: Server, keys: ClusterKeys
) -> None:
    await _setup(server, keys)
    jwt = keys.token(now=server.clock.now)
    response = await server.login("auth/kubernetes/login", {"role": "app", "jwt": jwt})
    assert response.status_code == 200, response.text
    auth = response.json()["auth"]
    assert auth["policies"] == ["app-read", "default"]
    assert auth["metadata"]["service_account_name"] == "web"
    assert auth["metadata"]["service_account_namespace"] == "apps"
    assert auth["metadata"]["role"] == "app"
    assert auth["metadata"]["service_account_pod_name"] == "web-7d4b9c-x2x9q"
    assert auth["lease_duration"] == 3600 and auth["renewable"] is True
    me = await server.http.get(
        "/v1/auth/token/lookup-self", headers={"X-Vault-Token": auth["client_token"]}
    )
    assert me.status_code == 200, me.text
    assert me.json()["data"]["display_name"] == "kubernetes-apps-web"
    assert me.json()["data"]["path"] == "auth/kubernetes/login"
    glob = await server.login(
        "auth/kubernetes/login",
        {"role": "app", "jwt": keys.token(name="worker-3", now=server.clock.now)},
    )
    assert glob.status_code == 200, glob.text


@pytest.mark.parametrize(
    ("mint", "status", "message"),
    [
        (
            lambda k, now: k.token(now=now - 7200, lifetime=600),
            403,
            "service account JWT is expired (exp)",
        ),
        (
            lambda k, now: k.token(now=now, audience="someone-else"),
            403,
            "invalid audience (aud) claim",
        ),
        (
            lambda k, now: k.token(now=now, issuer="https://evil.example"),
            403,
            "invalid issuer (iss) claim",
        ),
        (lambda k, now: ClusterKeys(kid=k.kid).token(now=now), 403, "invalid JWT signature"),
        (
            lambda k, now: k.token(now=now, name="db-admin"),
            403,
            "service account name not authorized",
        ),
        (lambda k, now: k.token(now=now, namespace="kube-system"), 403, "namespace not authorized"),
        (lambda k, now: k.token(now=now + 3600), 403, "not valid yet (nbf)"),
        (lambda k, now: "not-a-jwt", 403, "invalid JWT"),
    ],
    ids=[
        "expired",
        "audience",
        "issuer",
        "signature",
        "unbound-sa",
        "unbound-namespace",
        "nbf",
        "garbage",
    ],
)
async def test_login_rejections_are_clear(
    server: Server, keys: ClusterKeys, mint: object, status: int, message: str
) -> None:
    await _setup(server, keys)
    jwt = mint(keys, server.clock.now)  # type: ignore[operator]
    response = await server.login("auth/kubernetes/login", {"role": "app", "jwt": jwt})
    assert response.status_code == status, response.text
    assert message in response.json()["errors"][0]


async def test_unknown_role_and_missing_fields(server: Server, keys: ClusterKeys) -> None:
    await _setup(server, keys)
    jwt = keys.token(now=server.clock.now)
    unknown = await server.login("auth/kubernetes/login", {"role": "nope", "jwt": jwt})
    assert unknown.status_code == 400 and unknown.json()["errors"] == ['invalid role name "nope"']
    assert (await server.login("auth/kubernetes/login", {"role": "app"})).json()["errors"] == [
        "missing jwt"
    ]


async def test_pem_keys_es256_and_legacy_claims(server: Server) -> None:
    ec_keys = ClusterKeys(kind="EC")
    assert (
        await server.http.post("/v1/sys/auth/k8s-legacy", json={"type": "kubernetes"})
    ).status_code == 204
    config = {"kubernetes_host": "https://10.0.0.1:6443", "pem_keys": [ec_keys.public_pem()]}
    assert (await server.http.post("/v1/auth/k8s-legacy/config", json=config)).status_code == 204
    role = {
        "bound_service_account_names": "*",
        "bound_service_account_namespaces": ["apps"],
        "policies": "a,b",
    }
    assert (await server.http.post("/v1/auth/k8s-legacy/role/any", json=role)).status_code == 204
    response = await server.login(
        "auth/k8s-legacy/login", {"role": "any", "jwt": ec_keys.legacy_token()}
    )
    assert response.status_code == 200, response.text
    meta = response.json()["auth"]["metadata"]
    assert meta["service_account_secret_name"] == "web-token-abcde"
    assert meta["service_account_uid"] == "5b1d3a46-0000-4000-8000-000000000001"
    projected = await server.login(
        "auth/k8s-legacy/login", {"role": "any", "jwt": ec_keys.token(now=server.clock.now)}
    )
    assert projected.status_code == 200, (
        projected.text
    )  # no audience bound on the role: any audience


async def test_config_read_hides_reviewer_jwt_and_stores_it_encrypted(
    server: Server, keys: ClusterKeys
) -> None:
    await _setup(
        server,
        keys,
        token_reviewer_jwt="reviewer-secret-jwt-value",
        kubernetes_host="https://k8s:6443",
    )
    config = (await server.http.get("/v1/auth/kubernetes/config")).json()["data"]
    assert "token_reviewer_jwt" not in config and config["token_reviewer_jwt_set"] is True
    async for _key, value in server.core.storage.scan(""):
        assert b"reviewer-secret-jwt-value" not in value
        assert b"app-read" not in value  # role records are encrypted too


async def test_roles_list_read_delete_and_bad_input(server: Server, keys: ClusterKeys) -> None:
    await _setup(server, keys)
    listed = await server.http.request("LIST", "/v1/auth/kubernetes/role")
    assert listed.json()["data"]["keys"] == ["app"]
    role = (await server.http.get("/v1/auth/kubernetes/role/app")).json()["data"]
    assert role["bound_service_account_names"] == ["web", "worker-*"]
    assert role["token_policies"] == ["app-read"] and role["token_ttl"] == 3600
    bad = await server.http.post(
        "/v1/auth/kubernetes/role/x", json={"bound_service_account_names": ["a"]}
    )
    assert bad.status_code == 400 and "bound_service_account_namespaces" in bad.json()["errors"][0]
    bad_keys = await server.http.post(
        "/v1/auth/kubernetes/config", json={"pem_keys": ["not a key"]}
    )
    assert bad_keys.status_code == 400 and "pem_keys[0]" in bad_keys.json()["errors"][0]
    assert (await server.http.delete("/v1/auth/kubernetes/role/app")).status_code == 204
    assert (await server.http.get("/v1/auth/kubernetes/role/app")).status_code == 404


async def test_sys_auth_enable_list_disable_revokes_issued_tokens(
    server: Server, keys: ClusterKeys
) -> None:
    await _setup(server, keys)
    listing = (await server.http.get("/v1/sys/auth")).json()
    assert listing["data"]["kubernetes/"]["type"] == "kubernetes"
    assert listing["data"]["token/"]["type"] == "token"
    dup = await server.http.post("/v1/sys/auth/kubernetes", json={"type": "kubernetes"})
    assert dup.status_code == 400 and "already in use" in dup.json()["errors"][0]
    unknown = await server.http.post("/v1/sys/auth/ldap", json={"type": "ldap"})
    assert unknown.status_code == 400 and "unknown auth method type" in unknown.json()["errors"][0]
    login = await server.login(
        "auth/kubernetes/login", {"role": "app", "jwt": keys.token(now=server.clock.now)}
    )
    client_token = login.json()["auth"]["client_token"]
    assert (await server.http.delete("/v1/sys/auth/kubernetes")).status_code == 204
    me = await server.http.get(
        "/v1/auth/token/lookup-self", headers={"X-Vault-Token": client_token}
    )
    assert me.status_code == 403
    gone = await server.login(
        "auth/kubernetes/login", {"role": "app", "jwt": keys.token(now=server.clock.now)}
    )
    assert gone.status_code == 404
    assert [k async for k, _ in server.core.storage.scan("auth-methods/")] == []


async def test_management_needs_a_token_but_login_does_not(
    server: Server, keys: ClusterKeys
) -> None:
    await _setup(server, keys)
    anon = await server.http.post(
        "/v1/auth/kubernetes/role/x",
        json={"bound_service_account_names": "a"},
        headers={"X-Vault-Token": ""},
    )
    assert anon.status_code == 403
    enable = await server.http.post(
        "/v1/sys/auth/up", json={"type": "userpass"}, headers={"X-Vault-Token": ""}
    )
    assert enable.status_code == 403
