"""The console's session rules as pure functions: CSRF values, cookies, origin checks, form parsing."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from kustos.errors import InvalidRequestError, PermissionDeniedError
from kustos.sensitive import Sensitive
from kustos.server.console.sessions import (
    Form,
    check_csrf,
    check_origin,
    cookie_header,
    csrf_token,
    expired_cookie_header,
    read_form,
    session_cookie_name,
)
from kustos.server.errors import RequestTooLargeError
from kustos.server.tokens import hash_token


def request(
    *, headers: dict[str, str] | None = None, body: bytes = b"", scheme: str = "http"
) -> Request:
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    raw = {"host": "console.test:8200", **(headers or {})}
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": scheme,
        "path": "/ui/x",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in raw.items()],
        "server": ("console.test", 8200),
    }
    return Request(scope, receive)


FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_the_csrf_value_is_keyed_by_the_session_token() -> None:
    one, two = Sensitive("hvs.one"), Sensitive("hvs.two")
    assert csrf_token(one) == csrf_token(Sensitive("hvs.one"))
    assert csrf_token(one) != csrf_token(two)
    assert len(csrf_token(one)) == 64 and "hvs.one" not in csrf_token(one)
    assert csrf_token(one) != hash_token("hvs.one")  # not what storage keeps
    check_csrf(Form({"csrf": [csrf_token(one)]}), csrf_token(one))
    for given in ([], [""], [csrf_token(two)], ["x" * 64]):
        with pytest.raises(PermissionDeniedError):
            check_csrf(Form({"csrf": given}), csrf_token(one))


def test_cookies_are_http_only_strict_and_secure_over_tls() -> None:
    plain = cookie_header("kustos_session", "v", tls=False, max_age=60)
    assert plain == "kustos_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
    assert cookie_header("x", "v", tls=True).endswith("; Secure")
    assert expired_cookie_header("x", tls=False).endswith("Max-Age=0")
    assert session_cookie_name(tls=True) == "__Host-kustos_session"
    assert session_cookie_name(tls=False) == "kustos_session"


def test_origin_checks() -> None:
    check_origin(request(headers={"origin": "http://console.test:8200"}))
    check_origin(request(headers={"sec-fetch-site": "same-origin"}))
    check_origin(request())  # not a browser: the CSRF value still has to be right
    for headers in (
        {"origin": "http://console.test:8201"},
        {"origin": "https://console.test:8200"},
        {"origin": "null"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "cross-site"},
    ):
        with pytest.raises(PermissionDeniedError):
            check_origin(request(headers=headers))


async def test_forms_are_url_encoded_and_bounded() -> None:
    form = await read_form(
        request(headers=FORM, body=b"key=a&value=%E2%9C%93&key=b&value="), max_bytes=100
    )
    assert form.all("key") == ["a", "b"] and form.all("value") == ["✓", ""]
    assert form.get("missing", "default") == "default"
    with pytest.raises(InvalidRequestError, match="form submissions"):
        await read_form(
            request(headers={"content-type": "application/json"}, body=b"{}"), max_bytes=100
        )
    with pytest.raises(RequestTooLargeError):
        await read_form(request(headers=FORM, body=b"a=" + b"x" * 200), max_bytes=100)
    with pytest.raises(RequestTooLargeError):
        await read_form(
            request(headers={**FORM, "content-length": "5000"}, body=b"a=b"), max_bytes=100
        )
    with pytest.raises(InvalidRequestError, match="UTF-8"):
        await read_form(request(headers=FORM, body=b"a=%FF"), max_bytes=100)
    with pytest.raises(InvalidRequestError, match="too many fields"):
        await read_form(request(headers=FORM, body=b"&".join([b"a=b"] * 2500)), max_bytes=100_000)
    assert "Form(" in repr(form) and "✓" not in repr(form)
