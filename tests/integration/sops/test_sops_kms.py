"""AWS KMS recipients against moto's server (real HTTP through boto3)."""

from __future__ import annotations

import boto3
import pytest

from kustos.errors import DecryptionError
from kustos.gitops.sops import KeyServices, KmsKey, decrypt_file, encrypt_file, store_for

pytestmark = pytest.mark.slow


def _env(url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_KMS": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_kms_round_trip_with_context(moto_url: str) -> None:
    env = _env(moto_url)
    client = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    arn = client.create_key()["KeyMetadata"]["Arn"]
    store = store_for(path="x.yaml")
    key = KmsKey(arn=arn, context={"app": "demo"})
    encrypted = encrypt_file(
        b"password: hunter2\n", store=store, key_groups=[[key]], services=KeyServices(env=env)
    )
    text = encrypted.decode()
    assert f"arn: {arn}" in text and "app: demo" in text and "hunter2" not in text
    assert decrypt_file(encrypted, store=store, services=KeyServices(env=env)).tree == {
        "password": "hunter2"
    }
    # A different encryption context must not decrypt the data key.
    tampered = text.replace("app: demo", "app: other").encode()
    with pytest.raises(DecryptionError, match=f"kms {arn}"):
        decrypt_file(tampered, store=store, services=KeyServices(env=env))
