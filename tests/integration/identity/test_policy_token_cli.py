"""``kustos policy write|read|list|delete`` and ``kustos token lookup|renew|revoke`` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import hvac

from tests.integration.cli._support import Cli, cli_env
from tests.support.server import RunningServer


def test_policy_commands(kustos_server: RunningServer, tmp_path: Path) -> None:
    cli = Cli(env=cli_env(kustos_server, tmp_path))
    document = tmp_path / "app.hcl"
    document.write_text('path "secret/data/app/*" {\n  capabilities = ["read"]\n}\n')
    cli.ok("policy", "write", "app", str(document))
    assert cli.ok("policy", "read", "app").stdout == document.read_text()
    assert "app" in {
        row["name"] for row in json.loads(cli.ok("policy", "list", "-o", "json").stdout)
    }
    bad = tmp_path / "bad.hcl"
    bad.write_text('path "a/*" {\n  capabilities = ["reed"]\n}\n')
    assert "line 1" in cli.fails("policy", "write", "bad", str(bad)).stderr
    assert "default policy" in cli.fails("policy", "delete", "default").stderr
    cli.ok("policy", "delete", "app")
    assert "app" not in {
        row["name"] for row in json.loads(cli.ok("policy", "list", "-o", "json").stdout)
    }


def test_token_commands(kustos_server: RunningServer, vault: hvac.Client, tmp_path: Path) -> None:
    cli = Cli(env=cli_env(kustos_server, tmp_path))
    created = json.loads(
        cli.ok("token", "create", "--policy", "default", "--ttl", "10m", "-o", "json").stdout
    )
    token, accessor = created["client_token"], created["accessor"]
    looked = json.loads(cli.ok("token", "lookup", "--accessor", accessor, "-o", "json").stdout)
    assert looked["policies"] == ["default"] and token not in json.dumps(looked)
    renewed = json.loads(
        cli.ok(
            "token",
            "renew",
            "--target",
            "-",
            "--increment",
            "20m",
            "-o",
            "json",
            input=token + "\n",
        ).stdout
    )
    assert 1100 < renewed["lease_duration"] <= 1200 and "client_token" not in renewed
    denied = cli.fails("token", "lookup", "--accessor", accessor, env={"KUSTOS_TOKEN": token})
    assert "permission denied" in denied.stderr
    cli.ok("token", "revoke", "--accessor", accessor)
    assert cli.fails("token", "lookup", env={"KUSTOS_TOKEN": token}).exit_code == 1
