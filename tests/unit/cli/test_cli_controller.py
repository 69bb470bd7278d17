"""``kustos controller run`` (and its old name ``kustos operator run``): connection errors are clear."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kustos.cli.main import app


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "KUBECONFIG": "",
        "KUBERNETES_SERVICE_HOST": "",
        "KUSTOS_ADDR": "",
        "COLUMNS": "200",
    }


@pytest.mark.parametrize("command", [["controller", "run"], ["operator", "run"]])
def test_no_credentials_anywhere(command: list[str], env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 1
    assert "no Kubernetes credentials" in result.output
    assert "--kubeconfig" in result.output


def test_a_missing_kubeconfig_or_context(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.kubeconfig"
    result = CliRunner().invoke(app, ["controller", "run", "--kubeconfig", str(missing)], env=env)
    assert result.exit_code == 1 and f"kubeconfig {missing} does not exist" in result.output
    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: a\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: a, context: {cluster: c, user: u}}]\n"
    )
    result = CliRunner().invoke(
        app, ["controller", "run", "--kubeconfig", str(config), "--context", "nope"], env=env
    )
    assert result.exit_code == 1 and "'nope'" in result.output


def test_the_old_name_is_hidden_and_the_new_one_listed(env: dict[str, str]) -> None:
    listed = CliRunner().invoke(app, ["operator", "--help"], env=env).output
    assert " run " not in listed and "unseal" in listed
    root = CliRunner().invoke(app, ["--help"], env=env).output
    assert "controller" in root
