"""The CLI's answers that need no server: bad input (exit 2), no token, unreachable server (exit 1), output rendering.

Commands run through Typer's ``CliRunner`` with an explicit environment and a
temporary HOME, so no real ``~/.kustos/token`` or ``KUSTOS_*`` variable leaks in.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from kustos.cli.kv import history_rows
from kustos.cli.main import app
from kustos.cli.output import OutputFormat, render


@pytest.fixture
def runner(cli_runner: CliRunner) -> CliRunner:
    return cli_runner


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return {
        "HOME": str(tmp_path),
        "KUSTOS_ADDR": f"http://127.0.0.1:{port}",
        "KUSTOS_TOKEN": "t",
        "VAULT_ADDR": "",
        "VAULT_TOKEN": "",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kv", "put", "secret"], "names only a mount"),
        (["kv", "put", "secret/app"], "no data given"),
        (["kv", "put", "secret/app", "oops"], "data argument 1 is not key=value"),
        (["kv", "put", "secret/app", "k=@/nonexistent/file"], "file not found"),
        (["kv", "get", "secret/a/../b"], "'..'"),
        (["kv", "destroy", "secret/app"], "--versions is required"),
        (["kv", "undelete", "secret/app", "--versions", "one"], "positive integers"),
        (["kv", "metadata", "put", "secret/app"], "nothing to change"),
        (
            ["kv", "metadata", "put", "secret/app", "--custom-metadata", "novalue"],
            "--custom-metadata expects key=value",
        ),
        (["kv", "rollback", "secret/app", "--version", "0"], "--version must be 1 or more"),
        (
            ["operator", "init", "--key-shares", "3", "--key-threshold", "4"],
            "--key-threshold must be between 1",
        ),
        (["token", "create", "--meta", "x"], "--meta expects key=value"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    runner: CliRunner, env: dict[str, str], args: list[str], message: str
) -> None:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr
    assert message in result.stderr


def test_missing_token_says_how_to_get_one(runner: CliRunner, env: dict[str, str]) -> None:
    env["KUSTOS_TOKEN"] = ""
    result = runner.invoke(app, ["kv", "get", "secret/app"], env=env)
    assert result.exit_code == 2
    assert "kustos login" in result.stderr


def test_unreachable_server_names_the_address_and_how_to_start_one(
    runner: CliRunner, env: dict[str, str]
) -> None:
    result = runner.invoke(app, ["kv", "get", "secret/app"], env=env)
    assert result.exit_code == 1
    assert env["KUSTOS_ADDR"] in result.stderr
    assert "connection refused" in result.stderr
    assert "kustos server --dev" in result.stderr
    assert "KUSTOS_ADDR" in result.stderr


def test_bad_output_format_is_a_usage_error(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["kv", "get", "secret/app", "-o", "xml"], env=env)
    assert result.exit_code == 2


def test_render_history_as_json_yaml_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    rows = history_rows(
        {
            "current_version": 2,
            "versions": {
                "1": {"created_time": "t1", "deletion_time": "", "destroyed": False},
                "2": {
                    "created_time": "t2",
                    "deletion_time": "",
                    "destroyed": False,
                    "reason": "why",
                },
            },
        }
    )
    render(rows, OutputFormat.json)
    assert json.loads(capsys.readouterr().out)[0] == {
        "version": 2,
        "created": "t2",
        "who": "",
        "reason": "why",
        "added": None,
        "changed": None,
        "removed": None,
        "deleted": "",
        "destroyed": False,
        "current": True,
    }
    render(rows, OutputFormat.yaml)
    parsed = YAML(typ="safe", pure=True).load(capsys.readouterr().out)
    assert parsed[0]["version"] == 2
    assert parsed[0]["reason"] == "why"
    assert parsed[1]["version"] == 1
    render(rows, OutputFormat.table, title="History")
    table = capsys.readouterr().out.splitlines()  # not a terminal: tab-separated, any width
    assert table[0].split("\t")[:4] == ["version", "created", "who", "reason"]
    assert table[1].split("\t")[:4] == ["2", "t2", "", "why"]
