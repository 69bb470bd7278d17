"""The signed ``sts:GetCallerIdentity`` request an ``aws`` auth method (IAM type) login sends.

The caller signs the request with its own AWS credentials (SigV4, through
botocore) and sends the *signed request* to the Kustos server, which replays
it to STS to learn who signed it; the credentials never leave the caller.
:func:`iam_login_data` builds the four ``iam_*`` login fields the way
``vault login -method=aws`` and hvac do (URL, body and headers base64, the
headers as a JSON object of lists). Credentials come from botocore's usual
chain (environment, shared config and profiles, web identity, container and
instance metadata) unless given.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final, TypedDict

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from kustos.errors import ConfigError

__all__ = ["GLOBAL_STS_URL", "SERVER_ID_HEADER", "IamLoginData", "iam_login_data", "sts_url_for"]

GLOBAL_STS_URL: Final = "https://sts.amazonaws.com/"
SERVER_ID_HEADER: Final = "X-Vault-AWS-IAM-Server-ID"
_BODY: Final = "Action=GetCallerIdentity&Version=2011-06-15"
_DEFAULT_REGION: Final = "us-east-1"


class IamLoginData(TypedDict):
    """The fields of an iam login besides ``role`` (what the server forwards to STS)."""

    iam_http_request_method: str
    iam_request_url: str
    iam_request_body: str
    iam_request_headers: str


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def sts_url_for(region: str) -> str:
    """STS's endpoint for ``region``: the global one for us-east-1, the regional one otherwise."""
    return GLOBAL_STS_URL if region == _DEFAULT_REGION else f"https://sts.{region}.amazonaws.com/"


def iam_login_data(
    *,
    region: str | None = None,
    header_value: str = "",
    credentials: Any = None,
    profile: str | None = None,
) -> IamLoginData:
    """Sign ``GetCallerIdentity`` for ``region`` (default us-east-1, STS's global endpoint).

    ``header_value`` is the server's ``iam_server_id_header_value`` (sent
    and signed as ``X-Vault-AWS-IAM-Server-ID``). ``credentials`` is a
    botocore credentials object; without it the default chain is used
    (``profile`` picks a named profile). Raises :class:`ConfigError` when no
    credentials are found.
    """
    if credentials is None:
        session = boto3.Session(profile_name=profile) if profile else boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise ConfigError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or run where a role provides them (instance, container, web identity)"
            )
    chosen = region or _DEFAULT_REGION
    request = AWSRequest(
        method="POST",
        url=sts_url_for(chosen),
        data=_BODY,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    if header_value:
        request.headers[SERVER_ID_HEADER] = header_value
    SigV4Auth(credentials.get_frozen_credentials(), "sts", chosen).add_auth(request)
    headers = {name: [value] for name, value in request.headers.items()}
    return IamLoginData(
        iam_http_request_method="POST",
        iam_request_url=_b64(str(request.url)),
        iam_request_body=_b64(_BODY),
        iam_request_headers=_b64(json.dumps(headers)),
    )
