"""``kustos csi-provider`` end to end: a gRPC client built from the same ``.proto`` calls ``Mount``.

The provider runs as ``kustos csi-provider`` on a unix socket; the client
sends what the Secrets Store CSI driver sends (the SecretProviderClass
parameters, the pod's attributes and its ServiceAccount token from the real
API server's TokenRequest API). The server's kubernetes auth asks that API
server (TokenReview with a reviewer ServiceAccount bound to
``system:auth-delegator``): nothing about the login is mocked.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from kustos.protos import csi_provider_pb2 as pb
from kustos.protos import csi_provider_pb2_grpc as pb_grpc
from tests.support.kube import ControlPlane
from tests.support.kubeauth import AUDIENCE, configure_kubernetes_auth, write_role
from tests.support.server import RunningServer, start_server

pytestmark = pytest.mark.slow


def _call(server: RunningServer, method: str, path: str, body: object = None) -> Any:
    response = httpx.request(
        method,
        f"{server.addr}/v1/{path}",
        headers={"X-Vault-Token": server.root_token},
        json=body,
        timeout=30,
    )
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
    return response.json() if response.content else None


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:6]
    return {"namespace": f"csi-{suffix}", "account": "shop-app", "other": "shop-web"}


@pytest.fixture(scope="module")
def server(
    control_plane: ControlPlane, names: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A dev server whose kubernetes auth reviews tokens with the real API server."""
    with start_server(tmp_path_factory.mktemp("csi-server")) as running:
        configure_kubernetes_auth(control_plane, running.addr, running.root_token)
        _call(
            running,
            "POST",
            "sys/policies/acl/shop-read",
            {"policy": 'path "secret/data/shop/*" { capabilities = ["read"] }'},
        )
        for role, account in (("shop", names["account"]), ("shop-web", names["other"])):
            write_role(
                running.addr,
                running.root_token,
                role,
                namespaces=[names["namespace"]],
                service_accounts=[account],
                policies=["shop-read"],
                ttl="5m",
            )
        _call(running, "POST", "secret/data/shop/db", {"data": {"user": "app", "password": "v1"}})
        _call(running, "POST", "secret/data/shop/cert", {"data": {"der": "3q2+7w=="}})
        _call(running, "POST", "secret/data/other/db", {"data": {"password": "not yours"}})
        yield running


@pytest.fixture(scope="module")
def provider(server: RunningServer) -> Iterator[pb_grpc.CSIDriverProviderStub]:
    """``kustos csi-provider`` on a unix socket, and a client stub from the same .proto."""
    directory = Path(tempfile.mkdtemp(prefix="csi-", dir="/tmp"))  # a socket path < 108 bytes
    socket_path = directory / "kustos.sock"
    log_path = directory / "provider.log"
    kustos = Path(sys.executable).parent / "kustos"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(kustos), "csi-provider", "--socket", str(socket_path), "--address", server.addr],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    channel = grpc.insecure_channel(f"unix://{socket_path}")
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the provider did not create its socket"
            time.sleep(0.05)
        grpc.channel_ready_future(channel).result(timeout=10)
        yield pb_grpc.CSIDriverProviderStub(channel)
    finally:
        channel.close()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
        assert not socket_path.exists(), "the provider left its socket behind"
        shutil.rmtree(directory, ignore_errors=True)


def _objects(*items: dict[str, str]) -> str:
    return yaml.safe_dump(list(items))


def _mount_request(
    plane: ControlPlane,
    names: dict[str, str],
    objects: str,
    *,
    account: str | None = None,
    role: str = "shop",
    audience: str = AUDIENCE,
    current: list[pb.ObjectVersion] | None = None,
) -> pb.MountRequest:
    account = account or names["account"]
    token = plane.service_account_token(names["namespace"], account, audiences=[audience])
    attributes = {
        "roleName": role,
        "objects": objects,
        "csi.storage.k8s.io/pod.name": "shop-0",
        "csi.storage.k8s.io/pod.namespace": names["namespace"],
        "csi.storage.k8s.io/pod.uid": str(uuid.uuid4()),
        "csi.storage.k8s.io/serviceAccount.name": account,
        "csi.storage.k8s.io/serviceAccount.tokens": json.dumps(
            {audience: {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"}}
        ),
    }
    return pb.MountRequest(
        attributes=json.dumps(attributes),
        secrets="{}",
        target_path="/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/secrets/mount",
        permission="420",
        current_object_version=current or [],
    )


def test_version_names_the_provider(provider: pb_grpc.CSIDriverProviderStub) -> None:
    answer = provider.Version(pb.VersionRequest(version="v1alpha1"), timeout=10)
    assert (answer.version, answer.runtime_name) == ("v1alpha1", "kustos")
    assert answer.runtime_version


def test_mount_returns_files_and_versions_and_a_change_returns_the_new_version(
    control_plane: ControlPlane,
    names: dict[str, str],
    server: RunningServer,
    provider: pb_grpc.CSIDriverProviderStub,
) -> None:
    objects = _objects(
        {"objectName": "password", "secretPath": "secret/data/shop/db", "secretKey": "password"},
        {"objectName": "db.json", "secretPath": "secret/data/shop/db"},
        {
            "objectName": "certs/cert.der",
            "secretPath": "secret/data/shop/cert",
            "secretKey": "der",
            "encoding": "base64",
            "filePermission": "0400",
        },
    )
    first = provider.Mount(_mount_request(control_plane, names, objects), timeout=30)
    assert not first.error.code
    files = {f.path: (f.mode, f.contents) for f in first.files}
    assert files == {
        "password": (0o644, b"v1"),
        "db.json": (0o644, b'{"password":"v1","user":"app"}'),
        "certs/cert.der": (0o400, bytes.fromhex("deadbeef")),
    }
    versions = {v.id: v.version for v in first.object_version}
    assert versions == {"password": "1", "db.json": "1", "certs/cert.der": "1"}

    _call(server, "POST", "secret/data/shop/db", {"data": {"user": "app", "password": "v2"}})
    second = provider.Mount(
        _mount_request(control_plane, names, objects, current=list(first.object_version)),
        timeout=30,
    )
    files = {f.path: f.contents for f in second.files}
    assert files["password"] == b"v2"
    versions = {v.id: v.version for v in second.object_version}
    assert versions == {"password": "2", "db.json": "2", "certs/cert.der": "1"}


def test_reads_are_made_with_the_pods_login_which_is_revoked_after_the_mount(
    control_plane: ControlPlane,
    names: dict[str, str],
    server: RunningServer,
    provider: pb_grpc.CSIDriverProviderStub,
    tmp_path: Path,
) -> None:
    plaintext = f"csi-audit-plaintext-{uuid.uuid4().hex}"
    _call(server, "POST", "secret/data/shop/audited", {"data": {"password": plaintext}})
    log = tmp_path / "audit.log"
    _call(server, "POST", "sys/audit/csi", {"type": "file", "options": {"file_path": str(log)}})
    try:
        objects = _objects({"objectName": "p", "secretPath": "secret/data/shop/audited"})
        answer = provider.Mount(_mount_request(control_plane, names, objects), timeout=30)
    finally:
        _call(server, "DELETE", "sys/audit/csi")
    requests = [
        entry["request"]
        for entry in map(json.loads, log.read_text().splitlines())
        if entry.get("type") == "request"
    ]
    by_path = {r["path"]: r for r in requests}
    assert answer.files[0].contents == json.dumps({"password": plaintext}).replace(" ", "").encode()
    assert {"auth/kubernetes/login", "secret/data/shop/audited", "auth/token/revoke-self"} <= set(
        by_path
    ), [r["path"] for r in requests]
    # The same (HMAC'd) token read the secret and was revoked: the pod's login, not a provider's.
    assert (
        by_path["secret/data/shop/audited"]["client_token"]
        == by_path["auth/token/revoke-self"]["client_token"]
    )
    assert plaintext not in log.read_text()  # the audit log has HMACs of values, never values


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("other account", grpc.StatusCode.PERMISSION_DENIED, "kustos: "),
        ("wrong audience", grpc.StatusCode.PERMISSION_DENIED, "kustos: "),
        ("outside the policy", grpc.StatusCode.PERMISSION_DENIED, "kustos: "),
        ("missing key", grpc.StatusCode.NOT_FOUND, "has no key 'nope'"),
        ("missing secret", grpc.StatusCode.NOT_FOUND, "no secret at 'secret/data/shop/none'"),
        ("bad objects", grpc.StatusCode.INVALID_ARGUMENT, "objectName '../x' must be a relative"),
    ],
)
def test_refusals_carry_a_grpc_status_and_a_clear_message(
    control_plane: ControlPlane,
    names: dict[str, str],
    provider: pb_grpc.CSIDriverProviderStub,
    case: str,
    code: grpc.StatusCode,
    message: str,
) -> None:
    db = {"objectName": "p", "secretPath": "secret/data/shop/db", "secretKey": "password"}
    requests = {
        "other account": lambda: _mount_request(
            control_plane, names, _objects(db), account=names["other"]
        ),
        "wrong audience": lambda: _mount_request(
            control_plane, names, _objects(db), audience="not-kustos"
        ),
        "outside the policy": lambda: _mount_request(
            control_plane,
            names,
            _objects({"objectName": "x", "secretPath": "secret/data/other/db"}),
        ),
        "missing key": lambda: _mount_request(
            control_plane, names, _objects({**db, "secretKey": "nope"})
        ),
        "missing secret": lambda: _mount_request(
            control_plane,
            names,
            _objects({"objectName": "x", "secretPath": "secret/data/shop/none"}),
        ),
        "bad objects": lambda: _mount_request(
            control_plane, names, _objects({**db, "objectName": "../x"})
        ),
    }
    with pytest.raises(grpc.RpcError) as caught:
        provider.Mount(requests[case](), timeout=30)
    error: Any = caught.value
    assert error.code() == code, error.details()
    assert message in error.details(), error.details()
    assert "not yours" not in error.details()


def test_a_value_bound_to_the_pods_service_account_opens_in_place_and_for_no_other(
    control_plane: ControlPlane,
    names: dict[str, str],
    server: RunningServer,
    provider: pb_grpc.CSIDriverProviderStub,
) -> None:
    sealed = _call(
        server,
        "POST",
        "sys/bound/encrypt",
        {
            "namespace": names["namespace"],
            "service_account": names["account"],
            "plaintext": base64.b64encode(b"only-for-shop-app").decode(),
        },
    )["data"]["ciphertext"]
    _call(server, "POST", "secret/data/shop/bound", {"data": {"token": sealed, "plain": "x"}})
    objects = _objects(
        {"objectName": "token", "secretPath": "secret/data/shop/bound", "secretKey": "token"},
        {"objectName": "all.json", "secretPath": "secret/data/shop/bound"},
    )
    answer = provider.Mount(_mount_request(control_plane, names, objects), timeout=30)
    files = {f.path: f.contents for f in answer.files}
    assert files["token"] == b"only-for-shop-app"
    assert json.loads(files["all.json"]) == {"plain": "x", "token": "only-for-shop-app"}
    # The other account reads the same secret (same policy) but cannot open the value.
    with pytest.raises(grpc.RpcError) as caught:
        provider.Mount(
            _mount_request(control_plane, names, objects, account=names["other"], role="shop-web"),
            timeout=30,
        )
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    assert "cannot open the bound value of object 'token'" in error.details(), error.details()
    assert "only-for-shop-app" not in error.details()


def test_a_value_pinned_to_the_accounts_uid_does_not_open_once_it_is_recreated(
    control_plane: ControlPlane,
    names: dict[str, str],
    server: RunningServer,
    provider: pb_grpc.CSIDriverProviderStub,
) -> None:
    namespace, account = names["namespace"], "shop-pinned"
    control_plane.ensure_service_account(namespace, account)
    write_role(
        server.addr,
        server.root_token,
        account,
        namespaces=[namespace],
        service_accounts=[account],
        policies=["shop-read"],
        ttl="5m",
    )
    sealed = _call(
        server,
        "POST",
        "sys/bound/encrypt",
        {
            "namespace": namespace,
            "service_account": account,
            "plaintext": base64.b64encode(b"pinned-for-shop").decode(),
            "bind_uid": True,
        },
    )["data"]
    _call(server, "POST", "secret/data/shop/pinned", {"data": {"token": sealed["ciphertext"]}})
    objects = _objects(
        {"objectName": "token", "secretPath": "secret/data/shop/pinned", "secretKey": "token"}
    )
    answer = provider.Mount(
        _mount_request(control_plane, names, objects, account=account, role=account), timeout=30
    )
    assert {f.path: f.contents for f in answer.files} == {"token": b"pinned-for-shop"}
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}"
    response = control_plane.request("DELETE", path)
    assert response.status_code == 200, response.text
    control_plane.ensure_service_account(namespace, account)  # same name, a new UID
    assert control_plane.get(path)["metadata"]["uid"] != sealed["uid"]  # type: ignore[index]
    # The new account's token logs in once the API server's authenticator has seen it; until
    # then the login itself is refused. Either way the value never opens.
    deadline = time.monotonic() + 30
    while True:
        with pytest.raises(grpc.RpcError) as caught:
            provider.Mount(
                _mount_request(control_plane, names, objects, account=account, role=account),
                timeout=30,
            )
        error: Any = caught.value
        assert "pinned-for-shop" not in error.details()
        if "deleted and recreated" in error.details() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    assert "cannot open the bound value of object 'token'" in error.details(), error.details()
    assert "deleted and recreated" in error.details(), error.details()
