"""The CLI for auth methods against a real server: `kustos auth enable|list|disable`,
generic `kustos write|read|list|delete`, and `kustos login --method userpass|approle|kubernetes`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cli._support import Cli, cli_env
from tests.support.server import RunningServer
from tests.unit.server.auth.k8s_jwts import AUDIENCE, ISSUER, ClusterKeys


@pytest.fixture
def cli(kustos_server: RunningServer, tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(env=cli_env(kustos_server, home))


def _saved_token(cli: Cli) -> str:
    return (Path(cli.env["HOME"]) / ".kustos" / "token").read_text().strip()


def test_kubernetes_end_to_end_with_the_cli(cli: Cli, tmp_path: Path) -> None:
    keys = ClusterKeys()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    cli.ok("auth", "enable", "kubernetes", "--path", "k8s-cli")
    listed = json.loads(cli.ok("auth", "list", "-o", "json").stdout)
    assert {"path": "k8s-cli/", "type": "kubernetes"}.items() <= next(
        r for r in listed if r["path"] == "k8s-cli/"
    ).items()
    cli.ok("write", "auth/k8s-cli/config", f"jwks=@{jwks}", f"issuer={ISSUER}")
    cli.ok(
        "write",
        "auth/k8s-cli/role/app",
        "bound_service_account_names=app",
        "bound_service_account_namespaces=prod",
        f"audience={AUDIENCE}",
        "token_policies=app-read",
        "token_policies=app-list",
        "token_ttl=1h",
    )
    role = json.loads(cli.ok("read", "auth/k8s-cli/role/app", "-o", "json").stdout)
    assert role["token_policies"] == ["app-read", "app-list"] and role[
        "bound_service_account_namespaces"
    ] == ["prod"]
    assert json.loads(cli.ok("list", "auth/k8s-cli/role", "-o", "json").stdout) == [{"key": "app"}]
    jwt_file = tmp_path / "token"
    jwt_file.write_text(keys.token(namespace="prod", name="app"))
    login = cli.ok(
        "login",
        "--method",
        "kubernetes",
        "--path",
        "k8s-cli",
        "--role",
        "app",
        "--jwt-file",
        str(jwt_file),
        "-o",
        "json",
    )
    info = json.loads(login.stdout)
    assert "client_token" not in info and info["metadata"]["service_account_namespace"] == "prod"
    assert _saved_token(cli) not in login.stdout + login.stderr
    me = json.loads(cli.ok("token", "lookup", "-o", "json", env={"KUSTOS_TOKEN": ""}).stdout)
    assert me["display_name"] == "k8s-cli-prod-app"
    jwt_file.write_text(keys.token(namespace="dev", name="app"))
    denied = cli.fails(
        "login",
        "--method",
        "kubernetes",
        "--path",
        "k8s-cli",
        "--role",
        "app",
        "--jwt-file",
        str(jwt_file),
    )
    assert "namespace not authorized" in denied.stderr
    cli.ok("delete", "auth/k8s-cli/role/app")
    cli.fails("read", "auth/k8s-cli/role/app")
    cli.ok("auth", "disable", "k8s-cli")
    assert "k8s-cli/" not in cli.ok("auth", "list").stdout


def test_userpass_and_approle_logins_with_the_cli(cli: Cli) -> None:
    cli.ok("auth", "enable", "userpass", "--path", "up-cli")
    cli.ok(
        "write",
        "auth/up-cli/users/erin",
        "password=-",
        "token_policies=dev",
        input="erins password\n",
    )
    login = cli.ok(
        "login",
        "--method",
        "userpass",
        "--path",
        "up-cli",
        "--username",
        "erin",
        "-o",
        "json",
        input="erins password\n",
    )
    assert json.loads(login.stdout)["policies"] == ["default", "dev"]
    wrong = cli.fails(
        "login", "-m", "userpass", "--path", "up-cli", "--username", "erin", input="nope\n"
    )
    assert "invalid username or password" in wrong.stderr
    cli.ok("auth", "enable", "approle", "--path", "ar-cli")
    cli.ok("write", "auth/ar-cli/role/build", "token_policies=build", "secret_id_num_uses=1")
    role_id = json.loads(cli.ok("read", "auth/ar-cli/role/build/role-id", "-o", "json").stdout)[
        "role_id"
    ]
    secret = json.loads(
        cli.ok("write", "-f", "auth/ar-cli/role/build/secret-id", "-o", "json").stdout
    )
    cli.ok(
        "login",
        "-m",
        "approle",
        "--path",
        "ar-cli",
        "--role-id",
        role_id,
        input=secret["secret_id"] + "\n",
    )
    used = cli.fails(
        "login",
        "-m",
        "approle",
        "--path",
        "ar-cli",
        "--role-id",
        role_id,
        input=secret["secret_id"] + "\n",
    )
    assert "invalid role or secret ID" in used.stderr
    bad = cli.fails("write", "auth/ar-cli/role/x", "novalue", code=2)
    assert "expected key=value" in bad.stderr
    missing = cli.fails("login", "-m", "approle", "--path", "ar-cli", code=2)
    assert "--role-id is required" in missing.stderr
