"""The jwt and aws auth methods against a real ``kustos server``, with hvac and the kustos CLI.

jwt: tokens are signed in the test by keys a loopback issuer serves as a
JWKS (:mod:`tests.support.oidc`); hvac's ``auth.jwt`` logs in, each kind of
bad token is refused with its own message, and a key rotation on the JWKS is
picked up. aws: moto's server on loopback plays STS (with IAM signature
checking switched on, so a request signed with the wrong secret is refused
by the peer, not by us); hvac's ``auth.aws.iam_login`` and ``kustos login
-method=aws`` (boto3's credential chain) log in; a principal outside
``bound_iam_principal_arn`` is refused. No test dials AWS: the server's
``sts_endpoint`` is moto's URL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import hvac
import hvac.exceptions
import pytest

from tests.integration.cli._support import Cli, cli_env
from tests.support.moto import start_moto
from tests.support.oidc import GITHUB_AUDIENCE, Issuer, SigningKey, running_issuer
from tests.support.server import RunningServer

ACCOUNT = "123456789012"
SERVER_ID = "kustos.integration.test"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with running_issuer() as running:
        yield running


@pytest.fixture(scope="module")
def root(kustos_server: RunningServer) -> hvac.Client:
    client = hvac.Client(url=kustos_server.addr, token=kustos_server.root_token)
    client.sys.create_or_update_policy(
        "deploy", 'path "secret/data/deploy/*" { capabilities = ["read"] }'
    )
    client.secrets.kv.v2.create_or_update_secret(
        path="deploy/db", secret={"password": "from-ci"}, mount_point="secret"
    )
    return client


def _anonymous(server: RunningServer) -> hvac.Client:
    return hvac.Client(url=server.addr)


def _jwt_mount(root: hvac.Client, issuer: Issuer, path: str) -> None:
    root.sys.enable_auth_method("jwt", path=path)
    root.auth.jwt.configure(jwks_url=issuer.jwks_url, bound_issuer=issuer.url, path=path)
    root.auth.jwt.create_role(
        name="deploy",
        role_type="jwt",
        user_claim="repository",
        allowed_redirect_uris=[],
        bound_audiences=[GITHUB_AUDIENCE],
        bound_claims={"repository": "octo-org/octo-repo", "ref": "refs/heads/main"},
        claim_mappings={"environment": "environment", "ref": "ref"},
        token_policies=["deploy"],
        token_ttl="15m",
        path=path,
    )


# -- jwt ------------------------------------------------------------------------------------


def test_hvac_jwt_login_reads_what_the_role_allows(
    kustos_server: RunningServer, root: hvac.Client, issuer: Issuer
) -> None:
    _jwt_mount(root, issuer, "jwt")
    client = _anonymous(kustos_server)
    answer = client.auth.jwt.jwt_login(role="deploy", jwt=issuer.token())
    auth = answer["auth"]
    assert "deploy" in auth["policies"]
    assert auth["metadata"] == {
        "role": "deploy",
        "environment": "production",
        "ref": "refs/heads/main",
    }
    assert client.token == auth["client_token"]
    read = client.secrets.kv.v2.read_secret_version(
        path="deploy/db", mount_point="secret", raise_on_deleted_version=True
    )
    assert read["data"]["data"] == {"password": "from-ci"}
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.kv.v2.create_or_update_secret(
            path="deploy/db", secret={"password": "x"}, mount_point="secret"
        )


def _unsigned(claims: dict[str, Any]) -> str:
    import base64

    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return part({"alg": "none", "typ": "JWT"}) + "." + part(claims) + "."


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda i: i.token(aud="https://github.com/another-org"),
            "aud claim does not match any bound audience",
        ),
        (lambda i: i.token(iss="https://token.example.invalid"), "invalid issuer (iss) claim"),
        (lambda i: i.token(now=time.time() - 3600), "the JWT is expired (exp)"),
        (
            lambda i: _unsigned({"iss": i.url, "aud": GITHUB_AUDIENCE, "exp": time.time() + 60}),
            "signing algorithm 'none' is not allowed",
        ),
        (lambda i: i.token(ref="refs/heads/feature"), "claim 'ref' does not match"),
        (lambda i: i.token(repository="evil/fork"), "claim 'repository' does not match"),
        (lambda i: i.token(key=SigningKey()), "invalid JWT signature"),
    ],
    ids=["audience", "issuer", "expired", "alg-none", "bound-claim", "bound-claim-2", "other-key"],
)
def test_hvac_jwt_refusals_are_clear(
    kustos_server: RunningServer, root: hvac.Client, issuer: Issuer, make: Any, message: str
) -> None:
    if "jwt/" not in root.sys.list_auth_methods()["data"]:
        _jwt_mount(root, issuer, "jwt")
    client = _anonymous(kustos_server)
    with pytest.raises(hvac.exceptions.Forbidden) as refused:
        client.auth.jwt.jwt_login(role="deploy", jwt=make(issuer), use_token=False)
    assert message in str(refused.value)


def test_hvac_jwt_key_rotation_is_picked_up(
    kustos_server: RunningServer, root: hvac.Client
) -> None:
    with running_issuer() as rotating:
        _jwt_mount(root, rotating, "jwt-rotation")
        client = _anonymous(kustos_server)
        client.auth.jwt.jwt_login(role="deploy", jwt=rotating.token(), path="jwt-rotation")
        old = rotating.key
        new = rotating.rotate()
        answer = client.auth.jwt.jwt_login(
            role="deploy", jwt=rotating.token(key=new), path="jwt-rotation"
        )
        assert "deploy" in answer["auth"]["policies"]
        with pytest.raises(hvac.exceptions.Forbidden, match="invalid JWT signature"):
            client.auth.jwt.jwt_login(
                role="deploy", jwt=rotating.token(key=old), path="jwt-rotation"
            )


def test_cli_jwt_login_from_a_token_file(
    kustos_server: RunningServer, root: hvac.Client, issuer: Issuer, tmp_path: Path
) -> None:
    if "jwt/" not in root.sys.list_auth_methods()["data"]:
        _jwt_mount(root, issuer, "jwt")
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(env={**cli_env(kustos_server, home), "KUSTOS_TOKEN": ""})
    token_file = tmp_path / "id-token"
    token = issuer.token()
    token_file.write_text(token)
    result = cli.ok("login", "-method=jwt", "role=deploy", f"jwt=@{token_file}", "-format=json")
    assert token not in result.stdout + result.stderr
    info = json.loads(result.stdout)
    assert info["metadata"]["role"] == "deploy"
    saved = (home / ".kustos" / "token").read_text().strip()
    assert saved not in result.stdout + result.stderr
    looked_up = hvac.Client(url=kustos_server.addr, token=saved).lookup_token()
    assert looked_up["data"]["path"] == "auth/jwt/login"
    refused = cli.fails(
        "login", "-method=jwt", "role=deploy", f"jwt={issuer.token(key=SigningKey())}"
    )
    assert "invalid JWT signature" in refused.stderr


# -- aws --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(root: hvac.Client) -> Iterator[dict[str, Any]]:
    """moto as STS with two IAM users and an IAM role; the aws method at auth/aws."""
    with start_moto() as url, pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "setup")
        env.setenv("AWS_SECRET_ACCESS_KEY", "setup")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        iam = boto3.client("iam", endpoint_url=url)
        keys: dict[str, Any] = {}
        allow = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["sts:GetCallerIdentity", "sts:AssumeRole"],
                    "Resource": "*",
                }
            ],
        }
        for user in ("ci-deployer", "intruder"):
            iam.create_user(UserName=user)
            iam.put_user_policy(
                UserName=user, PolicyName="whoami", PolicyDocument=json.dumps(allow)
            )
            keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(
            RoleName="deployer", PolicyName="whoami", PolicyDocument=json.dumps(allow)
        )
        root.sys.enable_auth_method("aws")
        root.auth.aws.configure(sts_endpoint=url, iam_server_id_header_value=SERVER_ID)
        root.auth.aws.create_role(
            "deploy",
            auth_type="iam",
            bound_iam_principal_arn=[f"arn:aws:iam::{ACCOUNT}:user/ci-*"],
            policies=["deploy"],
        )
        root.auth.aws.create_role(
            "deployer",
            auth_type="iam",
            bound_iam_principal_arn=[f"arn:aws:iam::{ACCOUNT}:role/deployer"],
            policies=["deploy"],
        )
        sts = boto3.client(
            "sts",
            endpoint_url=url,
            aws_access_key_id=keys["ci-deployer"]["AccessKeyId"],
            aws_secret_access_key=keys["ci-deployer"]["SecretAccessKey"],
        )
        keys["deployer-session"] = sts.assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/deployer", RoleSessionName="pipeline-42"
        )["Credentials"]
        # From here on moto checks every request's SigV4 signature and IAM permissions.
        httpx.post(f"{url}/moto-api/reset-auth", content=b"0").raise_for_status()
        yield {"url": url, "keys": keys}


def test_hvac_iam_login_against_moto_sts(kustos_server: RunningServer, aws: dict[str, Any]) -> None:
    key = aws["keys"]["ci-deployer"]
    client = _anonymous(kustos_server)
    answer = client.auth.aws.iam_login(
        key["AccessKeyId"], key["SecretAccessKey"], header_value=SERVER_ID, role="deploy"
    )
    metadata = answer["auth"]["metadata"]
    assert metadata["canonical_arn"] == f"arn:aws:iam::{ACCOUNT}:user/ci-deployer"
    assert metadata["account_id"] == ACCOUNT and metadata["auth_type"] == "iam"
    assert "deploy" in answer["auth"]["policies"]
    read = client.secrets.kv.v2.read_secret_version(
        path="deploy/db", mount_point="secret", raise_on_deleted_version=True
    )
    assert read["data"]["data"]["password"] == "from-ci"


def test_iam_login_with_an_assumed_role(kustos_server: RunningServer, aws: dict[str, Any]) -> None:
    session = aws["keys"]["deployer-session"]
    answer = _anonymous(kustos_server).auth.aws.iam_login(
        session["AccessKeyId"],
        session["SecretAccessKey"],
        session_token=session["SessionToken"],
        header_value=SERVER_ID,
    )  # no role: the role named like the principal ("deployer")
    metadata = answer["auth"]["metadata"]
    assert metadata["role"] == "deployer"
    assert metadata["canonical_arn"] == f"arn:aws:iam::{ACCOUNT}:role/deployer"
    assert metadata["client_arn"].startswith(
        f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/pipeline-42"
    )


@pytest.mark.parametrize(
    ("user", "secret", "header", "message"),
    [
        ("intruder", None, SERVER_ID, "does not belong to the role"),
        ("ci-deployer", "not-the-secret", SERVER_ID, "SignatureDoesNotMatch"),
        ("ci-deployer", None, None, "missing header 'X-Vault-AWS-IAM-Server-ID'"),
        ("ci-deployer", None, "another.server", "this server expects"),
    ],
    ids=["outside-bound-arn", "wrong-secret", "no-server-id", "other-server-id"],
)
def test_iam_login_refusals(
    kustos_server: RunningServer,
    aws: dict[str, Any],
    user: str,
    secret: str | None,
    header: str | None,
    message: str,
) -> None:
    key = aws["keys"][user]
    with pytest.raises(hvac.exceptions.Forbidden) as refused:
        _anonymous(kustos_server).auth.aws.iam_login(
            key["AccessKeyId"],
            secret or key["SecretAccessKey"],
            header_value=header,
            role="deploy",
            use_token=False,
        )
    assert message in str(refused.value)


def test_cli_login_method_aws(
    kustos_server: RunningServer, aws: dict[str, Any], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key = aws["keys"]["ci-deployer"]
    env: dict[str, Any] = {
        **cli_env(kustos_server, home),
        "KUSTOS_TOKEN": "",
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    cli = Cli(env=env)
    result = cli.ok(
        "login", "-method=aws", "role=deploy", f"header_value={SERVER_ID}", "-o", "json"
    )
    assert key["SecretAccessKey"] not in result.stdout + result.stderr
    info = json.loads(result.stdout)
    assert info["metadata"]["canonical_arn"] == f"arn:aws:iam::{ACCOUNT}:user/ci-deployer"
    saved = (home / ".kustos" / "token").read_text().strip()
    me = hvac.Client(url=kustos_server.addr, token=saved).lookup_token()["data"]
    assert me["path"] == "auth/aws/login" and "deploy" in me["policies"]
    outsider = aws["keys"]["intruder"]
    refused = cli.fails(
        "login",
        "-method=aws",
        "role=deploy",
        f"header_value={SERVER_ID}",
        env={
            "AWS_ACCESS_KEY_ID": outsider["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": outsider["SecretAccessKey"],
        },
    )
    assert f"arn:aws:iam::{ACCOUNT}:user/intruder" in refused.stderr
    assert "not in bound_iam_principal_arn" in refused.stderr
    bad = cli.fails("login", "-method=aws", "jwt=x", code=2)
    assert "'jwt' is not an argument of -method=aws" in bad.stderr
