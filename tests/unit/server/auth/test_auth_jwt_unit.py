"""The jwt auth method in process (clock moved by the test): config, roles, login and each refusal.

The issuer is a real HTTP server on loopback (:mod:`tests.support.oidc`): the
method fetches its key set and discovery document over HTTP as it would
GitHub's or GitLab's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.oidc import GITHUB_AUDIENCE, Issuer, SigningKey, running_issuer
from tests.unit.server.auth.conftest import Server


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with running_issuer() as running:
        yield running


ROLE: dict[str, Any] = {
    "role_type": "jwt",
    "user_claim": "repository",
    "bound_audiences": [GITHUB_AUDIENCE],
    "bound_claims": {"repository": "octo-org/octo-repo", "environment": ["production", "staging"]},
    "claim_mappings": {"ref": "ref", "environment": "environment", "actor": "actor"},
    "token_policies": ["deploy"],
    "token_ttl": "10m",
}


async def _enable(server: Server, config: dict[str, Any], role: dict[str, Any] = ROLE) -> None:
    enabled = await server.http.post("/v1/sys/auth/jwt", json={"type": "jwt"})
    assert enabled.status_code == 204, enabled.text
    configured = await server.http.post("/v1/auth/jwt/config", json=config)
    assert configured.status_code == 204, configured.text
    created = await server.http.post("/v1/auth/jwt/role/deploy", json=role)
    assert created.status_code == 204, created.text


async def _login(server: Server, token: str, role: str = "deploy") -> tuple[int, Any]:
    response = await server.login("auth/jwt/login", {"role": role, "jwt": token})
    return response.status_code, response.json() if response.content else None


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _error(answer: Any) -> str:
    return " ".join(answer["errors"])


async def test_login_with_a_jwks_url(server: Server, issuer: Issuer) -> None:
    await _enable(server, {"jwks_url": issuer.jwks_url, "bound_issuer": issuer.url})
    status, answer = await _login(server, issuer.token(now=server.clock.now))
    assert status == 200, answer
    auth = answer["auth"]
    assert sorted(auth["policies"]) == ["default", "deploy"]
    assert auth["metadata"] == {
        "role": "deploy",
        "ref": "refs/heads/main",
        "environment": "production",
        "actor": "octocat",
    }
    assert auth["lease_duration"] == 600
    me = await server.http.get(
        "/v1/auth/token/lookup-self", headers={"X-Vault-Token": auth["client_token"]}
    )
    assert me.json()["data"]["display_name"] == "jwt-octo-org-octo-repo"
    assert me.json()["data"]["path"] == "auth/jwt/login"
    assert issuer.jwks_hits == 2  # once when the config was written, once for the first login
    again, _ = await _login(server, issuer.token(now=server.clock.now, environment="staging"))
    assert again == 200
    assert issuer.jwks_hits == 2  # cached


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"aud": "https://github.com/someone-else"}, "aud claim does not match any bound audience"),
        ({"iss": "https://evil.example"}, "invalid issuer (iss) claim"),
        ({"repository": "octo-org/other"}, "claim 'repository' does not match"),
        ({"environment": "dev"}, "claim 'environment' does not match"),
        ({"environment": None}, "claim 'environment' is missing"),
        ({"exp": None}, "has no expiry (exp) claim"),
    ],
)
async def test_claim_refusals(
    server: Server, issuer: Issuer, claims: dict[str, Any], message: str
) -> None:
    await _enable(server, {"jwks_url": issuer.jwks_url, "bound_issuer": issuer.url})
    status, answer = await _login(server, issuer.token(now=server.clock.now, **claims))
    assert status == 403, answer
    assert message in _error(answer)


async def test_time_refusals_with_leeway(server: Server, issuer: Issuer) -> None:
    await _enable(server, {"jwks_url": issuer.jwks_url})
    now = server.clock.now
    token = issuer.token(now=now)  # valid for 300 s; default leeway 60 s skew + 150 s expiration
    server.clock.now = now + 300 + 200
    assert (await _login(server, token))[0] == 200
    server.clock.now = now + 300 + 211
    status, answer = await _login(server, token)
    assert status == 403 and "the JWT is expired (exp)" in _error(answer)
    server.clock.now = now
    future = issuer.token(now=now + 3600)
    status, answer = await _login(server, future)
    assert status == 403 and "not valid yet (nbf)" in _error(answer)
    tight = {**ROLE, "clock_skew_leeway": -1, "expiration_leeway": -1, "not_before_leeway": -1}
    assert (await server.http.post("/v1/auth/jwt/role/tight", json=tight)).status_code == 204
    server.clock.now = now + 301
    status, answer = await _login(server, token, role="tight")
    assert status == 403 and "expired" in _error(answer)


async def test_algorithm_and_key_refusals(server: Server, issuer: Issuer) -> None:
    await _enable(server, {"jwks_url": issuer.jwks_url, "jwt_supported_algs": ["RS256"]})
    now = server.clock.now
    body_b64 = _b64(json.dumps({"iss": issuer.url, "aud": GITHUB_AUDIENCE, "exp": now + 60}))
    unsigned = _b64(json.dumps({"alg": "none", "typ": "JWT"})) + "." + body_b64 + "."
    status, answer = await _login(server, unsigned)
    assert status == 403 and "signing algorithm 'none' is not allowed" in _error(answer)
    stranger = SigningKey()
    status, answer = await _login(server, issuer.token(key=stranger, now=now))
    assert status == 403 and "no configured key has the token's key id" in _error(answer)
    no_kid = issuer.token(key=SigningKey(kid=""), now=now)
    status, answer = await _login(server, no_kid)
    assert status == 403 and "invalid JWT signature" in _error(answer)
    # the classic confusion attack: HMAC-SHA256 keyed with the issuer's public key
    signing_input = _b64(json.dumps({"alg": "HS256", "kid": issuer.key.kid})) + "." + body_b64
    mac = hmac.new(issuer.key.public_pem().encode(), signing_input.encode(), hashlib.sha256)
    status, answer = await _login(server, signing_input + "." + _b64(mac.digest()))
    assert status == 403 and "'HS256' is not allowed" in _error(answer)
    ec = issuer.rotate(kind="EC", keep_old=True)
    status, answer = await _login(server, issuer.token(key=ec, now=now))
    assert status == 403 and "'ES256' is not allowed (allowed: RS256)" in _error(answer)


async def test_key_rotation_is_picked_up_and_refetching_is_bounded(
    server: Server, issuer: Issuer
) -> None:
    await _enable(server, {"jwks_url": issuer.jwks_url})
    now = server.clock.now
    assert (await _login(server, issuer.token(now=now)))[0] == 200
    hits = issuer.jwks_hits
    old = issuer.key
    new = issuer.rotate()
    status, answer = await _login(server, issuer.token(key=new, now=now))
    assert status == 200, answer  # unknown kid: the set was fetched again
    assert issuer.jwks_hits == hits + 1
    status, answer = await _login(server, issuer.token(key=SigningKey(), now=now))
    assert status == 403 and "fetched again less than 10s ago" in _error(answer)
    assert issuer.jwks_hits == hits + 1  # a made-up kid right after a refresh fetches nothing
    status, answer = await _login(server, issuer.token(key=old, now=now))
    assert status == 403, answer  # the withdrawn key is no longer trusted
    server.clock.now = now + 11
    status, answer = await _login(server, issuer.token(key=SigningKey(), now=server.clock.now))
    assert status == 403 and "no configured key has the token's key id" in _error(answer)
    assert issuer.jwks_hits == hits + 2  # a miss may fetch again after 10 s
    server.clock.now = now + 400
    assert (await _login(server, issuer.token(key=new, now=server.clock.now)))[0] == 200
    assert issuer.jwks_hits == hits + 3  # the cached set expired after 300 s


async def test_oidc_discovery(server: Server, issuer: Issuer) -> None:
    await _enable(server, {"oidc_discovery_url": issuer.url})
    assert issuer.discovery_hits == 1
    status, answer = await _login(server, issuer.token(now=server.clock.now))
    assert status == 200, answer
    status, answer = await _login(server, issuer.token(now=server.clock.now, iss="https://x"))
    assert status == 403 and "invalid issuer (iss) claim" in _error(answer)
    issuer.discovery_issuer = "https://somewhere-else.example"
    refused = await server.http.post("/v1/auth/jwt/config", json={"oidc_discovery_url": issuer.url})
    assert refused.status_code == 400
    assert "names issuer 'https://somewhere-else.example'" in _error(refused.json())


async def test_validation_pubkeys_and_glob_claims(server: Server, issuer: Issuer) -> None:
    role = {
        "user_claim": "sub",
        "bound_subject": "",
        "bound_claims_type": "glob",
        "bound_claims": {
            "ref": ["refs/heads/release-*", "refs/tags/v*"],
            "/repository_owner": "octo-*",
        },
        "token_policies": "release",
    }
    await _enable(server, {"jwt_validation_pubkeys": [issuer.key.public_pem()]}, role)
    now = server.clock.now
    ok = issuer.token(now=now, ref="refs/heads/release-1.2", aud=None)
    status, answer = await _login(server, ok)
    assert status == 200, answer
    assert "release" in answer["auth"]["policies"]
    status, answer = await _login(server, issuer.token(now=now, ref="refs/heads/main", aud=None))
    assert status == 403 and "claim 'ref' does not match" in _error(answer)
    status, answer = await _login(server, issuer.token(now=now, ref="refs/tags/v2"))
    assert status == 403
    assert "audience claim found in JWT but no audiences bound to the role" in _error(answer)


async def test_bound_subject_and_user_claim(server: Server, issuer: Issuer) -> None:
    role = {
        "user_claim": "/actor",
        "user_claim_json_pointer": True,
        "bound_subject": "repo:octo-org/octo-repo:environment:production",
    }
    await _enable(server, {"jwks_url": issuer.jwks_url}, role)
    now = server.clock.now
    status, answer = await _login(server, issuer.token(now=now, aud=None))
    assert status == 200, answer
    status, answer = await _login(server, issuer.token(now=now, aud=None, sub="repo:x:ref:y"))
    assert status == 403 and "sub claim does not match bound subject" in _error(answer)
    status, answer = await _login(server, issuer.token(now=now, aud=None, actor=None))
    assert status == 403 and "(user_claim) is missing" in _error(answer)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "exactly one of"),
        ({"jwks_url": "http://127.0.0.1:1/keys", "oidc_discovery_url": "http://x"}, "exactly one"),
        ({"jwks_url": "ftp://x/keys"}, "jwks_url must be an https:// URL"),
        ({"jwks_url": "http://127.0.0.1:1/keys"}, "could not fetch the JSON Web Key Set"),
        ({"jwt_validation_pubkeys": ["not a key"]}, "pem_keys[0]"),
        ({"jwt_validation_pubkeys": "x", "oidc_client_secret": "s"}, "oidc_client_secret is for"),
        ({"jwt_validation_pubkeys": 7}, "must be a list of PEM strings"),
        ({"jwks_url": "http://127.0.0.1:1/k", "jwks_ca_pem": "nope"}, "jwks_ca_pem is not a valid"),
    ],
)
async def test_config_validation(server: Server, config: dict[str, Any], message: str) -> None:
    await server.http.post("/v1/sys/auth/jwt", json={"type": "jwt"})
    response = await server.http.post("/v1/auth/jwt/config", json=config)
    assert response.status_code == 400, response.text
    assert message in _error(response.json())


async def test_config_refuses_hmac_and_none_algorithms(server: Server, issuer: Issuer) -> None:
    await server.http.post("/v1/sys/auth/jwt", json={"type": "jwt"})
    for algorithm in ("HS256", "none"):
        response = await server.http.post(
            "/v1/auth/jwt/config",
            json={"jwks_url": issuer.jwks_url, "jwt_supported_algs": [algorithm]},
        )
        assert response.status_code == 400
        assert "no 'none', no HMAC" in _error(response.json())


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ({"user_claim": "sub"}, "must have at least one bound constraint"),
        ({"bound_subject": "x"}, "user_claim is required"),
        ({**ROLE, "role_type": "oidc"}, "role_type 'oidc' is not supported"),
        ({**ROLE, "bound_claims": ["a"]}, "bound_claims must be a JSON object"),
        ({**ROLE, "bound_claims": {"a": {"b": 1}}}, "bound_claims['a'] must be"),
        ({**ROLE, "bound_claims_type": "regex"}, 'bound_claims_type must be "string" or "glob"'),
        ({**ROLE, "claim_mappings": {"ref": "role"}}, "metadata key 'role' is reserved"),
        ({**ROLE, "claim_mappings": {"a": "x", "b": "x"}}, "used more than once"),
        ({**ROLE, "clock_skew_leeway": 99999}, "clock_skew_leeway must be between -1 and 3600"),
        ({**ROLE, "expiration_leeway": True}, "expiration_leeway must be a number"),
        ({**ROLE, "groups_claim": "groups"}, "groups_claim is not supported"),
        ({**ROLE, "bound_audiences": {"a": 1}}, "bound_audiences must be a list of strings"),
    ],
)
async def test_role_validation(
    server: Server, issuer: Issuer, role: dict[str, Any], message: str
) -> None:
    await server.http.post("/v1/sys/auth/jwt", json={"type": "jwt"})
    response = await server.http.post("/v1/auth/jwt/role/r", json=role)
    assert response.status_code == 400, response.text
    assert message in _error(response.json())


async def test_roles_read_list_delete_and_login_input(server: Server, issuer: Issuer) -> None:
    await _enable(server, {"jwks_url": issuer.jwks_url, "default_role": "deploy"})
    read = (await server.http.get("/v1/auth/jwt/role/deploy")).json()["data"]
    assert read["role_type"] == "jwt" and read["user_claim"] == "repository"
    assert read["bound_claims"] == {
        "repository": ["octo-org/octo-repo"],
        "environment": ["production", "staging"],
    }
    assert read["token_policies"] == ["deploy"] and read["token_ttl"] == 600
    config = (await server.http.get("/v1/auth/jwt/config")).json()["data"]
    assert config["jwks_url"] == issuer.jwks_url and config["default_role"] == "deploy"
    listed = await server.http.request("LIST", "/v1/auth/jwt/role")
    assert listed.json()["data"]["keys"] == ["deploy"]
    default = await server.login("auth/jwt/login", {"jwt": issuer.token(now=server.clock.now)})
    assert default.status_code == 200, default.text  # default_role
    for body, message in (
        ({"role": "deploy"}, "missing jwt"),
        ({"role": "deploy", "jwt": 5}, "jwt must be a string"),
        ({"role": "nope", "jwt": "a.b.c"}, 'role "nope" could not be found'),
        ({"role": "deploy", "jwt": "x" * 20000}, "jwt is too long"),
        ({"role": "deploy", "jwt": "not-a-jwt"}, "not a well-formed signed JSON Web Token"),
    ):
        response = await server.login("auth/jwt/login", body)
        assert response.status_code in (400, 403), response.text
        assert message in _error(response.json())
    assert (await server.http.delete("/v1/auth/jwt/role/deploy")).status_code == 204
    assert (await server.http.get("/v1/auth/jwt/role/deploy")).status_code == 404
