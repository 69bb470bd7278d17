"""The KMS plugin's local backend behind a real kube-apiserver + etcd, end to end.

Secrets are stored as ``k8s:enc:kms:v2:kustos:`` without their plaintext;
rotating the key (new key file first, old one kept) makes the API server
write under the new key id without a restart of its own, and old Secrets
still read after a restart empties its DEK cache; with the plugin stopped the
API server keeps writing with its cached DEK seed for a while, then refuses
writes, and never stores anything in plaintext; restarting the plugin brings
writes back and every Secret written in between reads.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.kmsplugin.conftest import (
    EncryptedCluster,
    PluginProcess,
    dump,
    wait_for_key,
)

pytestmark = pytest.mark.slow


def test_local_backend_rotation_outage_and_recovery(assets: Path, short_dir: Path) -> None:
    old_key, new_key = short_dir / "kek-1.key", short_dir / "kek-2.key"
    plugin = PluginProcess(
        short_dir / "kms.sock", ["--backend", "local", "--key-file", str(old_key)]
    )
    plugin.start()
    try:
        with EncryptedCluster(assets, plugin.socket_path) as cluster:
            try:
                _scenario(cluster, plugin, old_key, new_key)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{dump(cluster, plugin)}") from None
    finally:
        plugin.stop()


def _scenario(
    cluster: EncryptedCluster, plugin: PluginProcess, old_key: Path, new_key: Path
) -> None:
    first_id = plugin.status().key_id
    cluster.create("before", "s3cr3t-before-rotation")
    assert cluster.stored("before", "s3cr3t-before-rotation").key_id == first_id
    assert cluster.read("before") == "s3cr3t-before-rotation"

    # rotation: the new key first, the old one kept for what it wrapped
    plugin.stop()
    plugin.start(["--backend", "local", "--key-file", str(new_key), "--key-file", str(old_key)])
    second_id = plugin.status().key_id
    assert second_id != first_id
    wait_for_key(cluster, second_id, prefix="rotating")
    assert cluster.stored("before", "s3cr3t-before-rotation").key_id == first_id
    cluster.restart_apiserver()
    assert cluster.read("before") == "s3cr3t-before-rotation"
    cluster.create("after", "s3cr3t-after-rotation")
    assert cluster.stored("after", "s3cr3t-after-rotation").key_id == second_id

    # outage: the cached DEK seed keeps writes going for a while, then writes fail
    plugin.stop()
    stopped = time.monotonic()
    written: list[str] = []
    refused = None
    while time.monotonic() - stopped < 420:
        name = f"outage-{len(written)}"
        response = cluster.write(name, f"value of {name}")
        if response.status_code != 201:
            refused = name
            assert response.status_code >= 500, response.text
            break
        written.append(name)
        time.sleep(2)
    assert refused is not None, "writes never failed with the plugin stopped"
    assert written, "no write succeeded on the cached DEK seed"
    assert cluster.raw(refused) is None  # a refused write stores nothing
    for name in written:
        assert cluster.stored(name, f"value of {name}").key_id == second_id

    # recovery: the plugin comes back, writes work again, everything reads
    plugin.start()
    deadline = time.monotonic() + 180
    while cluster.write("recovered", "s3cr3t-recovered").status_code != 201:
        assert time.monotonic() < deadline, "writes did not come back after the plugin restarted"
        time.sleep(2)
    cluster.stored("recovered", "s3cr3t-recovered")
    cluster.restart_apiserver()
    assert cluster.read("before") == "s3cr3t-before-rotation"
    assert cluster.read("after") == "s3cr3t-after-rotation"
    assert cluster.read("recovered") == "s3cr3t-recovered"
    for name in written:
        assert cluster.read(name) == f"value of {name}"
    print(
        f"outage: {len(written)} writes on the cached seed, refused after {time.monotonic() - stopped:.0f}s"
    )
