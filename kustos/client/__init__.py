"""The typed HTTP client of Kustos, used by the CLI, the operator and the agent.

It speaks Vault's wire protocol, so it works against ``kustos server`` and
against Vault itself. The layout mirrors the API: one module per area
(:mod:`~kustos.client.kv_v2`, :mod:`~kustos.client.sys`,
:mod:`~kustos.client.auth_token`), with hvac-like method names. Errors are the
``kustos.errors`` tree, mapped from HTTP statuses in one table
(:mod:`kustos.client.errors`)::

    with KustosClient("http://127.0.0.1:8200", token) as client:
        client.kv_v2.create_or_update_secret("app/db", {"user": "admin"}, mount_point="secret")
        client.kv_v2.read_secret_version("app/db")["data"]
"""

from kustos.client.auth_token import AuthToken, TokenAuth
from kustos.client.bound import Bound, BoundCiphertext, open_in_place
from kustos.client.client import DEFAULT_TIMEOUT, KustosClient
from kustos.client.errors import STATUS_ERRORS, ServerUnreachableError, error_from_response
from kustos.client.kv_v2 import (
    DEFAULT_MOUNT_POINT,
    REASON_HEADER,
    KvConfig,
    KvV2,
    SecretMetadata,
    SecretVersion,
    VersionInfo,
    VersionMetadata,
)
from kustos.client.sys import InitResult, KeyStatus, SealStatus, Sys

__all__ = [
    "DEFAULT_MOUNT_POINT",
    "DEFAULT_TIMEOUT",
    "REASON_HEADER",
    "STATUS_ERRORS",
    "AuthToken",
    "Bound",
    "BoundCiphertext",
    "InitResult",
    "KeyStatus",
    "KustosClient",
    "KvConfig",
    "KvV2",
    "SealStatus",
    "SecretMetadata",
    "SecretVersion",
    "ServerUnreachableError",
    "Sys",
    "TokenAuth",
    "VersionInfo",
    "VersionMetadata",
    "error_from_response",
    "open_in_place",
]
