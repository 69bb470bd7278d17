"""Vault CLI habits against a real server: single-dash flags, -o json on every data command,
piped tables, `kustos secrets`, token errors told apart from policy denies, ~/.vault-token."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.integration.cli._support import Cli
from tests.support.server import RunningServer


def test_single_dash_flags_like_vault(cli: Cli) -> None:
    cli.ok("kv", "put", "-mount=secret", "habits/db", "password=s3cr3t", "user=app")
    assert cli.ok("kv", "get", "-mount=secret", "-field=password", "habits/db").stdout == "s3cr3t\n"
    doc = json.loads(cli.ok("kv", "get", "-format=json", "secret/habits/db").stdout)
    assert doc["data"] == {"password": "s3cr3t", "user": "app"}
    created = json.loads(
        cli.ok("token", "create", "-policy=default", "-ttl=10m", "-format=json").stdout
    )
    assert created["policies"] == ["default"]


def test_every_write_command_answers_json(cli: Cli, tmp_path: Path) -> None:
    cli.ok("kv", "put", "secret/j/x", "a=1")
    cli.ok("kv", "put", "secret/j/x", "a=2")

    def as_json(*args: str) -> dict[str, object]:
        result = cli.ok(*args, "-o", "json")
        assert result.stderr == "", result.stderr
        doc = json.loads(result.stdout)
        assert isinstance(doc, dict)
        return doc

    assert as_json("kv", "delete", "secret/j/x") == {
        "path": "secret/j/x",
        "deleted": [2],
        "unchanged": [],
    }
    assert as_json("kv", "undelete", "--versions", "2", "secret/j/x")["restored"] == [2]
    assert as_json("kv", "destroy", "--versions", "1", "secret/j/x")["destroyed"] == [1]
    assert (
        as_json("kv", "metadata", "put", "--max-versions", "5", "secret/j/x")["max_versions"] == 5
    )
    policy = tmp_path / "p.hcl"
    policy.write_text('path "secret/data/j/*" {\n  capabilities = ["read"]\n}\n')
    assert as_json("policy", "write", "j-reader", str(policy)) == {
        "name": "j-reader",
        "written": True,
    }
    assert "secret/data/j/*" in str(as_json("policy", "read", "j-reader")["policy"])
    assert as_json("auth", "enable", "userpass", "--path", "up-json")["type"] == "userpass"
    assert as_json("secrets", "enable", "--path", "kv-json", "kv")["path"] == "kv-json/"
    child = json.loads(cli.ok("token", "create", "-o", "json").stdout)["client_token"]
    assert as_json("token", "revoke", "--target", child)["revoked"] == "target"
    assert as_json("kv", "metadata", "delete", "secret/j/x") == {
        "path": "secret/j/x",
        "deleted": True,
    }
    assert as_json("policy", "delete", "j-reader")["deleted"] is True


def test_delete_undelete_destroy_say_what_really_happened(cli: Cli) -> None:
    missing = cli.fails("kv", "delete", "secret/never/written")
    assert "no secret at secret/never/written" in missing.stderr
    cli.ok("kv", "put", "secret/d/x", "a=1")
    live = cli.ok("kv", "undelete", "--versions", "1", "secret/d/x")
    assert "Nothing restored: version 1 is not deleted at secret/d/x" in live.stderr
    assert "no version 7" in cli.fails("kv", "undelete", "--versions", "7", "secret/d/x").stderr
    cli.ok("kv", "delete", "secret/d/x")
    again = cli.fails("kv", "delete", "secret/d/x")
    assert "the latest version (1) of secret/d/x is already deleted" in again.stderr
    assert (
        "Restored version 1 of secret/d/x"
        in cli.ok("kv", "undelete", "--versions", "1", "secret/d/x").stderr
    )
    cli.ok("kv", "destroy", "--versions", "1", "secret/d/x")
    gone = cli.fails("kv", "undelete", "--versions", "1", "secret/d/x")
    assert "was destroyed and cannot be restored" in gone.stderr


def test_piped_tables_are_tab_separated(cli: Cli) -> None:
    cli.ok("kv", "put", "secret/t/one", "a=1")
    cli.ok("kv", "put", "secret/t/two", "a=1")
    assert cli.ok("kv", "list", "secret/t").stdout == "Keys\none\ntwo\n"
    lines = cli.ok("secrets", "list").stdout.splitlines()
    assert lines[0] == "path\ttype\taccessor\tdescription"
    assert any(line.startswith("secret/\tkv\t") for line in lines[1:])


def test_secrets_enable_tune_move_disable(cli: Cli) -> None:
    cli.ok("secrets", "enable", "-path=apps", "-description=team apps", "kv")
    cli.ok("kv", "put", "apps/web", "key=v1")
    cli.ok("kv", "put", "apps/web", "key=v2")
    tuned = json.loads(cli.ok("secrets", "tune", "-max-lease-ttl=2h", "apps", "-o", "json").stdout)
    assert tuned["max_lease_ttl"] == 7200 and tuned["description"] == "team apps"
    cli.ok("secrets", "move", "apps", "teams")
    assert cli.ok("kv", "get", "-field=key", "teams/web").stdout == "v2\n"
    history = json.loads(cli.ok("kv", "history", "teams/web", "-o", "json").stdout)
    assert [row["version"] for row in history] == [2, 1]
    assert "no secrets engine is mounted at apps/" in cli.fails("kv", "get", "apps/web").stderr
    cli.ok("secrets", "enable", "-path=enc", "transit")
    listed = json.loads(cli.ok("secrets", "list", "-o", "json").stdout)
    assert listed["enc/"]["type"] == "transit" and "teams/" in listed and "apps/" not in listed
    cli.ok("secrets", "disable", "teams")
    cli.ok("secrets", "disable", "enc")
    assert (
        "no secrets engine is mounted at teams/" in cli.fails("secrets", "disable", "teams").stderr
    )
    assert "only KV version 2" in cli.fails("secrets", "enable", "-version=1", "kv").stderr


def test_invalid_token_and_policy_deny_are_told_apart(cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "none.hcl"
    policy.write_text('path "secret/data/elsewhere/*" {\n  capabilities = ["read"]\n}\n')
    cli.ok("policy", "write", "elsewhere", str(policy))
    token = json.loads(cli.ok("token", "create", "--policy", "elsewhere", "-o", "json").stdout)[
        "client_token"
    ]
    denied = cli.fails("kv", "get", "secret/app/db", env={"KUSTOS_TOKEN": token})
    assert (
        "permission denied" in denied.stderr and "its policies do not allow this" in denied.stderr
    )
    cli.ok("token", "revoke", "--target", token)
    revoked = cli.fails("kv", "get", "secret/app/db", env={"KUSTOS_TOKEN": token})
    assert "is not valid: it is unknown, expired or revoked" in revoked.stderr
    assert "policies" not in revoked.stderr


def test_vault_token_file_and_vault_env_are_honoured(
    cli: Cli, kustos_server: RunningServer
) -> None:
    home = Path(cli.env["HOME"])
    (home / ".vault-token").write_text(kustos_server.root_token + "\n")
    env = {"KUSTOS_TOKEN": "", "KUSTOS_ADDR": "", "VAULT_ADDR": kustos_server.addr}
    cli.ok("kv", "put", "secret/vt/x", "a=1", env=env)
    assert cli.ok("kv", "get", "-field=a", "secret/vt/x", env=env).stdout == "1\n"
    pem = cli.ok("seal", "--fetch-cert", env=env).stdout
    assert pem.startswith("-----BEGIN CERTIFICATE-----")


def test_bad_address_is_one_line(cli: Cli) -> None:
    result = cli.run("kv", "get", "secret/x", env={"KUSTOS_ADDR": "http://[::1"})
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: server address from KUSTOS_ADDR is not a valid URL")
    assert len(result.stderr.splitlines()) == 1


def test_write_force_sends_an_empty_body(cli: Cli) -> None:
    cli.ok("secrets", "enable", "-path=tr-force", "transit")
    refused = cli.fails("write", "tr-force/keys/app", code=2)
    assert "--force (-f)" in refused.stderr
    cli.ok("write", "-f", "tr-force/keys/app")
    assert json.loads(cli.ok("read", "tr-force/keys/app", "-o", "json").stdout)["name"] == "app"
    cli.ok("secrets", "disable", "tr-force")


def test_seal_takes_several_files_and_documents(cli: Cli, tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: ns}\nstringData: {k: one}\n"
    )
    second = tmp_path / "b.yaml"
    second.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: ns}\nstringData: {k: two}\n"
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: c, namespace: ns}\nstringData: {k: three}\n"
    )
    out = json.loads(cli.ok("seal", "-f", str(first), "-f", str(second)).stdout)
    assert out["kind"] == "List"
    assert [item["metadata"]["name"] for item in out["items"]] == ["a", "b", "c"]
    sealed = tmp_path / "sealed.json"
    sealed.write_text(json.dumps(out))
    cli.ok("seal", "--validate", "-f", str(sealed))


def test_an_expired_token_is_told_apart_from_a_policy_deny(cli: Cli) -> None:
    token = json.loads(cli.ok("token", "create", "--ttl", "1s", "-o", "json").stdout)[
        "client_token"
    ]
    deadline = time.monotonic() + 30
    while (result := cli.run("token", "lookup", env={"KUSTOS_TOKEN": token})).exit_code == 0:
        assert time.monotonic() < deadline, "a token with a ttl of 1s still works after 30s"
        time.sleep(0.2)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: the token from KUSTOS_TOKEN is not valid: it is unknown, expired or revoked"
    ), result.stderr
    assert "policies" not in result.stderr
