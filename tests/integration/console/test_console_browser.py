"""The web console in a real headless Chromium against a real ``kustos server``.

Each test starts signed out (cookies cleared) and writes its own secrets.
Besides what the page shows, tests check what went over HTTP (every
response body the browser received, through DevTools), the audit file and
the server's state through the API. Screenshots of the main pages go to
``$KUSTOS_CONSOLE_SCREENSHOTS`` when set (``docs/images`` holds a few),
else to the test's temporary directory.
"""

from __future__ import annotations

import http.server
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kustos.audit import search, verify_file
from kustos.gitops.sealing import BITNAMI_API_VERSION, NATIVE_API_VERSION
from tests.integration.console.conftest import ConsoleServer
from tests.support.browser import Browser, start_browser
from tests.support.server import free_port

pytestmark = pytest.mark.slow

MASK = "••••••••"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("KUSTOS_CONSOLE_SCREENSHOTS")
    return Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def module_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with start_browser(tmp_path_factory.mktemp("chromium") / "profile") as browser:
        yield browser


@pytest.fixture
def browser(module_browser: Browser, console_server: ConsoleServer) -> Browser:
    """The module's Chromium, signed out, at a normal laptop size."""
    module_browser.driver.get(f"{console_server.url}/ui/login")
    module_browser.driver.delete_all_cookies()
    module_browser.size(1280, 860)
    module_browser.record()
    return module_browser


def by_css(browser: Browser, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.driver.find_element(By.CSS_SELECTOR, selector)


def all_css(browser: Browser, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.driver.find_elements(By.CSS_SELECTOR, selector))


def wait_for(browser: Browser, condition: Any, *, timeout: float = 15.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser.driver, timeout).until(condition)


def click(browser: Browser, selector: str) -> None:
    """Click and wait for the next page (or the in-page update) before recording the traffic."""
    from selenium.webdriver.support import expected_conditions as ec

    element = by_css(browser, selector)
    element.click()
    try:
        wait_for(browser, ec.staleness_of(element), timeout=5)
    except Exception:  # noqa: S110 - an in-page update (a reveal) keeps the element
        pass
    wait_for(browser, lambda d: d.execute_script("return document.readyState") == "complete")
    browser.record()


def submit(browser: Browser, form: str) -> None:
    click(browser, f"{form} button[type=submit]")


def login_with_token(browser: Browser, server: ConsoleServer, token: str) -> None:
    browser.get(f"{server.url}/ui/login")
    by_css(browser, "#token").send_keys(token)
    submit(browser, "#login-token")
    assert browser.driver.current_url.endswith("/ui/secrets/"), browser.driver.page_source[:2000]


def text_of(browser: Browser, selector: str) -> str:
    return str(by_css(browser, selector).text)


def page(browser: Browser) -> str:
    return str(browser.driver.page_source)


def reveal(browser: Browser, row: str) -> str:
    """Click the Reveal button of a row and return the value shown in place."""
    cell = by_css(browser, f"{row} code.value")
    by_css(browser, f"{row} form.reveal button").click()
    wait_for(browser, lambda d: cell.text != MASK and cell.text != "")
    browser.record()
    return str(cell.text)


def responses_of(browser: Browser, since: int = 0) -> list[str]:
    return [e.response_body for e in browser.record()[since:]]


# -- login ---------------------------------------------------------------------------------------


def test_login_with_a_token_userpass_and_approle_and_logout_revokes(
    browser: Browser, console_server: ConsoleServer, shots: Path
) -> None:
    server = console_server
    browser.get(f"{server.url}/ui/login")
    browser.screenshot(shots, "login")

    # a token that may create tokens (root): the session runs on a child; logout revokes only the child
    login_with_token(browser, server, server.server.root_token)
    session = browser.driver.get_cookie("kustos_session")
    assert session is not None and session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["value"] != server.server.root_token
    assert server.token_valid(session["value"])
    submit(browser, "header form")
    assert "/ui/login" in browser.driver.current_url
    assert "logged out" in page(browser)
    assert not server.token_valid(session["value"])
    assert server.token_valid(server.server.root_token)
    assert browser.driver.get_cookie("kustos_session") is None

    # a token that may not create tokens: the session runs on it, and logging out revokes it
    pasted = server.token(["reader"])
    login_with_token(browser, server, pasted)
    assert browser.driver.get_cookie("kustos_session")["value"] == pasted
    submit(browser, "header form")
    assert not server.token_valid(pasted)

    # userpass
    user, password = server.userpass
    browser.get(f"{server.url}/ui/login")
    by_css(browser, "#username").send_keys(user)
    by_css(browser, "#password").send_keys(password)
    submit(browser, "#login-userpass")
    assert browser.driver.current_url.endswith("/ui/secrets/")
    assert text_of(browser, ".who") == "userpass-alice" or "alice" in text_of(browser, ".who")
    userpass_token = browser.driver.get_cookie("kustos_session")["value"]
    submit(browser, "header form")
    assert not server.token_valid(userpass_token)

    # a wrong password is refused, with the API's message
    browser.get(f"{server.url}/ui/login")
    by_css(browser, "#username").send_keys(user)
    by_css(browser, "#password").send_keys("not-the-password")
    submit(browser, "#login-userpass")
    assert "invalid username or password" in text_of(browser, ".error")
    assert browser.driver.get_cookie("kustos_session") is None

    # AppRole
    role_id, secret_id = server.approle
    browser.get(f"{server.url}/ui/login")
    by_css(browser, "#role_id").send_keys(role_id)
    by_css(browser, "#secret_id").send_keys(secret_id)
    submit(browser, "#login-approle")
    assert browser.driver.current_url.endswith("/ui/secrets/")
    assert "reader" in (by_css(browser, ".who").get_attribute("title") or "")


# -- browse, reveal, audit -----------------------------------------------------------------------


def test_browse_reveal_one_value_and_see_the_read_audited(
    browser: Browser, console_server: ConsoleServer, shots: Path
) -> None:
    server = console_server
    password = "pw-" + secrets.token_hex(8)
    user = "user-" + secrets.token_hex(4)
    server.write("shop/db", {"user": user, "password": password}, reason="first version")
    for n in range(3):
        server.write(f"shop/service-{n}", {"token": secrets.token_hex(8)})
    alice, alice_password = server.userpass
    browser.get(f"{server.url}/ui/login")
    by_css(browser, "#username").send_keys(alice)
    by_css(browser, "#password").send_keys(alice_password)
    submit(browser, "#login-userpass")

    # mounts -> secret/ -> shop/ -> db
    browser.screenshot(shots, "mounts")
    click(browser, "table a[href='/ui/secrets/secret/']")
    click(browser, "#entries a[href='/ui/secrets/secret/shop/']")
    names = [e.text for e in all_css(browser, "#entries li a")]
    assert names == ["db", "service-0", "service-1", "service-2"]
    browser.screenshot(shots, "folder")
    click(browser, "#entries a[href='/ui/secrets/secret/shop/db']")
    assert text_of(browser, "h1") == "secret/shop/db"
    assert text_of(browser, "#current-version") == "1"
    assert [r.get_attribute("data-key") for r in all_css(browser, "#keys tbody tr")] == [
        "password",
        "user",
    ]
    assert {c.text for c in all_css(browser, "#keys code.value")} == {MASK}
    assert password not in page(browser) and user not in page(browser)
    assert "first version" in text_of(browser, "#history")

    # reveal one value: only that one
    before = len(browser.record())
    assert reveal(browser, "#keys tr[data-key=password]") == password
    assert text_of(browser, "#keys tr[data-key=user] code.value") == MASK
    bodies = responses_of(browser, before)
    assert any(password in body for body in bodies)
    assert not any(user in body for body in bodies)
    browser.screenshot(shots, "secret")

    # the reveal is an audited read by alice, with its reason
    reads = [
        r
        for r in search(
            server.audit_file,
            path_prefix="secret/data/shop/db",
            operation="read",
            entry_type="response",
        )
        if r.reason == "console: reveal key 'password'"
    ]
    assert reads and reads[-1].status == 200 and "alice" in reads[-1].identity
    assert reads[-1].remote_address == "127.0.0.1"
    assert verify_file(server.audit_file).ok
    audit_text = server.audit_file.read_text()
    assert password not in audit_text and user not in audit_text

    # ...and the audit page finds it
    browser.get(f"{server.url}/ui/audit")
    by_css(browser, "#path").send_keys("secret/data/shop/db")
    submit(browser, "#audit-form")
    assert "verified" in text_of(browser, "#chain-status")
    rows = all_css(browser, "#audit-results tbody tr")
    assert rows and any("console: reveal key 'password'" in r.text for r in rows)
    assert all("secret/data/shop/db" in r.text for r in rows)
    browser.screenshot(shots, "audit")


def test_a_masked_diff_marks_the_right_keys(
    browser: Browser, console_server: ConsoleServer, shots: Path
) -> None:
    server = console_server
    values = {
        name: f"{name}-{secrets.token_hex(6)}" for name in ("keep", "old", "gone", "new", "added")
    }
    server.write(
        "diff/app", {"keep": values["keep"], "rotated": values["old"], "dropped": values["gone"]}
    )
    server.write(
        "diff/app",
        {"keep": values["keep"], "rotated": values["new"], "fresh": values["added"]},
        reason="rotate and tidy",
    )
    login_with_token(browser, server, server.server.root_token)
    browser.get(f"{server.url}/ui/secrets/secret/diff/app")
    from selenium.webdriver.support.ui import Select

    Select(by_css(browser, "#from")).select_by_value("1")
    Select(by_css(browser, "#to")).select_by_value("2")
    submit(browser, "#diff-form")
    marked = {
        row.get_attribute("data-key"): row.get_attribute("data-change")
        for row in all_css(browser, "#diff tbody tr")
    }
    assert marked == {"dropped": "removed", "fresh": "added", "rotated": "changed"}
    assert {c.text for c in all_css(browser, "#diff code.value")} == {MASK}
    assert "rotate and tidy" in page(browser)
    assert not any(value in page(browser) for value in values.values())
    browser.screenshot(shots, "diff")
    # each side reveals its own version's value
    assert reveal(browser, "#diff tr[data-key=rotated] td:nth-of-type(2)") == values["old"]
    assert reveal(browser, "#diff tr[data-key=rotated] td:nth-of-type(3)") == values["new"]


def test_roll_back_with_a_confirmation_and_a_reason(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    first = {"password": "v1-" + secrets.token_hex(6)}
    server.write("rollback/app", first)
    server.write("rollback/app", {"password": "v2-" + secrets.token_hex(6)})
    login_with_token(browser, server, server.server.root_token)
    browser.get(f"{server.url}/ui/secrets/secret/rollback/app")
    click(browser, "#history tr[data-version='1'] a[data-action=rollback]")
    assert "Roll back version 1" in text_of(browser, "h1")
    # the browser will not send it without the reason and the tick (required fields)...
    by_css(browser, "#confirm-form button").click()
    assert "/ui/confirm/" in browser.driver.current_url
    by_css(browser, "#reason").send_keys("v2 broke the shop")
    by_css(browser, "#confirm").click()
    submit(browser, "#confirm-form")
    assert "rolled back" in text_of(browser, "#notice")
    meta = server.metadata("rollback/app")
    assert meta["current_version"] == 3
    assert meta["versions"]["3"]["reason"] == "v2 broke the shop"
    assert server.read("rollback/app")["data"] == first
    assert first["password"] not in "".join(responses_of(browser))

    # ...and the server refuses it without the tick or a reason, too
    csrf = by_css(browser, "header input[name=csrf]").get_attribute("value")
    cookie = browser.driver.get_cookie("kustos_session")["value"]
    with httpx.Client(base_url=server.url, cookies={"kustos_session": cookie}) as client:
        refused = client.post(
            "/ui/change/secret/rollback/app",
            data={"csrf": csrf, "action": "destroy", "version": "1", "reason": "x"},
            headers={"Origin": server.url},
        )
        assert refused.status_code == 400 and "confirm" in refused.text
        refused = client.post(
            "/ui/change/secret/rollback/app",
            data={"csrf": csrf, "action": "destroy", "version": "1", "confirm": "yes"},
            headers={"Origin": server.url},
        )
        assert refused.status_code == 400 and "reason" in refused.text
    assert not server.metadata("rollback/app")["versions"]["1"]["destroyed"]


def test_delete_undelete_and_destroy_a_version(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    server.write("lifecycle/app", {"a": "1"})
    server.write("lifecycle/app", {"a": "2"})
    login_with_token(browser, server, server.server.root_token)
    for action, reason in (
        ("delete", "mistake"),
        ("undelete", "it was fine"),
        ("destroy", "leaked"),
    ):
        browser.get(f"{server.url}/ui/secrets/secret/lifecycle/app")
        click(browser, f"#history tr[data-version='1'] a[data-action={action}]")
        by_css(browser, "#reason").send_keys(reason)
        by_css(browser, "#confirm").click()
        submit(browser, "#confirm-form")
        assert action in text_of(browser, "#notice")
        version = server.metadata("lifecycle/app")["versions"]["1"]
        if action == "delete":
            assert version["deletion_time"]
        elif action == "undelete":
            assert not version["deletion_time"]
        else:
            assert version["destroyed"]
    assert [
        a.get_attribute("data-action")
        for a in all_css(browser, "#history tr[data-version='1'] a[data-action]")
    ] == []


def test_search_the_audit_by_path_and_see_the_access_map(
    browser: Browser, console_server: ConsoleServer, shots: Path
) -> None:
    server = console_server
    server.write("audited/one", {"k": "v"})
    server.write("audited/two", {"k": "v"})
    reader = httpx.Client(base_url=server.url, headers={"X-Vault-Token": server.reader_token})
    for _ in range(3):
        assert reader.get("/v1/secret/data/audited/one").status_code == 200
    assert reader.get("/v1/secret/data/audited/two").status_code == 200
    login_with_token(browser, server, server.server.root_token)
    browser.get(f"{server.url}/ui/audit")
    by_css(browser, "#path").send_keys("secret/data/audited/one")
    from selenium.webdriver.support.ui import Select

    Select(by_css(browser, "#operation")).select_by_value("read")
    submit(browser, "#audit-form")
    rows = [r.text for r in all_css(browser, "#audit-results tbody tr")]
    assert len(rows) == 3
    assert all("secret/data/audited/one" in r and "read" in r for r in rows)
    assert "verified" in text_of(browser, "#chain-status")

    browser.get(f"{server.url}/ui/access?path=secret/data/audited/")
    cells = [
        [c.text for c in r.find_elements("css selector", "td")]
        for r in all_css(browser, "#access-map tbody tr")
    ]
    reads = {(c[2], c[3]) for c in cells if c[1] == "token"}
    assert ("secret/data/audited/one", "3") in reads and ("secret/data/audited/two", "1") in reads
    browser.screenshot(shots, "access-map")


# -- sealing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["bitnami", "kustos"])
def test_seal_a_secret_and_it_unseals_with_the_servers_key(
    browser: Browser, console_server: ConsoleServer, shots: Path, fmt: str
) -> None:
    server = console_server
    value = "sealed-" + secrets.token_hex(8)
    manifest = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web\n  namespace: shop\n"
        f"stringData:\n  password: {value}\n"
    )
    login_with_token(browser, server, server.server.root_token)
    browser.get(f"{server.url}/ui/seal")
    by_css(browser, "#manifest").send_keys(manifest)
    from selenium.webdriver.support.ui import Select

    Select(by_css(browser, "#format")).select_by_value(fmt)
    click(browser, "#seal-show")
    sealed_text = text_of(browser, "#sealed")
    assert value not in page(browser)
    assert not any(value in body for body in responses_of(browser))
    if fmt == "bitnami":
        browser.screenshot(shots, "seal")
    sealed = yaml.safe_load(sealed_text)
    assert sealed["kind"] == "SealedSecret"
    assert sealed["apiVersion"] == (BITNAMI_API_VERSION if fmt == "bitnami" else NATIVE_API_VERSION)
    opened = server.api.post("/v1/sys/sealing/unseal", json={"sealed_secret": sealed})
    assert opened.status_code == 200, opened.text
    import base64

    secret = opened.json()["data"]["secret"]
    assert base64.b64decode(secret["data"]["password"]).decode() == value
    assert secret["metadata"]["namespace"] == "shop"


# -- what a policy allows ------------------------------------------------------------------------


def test_a_read_only_token_sees_no_write_controls_and_a_forged_write_is_refused(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    server.write("readonly/app", {"password": "ro-" + secrets.token_hex(6)})
    server.write("readonly/app", {"password": "ro-" + secrets.token_hex(6)})
    login_with_token(browser, server, server.reader_token)
    browser.get(f"{server.url}/ui/secrets/secret/readonly/")
    assert not all_css(browser, "a.button")  # no "New secret here"
    browser.get(f"{server.url}/ui/secrets/secret/readonly/app")
    assert all_css(browser, "#keys form.reveal")  # it may read
    assert not all_css(browser, "#write-link")
    assert not all_css(browser, "#history a[data-action]")
    assert all_css(browser, "#history tbody tr")

    # a forged form, with this session's own valid CSRF value: the server's policy refuses it
    before = server.metadata("readonly/app")["current_version"]
    for action, fields in (
        (
            "/ui/write/secret/readonly/app",
            {"key": "password", "value": "forged", "mode": "replace"},
        ),
        (
            "/ui/change/secret/readonly/app",
            {"action": "destroy", "version": "1", "reason": "x", "confirm": "yes"},
        ),
        (
            "/ui/change/secret/readonly/app",
            {"action": "rollback", "version": "1", "reason": "x", "confirm": "yes"},
        ),
    ):
        browser.driver.execute_script(
            """
            const [action, fields] = arguments;
            const form = document.createElement("form");
            form.method = "post"; form.action = action;
            const all = Object.assign({csrf: document.querySelector("input[name=csrf]").value}, fields);
            for (const [name, value] of Object.entries(all)) {
              const input = document.createElement("input");
              input.type = "hidden"; input.name = name; input.value = value; form.appendChild(input);
            }
            document.body.appendChild(form); form.submit();
            """,
            action,
            fields,
        )
        wait_for(browser, lambda d: "permission denied" in d.page_source)
        browser.record()
    meta = server.metadata("readonly/app")
    assert meta["current_version"] == before
    assert not meta["versions"]["1"]["destroyed"]


def test_a_write_only_token_writes_without_ever_receiving_a_value(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    old = "old-" + secrets.token_hex(8)
    new = "new-" + secrets.token_hex(8)
    server.write("wo/payments", {"api_key": old})
    start = len(browser.record())
    login_with_token(browser, server, server.writeonly_token)
    browser.get(f"{server.url}/ui/secrets/secret/wo/payments")
    assert "You may not read this secret" in text_of(browser, "#no-read")
    click(browser, "#write-link")
    assert by_css(browser, "#value-1").get_attribute("value") == ""
    by_css(browser, "#key-1").send_keys("api_key")
    by_css(browser, "#value-1").send_keys(new)
    by_css(browser, "#reason").send_keys("rotated by the payments team")
    submit(browser, "#write-form")
    assert "version 2 written" in text_of(browser, "#notice")
    # a reveal is refused by the server (the page offers none; forge one)
    status = browser.driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const body = new URLSearchParams({csrf: document.querySelector("input[name=csrf]").value,
                                          version: "1", key: "api_key"});
        fetch("/ui/reveal/secret/wo/payments", {method: "POST", body,
              headers: {"X-Kustos-Console": "reveal"}}).then(r => done(r.status));
        """
    )
    assert status == 403
    browser.record()
    exchanges = browser.record()[start:]
    assert len([e for e in exchanges if e.url.startswith(server.url)]) >= 6
    for exchange in exchanges:
        assert old not in exchange.response_body, exchange.url
        assert new not in exchange.response_body, exchange.url
    assert server.read("wo/payments")["data"] == {"api_key": new}
    assert (
        server.metadata("wo/payments")["versions"]["2"]["reason"] == "rotated by the payments team"
    )


# -- CSRF, URLs, logs ------------------------------------------------------------------------------


class _Attacker(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        body = f"""<!doctype html><html><body>
<form id="f" method="post" action="{self.target}">
<input type="hidden" name="csrf" value="guessed"><input type="hidden" name="key" value="stolen">
<input type="hidden" name="value" value="attacker-value"><input type="hidden" name="mode" value="replace">
</form><script>document.getElementById("f").submit();</script></body></html>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_a_csrf_attempt_from_another_origin_fails(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    server.write("csrf/target", {"k": "original"})
    login_with_token(browser, server, server.server.root_token)
    port = free_port()
    handler = type(
        "Attacker", (_Attacker,), {"target": f"{server.url}/ui/write/secret/csrf/target"}
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        # same host, another port: another origin but the same site, so SameSite=Strict still sends
        # the cookie; the origin check (and the CSRF value) must refuse it
        browser.driver.get(f"http://127.0.0.1:{port}/")
        wait_for(browser, lambda d: d.current_url.startswith(server.url))
        wait_for(browser, lambda d: "Not allowed" in d.page_source)
        assert "cross-origin request refused" in page(browser)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert server.read("csrf/target")["data"] == {"k": "original"}
    assert server.metadata("csrf/target")["current_version"] == 1


def test_no_value_in_any_url_or_in_the_server_log(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    values = ["url-" + secrets.token_hex(10) for _ in range(4)]
    server.write("nourl/app", {"a": values[0]})
    start = len(browser.record())
    login_with_token(browser, server, server.server.root_token)
    browser.get(f"{server.url}/ui/write/secret/nourl/app")
    by_css(browser, "#value-1").send_keys(values[1])
    submit(browser, "#write-form")
    assert reveal(browser, "#keys tr[data-key=a]") == values[1]
    browser.get(f"{server.url}/ui/secrets/secret/nourl/app?from=1&to=2")
    assert reveal(browser, "#diff tr[data-key=a] td:nth-of-type(2)") == values[0]
    browser.get(f"{server.url}/ui/seal")
    by_css(browser, "#manifest").send_keys(
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  namespace: y\nstringData:\n  v: {values[2]}\n"
    )
    click(browser, "#seal-show")
    browser.get(f"{server.url}/ui/write/secret/nourl/")
    by_css(browser, "#name").send_keys("second")
    by_css(browser, "#key-1").send_keys("b")
    by_css(browser, "#value-1").send_keys(values[3])
    submit(browser, "#write-form")
    assert server.read("nourl/second")["data"] == {"b": values[3]}

    exchanges = browser.record()[start:]
    assert any(e.method == "POST" for e in exchanges)
    for exchange in browser.record():  # every URL this browser ever asked for, redirects included
        for value in values:
            assert value not in exchange.url
            assert value not in exchange.headers.get("location", "")
    logs = server.logs()
    assert '"route"' in logs  # the access log is on
    for value in values:
        assert value not in logs
    assert server.server.root_token not in server.server.stderr()


# -- keyboard and phone -------------------------------------------------------------------------------


def test_usable_with_the_keyboard_alone(browser: Browser, console_server: ConsoleServer) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server = console_server
    value = "kbd-" + secrets.token_hex(6)
    server.write("keyboard/app", {"only": value})
    browser.get(f"{server.url}/ui/login")
    active = browser.driver.switch_to.active_element
    assert active.get_attribute("id") == "token"  # the token field has the focus
    active.send_keys(server.server.root_token + Keys.ENTER)
    wait_for(browser, lambda d: d.current_url.endswith("/ui/secrets/"))
    browser.get(f"{server.url}/ui/secrets/secret/keyboard/app")
    actions = ActionChains(browser.driver)
    actions.send_keys(Keys.TAB).perform()
    first = browser.driver.switch_to.active_element
    assert first.text == "Skip to content"  # the first stop skips the navigation
    for _ in range(60):
        actions.send_keys(Keys.TAB).perform()
        focused = browser.driver.switch_to.active_element
        if focused.get_attribute("aria-label") == "Reveal only (version 1)":
            break
    else:
        pytest.fail("the Reveal button is not reachable with Tab")
    outline = browser.driver.execute_script(
        "return getComputedStyle(document.activeElement).outlineStyle"
    )
    assert outline != "none"  # the focus is visible
    actions.send_keys(Keys.ENTER).perform()
    wait_for(browser, lambda d: value in d.find_element("css selector", "#keys code.value").text)


def test_readable_on_a_phone(browser: Browser, console_server: ConsoleServer, shots: Path) -> None:
    server = console_server
    server.write(
        "phone/a-secret-with-a-rather-long-name",
        {f"key-{n}": "v" for n in range(4)},
        reason="a reason long enough to wrap on a narrow screen, as reasons often are",
    )
    login_with_token(browser, server, server.server.root_token)
    browser.size(390, 844)
    for url, name in (
        ("/ui/secrets/secret/phone/a-secret-with-a-rather-long-name", "phone-secret"),
        ("/ui/audit?path=secret/data/phone", "phone-audit"),
        ("/ui/login", None),
    ):
        browser.get(f"{server.url}{url}")
        overflow = browser.driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{url} is wider than the screen by {overflow}px"
        font = browser.driver.execute_script(
            "return parseFloat(getComputedStyle(document.body).fontSize)"
        )
        assert font >= 14
        if name:
            browser.screenshot(shots, name)
