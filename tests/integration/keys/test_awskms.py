"""The awskms key provider against moto's KMS server: the same contract as the other providers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from kustos.errors import ConfigError, DecryptionError, KeyProviderError
from kustos.keys.providers.awskms import AwsKmsKeyProvider
from tests.support.moto import moto_kms
from tests.unit.keys.provider_contract import AAD, KEYRING, KeyProviderContract

__all__ = ["moto_kms"]


def kms(url: str) -> Any:
    return boto3.client("kms", endpoint_url=url, region_name="us-east-1")


def new_key(url: str) -> str:
    return str(kms(url).create_key(Description="kustos test")["KeyMetadata"]["Arn"])


class TestAwsKmsContract(KeyProviderContract):
    @pytest.fixture
    def provider(self, moto_kms: str) -> Iterator[AwsKmsKeyProvider]:
        p = AwsKmsKeyProvider(new_key(moto_kms), endpoint_url=moto_kms)
        yield p
        p.close()

    @pytest.fixture
    def other_provider(self, moto_kms: str) -> AwsKmsKeyProvider:
        return AwsKmsKeyProvider(new_key(moto_kms), endpoint_url=moto_kms)


def test_an_alias_resolves_to_its_key_and_follows_a_retarget(moto_kms: str) -> None:
    first, second = new_key(moto_kms), new_key(moto_kms)
    client = kms(moto_kms)
    client.create_alias(AliasName="alias/kustos-retarget", TargetKeyId=first)
    provider = AwsKmsKeyProvider("alias/kustos-retarget", endpoint_url=moto_kms)
    assert provider.key_arn == first
    blob = provider.wrap(KEYRING, aad=AAD)
    client.update_alias(AliasName="alias/kustos-retarget", TargetKeyId=second)
    assert provider.refresh() == second
    assert provider.key_arn == second
    # the old blob names the old key: this provider now refuses it like any other key's
    with pytest.raises(DecryptionError):
        provider.unwrap(blob, aad=AAD)
    assert AwsKmsKeyProvider(first, endpoint_url=moto_kms).unwrap(blob, aad=AAD) == KEYRING


def test_an_unknown_key_is_a_config_error(moto_kms: str) -> None:
    with pytest.raises(ConfigError, match="no key"):
        AwsKmsKeyProvider("alias/kustos-does-not-exist", endpoint_url=moto_kms)


def test_an_unreachable_endpoint_is_a_provider_error(moto_kms: str) -> None:
    provider = AwsKmsKeyProvider(new_key(moto_kms), endpoint_url=moto_kms)
    blob = provider.wrap(KEYRING, aad=AAD)
    dead = AwsKmsKeyProvider(
        provider.key_arn,
        client=_DeadEndpointClient(provider.key_arn),
    )
    with pytest.raises(KeyProviderError):
        dead.unwrap(blob, aad=AAD)
    with pytest.raises(KeyProviderError):
        dead.wrap(KEYRING, aad=AAD)


class _DeadEndpointClient:
    """A real boto3 client pointed at a closed loopback port (describe answered from memory)."""

    def __init__(self, arn: str) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        from botocore.config import Config

        self._arn = arn
        self._client = boto3.client(
            "kms",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
        )

    def describe_key(self, **_: Any) -> dict[str, Any]:
        return {"KeyMetadata": {"Arn": self._arn, "KeyUsage": "ENCRYPT_DECRYPT"}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
