"""``kustos audit verify|search|access-map`` on real audit files written by FileAuditDevice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from kustos.audit import AuditAuth, AuditRequest, AuditResponse, FileAuditDevice
from kustos.cli.audit import parse_moment
from kustos.cli.main import app
from kustos.sensitive import Sensitive

KEY = bytes(range(32))
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
API = AuditAuth(
    client_token=Sensitive("tok-api"),
    accessor="acc-api",
    display_name="kubernetes-payments-api",
    metadata={"service_account_name": "api", "service_account_namespace": "payments"},
)
ALICE = AuditAuth(
    client_token=Sensitive("tok-alice"), accessor="acc-alice", display_name="userpass-alice"
)


@pytest.fixture
def runner(cli_runner: CliRunner) -> CliRunner:
    return cli_runner


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    ticks = iter(range(1000))
    path = tmp_path / "audit.log"
    with FileAuditDevice(
        path, hmac_key=Sensitive(KEY), clock=lambda: START + timedelta(minutes=next(ticks))
    ) as device:
        for auth, secret_path, op, status in [
            (ALICE, "secret/data/payments/db", "create", 200),
            (API, "secret/data/payments/db", "read", 200),
            (API, "secret/data/payments/db", "read", 200),
            (API, "secret/data/admin", "read", 403),
        ]:
            request = AuditRequest(
                id="r",
                operation=op,
                path=secret_path,
                client_token=auth.client_token,
                data={"password": "hunter2"},
            )
            device.log_request(auth=auth, request=request)
            device.log_response(auth=auth, request=request, response=AuditResponse(status=status))
    return path


def test_verify_ok(runner: CliRunner, audit_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "verify", str(audit_file), "-o", "json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["ok"] is True and body["entries"] == 9
    key_file = tmp_path / "key.hex"
    key_file.write_text(KEY.hex() + "\n")
    result = runner.invoke(
        app,
        ["audit", "verify", str(audit_file), "--key-file", str(key_file), "--head", body["head"]],
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (lambda ls: ls[:3] + ls[4:], 4),  # deleted
        (lambda ls: [*ls[:5], ls[5].replace(b"payments", b"paymentz"), *ls[6:]], 6),  # edited
        (lambda ls: [*ls[:6], ls[7], ls[6], *ls[8:]], 7),  # swapped
        (lambda ls: [*ls[:2], ls[1], *ls[2:]], 3),  # inserted
        (lambda ls: [*ls[:-1], ls[-1][:30]], 9),  # truncated
    ],
)
def test_verify_names_the_first_bad_line(
    runner: CliRunner, audit_file: Path, change: object, line: int
) -> None:
    lines = audit_file.read_bytes().splitlines(keepends=True)
    audit_file.write_bytes(b"".join(change(lines)))  # type: ignore[operator]
    result = runner.invoke(app, ["audit", "verify", str(audit_file), "-o", "yaml"])
    assert result.exit_code == 1
    assert f"line {line}:" in result.stderr
    assert YAML(typ="safe").load(result.stdout)["first_bad_line"] == line


def test_verify_with_a_wrong_or_bad_key(
    runner: CliRunner, audit_file: Path, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"\x07" * 32)
    result = runner.invoke(app, ["audit", "verify", str(audit_file), "--key-file", str(wrong)])
    assert result.exit_code == 1 and "line 1:" in result.stderr
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    result = runner.invoke(app, ["audit", "verify", str(audit_file), "--key-file", str(bad)])
    assert result.exit_code == 2 and "32-byte device key" in result.stderr


def test_search(runner: CliRunner, audit_file: Path) -> None:
    result = runner.invoke(
        app,
        [
            "audit",
            "search",
            str(audit_file),
            "--path",
            "secret/data/payments",
            "--who",
            "payments/api",
            "--type",
            "request",
            "-o",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["identity"], r["operation"], r["line"]) for r in rows] == [
        ("payments/api", "read", 4),
        ("payments/api", "read", 6),
    ]
    result = runner.invoke(
        app, ["audit", "search", str(audit_file), "--since", "2024-05-01T12:06:00Z", "-o", "json"]
    )
    assert [r["time"] for r in json.loads(result.stdout)] == [
        "2024-05-01T12:06:00Z",
        "2024-05-01T12:07:00Z",
        "2024-05-01T12:08:00Z",
    ]
    table = runner.invoke(app, ["audit", "search", str(audit_file), "--who", "alice"])
    assert (
        table.exit_code == 0 and "userpass-alice" in table.stdout and "hunter2" not in table.stdout
    )
    bad = runner.invoke(app, ["audit", "search", str(audit_file), "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.stderr and "yesterday" in bad.stderr
    bad = runner.invoke(app, ["audit", "search", str(audit_file), "--type", "both"])
    assert bad.exit_code == 2 and "--type" in bad.stderr


def test_access_map(runner: CliRunner, audit_file: Path) -> None:
    result = runner.invoke(app, ["audit", "access-map", str(audit_file), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "identity": "payments/api",
            "kind": "service-account",
            "path": "secret/data/admin",
            "reads": 0,
            "denied": 1,
            "first": "2024-05-01T12:08:00Z",
            "last": "2024-05-01T12:08:00Z",
        },
        {
            "identity": "payments/api",
            "kind": "service-account",
            "path": "secret/data/payments/db",
            "reads": 2,
            "denied": 0,
            "first": "2024-05-01T12:04:00Z",
            "last": "2024-05-01T12:06:00Z",
        },
    ]
    table = runner.invoke(
        app,
        ["audit", "access-map", str(audit_file), "--operation", "create"],
    )
    assert table.exit_code == 0 and "userpass-alice" in table.stdout


def test_missing_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "verify", str(tmp_path / "nope.log")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_parse_moment() -> None:
    now = datetime(2024, 5, 2, tzinfo=UTC)
    assert parse_moment("24h", now=now) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_moment("30m", now=now) == now - timedelta(minutes=30)
    assert parse_moment("2024-05-01T10:00:00", now=now) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_moment("soon", now=now)
