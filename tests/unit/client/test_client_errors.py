"""The one table from HTTP status to ``kustos.errors`` exception, and the messages it builds."""

from __future__ import annotations

import pytest

from kustos.client import STATUS_ERRORS, error_from_response
from kustos.errors import (
    CheckAndSetError,
    InvalidRequestError,
    KustosError,
    NotFoundError,
    PermissionDeniedError,
    SealedError,
    UnsupportedOperationError,
)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, InvalidRequestError),
        (401, PermissionDeniedError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (405, UnsupportedOperationError),
        (409, CheckAndSetError),
        (412, CheckAndSetError),
        (500, KustosError),
        (502, KustosError),
        (503, SealedError),
    ],
)
def test_each_status_maps_to_its_exception(status: int, expected: type[KustosError]) -> None:
    assert STATUS_ERRORS[status] is expected
    exc = error_from_response(status=status, body={"errors": ["boom"]}, method="GET", path="/v1/x")
    assert type(exc) is expected


def test_unlisted_statuses_fall_back_by_class() -> None:
    assert (
        type(error_from_response(status=418, body=None, method="GET", path="/v1/x"))
        is InvalidRequestError
    )
    assert (
        type(error_from_response(status=429, body=None, method="GET", path="/v1/x"))
        is InvalidRequestError
    )
    assert (
        type(error_from_response(status=599, body=None, method="GET", path="/v1/x")) is KustosError
    )


def test_errors_list_is_joined_into_the_message() -> None:
    exc = error_from_response(
        status=400,
        body={"errors": ["no data provided", "bad path"]},
        method="POST",
        path="/v1/secret/data/a",
    )
    assert str(exc) == "no data provided; bad path"


def test_empty_errors_name_the_request_and_status() -> None:
    exc = error_from_response(
        status=404, body={"errors": []}, method="GET", path="/v1/secret/data/missing"
    )
    assert isinstance(exc, NotFoundError)
    assert str(exc) == "GET /v1/secret/data/missing: HTTP 404"


def test_non_json_error_body_still_maps() -> None:
    exc = error_from_response(status=403, body=None, method="GET", path="/v1/sys/seal")
    assert isinstance(exc, PermissionDeniedError)
    assert "403" in str(exc)


def test_a_400_about_check_and_set_is_a_cas_error() -> None:
    body = {"errors": ["check-and-set parameter did not match the current version"]}
    exc = error_from_response(status=400, body=body, method="POST", path="/v1/secret/data/a")
    assert isinstance(exc, CheckAndSetError)
    assert isinstance(exc, InvalidRequestError)


def test_sealed_without_message_uses_the_vault_wording() -> None:
    exc = error_from_response(
        status=503, body={"errors": []}, method="GET", path="/v1/secret/data/a"
    )
    assert isinstance(exc, SealedError)
    assert str(exc) == "Vault is sealed"
