"""Searching an audit file and building the access map of who read what."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kustos.audit import AuditAuth, FileAuditDevice, access_map, identity_of, search
from kustos.sensitive import Sensitive

LogCall = Callable[..., None]

API = AuditAuth(
    client_token=Sensitive("tok-api"),
    accessor="acc-api",
    display_name="kubernetes-payments-api",
    policies=("payments",),
    metadata={"service_account_name": "api", "service_account_namespace": "payments"},
)
WORKER = AuditAuth(
    client_token=Sensitive("tok-worker"),
    accessor="acc-worker",
    display_name="kubernetes-batch-worker",
    metadata={"service_account_name": "worker", "service_account_namespace": "batch"},
)
ALICE = AuditAuth(
    client_token=Sensitive("tok-alice"), accessor="acc-alice", display_name="userpass-alice"
)


@pytest.fixture
def audit_file(
    tmp_path: Path, key: Sensitive[bytes], clock: Callable[[], datetime], log_call: LogCall
) -> Path:
    # Each call takes two clock ticks (request, response); the genesis takes tick 0.
    path = tmp_path / "audit.log"
    with FileAuditDevice(path, hmac_key=key, clock=clock) as device:
        log_call(
            device,
            path="secret/data/payments/db",
            auth=ALICE,
            operation="create",
            data={"data": {"p": "x"}},
        )  # 12:00:01
        log_call(device, path="secret/data/payments/db", auth=API)  # 12:00:03
        log_call(device, path="secret/data/payments/db", auth=API)  # 12:00:05
        log_call(
            device, path="secret/data/admin/root", auth=API, status=403, error="permission denied"
        )  # :07
        log_call(device, path="secret/data/batch/queue", auth=WORKER)  # 12:00:09
        log_call(device, path="secret/metadata/payments/", auth=ALICE, operation="list")  # 12:00:11
        log_call(device, path="secret/data/payments/db", auth=WORKER, status=404)  # 12:00:13
    return path


def at(second: int) -> datetime:
    return datetime(2024, 5, 1, 12, 0, second, tzinfo=UTC)


def test_identity_prefers_the_workload() -> None:
    assert identity_of(
        {
            "metadata": {"service_account_name": "api", "service_account_namespace": "ns"},
            "display_name": "d",
        }
    ) == ("ns/api", "service-account")
    assert identity_of({"display_name": "userpass-alice"}) == ("userpass-alice", "token")
    assert identity_of({"accessor": "acc"}) == ("acc", "token")
    assert identity_of(None) == ("anonymous", "anonymous")


def test_search_filters(audit_file: Path) -> None:
    everything = search(audit_file)
    assert len(everything) == 14 and everything[0].line == 2
    by_path = search(audit_file, path_prefix="secret/data/payments", entry_type="request")
    assert [r.identity for r in by_path] == [
        "userpass-alice",
        "payments/api",
        "payments/api",
        "batch/worker",
    ]
    assert (
        search(audit_file, path_prefix="/secret/data/payments/*", entry_type="request") == by_path
    )
    by_who = search(audit_file, who="ALICE", entry_type="request")
    assert [r.operation for r in by_who] == ["create", "list"]
    assert (
        len(search(audit_file, who="payments", entry_type="response")) == 3
    )  # the namespace matches
    window = search(audit_file, since=at(5), until=at(9))
    assert [r.time.second for r in window] == [5, 6, 7, 8, 9]
    denied = [r for r in search(audit_file, entry_type="response") if r.status == 403]
    assert (
        len(denied) == 1
        and denied[0].path == "secret/data/admin/root"
        and denied[0].error == "permission denied"
    )
    assert search(audit_file, operation="list")[0].as_dict()["time"] == "2024-05-01T12:00:11Z"


def test_access_map_counts_reads_and_denials(audit_file: Path) -> None:
    rows = [r.as_dict() for r in access_map(audit_file)]
    assert rows == [
        {
            "identity": "batch/worker",
            "kind": "service-account",
            "path": "secret/data/batch/queue",
            "reads": 1,
            "denied": 0,
            "first": "2024-05-01T12:00:10Z",
            "last": "2024-05-01T12:00:10Z",
        },
        {
            "identity": "payments/api",
            "kind": "service-account",
            "path": "secret/data/admin/root",
            "reads": 0,
            "denied": 1,
            "first": "2024-05-01T12:00:08Z",
            "last": "2024-05-01T12:00:08Z",
        },
        {
            "identity": "payments/api",
            "kind": "service-account",
            "path": "secret/data/payments/db",
            "reads": 2,
            "denied": 0,
            "first": "2024-05-01T12:00:04Z",
            "last": "2024-05-01T12:00:06Z",
        },
    ]
    with_lists = access_map(audit_file, operations=("read", "list"))
    assert ("userpass-alice", "secret/metadata/payments/") in {
        (r.identity, r.path) for r in with_lists
    }
    assert access_map(audit_file, since=at(9)) == [access_map(audit_file)[0]]


def test_search_skips_damaged_lines(audit_file: Path) -> None:
    with audit_file.open("ab") as handle:
        handle.write(b"not json\n")
    assert len(search(audit_file)) == 14
