"""Bound values against a real ``kustos server`` whose kubernetes auth asks the real kube-apiserver.

Every token here is a real ServiceAccount token from TokenRequest, logged in
through TokenReview. A value for ``<ns>/api`` opens for ``<ns>/api`` only: not
for ``<ns>/web``, not for an all-powerful non-root token, not for root, not for
a child token carrying forged metadata, and (when pinned to the UID) not after
the ServiceAccount is deleted and recreated.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kustos.client import KustosClient, open_in_place
from kustos.errors import InvalidRequestError, PermissionDeniedError
from tests.support.kube import ControlPlane
from tests.support.kubeauth import AUDIENCE, configure_kubernetes_auth, login, write_role
from tests.support.server import RunningServer, start_server

ADMIN_POLICY = """
path "*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo"]
}
"""
MINT_POLICY = """
path "auth/token/create" {
  capabilities = ["update"]
}
"""


@pytest.fixture(scope="module")
def namespace() -> str:
    return f"payments-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, control_plane: ControlPlane, namespace: str
) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("bound")) as running:
        configure_kubernetes_auth(control_plane, running.addr, running.root_token)
        write_role(
            running.addr,
            running.root_token,
            "payments",
            namespaces=[namespace],
            service_accounts=["api", "web"],
            policies=["mint"],
        )
        with KustosClient(running.addr, running.root_token) as root:
            root.policies.create_or_update_acl_policy("admin", ADMIN_POLICY)
            root.policies.create_or_update_acl_policy("mint", MINT_POLICY)
        yield running


def _client(server: RunningServer, token: str) -> KustosClient:
    return KustosClient(server.addr, token)


def _sa_token(control_plane: ControlPlane, server: RunningServer, ns: str, name: str) -> str:
    jwt = control_plane.service_account_token(ns, name, audiences=[AUDIENCE])
    return login(server.addr, "payments", jwt)


def test_opens_for_the_bound_service_account_only(
    server: RunningServer, control_plane: ControlPlane, namespace: str
) -> None:
    with _client(server, server.root_token) as root:
        sealed = root.bound.encrypt(b"s3cr3t", namespace=namespace, service_account="api")
        admin_token = root.auth_token.create(policies=["admin"])["client_token"]
    text = sealed["ciphertext"]
    assert text.startswith(f"kustos:bound:v1:1:{namespace}/api:")
    assert "s3cr3t" not in text
    with _client(server, _sa_token(control_plane, server, namespace, "api")) as api:
        assert api.bound.decrypt(text).reveal() == b"s3cr3t"
        # opening in place: bound values opened, others untouched
        assert open_in_place({"a": text, "b": "plain"}, opener=api.bound.decrypt) == {
            "a": "s3cr3t",
            "b": "plain",
        }
        # a child token of the api login, with the login's metadata forged, is not a login
        child = api.auth_token.create(
            policies=["default"],
            meta={
                "service_account_namespace": namespace,
                "service_account_name": "api",
                "role": "payments",
            },
        )["client_token"]
    with _client(server, _sa_token(control_plane, server, namespace, "web")) as web:
        with pytest.raises(
            PermissionDeniedError, match=f"bound to service account {namespace}/api"
        ):
            web.bound.decrypt(text)
        with pytest.raises(PermissionDeniedError, match="key 'a'"):
            open_in_place({"a": text}, opener=web.bound.decrypt)
    for token in (admin_token, server.root_token, child):
        with (
            _client(server, token) as other,
            pytest.raises(PermissionDeniedError, match="only a token from a ServiceAccount login"),
        ):
            other.bound.decrypt(text)
    # the Kubernetes cluster admin's own credential (system:masters) is no ServiceAccount login
    refused = httpx.post(
        f"{server.addr}/v1/auth/kubernetes/login",
        json={"role": "payments", "jwt": control_plane.admin_token},
        timeout=30,
    )
    assert refused.status_code == 403, refused.text
    assert "auth" not in refused.json()


def test_uid_bound_value_dies_with_the_service_account(
    server: RunningServer, control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.ensure_service_account(namespace, "api")
    uid = control_plane.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/api")["metadata"][
        "uid"
    ]
    with _client(server, server.root_token) as root:
        # the server looks the UID up in the cluster (through the reviewer's token)
        pinned = root.bound.encrypt(
            "pinned", namespace=namespace, service_account="api", bind_uid=True
        )
        by_name = root.bound.encrypt("by-name", namespace=namespace, service_account="api")
        with pytest.raises(Exception, match="does not exist"):
            root.bound.encrypt("x", namespace=namespace, service_account="ghost", bind_uid=True)
    assert pinned["uid"] == uid
    assert pinned["ciphertext"].startswith(f"kustos:bound:v1:1:{namespace}/api/{uid}:")
    old_jwt = control_plane.service_account_token(namespace, "api", audiences=[AUDIENCE])
    old_login = login(server.addr, "payments", old_jwt)
    with _client(server, old_login) as api:
        assert api.bound.decrypt(pinned["ciphertext"]).reveal() == b"pinned"
    response = control_plane.request(
        "DELETE", f"/api/v1/namespaces/{namespace}/serviceaccounts/api"
    )
    assert response.status_code == 200, response.text
    # a Kustos token issued before the deletion still carries the old UID: the server asks the
    # cluster whether that account still exists before it opens a pinned value
    with _client(server, old_login) as api:
        with pytest.raises(PermissionDeniedError, match=f"{namespace}/api no longer exists"):
            api.bound.decrypt(pinned["ciphertext"])
        assert api.bound.decrypt(by_name["ciphertext"]).reveal() == b"by-name"
    # the old account's JWT no longer logs in (TokenReview: the account is gone)
    deadline = time.monotonic() + 30
    while True:
        refused = httpx.post(
            f"{server.addr}/v1/auth/kubernetes/login",
            json={"role": "payments", "jwt": old_jwt},
            timeout=30,
        )
        if refused.status_code == 403 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert refused.status_code == 403, refused.text
    control_plane.ensure_service_account(namespace, "api")  # same name, new UID
    with _client(server, _sa_token(control_plane, server, namespace, "api")) as reborn:
        with pytest.raises(PermissionDeniedError, match="deleted and recreated"):
            reborn.bound.decrypt(pinned["ciphertext"])
        assert reborn.bound.decrypt(by_name["ciphertext"]).reveal() == b"by-name"
    with _client(server, old_login) as api:  # the old login, now facing the new account
        with pytest.raises(PermissionDeniedError, match="deleted and recreated"):
            api.bound.decrypt(pinned["ciphertext"])


def test_kamus_encrypt_shape_and_anonymous_setting(
    server: RunningServer, control_plane: ControlPlane, namespace: str
) -> None:
    request = {"service-account": "api", "namespace": namespace, "data": "from-kamus-cli"}
    anonymous = httpx.post(f"{server.addr}/api/v1/encrypt", json=request, timeout=30)
    assert anonymous.status_code == 403, anonymous.text
    assert "allow_unauthenticated_encrypt" in anonymous.json()["errors"][0]
    with _client(server, server.root_token) as root:
        root.bound.write_config(allow_unauthenticated_encrypt=True)
        try:
            answer = httpx.post(f"{server.addr}/api/v1/encrypt", json=request, timeout=30)
            default = httpx.post(
                f"{server.addr}/api/v1/encrypt",
                json={**request, "service-account": "default"},
                timeout=30,
            )
            malformed = httpx.post(
                f"{server.addr}/api/v1/encrypt", json={"namespace": namespace}, timeout=30
            )
        finally:
            root.bound.write_config(allow_unauthenticated_encrypt=False)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert default.status_code == 400 and "default service account" in default.text
    assert malformed.status_code == 400 and "service-account" in malformed.text
    with _client(server, _sa_token(control_plane, server, namespace, "api")) as api:
        assert api.bound.decrypt(answer.text).reveal() == b"from-kamus-cli"


def test_bad_input_is_named(
    server: RunningServer, control_plane: ControlPlane, namespace: str
) -> None:
    with _client(server, server.root_token) as root:
        text = root.bound.encrypt(b"x", namespace=namespace, service_account="api")["ciphertext"]
        with pytest.raises(InvalidRequestError, match="invalid namespace"):
            root.bound.encrypt(b"x", namespace="Bad_NS", service_account="api")
    head, _, payload = text.rpartition(":")
    blob = bytearray(base64.b64decode(payload))
    blob[-1] ^= 1
    tampered = f"{head}:{base64.b64encode(bytes(blob)).decode()}"
    with _client(server, _sa_token(control_plane, server, namespace, "api")) as api:
        with pytest.raises(InvalidRequestError, match="could not be opened"):
            api.bound.decrypt(tampered)
        with pytest.raises(InvalidRequestError, match="must start with"):
            api.bound.decrypt("vault:v1:abc")
    with _client(server, server.root_token) as root:
        rotated = root.bound.rotate()
        assert rotated == 2
        newer = root.bound.encrypt(b"y", namespace=namespace, service_account="api")
    assert newer["key_version"] == 2
    with _client(server, _sa_token(control_plane, server, namespace, "api")) as api:
        assert api.bound.decrypt(text).reveal() == b"x"  # older versions still open
        assert api.bound.decrypt(newer["ciphertext"]).reveal() == b"y"


def test_no_plaintext_at_rest(server: RunningServer, namespace: str, tmp_path: Path) -> None:
    with _client(server, server.root_token) as root:
        root.bound.encrypt(b"never-stored-plain", namespace=namespace, service_account="api")
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert b"never-stored-plain" not in path.read_bytes()
