"""Metrics and logs: requests are counted by route template and logged with a request id, never with values."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import RunningServer, start_server

VALUE = "observed-secret-value-7f3a"
PATH = "observability/very-specific-path"


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("observability"), "--access-log") as server:
        yield server


@pytest.fixture(scope="module")
def traffic(logged: RunningServer) -> dict[str, str]:
    """Write, read, fail and list once; return the request ids the test sent."""
    ids = {"write": "req-write-0001", "read": "req-read-0002", "bad": "req-bad-0003"}
    with httpx.Client(base_url=logged.addr, headers={"X-Vault-Token": logged.root_token}) as http:
        write = http.post(
            f"/v1/secret/data/{PATH}",
            json={"data": {"password": VALUE}},
            headers={"X-Request-Id": ids["write"], "X-Kustos-Reason": "rotation ticket 42"},
        )
        assert write.status_code == 200
        assert (
            write.headers["x-request-id"] == ids["write"]
            and write.json()["request_id"] == ids["write"]
        )
        read = http.get(f"/v1/secret/data/{PATH}", headers={"X-Request-Id": ids["read"]})
        assert read.json()["data"]["data"] == {"password": VALUE}
        bad = http.post(
            f"/v1/secret/data/{PATH}",
            content=b'{"data": {"password": "' + VALUE.encode() + b'"',
            headers={"X-Request-Id": ids["bad"]},
        )
        assert bad.status_code == 400
        generated = http.get("/v1/sys/health")
        assert len(generated.headers["x-request-id"]) == 36
        assert http.request("LIST", "/v1/secret/metadata/observability").status_code == 200
        metadata = http.get(f"/v1/secret/metadata/{PATH}").json()["data"]
        assert metadata["versions"]["1"]["reason"] == "rotation ticket 42"
    return ids


def test_metrics_count_by_route_template(logged: RunningServer, traffic: dict[str, str]) -> None:
    metrics = httpx.get(f"{logged.addr}/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'kustos_http_requests_total{method="POST",route="kv:data",status="200"} 1.0' in text
    assert 'kustos_http_requests_total{method="GET",route="kv:data",status="200"} 1.0' in text
    assert 'kustos_http_requests_total{method="POST",route="kv:data",status="400"} 1.0' in text
    assert 'kustos_http_requests_total{method="LIST",route="kv:metadata",status="200"} 1.0' in text
    assert (
        'kustos_http_request_duration_seconds_bucket{le="0.01",method="GET",route="kv:data",status="200"}'
        in text
    )
    assert "kustos_sealed 0.0" in text
    assert "kustos_storage_errors_total" in text
    for secret in (VALUE, PATH, "very-specific-path", logged.root_token):
        assert secret not in text


def test_logs_are_json_with_request_ids_and_no_values(
    logged: RunningServer, traffic: dict[str, str]
) -> None:
    deadline = time.monotonic() + 10
    while traffic["bad"] not in logged.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    stderr = logged.stderr()
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    requests = {r["request_id"]: r for r in records if r.get("msg") == "request"}
    assert requests[traffic["write"]]["route"] == "kv:data"
    assert requests[traffic["write"]]["method"] == "POST"
    assert requests[traffic["write"]]["status"] == 200
    assert requests[traffic["bad"]]["status"] == 400
    assert isinstance(requests[traffic["read"]]["duration_ms"], float)
    for secret in (VALUE, logged.root_token, "rotation ticket 42"):
        assert secret not in stderr
