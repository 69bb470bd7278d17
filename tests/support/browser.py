"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium, for console tests.

:func:`start_browser` starts Chromium through chromedriver with a fresh
profile, no network services of its own (no sync, updates, QUIC or
background fetches), and the DevTools network domain recorded:
:class:`Browser` keeps every request the page made (URL, method, form body)
and every response body it received (through ``Network.getResponseBody``),
so a test can check what went over HTTP, not only what the DOM shows.

Tests skip, with the reason, when Chromium or chromedriver is missing
(``scripts/install-system-deps.sh`` installs both) or Chromium cannot start on
this machine (chromedriver's message is the reason).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Browser", "Exchange", "chromium_paths", "start_browser"]

_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--password-store=basic",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def chromium_paths() -> tuple[str, str]:
    """``(chromium, chromedriver)``, or skip the test naming what is missing."""
    browser = next((p for p in map(shutil.which, _CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = [n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None]
        pytest.skip(
            f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver; "
            "scripts/install-system-deps.sh does it)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    return browser, driver


@dataclass
class Exchange:
    """One HTTP request the page made and what came back."""

    url: str
    method: str
    status: int = 0
    request_body: str = field(default="", repr=False)
    response_body: str = field(default="", repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)


class Browser:
    """A Selenium driver plus the record of its HTTP traffic."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.exchanges: list[Exchange] = []
        self._pending: dict[str, Exchange] = {}

    def record(self) -> list[Exchange]:
        """Drain the DevTools log: new requests, their statuses and response bodies. Returns all so far."""
        for item in self.driver.get_log("performance"):
            message = json.loads(item["message"])["message"]
            method, params = message.get("method"), message.get("params", {})
            request_id = params.get("requestId")
            if method == "Network.requestWillBeSent":
                redirected = params.get("redirectResponse")
                if redirected is not None and request_id in self._pending:
                    before = self._pending.pop(request_id)
                    before.status = int(redirected.get("status", 0))
                    before.headers = {k.lower(): str(v) for k, v in redirected["headers"].items()}
                request = params["request"]
                if not request["url"].startswith(("http://", "https://")):
                    continue
                exchange = Exchange(
                    url=request["url"],
                    method=request["method"],
                    request_body=request.get("postData", ""),
                )
                self._pending[request_id] = exchange
                self.exchanges.append(exchange)
            elif method == "Network.responseReceived" and request_id in self._pending:
                response = params["response"]
                exchange = self._pending[request_id]
                exchange.status = int(response.get("status", 0))
                exchange.headers = {k.lower(): str(v) for k, v in response["headers"].items()}
            elif method == "Network.loadingFinished" and request_id in self._pending:
                exchange = self._pending.pop(request_id)
                with contextlib.suppress(Exception):  # a body the browser no longer holds
                    body = self.driver.execute_cdp_cmd(
                        "Network.getResponseBody", {"requestId": request_id}
                    )
                    text = body.get("body", "")
                    if body.get("base64Encoded"):
                        text = base64.b64decode(text).decode("utf-8", "replace")
                    exchange.response_body = text
        return self.exchanges

    def get(self, url: str) -> None:
        self.driver.get(url)
        self.record()

    def screenshot(self, directory: Path | None, name: str, *, max_height: int = 1400) -> None:
        """Save a PNG of the page (at most ``max_height`` CSS pixels of it) as ``<directory>/<name>.png``."""
        if directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": min(size["height"], max_height),
                    "scale": 1,
                },
            },
        )
        (directory / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))

    def size(self, width: int, height: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )


@contextlib.contextmanager
def start_browser(profile: Path, *, width: int = 1280, height: int = 860) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile under ``profile``; quit (and its processes gone) after."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(
        executable_path=driver_path, log_output=str(profile.parent / "chromedriver.log")
    )
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as error:  # installed, but cannot start here (no display libs, ...)
        pytest.skip(f"headless Chromium did not start: {error.msg or error}".strip())
    try:
        driver.execute_cdp_cmd(
            "Network.enable", {"maxTotalBufferSize": 50_000_000, "maxResourceBufferSize": 5_000_000}
        )
        driver.set_page_load_timeout(30)
        yield Browser(driver)
    finally:
        driver.quit()
