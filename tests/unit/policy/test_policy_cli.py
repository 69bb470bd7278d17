"""``kustos policy check|fmt|eval`` work offline on policy files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kustos.cli.main import app

APP = """# the app
path "secret/data/app/*" {
    capabilities = [ "read","list" ]
}
path "secret/data/app/admin" { capabilities = ["deny"] }
"""


@pytest.fixture
def runner(cli_runner: CliRunner) -> CliRunner:
    return cli_runner


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.hcl"
    path.write_text(APP)
    return path


def test_check_lists_rules(runner: CliRunner, app_file: Path) -> None:
    result = runner.invoke(app, ["policy", "check", str(app_file), "-o", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["policy"], r["line"], r["path"], r["capabilities"]) for r in rows] == [
        ("app", 2, "secret/data/app/*", "read, list"),
        ("app", 5, "secret/data/app/admin", "deny"),
    ]


def test_check_names_the_error(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.hcl"
    bad.write_text(
        'path "ok" {\n  capabilities = ["read"]\n}\n\npath "secret/*" {\n  capabilities = ["raed"]\n}\n'
    )
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert "bad.hcl" in result.stderr and "line 5" in result.stderr and "'raed'" in result.stderr


def test_fmt_prints_writes_and_checks(runner: CliRunner, app_file: Path) -> None:
    printed = runner.invoke(app, ["policy", "fmt", str(app_file)])
    assert printed.exit_code == 0
    assert printed.stdout == (
        'path "secret/data/app/*" {\n  capabilities = ["read", "list"]\n}\n\n'
        'path "secret/data/app/admin" {\n  capabilities = ["deny"]\n}\n'
    )
    assert runner.invoke(app, ["policy", "fmt", "--check", str(app_file)]).exit_code == 1
    refused = runner.invoke(app, ["policy", "fmt", "--write", str(app_file)])
    assert refused.exit_code == 2 and "comments" in refused.stderr
    assert app_file.read_text() == APP
    assert (
        runner.invoke(app, ["policy", "fmt", "--write", "--drop-comments", str(app_file)]).exit_code
        == 0
    )
    assert app_file.read_text() == printed.stdout
    assert runner.invoke(app, ["policy", "fmt", "--check", str(app_file)]).exit_code == 0


def test_eval_shows_capabilities_and_the_deciding_rule(runner: CliRunner, app_file: Path) -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "eval",
            str(app_file),
            "-p",
            "secret/data/app/db",
            "-p",
            "secret/data/app/admin",
            "-p",
            "secret/data/other",
            "-p",
            "auth/token/lookup-self",
            "-o",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {r["path"]: r for r in json.loads(result.stdout)}
    assert rows["secret/data/app/db"]["capabilities"] == "list, read"
    assert rows["secret/data/app/db"]["rule"] == "secret/data/app/*"
    assert rows["secret/data/app/admin"]["capabilities"] == "deny"
    assert rows["secret/data/other"]["rule"] == "(none: default deny)"
    assert rows["auth/token/lookup-self"]["policies"] == "default"
    no_default = runner.invoke(
        app,
        [
            "policy",
            "eval",
            str(app_file),
            "--no-default",
            "-p",
            "auth/token/lookup-self",
            "-o",
            "json",
        ],
    )
    assert json.loads(no_default.stdout)[0]["capabilities"] == "deny"
