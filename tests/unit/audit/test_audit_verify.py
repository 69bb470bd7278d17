"""Tampering with an audit file: each kind of change makes verify_file name the line where it happened."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from kustos.audit import (
    AuditAuth,
    AuditRequest,
    AuditResponse,
    FileAuditDevice,
    generate_hmac_key,
    verify_file,
)
from kustos.audit.hashing import canonical_json, entry_hash
from kustos.sensitive import Sensitive

LogCall = Callable[..., None]
CALLS = 5  # 1 genesis + 10 entries = 11 lines


@pytest.fixture
def audit_file(tmp_path: Path, key: Sensitive[bytes], log_call: LogCall) -> Path:
    path = tmp_path / "audit.log"
    with FileAuditDevice(path, hmac_key=key) as device:
        for i in range(CALLS):
            log_call(
                device, path=f"secret/data/app{i}", request_id=f"r{i}", data={"v": f"value{i}"}
            )
    return path


def rewrite(path: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    path.write_bytes(b"".join(change(path.read_bytes().splitlines(keepends=True))))


def test_untouched_file_verifies(audit_file: Path, key: Sensitive[bytes]) -> None:
    result = verify_file(audit_file, hmac_key=key)
    assert result.ok and result.entries == 11 and result.first_bad_line is None
    assert verify_file(audit_file, expected_head=result.head).ok
    seen: list[int] = []
    verify_file(audit_file, progress=seen.append)
    assert seen[-1] == audit_file.stat().st_size and len(seen) == 11


def _edit(line: bytes) -> bytes:
    return line.replace(b"secret/data/app", b"secret/data/APP")


@pytest.mark.parametrize(
    ("name", "change", "bad_line", "reason"),
    [
        ("delete", lambda ls: ls[:4] + ls[5:], 5, "prev_hash does not match the hash of line 4"),
        ("delete first", lambda ls: ls[1:], 1, "not the genesis entry"),
        ("edit", lambda ls: [*ls[:6], _edit(ls[6]), *ls[7:]], 7, "hash does not match its content"),
        (
            "edit whitespace",
            lambda ls: [*ls[:6], ls[6].replace(b":", b": ", 1), *ls[7:]],
            7,
            "canonical form",
        ),
        ("swap", lambda ls: [*ls[:3], ls[4], ls[3], *ls[5:]], 4, "prev_hash does not match"),
        (
            "reorder far",
            lambda ls: [*ls[:2], ls[9], *ls[2:9], *ls[10:]],
            3,
            "prev_hash does not match",
        ),
        ("truncate last mid-line", lambda ls: [*ls[:-1], ls[-1][:40]], 11, "incomplete"),
        ("truncate inside", lambda ls: [*ls[:7], ls[7][:50] + b"\n", *ls[8:]], 8, "not valid JSON"),
        ("insert copy", lambda ls: [*ls[:5], ls[2], *ls[5:]], 6, "prev_hash does not match"),
        ("insert garbage", lambda ls: [*ls[:5], b'{"hello": "world"}\n', *ls[5:]], 6, "lacks hash"),
        ("insert blank", lambda ls: [*ls[:5], b"\n", *ls[5:]], 6, "not valid JSON"),
        ("second genesis", lambda ls: [*ls, ls[0]], 12, "second genesis"),
    ],
)
def test_tampering_names_the_line(
    audit_file: Path,
    name: str,
    change: Callable[[list[bytes]], list[bytes]],
    bad_line: int,
    reason: str,
) -> None:
    rewrite(audit_file, change)
    result = verify_file(audit_file)
    assert not result.ok, name
    assert result.first_bad_line == bad_line, (name, result)
    assert result.reason is not None and reason in result.reason, (name, result.reason)
    assert result.entries == bad_line - 1


def _forge(previous: bytes, template: bytes) -> bytes:
    """A well-formed entry that links correctly after ``previous``: what someone without the key can make."""
    before = orjson.loads(previous)
    entry = orjson.loads(template)
    entry["request"]["path"] = "secret/data/forged"
    entry["prev_hash"] = before["hash"]
    entry["seq"] = before["seq"] + 1
    entry["hash"] = entry_hash(entry)
    return canonical_json(entry) + b"\n"


def test_a_forged_insert_is_caught_at_the_next_line_or_by_the_key(
    audit_file: Path, key: Sensitive[bytes]
) -> None:
    rewrite(audit_file, lambda ls: [*ls[:5], _forge(ls[4], ls[5]), *ls[5:]])
    without_key = verify_file(audit_file)
    assert (without_key.ok, without_key.first_bad_line) == (False, 7)
    with_key = verify_file(audit_file, hmac_key=key)
    assert (with_key.ok, with_key.first_bad_line) == (False, 6)
    assert with_key.reason is not None and "mac" in with_key.reason


def test_an_edit_with_a_recomputed_hash_is_caught(audit_file: Path, key: Sensitive[bytes]) -> None:
    rewrite(audit_file, lambda ls: [*ls[:6], _forge(ls[5], ls[6]), *ls[7:]])
    assert verify_file(audit_file).first_bad_line == 8
    assert verify_file(audit_file, hmac_key=key).first_bad_line == 7


def test_removed_tail_needs_the_expected_head(audit_file: Path) -> None:
    head = verify_file(audit_file).head
    rewrite(audit_file, lambda ls: ls[:-2])
    assert verify_file(audit_file).ok  # a clean cut at a line boundary looks like an older file...
    result = verify_file(audit_file, expected_head=head)
    assert (
        not result.ok and result.first_bad_line == 10
    )  # ...unless the head recorded elsewhere is checked
    assert result.reason is not None and "removed from the end" in result.reason


def test_wrong_key_and_empty_file(audit_file: Path, tmp_path: Path) -> None:
    result = verify_file(audit_file, hmac_key=generate_hmac_key())
    assert not result.ok and result.first_bad_line == 1
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert verify_file(empty).first_bad_line == 1


# --- batches of reads: one mac per write vouches for the entries before it -----------------------


@pytest.fixture
def batched_file(tmp_path: Path, key: Sensitive[bytes]) -> Path:
    """Genesis, then three writes of two staged reads each: lines 2-5, 6-9 and 10-13."""
    path = tmp_path / "batched.log"
    with FileAuditDevice(path, hmac_key=key) as device:
        for batch in range(3):
            for i in range(2):
                device.stage_call(
                    auth=AuditAuth(display_name="reader"),
                    request=AuditRequest(
                        id=f"r{batch}{i}", operation="read", path=f"secret/data/app{batch}{i}"
                    ),
                    response=AuditResponse(
                        status=200, data={"data": {"password": f"pw{batch}{i}"}}
                    ),
                )
            device.flush()
    return path


def _rechain(
    lines: list[bytes], start: int, edit: Callable[[dict[str, Any]], None] = lambda e: None
) -> list[bytes]:
    """Apply ``edit`` to line ``start`` (0-based) and recompute every hash from there on, leaving each
    ``mac`` as it was: what someone without the key can do."""
    out = lines[:start]
    for index, raw in enumerate(lines[start:], start=start):
        entry = orjson.loads(raw)
        if index == start:
            edit(entry)
        entry["prev_hash"] = orjson.loads(out[-1])["hash"]
        entry["hash"] = entry_hash(entry)
        out.append(canonical_json(entry) + b"\n")
    return out


def test_a_batch_carries_one_mac_on_its_last_entry(
    batched_file: Path, key: Sensitive[bytes]
) -> None:
    entries = [orjson.loads(line) for line in batched_file.read_bytes().splitlines()]
    assert [n for n, e in enumerate(entries, start=1) if "mac" in e] == [1, 5, 9, 13]
    result = verify_file(batched_file, hmac_key=key)
    assert result.ok and result.entries == 13, result
    assert b"pw00" not in batched_file.read_bytes()


def test_a_rewrite_inside_a_batch_is_reported_where_the_unvouched_lines_start(
    batched_file: Path, key: Sensitive[bytes]
) -> None:
    def forge(entry: dict[str, Any]) -> None:
        entry["request"]["path"] = "secret/data/forged"

    rewrite(
        batched_file, lambda ls: _rechain(ls, 6, forge)
    )  # line 7, the second entry of the second batch
    assert verify_file(batched_file).ok  # links correctly: without the key nothing shows
    result = verify_file(batched_file, hmac_key=key)
    assert (result.ok, result.first_bad_line, result.entries) == (False, 6, 5), result
    assert result.reason is not None and "lines 6-8 carry no mac" in result.reason
    assert "mac does not match" in result.reason


def test_a_broken_chain_inside_a_batch_is_named_exactly_with_or_without_the_key(
    batched_file: Path, key: Sensitive[bytes]
) -> None:
    rewrite(
        batched_file, lambda ls: ls[:6] + ls[7:]
    )  # line 7 deleted: the old line 8 is now line 7
    for result in (verify_file(batched_file), verify_file(batched_file, hmac_key=key)):
        assert (result.ok, result.first_bad_line) == (False, 7), result
        assert result.reason is not None and result.reason.startswith(
            "prev_hash does not match the hash of line 6"
        )


def test_entries_appended_or_a_stripped_mac_are_caught_at_the_end(
    batched_file: Path, key: Sensitive[bytes]
) -> None:
    original = batched_file.read_bytes().splitlines(keepends=True)

    def appended(lines: list[bytes]) -> list[bytes]:
        extra = orjson.loads(lines[-2])  # a mac-less entry, chained onto the last one
        extra["seq"] = orjson.loads(lines[-1])["seq"] + 1
        return _rechain([*lines, canonical_json(extra) + b"\n"], len(lines))

    rewrite(batched_file, appended)
    assert verify_file(batched_file).ok
    result = verify_file(batched_file, hmac_key=key)
    assert (result.ok, result.first_bad_line) == (False, 14), result
    assert (
        result.reason is not None and "line 14 at the end of the file carry no mac" in result.reason
    )

    def stripped(lines: list[bytes]) -> list[bytes]:
        last = orjson.loads(lines[-1])
        del last["mac"]
        return [*lines[:-1], canonical_json(last) + b"\n"]

    batched_file.write_bytes(b"".join(stripped(original)))
    assert verify_file(batched_file).ok
    result = verify_file(batched_file, hmac_key=key)
    assert (result.ok, result.first_bad_line, result.entries) == (False, 10, 9), result
    assert result.reason is not None and "lines 10-13 at the end of the file" in result.reason


def test_upto_stops_at_a_size_and_a_device_verifies_its_own_file(
    tmp_path: Path, key: Sensitive[bytes], log_call: LogCall
) -> None:
    path = tmp_path / "live.log"
    with FileAuditDevice(path, hmac_key=key) as device:
        log_call(device, path="secret/data/a", request_id="r1", data={"v": "1"})
        result = device.verify()
        assert result.ok and result.entries == 3 and result.head == device.head
        size = path.stat().st_size
        # a line appended after the size was taken, half written: ignored up to the size
        with path.open("ab") as handle:
            handle.write(b'{"half": ')
        assert verify_file(path, hmac_key=key, upto=size).ok
        assert not verify_file(path, hmac_key=key).ok
        path.write_bytes(path.read_bytes()[:size])
        # the head the device holds must be in the file: entries cut from the end are caught
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:-1]))
        cut = device.verify()
        assert not cut.ok and "expected head" in (cut.reason or "")
