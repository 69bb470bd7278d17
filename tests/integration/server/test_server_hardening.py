"""Regression tests for the bad input that once reached 5xx (issue 11's ten defects, bar the full
audit disk, which ``test_audit_full_disk.py`` covers), against a real server with an audit device.

Every case must be answered 4xx with a message naming the problem, and at the end the audit
file must still verify with ``kustos audit verify`` (a status of ``1e20`` once broke it).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server._raw import raw_request
from tests.support.server import RunningServer, assert_audit_file_verifies, start_server

BODY_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(
        tmp_path_factory.mktemp("hardening"), "--body-timeout", str(BODY_TIMEOUT)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def audit_file(server: RunningServer, http: httpx.Client) -> Path:
    path = server.data_dir.parent / "audit.log"
    enabled = http.post(
        "/v1/sys/audit/file", json={"type": "file", "options": {"file_path": str(path)}}
    )
    assert enabled.status_code == 204, enabled.text
    return path


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def mounted(http: httpx.Client, audit_file: Path) -> None:
    """A transit key, an approle method, a kv secret with a version: what the cases touch."""
    assert http.post("/v1/sys/mounts/transit", json={"type": "transit"}).status_code == 204
    assert http.post("/v1/transit/keys/k").status_code in (200, 204)
    assert http.post("/v1/sys/auth/approle", json={"type": "approle"}).status_code == 204
    assert http.post("/v1/secret/data/app", json={"data": {"k": "v"}}).status_code == 200


def _errors(response: httpx.Response) -> str:
    doc = response.json()
    assert isinstance(doc.get("errors"), list) and doc["errors"], doc
    return " ".join(doc["errors"])


def _nested(depth: int) -> bytes:
    return b'{"data": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


# 1. JSON nested ~256+ deep


@pytest.mark.usefixtures("mounted")
def test_deep_json_is_a_400_with_an_audit_device(http: httpx.Client, audit_file: Path) -> None:
    before = audit_file.stat().st_size
    for depth in (65, 300, 5000):
        response = http.post("/v1/secret/data/deep", content=_nested(depth))
        assert response.status_code == 400, response.text
        assert "deeper than 64 levels" in _errors(response)
    assert http.get("/v1/secret/data/deep").status_code == 404
    # the three refusals cost a few KB of audit log, not hundreds
    assert audit_file.stat().st_size - before < 3 * 8192
    ok = http.post("/v1/secret/data/deep", content=_nested(60))
    assert ok.status_code == 200, ok.text


@pytest.mark.usefixtures("mounted")
def test_deep_json_without_a_token_is_refused_before_the_body_is_read(
    server: RunningServer,
) -> None:
    status, doc = raw_request(server.addr, "POST", "/v1/secret/data/deep", body=_nested(5000))
    assert status == 403 and doc == {"errors": ["permission denied"]}
    # the same for a body that is not even JSON: the token is checked first
    status, doc = raw_request(server.addr, "POST", "/v1/transit/encrypt/k", body=b"[" * 100_000)
    assert status == 403 and doc == {"errors": ["permission denied"]}
    # a login needs no token, so its body is read, and refused for its depth
    status, doc = raw_request(server.addr, "POST", "/v1/auth/approle/login", body=_nested(500))
    assert status == 400 and "deeper than 64 levels" in doc["errors"][0]


# 2. Unicode digits, 3. digit strings past Python's int-string limit

HUGE = "9" * 5000


@pytest.mark.usefixtures("mounted")
@pytest.mark.parametrize("digits", ["²", "٣", "1²", "١٢", HUGE, "1_0", "1e3", "-٣"])
def test_integer_query_parameters_are_ascii_and_bounded(http: httpx.Client, digits: str) -> None:
    cases = [
        ("GET", "/v1/sys/health", {"activecode": digits}),
        ("GET", "/v1/secret/subkeys/app", {"depth": digits}),
        ("GET", "/v1/secret/data/app", {"version": digits}),
        ("GET", "/v1/sys/events/subscribe", {"prefix": "secret/", "heartbeat": digits}),
    ]
    for method, path, params in cases:
        response = http.request(method, path, params=params)
        assert response.status_code == 400, (path, response.text)
        assert next(iter(params.keys() - {"prefix"})) in _errors(response)


@pytest.mark.usefixtures("mounted")
@pytest.mark.parametrize("digits", ["²", "٣", HUGE])
def test_integer_body_parameters_are_ascii_and_bounded(http: httpx.Client, digits: str) -> None:
    cases = [
        ("/v1/secret/data/app", {"data": {"k": "w"}, "options": {"cas": digits}}, "options.cas"),
        ("/v1/secret/delete/app", {"versions": [digits]}, "versions"),
        ("/v1/secret/destroy/app", {"versions": digits}, "versions"),
        ("/v1/sys/rewrap", {"max_records": digits}, "max_records"),
        ("/v1/sys/keyring/disable", {"version": digits}, "version"),
    ]
    for path, body, field in cases:
        response = http.post(path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert field in _errors(response)
    assert http.get("/v1/secret/data/app").json()["data"]["data"] == {"k": "v"}


# 4. integers >= 2**64 and 1e300 in stored settings

BIG_NUMBERS = [b"18446744073709551616", b"1e300", b"-1", b"1.5", b"true"]


@pytest.mark.usefixtures("mounted")
@pytest.mark.parametrize("number", BIG_NUMBERS)
def test_stored_counts_are_bounded(http: httpx.Client, number: bytes) -> None:
    cases = [
        ("/v1/secret/metadata/app", b'{"max_versions": %s}', "max_versions"),
        ("/v1/secret/config", b'{"max_versions": %s}', "max_versions"),
        ("/v1/auth/approle/role/r", b'{"secret_id_num_uses": %s}', "secret_id_num_uses"),
        ("/v1/sys/sealing/config", b'{"key_bits": %s}', "key_bits"),
        ("/v1/transit/keys/k/config", b'{"min_decryption_version": %s}', "min_decryption_version"),
    ]
    for path, template, field in cases:
        response = http.post(path, content=template % number)
        assert response.status_code == 400, (path, number, response.text)
        assert field in _errors(response)
    assert http.get("/v1/secret/metadata/app").json()["data"]["max_versions"] == 0
    assert http.get("/v1/secret/config").json()["data"]["max_versions"] == 0


# 5. durations of "²"


@pytest.mark.usefixtures("mounted")
@pytest.mark.parametrize("duration", ["²", "²s", "1h²m", "٣m", "9" * 100, "1e300s", "-1s"])
def test_durations_are_ascii_and_bounded(http: httpx.Client, duration: str) -> None:
    cases = [
        ("/v1/auth/token/create", {"ttl": duration}, "ttl"),
        ("/v1/secret/metadata/app", {"delete_version_after": duration}, "delete_version_after"),
        ("/v1/secret/config", {"delete_version_after": duration}, "delete_version_after"),
        ("/v1/sys/mounts/secret/tune", {"default_lease_ttl": duration}, "default_lease_ttl"),
        ("/v1/auth/approle/role/r", {"secret_id_ttl": duration}, "secret_id_ttl"),
        ("/v1/transit/keys/k/config", {"auto_rotate_period": duration}, "auto_rotate_period"),
        ("/v1/sys/sealing/config", {"renew_period": duration}, "renew_period"),
    ]
    for path, body, field in cases:
        response = http.post(path, json=body)
        assert response.status_code == 400, (path, duration, response.text)
        assert field in _errors(response)


@pytest.mark.usefixtures("mounted")
@pytest.mark.parametrize("number", [b"18446744073709551616", b"1e300", b"-1", b"true", b"[]"])
def test_numeric_durations_are_bounded(http: httpx.Client, number: bytes) -> None:
    response = http.post("/v1/auth/token/create", content=b'{"ttl": %s}' % number)
    assert response.status_code == 400 and "ttl" in _errors(response), response.text


# 6. a transit algorithm that is not a string


@pytest.mark.usefixtures("mounted")
@pytest.mark.parametrize("algorithm", [["sha2-256"], {"a": 1}, 256, True, "sha2-999"])
def test_transit_algorithm_must_be_a_known_string(http: httpx.Client, algorithm: object) -> None:
    for field in ("algorithm", "hash_algorithm"):
        hmac = http.post("/v1/transit/hmac/k", json={"input": "aGk=", field: algorithm})
        assert hmac.status_code == 400 and field in _errors(hmac), hmac.text
        verify = http.post(
            "/v1/transit/verify/k",
            json={"input": "aGk=", "hmac": "vault:v1:AA==", field: algorithm},
        )
        assert verify.status_code == 400 and field in _errors(verify), verify.text


# 7. a SealedSecret whose spec (or another part) is not an object


def _sealed(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"encryptedData": {"k": "AAAA"}},
    }
    doc.update(changes)
    return doc


BAD_SEALED = [
    _sealed(spec=[]),
    _sealed(spec="x"),
    _sealed(spec=1),
    _sealed(spec={"encryptedData": ["AAAA"]}),
    _sealed(spec={"encryptedData": {"k": 1}}),
    _sealed(spec={"template": []}),
    _sealed(spec={"template": {"metadata": "x"}}),
    _sealed(spec={"template": {"data": {"k": 1}}}),
    _sealed(metadata=[]),
    _sealed(metadata={"name": ["s"]}),
    _sealed(metadata={"name": "s", "annotations": []}),
    _sealed(apiVersion="kustos.io/v1", spec={"dataKeys": {"d1": "x"}}),
    _sealed(kind=["SealedSecret"]),
]


@pytest.mark.usefixtures("mounted")
@pytest.mark.parametrize("doc", BAD_SEALED, ids=[str(i) for i in range(len(BAD_SEALED))])
def test_sealed_secret_shapes_are_checked(http: httpx.Client, doc: dict[str, object]) -> None:
    for path in ("/v1/verify", "/v1/rotate"):
        response = http.post(path, content=json.dumps(doc))
        assert response.status_code == 400, (path, response.text)
    response = http.post("/v1/sys/sealing/unseal", json={"sealed_secret": doc})
    assert response.status_code == 400, response.text


@pytest.mark.usefixtures("mounted")
def test_yaml_aliases_and_deep_yaml_are_refused(http: httpx.Client) -> None:
    bomb = "\n".join(
        ["a: &a [x, x, x, x, x, x, x, x, x]"]
        + [
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ]
        + ["kind: SealedSecret", "apiVersion: bitnami.com/v1alpha1"]
    )
    response = http.post("/v1/rotate", content=bomb.encode())
    assert response.status_code == 400 and "aliases" in _errors(response), response.text
    for levels in (100, 1000):  # block style: no brackets, only the manifest reader sees the depth
        deep = "".join(f"{' ' * i}k{i}:\n" for i in range(levels)) + " " * levels + "v: 1\n"
        response = http.post("/v1/verify", content=deep.encode())
        assert response.status_code == 400 and "nest" in _errors(response), response.text


# 8. transit partial_failure_response_code


@pytest.mark.usefixtures("mounted")
@pytest.mark.parametrize(
    "code", [b"0", b"100", b"101", b"199", b"204", b"304", b"600", b"1e20", b'"x"']
)
def test_partial_failure_response_code_is_a_final_status(
    server: RunningServer, http: httpx.Client, code: bytes
) -> None:
    body = (
        b'{"batch_input": [{"plaintext": "aGk="}, {"plaintext": 1}], "partial_failure_response_code": %s}'
        % code
    )
    # a raw connection: a dropped connection or an interim status would show here
    status, doc = raw_request(
        server.addr, "POST", "/v1/transit/encrypt/k", token=server.root_token, body=body
    )
    assert status == 400, doc
    assert "partial_failure_response_code" in doc["errors"][0]


@pytest.mark.usefixtures("mounted")
def test_partial_failure_response_code_is_used(http: httpx.Client) -> None:
    body = {
        "batch_input": [{"plaintext": "aGk="}, {"plaintext": 1}],
        "partial_failure_response_code": 207,
    }
    response = http.post("/v1/transit/encrypt/k", json=body)
    assert response.status_code == 207
    results = response.json()["data"]["batch_results"]
    assert "ciphertext" in results[0] and "error" in results[1]


# 10. key_bits has an upper bound (a million bits once burnt a core for 30 s and blocked SIGTERM)


@pytest.mark.usefixtures("mounted")
@pytest.mark.parametrize("bits", [1_000_000, 8192, 4097, 1024, 2560])
def test_sealing_key_bits_are_bounded(http: httpx.Client, bits: int) -> None:
    response = http.post("/v1/sys/sealing/config", json={"key_bits": bits})
    assert response.status_code == 400 and "key_bits" in _errors(response), response.text
    assert http.get("/v1/sys/sealing/config").json()["data"]["key_bits"] == 4096


# a stalled body


def test_a_stalled_body_is_answered_408_and_the_connection_closed(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=BODY_TIMEOUT * 10) as sock:
        sock.sendall(
            b"POST /v1/secret/data/slow HTTP/1.1\r\nHost: x\r\n"
            + f"X-Vault-Token: {server.root_token}\r\n".encode()
            + b"Content-Length: 1000\r\n\r\n"
            + b'{"data":'
        )
        received = b""
        while chunk := sock.recv(65536):  # the server closes the connection after answering
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"not received within" in body


# finally: the audit file verifies after all of the above


@pytest.mark.usefixtures("mounted")
def test_the_audit_file_still_verifies(
    server: RunningServer, audit_file: Path, http: httpx.Client
) -> None:
    """The requests that once broke it (a status of 1e20 written to the file, 362 KB of
    entries for a deep body), then ``kustos audit verify`` on the file."""
    body = b'{"batch_input": [{"plaintext": 1}], "partial_failure_response_code": 1e20}'
    assert http.post("/v1/transit/encrypt/k", content=body).status_code == 400
    assert http.post("/v1/secret/data/deep", content=_nested(400)).status_code == 400
    assert http.get("/v1/sys/health").status_code == 200
    assert_audit_file_verifies(audit_file)
