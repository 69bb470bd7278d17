"""The file device's shortcuts write the same entries as the plain way.

The device reuses a caller's serialized ``auth`` part, looks HMAC'd response
data up by an HMAC of its JSON, hashes pre-encoded JSON (``orjson.Fragment``)
itself, and can date entries from an epoch clock. Each is checked here
against an independent HMAC and against ``verify_file``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from kustos.audit import AuditAuth, AuditRequest, AuditResponse, FileAuditDevice, verify_file
from kustos.sensitive import Sensitive

KEY_BYTES = bytes(range(32))  # the `key` fixture's bytes


def independent_hmac(value: str) -> str:
    mac = crypto_hmac.HMAC(KEY_BYTES, hashes.SHA256())
    mac.update(value.encode())
    return "hmac-sha256:" + mac.finalize().hex()


def entries(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _read(device: FileAuditDevice, auth: AuditAuth, request: AuditRequest, data: Any) -> None:
    device.log_request(auth=auth, request=request)
    device.log_response(auth=auth, request=request, response=AuditResponse(status=200, data=data))


def test_response_data_hmacs_are_right_for_fragments_repeats_and_changes(
    tmp_path: Path, key: Sensitive[bytes]
) -> None:
    path = tmp_path / "audit.log"
    auth = AuditAuth(client_token=Sensitive("hvs.token-one"), accessor="acc-1")
    datas: list[Any] = [
        {"data": orjson.Fragment(b'{"password":"pw-1","port":5432}'), "metadata": {"version": 1}},
        {
            "data": {"password": "pw-1", "port": 5432},
            "metadata": {"version": 1},
        },  # same JSON: cached
        {"metadata": {"version": 1}, "data": {"port": 5432, "password": "pw-1"}},  # other key order
        {"data": {"password": "pw-2", "port": 5432}, "metadata": {"version": 2}},  # changed
        {"when": datetime(2024, 5, 1, tzinfo=UTC), "pw": "pw-3"},  # not plain JSON: the walk
    ]
    with FileAuditDevice(path, hmac_key=key) as device:
        for i, data in enumerate(datas):
            request = AuditRequest(
                id=f"r{i}", operation="read", path="secret/data/db", client_token=auth.client_token
            )
            _read(device, auth, request, data)
    responses = [e["response"]["data"] for e in entries(path) if e["type"] == "response"]
    first = {
        "data": {"password": independent_hmac("pw-1"), "port": independent_hmac("5432")},
        "metadata": {"version": independent_hmac("1")},
    }
    assert responses[0] == responses[1] == responses[2] == first
    assert responses[3] == {
        "data": {"password": independent_hmac("pw-2"), "port": independent_hmac("5432")},
        "metadata": {"version": independent_hmac("2")},
    }
    assert responses[4] == {
        "when": independent_hmac("2024-05-01 00:00:00+00:00"),
        "pw": independent_hmac("pw-3"),
    }
    text = path.read_text()
    assert "pw-1" not in text and "pw-2" not in text and "hvs.token-one" not in text
    assert verify_file(path, hmac_key=key).ok


def test_a_reused_auth_keeps_each_requests_own_token_hmac(
    tmp_path: Path, key: Sensitive[bytes]
) -> None:
    path = tmp_path / "audit.log"
    auth = AuditAuth(client_token=Sensitive("hvs.token-one"), accessor="acc-1", display_name="app")
    with FileAuditDevice(path, hmac_key=key) as device:
        same = AuditRequest(id="a", operation="read", path="p", client_token=auth.client_token)
        other = AuditRequest(
            id="b", operation="read", path="p", client_token=Sensitive("hvs.token-two")
        )
        none = AuditRequest(id="c", operation="read", path="p")
        for request in (same, other, none, same):
            _read(device, auth, request, None)
    logged = entries(path)[1:]
    assert {e["auth"]["client_token"] for e in logged} == {independent_hmac("hvs.token-one")}
    assert [e["request"]["client_token"] for e in logged if e["type"] == "request"] == [
        independent_hmac("hvs.token-one"),
        independent_hmac("hvs.token-two"),
        "",
        independent_hmac("hvs.token-one"),
    ]
    assert verify_file(path, hmac_key=key).ok


def test_epoch_clock_dates_entries_like_format_time(tmp_path: Path, key: Sensitive[bytes]) -> None:
    path = tmp_path / "audit.log"
    times = iter([1714564800.123456, 1714564800.9999996, 1714564801.5, 1714564861.000001])
    with FileAuditDevice(path, hmac_key=key, epoch_clock=lambda: next(times)) as device:
        auth = AuditAuth()
        _read(device, auth, AuditRequest(id="1", operation="read", path="p"), None)
        _read(device, auth, AuditRequest(id="2", operation="read", path="p"), None)
    assert [e["time"] for e in entries(path)[1:]] == [
        "2024-05-01T12:00:00.123456Z",
        "2024-05-01T12:00:01.000000Z",
        "2024-05-01T12:00:01.500000Z",
        "2024-05-01T12:01:01.000001Z",
    ]
    assert verify_file(path, hmac_key=key).ok
