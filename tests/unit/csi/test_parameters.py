"""A Mount request's parameters: what the driver sends, read and checked before anything is fetched."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kustos.csi import ParameterError, SecretObject, read_mount_request

TOKENS = "csi.storage.k8s.io/serviceAccount.tokens"


def _attributes(**changes: Any) -> str:
    values: dict[str, Any] = {
        "roleName": "shop",
        "objects": "- objectName: db\n  secretPath: secret/data/shop/db\n  secretKey: password\n",
        "csi.storage.k8s.io/pod.namespace": "shop",
        "csi.storage.k8s.io/pod.name": "shop-0",
        "csi.storage.k8s.io/serviceAccount.name": "app",
        TOKENS: json.dumps({"kustos": {"token": "eyJ.jwt", "expirationTimestamp": "x"}}),
    }
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return json.dumps(values)


def test_a_vault_style_secret_provider_class_reads_as_is() -> None:
    params = read_mount_request(
        attributes=_attributes(
            objects=(
                "- objectName: db\n  secretPath: secret/data/shop/db\n  secretKey: password\n"
                "- objectName: certs/ca.der\n  secretPath: /secret/data/shop/ca\n"
                "  secretKey: der\n  encoding: BASE64\n  filePermission: '0400'\n"
            ),
            vaultKubernetesMountPath="auth/k8s",
            vaultAddress="https://elsewhere:8200",
        ),
        permission="420",
    )
    assert params.role == "shop" and params.mode == 0o644 and params.auth_path == "k8s"
    assert params.objects == (
        SecretObject(name="db", path="secret/data/shop/db", key="password"),
        SecretObject(
            name="certs/ca.der",
            path="secret/data/shop/ca",
            key="der",
            encoding="base64",
            mode=0o400,
        ),
    )
    assert params.jwt.reveal() == "eyJ.jwt" and "eyJ" not in repr(params)
    assert (params.namespace, params.pod, params.service_account) == ("shop", "shop-0", "app")


def test_the_token_is_picked_by_audience() -> None:
    tokens = json.dumps({"kustos": {"token": "a"}, "other": {"token": "b"}})
    assert (
        read_mount_request(
            attributes=_attributes(**{TOKENS.replace(".", "__"): tokens}, audience="other"),
            permission="",
        ).jwt.reveal()
        == "b"
    )
    with pytest.raises(ParameterError, match="set parameter 'audience'"):
        read_mount_request(
            attributes=_attributes(**{TOKENS.replace(".", "__"): tokens}), permission=""
        )


@pytest.mark.parametrize(
    ("changes", "permission", "message"),
    [
        ({"roleName": None}, "420", "parameter 'roleName' is required"),
        ({"objects": None}, "420", "parameter 'objects' is required"),
        ({"objects": "[unclosed"}, "420", "not valid YAML"),
        ({"objects": "- secretPath: secret/data/x"}, "420", "objects[0].objectName is required"),
        ({"objects": "- objectName: ../x\n  secretPath: s/data/x"}, "420", "relative file path"),
        ({"objects": "- objectName: /etc/x\n  secretPath: s/data/x"}, "420", "relative file path"),
        ({"objects": "- objectName: x\n  secretPath: 'a b'"}, "420", "secretPath must be"),
        (
            {"objects": "- objectName: x\n  secretPath: s/data/x\n  encoding: rot13"},
            "420",
            "encoding must be utf-8, base64 or hex",
        ),
        (
            {"objects": "- objectName: x\n  secretPath: s/data/x\n  filePermission: '9'"},
            "420",
            "octal file mode",
        ),
        (
            {
                "objects": "- {objectName: x, secretPath: s/data/x}\n- {objectName: x, secretPath: s/data/y}"
            },
            "420",
            "appears twice",
        ),
        ({TOKENS.replace(".", "__"): None}, "420", "add tokenRequests"),
        ({"audience": "vault"}, "420", "no token for audience 'vault'"),
        ({}, "0o644", "permission is not JSON"),
        ({}, "4096", "between 0000 and 0777"),
    ],
)
def test_bad_requests_name_what_is_wrong(
    changes: dict[str, Any], permission: str, message: str
) -> None:
    with pytest.raises(ParameterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_mount_request(attributes=_attributes(**changes), permission=permission)


def test_attributes_must_be_a_json_object() -> None:
    with pytest.raises(ParameterError, match="attributes is not JSON"):
        read_mount_request(attributes="{", permission="")
    with pytest.raises(ParameterError, match="attributes is not a JSON object"):
        read_mount_request(attributes="[]", permission="")
