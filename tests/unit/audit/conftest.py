"""Shared pieces for the audit tests: a fixed key, a stepping clock, and a helper to log one API call."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kustos.audit import AuditAuth, AuditRequest, AuditResponse, FileAuditDevice
from kustos.sensitive import Sensitive

KEY_BYTES = bytes(range(32))
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def key() -> Sensitive[bytes]:
    return Sensitive(KEY_BYTES)


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """Each call is one second after the previous one, starting at START."""
    ticks: Iterator[int] = itertools.count()
    return lambda: START + timedelta(seconds=next(ticks))


LogCall = Callable[..., None]


def _log_call(
    device: FileAuditDevice,
    *,
    path: str,
    operation: str = "read",
    status: int = 200,
    auth: AuditAuth | None = None,
    data: dict[str, Any] | None = None,
    response_data: dict[str, Any] | None = None,
    request_id: str = "req",
    error: str = "",
) -> None:
    who = auth or AuditAuth(display_name="token", accessor="acc-1", policies=("default",))
    request = AuditRequest(
        id=request_id,
        operation=operation,
        path=path,
        mount_type="kv",
        remote_address="10.0.0.7",
        client_token=who.client_token,
        client_token_accessor=who.accessor,
        data=data,
    )
    device.log_request(auth=who, request=request)
    device.log_response(
        auth=who,
        request=request,
        response=AuditResponse(status=status, data=response_data),
        error=error,
    )


@pytest.fixture
def log_call() -> LogCall:
    """Log one API call (request and response entries) on a device."""
    return _log_call
