"""``kustos kv``, ``login`` and ``token`` against a real ``kustos server --dev`` over HTTP.

The CLI runs in-process through Typer's ``CliRunner`` with an explicit
environment (address, token, a temporary HOME); one test also runs the
installed ``kustos`` console script as a subprocess.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.integration.cli._support import Cli
from tests.support.server import RunningServer


def test_put_get_in_every_output_format(cli: Cli) -> None:
    put = cli.ok("kv", "put", "secret/app/db", "user=admin", "password=s3cr3t", "-o", "json")
    assert json.loads(put.stdout)["version"] == 1

    got = json.loads(cli.ok("kv", "get", "secret/app/db", "-o", "json").stdout)
    assert got["data"] == {"user": "admin", "password": "s3cr3t"}
    assert got["metadata"]["version"] == 1

    as_yaml = YAML(typ="safe", pure=True).load(
        cli.ok("kv", "get", "secret/app/db", "-o", "yaml").stdout
    )
    assert as_yaml["data"]["password"] == "s3cr3t"

    table = cli.ok("kv", "get", "secret/app/db").stdout
    assert "password" in table
    assert "s3cr3t" in table
    assert "version" in table

    assert cli.ok("kv", "get", "secret/app/db", "--field", "password").stdout == "s3cr3t\n"
    assert cli.ok("kv", "get", "--mount", "secret", "app/db", "--field", "user").stdout == "admin\n"


def test_put_reads_files_and_stdin(cli: Cli, tmp_path: Path) -> None:
    pw = tmp_path / "pw.txt"
    pw.write_text("from-file\n")
    cli.ok("kv", "put", "secret/files", f"password=@{pw}", "cert=-", input="-----BEGIN X-----\n")
    data = json.loads(cli.ok("kv", "get", "secret/files", "-o", "json").stdout)["data"]
    assert data == {"password": "from-file\n", "cert": "-----BEGIN X-----\n"}

    cli.ok("kv", "put", "secret/files", "-", input='{"port": 5432, "tls": true}')
    assert json.loads(cli.ok("kv", "get", "secret/files", "-o", "json").stdout)["data"] == {
        "port": 5432,
        "tls": True,
    }

    doc = tmp_path / "d.json"
    doc.write_text('{"a": "1"}')
    cli.ok("kv", "put", "secret/files", "--file", str(doc))
    assert cli.ok("kv", "get", "secret/files", "--field", "a").stdout == "1\n"


def test_versions_patch_and_read_by_version(cli: Cli) -> None:
    cli.ok("kv", "put", "secret/p", "a=1", "b=2")
    cli.ok("kv", "patch", "secret/p", "b=3", "c=4")
    assert json.loads(cli.ok("kv", "get", "secret/p", "-o", "json").stdout)["data"] == {
        "a": "1",
        "b": "3",
        "c": "4",
    }
    assert json.loads(cli.ok("kv", "get", "secret/p", "--version", "1", "-o", "json").stdout)[
        "data"
    ] == {"a": "1", "b": "2"}

    missing = cli.fails("kv", "patch", "secret/never-written", "a=1")
    assert "no secret at secret/never-written" in missing.stderr


def test_list_shows_folders(cli: Cli) -> None:
    cli.ok("kv", "put", "secret/team/app1", "k=v")
    cli.ok("kv", "put", "secret/team/sub/app2", "k=v")
    keys = json.loads(cli.ok("kv", "list", "secret/team", "-o", "json").stdout)
    assert keys == ["app1", "sub/"]
    assert "sub/" in cli.ok("kv", "list", "secret/team/").stdout
    assert "nothing below secret/nothing" in cli.fails("kv", "list", "secret/nothing").stderr


def test_delete_undelete_destroy_and_history(cli: Cli) -> None:
    for value in ("1", "2", "3"):
        cli.ok("kv", "put", "secret/h", f"v={value}")

    cli.ok("kv", "delete", "secret/h")
    gone = cli.fails("kv", "get", "secret/h")
    assert "version 3 of secret/h was deleted" in gone.stderr
    assert "kustos kv undelete --versions 3 secret/h" in gone.stderr

    cli.ok("kv", "undelete", "secret/h", "--versions", "3")
    assert cli.ok("kv", "get", "secret/h", "--field", "v").stdout == "3\n"

    cli.ok("kv", "delete", "secret/h", "--versions", "2")
    cli.ok("kv", "destroy", "secret/h", "--versions", "1")
    assert "was destroyed" in cli.fails("kv", "get", "secret/h", "--version", "1").stderr

    rows = json.loads(cli.ok("kv", "history", "secret/h", "-o", "json").stdout)
    by_version = {row["version"]: row for row in rows}
    assert [row["version"] for row in rows] == [3, 2, 1]
    assert by_version[3]["current"] is True
    assert by_version[3]["deleted"] == ""
    assert by_version[2]["deleted"] != ""
    assert by_version[1]["destroyed"] is True
    assert "destroyed" in cli.ok("kv", "history", "secret/h").stdout


def test_rollback_writes_old_data_as_new_version(cli: Cli) -> None:
    cli.ok("kv", "put", "secret/rb", "pw=old")
    cli.ok("kv", "put", "secret/rb", "pw=new")
    out = json.loads(cli.ok("kv", "rollback", "secret/rb", "--version", "1", "-o", "json").stdout)
    assert out["version"] == 3
    assert cli.ok("kv", "get", "secret/rb", "--field", "pw").stdout == "old\n"
    assert (
        "already the current version"
        in cli.fails("kv", "rollback", "secret/rb", "--version", "3", code=2).stderr
    )


def test_check_and_set(cli: Cli) -> None:
    cli.ok("kv", "put", "secret/cas", "--cas", "0", "k=1")
    conflict = cli.fails("kv", "put", "secret/cas", "--cas", "0", "k=2")
    assert "check-and-set" in conflict.stderr
    cli.ok("kv", "put", "secret/cas", "--cas", "1", "k=2", "--reason", "planned change")
    assert cli.ok("kv", "get", "secret/cas", "--field", "k").stdout == "2\n"
    newest = json.loads(cli.ok("kv", "history", "secret/cas", "-o", "json").stdout)[0]
    assert newest["version"] == 2
    assert newest["reason"] == "planned change"
    assert "planned change" in cli.ok("kv", "history", "secret/cas").stdout


def test_metadata_put_get_delete(cli: Cli) -> None:
    cli.ok("kv", "put", "secret/m", "k=1")
    cli.ok(
        "kv",
        "metadata",
        "put",
        "secret/m",
        "--max-versions",
        "2",
        "--custom-metadata",
        "owner=team-a",
        "--custom-metadata",
        "tier=gold",
    )
    meta = json.loads(cli.ok("kv", "metadata", "get", "secret/m", "-o", "json").stdout)
    assert meta["max_versions"] == 2
    assert meta["custom_metadata"] == {"owner": "team-a", "tier": "gold"}
    assert "owner" in cli.ok("kv", "metadata", "get", "secret/m").stdout

    cli.ok("kv", "metadata", "put", "secret/m", "--cas-required")
    assert "check-and-set parameter required" in cli.fails("kv", "put", "secret/m", "k=2").stderr
    cli.ok("kv", "put", "secret/m", "--cas", "1", "k=2")

    cli.ok("kv", "metadata", "delete", "secret/m")
    assert "no secret at secret/m" in cli.fails("kv", "get", "secret/m").stderr


def test_unknown_mount_and_bad_token(cli: Cli) -> None:
    unknown = cli.fails("kv", "get", "nosuchmount/app")
    assert "no secrets engine is mounted at nosuchmount/ (KV mounts: secret/)" in unknown.stderr
    denied = cli.fails("kv", "get", "secret/app/db", env={"KUSTOS_TOKEN": "not-a-real-token"})
    assert "the token from KUSTOS_TOKEN is not valid: it is unknown, expired or revoked" in (
        denied.stderr
    )


def test_login_saves_the_token_with_mode_0600(
    cli: Cli, kustos_server: RunningServer, tmp_path: Path
) -> None:
    home = Path(cli.env["HOME"])
    refused = cli.fails("login", "wrong-token", env={"KUSTOS_TOKEN": ""})
    assert "is not valid: it is unknown, expired or revoked" in refused.stderr
    assert not (home / ".kustos" / "token").exists()

    out = cli.ok("login", env={"KUSTOS_TOKEN": ""}, input=kustos_server.root_token + "\n")
    assert kustos_server.root_token not in out.stdout
    path = home / ".kustos" / "token"
    assert path.read_text().strip() == kustos_server.root_token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    cli.ok("kv", "put", "secret/after-login", "k=v", env={"KUSTOS_TOKEN": ""})


def test_token_create_and_lookup(cli: Cli) -> None:
    child = cli.ok(
        "token", "create", "--ttl", "1h", "--display-name", "ci", "--field", "token"
    ).stdout.strip()
    assert child
    info = json.loads(cli.ok("token", "lookup", "-o", "json", env={"KUSTOS_TOKEN": child}).stdout)
    assert "id" not in info
    assert child not in json.dumps(info)
    full = json.loads(cli.ok("token", "create", "-o", "json").stdout)
    assert full["client_token"]


def test_console_script_runs_against_the_server(
    kustos_server: RunningServer, tmp_path: Path
) -> None:
    kustos = Path(sys.executable).with_name("kustos")
    env = {
        "PATH": str(kustos.parent),
        "HOME": str(tmp_path),
        "KUSTOS_ADDR": kustos_server.addr,
        "KUSTOS_TOKEN": kustos_server.root_token,
    }
    put = subprocess.run(
        [str(kustos), "kv", "put", "secret/script", "k=v"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert put.returncode == 0, put.stderr
    got = subprocess.run(
        [str(kustos), "kv", "get", "secret/script", "--field", "k"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (got.returncode, got.stdout) == (0, "v\n")
    bad = subprocess.run(
        [str(kustos), "kv", "put", "secret/script", "oops"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "data argument 1 is not key=value" in bad.stderr


@pytest.mark.parametrize("fmt", ["json", "yaml", "table"])
def test_operator_key_commands(cli: Cli, fmt: str) -> None:
    cli.ok("kv", "put", "secret/rot", "k=v")
    before = json.loads(cli.ok("operator", "key-status", "-o", "json").stdout)
    cli.ok("operator", "rotate-key", "-o", fmt)
    after = json.loads(cli.ok("operator", "key-status", "-o", "json").stdout)
    assert after["term"] == before["term"] + 1
    result = cli.ok("operator", "rewrap", "--batch-size", "1", "-o", "json")
    assert json.loads(result.stdout)["remaining"] == 0
    assert "Rewrap done" in result.stderr
    assert cli.ok("kv", "get", "secret/rot", "--field", "k").stdout == "v\n"
