"""Parsing of ``kustos kv`` arguments: key=value, @file, stdin, JSON objects, paths and versions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kustos.cli.kv import (
    DataArgumentError,
    history_rows,
    parse_data_args,
    parse_pairs,
    parse_versions,
    split_path,
)


def _stdin(text: str = "") -> io.StringIO:
    return io.StringIO(text)


def test_key_value_pairs_keep_everything_after_the_first_equals() -> None:
    assert parse_data_args(["user=admin", "dsn=a=b=c", "empty="], stdin=_stdin()) == {
        "user": "admin",
        "dsn": "a=b=c",
        "empty": "",
    }


def test_at_file_reads_the_file_unchanged(tmp_path: Path) -> None:
    secret = tmp_path / "pw.txt"
    secret.write_text("s3cr3t\n", encoding="utf-8")
    assert parse_data_args([f"password=@{secret}"], stdin=_stdin()) == {"password": "s3cr3t\n"}


def test_dash_value_reads_stdin() -> None:
    assert parse_data_args(["cert=-", "a=b"], stdin=_stdin("-----BEGIN-----\nxyz\n")) == {
        "cert": "-----BEGIN-----\nxyz\n",
        "a": "b",
    }


def test_lone_dash_reads_a_json_object_from_stdin() -> None:
    data = parse_data_args(
        ["-", "extra=1"], stdin=_stdin(json.dumps({"n": 3, "nested": {"x": True}}))
    )
    assert data == {"n": 3, "nested": {"x": True}, "extra": "1"}


def test_at_json_file_and_file_option(tmp_path: Path) -> None:
    doc = tmp_path / "data.json"
    doc.write_text('{"a": "1", "b": "2"}', encoding="utf-8")
    assert parse_data_args([f"@{doc}", "b=override"], stdin=_stdin()) == {"a": "1", "b": "override"}
    assert parse_data_args([], stdin=_stdin(), file=str(doc)) == {"a": "1", "b": "2"}
    assert parse_data_args([], stdin=_stdin('{"z": 0}'), file="-") == {"z": 0}


def test_stdin_can_be_used_only_once() -> None:
    with pytest.raises(DataArgumentError, match="stdin can be read only once"):
        parse_data_args(["a=-", "b=-"], stdin=_stdin("x"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["novalue"], "data argument 1 is not key=value"),
        (["=v"], "empty key"),
        ([], "no data given"),
        (["@/nonexistent/data.json"], "file not found: /nonexistent/data.json"),
        (["k=@/nonexistent/pw"], "file not found"),
    ],
)
def test_bad_arguments_are_named(args: list[str], message: str) -> None:
    with pytest.raises(DataArgumentError, match=message):
        parse_data_args(args, stdin=_stdin())


def test_json_input_must_be_an_object(tmp_path: Path) -> None:
    with pytest.raises(DataArgumentError, match="must hold a JSON object, got list"):
        parse_data_args(["-"], stdin=_stdin("[1, 2]"))
    with pytest.raises(DataArgumentError, match="stdin is not valid JSON"):
        parse_data_args(["-"], stdin=_stdin("{not json"))
    binary = tmp_path / "blob"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataArgumentError, match="is not UTF-8 text"):
        parse_data_args([f"k=@{binary}"], stdin=_stdin())


def test_error_messages_never_contain_the_value() -> None:
    with pytest.raises(DataArgumentError) as info:
        parse_data_args(["passwordhunter2"], stdin=_stdin())
    assert "hunter2" not in str(info.value)


def test_split_path_takes_the_first_segment_as_mount() -> None:
    assert split_path("secret/app/db", mount=None) == ("secret", "app/db")
    assert split_path("/secret/app/db/", mount=None) == ("secret", "app/db")
    assert split_path("app/db", mount="kv") == ("kv", "app/db")
    assert split_path("secret/", mount=None, allow_mount_only=True) == ("secret", "")
    assert split_path("", mount="kv", allow_mount_only=True) == ("kv", "")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("secret", "names only a mount"),
        ("", "a path is required"),
        ("secret/a//b", "empty"),
        ("secret/../x", "'..'"),
    ],
)
def test_split_path_rejects_incomplete_paths(path: str, message: str) -> None:
    with pytest.raises(DataArgumentError, match=message):
        split_path(path, mount=None)


def test_parse_versions() -> None:
    assert parse_versions("1, 2,5", required=True) == [1, 2, 5]
    assert parse_versions(None, required=False) == []
    with pytest.raises(DataArgumentError, match="--versions is required"):
        parse_versions(None, required=True)
    with pytest.raises(DataArgumentError, match="'x'"):
        parse_versions("1,x", required=True)
    with pytest.raises(DataArgumentError, match="'0'"):
        parse_versions("0", required=True)


def test_parse_pairs() -> None:
    assert parse_pairs(["owner=team-a", "tier=1=2"], option="--custom-metadata") == {
        "owner": "team-a",
        "tier": "1=2",
    }
    with pytest.raises(DataArgumentError, match="--meta expects key=value"):
        parse_pairs(["nope"], option="--meta")


def test_history_rows_are_newest_first_and_keep_extra_fields() -> None:
    metadata = {
        "current_version": 3,
        "versions": {
            "1": {"created_time": "t1", "deletion_time": "", "destroyed": True},
            "3": {
                "created_time": "t3",
                "deletion_time": "",
                "destroyed": False,
                "created_by": "alice",
                "reason": "rotate",
            },
            "2": {"created_time": "t2", "deletion_time": "d2", "destroyed": False},
        },
    }
    rows = history_rows(metadata)
    assert [r["version"] for r in rows] == [3, 2, 1]
    assert rows[0] == {
        "version": 3,
        "created": "t3",
        "who": "alice",
        "reason": "rotate",
        "added": None,  # not recorded by the server for this version
        "changed": None,
        "removed": None,
        "deleted": "",
        "destroyed": False,
        "current": True,
    }
    assert rows[1]["deleted"] == "d2"
    assert rows[2]["destroyed"] is True
