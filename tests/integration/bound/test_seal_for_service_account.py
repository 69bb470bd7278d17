"""``kustos seal --for-service-account NS/NAME`` (the console script) against a real server whose
kubernetes auth asks the real kube-apiserver: the value it prints opens for that account only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kustos.client import KustosClient
from kustos.errors import PermissionDeniedError
from tests.support.kube import ControlPlane
from tests.support.kubeauth import AUDIENCE, configure_kubernetes_auth, login, write_role
from tests.support.server import RunningServer, start_server


@pytest.fixture(scope="module")
def namespace() -> str:
    return f"cli-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, control_plane: ControlPlane, namespace: str
) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("seal-bound")) as running:
        configure_kubernetes_auth(control_plane, running.addr, running.root_token)
        write_role(
            running.addr,
            running.root_token,
            "cli",
            namespaces=[namespace],
            service_accounts=["api", "web"],
        )
        yield running


def _seal(
    server: RunningServer, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "KUSTOS_ADDR": server.addr,
        "KUSTOS_TOKEN": server.root_token,
        "HOME": str(server.home),
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "kustos"), "seal", *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def _opener(server: RunningServer, control_plane: ControlPlane, ns: str, name: str) -> KustosClient:
    jwt = control_plane.service_account_token(ns, name, audiences=[AUDIENCE])
    return KustosClient(server.addr, login(server.addr, "cli", jwt))


def test_the_printed_value_opens_for_that_account_only(
    server: RunningServer, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    done = _seal(server, "--for-service-account", f"{namespace}/api", stdin=b"from-stdin")
    assert done.returncode == 0, done.stderr
    value = done.stdout.decode().strip()
    assert value.startswith("kustos:bound:v1:") and "from-stdin" not in value
    control_plane.ensure_service_account(namespace, "api")
    secret_file = tmp_path / "password"
    secret_file.write_bytes(b"from-a-file")
    from_file = _seal(
        server,
        "--for-service-account",
        f"{namespace}/api",
        "--bind-uid",
        "--from-file",
        f"password={secret_file}",
        "-o",
        "json",
    )
    assert from_file.returncode == 0, from_file.stderr
    doc = json.loads(from_file.stdout)
    uid = control_plane.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/api")["metadata"][
        "uid"
    ]
    assert doc["uid"] == uid and doc["service_account"] == "api"
    with _opener(server, control_plane, namespace, "api") as api:
        assert api.bound.decrypt(value).reveal() == b"from-stdin"
        assert api.bound.decrypt(doc["ciphertext"]).reveal() == b"from-a-file"
    with (
        _opener(server, control_plane, namespace, "web") as web,
        pytest.raises(PermissionDeniedError),
    ):
        web.bound.decrypt(value)


@pytest.mark.parametrize(
    ("account", "message"),
    [
        ("payments", "NAMESPACE/NAME"),
        ("Pay_ments/api", "invalid namespace"),
        ("a/b/c", "NAMESPACE/NAME"),
    ],
)
def test_a_bad_account_is_refused_by_name(
    server: RunningServer, account: str, message: str
) -> None:
    done = _seal(server, "--for-service-account", account, stdin=b"x")
    assert done.returncode == 2
    assert message in done.stderr.decode()


def test_the_default_account_and_an_empty_value_are_refused(
    server: RunningServer, namespace: str
) -> None:
    default = _seal(server, "--for-service-account", f"{namespace}/default", stdin=b"x")
    assert default.returncode != 0 and "default service account" in default.stderr.decode()
    empty = _seal(server, "--for-service-account", f"{namespace}/api", stdin=b"")
    assert empty.returncode == 2 and "empty" in empty.stderr.decode()
