"""No secret value (nor a token) is stored in plaintext: raw SQLite files and a pg_dump.

Known values are written through the HTTP API of a real ``kustos server``;
then the raw bytes of the SQLite database, its ``-wal`` and ``-shm`` files
(while running and after shutdown), or a ``pg_dump`` of the PostgreSQL
database, are searched for each value as raw bytes, hex (how a dump prints
bytea), and base64 at every byte alignment. The search is checked to work:
the secrets' *paths*, which are stored in clear, must be found.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.postgres import create_database, find_pg_bin, postgres_url  # noqa: F401
from tests.support.server import RunningServer, start_server

_MARK = uuid.uuid4().hex[:10]
SECRETS: dict[str, dict[str, object]] = {
    f"plaintext-probe-{_MARK}/db": {"password": f"Canary-Password-{_MARK}", "user": "app"},
    f"plaintext-probe-{_MARK}/api": {"token": f"canary-api-token-{_MARK}-" + "k" * 80},
    f"plaintext-probe-{_MARK}/nested": {"cfg": {"inner": f"Deep-Canary-{_MARK}"}, "n": 1},
    f"plaintext-probe-{_MARK}/unicode": {"phrase": f"mot-de-passe-sécurisé-秘密-{_MARK}"},
}
PATCH = {"added-by-patch": f"Patched-Canary-{_MARK}"}


def _secret_strings() -> list[str]:
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, str) and _MARK in value:
            found.append(value)

    for data in [*SECRETS.values(), PATCH]:
        walk(data)
    return sorted(set(found))


def _base64_forms(data: bytes) -> list[bytes]:
    """The base64 text ``data`` turns into at each of the three byte alignments."""
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data)
        start = -(-shift * 8 // 6)  # characters that still carry the padding bytes
        end = (shift + len(data)) * 8 // 6  # characters fully inside data
        forms.append(encoded[start:end])
        forms.append(encoded[start:end].replace(b"+", b"-").replace(b"/", b"_"))
    return forms


def needles(*, token: str) -> dict[str, list[bytes]]:
    """Every stored form to look for, by the value (or token) it would reveal."""
    result: dict[str, list[bytes]] = {}
    for value in [*_secret_strings(), token, json.dumps(SECRETS[f"plaintext-probe-{_MARK}/db"])]:
        raw = value.encode()
        forms = [raw, raw.hex().encode(), raw.hex().upper().encode(), *_base64_forms(raw)]
        if not value.isascii():
            escaped = json.dumps(value).strip('"').encode()
            forms += [escaped, escaped.lower()]
        result[value[:24] + "..."] = forms
    return result


def _write_secrets(server: RunningServer) -> str:
    """Write every probe secret (and a patch), read them back; return a created token."""
    headers = {"X-Vault-Token": server.root_token}
    with httpx.Client(base_url=server.addr, headers=headers, timeout=15.0) as client:
        for path, data in SECRETS.items():
            for _ in range(2):  # two versions of each
                response = client.post(f"/v1/secret/data/{path}", json={"data": data})
                assert response.status_code == 200, response.text
        path = f"plaintext-probe-{_MARK}/db"
        response = client.patch(
            f"/v1/secret/data/{path}",
            json={"data": PATCH},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.status_code == 200, response.text
        got = client.get(f"/v1/secret/data/{path}").json()["data"]["data"]
        assert got == {**SECRETS[path], **PATCH}
        created = client.post("/v1/auth/token/create", json={"policies": ["default"]})
        assert created.status_code == 200, created.text
        return str(created.json()["auth"]["client_token"])


def _assert_absent(haystack: bytes, *, token: str, where: str) -> None:
    assert f"plaintext-probe-{_MARK}".encode() in haystack, (
        f"{where}: the search saw no stored data"
    )
    for value, forms in needles(token=token).items():
        for form in forms:
            assert form not in haystack, f"{where}: {value} stored as {form[:40]!r}"


def _sqlite_bytes(data_dir: Path) -> tuple[bytes, list[str]]:
    files = sorted(data_dir.glob("kustos.db*"))
    return b"".join(path.read_bytes() for path in files), [path.name for path in files]


def test_sqlite_files_hold_no_plaintext_secret(tmp_path: Path) -> None:
    with start_server(tmp_path) as server:
        token = _write_secrets(server)
        running, names = _sqlite_bytes(server.data_dir)
        assert {"kustos.db", "kustos.db-wal", "kustos.db-shm"} <= set(names)
        _assert_absent(running, token=token, where="SQLite files while running")
        _assert_absent(running, token=server.root_token, where="SQLite files while running")
    stopped, _ = _sqlite_bytes(server.data_dir)
    _assert_absent(stopped, token=token, where="SQLite files after shutdown")


@pytest.mark.postgres
def test_postgres_dump_holds_no_plaintext_secret(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    url = create_database(postgres_url)
    bin_dir = find_pg_bin()
    assert bin_dir is not None
    with start_server(tmp_path, "--storage", url) as server:
        token = _write_secrets(server)
        info = psycopg.conninfo.conninfo_to_dict(url)
        dump = subprocess.run(
            [
                str(bin_dir / "pg_dump"),
                "--host",
                str(info["host"]),
                "--port",
                str(info["port"]),
                "--username",
                str(info["user"]),
                "--no-password",
                str(info["dbname"]),
            ],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        _assert_absent(dump, token=token, where="pg_dump")
        _assert_absent(dump, token=server.root_token, where="pg_dump")
