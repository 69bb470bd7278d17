"""A KV write under a full audit disk: committed *and* answered 2xx, or refused *and* not committed.

The disk fills up for real: the server process gets ``RLIMIT_FSIZE`` (set from
outside with ``prlimit``) just above its audit file's size, so the kernel
refuses every write past that offset with ``EFBIG`` (Python ignores
``SIGXFSZ``), exactly what a full disk does to an appending writer. Why not a
tiny tmpfs: that needs a mount namespace and root; the limit needs neither and
puts the failure at a chosen byte. The audit file is made large first (a few
refused requests with big bodies), so the limit leaves the small SQLite
files alone: only the audit file reaches it. Sweeping the limit across the
bytes a KV write's two entries need makes the write fail before its request
entry, between its request and response entries (the case that was once
committed and answered 503), and after both.
"""

from __future__ import annotations

import resource
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import RunningServer, assert_audit_file_verifies, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("full-audit-disk")) as running:
        yield running


def _limit_file_size(server: RunningServer, size: int | None) -> None:
    """Lower (or, with ``None``, lift) the soft RLIMIT_FSIZE of the running server."""
    assert server.process is not None
    soft = resource.RLIM_INFINITY if size is None else size
    _, hard = resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (soft, hard))


def _committed(http: httpx.Client, path: str, value: str) -> bool:
    response = http.get(f"/v1/secret/data/{path}")
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200 and response.json()["data"]["data"] == {"v": value}


def test_a_write_is_never_committed_and_refused(server: RunningServer) -> None:
    audit_file = server.data_dir.parent / "audit.log"
    with httpx.Client(
        base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=30
    ) as http:
        enabled = http.post(
            "/v1/sys/audit/file", json={"type": "file", "options": {"file_path": str(audit_file)}}
        )
        assert enabled.status_code == 204, enabled.text
        # grow the audit file well past the SQLite files (refused calls: nothing is stored)
        big = {"data": {f"key-{i:04d}-" + "x" * 480: "v" for i in range(1500)}}
        for _ in range(4):
            assert http.post("/v1/nowhere/at/all", json=big).status_code == 404
        database = sorted(server.data_dir.glob("kustos.db*"))
        assert audit_file.stat().st_size > 8 * max(p.stat().st_size for p in database)

        outcomes: Counter[str] = Counter()
        for step, headroom in enumerate(range(0, 6000, 97)):
            path, value = f"full/{step}", f"value-{step}"
            _limit_file_size(server, audit_file.stat().st_size + headroom)
            try:
                response = http.post(f"/v1/secret/data/{path}", json={"data": {"v": value}})
            finally:
                _limit_file_size(server, None)
            committed = _committed(http, path, value)
            if response.status_code == 200:
                assert committed, f"answered 200 but not committed (headroom {headroom})"
                outcomes["committed and answered 200"] += 1
            else:
                assert response.status_code == 503, response.text
                assert "audit log unavailable" in response.json()["errors"][0]
                assert not committed, f"committed but answered 503 (headroom {headroom})"
                outcomes["refused with 503 and not committed"] += 1
        print(dict(outcomes))
        # the sweep crossed both entries of a write: some writes were refused, later ones went through
        assert outcomes["refused with 503 and not committed"] >= 10
        assert outcomes["committed and answered 200"] >= 10

    # whatever was cut off mid-line was removed: the file is a valid chain
    assert_audit_file_verifies(audit_file)


def test_the_limit_really_fills_the_disk(server: RunningServer, tmp_path: Path) -> None:
    """The mechanism itself: with the limit at the audit file's size, an audited call is refused."""
    audit_file = server.data_dir.parent / "audit.log"
    with httpx.Client(
        base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=30
    ) as http:
        if not audit_file.exists():
            assert (
                http.post(
                    "/v1/sys/audit/file",
                    json={"type": "file", "options": {"file_path": str(audit_file)}},
                ).status_code
                == 204
            )
        _limit_file_size(server, audit_file.stat().st_size)
        try:
            refused = http.get("/v1/sys/mounts")
        finally:
            _limit_file_size(server, None)
        assert refused.status_code == 503 and "audit log unavailable" in refused.text
        assert http.get("/v1/sys/mounts").status_code == 200


def test_writes_declare_their_answer_before_they_commit(server: RunningServer) -> None:
    """Every write route below audits its answer before its commit (none is counted in
    ``kustos_audit_unreserved_commits_total``), so a full disk refuses it instead of losing it."""
    audit_file = server.data_dir.parent / "audit.log"
    with httpx.Client(
        base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=60
    ) as http:
        if not audit_file.exists():
            body = {"type": "file", "options": {"file_path": str(audit_file)}}
            assert http.post("/v1/sys/audit/file", json=body).status_code == 204
        writes: list[tuple[str, str, dict[str, object]]] = [
            ("GET", "cert.pem", {}),  # calls that create a key on first use
            (
                "POST",
                "sys/bound/encrypt",
                {"namespace": "ns", "service_account": "sa", "plaintext": "aGk="},
            ),
            ("GET", "sys/bound/keys", {}),
            ("POST", "sys/mounts/tr", {"type": "transit"}),
            ("POST", "sys/mounts/tr/tune", {"default_lease_ttl": "1h"}),
            ("POST", "tr/keys/k", {}),
            ("POST", "tr/encrypt/upserted", {"plaintext": "aGk="}),  # creates its key
            ("POST", "tr/keys/k/rotate", {}),
            ("POST", "tr/keys/k/config", {"deletion_allowed": True}),
            ("DELETE", "tr/keys/k", {}),
            ("POST", "secret/data/w", {"data": {"a": "1"}}),
            ("POST", "secret/metadata/w", {"max_versions": 3}),
            ("POST", "secret/delete/w", {"versions": [1]}),
            ("POST", "secret/undelete/w", {"versions": [1]}),
            ("DELETE", "secret/data/w", {}),
            ("POST", "secret/destroy/w", {"versions": [1]}),
            ("POST", "secret/config", {"max_versions": 5}),
            ("DELETE", "secret/metadata/w", {}),
            ("PUT", "sys/policies/acl/p", {"policy": 'path "x" { capabilities = ["read"] }'}),
            ("DELETE", "sys/policies/acl/p", {}),
            ("POST", "auth/token/create", {"ttl": "1h"}),
            ("POST", "auth/token/renew-self", {}),
            ("POST", "sys/auth/approle", {"type": "approle"}),
            ("POST", "auth/approle/role/r", {"secret_id_num_uses": 2}),
            ("POST", "auth/approle/role/r/role-id", {"role_id": "fixed-role-id"}),
            ("POST", "sys/auth/userpass", {"type": "userpass"}),
            ("POST", "auth/userpass/users/u", {"password": "pw"}),
            ("POST", "auth/userpass/users/u/password", {"password": "pw2"}),
            ("POST", "sys/sealing/config", {"key_bits": 2048}),
            ("POST", "sys/rotate", {}),
            ("POST", "secret/rotation/r", {"fields": ["pw"], "rotation_period": "24h"}),
            ("POST", "secret/rotate/r", {}),
        ]
        for method, path, body in writes:
            response = http.request(method, f"/v1/{path}", json=body)
            assert response.status_code < 300, (path, response.text)
        secret_id = http.post("/v1/auth/approle/role/r/secret-id", json={}).json()["data"]
        login = http.post(
            "/v1/auth/approle/login",
            json={"role_id": "fixed-role-id", "secret_id": secret_id["secret_id"]},
        )
        assert login.status_code == 200, login.text
        assert http.post("/v1/auth/userpass/login/u", json={"password": "pw2"}).status_code == 200
        for method, path in (("DELETE", "sys/auth/userpass"), ("DELETE", "sys/mounts/tr")):
            assert http.request(method, f"/v1/{path}").status_code == 204
        metrics = http.get("/metrics").text
    unreserved = [
        line for line in metrics.splitlines() if line.startswith("kustos_audit_unreserved_commits")
    ]
    assert unreserved == [], unreserved
