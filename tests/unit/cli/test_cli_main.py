"""The root command: Vault's single-dash options, plain usage errors at any width, shell completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kustos.cli.main import app, normalize_flags

KUSTOS = str(Path(sys.executable).with_name("kustos"))


@pytest.fixture(scope="module")
def root() -> object:
    import typer.main

    return typer.main.get_command(app)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["kv", "get", "-field=password", "secret/a"],
            ["kv", "get", "--field=password", "secret/a"],
        ),
        (["kv", "get", "-mount", "secret", "a"], ["kv", "get", "--mount", "secret", "a"]),
        (["kv", "get", "-format=json", "secret/a"], ["kv", "get", "--format=json", "secret/a"]),
        (
            ["token", "create", "-policy=app", "-ttl=1h"],
            ["token", "create", "--policy=app", "--ttl=1h"],
        ),
        (
            ["kv", "put", "-address=http://x:1", "s/a", "k=v"],
            ["kv", "put", "--address=http://x:1", "s/a", "k=v"],
        ),
        # short options, unknown words, values and '-' (stdin) are left alone
        (["kv", "get", "-o", "json", "secret/a"], ["kv", "get", "-o", "json", "secret/a"]),
        (["kv", "put", "s/a", "-"], ["kv", "put", "s/a", "-"]),
        (["kv", "get", "-nosuch=1", "s/a"], ["kv", "get", "-nosuch=1", "s/a"]),
        (["exec-env", "f.env", "--", "-field=x"], ["exec-env", "f.env", "--", "-field=x"]),
        (["seal", "-cert", "c.pem", "-f", "s.yaml"], ["seal", "--cert", "c.pem", "-f", "s.yaml"]),
    ],
)
def test_single_dash_long_options_become_double_dash(
    root: object, argv: list[str], expected: list[str]
) -> None:
    assert normalize_flags(root, argv) == expected


def test_single_dash_options_work_end_to_end(cli_runner: CliRunner, tmp_path: Path) -> None:
    policy = tmp_path / "app.hcl"
    policy.write_text('path "secret/data/app/*" {\n  capabilities = ["read"]\n}\n')
    result = cli_runner.invoke(
        app, ["policy", "eval", str(policy), "-path=secret/data/app/db", "-format=json"]
    )
    assert result.exit_code == 0, result.stderr
    assert '"capabilities": "read"' in result.stdout


@pytest.mark.parametrize("columns", ["40", "200"])
def test_usage_errors_are_plain_text_at_any_width(
    cli_runner: CliRunner, tmp_path: Path, columns: str
) -> None:
    missing = tmp_path / ("a-long-directory-name-" * 4) / "audit.log"
    result = cli_runner.invoke(app, ["audit", "verify", str(missing)], env={"COLUMNS": columns})
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert str(missing) in result.stderr  # on one line, never cut by the width
    assert not any(ch in result.stderr for ch in "╭│╰─")


@pytest.mark.parametrize("columns", ["40", "200"])
def test_fail_prints_one_line_however_long(
    cli_runner: CliRunner, tmp_path: Path, columns: str
) -> None:
    key = tmp_path / ("k" * 120)
    key.write_bytes(b"not a key")
    log = tmp_path / "audit.log"
    log.write_text("")
    result = cli_runner.invoke(
        app, ["audit", "verify", str(log), "--key-file", str(key)], env={"COLUMNS": columns}
    )
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: key file") and str(key) in line


def test_unknown_command_is_a_usage_error(cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(app, ["kv", "gte", "secret/a"])
    assert result.exit_code == 2
    assert "No such command 'gte'" in result.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(cli_runner: CliRunner, shell: str) -> None:
    result = cli_runner.invoke(app, ["completion", shell])
    assert result.exit_code == 0, result.stderr
    assert "_KUSTOS_COMPLETE" in result.stdout


def test_completion_answers_the_shell() -> None:
    env = {
        **os.environ,
        "_KUSTOS_COMPLETE": "complete_bash",
        "COMP_WORDS": "kustos kv ge",
        "COMP_CWORD": "2",
    }
    done = subprocess.run(
        [KUSTOS], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "get" in done.stdout.split()
    env.update(COMP_WORDS="kustos secr", COMP_CWORD="1")
    done = subprocess.run(
        [KUSTOS], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert "secrets" in done.stdout.split()
