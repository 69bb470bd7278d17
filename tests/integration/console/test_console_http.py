"""The console over plain HTTP: headers, cookies, CSRF and origin checks, bad input, ``--no-ui``.

What a browser does not show: the exact answers. Every state-changing route
refuses a request without the session's CSRF value or from another origin;
a write-only caller's answers never hold a value; bad input is a 4xx page,
never a 5xx; the session cookie is ``HttpOnly; SameSite=Strict`` and, over
TLS, ``Secure`` with the ``__Host-`` prefix.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import re
import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kustos.server.console.rendering import CONTENT_SECURITY_POLICY
from tests.integration.console.conftest import ConsoleServer
from tests.support.server import start_server

POST_ROUTES = (
    "/ui/reveal/secret/http/app",
    "/ui/write/secret/http/app",
    "/ui/change/secret/http/app",
    "/ui/seal",
    "/ui/logout",
)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:2000]
    return found.group(1)


class Session:
    """An httpx client signed in to the console, like a browser on the console's origin."""

    def __init__(self, server: ConsoleServer, token: str) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
        page = self.client.get("/ui/login")
        answer = self.client.post(
            "/ui/login",
            data={"csrf": csrf_of(page.text), "method": "token", "token": token},
            headers={"Origin": server.url},
        )
        assert answer.status_code == 303, answer.text
        self.csrf = csrf_of(self.client.get("/ui/secrets/").text)

    def post(self, url: str, data: dict[str, str], **headers: str) -> httpx.Response:
        return self.client.post(
            url, data={"csrf": self.csrf, **data}, headers={"Origin": self.server.url, **headers}
        )

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def root_session(console_server: ConsoleServer) -> Iterator[Session]:
    session = Session(console_server, console_server.server.root_token)
    yield session
    session.close()


def test_every_answer_carries_the_security_headers(
    console_server: ConsoleServer, root_session: Session
) -> None:
    console_server.write("http/app", {"k": "v"})
    for url in (
        "/ui/login",
        "/ui/secrets/",
        "/ui/secrets/secret/http/app",
        "/ui/static/console.js",
        "/ui/static/console.css",
        "/ui/secrets/secret/no/such/thing",
    ):
        answer = root_session.client.get(url)
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
        static = url.startswith("/ui/static/")
        assert answer.headers["cache-control"] == ("no-cache" if static else "no-store")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    page = root_session.client.get("/ui/secrets/secret/http/app").text
    assert "<script>" not in page and " style=" not in page and "<style" not in page
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/ui/static/console.js" defer>']


def test_the_session_cookie_and_login_refusals(console_server: ConsoleServer) -> None:
    client = httpx.Client(base_url=console_server.url, follow_redirects=False)
    page = client.get("/ui/login")
    nonce = csrf_of(page.text)
    assert (
        "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
    )
    token = console_server.server.root_token
    # no double-submit cookie, a wrong value, another origin: refused, no session
    fresh = httpx.Client(base_url=console_server.url, follow_redirects=False)
    assert (
        fresh.post("/ui/login", data={"csrf": nonce, "method": "token", "token": token}).status_code
        == 403
    )
    assert (
        client.post("/ui/login", data={"csrf": "x", "method": "token", "token": token}).status_code
        == 403
    )
    answer = client.post(
        "/ui/login",
        data={"csrf": nonce, "method": "token", "token": token},
        headers={"Origin": "http://evil.example"},
    )
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    bad = client.post("/ui/login", data={"csrf": nonce, "method": "token", "token": "hvs.nope"})
    assert bad.status_code == 403 and "not valid" in bad.text
    assert "kustos_session=hvs" not in bad.headers.get("set-cookie", "")
    good = client.post("/ui/login", data={"csrf": nonce, "method": "token", "token": token})
    assert good.status_code == 303
    cookie = next(c for c in good.headers.get_list("set-cookie") if c.startswith("kustos_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the TLS test
    assert token not in good.text and token not in good.headers.get("location", "")
    fresh.close()
    client.close()


def test_every_state_changing_route_needs_the_csrf_value_and_the_same_origin(
    console_server: ConsoleServer, root_session: Session
) -> None:
    console_server.write("http/app", {"k": "v"})
    before = console_server.metadata("http/app")
    fields = {
        "version": "1",
        "key": "k",
        "value": "changed",
        "mode": "replace",
        "action": "destroy",
        "reason": "x",
        "confirm": "yes",
        "manifest": "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {k: v}\n",
    }
    client = root_session.client
    for route in POST_ROUTES:
        missing = client.post(route, data=fields, headers={"Origin": console_server.url})
        wrong = client.post(
            route, data={**fields, "csrf": "0" * 64}, headers={"Origin": console_server.url}
        )
        elsewhere = client.post(
            route,
            data={**fields, "csrf": root_session.csrf},
            headers={"Origin": "http://127.0.0.1:1"},
        )
        cross_site = client.post(
            route,
            data={**fields, "csrf": root_session.csrf},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        for answer in (missing, wrong, elsewhere, cross_site):
            assert answer.status_code == 403, (route, answer.status_code)
    json_body = client.post(
        "/ui/write/secret/http/app",
        json={"csrf": root_session.csrf, "key": "k", "value": "v"},
        headers={"Origin": console_server.url},
    )
    assert json_body.status_code == 400  # forms only
    assert console_server.metadata("http/app") == before
    assert console_server.token_valid(client.cookies["kustos_session"])  # logout was refused too


def test_a_write_only_caller_never_receives_a_value(console_server: ConsoleServer) -> None:
    old = "old-" + secrets.token_hex(8)
    new = "new-" + secrets.token_hex(8)
    console_server.write("wo/http", {"password": old, "user": "u"})
    session = Session(console_server, console_server.writeonly_token)
    answers = [
        session.client.get("/ui/secrets/secret/wo/http"),
        session.client.get("/ui/write/secret/wo/http"),
        session.post("/ui/reveal/secret/wo/http", {"version": "1", "key": "password"}),
        session.post(
            "/ui/reveal/secret/wo/http", {"key": "password"}, **{"X-Kustos-Console": "reveal"}
        ),
        session.post(
            "/ui/write/secret/wo/http",
            {"key": "password", "value": new, "mode": "replace", "cas": "1"},
        ),
    ]
    answers.append(session.client.get(answers[-1].headers["location"]))
    # a failed write answers the form again, without the values typed
    answers.append(
        session.post("/ui/write/secret/wo/http", {"key": "password", "value": new, "mode": "patch"})
    )
    statuses = [a.status_code for a in answers]
    assert statuses == [200, 200, 403, 403, 303, 200, 403], statuses
    for answer in answers:
        assert old not in answer.text and new not in answer.text
        assert old not in str(answer.headers) and new not in str(answer.headers)
    assert console_server.read("wo/http")["data"] == {"password": new}
    session.close()


def test_bad_input_is_a_clear_4xx_page(
    console_server: ConsoleServer, root_session: Session
) -> None:
    console_server.write("http/bad", {"k": "v"})
    client = root_session.client
    cases = [
        (client.get("/ui/secrets/nomount/x"), 404, "no secrets engine is mounted"),
        (client.get("/ui/secrets/secret/http/bad?version=abc"), 400, "version must be"),
        (client.get("/ui/secrets/secret/http/bad?version=%C2%B2"), 400, "version must be"),
        (client.get("/ui/secrets/secret/http/bad?from=1&to=%D9%A2"), 400, "to must be"),
        (client.get("/ui/audit?page=%C2%B2"), 400, "page must be"),
        (client.get("/ui/secrets/secret/http/bad?version=99"), 404, "has no version 99"),
        (client.get("/ui/secrets/secret/http/bad?from=1&to=7"), 404, "has no version 7"),
        (client.get("/ui/secrets/secret/http/missing"), 200, "There is no secret here yet"),
        (client.get("/ui/secrets/sys/x"), 404, "no secrets engine"),
        (client.get("/ui/confirm/secret/http/bad?action=explode&version=1"), 400, "action must be"),
        (client.get("/ui/audit?operation=explode"), 400, "operation must be"),
        (client.get("/ui/audit?since=yesterday"), 400, "since"),
        (client.get("/ui/secrets/secret/http/?q=a&page=-1"), 400, "page must be"),
        (
            root_session.post("/ui/write/secret/http/bad", {"key": "", "value": "x"}),
            400,
            "at least one key",
        ),
        (
            root_session.post(
                "/ui/write/secret/http/bad", {"key": "a", "value": "x", "mode": "odd"}
            ),
            400,
            "mode",
        ),
        (root_session.post("/ui/reveal/secret/http/bad", {"key": "nope"}), 404, "has no key"),
        (root_session.post("/ui/reveal/secret/http/", {"key": "k"}), 400, "name a secret"),
        (root_session.post("/ui/seal", {"manifest": "kind: [unclosed"}), 400, "invalid YAML"),
        (
            root_session.post("/ui/seal", {"manifest": "kind: ConfigMap\napiVersion: v1\n"}),
            400,
            "expected a v1 Secret",
        ),
        (root_session.post("/ui/seal", {"manifest": "x", "format": "zip"}), 400, "format must be"),
    ]
    for answer, status, text in cases:
        assert answer.status_code == status, (
            answer.request.url,
            answer.status_code,
            answer.text[-600:],
        )
        assert text in answer.text, (answer.request.url, text)
    big = root_session.post("/ui/write/secret/http/bad", {"key": "k", "value": "x" * 4_000_000})
    assert big.status_code == 413
    assert console_server.metadata("http/bad")["current_version"] == 1


def test_seal_and_download(console_server: ConsoleServer, root_session: Session) -> None:
    value = secrets.token_hex(8)
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "dl", "namespace": "ns"},
        "data": {"token": base64.b64encode(value.encode()).decode()},
    }
    answer = root_session.post(
        "/ui/seal",
        {
            "manifest": yaml.safe_dump(manifest),
            "format": "bitnami",
            "output": "json",
            "download": "1",
        },
    )
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="dl.sealedsecret.json"'
    assert value not in answer.text and manifest["data"]["token"] not in answer.text
    opened = console_server.api.post(
        "/v1/sys/sealing/unseal", json={"sealed_secret": answer.json()}
    )
    assert opened.status_code == 200
    assert opened.json()["data"]["secret"]["data"]["token"] == manifest["data"]["token"]


def test_signed_out_pages_lead_to_the_login(console_server: ConsoleServer) -> None:
    with httpx.Client(base_url=console_server.url, follow_redirects=False) as client:
        for url in ("/ui/", "/ui/secrets/", "/ui/audit", "/ui/seal", "/ui/secrets/secret/x"):
            answer = client.get(url)
            assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
        client.cookies.set("kustos_session", "hvs.revoked-or-made-up")
        assert client.get("/ui/secrets/").headers["location"] == "/ui/login"
        assert client.get("/ui").headers["location"] == "/ui/"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.slow
def test_over_tls_the_cookie_is_secure_and_host_only(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with start_server(
        tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https"
    ) as server:
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=server.addr, verify=trust, follow_redirects=False) as client:
            nonce = csrf_of(client.get("/ui/login").text)
            answer = client.post(
                "/ui/login",
                data={"csrf": nonce, "method": "token", "token": server.root_token},
                headers={"Origin": server.addr},
            )
            assert answer.status_code == 303
            cookie = next(
                c
                for c in answer.headers.get_list("set-cookie")
                if c.startswith("__Host-kustos_session=")
            )
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert "Path=/" in cookie and "Domain" not in cookie
            assert client.get("/ui/secrets/").status_code == 200


@pytest.mark.slow
def test_no_ui_turns_the_console_off(tmp_path: Path) -> None:
    with start_server(tmp_path, "--no-ui") as server:
        assert httpx.get(f"{server.addr}/ui/login").status_code == 404
        assert httpx.get(f"{server.addr}/ui/").status_code == 404
        assert httpx.get(f"{server.addr}/v1/sys/health").status_code == 200
        assert "Web console" not in server.stdout()
