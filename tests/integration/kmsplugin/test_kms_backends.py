"""The KMS plugin's pkcs11 (SoftHSM2), aws (moto) and transit (a Kustos server) backends
behind a real kube-apiserver + etcd.

For each: Secrets are stored as ``k8s:enc:kms:v2:kustos:`` without their
plaintext and read back; after the backend's own kind of rotation (a new HSM
key label first, an alias pointed at a new AWS key, a transit key rotated on
the server) new writes carry the new key id and old Secrets still read from
a fresh API server (empty DEK cache: the plugin must unwrap under the old
key); with the plugin stopped the API server writes on its cached seed, and
after the plugin restarts everything written before, during and after reads
from a fresh API server. With its backend unreachable, the plugin's Status
says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import hvac
import pytest

from kustos.kmsplugin.clients import KmsPluginClient
from tests.integration.kmsplugin.conftest import (
    EncryptedCluster,
    PluginProcess,
    dump,
    wait_for_key,
)
from tests.support.kube import ControlPlane
from tests.support.moto import moto_kms
from tests.support.server import RunningServer, start_server
from tests.support.softhsm import create_token, softhsm_missing

__all__ = ["moto_kms"]

pytestmark = pytest.mark.slow


def run_scenario(
    assets: Path, plugin: PluginProcess, rotate: Callable[[], None], *, live: bool
) -> None:
    """Write, rotate, prove old and new keys, restart the plugin, prove everything reads."""
    plugin.start()
    try:
        with EncryptedCluster(assets, plugin.socket_path) as cluster:
            try:
                first_id = plugin.status().key_id
                cluster.create("before", "s3cr3t-before")
                assert cluster.stored("before", "s3cr3t-before").key_id == first_id
                assert cluster.read("before") == "s3cr3t-before"

                rotate()
                second_id = plugin.status().key_id
                assert second_id != first_id
                if live:  # the API server notices the new key id at its next Status call
                    wait_for_key(cluster, second_id, prefix="rotating")
                    cluster.restart_apiserver()
                else:  # a fresh API server asks Status first and makes a seed under the new key
                    cluster.restart_apiserver()
                cluster.create("after", "s3cr3t-after")
                assert cluster.stored("after", "s3cr3t-after").key_id == second_id
                assert cluster.stored("before", "s3cr3t-before").key_id == first_id
                assert cluster.read("before") == "s3cr3t-before"

                plugin.stop()  # the API server writes on with its cached seed meanwhile
                cluster.create("while-stopped", "s3cr3t-while-stopped")
                cluster.stored("while-stopped", "s3cr3t-while-stopped")
                plugin.start()
                cluster.create("after-restart", "s3cr3t-after-restart")
                cluster.stored("after-restart", "s3cr3t-after-restart")
                cluster.restart_apiserver()
                for name in ("before", "after", "while-stopped", "after-restart"):
                    assert cluster.read(name) == f"s3cr3t-{name}"
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{dump(cluster, plugin)}") from None
    finally:
        plugin.stop()


def test_pkcs11_backend(assets: Path, short_dir: Path) -> None:
    reason = softhsm_missing()
    if reason is not None:
        pytest.skip(reason)
    token = create_token(short_dir / "hsm")
    common = [
        "--backend",
        "pkcs11",
        "--pkcs11-module",
        token.module,
        "--pkcs11-token",
        token.token_label,
    ]
    env = {"SOFTHSM2_CONF": str(token.conf), "KUSTOS_PKCS11_PIN": token.pin}
    plugin = PluginProcess(short_dir / "kms.sock", [*common, "--key-label", "kek-1"], env=env)

    def rotate() -> None:
        plugin.stop()
        plugin.start([*common, "--key-label", "kek-2", "--key-label", "kek-1"])

    run_scenario(assets, plugin, rotate, live=False)


def test_aws_backend(assets: Path, short_dir: Path, moto_kms: str) -> None:
    kms = boto3.client("kms", endpoint_url=moto_kms, region_name="us-east-1")
    first = kms.create_key(Description="kubernetes kek 1")["KeyMetadata"]["Arn"]
    second = kms.create_key(Description="kubernetes kek 2")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/kubernetes", TargetKeyId=first)
    plugin = PluginProcess(
        short_dir / "kms.sock",
        ["--backend", "aws", "--aws-key-id", "alias/kubernetes", "--aws-endpoint-url", moto_kms],
    )

    def rotate() -> None:  # no plugin restart: Status resolves the alias again
        kms.update_alias(AliasName="alias/kubernetes", TargetKeyId=second)

    run_scenario(assets, plugin, rotate, live=False)
    assert first != second


@pytest.fixture(scope="module")
def transit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A Kustos dev server with a transit key, a plugin policy and an AppRole for it."""
    with start_server(tmp_path_factory.mktemp("kms-transit")) as server:
        admin = hvac.Client(url=server.addr, token=server.root_token)
        admin.sys.enable_secrets_engine("transit", path="transit")
        admin.secrets.transit.create_key("kubernetes", mount_point="transit")
        admin.sys.create_or_update_policy(
            "kms-plugin",
            'path "transit/encrypt/kubernetes" { capabilities = ["update"] }\n'
            'path "transit/decrypt/kubernetes" { capabilities = ["update"] }\n'
            'path "transit/keys/kubernetes" { capabilities = ["read"] }\n',
        )
        admin.sys.enable_auth_method("approle")
        admin.auth.approle.create_or_update_approle(
            "kms-plugin", token_policies=["kms-plugin"], token_ttl="1h"
        )
        yield server


def _approle(server: RunningServer, directory: Path) -> tuple[str, Path]:
    admin = hvac.Client(url=server.addr, token=server.root_token)
    role_id = admin.auth.approle.read_role_id("kms-plugin")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("kms-plugin")["data"]["secret_id"]
    path = directory / "secret-id"
    path.write_text(secret_id)
    path.chmod(0o600)
    return role_id, path


def test_transit_backend(assets: Path, short_dir: Path, transit_server: RunningServer) -> None:
    role_id, secret_file = _approle(transit_server, short_dir)
    plugin = PluginProcess(
        short_dir / "kms.sock",
        [
            "--backend",
            "transit",
            "--address",
            transit_server.addr,
            "--transit-key",
            "kubernetes",
            "--auth",
            "approle",
            "--approle-role-id",
            role_id,
            "--approle-secret-id-file",
            str(secret_file),
        ],
    )
    admin = hvac.Client(url=transit_server.addr, token=transit_server.root_token)

    def rotate() -> None:  # on the server; the plugin notices at its next Status
        admin.secrets.transit.rotate_key("kubernetes", mount_point="transit")

    run_scenario(assets, plugin, rotate, live=True)


def test_transit_token_auth_and_a_server_outage(
    short_dir: Path, transit_server: RunningServer
) -> None:
    """Token auth wraps and unwraps; with the server stopped, Status degrades and says why."""
    admin = hvac.Client(url=transit_server.addr, token=transit_server.root_token)
    token = admin.auth.token.create(policies=["kms-plugin"], ttl="1h")["auth"]["client_token"]
    plugin = PluginProcess(
        short_dir / "kms.sock",
        ["--backend", "transit", "--address", transit_server.addr, "--transit-key", "kubernetes"],
        env={"KUSTOS_TOKEN": token},
    ).start()
    try:
        with KmsPluginClient(plugin.socket_path) as client:
            wrapped = client.encrypt(b"\x07" * 32)
            assert wrapped.ciphertext.startswith(b"vault:v")
            assert wrapped.key_id.startswith("transit:transit/kubernetes:v")
            assert client.decrypt(wrapped.ciphertext, key_id=wrapped.key_id, annotations={}) == (
                b"\x07" * 32
            )
            transit_server.stop()
            try:
                version, status = client.status()
                assert version == "v2"
                assert status.key_id == wrapped.key_id or status.key_id.startswith("transit:")
                assert status.healthz != "ok"
                assert "transit backend unavailable" in status.healthz
                assert "cannot reach" in status.healthz
            finally:
                transit_server.start()
            assert client.status()[1].healthz == "ok"
    finally:
        plugin.stop()


def test_transit_kubernetes_auth(
    short_dir: Path, transit_server: RunningServer, control_plane: ControlPlane
) -> None:
    """The plugin logs in with a real ServiceAccount token (another cluster's TokenReview checks it)."""
    admin = hvac.Client(url=transit_server.addr, token=transit_server.root_token)
    admin.sys.enable_auth_method("kubernetes")
    admin.write(
        "auth/kubernetes/config",
        kubernetes_host=control_plane.url,
        kubernetes_ca_cert=control_plane.ca_pem.decode(),
        token_reviewer_jwt=control_plane.admin_token,
    )
    admin.write(
        "auth/kubernetes/role/kms-plugin",
        bound_service_account_names=["kms-plugin"],
        bound_service_account_namespaces=["kube-system"],
        token_policies=["kms-plugin"],
        token_ttl="1h",
    )
    jwt = short_dir / "sa-token"
    jwt.write_text(control_plane.service_account_token("kube-system", "kms-plugin"))
    plugin = PluginProcess(
        short_dir / "kms.sock",
        [
            "--backend",
            "transit",
            "--address",
            transit_server.addr,
            "--transit-key",
            "kubernetes",
            "--auth",
            "kubernetes",
            "--kubernetes-role",
            "kms-plugin",
            "--kubernetes-token-file",
            str(jwt),
        ],
    ).start()
    try:
        with KmsPluginClient(plugin.socket_path) as client:
            wrapped = client.encrypt(b"\x09" * 32)
            assert client.decrypt(wrapped.ciphertext, key_id=wrapped.key_id, annotations={}) == (
                b"\x09" * 32
            )
    finally:
        plugin.stop()


def test_aws_status_degrades_when_kms_is_unreachable(moto_kms: str) -> None:
    """Status names the problem when AWS KMS goes away (kube-apiserver shows it in its healthz)."""
    from kustos.errors import KeyProviderError
    from kustos.kmsplugin.backends.aws import AwsBackend
    from tests.support.moto import start_moto

    with start_moto() as url:  # a KMS of its own, stopped halfway through
        arn = boto3.client("kms", endpoint_url=url, region_name="us-east-1").create_key()[
            "KeyMetadata"
        ]["Arn"]
        backend = AwsBackend([arn], endpoint_url=url)
        assert backend.status().healthz == "ok"
        wrapped = backend.encrypt(b"\x05" * 32)
    status = backend.status()
    assert status.key_id == f"aws:{arn}"
    assert status.healthz.startswith("aws backend unavailable")
    assert "EndpointConnectionError" in status.healthz
    with pytest.raises(KeyProviderError, match="could not decrypt"):
        backend.decrypt(wrapped.ciphertext, key_id=wrapped.key_id, annotations={})
