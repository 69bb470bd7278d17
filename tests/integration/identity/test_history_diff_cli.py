"""``kustos kv history`` and ``kustos kv diff`` against a real server: identity and reason per version,
key names added/changed/removed, never values unless ``--show-values`` with read permission."""

from __future__ import annotations

import json
from pathlib import Path

import hvac

from tests.integration.cli._support import Cli, cli_env
from tests.support.server import RunningServer


def test_history_and_diff_show_identity_and_reason(
    kustos_server: RunningServer, vault: hvac.Client, tmp_path: Path
) -> None:
    cli = Cli(env=cli_env(kustos_server, tmp_path))
    vault.sys.create_or_update_acl_policy(
        name="payments-writer",
        policy='path "secret/data/payments/*" { capabilities = ["create", "update"] }\n'
        'path "secret/metadata/payments/*" { capabilities = ["read"] }\n'
        'path "secret/subkeys/payments/*" { capabilities = ["read"] }',
    )
    writer = vault.auth.token.create(
        policies=["payments-writer"], ttl="1h", display_name="ci-pipeline"
    )["auth"]["client_token"]
    cli.ok(
        "kv",
        "put",
        "secret/payments/db",
        "user=app",
        "password=first-secret-value",
        "--reason",
        "initial setup",
    )
    as_writer = {"KUSTOS_TOKEN": writer}
    cli.ok(
        "kv",
        "put",
        "secret/payments/db",
        "user=app",
        "password=second-secret-value",
        "host=db1",
        "--reason",
        "rotate after incident 42",
        env=as_writer,
    )
    cli.ok(
        "kv",
        "put",
        "secret/payments/db",
        "password=second-secret-value",
        "host=db2",
        "--reason",
        "move host",
        env=as_writer,
    )

    history = json.loads(
        cli.ok("kv", "history", "secret/payments/db", "-o", "json", env=as_writer).stdout
    )
    by_version = {row["version"]: row for row in history}
    assert by_version[1]["who"] == "root" and by_version[1]["reason"] == "initial setup"
    assert by_version[1]["added"] == ["password", "user"]
    assert (
        by_version[2]["who"] == "token-ci-pipeline"
        and by_version[2]["reason"] == "rotate after incident 42"
    )
    assert (by_version[2]["added"], by_version[2]["changed"], by_version[2]["removed"]) == (
        ["host"],
        ["password"],
        [],
    )
    assert (by_version[3]["added"], by_version[3]["changed"], by_version[3]["removed"]) == (
        [],
        ["host"],
        ["user"],
    )
    table = cli.ok("kv", "history", "secret/payments/db", env=as_writer).stdout
    assert "rotate after incident 42" in table and "token-ci-pipeline" in table
    assert "secret-value" not in table and "db1" not in table

    diff = json.loads(
        cli.ok("kv", "diff", "secret/payments/db", "1", "3", "-o", "json", env=as_writer).stdout
    )
    assert diff["who"] == "token-ci-pipeline" and diff["reason"] == "move host"
    assert {row["key"]: row["change"] for row in diff["keys"]} == {
        "host": "added",
        "password": "changed",
        "user": "removed",
    }
    assert "secret-value" not in json.dumps(diff)
    denied = cli.fails("kv", "diff", "secret/payments/db", "1", "2", "--show-values", env=as_writer)
    assert (
        "--show-values needs read" in denied.stderr
        and "secret-value" not in denied.stderr + denied.stdout
    )

    shown = json.loads(
        cli.ok("kv", "diff", "secret/payments/db", "1", "2", "--show-values", "-o", "json").stdout
    )
    rows = {row["key"]: row for row in shown["keys"]}
    assert (
        rows["password"]["v1"] == "first-secret-value"
        and rows["password"]["v2"] == "second-secret-value"
    )
    assert "user" not in rows  # unchanged
