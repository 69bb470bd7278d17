"""The aws auth method in process: config and role validation, the signed-request checks made
before anything is sent to STS, and how STS's ARNs are read. (Logins against moto's STS are in
``tests/integration/auth/test_auth_jwt_aws_integration.py``.)"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kustos.errors import PermissionDeniedError
from kustos.server.auth.aws import CallerIdentity
from tests.unit.server.auth.conftest import Server

URL = base64.b64encode(b"https://sts.amazonaws.com/").decode()
BODY = base64.b64encode(b"Action=GetCallerIdentity&Version=2011-06-15").decode()


def _headers(**extra: str) -> str:
    headers = {
        "Content-Type": ["application/x-www-form-urlencoded; charset=utf-8"],
        "X-Amz-Date": ["20260101T000000Z"],
        "Authorization": [
            "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/sts/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, Signature=00"
        ],
        **{k: [v] for k, v in extra.items()},
    }
    return base64.b64encode(json.dumps(headers).encode()).decode()


def _login(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "role": "deploy",
        "iam_http_request_method": "POST",
        "iam_request_url": URL,
        "iam_request_body": BODY,
        "iam_request_headers": _headers(),
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


async def _enable(server: Server, config: dict[str, Any] | None = None) -> None:
    assert (await server.http.post("/v1/sys/auth/aws", json={"type": "aws"})).status_code == 204
    if config is not None:
        written = await server.http.post("/v1/auth/aws/config/client", json=config)
        assert written.status_code == 204, written.text


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"access_key": "AKIA", "secret_key": "x"}, "access_key is not needed and not accepted"),
        ({"sts_endpoint": "sts.amazonaws.com"}, "sts_endpoint must be an https:// URL"),
        ({"sts_endpoint": "https://sts.example/?a=b"}, "must not have a query string"),
        ({"sts_region": "US East"}, "sts_region must be an AWS region name"),
        ({"max_retries": 99}, "max_retries must be between -1 and 10"),
        ({"allowed_sts_header_values": ["bad header"]}, "is not an HTTP header name"),
        ({"iam_server_id_header_value": "a\nb"}, "must be printable"),
    ],
)
async def test_config_validation(server: Server, config: dict[str, Any], message: str) -> None:
    await _enable(server)
    response = await server.http.post("/v1/auth/aws/config/client", json=config)
    assert response.status_code == 400, response.text
    assert message in response.json()["errors"][0]


async def test_config_read_and_delete(server: Server) -> None:
    await _enable(
        server, {"sts_endpoint": "http://127.0.0.1:9/", "iam_server_id_header_value": "k"}
    )
    read = (await server.http.get("/v1/auth/aws/config/client")).json()["data"]
    assert read["sts_endpoint"] == "http://127.0.0.1:9/"
    assert read["iam_server_id_header_value"] == "k" and read["access_key"] == ""
    assert (await server.http.delete("/v1/auth/aws/config/client")).status_code == 204
    assert (await server.http.get("/v1/auth/aws/config/client")).status_code == 404


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ({}, "bound_iam_principal_arn is required"),
        ({"bound_iam_principal_arn": "arn:aws:ec2::1:x"}, "is not an IAM ARN"),
        ({"bound_iam_principal_arn": "*"}, "is not an IAM ARN"),
        (
            {"auth_type": "ec2", "bound_iam_principal_arn": "arn:aws:iam::123456789012:*"},
            "auth_type 'ec2' is not supported",
        ),
        (
            {"bound_ami_id": "ami-1", "bound_iam_principal_arn": "arn:aws:iam::123456789012:*"},
            "bound_ami_id needs the ec2 auth type",
        ),
        (
            {
                "resolve_aws_unique_ids": True,
                "bound_iam_principal_arn": "arn:aws:iam::123456789012:user/a",
            },
            "resolve_aws_unique_ids=true needs IAM read access",
        ),
    ],
)
async def test_role_validation(server: Server, role: dict[str, Any], message: str) -> None:
    await _enable(server)
    response = await server.http.post("/v1/auth/aws/role/deploy", json=role)
    assert response.status_code == 400, response.text
    assert message in response.json()["errors"][0]


async def test_roles_read_list_delete(server: Server) -> None:
    await _enable(server)
    role = {
        "auth_type": "iam",
        "bound_iam_principal_arn": ["arn:aws:iam::123456789012:role/deploy-*"],
        "resolve_aws_unique_ids": False,
        "token_policies": "deploy",
    }
    assert (await server.http.post("/v1/auth/aws/role/deploy", json=role)).status_code == 204
    read = (await server.http.get("/v1/auth/aws/role/deploy")).json()["data"]
    assert read["auth_type"] == "iam" and read["token_policies"] == ["deploy"]
    assert read["bound_iam_principal_arn"] == ["arn:aws:iam::123456789012:role/deploy-*"]
    listed = await server.http.request("LIST", "/v1/auth/aws/roles")
    assert listed.json()["data"]["keys"] == ["deploy"]
    assert (await server.http.delete("/v1/auth/aws/role/deploy")).status_code == 204
    assert (await server.http.get("/v1/auth/aws/role/deploy")).status_code == 404


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"iam_http_request_method": "GET"}, 400, "currently only 'POST' is supported"),
        ({"iam_http_request_method": None}, 400, "missing iam_http_request_method"),
        ({"iam_request_url": "%%%"}, 400, "failed to base64 decode iam_request_url"),
        (
            {"iam_request_url": base64.b64encode(b"https://sts.amazonaws.com/?Action=x").decode()},
            400,
            "no path or query string",
        ),
        (
            {"iam_request_body": base64.b64encode(b"Action=AssumeRole&RoleArn=x").decode()},
            400,
            "must be an sts:GetCallerIdentity request",
        ),
        (
            {
                "iam_request_body": base64.b64encode(
                    b"Action=GetCallerIdentity&Action=GetCallerIdentity"
                ).decode()
            },
            400,
            "must be an sts:GetCallerIdentity request",
        ),
        ({"iam_request_headers": "bm90IGpzb24="}, 400, "base64 of a JSON object"),
        ({"iam_request_headers": {}}, 400, "non-empty JSON object"),
        (
            {"iam_request_headers": {"X-Amz-Target": "x"}},
            400,
            "invalid request header: x-amz-target",
        ),
        ({"iam_request_headers": {"A": ["x\r\nInjected: y"]}}, 400, "token name and string values"),
        ({"role": "bad/role"}, 400, "invalid role name"),
    ],
)
async def test_login_request_checks_before_sts(
    server: Server, fields: dict[str, Any], status: int, message: str
) -> None:
    await _enable(server, {"sts_endpoint": "http://127.0.0.1:9"})
    response = await server.login("auth/aws/login", _login(**fields))
    assert response.status_code == status, response.text
    assert message in response.json()["errors"][0]


async def test_server_id_header_must_be_present_equal_and_signed(server: Server) -> None:
    await _enable(
        server, {"sts_endpoint": "http://127.0.0.1:9", "iam_server_id_header_value": "k1"}
    )
    for headers, message in (
        (_headers(), "missing header 'X-Vault-AWS-IAM-Server-ID'"),
        (_headers(**{"X-Vault-AWS-IAM-Server-ID": "k2"}), "this server expects 'k1'"),
        (_headers(**{"X-Vault-AWS-IAM-Server-ID": "k1"}), "is not among the signed headers"),
    ):
        response = await server.login("auth/aws/login", _login(iam_request_headers=headers))
        assert response.status_code == 403, response.text
        assert message in response.json()["errors"][0]


async def test_an_unreachable_sts_is_a_server_error_naming_it(server: Server) -> None:
    await _enable(server, {"sts_endpoint": "http://127.0.0.1:9", "max_retries": 0})
    response = await server.login("auth/aws/login", _login())
    assert response.status_code == 500
    assert "could not ask AWS STS at http://127.0.0.1:9" in response.json()["errors"][0]


@pytest.mark.parametrize(
    ("arn", "canonical", "name"),
    [
        ("arn:aws:iam::123456789012:user/ci", "arn:aws:iam::123456789012:user/ci", "ci"),
        ("arn:aws:iam::123456789012:user/team/a/ci", "arn:aws:iam::123456789012:user/ci", "ci"),
        (
            "arn:aws:sts::123456789012:assumed-role/deploy/session-1",
            "arn:aws:iam::123456789012:role/deploy",
            "deploy",
        ),
        (
            "arn:aws-us-gov:sts::123456789012:assumed-role/r/s",
            "arn:aws-us-gov:iam::123456789012:role/r",
            "r",
        ),
        ("arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:root", "root"),
    ],
)
def test_caller_identity_canonical_arns(arn: str, canonical: str, name: str) -> None:
    identity = CallerIdentity.from_arn(arn, user_id="AIDA", account="123456789012")
    assert identity.canonical_arn == canonical and identity.friendly_name == name


@pytest.mark.parametrize(
    "arn",
    ["arn:aws:s3:::bucket", "not-an-arn", "arn:aws:sts::123456789012:assumed-role/only"],
)
def test_caller_identity_refuses_other_arns(arn: str) -> None:
    with pytest.raises(PermissionDeniedError):
        CallerIdentity.from_arn(arn, user_id="", account="")
