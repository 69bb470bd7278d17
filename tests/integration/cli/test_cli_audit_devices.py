"""``kustos audit enable|list|hash|disable`` against a real server, then ``audit verify`` on what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.cli._support import Cli


def test_enable_list_hash_verify_disable(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    cli.ok(
        "audit",
        "enable",
        "file",
        "--path",
        "cli-file",
        f"file_path={log}",
        "--description",
        "from the CLI",
    )

    devices = json.loads(cli.ok("audit", "list", "-o", "json").stdout)
    assert {
        "path": "cli-file/",
        "type": "file",
        "description": "from the CLI",
        "options": {"file_path": str(log)},
    } in devices

    cli.ok("kv", "put", "secret/audited", "password=audit-cli-plaintext")
    cli.ok("kv", "get", "secret/audited")
    text = log.read_text()
    assert "audit-cli-plaintext" not in text
    assert '"path":"secret/data/audited"' in text.replace(" ", "")

    digest = cli.ok("audit", "hash", "cli-file", "audit-cli-plaintext").stdout.strip()
    assert digest.startswith("hmac-sha256:")
    assert digest in text  # the value is findable in the file by its HMAC, never in clear

    cli.ok("audit", "verify", str(log))
    cli.ok("audit", "disable", "cli-file")
    assert all(
        d["path"] != "cli-file/" for d in json.loads(cli.ok("audit", "list", "-o", "json").stdout)
    )


def test_enable_rejects_a_malformed_option(cli: Cli) -> None:
    result = cli.fails("audit", "enable", "file", "file_path", code=2)
    assert "device option 1 is not OPTION=VALUE" in result.stderr
