"""``kustos operator`` against a real Shamir-sealed server: init, unseal share by share, seal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kustos.client import KustosClient
from tests.integration.cli._support import Cli, cli_env
from tests.support.server import RunningServer, start_server


@pytest.fixture
def shamir_server(tmp_path: Path) -> Iterator[RunningServer]:
    with start_server(
        tmp_path / "srv", "--key-provider", "shamir", dev=False, expect=(501,)
    ) as running:
        yield running


def test_init_unseal_seal(shamir_server: RunningServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(env=cli_env(shamir_server, home))

    status = cli.ok("operator", "status", "-o", "json")
    assert json.loads(status.stdout)["initialized"] is False
    assert "Not initialised" in status.stderr

    init = cli.ok("operator", "init", "--key-shares", "5", "--key-threshold", "3", "-o", "json")
    result = json.loads(init.stdout)
    shares, root = result["keys"], result["root_token"]
    assert len(shares) == 5
    assert len(set(shares)) == 5
    assert "shown only this once" in init.stderr
    assert (
        "init"
        in cli.fails("operator", "init", "--key-shares", "5", "--key-threshold", "3").stderr.lower()
    )

    cli.env["KUSTOS_TOKEN"] = root
    first = cli.ok("operator", "unseal", shares[0])
    assert "unseal progress 1/3" in first.stderr
    sealed = cli.fails("kv", "get", "secret/anything")
    assert "sealed" in sealed.stderr
    assert "kustos operator unseal" in sealed.stderr

    wrong = cli.fails("operator", "unseal", "bm90LWEtc2hhcmU=")
    assert wrong.stderr.startswith("Error:")
    after_wrong = json.loads(cli.ok("operator", "status", "-o", "json").stdout)
    assert after_wrong["sealed"] is True
    assert after_wrong["progress"] == 1

    prompted = cli.ok("operator", "unseal", input=shares[1] + "\n")
    assert "unseal progress 2/3" in prompted.stderr
    assert shares[1] not in prompted.stdout + prompted.stderr

    last = cli.ok("operator", "unseal", "-", "-o", "json", input=shares[4] + "\n")
    assert json.loads(last.stdout)["sealed"] is False
    assert "Unsealed" in last.stderr

    missing_mount = cli.fails("kv", "put", "secret/after-unseal", "k=v")
    assert "no secrets engine is mounted at secret/" in missing_mount.stderr
    with KustosClient(shamir_server.addr, root) as client:
        client.sys.enable_mount("secret")
        assert client.sys.list_mounts()["secret/"]["options"]["version"] == "2"
    cli.ok("kv", "put", "secret/after-unseal", "k=v")
    assert cli.ok("kv", "get", "secret/after-unseal", "--field", "k").stdout == "v\n"

    cli.ok("operator", "seal")
    assert json.loads(cli.ok("operator", "status", "-o", "json").stdout)["sealed"] is True
    assert "sealed" in cli.fails("kv", "get", "secret/after-unseal").stderr
