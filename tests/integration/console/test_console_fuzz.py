"""Generated requests against every console route: never a 5xx, never a dropped connection.

Signed in (a valid session cookie and, for POSTs, the right CSRF value and
origin, so the handlers run to the end), hypothesis sends each route odd
paths, query strings and form fields: Unicode, control characters, huge
numbers, deep folder names, repeated fields, bodies that are not forms.
Bounded: derandomized, a fixed number of examples. Afterwards the audit
file still verifies.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kustos.audit import verify_file
from tests.integration.console.conftest import ConsoleServer

pytestmark = pytest.mark.slow

ROUTES: Final = (
    ("GET", "/ui/"),
    ("GET", "/ui/go"),
    ("GET", "/ui/secrets/"),
    ("GET", "/ui/secrets/{p}"),
    ("GET", "/ui/secrets/secret/{p}"),
    ("GET", "/ui/write/secret/{p}"),
    ("POST", "/ui/write/secret/{p}"),
    ("POST", "/ui/reveal/secret/{p}"),
    ("GET", "/ui/confirm/secret/{p}"),
    ("POST", "/ui/change/secret/{p}"),
    ("GET", "/ui/audit"),
    ("GET", "/ui/access"),
    ("GET", "/ui/seal"),
    ("POST", "/ui/seal"),
    ("GET", "/ui/policies"),
    ("GET", "/ui/policies/{p}"),
    ("GET", "/ui/capabilities"),
    ("GET", "/ui/token"),
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
)
FIELDS: Final = (
    "path", "q", "page", "after", "version", "from", "to", "action", "key", "value", "mode",
    "remove", "cas", "reason", "confirm", "name", "manifest", "format", "scope", "output",
    "download", "who", "operation", "type", "since", "until", "device", "method", "token",
    "username", "password", "mount", "role_id", "secret_id",
)  # fmt: skip
HOSTILE: Final = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "", "0", "-1", "1", "2", "99999999999999999999", "1e300", "²", "١٢", "../..", "a/../b",
            "%00", "\x00", "\u202e", "a//b", "/", "yes", "destroy", "rollback", "patch", "replace",
            "bitnami", "kustos", "cluster-wide", "2026-11-23T13:59", "9999-99-99", "x" * 3000,
            "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {k: v}",
            "kind: [", "{}", "[]", "&&&", "a=b&c", "é/秘/~",
        ]
    ),
)  # fmt: skip
SEGMENT: Final = st.one_of(
    st.sampled_from(["fuzz", "fuzz/app", "fuzz/", "app/db", "nope", "", "..", ".", "%2e%2e", "é"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def _signed_in(server: ConsoleServer) -> tuple[httpx.Client, str, str]:
    """A client signed in as root: the client, the page's CSRF value and the session cookie."""
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=60)
    nonce = _csrf(client.get("/ui/login").text)
    client.post(
        "/ui/login",
        data={"csrf": nonce, "method": "token", "token": server.server.root_token},
        headers={"Origin": server.url},
    )
    return client, _csrf(client.get("/ui/secrets/").text), client.cookies["kustos_session"]


def test_every_field_of_every_route_takes_odd_values_without_a_5xx(
    console_server: ConsoleServer,
) -> None:
    """Each route: each field alone set to "²" (a digit to ``isdigit()``, not to ``int()``), then
    every field at once set to each odd value: a page or a 4xx, never a 5xx."""
    server = console_server
    server.write("fuzz/app", {"k": "v"})
    client, csrf, session = _signed_in(server)
    odd = [
        "²",
        "١٢",
        "99999999999999999999",
        "-5",
        "\x00",
        "\u202e",
        "x" * 1500,
    ]  # 34 fields of 1,500: under httpx's 64 KiB query
    cases = [
        *(({name: "²"}, method, template) for method, template in ROUTES for name in FIELDS),
        *(({n: v for n in FIELDS}, method, template) for method, template in ROUTES for v in odd),
    ]
    for fields, method, template in cases:
        url = template.replace("{p}", "fuzz/app")
        if method == "GET":
            answer = client.get(url, params=fields)
        else:
            form = {**fields, "csrf": csrf}
            answer = client.post(url, data=form, headers={"Origin": server.url})
        assert answer.status_code < 500, (method, url, fields, answer.text[-800:])
        if "kustos_session" not in client.cookies:
            client.cookies.set("kustos_session", session)
    client.close()
    assert len(cases) == len(ROUTES) * (len(FIELDS) + len(odd))
    assert verify_file(server.audit_file).ok


def test_no_console_route_answers_5xx(console_server: ConsoleServer) -> None:
    server = console_server
    server.write("fuzz/app", {"k": "v"})
    client, csrf, session = _signed_in(server)
    seen: list[int] = []

    @settings(
        max_examples=400,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        route=st.sampled_from(ROUTES),
        segment=SEGMENT,
        fields=st.lists(st.tuples(st.sampled_from(FIELDS), HOSTILE), max_size=8),
        raw=st.one_of(st.none(), st.binary(max_size=200)),
        good_csrf=st.booleans(),
    )
    def probe(
        route: tuple[str, str],
        segment: str,
        fields: list[tuple[str, str]],
        raw: bytes | None,
        good_csrf: bool,
    ) -> None:
        method, template = route
        url = template.replace("{p}", quote(segment, safe="/%"))  # odd, but a URL httpx sends
        if method == "GET":
            request = client.build_request("GET", url, params=fields)
        else:
            form = [*fields, ("csrf", csrf if good_csrf else "bad")]
            request = client.build_request(
                "POST",
                url,
                data=None if raw is not None else dict(form),
                content=raw,
                headers={
                    "Origin": server.url,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
        answer = client.send(request)
        seen.append(answer.status_code)
        assert answer.status_code < 500, (method, url, fields, answer.text[-800:])
        if "kustos_session" not in client.cookies:  # a logout among the examples: sign in again
            client.cookies.set("kustos_session", session)

    probe()
    client.close()
    assert len(seen) >= 300
    assert verify_file(server.audit_file).ok
