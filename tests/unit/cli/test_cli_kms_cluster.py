"""``kustos kms-plugin`` and ``kustos cluster`` on bad input: a message naming the problem, a non-zero exit."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kustos.cli.main import build_app


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., tuple[int, str]]:
    runner = CliRunner()
    app = build_app(["kmsplugin", "cluster"])

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), env={"HOME": str(tmp_path), "COLUMNS": "200"})
        return result.exit_code, result.output

    return invoke


def test_kms_plugin_refuses_bad_settings(
    run: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    code, out = run(
        "kms-plugin", "--listen", "tcp://127.0.0.1:9", "--key-file", str(tmp_path / "k")
    )
    assert code == 1 and "unix socket" in out
    code, out = run("kms-plugin", "--listen", "unix:///tmp/x.sock", "--backend", "vault")
    assert code == 1 and "unknown --backend" in out
    code, out = run("kms-plugin", "--listen", "unix:///tmp/x.sock", "--backend", "local")
    assert code == 1 and "--key-file" in out
    code, out = run("kms-plugin", "--listen", "unix:///tmp/x.sock", "--backend", "pkcs11")
    assert code == 1 and "--pkcs11-module" in out
    key = tmp_path / "open.key"
    key.write_text("x" * 44 + "\n")
    key.chmod(0o644)
    code, out = run("kms-plugin", "--listen", "unix:///tmp/x.sock", "--key-file", str(key))
    assert code == 1 and "chmod 600" in out


def test_encryption_config_output(run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    code, out = run(
        "cluster", "encryption-config", "--kms-socket", "/run/kms.sock", "--kms-name", "k"
    )
    assert code == 0
    document = yaml.safe_load(out)
    assert document["kind"] == "EncryptionConfiguration"
    code, out = run("cluster", "encryption-config", "--kms-name", "k")
    assert code == 2 and "--kms-socket" in out
    target = tmp_path / "enc.yaml"
    code, _ = run("cluster", "encryption-config", "--aescbc", "--output", str(target))
    assert code == 0 and target.stat().st_mode & 0o777 == 0o600
    assert (
        next(iter(yaml.safe_load(target.read_text())["resources"][0]["providers"][0])) == "aescbc"
    )


def test_scan_etcd_errors(run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out = run("cluster", "scan-etcd", "--endpoints", f"http://127.0.0.1:{port}")
    assert code == 1 and "cannot reach etcd" in out
    code, out = run("cluster", "scan-etcd", "--endpoints", "127.0.0.1:2379")
    assert code == 1 and "http://" in out
    code, out = run(
        "cluster", "scan-etcd", "--endpoints", f"http://127.0.0.1:{port}", "--cacert", "/nope"
    )
    assert code == 1 and "not https://" in out
