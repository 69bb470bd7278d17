"""AWS KMS recipients through boto3 (endpoint from ``AWS_ENDPOINT_URL_KMS``/``AWS_ENDPOINT_URL``).

The data key is sent to ``Encrypt`` with the entry's encryption context and
stored as the base64 ``CiphertextBlob``, as sops does; ``role`` and
``aws_profile`` are honoured.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from kustos.errors import ConfigError, DecryptionError, KeyProviderError

from ..models import KmsKey

__all__ = ["decrypt", "encrypt", "parse_arns"]


def parse_arns(
    text: str, *, context: Mapping[str, str] | None = None, profile: str = ""
) -> list[KmsKey]:
    """``arn[+role_arn]`` entries, comma separated, as ``--kms``/``SOPS_KMS_ARN`` take them."""
    keys = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        arn, _, role = item.partition("+")
        if not arn.startswith("arn:"):
            raise ConfigError(f"invalid KMS key ARN {arn!r}")
        keys.append(KmsKey(arn=arn, role=role, context=dict(context or {}), aws_profile=profile))
    return keys


def _client(key: KmsKey, env: Mapping[str, str]) -> Any:
    import boto3

    parts = key.arn.split(":")
    region = (
        parts[3]
        if len(parts) > 3 and parts[3]
        else env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    )
    session = boto3.session.Session(
        profile_name=key.aws_profile or None,
        region_name=region,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
    )
    endpoint = env.get("AWS_ENDPOINT_URL_KMS") or env.get("AWS_ENDPOINT_URL") or None
    if key.role:
        sts = session.client("sts", endpoint_url=env.get("AWS_ENDPOINT_URL_STS") or endpoint)
        creds = sts.assume_role(RoleArn=key.role, RoleSessionName="kustos")["Credentials"]
        session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region,
        )
    return session.client("kms", endpoint_url=endpoint)


def encrypt(key: KmsKey, data_key: bytes, *, env: Mapping[str, str]) -> str:
    """The base64 KMS ciphertext of the data key."""
    try:
        response = _client(key, env).encrypt(
            KeyId=key.arn, Plaintext=data_key, EncryptionContext=dict(key.context)
        )
    except Exception as exc:
        raise KeyProviderError(
            f"AWS KMS could not encrypt with {key.arn}: {type(exc).__name__}"
        ) from None
    return base64.b64encode(response["CiphertextBlob"]).decode()


def decrypt(key: KmsKey, *, env: Mapping[str, str]) -> bytes:
    """Recover the data key from AWS KMS."""
    try:
        blob = base64.b64decode(key.enc)
        response = _client(key, env).decrypt(
            CiphertextBlob=blob, KeyId=key.arn, EncryptionContext=dict(key.context)
        )
    except Exception as exc:
        raise DecryptionError(f"AWS KMS refused: {type(exc).__name__}") from None
    plain: bytes = response["Plaintext"]
    return plain
