"""``kustos server`` over TLS, and with its keyring wrapped by a SoftHSM2 key (pkcs11 provider)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kustos.store import SqliteBackend
from tests.support.server import start_server
from tests.support.softhsm import SoftHsmToken, create_token, softhsm_missing


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kustos-test")])
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
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with start_server(
        tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https"
    ) as server:
        assert server.addr.startswith("https://")
        client = hvac.Client(url=server.addr, token=server.root_token, verify=str(cert))
        client.secrets.kv.v2.create_or_update_secret(path="tls", secret={"k": "over tls"})
        read = client.secrets.kv.v2.read_secret_version(path="tls", raise_on_deleted_version=True)
        assert read["data"]["data"] == {"k": "over tls"}
        client.adapter.close()


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    reason = softhsm_missing()
    if reason is not None:
        pytest.skip(reason)
    yield create_token(tmp_path_factory.mktemp("softhsm"), label="kustos-server")


@pytest.mark.softhsm
async def test_pkcs11_provider(tmp_path: Path, softhsm: SoftHsmToken) -> None:
    env = {"SOFTHSM2_CONF": str(softhsm.conf), "KUSTOS_PKCS11_PIN": softhsm.pin}
    flags = (
        "--key-provider",
        "pkcs11",
        "--pkcs11-module",
        softhsm.module,
        "--pkcs11-token-label",
        softhsm.token_label,
    )
    with start_server(tmp_path, *flags, env=env) as server:
        client = hvac.Client(url=server.addr, token=server.root_token)
        client.secrets.kv.v2.create_or_update_secret(
            path="hsm", secret={"k": "hsm-protected-value"}
        )
        assert client.sys.read_seal_status()["type"] == "pkcs11"
        assert not (server.data_dir / "kustos.key").exists()
        server.restart()  # auto-unseals through the HSM
        read = client.secrets.kv.v2.read_secret_version(path="hsm", raise_on_deleted_version=True)
        assert read["data"]["data"] == {"k": "hsm-protected-value"}
        client.adapter.close()
    backend = SqliteBackend(server.data_dir / "kustos.db")
    await backend.open()
    try:
        async for _, value in backend.scan(""):
            assert b"hsm-protected-value" not in value
    finally:
        await backend.close()
