"""Pure helpers of the server: durations, merge patch, subkeys, path checks, the error table, envelopes."""

from __future__ import annotations

import orjson
import pytest

from kustos.errors import (
    CheckAndSetError,
    DecryptionError,
    InvalidRequestError,
    KeyProviderError,
    KustosError,
    NotFoundError,
    PermissionDeniedError,
    SealedError,
    StorageError,
    UnsupportedOperationError,
)
from kustos.server.calls import Reply, envelope, json_object, validate_api_path
from kustos.server.engines.kv import merge_patch, subkeys
from kustos.server.errors import (
    RequestTooLargeError,
    UnsupportedMediaTypeError,
    error_body,
    public_message,
    status_for,
)
from kustos.server.mounts import normalize_mount_path
from kustos.server.times import format_duration, parse_duration, rfc3339


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (90, 90.0),
        ("90", 90.0),
        ("0s", 0.0),
        ("45s", 45.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("2d", 172800.0),
        ("1h0m0s", 3600.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value, field="ttl") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["soon", "1x", "-5s", "", True, None, [1], -1, "1h 30m"])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="ttl"):
        parse_duration(value, field="ttl")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (12319, "3h25m19s"),
        (1.5, "1.5s"),
        (0.25, "250ms"),
    ],
)
def test_format_duration_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_rfc3339_is_utc_with_microseconds() -> None:
    assert rfc3339(1_700_000_000.5) == "2023-11-14T22:13:20.500000Z"


# RFC 7396, appendix A
@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7396_examples(target: object, patch: object, result: object) -> None:
    assert merge_patch(target, patch) == result


def test_subkeys_depth() -> None:
    data = {"a": 1, "b": {"c": {"d": "x"}, "e": []}, "f": {}}
    assert subkeys(data) == {"a": None, "b": {"c": {"d": None}, "e": None}, "f": {}}
    assert subkeys(data, depth=1) == {"a": None, "b": None, "f": None}
    assert subkeys(data, depth=2) == {"a": None, "b": {"c": None, "e": None}, "f": {}}


@pytest.mark.parametrize(
    "path",
    ["secret/data/app", "secret/metadata/", "sys/health", "a/.hidden/x", "a/..b", "", "a/b.."],
)
def test_validate_api_path_accepts(path: str) -> None:
    validate_api_path(path)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("a//b", "empty segment"),
        ("/a", "empty segment"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("a/.", "'.'"),
        ("a/\x00", "NUL"),
        ("a/\x1b[31m", "control character"),
        ("a/" + "x" * 1100, "longer than 1024"),
    ],
)
def test_validate_api_path_rejects(path: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment.replace(".", r"\.").replace("[", r"\[")):
        validate_api_path(path)


def test_json_object() -> None:
    assert json_object(b"") == {}
    assert json_object(b' {"a": 1} ') == {"a": 1}
    with pytest.raises(InvalidRequestError, match="failed to parse JSON input"):
        json_object(b"{")
    with pytest.raises(InvalidRequestError, match="must be a JSON object"):
        json_object(b"[1]")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidRequestError("x"), 400),
        (CheckAndSetError("x"), 400),
        (RequestTooLargeError("x"), 413),
        (UnsupportedMediaTypeError("x"), 415),
        (PermissionDeniedError("x"), 403),
        (NotFoundError(""), 404),
        (UnsupportedOperationError("x"), 405),
        (SealedError(), 503),
        (DecryptionError(), 500),
        (StorageError("x"), 500),
        (KeyProviderError("x"), 500),
        (KustosError("x"), 500),
        (RuntimeError("x"), 500),
    ],
)
def test_status_table(error: BaseException, status: int) -> None:
    assert status_for(error) == status


def test_public_messages_hide_internals() -> None:
    assert public_message(InvalidRequestError("bad field")) == "bad field"
    assert public_message(NotFoundError("")) is None
    assert public_message(SealedError()) == "Vault is sealed"
    assert "integrity check failed" in (public_message(DecryptionError("details")) or "")
    assert (
        public_message(StorageError("sqlite: disk I/O error at /var/x"))
        == "internal error: the storage backend failed"
    )
    assert public_message(RuntimeError("value=hunter2")) == "internal error"
    assert error_body() == b'{"errors":[]}'


def test_envelope_shapes() -> None:
    body = orjson.loads(envelope(Reply(data={"k": 1}, mount_type="kv"), request_id="rid"))
    assert body == {
        "request_id": "rid",
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": {"k": 1},
        "wrap_info": None,
        "warnings": None,
        "auth": None,
        "mount_type": "kv",
    }
    assert envelope(Reply.no_content(), request_id="rid") == b""
    # the common shape is joined from constant pieces: byte for byte what dumping the whole document gives
    data = {
        "data": orjson.Fragment(b'{"password":"p\\u00e9"}'),
        "metadata": {"version": 2, "destroyed": False},
    }
    expected = orjson.dumps(
        {
            "request_id": 'r"1',
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
            "mount_type": "kv",
        }
    )
    assert envelope(Reply(data=data, mount_type="kv"), request_id='r"1') == expected
    assert orjson.loads(envelope(Reply(raw={"sealed": False}), request_id="rid")) == {
        "sealed": False
    }
    listed = orjson.loads(envelope(Reply(data={"a/": {}}, top={"a/": {}}), request_id="rid"))
    assert listed["a/"] == {} and listed["data"] == {"a/": {}}


@pytest.mark.parametrize(
    ("raw", "normalized"), [("secret", "secret/"), ("team/a/", "team/a/"), ("/x/", "x/")]
)
def test_normalize_mount_path(raw: str, normalized: str) -> None:
    assert normalize_mount_path(raw) == normalized


@pytest.mark.parametrize("raw", ["", "/", "sys", "auth/x", "a b", "a/../b", "-x", "a//b"])
def test_normalize_mount_path_rejects(raw: str) -> None:
    with pytest.raises(InvalidRequestError):
        normalize_mount_path(raw)


def test_call_and_reply_reprs_hide_values() -> None:
    from kustos.sensitive import Sensitive
    from kustos.server.calls import Call

    call = Call(
        method="POST",
        path="secret/data/x",
        query={},
        body=b'{"data":{"k":"top-secret"}}',
        content_type="",
        request_id="r",
        raw_token=Sensitive("hvs.token-value"),
    )
    reply = Reply(
        data={"k": "top-secret"},
        auth={"client_token": "hvs.token-value"},
        raw={"root_token": "hvs.token-value"},
    )
    for text in (repr(call), repr(reply)):
        assert "top-secret" not in text and "hvs.token-value" not in text
