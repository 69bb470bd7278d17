"""The real `kustos seal` command, run as a subprocess (no server anywhere)."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ruamel.yaml import YAML

if TYPE_CHECKING:
    from tests.integration.sealing.conftest import KeyFiles

KUSTOS = str(Path(sys.executable).parent / "kustos")

SECRET_YAML = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"stringData":{"password":"hunter2"}}'
type: Opaque
data:
  user: YWRtaW4=
stringData:
  password: hunter2
"""


def run(
    *args: str, stdin: bytes | str = b"", env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("KUSTOS_ADDR", "KUSTOS_BACKUP_PASSPHRASE")
    }
    full_env.update(env or {})
    return subprocess.run(
        [KUSTOS, "seal", *args],
        input=data,
        capture_output=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def ok(*args: str, **kw: Any) -> bytes:
    result = run(*args, **kw)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def independent_open(key_pem: bytes, value: str, label: bytes) -> bytes:
    """Sealed Secrets' format from REFERENCE.md, with cryptography directly."""
    private = serialization.load_pem_private_key(key_pem, password=None)
    raw = base64.b64decode(value)
    (n,) = struct.unpack(">H", raw[:2])
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)
    session = private.decrypt(raw[2 : 2 + n], oaep)  # type: ignore[union-attr]
    return AESGCM(session).decrypt(b"\x00" * 12, raw[2 + n :], None)


def test_seal_from_stdin_opens_with_the_independent_implementation(prod_keys: KeyFiles) -> None:
    out = ok("--cert", str(prod_keys.cert), stdin=SECRET_YAML)
    sealed = json.loads(out)  # JSON by default, like kubeseal
    assert sealed["kind"] == "SealedSecret" and sealed["apiVersion"] == "bitnami.com/v1alpha1"
    assert b"hunter2" not in out and b"last-applied" not in out
    values = sealed["spec"]["encryptedData"]
    assert (
        independent_open(prod_keys.key.read_bytes(), values["password"], b"prod/db") == b"hunter2"
    )
    assert independent_open(prod_keys.key.read_bytes(), values["user"], b"prod/db") == b"admin"


def test_yaml_output_file_and_scope_flag(prod_keys: KeyFiles, tmp_path: Path) -> None:
    src = tmp_path / "secret.yaml"
    src.write_text(SECRET_YAML)
    out = tmp_path / "sealed.yaml"
    ok(
        "-f",
        str(src),
        "--cert",
        str(prod_keys.cert),
        "--scope",
        "namespace-wide",
        "-o",
        "yaml",
        "-w",
        str(out),
    )
    sealed = YAML(typ="safe").load(out.read_text())
    assert sealed["metadata"]["annotations"]["sealedsecrets.bitnami.com/namespace-wide"] == "true"
    assert (
        independent_open(
            prod_keys.key.read_bytes(), sealed["spec"]["encryptedData"]["user"], b"prod"
        )
        == b"admin"
    )


def test_raw_from_file(prod_keys: KeyFiles, tmp_path: Path) -> None:
    value_file = tmp_path / "value.txt"
    value_file.write_bytes(b"raw-value")
    out = ok(
        "--raw",
        "--from-file",
        f"password={value_file}",
        "--namespace",
        "prod",
        "--name",
        "db",
        "--cert",
        str(prod_keys.cert),
    )
    assert independent_open(prod_keys.key.read_bytes(), out.decode(), b"prod/db") == b"raw-value"
    out = ok(
        "--raw", "--scope", "cluster-wide", "--cert", str(prod_keys.cert), stdin=b"stdin-value"
    )
    assert independent_open(prod_keys.key.read_bytes(), out.decode(), b"") == b"stdin-value"


def test_merge_into_changes_only_the_named_keys(prod_keys: KeyFiles, tmp_path: Path) -> None:
    target = tmp_path / "sealed.json"
    three = SECRET_YAML.replace("  password: hunter2\n", "  password: hunter2\n  extra: keep-me\n")
    target.write_bytes(ok("--cert", str(prod_keys.cert), stdin=three))
    before = json.loads(target.read_bytes())["spec"]["encryptedData"]
    update = "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {password: changed}\n"
    ok("--cert", str(prod_keys.cert), "--merge-into", str(target), stdin=update)
    after = json.loads(target.read_bytes())
    assert after["metadata"]["name"] == "db"
    values = after["spec"]["encryptedData"]
    assert values["user"] == before["user"] and values["extra"] == before["extra"]
    assert values["password"] != before["password"]
    assert (
        independent_open(prod_keys.key.read_bytes(), values["password"], b"prod/db") == b"changed"
    )


def test_recovery_unseal_from_key_backups_without_a_server(
    prod_keys: KeyFiles, tmp_path: Path
) -> None:
    keyring = tmp_path / "keyring.json"
    secret = tmp_path / "key-secret.json"
    secret.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {
                    "name": "sealed-secrets-keyabc",
                    "namespace": "kube-system",
                    "labels": {"sealedsecrets.bitnami.com/sealed-secrets-key": "active"},
                },
                "data": {
                    "tls.crt": base64.b64encode(prod_keys.cert.read_bytes()).decode(),
                    "tls.key": base64.b64encode(prod_keys.key.read_bytes()).decode(),
                },
            }
        )
    )
    listing = json.loads(
        ok("keys", "import", "--keyring", str(keyring), "-f", str(secret), "-o", "json")
    )
    assert (
        listing[0]["key_id"] == prod_keys.pair.certificate.key_id and listing[0]["imported"] is True
    )
    assert oct(keyring.stat().st_mode & 0o777) == "0o600"
    passphrase = tmp_path / "pass"
    passphrase.write_text("a strong passphrase\n")
    bundle = tmp_path / "backup.json"
    ok(
        "keys",
        "backup",
        "--keyring",
        str(keyring),
        "-w",
        str(bundle),
        "--passphrase-file",
        str(passphrase),
    )
    assert b"PRIVATE KEY" not in bundle.read_bytes()
    keyring.unlink()  # only the backup is left

    sealed = tmp_path / "sealed.yaml"
    sealed.write_bytes(ok("--cert", str(prod_keys.cert), "-o", "yaml", stdin=SECRET_YAML))
    unsealed = json.loads(
        ok(
            "--recovery-unseal",
            "--recovery-private-key",
            str(bundle),
            "-f",
            str(sealed),
            env={
                "KUSTOS_BACKUP_PASSPHRASE": "a strong passphrase",
                "KUSTOS_ADDR": "http://127.0.0.1:9",
            },
        )
    )
    assert unsealed["kind"] == "Secret" and unsealed["metadata"]["name"] == "db"
    assert base64.b64decode(unsealed["data"]["password"]) == b"hunter2"
    wrong = run(
        "--recovery-unseal",
        "--recovery-private-key",
        str(bundle),
        "-f",
        str(sealed),
        env={"KUSTOS_BACKUP_PASSPHRASE": "not the passphrase"},
    )
    assert wrong.returncode != 0 and b"wrong passphrase" in wrong.stderr


def test_native_format_for_two_recipients_and_pem_recovery(
    prod_keys: KeyFiles, dr_keys: KeyFiles, tmp_path: Path
) -> None:
    sealed = tmp_path / "native.json"
    sealed.write_bytes(
        ok("--format", "kustos", "--cert", f"{prod_keys.cert},{dr_keys.cert}", stdin=SECRET_YAML)
    )
    doc = json.loads(sealed.read_bytes())
    assert doc["apiVersion"] == "kustos.io/v1"
    assert len(doc["spec"]["dataKeys"]["d1"]) == 2
    for key in (prod_keys.key, dr_keys.key):
        out = json.loads(
            ok("--recovery-unseal", "--recovery-private-key", str(key), "-f", str(sealed))
        )
        assert base64.b64decode(out["data"]["user"]) == b"admin"
    ok("--validate", "--recovery-private-key", str(dr_keys.key), "-f", str(sealed))


def test_bitnami_format_for_two_recipients_is_one_object_each(
    prod_keys: KeyFiles, dr_keys: KeyFiles
) -> None:
    out = json.loads(
        ok("--cert", str(prod_keys.cert), "--cert", str(dr_keys.cert), stdin=SECRET_YAML)
    )
    assert out["kind"] == "List" and len(out["items"]) == 2
    assert (
        independent_open(
            dr_keys.key.read_bytes(), out["items"][1]["spec"]["encryptedData"]["user"], b"prod/db"
        )
        == b"admin"
    )


def test_re_encrypt_offline_moves_values_to_the_new_key(
    prod_keys: KeyFiles, dr_keys: KeyFiles, tmp_path: Path
) -> None:
    old = tmp_path / "old.json"
    old.write_bytes(ok("--cert", str(dr_keys.cert), stdin=SECRET_YAML))
    new = json.loads(
        ok(
            "--re-encrypt",
            "--recovery-private-key",
            str(dr_keys.key),
            "--cert",
            str(prod_keys.cert),
            "-f",
            str(old),
        )
    )
    assert (
        new["metadata"]["annotations"]["kustos.io/sealing-key-id"]
        == prod_keys.pair.certificate.key_id
    )
    assert (
        independent_open(
            prod_keys.key.read_bytes(), new["spec"]["encryptedData"]["password"], b"prod/db"
        )
        == b"hunter2"
    )


def test_fetch_cert_and_cert_url_from_a_controller(prod_keys: KeyFiles, cert_server: str) -> None:
    assert ok("--fetch-cert", "--controller-url", cert_server) == prod_keys.cert.read_bytes()
    assert ok("--fetch-cert", env={"KUSTOS_ADDR": cert_server}) == prod_keys.cert.read_bytes()
    sealed = json.loads(ok("--cert", f"{cert_server}/v1/cert.pem", stdin=SECRET_YAML))
    assert (
        independent_open(
            prod_keys.key.read_bytes(), sealed["spec"]["encryptedData"]["user"], b"prod/db"
        )
        == b"admin"
    )
    # no --cert: the controller's certificate is fetched, as kubeseal does
    sealed = json.loads(ok(env={"KUSTOS_ADDR": cert_server}, stdin=SECRET_YAML))
    assert (
        independent_open(
            prod_keys.key.read_bytes(), sealed["spec"]["encryptedData"]["password"], b"prod/db"
        )
        == b"hunter2"
    )
    bad = run("--validate", "--controller-url", cert_server, stdin=json.dumps(sealed))
    assert bad.returncode != 0 and b"unable to decrypt sealed secret" in bad.stderr
    sealed["metadata"]["labels"] = {"stand-in": "ok"}  # the stand-in controller answers 200
    ok("--validate", "--controller-url", cert_server, stdin=json.dumps(sealed))


def test_keys_generate_list_cert(tmp_path: Path) -> None:
    keyring = tmp_path / "ring.json"
    first = json.loads(
        ok("keys", "generate", "--keyring", str(keyring), "--bits", "2048", "-o", "json")
    )
    assert first["generated"] is True
    again = json.loads(ok("keys", "generate", "--keyring", str(keyring), "--if-due", "-o", "json"))
    assert again["generated"] is False and again["key_id"] == first["key_id"]
    rows = json.loads(ok("keys", "list", "--keyring", str(keyring), "-o", "json"))
    assert [r["key_id"] for r in rows] == [first["key_id"]] and rows[0]["active"] is True
    cert = tmp_path / "cert.pem"
    cert.write_bytes(ok("keys", "cert", "--keyring", str(keyring)))
    assert cert.read_bytes().count(b"BEGIN CERTIFICATE") == 2  # RSA + X25519 exchange certificate
    assert (
        ok("keys", "cert", "--rsa-only", "--keyring", str(keyring)).count(b"BEGIN CERTIFICATE") == 1
    )
    sealed = tmp_path / "s.json"
    sealed.write_bytes(ok("--cert", str(cert), stdin=SECRET_YAML))
    out = json.loads(
        ok("--recovery-unseal", "--recovery-private-key", str(keyring), "-f", str(sealed))
    )
    assert base64.b64decode(out["data"]["user"]) == b"admin"


# ---------------------------------------------------------------- bad input


def test_not_a_secret(prod_keys: KeyFiles) -> None:
    result = run(
        "--cert",
        str(prod_keys.cert),
        stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: prod}\n",
    )
    assert result.returncode == 1
    assert b"expected a v1 Secret, got ConfigMap prod/cfg" in result.stderr


def test_strict_scope_without_namespace_or_name(prod_keys: KeyFiles) -> None:
    no_ns = run(
        "--cert",
        str(prod_keys.cert),
        stdin="apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {a: b}\n",
    )
    assert no_ns.returncode == 1 and b"Secret db: strict scope needs a namespace" in no_ns.stderr
    raw = run("--raw", "--namespace", "prod", "--cert", str(prod_keys.cert), stdin=b"v")
    assert raw.returncode == 1 and b"strict scope needs a name" in raw.stderr


def test_expired_certificate(expired_keys: KeyFiles) -> None:
    result = run("--cert", str(expired_keys.cert), stdin=SECRET_YAML)
    assert result.returncode == 1
    assert (
        f"certificate {expired_keys.pair.certificate.key_id} expired on".encode() in result.stderr
    )


def test_corrupted_value(prod_keys: KeyFiles, tmp_path: Path) -> None:
    sealed = json.loads(ok("--cert", str(prod_keys.cert), stdin=SECRET_YAML))
    value = bytearray(base64.b64decode(sealed["spec"]["encryptedData"]["password"]))
    value[-3] ^= 0x40
    sealed["spec"]["encryptedData"]["password"] = base64.b64encode(bytes(value)).decode()
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(sealed))
    result = run("--recovery-unseal", "--recovery-private-key", str(prod_keys.key), "-f", str(path))
    assert result.returncode == 1
    err = b" ".join(result.stderr.split())
    assert b"cannot unseal SealedSecret prod/db: no sealing key opens key 'password'" in err
    assert b"hunter2" not in result.stdout + result.stderr
