"""What the client puts on the wire, checked against a recording HTTP server on loopback.

The server is a few lines of stdlib ``http.server`` that records each request
and answers with a canned Vault-shaped body; the client under test is real.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kustos.client import KustosClient
from kustos.errors import CheckAndSetError, NotFoundError, SealedError


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Recorder:
    address: str
    requests: list[Recorded] = field(default_factory=list)
    answers: list[tuple[int, Any]] = field(default_factory=list)

    def answer(self, status: int, body: Any = None) -> None:
        self.answers.append((status, body))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    state = Recorder(address="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            state.requests.append(
                Recorded(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                )
            )
            status, body = state.answers.pop(0) if state.answers else (204, None)
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_LIST = _handle  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.address = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


_META = {
    "created_time": "t",
    "custom_metadata": None,
    "deletion_time": "",
    "destroyed": False,
    "version": 2,
}


def test_write_sends_token_cas_and_reason(recorder: Recorder) -> None:
    recorder.answer(200, {"data": _META})
    with KustosClient(recorder.address, "root-token") as client:
        meta = client.kv_v2.create_or_update_secret(
            "app/db", {"user": "admin"}, cas=1, reason="rotate db", mount_point="kv"
        )
    assert meta["version"] == 2
    (req,) = recorder.requests
    assert (req.method, req.path) == ("POST", "/v1/kv/data/app/db")
    assert req.headers["x-vault-token"] == "root-token"
    assert req.headers["x-kustos-reason"] == "rotate db"
    assert req.body == {"data": {"user": "admin"}, "options": {"cas": 1}}


def test_read_passes_version_and_returns_data(recorder: Recorder) -> None:
    recorder.answer(200, {"data": {"data": {"k": "v"}, "metadata": {**_META, "version": 1}}})
    with KustosClient(recorder.address, "t") as client:
        result = client.kv_v2.read_secret_version("a/b", version=1)
    assert result["data"] == {"k": "v"}
    assert recorder.requests[0].path == "/v1/secret/data/a/b?version=1"
    assert "x-kustos-reason" not in recorder.requests[0].headers


def test_patch_is_a_json_merge_patch(recorder: Recorder) -> None:
    recorder.answer(200, {"data": _META})
    with KustosClient(recorder.address, "t") as client:
        client.kv_v2.patch("a", {"drop": None, "k": "v"})
    req = recorder.requests[0]
    assert req.method == "PATCH"
    assert req.headers["content-type"] == "application/merge-patch+json"
    assert req.body == {"data": {"drop": None, "k": "v"}}


def test_list_uses_the_list_method_and_a_trailing_slash(recorder: Recorder) -> None:
    recorder.answer(200, {"data": {"keys": ["a", "dir/"]}})
    with KustosClient(recorder.address, "t") as client:
        assert client.kv_v2.list_secrets("app") == ["a", "dir/"]
    assert (recorder.requests[0].method, recorder.requests[0].path) == (
        "LIST",
        "/v1/secret/metadata/app/",
    )


def test_version_operations_send_the_versions(recorder: Recorder) -> None:
    with KustosClient(recorder.address, "t") as client:
        client.kv_v2.delete_versions("a", [1, 2])
        client.kv_v2.undelete_versions("a", [2])
        client.kv_v2.destroy_versions("a", [1])
        client.kv_v2.delete_latest_version("a")
        client.kv_v2.delete_metadata_and_all_versions("a")
    seen = [(r.method, r.path, r.body) for r in recorder.requests]
    assert seen == [
        ("POST", "/v1/secret/delete/a", {"versions": [1, 2]}),
        ("POST", "/v1/secret/undelete/a", {"versions": [2]}),
        ("POST", "/v1/secret/destroy/a", {"versions": [1]}),
        ("DELETE", "/v1/secret/data/a", None),
        ("DELETE", "/v1/secret/metadata/a", None),
    ]


def test_update_metadata_sends_only_given_fields(recorder: Recorder) -> None:
    with KustosClient(recorder.address, "t") as client:
        client.kv_v2.update_metadata("a", max_versions=3, custom_metadata={"owner": "team"})
    assert recorder.requests[0].body == {"max_versions": 3, "custom_metadata": {"owner": "team"}}


def test_errors_become_exceptions(recorder: Recorder) -> None:
    recorder.answer(404, {"errors": []})
    recorder.answer(400, {"errors": ["check-and-set parameter did not match the current version"]})
    recorder.answer(503, {"errors": ["Vault is sealed"]})
    with KustosClient(recorder.address, "t") as client:
        with pytest.raises(NotFoundError):
            client.kv_v2.read_secret_version("missing")
        with pytest.raises(CheckAndSetError, match="check-and-set"):
            client.kv_v2.create_or_update_secret("a", {"k": "v"}, cas=7)
        with pytest.raises(SealedError):
            client.kv_v2.read_metadata("a")


def test_health_returns_sealed_state_instead_of_raising(recorder: Recorder) -> None:
    recorder.answer(503, {"initialized": True, "sealed": True})
    with KustosClient(recorder.address, None) as client:
        assert client.sys.read_health_status() == {"initialized": True, "sealed": True}
    assert "x-vault-token" not in recorder.requests[0].headers


def test_sys_answers_without_a_data_wrapper(recorder: Recorder) -> None:
    recorder.answer(200, {"sealed": True, "t": 3, "n": 5, "progress": 1})
    recorder.answer(200, {"keys": ["a", "b"], "keys_base64": ["a", "b"], "root_token": "r"})
    recorder.answer(
        200,
        {
            "secret/": {"type": "kv", "options": {"version": "2"}},
            "request_id": "x",
            "data": {"secret/": {"type": "kv", "options": {"version": "2"}}},
        },
    )
    with KustosClient(recorder.address, None) as client:
        assert client.sys.submit_unseal_key("share")["progress"] == 1
        assert client.sys.initialize(secret_shares=2, secret_threshold=2)["root_token"] == "r"
        assert list(client.sys.list_mounts()) == ["secret/"]
    assert recorder.requests[0].body == {"key": "share"}
    assert recorder.requests[1].body == {"secret_shares": 2, "secret_threshold": 2}


def test_token_create_returns_auth(recorder: Recorder) -> None:
    recorder.answer(200, {"auth": {"client_token": "child", "policies": ["default", "app"]}})
    with KustosClient(recorder.address, "root") as client:
        auth = client.auth_token.create(policies=["app"], ttl="1h", meta={"team": "a"})
    assert auth["client_token"] == "child"
    assert recorder.requests[0].path == "/v1/auth/token/create"
    assert recorder.requests[0].body == {"policies": ["app"], "ttl": "1h", "meta": {"team": "a"}}
