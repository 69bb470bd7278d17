"""Transit crypto: Vault's ``vault:vN:`` format, fixed vectors against ``cryptography`` used directly,
HKDF derivation, HMACs, and one error for every decryption failure."""

from __future__ import annotations

import base64
import hashlib
import hmac as std_hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kustos.crypto import transit as tc
from kustos.errors import DecryptionError, InvalidRequestError

KEY = bytes(range(32))
NONCE = bytes(range(0xA0, 0xAC))


def _fixed(n: int) -> bytes:
    return NONCE[:n]


@pytest.mark.parametrize(
    ("key_type", "cipher"), [("aes256-gcm96", AESGCM), ("chacha20-poly1305", ChaCha20Poly1305)]
)
def test_fixed_vectors(key_type: str, cipher: type[AESGCM] | type[ChaCha20Poly1305]) -> None:
    blob = tc.encrypt(key_type, KEY, b"kustos", randbytes=_fixed)
    assert blob == NONCE + cipher(KEY).encrypt(NONCE, b"kustos", None)
    assert tc.decrypt(key_type, KEY, blob) == b"kustos"
    text = tc.format_ciphertext(3, blob)
    assert text == "vault:v3:" + base64.b64encode(blob).decode()
    assert tc.parse_ciphertext(text) == (3, blob)


def test_pinned_aes_gcm_vector() -> None:
    # AES-256-GCM, key 00..1f, nonce a0..ab, plaintext "kustos", no AAD: computed once and pinned
    blob = tc.encrypt("aes256-gcm96", KEY, b"kustos", randbytes=_fixed)
    assert (
        tc.format_ciphertext(1, blob) == "vault:v1:oKGio6SlpqeoqaqrjW0PWSq4qXy3xE18mWxaMH4WtsAdkA=="
    )


@pytest.mark.parametrize("key_type", tc.KEY_TYPES)
def test_every_failure_is_the_same_error(key_type: str) -> None:
    blob = tc.encrypt(key_type, KEY, b"secret")
    failures = [
        (KEY, blob[:-1] + bytes([blob[-1] ^ 1])),
        (KEY, blob[:20]),
        (KEY, b""),
        (bytes(32), blob),
        (KEY[:16], blob),
    ]
    messages = set()
    for key, data in failures:
        with pytest.raises(DecryptionError) as info:
            tc.decrypt(key_type, key, data)
        messages.add(str(info.value))
    assert len(messages) == 1
    with pytest.raises(DecryptionError):
        tc.decrypt("rsa-2048", KEY, blob)


def test_derivation_is_hkdf_sha256_with_context_as_info() -> None:
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ctx").derive(KEY)
    assert tc.derive_key(KEY, b"ctx") == expected
    assert tc.derive_key(KEY, b"ctx2") != expected
    with pytest.raises(InvalidRequestError, match="missing 'context'"):
        tc.derive_key(KEY, b"")


def test_hmac_matches_stdlib_and_refuses_unknown_algorithms() -> None:
    assert tc.hmac_digest(KEY, b"m") == std_hmac.new(KEY, b"m", hashlib.sha256).digest()
    assert (
        tc.hmac_digest(KEY, b"m", algorithm="sha2-384")
        == std_hmac.new(KEY, b"m", hashlib.sha384).digest()
    )
    with pytest.raises(InvalidRequestError, match="unsupported algorithm 'md5'"):
        tc.hmac_digest(KEY, b"m", algorithm="md5")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "no prefix"),
        ("vault:", "wrong number of fields"),
        ("vault:1:AAAA", "wrong number of fields"),
        ("vault:v:AAAA", "version number could not be decoded"),
        ("vault:v-1:AAAA", "version number could not be decoded"),
        ("vault:v1:A", "could not decode base64"),
    ],
)
def test_parse_errors_use_vaults_wording(text: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"invalid ciphertext: {message}"):
        tc.parse_ciphertext(text)


def test_v0_is_version_one_and_material_round_trips_without_showing_itself() -> None:
    assert tc.parse_ciphertext("vault:v0:AAAA")[0] == 1
    material = tc.KeyMaterial.generate()
    assert tc.KeyMaterial.from_bytes(material.to_bytes()) == material
    assert material.key.hex() not in repr(material) and "hidden" in repr(material)
    with pytest.raises(DecryptionError):
        tc.KeyMaterial.from_bytes(material.to_bytes()[:-1])
