"""The file audit device: what is HMAC'd, what stays readable, the chain across restarts, failing closed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from kustos.audit import (
    GENESIS_PREV_HASH,
    AuditAuth,
    AuditBroker,
    AuditRequest,
    AuditResponse,
    AuditWriteError,
    FileAuditDevice,
    generate_hmac_key,
    hash_value,
    verify_file,
)
from kustos.errors import KustosError
from kustos.sensitive import Sensitive

KEY_BYTES = bytes(range(32))  # the `key` fixture's bytes
LogCall = Callable[..., None]


def independent_hmac(value: str, key: bytes = KEY_BYTES) -> str:
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(value.encode())
    return "hmac-sha256:" + mac.finalize().hex()


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


TOKEN = "hvs.CAESIJ3secretTokenValue"
WORKLOAD = AuditAuth(
    client_token=Sensitive(TOKEN),
    accessor="accessor-123",
    display_name="kubernetes-payments-api",
    policies=("default", "payments-read"),
    token_policies=("default", "payments-read"),
    metadata={
        "role": "payments",
        "service_account_name": "api",
        "service_account_namespace": "payments",
    },
    entity_id="entity-9",
    token_type="service",
    token_ttl=3600,
)


def test_hash_value_matches_an_independent_hmac(key: Sensitive[bytes]) -> None:
    for value in ["", "hunter2", "ünïcødé", "a" * 1000]:
        assert hash_value(key, value) == independent_hmac(value)
    assert hash_value(key, "x") != hash_value(Sensitive(b"\x01" * 32), "x")


def test_request_entry_hmacs_values_and_keeps_vault_clear_fields(
    tmp_path: Path, key: Sensitive[bytes], clock: Callable[[], datetime]
) -> None:
    path = tmp_path / "audit.log"
    with FileAuditDevice(path, hmac_key=key, clock=clock) as device:
        request = AuditRequest(
            id="req-1",
            operation="create",
            path="secret/data/payments/db",
            mount_type="kv",
            mount_point="secret/",
            remote_address="10.1.2.3",
            remote_port=51000,
            client_token=Sensitive(TOKEN),
            client_token_accessor="accessor-123",
            data={
                "data": {
                    "password": "s3cr3t",
                    "port": 5432,
                    "tags": ["a", "b"],
                    "on": True,
                    "none": None,
                }
            },
            headers={"X-Kustos-Reason": "rotation"},
            reason="quarterly rotation",
        )
        device.log_request(auth=WORKLOAD, request=request)
        device.log_response(
            auth=WORKLOAD,
            request=request,
            response=AuditResponse(status=200, data={"version": 3, "created_time": "2024-05-01"}),
        )
    genesis, entry, response = lines(path)
    assert genesis["type"] == "genesis" and genesis["prev_hash"] == GENESIS_PREV_HASH
    assert entry["type"] == "request" and entry["time"] == "2024-05-01T12:00:01.000000Z"
    auth, req = entry["auth"], entry["request"]
    assert isinstance(auth, dict) and isinstance(req, dict)
    assert auth["client_token"] == independent_hmac(TOKEN)
    assert req["client_token"] == independent_hmac(TOKEN)
    # readable: who, where, what, from where
    assert auth["accessor"] == "accessor-123" and req["client_token_accessor"] == "accessor-123"
    assert auth["display_name"] == "kubernetes-payments-api"
    assert auth["policies"] == ["default", "payments-read"]
    assert auth["metadata"] == {
        "role": "payments",
        "service_account_name": "api",
        "service_account_namespace": "payments",
    }
    assert (req["id"], req["operation"], req["path"]) == (
        "req-1",
        "create",
        "secret/data/payments/db",
    )
    assert (req["remote_address"], req["remote_port"], req["mount_type"]) == (
        "10.1.2.3",
        51000,
        "kv",
    )
    assert req["reason"] == "quarterly rotation"
    # hashed: every string and number in the body, header values; keys, booleans and null stay
    assert req["data"] == {
        "data": {
            "password": independent_hmac("s3cr3t"),
            "port": independent_hmac("5432"),
            "tags": [independent_hmac("a"), independent_hmac("b")],
            "on": True,
            "none": None,
        }
    }
    assert req["headers"] == {"x-kustos-reason": independent_hmac("rotation")}
    resp = response["response"]
    assert isinstance(resp, dict)
    assert resp["status"] == 200
    assert resp["data"] == {
        "version": independent_hmac("3"),
        "created_time": independent_hmac("2024-05-01"),
    }


def test_no_secret_value_or_token_reaches_the_file(
    tmp_path: Path, key: Sensitive[bytes], log_call: LogCall
) -> None:
    path = tmp_path / "audit.log"
    secrets_used = [
        "correct-horse-battery",
        "s.lOgInToKeN42",
        "jwt.eyJhbGciOiJSUzI1NiJ9",
        "987654321",
    ]
    login_token = "hvs.newly-issued-token"
    with FileAuditDevice(path, hmac_key=key) as device:
        log_call(
            device,
            path="secret/data/app",
            operation="create",
            auth=AuditAuth(
                client_token=Sensitive(secrets_used[1]), accessor="a1", display_name="ci"
            ),
            data={"data": {"password": secrets_used[0], "pin": int(secrets_used[3])}},
        )
        log_call(
            device, path="secret/data/app", response_data={"data": {"password": secrets_used[0]}}
        )
        request = AuditRequest(
            id="login",
            operation="update",
            path="auth/kubernetes/login",
            data={"role": "app", "jwt": secrets_used[2]},
        )
        device.log_request(auth=AuditAuth(), request=request)
        device.log_response(
            auth=AuditAuth(),
            request=request,
            response=AuditResponse(
                status=200,
                auth=AuditAuth(
                    client_token=Sensitive(login_token), accessor="new-acc", policies=("app",)
                ),
            ),
        )
    raw = path.read_bytes()
    for secret in [*secrets_used, login_token]:
        assert secret.encode() not in raw, secret
    assert independent_hmac(secrets_used[0]).encode() in raw  # findable through sys/audit-hash
    assert independent_hmac(login_token).encode() in raw
    assert b'"new-acc"' in raw and b'"auth/kubernetes/login"' in raw


def test_clear_keys_are_written_readable(
    tmp_path: Path, key: Sensitive[bytes], log_call: LogCall
) -> None:
    path = tmp_path / "audit.log"
    with FileAuditDevice(path, hmac_key=key, clear_request_keys={"options"}) as device:
        log_call(
            device,
            path="secret/data/x",
            operation="update",
            data={"options": {"cas": 1}, "data": {"cas": 1}},
        )
    request = lines(path)[1]["request"]
    assert isinstance(request, dict)
    assert request["data"] == {"options": {"cas": 1}, "data": {"cas": independent_hmac("1")}}


def test_chain_continues_across_a_restart(
    tmp_path: Path, key: Sensitive[bytes], log_call: LogCall
) -> None:
    path = tmp_path / "audit.log"
    first = FileAuditDevice(path, hmac_key=key)
    log_call(first, path="secret/data/a")
    head, seq, device_id = first.head, first.seq, first.device_id
    first.close()
    with pytest.raises(AuditWriteError, match="closed"):
        log_call(first, path="secret/data/a")

    second = FileAuditDevice(path, hmac_key=key)
    assert (second.head, second.seq, second.device_id) == (head, seq, device_id)
    log_call(second, path="secret/data/b")
    second.close()
    entries = lines(path)
    assert [e["seq"] for e in entries] == [0, 1, 2, 3, 4]
    assert entries[3]["prev_hash"] == head
    assert len([e for e in entries if e["type"] == "genesis"]) == 1
    result = verify_file(path, hmac_key=key)
    assert result.ok and result.entries == 5 and result.device_id == device_id
    assert result.head == entries[-1]["hash"]


def test_reopen_refuses_another_key_and_a_damaged_tail(
    tmp_path: Path, key: Sensitive[bytes], log_call: LogCall
) -> None:
    path = tmp_path / "audit.log"
    with FileAuditDevice(path, hmac_key=key) as device:
        log_call(device, path="secret/data/a")
    with pytest.raises(AuditWriteError, match="different HMAC key"):
        FileAuditDevice(path, hmac_key=generate_hmac_key())
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(AuditWriteError, match="incomplete line"):
        FileAuditDevice(path, hmac_key=key)
    path.write_bytes(data.replace(b'"secret/data/a"', b'"secret/data/b"'))
    with pytest.raises(AuditWriteError, match="damaged entry"):
        FileAuditDevice(path, hmac_key=key)


def test_file_is_private_and_fsync_mode_writes(
    tmp_path: Path, key: Sensitive[bytes], log_call: LogCall
) -> None:
    path = tmp_path / "audit.log"
    with FileAuditDevice(path, hmac_key=key, fsync=True) as device:
        log_call(device, path="secret/data/a")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verify_file(path).ok


def test_unwritable_locations_fail_closed(tmp_path: Path, key: Sensitive[bytes]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(AuditWriteError, match="cannot be opened") as info:
        FileAuditDevice(blocker / "audit.log", hmac_key=key)
    assert isinstance(info.value, KustosError)
    if os.path.exists("/dev/full"):
        with pytest.raises(AuditWriteError, match="cannot be written"):
            FileAuditDevice("/dev/full", hmac_key=key)


# A real short-write condition: the file-size limit (as on a full disk) stops appends. The
# script opens a device on argv[1], caps the file at its size + argv[2] bytes, then runs BODY,
# which prints "refused after N | <error>" when the broker refuses.
_FULL_DISK_PREAMBLE = """
import resource, signal, sys
from kustos.audit import AuditAuth, AuditBroker, AuditRequest, AuditResponse, AuditWriteError, FileAuditDevice
from kustos.sensitive import Sensitive
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
device = FileAuditDevice(sys.argv[1], hmac_key=Sensitive(bytes(32)))
broker = AuditBroker({"file/": device})
size = __import__("os").path.getsize(sys.argv[1])
limit = size + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
"""


def _refused_under_size_limit(path: Path, limit: int, body: str) -> int:
    """Run BODY under the file-size limit; return N from its "refused after N" line."""
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_PREAMBLE + body, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = done.stdout
    assert out.startswith("refused after"), done.stdout + done.stderr
    assert "no audit device could record the request" in out and "file/" in out
    return int(out.split()[2])


_ONE_BY_ONE = """
written = 0
try:
    for i in range(100):
        broker.log_request(auth=AuditAuth(), request=AuditRequest(id=str(i), operation="read", path="secret/data/x"))
        written += 1
except AuditWriteError as exc:
    print("refused after", written, "|", exc)
"""


def test_a_write_failure_after_opening_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    written = _refused_under_size_limit(path, 1500, _ONE_BY_ONE)
    assert written < 100
    # the half-written line was cut off: every acknowledged entry is intact and chained, nothing else
    result = verify_file(path)
    assert result.ok, result
    assert result.entries == written + 1


def test_broker_needs_one_device_to_record(tmp_path: Path, key: Sensitive[bytes]) -> None:
    auth = AuditAuth(display_name="x")
    request = AuditRequest(id="1", operation="read", path="secret/data/x")
    assert (
        AuditBroker().log_request(auth=auth, request=request) == 0
    )  # no devices: Vault lets it through
    good = FileAuditDevice(tmp_path / "a.log", hmac_key=key)
    broken = FileAuditDevice(tmp_path / "b.log", hmac_key=key)
    broken.close()
    broker = AuditBroker({"a/": good, "b/": broken})
    assert broker.log_request(auth=auth, request=request) == 1
    assert broker.log_response(auth=auth, request=request, response=AuditResponse(status=200)) == 1
    assert broker.hash_value("a/", "v") == independent_hmac("v")
    broker.disable("a/")
    assert broker.names == ("b/",)
    with pytest.raises(AuditWriteError, match=r"no audit device could record.*b/"):
        broker.log_request(auth=auth, request=request)
    broker.close()


def test_concurrent_writers_keep_one_chain(tmp_path: Path, key: Sensitive[bytes]) -> None:
    path = tmp_path / "audit.log"
    device = FileAuditDevice(path, hmac_key=key)

    def work(n: int) -> None:
        for i in range(25):
            device.log_request(
                auth=AuditAuth(), request=AuditRequest(id=f"{n}-{i}", operation="read", path="p")
            )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    device.close()
    result = verify_file(path, hmac_key=key)
    assert result.ok and result.entries == 101


def test_generated_keys_are_random_and_masked() -> None:
    first, second = generate_hmac_key(), generate_hmac_key()
    assert len(first.reveal()) == 32 and first != second
    assert "Sensitive(<redacted>)" == repr(first)


def test_staged_reads_reach_the_file_together_and_keep_the_chain(
    tmp_path: Path, key: Sensitive[bytes]
) -> None:
    path = tmp_path / "audit.log"
    device = FileAuditDevice(path, hmac_key=key)
    broker = AuditBroker({"file/": device})
    auth = AuditAuth(display_name="reader")
    response = AuditResponse(status=200, data={"data": {"password": "s3cret"}})

    def request(i: int) -> AuditRequest:
        return AuditRequest(id=f"r{i}", operation="read", path=f"secret/data/app{i}")

    first = broker.stage_call(auth=auth, request=request(1), response=response)
    second = broker.stage_call(auth=auth, request=request(2), response=response)
    assert (
        len(path.read_bytes().splitlines()) == 1
    )  # only the genesis entry so far: nothing answered yet
    assert not first[0][1].written
    broker.flush()
    broker.check_staged(first)
    broker.check_staged(second)
    # a write logged directly while reads are staged goes after them, on the same chain
    third = broker.stage_call(auth=auth, request=request(3), response=response)
    broker.log_request(
        auth=auth, request=AuditRequest(id="w1", operation="update", path="secret/data/app")
    )
    assert third[0][1].written
    broker.flush()  # nothing left: a no-op
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [(e["type"], e["request"]["id"]) for e in lines[1:]] == [
        ("request", "r1"),
        ("response", "r1"),
        ("request", "r2"),
        ("response", "r2"),
        ("request", "r3"),
        ("response", "r3"),
        ("request", "w1"),
    ]
    assert b"s3cret" not in path.read_bytes()
    result = verify_file(path)
    assert result.ok and result.entries == 8, result
    device.close()
    with pytest.raises(AuditWriteError, match="no audit device could record"):
        broker.stage_call(auth=auth, request=request(4), response=response)


_STAGED = """
answered = 0
for batch in range(20):
    staged = [
        broker.stage_call(auth=AuditAuth(), request=AuditRequest(id=f"{batch}-{i}", operation="read", path="secret/data/x"),
                          response=AuditResponse(status=200, data={"v": "x"}))
        for i in range(3)
    ]
    broker.flush()
    try:
        for s in staged:
            broker.check_staged(s)
        answered += len(staged)
    except AuditWriteError as exc:
        print("refused after", answered, "|", exc)
        break
"""


def test_a_failed_flush_refuses_every_staged_read_and_keeps_the_file_valid(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    answered = _refused_under_size_limit(path, 5000, _STAGED)
    assert answered % 3 == 0 and answered < 60
    result = verify_file(
        path
    )  # the failed batch was cut off whole: every answered read is there, nothing else
    assert result.ok, result
    assert result.entries == 1 + 2 * answered
