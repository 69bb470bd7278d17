"""The aws provider against moto's Secrets Manager server, through the running operator."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3

ES = "kustos.io/v1"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


async def test_aws_secrets_manager_syncs_property_find_and_updates(
    api, run_operator, wait, moto_endpoint
) -> None:
    aws = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_endpoint,
                       aws_access_key_id="AKIDTEST", aws_secret_access_key="test-secret")  # fmt: skip
    aws.create_secret(
        Name="prod/db", SecretString=json.dumps({"username": "app", "password": "pw-1"})
    )
    aws.create_secret(Name="prod/api-key", SecretString="k-1", Tags=[{"Key": "team", "Value": "a"}])
    aws.create_secret(Name="dev/api-key", SecretString="dev", Tags=[{"Key": "team", "Value": "a"}])

    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "aws-creds", "namespace": api.ns},
            "data": {"id": _b64("AKIDTEST"), "secret": _b64("test-secret")},
        },
    )
    await api.create(
        "secretstores",
        {
            "apiVersion": ES,
            "kind": "SecretStore",
            "metadata": {"name": "aws", "namespace": api.ns},
            "spec": {
                "provider": {
                    "aws": {
                        "service": "SecretsManager",
                        "region": "eu-west-1",
                        "endpoint": moto_endpoint,
                        "auth": {
                            "secretRef": {
                                "accessKeyIDSecretRef": {"name": "aws-creds", "key": "id"},
                                "secretAccessKeySecretRef": {"name": "aws-creds", "key": "secret"},
                            }
                        },
                    }
                }
            },
        },
    )
    await api.create(
        "externalsecrets",
        {
            "apiVersion": ES,
            "kind": "ExternalSecret",
            "metadata": {"name": "app", "namespace": api.ns},
            "spec": {
                "secretStoreRef": {"name": "aws"},
                "data": [
                    {
                        "secretKey": "password",
                        "remoteRef": {"key": "prod/db", "property": "password"},
                    }
                ],
                "dataFrom": [{"find": {"name": {"regexp": "^prod/"}, "tags": {"team": "a"}}}],
            },
        },
    )

    def decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}

    async with run_operator():

        async def synced() -> bool:
            return decoded(await api.get("v1", "secrets", api.ns, "app")) == {
                "password": b"pw-1",
                "prod_api-key": b"k-1",
            }

        await wait(synced, what="AWS values in the Secret")

        aws.put_secret_value(
            SecretId="prod/db", SecretString=json.dumps({"username": "app", "password": "pw-2"})
        )
        await api.patch(
            ES,
            "externalsecrets",
            api.ns,
            "app",
            {"metadata": {"annotations": {"force-sync": "now"}}},
        )

        async def updated() -> bool:
            return decoded(await api.get("v1", "secrets", api.ns, "app")).get("password") == b"pw-2"

        await wait(updated, what="rotated AWS value in the Secret")

        async def both_events() -> bool:  # events are posted after the Secret is written
            return [e["reason"] for e in await api.events(api.ns)] == ["Updated"]

        await wait(both_events, what="the Updated event (a first creation posts none)")
