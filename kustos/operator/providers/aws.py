"""The ``aws`` provider: AWS Secrets Manager through boto3.

``spec.provider.aws``: ``service: SecretsManager``, ``region``, optional
``auth.secretRef`` (access key id / secret access key / session token read
from Secrets) and the Kustos extension ``endpoint`` (any Secrets Manager
compatible endpoint; boto3's ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` works too).
Without ``auth`` boto3's default chain applies (IRSA, instance profile, env).

``remoteRef.version`` is a version id when it looks like one
(``uuid/<id>`` as in External Secrets, or a bare UUID), else a version stage
(default ``AWSCURRENT``). boto3 is synchronous: calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from kustos.errors import ConfigError, NotFoundError
from kustos.operator.providers.base import (
    FindSpec,
    Provider,
    ProviderContext,
    ProviderError,
    RemoteRef,
    extract_property,
    json_to_map,
    read_secret_key,
    refuse_metadata,
)
from kustos.sensitive import Sensitive

__all__ = ["SecretsManagerProvider", "create"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


class SecretsManagerProvider:
    """Reads secrets from one Secrets Manager region."""

    def __init__(self, *, client: Any, region: str) -> None:
        self._client = client
        self._region = region

    async def _value(self, key: str, version: str) -> bytes:
        kwargs: dict[str, str] = {"SecretId": key}
        if version.startswith("uuid/"):
            kwargs["VersionId"] = version.removeprefix("uuid/")
        elif _UUID.match(version):
            kwargs["VersionId"] = version
        else:
            kwargs["VersionStage"] = version or "AWSCURRENT"
        answer = await self._call("GetSecretValue", key, **kwargs)
        if "SecretString" in answer:
            return str(answer["SecretString"]).encode()
        return bytes(answer.get("SecretBinary") or b"")

    async def _call(self, operation: str, key: str, **kwargs: Any) -> dict[str, Any]:
        method = {
            "GetSecretValue": self._client.get_secret_value,
            "ListSecrets": self._client.list_secrets,
        }[operation]
        from botocore.exceptions import BotoCoreError, ClientError  # loaded with the client

        try:
            result: dict[str, Any] = await asyncio.to_thread(method, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise NotFoundError(
                    f"AWS secret {key!r} does not exist in {self._region}"
                ) from None
            raise ProviderError(f"AWS Secrets Manager {operation} {key!r} failed: {code}") from None
        except BotoCoreError as exc:
            raise ProviderError(
                f"AWS Secrets Manager {operation} {key!r} failed: {type(exc).__name__}"
            ) from None
        return result

    async def get(self, ref: RemoteRef) -> Sensitive[bytes]:
        refuse_metadata(ref, "aws")
        value = await self._value(ref.key, ref.version)
        return Sensitive(
            extract_property(value, ref.property, key=ref.key) if ref.property else value
        )

    async def get_map(self, ref: RemoteRef) -> dict[str, Sensitive[bytes]]:
        refuse_metadata(ref, "aws")
        value = await self._value(ref.key, ref.version)
        if ref.property:
            value = extract_property(value, ref.property, key=ref.key)
        return json_to_map(value, key=ref.key)

    async def find(self, spec: FindSpec) -> dict[str, Sensitive[bytes]]:
        names: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"MaxResults": 100}
            if token:
                kwargs["NextToken"] = token
            page = await self._call("ListSecrets", spec.path or "*", **kwargs)
            for item in page.get("SecretList", []):
                tags = {tag.get("Key"): tag.get("Value") for tag in item.get("Tags") or []}
                if spec.matches_name(item.get("Name", "")) and all(
                    tags.get(k) == v for k, v in spec.tags.items()
                ):
                    names.append(item["Name"])
            token = page.get("NextToken")
            if not token:
                break
        return {name: Sensitive(await self._value(name, "")) for name in names}

    async def validate(self) -> None:
        await self._call("ListSecrets", "*", MaxResults=1)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


def _client(kwargs: dict[str, Any]) -> Any:
    import boto3  # imported on first use: a controller without AWS stores never loads it

    return boto3.client("secretsmanager", **kwargs)


async def create(context: ProviderContext) -> Provider:
    """Factory registered as ``aws``."""
    config = context.config
    if (config.get("service") or "SecretsManager") != "SecretsManager":
        raise ConfigError(
            f"aws provider: only service SecretsManager is supported, not {config.get('service')!r}"
        )
    region = str(config.get("region") or "")
    if not region:
        raise ConfigError("aws provider: region is required")
    kwargs: dict[str, Any] = {"region_name": region}
    if config.get("endpoint"):
        kwargs["endpoint_url"] = str(config["endpoint"])
    secret_ref = (config.get("auth") or {}).get("secretRef")
    if secret_ref:
        access = await read_secret_key(
            context, secret_ref.get("accessKeyIDSecretRef") or {}, what="aws accessKeyID"
        )
        secret = await read_secret_key(
            context, secret_ref.get("secretAccessKeySecretRef") or {}, what="aws secretAccessKey"
        )
        kwargs["aws_access_key_id"] = access.reveal()
        kwargs["aws_secret_access_key"] = secret.reveal()
        if secret_ref.get("sessionTokenSecretRef"):
            session = await read_secret_key(
                context, secret_ref["sessionTokenSecretRef"], what="aws sessionToken"
            )
            kwargs["aws_session_token"] = session.reveal()
    client = await asyncio.to_thread(_client, kwargs)
    return SecretsManagerProvider(client=client, region=region)
