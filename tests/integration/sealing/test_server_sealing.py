"""Sealing keys held by a real ``kustos server``: endpoints, CLI, renewal, import, no plaintext at rest.

The server runs as a subprocess (``kustos server --dev``, SQLite); the CLI
runs as a subprocess too. SealedSecrets are made by the sealing library
from the certificates the server publishes, or by an independent Sealed
Secrets implementation written here from REFERENCE.md.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from kustos.crypto.sealing import load_certificates
from kustos.gitops.sealing import SealFormat, parse_secret, read_backup, seal_secret
from kustos.sensitive import Sensitive
from tests.support.server import RunningServer, start_server

KUSTOS = str(Path(sys.executable).parent / "kustos")
PASSPHRASE = "correct horse battery staple"


def _secret(name: str = "db", namespace: str = "prod", **values: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "type": "Opaque",
        "stringData": values or {"user": "admin", "password": "hunter2"},
    }


def cli(
    server: RunningServer | None, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KUSTOS_", "VAULT_"))}
    if server is not None:
        full_env.update(
            {
                "KUSTOS_ADDR": server.addr,
                "KUSTOS_TOKEN": server.root_token,
                "HOME": str(server.home),
            }
        )
    full_env.update(env or {})
    return subprocess.run(
        [KUSTOS, "seal", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def ok(server: RunningServer | None, *args: str, **kw: Any) -> bytes:
    result = cli(server, *args, **kw)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def api(server: RunningServer, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"X-Vault-Token": server.root_token, **kw.pop("headers", {})}
    return httpx.request(method, f"{server.addr}/v1/{path}", headers=headers, timeout=60.0, **kw)


def _bundle(server: RunningServer) -> bytes:
    response = httpx.get(f"{server.addr}/v1/sys/sealing/cert", timeout=60.0)
    assert response.status_code == 200, response.text
    return response.content


def _seal(server: RunningServer, fmt: SealFormat, **kw: Any) -> dict[str, Any]:
    [cert] = load_certificates(_bundle(server))[:1]
    return seal_secret(
        parse_secret(_secret(**kw)), certificates=[cert], now=datetime.now(UTC), fmt=fmt
    )[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("sealing-server")) as running:
        # small keys keep the test fast; production default stays RSA-4096
        assert (
            api(running, "POST", "sys/sealing/config", json={"key_bits": 2048}).status_code == 200
        )
        yield running


# -- Sealed Secrets controller endpoints ------------------------------------------------------


def test_cert_pem_fetch_cert_and_bundle(server: RunningServer) -> None:
    response = httpx.get(
        f"{server.addr}/v1/cert.pem", timeout=60.0
    )  # no token, like the controller
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.content.count(b"BEGIN CERTIFICATE") == 1  # RSA only: byte-compatible
    [cert] = load_certificates(response.content)
    assert cert.key_size == 2048 and not cert.has_exchange_key

    fetched = ok(None, "--fetch-cert", "--controller-url", server.addr)
    assert fetched == response.content

    bundle = _bundle(server)
    assert bundle.startswith(response.content) and bundle.count(b"BEGIN CERTIFICATE") == 2
    [with_exchange] = load_certificates(bundle)
    assert with_exchange.has_exchange_key and with_exchange.key_id == cert.key_id
    assert ok(server, "keys", "cert") == bundle
    assert ok(server, "keys", "cert", "--rsa-only") == response.content

    listed = json.loads(ok(server, "keys", "list", "-o", "json"))
    assert [k["key_id"] for k in listed if k["active"]] == [cert.key_id]


def test_seal_verify_rotate_end_to_end(server: RunningServer) -> None:
    secret_yaml = json.dumps(_secret(password="s3cret")).encode()
    sealed = ok(
        server, "--controller-url", server.addr, "-o", "json", stdin=secret_yaml
    )  # cert fetched from server
    ok(server, "--validate", stdin=sealed)
    doc = json.loads(sealed)
    old_key = doc["metadata"]["annotations"]["kustos.io/sealing-key-id"]

    # no token: verify refuses (policy path sys/sealing/verify)
    anonymous = httpx.post(f"{server.addr}/v1/verify", content=sealed, timeout=60.0)
    assert anonymous.status_code == 403

    corrupted = json.loads(sealed)
    value = base64.b64decode(corrupted["spec"]["encryptedData"]["password"])
    corrupted["spec"]["encryptedData"]["password"] = base64.b64encode(
        value[:-1] + bytes([value[-1] ^ 1])
    ).decode()
    bad = cli(server, "--validate", stdin=json.dumps(corrupted).encode())
    assert bad.returncode != 0 and b"unable to decrypt sealed secret" in bad.stderr
    assert api(server, "POST", "verify", content=json.dumps(corrupted)).status_code == 409

    rotated = json.loads(ok(server, "keys", "rotate", "-o", "json"))
    assert rotated["active"] and rotated["key_id"] != old_key
    reencrypted = json.loads(ok(server, "--re-encrypt", "-o", "json", stdin=sealed))
    assert reencrypted["metadata"]["annotations"]["kustos.io/sealing-key-id"] == rotated["key_id"]
    assert reencrypted["spec"]["template"] == doc["spec"]["template"]
    assert (
        reencrypted["spec"]["encryptedData"]["password"] != doc["spec"]["encryptedData"]["password"]
    )
    ok(server, "--validate", stdin=json.dumps(reencrypted).encode())
    unsealed = api(
        server, "POST", "sys/sealing/unseal", json={"sealed_secret": reencrypted}
    ).json()["data"]
    assert unsealed["key_id"] == rotated["key_id"]
    assert base64.b64decode(unsealed["secret"]["data"]["password"]) == b"s3cret"
    # the old object still unseals with the old key (kept for unsealing)
    old = api(server, "POST", "sys/sealing/unseal", json={"sealed_secret": doc}).json()["data"]
    assert old["key_id"] == old_key


# -- the operator's contract ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", [SealFormat.bitnami, SealFormat.kustos])
def test_unseal_endpoint_both_groups(server: RunningServer, fmt: SealFormat) -> None:
    doc = _seal(server, fmt, password="p@ss", user="app")
    doc["spec"]["template"]["metadata"]["annotations"] = {"team": "payments"}
    doc["spec"]["template"]["immutable"] = True
    response = api(server, "POST", "sys/sealing/unseal", json={"sealed_secret": doc})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    secret = data["secret"]
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == "db" and secret["metadata"]["namespace"] == "prod"
    assert secret["metadata"]["labels"] == {"app": "db"}
    assert secret["metadata"]["annotations"] == {"team": "payments"}
    assert secret["type"] == "Opaque" and secret["immutable"] is True
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        "password": b"p@ss",
        "user": b"app",
    }
    assert data["key_id"] == load_certificates(_bundle(server))[0].key_id
    if fmt is SealFormat.kustos:
        assert all("ephemeralKey" in r for r in doc["spec"]["dataKeys"]["d1"])  # the X25519 path

    moved = json.loads(json.dumps(doc))
    moved["metadata"]["name"] = "stolen"
    refused = api(server, "POST", "sys/sealing/unseal", json={"sealed_secret": moved})
    assert refused.status_code == 400
    message = refused.json()["errors"][0]
    assert "prod/stolen" in message and "'password'" in message and "p@ss" not in message


def test_unseal_endpoint_bad_input(server: RunningServer) -> None:
    missing = api(server, "POST", "sys/sealing/unseal", json={})
    assert missing.status_code == 400 and "sealed_secret" in missing.json()["errors"][0]
    not_sealed = api(server, "POST", "sys/sealing/unseal", json={"sealed_secret": _secret()})
    assert (
        not_sealed.status_code == 400
        and "expected a SealedSecret" in not_sealed.json()["errors"][0]
    )
    assert (
        api(
            server,
            "POST",
            "sys/sealing/unseal",
            json={"sealed_secret": {}},
            headers={"X-Vault-Token": "nope"},
        ).status_code
        == 403
    )


# -- renewal and cut-off ----------------------------------------------------------------------


def test_cutoff_and_periodic_renewal_keep_old_keys(server: RunningServer) -> None:
    before = api(server, "GET", "sys/sealing/keys").json()["data"]["keys"]
    old_doc = _seal(server, SealFormat.bitnami, password="before-cutoff")

    cutoff = datetime.now(UTC).isoformat()
    config = api(server, "POST", "sys/sealing/config", json={"key_cutoff_time": cutoff}).json()[
        "data"
    ]
    assert config["key_cutoff_time"] is not None
    after_cutoff = api(server, "GET", "sys/sealing/keys").json()["data"][
        "keys"
    ]  # lazy renewal on use
    assert len(after_cutoff) == len(before) + 1
    assert [k["active"] for k in after_cutoff] == [False] * len(before) + [True]
    assert (
        api(server, "GET", "sys/sealing/keys").json()["data"]["keys"] == after_cutoff
    )  # only once

    assert api(server, "POST", "sys/sealing/config", json={"renew_period": "1s"}).status_code == 200
    time.sleep(1.2)
    renewed = api(server, "GET", "sys/sealing/keys").json()["data"]["keys"]
    assert len(renewed) == len(after_cutoff) + 1
    assert (
        api(server, "POST", "sys/sealing/config", json={"renew_period": "30d"}).json()["data"][
            "renew_period"
        ]
        == 30 * 86400
    )

    opened = api(server, "POST", "sys/sealing/unseal", json={"sealed_secret": old_doc}).json()[
        "data"
    ]
    assert base64.b64decode(opened["secret"]["data"]["password"]) == b"before-cutoff"
    bad = api(server, "POST", "sys/sealing/config", json={"renew_period": "soon"})
    assert bad.status_code == 400 and "renew_period" in bad.json()["errors"][0]


# -- import of Sealed Secrets key Secrets -----------------------------------------------------


def _sealed_secrets_key(created: datetime) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    """A key Secret as the Sealed Secrets controller makes it (made here with cryptography)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealed-secret"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(created)
        .not_valid_after(created + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": "sealed-secrets-keyabcde",
            "namespace": "kube-system",
            "labels": {"sealedsecrets.bitnami.com/sealed-secrets-key": "active"},
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "data": {
            "tls.crt": base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode(),
            "tls.key": base64.b64encode(pem_key).decode(),
        },
    }
    return key, secret


def _independent_seal(public: rsa.RSAPublicKey, value: bytes, *, label: bytes) -> str:
    """Sealed Secrets' HybridEncrypt, from REFERENCE.md."""
    session = os.urandom(32)
    rsa_ct = public.encrypt(
        session,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label),
    )
    return base64.b64encode(
        struct.pack(">H", len(rsa_ct)) + rsa_ct + AESGCM(session).encrypt(bytes(12), value, None)
    ).decode()


def test_import_sealed_secrets_keys_then_unseal_without_resealing(
    server: RunningServer, tmp_path: Path
) -> None:
    key, key_secret = _sealed_secrets_key(datetime(2024, 1, 1, tzinfo=UTC))
    existing = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "legacy", "namespace": "prod"},
        "spec": {
            "encryptedData": {
                "token": _independent_seal(
                    key.public_key(), b"from-the-old-cluster", label=b"prod/legacy"
                )
            },
            "template": {"metadata": {"name": "legacy", "namespace": "prod"}, "type": "Opaque"},
        },
    }
    before = api(server, "POST", "sys/sealing/unseal", json={"sealed_secret": existing})
    assert before.status_code == 400 and "SealedSecret prod/legacy" in before.json()["errors"][0]

    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [key_secret]}))
    imported = json.loads(ok(server, "keys", "import", "-f", str(keys_file), "-o", "json"))
    assert len(imported) == 1 and imported[0]["imported"] is True and imported[0]["active"] is False
    assert imported[0]["origin"] == "sealed-secrets:kube-system/sealed-secrets-keyabcde"
    again = json.loads(ok(server, "keys", "import", "-f", str(keys_file), "-o", "json"))
    assert again[0]["imported"] is False

    opened = api(server, "POST", "sys/sealing/unseal", json={"sealed_secret": existing})
    assert opened.status_code == 200, opened.text
    assert (
        base64.b64decode(opened.json()["data"]["secret"]["data"]["token"])
        == b"from-the-old-cluster"
    )
    assert api(server, "POST", "verify", content=json.dumps(existing)).status_code == 200

    unlabelled = json.loads(json.dumps(key_secret))
    del unlabelled["metadata"]["labels"]
    refused = api(server, "POST", "sys/sealing/keys/import", json={"secrets": [unlabelled]})
    assert refused.status_code == 400
    assert "Secret kube-system/sealed-secrets-keyabcde" in refused.json()["errors"][0]
    assert "sealedsecrets.bitnami.com/sealed-secrets-key" in refused.json()["errors"][0]


# -- keys at rest, backups, recovery with the server stopped ----------------------------------


def _needles(der_and_pem: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for blob in der_and_pem:
        out += [blob, base64.b64encode(blob)[8:-8], blob.hex().encode()]
    return out


def _private_forms(backup: bytes) -> list[bytes]:
    keyring = read_backup(backup, passphrase=Sensitive(PASSPHRASE))
    forms: list[bytes] = []
    for entry in keyring.entries:
        pem = entry.private_key.pem().reveal()
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        pkcs1 = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        pkcs8 = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        d = key.private_numbers().d
        pem_body = b"".join(pem.splitlines()[1:-1])
        forms += [pem, pem_body[:64], pkcs1, pkcs8, d.to_bytes((d.bit_length() + 7) // 8, "big")]
    return _needles(forms)


def _raw_files(server: RunningServer) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(server.data_dir.rglob("*")) if p.is_file())


def test_an_import_is_audited_before_it_commits(server: RunningServer, tmp_path: Path) -> None:
    """With an audit device, a key import declares its answer before the keys commit (it is not
    counted in ``kustos_audit_unreserved_commits_total``, see kustos.server.committing)."""
    _, key_secret = _sealed_secrets_key(datetime(2023, 6, 1, tzinfo=UTC))
    audit_log = tmp_path / "import-audit.log"
    device = {"type": "file", "options": {"file_path": str(audit_log)}}
    assert api(server, "POST", "sys/audit/import-audit", json=device).status_code == 204
    try:
        imported = api(server, "POST", "sys/sealing/keys/import", json={"secrets": [key_secret]})
    finally:
        assert api(server, "DELETE", "sys/audit/import-audit").status_code == 204
    assert imported.status_code == 200, imported.text
    assert [k["imported"] for k in imported.json()["data"]["keys"]] == [True]
    metrics = httpx.get(f"{server.addr}/metrics", timeout=60.0).text
    assert 'kustos_audit_unreserved_commits_total{route="sys/sealing/keys/import"}' not in metrics
    assert "sys/sealing/keys/import" in audit_log.read_text()


def test_no_private_key_in_plaintext_and_recovery_unseal_with_server_stopped(
    tmp_path: Path,
) -> None:
    with start_server(tmp_path / "srv") as running:
        assert (
            api(
                running,
                "POST",
                "sys/sealing/config",
                json={"key_bits": 2048, "renew_period": "720h"},
            ).status_code
            == 200
        )
        ok(running, "keys", "rotate")
        ok(running, "keys", "rotate")
        _, key_secret = _sealed_secrets_key(datetime(2024, 3, 1, tzinfo=UTC))
        assert (
            api(
                running, "POST", "sys/sealing/keys/import", json={"secrets": [key_secret]}
            ).status_code
            == 200
        )
        sealed = {
            fmt: _seal(running, fmt, password=f"recover-me-{fmt.value}")
            for fmt in (SealFormat.bitnami, SealFormat.kustos)
        }
        # rewrap and disabling the old barrier key cover the sealing keyring record
        assert api(running, "POST", "sys/rotate").status_code == 204
        rewrap = api(running, "POST", "sys/rewrap").json()["data"]
        assert rewrap["failed"] == 0 and rewrap["rewrapped"] >= 1
        assert api(running, "POST", "sys/keyring/disable", json={"version": 1}).status_code == 204
        backup_file = tmp_path / "keys.backup"
        passfile = tmp_path / "pass"
        passfile.write_text(PASSPHRASE)
        written = json.loads(
            ok(
                running,
                "keys",
                "backup",
                "-w",
                str(backup_file),
                "--passphrase-file",
                str(passfile),
                "-o",
                "json",
            )
        )
        assert written["keys"] == 3 and written["encryption"] == "passphrase"
        needles = _private_forms(backup_file.read_bytes())
        assert len(needles) == 3 * 5 * 3
        running_bytes = _raw_files(running)
        assert b"renew_period" in running_bytes  # the search sees what is stored in clear
        assert not [n[:16] for n in needles if n in running_bytes]
    stopped_bytes = _raw_files(running)  # server stopped (WAL checkpointed)
    assert b"renew_period" in stopped_bytes
    assert not [n[:16] for n in needles if n in stopped_bytes]

    # recovery with the server stopped: the backup bundle alone opens both formats
    for fmt, doc in sealed.items():
        out = ok(
            None,
            "--recovery-unseal",
            "--recovery-private-key",
            str(backup_file),
            "--passphrase-file",
            str(passfile),
            "-o",
            "json",
            stdin=json.dumps(doc).encode(),
        )
        secret = json.loads(out)
        assert base64.b64decode(secret["data"]["password"]) == f"recover-me-{fmt.value}".encode()
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase")
    failed = cli(
        None,
        "--recovery-unseal",
        "--recovery-private-key",
        str(backup_file),
        "--passphrase-file",
        str(wrong),
        stdin=json.dumps(sealed[SealFormat.bitnami]).encode(),
    )
    assert failed.returncode != 0


def test_sealing_endpoints_refuse_without_token_or_while_sealed(server: RunningServer) -> None:
    assert httpx.get(f"{server.addr}/v1/sys/sealing/keys", timeout=30).status_code == 403
    assert (
        httpx.post(
            f"{server.addr}/v1/sys/sealing/keys/backup", json={"passphrase": PASSPHRASE}, timeout=30
        ).status_code
        == 403
    )
    short = api(server, "POST", "sys/sealing/keys/backup", json={"passphrase": "short"})
    assert short.status_code == 400
    both = api(server, "POST", "sys/sealing/keys/backup", json={})
    assert both.status_code == 400 and "passphrase" in both.json()["errors"][0]
    # the reserved root names cannot be mounted
    clash = api(
        server, "POST", "sys/mounts/verify", json={"type": "kv", "options": {"version": "2"}}
    )
    assert clash.status_code == 400 and "reserved" in clash.json()["errors"][0]
    # a mount whose name merely starts like one is not shadowed
    assert (
        api(
            server,
            "POST",
            "sys/mounts/rotate-keys",
            json={"type": "kv", "options": {"version": "2"}},
        ).status_code
        == 204
    )
    assert api(server, "POST", "rotate-keys/data/x", json={"data": {"a": "b"}}).status_code == 200
