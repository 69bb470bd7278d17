"""hvac's transit client, unmodified, against a real ``kustos server`` subprocess."""

from __future__ import annotations

import base64
import uuid

import hvac
import hvac.exceptions
import pytest


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.fixture
def key(vault: hvac.Client) -> str:
    name = f"k-{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(name)
    return name


def test_create_read_list(vault: hvac.Client, key: str) -> None:
    info = vault.secrets.transit.read_key(key)["data"]
    assert info["name"] == key and info["type"] == "aes256-gcm96" and info["latest_version"] == 1
    assert (
        set(info["keys"]) == {"1"}
        and info["min_decryption_version"] == 1
        and info["derived"] is False
    )
    assert key in vault.secrets.transit.list_keys()["data"]["keys"]
    chacha = f"c-{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(chacha, key_type="chacha20-poly1305")
    assert vault.secrets.transit.read_key(chacha)["data"]["type"] == "chacha20-poly1305"
    with pytest.raises(hvac.exceptions.InvalidRequest, match="unknown key type 'rsa-2048'"):
        vault.secrets.transit.create_key("r", key_type="rsa-2048")


def test_encrypt_decrypt_round_trip(vault: hvac.Client, key: str) -> None:
    enc = vault.secrets.transit.encrypt_data(key, plaintext=b64(b"attack at dawn"))["data"]
    assert enc["ciphertext"].startswith("vault:v1:") and enc["key_version"] == 1
    raw = unb64(enc["ciphertext"].split(":", 2)[2])
    assert len(raw) == 12 + len(b"attack at dawn") + 16
    dec = vault.secrets.transit.decrypt_data(key, ciphertext=enc["ciphertext"])["data"]
    assert unb64(dec["plaintext"]) == b"attack at dawn"


def test_rotate_rewrap_and_min_decryption_version(vault: hvac.Client, key: str) -> None:
    transit = vault.secrets.transit
    old = transit.encrypt_data(key, plaintext=b64(b"old secret"))["data"]["ciphertext"]
    transit.rotate_key(key)
    assert transit.read_key(key)["data"]["latest_version"] == 2
    assert transit.encrypt_data(key, plaintext=b64(b"x"))["data"]["ciphertext"].startswith(
        "vault:v2:"
    )
    assert unb64(transit.decrypt_data(key, ciphertext=old)["data"]["plaintext"]) == b"old secret"
    new = transit.rewrap_data(key, ciphertext=old)["data"]["ciphertext"]
    assert new.startswith("vault:v2:")
    transit.update_key_configuration(key, min_decryption_version=2)
    assert transit.read_key(key)["data"]["min_decryption_version"] == 2
    with pytest.raises(hvac.exceptions.InvalidRequest, match=r"disallowed by policy \(too old\)"):
        transit.decrypt_data(key, ciphertext=old)
    assert unb64(transit.decrypt_data(key, ciphertext=new)["data"]["plaintext"]) == b"old secret"
    with pytest.raises(hvac.exceptions.InvalidRequest, match="deletion is not allowed"):
        transit.delete_key(key)
    transit.update_key_configuration(key, deletion_allowed=True)
    transit.delete_key(key)
    with pytest.raises(hvac.exceptions.InvalidPath):
        transit.read_key(key)


def test_derived_key_needs_its_context(vault: hvac.Client) -> None:
    transit = vault.secrets.transit
    name = f"d-{uuid.uuid4().hex[:8]}"
    transit.create_key(name, derived=True)
    assert transit.read_key(name)["data"]["kdf"] == "hkdf_sha256"
    ctx_a, ctx_b = b64(b"tenant-a"), b64(b"tenant-b")
    ct = transit.encrypt_data(name, plaintext=b64(b"per tenant"), context=ctx_a)["data"][
        "ciphertext"
    ]
    assert (
        unb64(transit.decrypt_data(name, ciphertext=ct, context=ctx_a)["data"]["plaintext"])
        == b"per tenant"
    )
    with pytest.raises(
        hvac.exceptions.InvalidRequest, match="cipher: message authentication failed"
    ):
        transit.decrypt_data(name, ciphertext=ct, context=ctx_b)
    with pytest.raises(
        hvac.exceptions.InvalidRequest, match="missing 'context' for key derivation"
    ):
        transit.decrypt_data(name, ciphertext=ct)


def test_batch_encrypt_and_decrypt(vault: hvac.Client, key: str) -> None:
    transit = vault.secrets.transit
    items = [{"plaintext": b64(f"value {i}".encode())} for i in range(20)]
    results = transit.encrypt_data(key, batch_input=items)["data"]["batch_results"]
    assert len(results) == 20 and all(r["ciphertext"].startswith("vault:v1:") for r in results)
    batch = [{"ciphertext": r["ciphertext"]} for r in results]
    out = transit.decrypt_data(key, ciphertext=None, batch_input=batch)["data"]["batch_results"]
    assert [unb64(r["plaintext"]) for r in out] == [f"value {i}".encode() for i in range(20)]


def test_tampered_ciphertext_fails_cleanly(vault: hvac.Client, key: str) -> None:
    ct = vault.secrets.transit.encrypt_data(key, plaintext=b64(b"integrity"))["data"]["ciphertext"]
    raw = bytearray(unb64(ct.split(":", 2)[2]))
    for position in (0, 14, len(raw) - 1):  # nonce, ciphertext, tag
        flipped = bytearray(raw)
        flipped[position] ^= 0x80
        with pytest.raises(hvac.exceptions.InvalidRequest) as info:
            vault.secrets.transit.decrypt_data(key, ciphertext="vault:v1:" + b64(bytes(flipped)))
        assert info.value.errors == ["cipher: message authentication failed"]


def test_datakey_and_hmac(vault: hvac.Client, key: str) -> None:
    transit = vault.secrets.transit
    dk = transit.generate_data_key(key, key_type="plaintext")["data"]
    assert len(unb64(dk["plaintext"])) == 32
    assert (
        transit.decrypt_data(key, ciphertext=dk["ciphertext"])["data"]["plaintext"]
        == dk["plaintext"]
    )
    mac = transit.generate_hmac(key, hash_input=b64(b"message"))["data"]["hmac"]
    assert mac.startswith("vault:v1:")
    assert (
        transit.verify_signed_data(key, hash_input=b64(b"message"), hmac=mac)["data"]["valid"]
        is True
    )
    assert (
        transit.verify_signed_data(key, hash_input=b64(b"massage"), hmac=mac)["data"]["valid"]
        is False
    )


def test_a_token_without_policy_is_refused(vault: hvac.Client, key: str) -> None:
    child = vault.auth.token.create(policies=["default"], ttl="5m")["auth"]["client_token"]
    limited = hvac.Client(url=vault.url, token=child)
    try:
        with pytest.raises(hvac.exceptions.Forbidden):
            limited.secrets.transit.encrypt_data(key, plaintext=b64(b"x"))
        with pytest.raises(hvac.exceptions.Forbidden):
            limited.secrets.transit.read_key(key)
    finally:
        limited.adapter.close()
