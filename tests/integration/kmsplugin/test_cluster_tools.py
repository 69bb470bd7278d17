"""``kustos cluster encryption-config``, ``rewrite-secrets`` and ``scan-etcd`` against a
real kube-apiserver + etcd with TLS client certificates.

A cluster starts without encryption and gets Secrets (stored in plaintext);
``scan-etcd`` finds them and exits 3. The file ``encryption-config`` writes
is given to the API server as written; new Secrets are stored as KMS v2;
``rewrite-secrets`` (interrupted after 5, then resumed) turns every older
Secret into KMS v2, which ``scan-etcd`` and raw reads confirm; a plaintext
Secret planted in etcd behind the API server's back is found.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kustos.cluster.formats import classify
from tests.integration.kmsplugin.conftest import PREFIX, PluginProcess
from tests.support.kube import ControlPlane

pytestmark = pytest.mark.slow


def kustos(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "kustos"
    result = subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=300, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kustos {' '.join(args)} -> {result.returncode}: {result.stderr}")
    return result


def scan(plane: ControlPlane, *extra: str) -> tuple[int, dict[str, Any]]:
    pki = plane.root / "pki"
    result = kustos(
        "cluster",
        "scan-etcd",
        "--endpoints",
        plane.etcd_url,
        "--cacert",
        str(pki / "ca.crt"),
        "--cert",
        str(pki / "etcd-client.crt"),
        "--key",
        str(pki / "etcd-client.key"),
        "-o",
        "json",
        *extra,
        check=False,
    )
    assert result.returncode in (0, 3), result.stderr
    return result.returncode, json.loads(result.stdout)


def secret(namespace: str, name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"value": value},
    }


def test_switch_a_cluster_over_and_prove_it(assets: Path, short_dir: Path) -> None:
    plugin = PluginProcess(
        short_dir / "kms.sock", ["--backend", "local", "--key-file", str(short_dir / "kek.key")]
    ).start()
    plane = ControlPlane(assets, etcd_tls=True)
    try:
        plane.start()
        names = [(f"team-{i % 3}", f"old-{i}") for i in range(12)]
        for namespace in {ns for ns, _ in names}:
            plane.ensure_namespace(namespace)
        for namespace, name in names:
            plane.create("secrets", secret(namespace, name, f"plain {name}"))

        code, report = scan(plane)
        assert code == 3
        plain = {(i["namespace"], i["name"]) for i in report["items"] if i["format"] == "plaintext"}
        assert set(names) <= plain
        assert "value" not in json.dumps(report["items"])  # names and formats only

        # the file as the tool writes it is what the API server gets
        config = short_dir / "encryption.yaml"
        kustos(
            "cluster",
            "encryption-config",
            "--kms-socket",
            str(plugin.socket_path),
            "--kms-name",
            "kustos",
            "--resources",
            "configmaps",
            "--output",
            str(config),
        )
        assert config.stat().st_mode & 0o077 == 0
        plane.set_encryption_config(config.read_text())
        plane.stop_apiserver()
        plane.start_apiserver()

        plane.create("secrets", secret("team-0", "new-0", "fresh value"))
        raw = plane.etcd_get("/registry/secrets/team-0/new-0")
        assert raw is not None and raw.startswith(PREFIX) and b"fresh value" not in raw
        assert classify(raw).key_id == plugin.status().key_id
        for namespace, name in names:  # still readable through identity
            found = plane.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
            assert found is not None
            assert base64.b64decode(found["data"]["value"]).decode() == f"plain {name}"
        code, report = scan(plane, "--only-plaintext")
        assert code == 3
        assert {(i["namespace"], i["name"]) for i in report["items"]} >= set(names)
        assert report["summary"]["kms:v2:kustos"] >= 1

        _rewrite(plane, names, short_dir)

        # a plaintext Secret planted behind the API server's back is found
        planted = json.dumps(secret("team-1", "planted", "sneaky")).encode()
        plane.etcd_put("/registry/secrets/team-1/planted", planted)
        code, report = scan(plane, "--only-plaintext")
        assert code == 3
        assert ("team-1", "planted") in {(i["namespace"], i["name"]) for i in report["items"]}
    finally:
        plane.stop()
        plugin.stop()


def _rewrite(plane: ControlPlane, names: list[tuple[str, str]], work: Path) -> None:
    state = work / "rewrite.json"
    common = ["cluster", "rewrite-secrets", "--kubeconfig", str(plane.kubeconfig)]
    first = json.loads(
        kustos(*common, "--state-file", str(state), "--stop-after", "5", "-o", "json").stdout
    )
    assert first["rewritten"] == 5 and first["finished"] is False
    assert state.exists()
    done = sorted([*names, ("team-0", "new-0")])[:5]  # namespace/name order
    versions = {}
    for namespace, name in done:
        raw = plane.etcd_get(f"/registry/secrets/{namespace}/{name}")
        assert raw is not None and raw.startswith(PREFIX)
        found = plane.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        assert found is not None
        versions[(namespace, name)] = found["metadata"]["resourceVersion"]
    code, report = scan(plane, "--only-plaintext")
    assert code == 3
    assert {(i["namespace"], i["name"]) for i in report["items"]} == set(names) - set(done)

    second = json.loads(kustos(*common, "--state-file", str(state), "-o", "json").stdout)
    assert second["finished"] is True and second["done_in_earlier_runs"] == 5
    assert second["rewritten"] == second["secrets"] - 5
    assert not state.exists()
    code, report = scan(plane)
    assert code == 0, report
    assert set(report["summary"]) == {"kms:v2:kustos"}
    for namespace, name in names:
        raw = plane.etcd_get(f"/registry/secrets/{namespace}/{name}")
        assert raw is not None and raw.startswith(PREFIX) and f"plain {name}".encode() not in raw
        found = plane.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        assert found is not None
        assert base64.b64decode(found["data"]["value"]).decode() == f"plain {name}"
        if (namespace, name) in versions:  # resumed, not redone
            assert found["metadata"]["resourceVersion"] == versions[(namespace, name)]
