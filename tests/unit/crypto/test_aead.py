"""The AES-256-GCM recipe: round trip, fixed vector, and one error for every failure."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kustos.crypto import aead
from kustos.errors import DecryptionError

KEY = bytes(range(32))
NONCE = bytes(range(0xC0, 0xCC))


def test_round_trip_and_layout() -> None:
    key = aead.generate_key()
    assert len(key) == 32
    blob = aead.seal(key, b"hello", aad=b"here")
    assert len(blob) == 5 + aead.OVERHEAD
    assert aead.unseal(key, blob, aad=b"here") == b"hello"


def test_fixed_vector_matches_plain_aesgcm() -> None:
    blob = aead.seal(KEY, b"kustos", aad=b"ad", nonce=NONCE)
    assert (
        blob.hex()
        == "c0c1c2c3c4c5c6c7c8c9cacb" + AESGCM(KEY).encrypt(NONCE, b"kustos", b"ad").hex()
    )
    assert AESGCM(KEY).decrypt(blob[:12], blob[12:], b"ad") == b"kustos"


def test_fresh_nonce_per_call() -> None:
    assert aead.seal(KEY, b"x", aad=b"") != aead.seal(KEY, b"x", aad=b"")


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b[:10], id="shorter-than-overhead"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: bytes([b[0] ^ 1]) + b[1:], id="nonce-flipped"),
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 0x80]), id="tag-flipped"),
        pytest.param(lambda b: b + b"\x00", id="extended"),
    ],
)
def test_any_damage_raises_decryption_error(mutate: object) -> None:
    blob = aead.seal(KEY, b"secret value", aad=b"ad")
    assert callable(mutate)
    with pytest.raises(DecryptionError):
        aead.unseal(KEY, mutate(blob), aad=b"ad")


def test_wrong_key_or_aad_or_key_size() -> None:
    blob = aead.seal(KEY, b"secret value", aad=b"ad")
    with pytest.raises(DecryptionError):
        aead.unseal(bytes(32), blob, aad=b"ad")
    with pytest.raises(DecryptionError):
        aead.unseal(KEY, blob, aad=b"other")
    with pytest.raises(DecryptionError):
        aead.unseal(KEY[:16], blob, aad=b"ad")


def test_seal_refuses_bad_key_or_nonce_sizes() -> None:
    with pytest.raises(ValueError, match="key must be 32 bytes"):
        aead.seal(KEY[:16], b"x", aad=b"")
    with pytest.raises(ValueError, match="nonce must be 12 bytes"):
        aead.seal(KEY, b"x", aad=b"", nonce=b"short")


def test_error_message_reveals_nothing() -> None:
    blob = aead.seal(KEY, b"hunter2", aad=b"ad")
    with pytest.raises(DecryptionError) as info:
        aead.unseal(KEY, blob, aad=b"x")
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None
