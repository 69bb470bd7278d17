"""Fixtures for the `kustos seal` CLI tests: key files on disk and a loopback cert server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kustos.crypto.sealing import SealingKeyPair, generate_sealing_key


@dataclass(frozen=True)
class KeyFiles:
    pair: SealingKeyPair
    cert: Path
    key: Path


def _write(pair: SealingKeyPair, directory: Path, stem: str) -> KeyFiles:
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert.write_bytes(pair.certificate.pem())
    key.write_bytes(pair.private_key.pem().reveal())
    key.chmod(0o600)
    return KeyFiles(pair=pair, cert=cert, key=key)


@pytest.fixture(scope="session")
def prod_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    """RSA-4096, as a Sealed Secrets controller makes."""
    pair = generate_sealing_key(now=datetime.now(UTC) - timedelta(hours=1))
    return _write(pair, tmp_path_factory.mktemp("prod"), "prod")


@pytest.fixture(scope="session")
def dr_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    pair = generate_sealing_key(now=datetime.now(UTC) - timedelta(hours=1), bits=2048)
    return _write(pair, tmp_path_factory.mktemp("dr"), "dr")


@pytest.fixture(scope="session")
def expired_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    pair = generate_sealing_key(
        now=datetime.now(UTC) - timedelta(days=40), validity=timedelta(days=30), bits=2048
    )
    return _write(pair, tmp_path_factory.mktemp("expired"), "expired")


@pytest.fixture
def cert_server(prod_keys: KeyFiles) -> Iterator[str]:
    """A stand-in controller on 127.0.0.1: GET /v1/cert.pem, POST /v1/verify (409 unless body says ok)."""
    pem = prod_keys.cert.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/v1/cert.pem":
                self.send_response(200)
                self.send_header("Content-Type", "application/x-pem-file")
                self.end_headers()
                self.wfile.write(pem)
            else:
                self.send_response(404)
                self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200 if b'"ok"' in body else 409)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
