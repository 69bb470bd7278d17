"""Every published sops 3.x test vector decrypts with its MAC verified; tampering is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from kustos.errors import DecryptionError
from kustos.gitops.sops import KeyServices, decrypt_file, store_for
from tests.support.paths import SOPS_VECTORS

VECTORS = SOPS_VECTORS

EXPECTED = {
    "format.enc.yaml": (b"foo: bar\n", {"foo": "bar"}),
    "format.enc.json": (b'{\n\t"foo": "bar"\n}\n', {"foo": "bar"}),
    # sops kept the spaces around "=" as part of the key and the value.
    "format.enc.env": (b"foo = bar\n", {"foo ": " bar"}),
    "format.enc.ini": (b"[foo]\nbar = baz\n", {"foo": {"bar": "baz"}}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector_decrypts_with_mac_verified(name: str, pgp_services: KeyServices) -> None:
    path = VECTORS / name
    result = decrypt_file(path.read_bytes(), store=store_for(path=str(path)), services=pgp_services)
    plaintext, tree = EXPECTED[name]
    assert result.plaintext == plaintext
    assert result.tree == tree
    assert result.metadata.all_keys()[0].identifier() == "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4"


def _flip_value(text: str) -> str:
    # change one character inside the first value's base64 data
    start = text.index("data:") + len("data:")
    swapped = "A" if text[start] != "A" else "B"
    return text[:start] + swapped + text[start + 1 :]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tampered_value_names_its_path(name: str, pgp_services: KeyServices) -> None:
    path = VECTORS / name
    tampered = _flip_value(path.read_text()).encode()
    with pytest.raises(DecryptionError, match=r"could not decrypt the value at \[\"foo"):
        decrypt_file(tampered, store=store_for(path=str(path)), services=pgp_services)


def test_tampered_mac_is_reported(pgp_services: KeyServices) -> None:
    path = VECTORS / "format.enc.yaml"
    text = path.read_text()
    mac_start = text.index("mac: ENC[") + len("mac: ENC[AES256_GCM,data:")
    tampered = text[:mac_start] + ("A" if text[mac_start] != "A" else "B") + text[mac_start + 1 :]
    with pytest.raises(DecryptionError, match="cannot decrypt the MAC"):
        decrypt_file(tampered.encode(), store=store_for(path=str(path)), services=pgp_services)
    # --ignore-mac skips the MAC entirely, as sops does
    result = decrypt_file(
        tampered.encode(), store=store_for(path=str(path)), services=pgp_services, ignore_mac=True
    )
    assert result.tree == {"foo": "bar"}


def test_changed_lastmodified_breaks_the_mac(pgp_services: KeyServices) -> None:
    path = VECTORS / "format.enc.json"
    tampered = path.read_text().replace("2026-05-22T20:16:18Z", "2026-05-22T20:16:19Z").encode()
    with pytest.raises(DecryptionError, match="MAC"):
        decrypt_file(tampered, store=store_for(path=str(path)), services=pgp_services)


def test_unencrypted_value_change_is_a_mac_mismatch(
    pgp_services: KeyServices, tmp_path: Path
) -> None:
    # A file whose only value is unencrypted (suffix) changes undetectably unless the MAC is checked.
    from kustos.gitops.sops import PgpKey, encrypt_file

    store = store_for(path="x.yaml")
    enc = encrypt_file(
        b"token_unencrypted: abc\n",
        store=store,
        key_groups=[[PgpKey(fp="FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4")]],
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


def test_no_key_lists_the_recipients_tried(tmp_path: Path) -> None:
    empty_home = tmp_path / "empty-gnupg"
    empty_home.mkdir(mode=0o700)
    services = KeyServices(
        env={"GNUPGHOME": str(empty_home), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    )
    path = VECTORS / "format.enc.yaml"
    with pytest.raises(DecryptionError) as info:
        decrypt_file(path.read_bytes(), store=store_for(path=str(path)), services=services)
    message = str(info.value)
    assert "could not decrypt the data key" in message
    assert "pgp FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4" in message
