"""Bad input gets a 4xx naming the problem, and nothing already stored changes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from kustos.errors import InvalidTokenError
from tests.integration.server._raw import raw_request
from tests.support.server import RunningServer, start_server

MAX_VALUE = 4096


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(
        tmp_path_factory.mktemp("bad-input"), "--max-value-bytes", str(MAX_VALUE)
    ) as server:
        yield server


@pytest.fixture(scope="module")
def root_http(small_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=small_server.addr, headers={"X-Vault-Token": small_server.root_token}
    ) as http:
        yield http


@pytest.fixture(scope="module")
def seeded(root_http: httpx.Client) -> dict[str, object]:
    """One secret with two versions, and what reading it shows; every test checks it is unchanged."""
    for value in ("original-1", "original-2"):
        assert (
            root_http.post("/v1/secret/data/bad/target", json={"data": {"k": value}}).status_code
            == 200
        )
    return _snapshot(root_http)


def _snapshot(http: httpx.Client) -> dict[str, object]:
    data = http.get("/v1/secret/data/bad/target").json()["data"]
    metadata = http.get("/v1/secret/metadata/bad/target").json()["data"]
    listing = http.request("LIST", "/v1/secret/metadata/").json()["data"]["keys"]
    return {"data": data, "metadata": metadata, "listing": listing}


JSON = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}

CASES = [
    # (id, method, target, body, headers, status, message fragment)
    (
        "malformed-json",
        "POST",
        "/v1/secret/data/bad/target",
        b'{"data": {"k": ',
        JSON,
        400,
        "failed to parse JSON input",
    ),
    (
        "json-array-body",
        "POST",
        "/v1/secret/data/bad/target",
        b'["k"]',
        JSON,
        400,
        "must be a JSON object",
    ),
    (
        "data-string",
        "POST",
        "/v1/secret/data/bad/target",
        b'{"data": "v"}',
        JSON,
        400,
        "'data' must be a JSON object",
    ),
    (
        "data-list",
        "POST",
        "/v1/secret/data/bad/target",
        b'{"data": [1, 2]}',
        JSON,
        400,
        "'data' must be a JSON object",
    ),
    ("no-data", "POST", "/v1/secret/data/bad/target", b"{}", JSON, 400, "no data provided"),
    (
        "cas-not-int",
        "POST",
        "/v1/secret/data/bad/target",
        b'{"data": {"k": "x"}, "options": {"cas": "one"}}',
        JSON,
        400,
        "options.cas must be an integer",
    ),
    (
        "cas-mismatch",
        "POST",
        "/v1/secret/data/bad/target",
        b'{"data": {"k": "x"}, "options": {"cas": 1}}',
        JSON,
        400,
        "check-and-set parameter did not match",
    ),
    (
        "value-too-large",
        "POST",
        "/v1/secret/data/bad/target",
        b'{"data": {"k": "' + b"x" * MAX_VALUE + b'"}}',
        JSON,
        413,
        f"maximum of {MAX_VALUE} bytes",
    ),
    (
        "body-too-large",
        "POST",
        "/v1/secret/data/bad/target",
        b'{"data": {"k": "' + b"x" * (MAX_VALUE + 70 * 1024) + b'"}}',
        JSON,
        413,
        "request body is larger than the maximum",
    ),
    (
        "patch-too-large",
        "PATCH",
        "/v1/secret/data/bad/target",
        b'{"data": {"big": "' + b"x" * MAX_VALUE + b'"}}',
        MERGE,
        413,
        f"maximum of {MAX_VALUE} bytes",
    ),
    (
        "patch-malformed",
        "PATCH",
        "/v1/secret/data/bad/target",
        b"{",
        MERGE,
        400,
        "failed to parse JSON input",
    ),
    (
        "dotdot",
        "POST",
        "/v1/secret/data/bad/../target",
        b'{"data": {"k": "x"}}',
        JSON,
        400,
        "'..' segment",
    ),
    (
        "encoded-dotdot",
        "POST",
        "/v1/secret/data/bad/%2e%2e/target",
        b'{"data": {"k": "x"}}',
        JSON,
        400,
        "'..' segment",
    ),
    (
        "dot",
        "POST",
        "/v1/secret/data/bad/./target",
        b'{"data": {"k": "x"}}',
        JSON,
        400,
        "'.' segment",
    ),
    (
        "empty-segment",
        "POST",
        "/v1/secret/data/bad//target",
        b'{"data": {"k": "x"}}',
        JSON,
        400,
        "empty segment",
    ),
    (
        "leading-slash",
        "POST",
        "/v1//secret/data/bad/target",
        b'{"data": {"k": "x"}}',
        JSON,
        400,
        "empty segment",
    ),
    ("nul", "POST", "/v1/secret/data/bad/tar%00get", b'{"data": {"k": "x"}}', JSON, 400, "NUL"),
    (
        "too-long",
        "POST",
        "/v1/secret/data/bad/" + "a" * 1100,
        b'{"data": {"k": "x"}}',
        JSON,
        400,
        "longer than 1024",
    ),
    (
        "trailing-slash",
        "POST",
        "/v1/secret/data/bad/target/",
        b'{"data": {"k": "x"}}',
        JSON,
        400,
        "must not end with '/'",
    ),
    (
        "unknown-mount",
        "POST",
        "/v1/nomount/data/bad/target",
        b'{"data": {"k": "x"}}',
        JSON,
        404,
        "no handler for route",
    ),
    (
        "unknown-operation",
        "GET",
        "/v1/secret/bogus/bad/target",
        None,
        {},
        404,
        "no handler for route",
    ),
    (
        "method-not-allowed",
        "LIST",
        "/v1/secret/data/bad/target",
        None,
        {},
        405,
        "unsupported operation",
    ),
    (
        "bad-version",
        "GET",
        "/v1/secret/data/bad/target?version=latest",
        None,
        {},
        400,
        "version must be an integer",
    ),
    (
        "negative-max-versions",
        "POST",
        "/v1/secret/metadata/bad/target",
        b'{"max_versions": -1}',
        JSON,
        400,
        "max_versions must be between 0 and 1000",
    ),
    (
        "custom-metadata-not-strings",
        "POST",
        "/v1/secret/metadata/bad/target",
        b'{"custom_metadata": {"a": 1}}',
        JSON,
        400,
        "custom_metadata['a'] must be a string",
    ),
    (
        "bad-duration",
        "POST",
        "/v1/secret/metadata/bad/target",
        b'{"delete_version_after": "soon"}',
        JSON,
        400,
        "delete_version_after: invalid duration",
    ),
    (
        "unknown-metadata-field",
        "POST",
        "/v1/secret/metadata/bad/target",
        b'{"max_version": 3}',
        JSON,
        400,
        "unknown metadata field(s): max_version",
    ),
    (
        "no-versions",
        "POST",
        "/v1/secret/destroy/bad/target",
        b"{}",
        JSON,
        400,
        "no version number provided",
    ),
    (
        "versions-not-ints",
        "POST",
        "/v1/secret/delete/bad/target",
        b'{"versions": ["x"]}',
        JSON,
        400,
        "versions must be an integer",
    ),
    (
        "mount-bad-type",
        "POST",
        "/v1/sys/mounts/bad-type",
        b'{"type": "transit-ish"}',
        JSON,
        400,
        "unknown secrets engine type",
    ),
    ("mount-reserved", "POST", "/v1/sys/mounts/sys/x", b'{"type": "kv-v2"}', JSON, 400, "reserved"),
    (
        "mount-overlap",
        "POST",
        "/v1/sys/mounts/secret/inner",
        b'{"type": "kv-v2"}',
        JSON,
        400,
        "already in use at secret/",
    ),
]


@pytest.mark.parametrize(
    ("method", "target", "body", "headers", "status", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_refused_and_changes_nothing(
    small_server: RunningServer,
    root_http: httpx.Client,
    seeded: dict[str, object],
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    got, doc = raw_request(
        small_server.addr, method, target, token=small_server.root_token, body=body, headers=headers
    )
    assert got == status, doc
    assert isinstance(doc, dict) and isinstance(doc.get("errors"), list) and doc["errors"], doc
    assert fragment in doc["errors"][0]
    assert _snapshot(root_http) == seeded


def test_missing_and_unknown_tokens_are_forbidden(
    small_server: RunningServer, root_http: httpx.Client, seeded: dict[str, object]
) -> None:
    body = b'{"data": {"k": "x"}}'
    for token in (None, "hvs.not-a-real-token"):
        for method, target in (
            ("GET", "/v1/secret/data/bad/target"),
            ("POST", "/v1/secret/data/bad/target"),
        ):
            got, doc = raw_request(
                small_server.addr, method, target, token=token, body=body, headers=JSON
            )
            assert got == 403  # Vault's status for both; the message tells them apart
            expected = "permission denied" if token is None else InvalidTokenError.MESSAGE
            assert doc == {"errors": [expected]}
    assert _snapshot(root_http) == seeded


def test_errors_never_echo_the_value(
    small_server: RunningServer, root_http: httpx.Client, seeded: dict[str, object]
) -> None:
    got, doc = raw_request(
        small_server.addr,
        "POST",
        "/v1/secret/data/bad/target",
        token=small_server.root_token,
        body=b'{"data": {"k": "leaky-value-123"}, "options": {"cas": 99}}',
        headers=JSON,
    )
    assert got == 400
    assert "leaky-value-123" not in str(doc)
    got, doc = raw_request(
        small_server.addr,
        "POST",
        "/v1/secret/data/bad/target",
        token=small_server.root_token,
        body=b'{"data": {"k": "leaky-value-123"',
        headers=JSON,
    )
    assert got == 400 and "leaky-value-123" not in str(doc)
    assert _snapshot(root_http) == seeded
