"""Envelope encryption: round trip, tamper evidence, context binding, rotation and fixed vectors."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kustos.crypto.envelope import (
    ATTESTATION_SIZE,
    OVERHEAD,
    Keyring,
    KeyVersionInfo,
    attest,
    attestation_context,
    context,
    verify_attestation,
)
from kustos.errors import DecryptionError, InvalidRequestError

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T1 = datetime(2024, 6, 1, tzinfo=UTC)
CTX = context("3f0c1b8e-mount", "app/db", 3)
PLAINTEXT = b'{"password":"hunter2"}'

VECTOR_KEK = bytes(range(32))
VECTOR_DEK = bytes(range(0x40, 0x60))
VECTOR_WRAP_NONCE = bytes(range(0xA0, 0xAC))
VECTOR_DATA_NONCE = bytes(range(0xB0, 0xBC))
VECTOR_CTX_HEX = "020000000e33663063316238652d6d6f756e7402000000066170702f6462030000000133"
VECTOR_BLOB_HEX = (
    "4b534501"
    "00000001"
    "a0a1a2a3a4a5a6a7a8a9aaab"
    "a6593e6e018e44f82a2ccd984b378e9120fd0b43c6e2143bc4577cdd23f62b5e"
    "a60bb157fd1dc830d1736639805d0000"
    "b0b1b2b3b4b5b6b7b8b9babb"
    "7822f0e4b2399cf6498a05c2cf9e39a5ca6df61a6668"
    "7c893cc154d1861307dc9dd37af3bc74"
)


def fixed(*chunks: bytes) -> Callable[[int], bytes]:
    it: Iterator[bytes] = iter(chunks)

    def randbytes(n: int) -> bytes:
        chunk = next(it)
        assert len(chunk) == n
        return chunk

    return randbytes


def keyring_with(kek: bytes, *, version: int = 1) -> Keyring:
    doc = {
        "kustos_keyring": 1,
        "active": version,
        "keys": [
            {
                "version": version,
                "created": T0.isoformat(),
                "disabled": False,
                "key": base64.b64encode(kek).decode(),
            }
        ],
    }
    return Keyring.from_bytes(json.dumps(doc).encode())


def independent_context(*parts: bytes) -> bytes:
    return b"".join(b"\x01" + struct.pack(">I", len(p)) + p for p in parts)


# -- context ---------------------------------------------------------------------------


def test_context_is_unambiguous() -> None:
    assert context("a", "bc") != context("ab", "c")
    assert context(1) != context("1") != context(b"1")
    assert context("x", 12) != context("x1", 2)
    assert context() == b""
    assert context(b"ab") == b"\x01\x00\x00\x00\x02ab"
    assert context("é") == b"\x02\x00\x00\x00\x02\xc3\xa9"
    assert context(-5) == b"\x03\x00\x00\x00\x02-5"


def test_context_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        context(True)
    with pytest.raises(TypeError):
        context(1.5)  # type: ignore[arg-type]


# -- round trip and tampering ------------------------------------------------------------


def test_round_trip_with_fresh_data_key_per_call() -> None:
    ring = Keyring.generate(now=T0)
    a = ring.encrypt(PLAINTEXT, context=CTX)
    b = ring.encrypt(PLAINTEXT, context=CTX)
    assert a != b
    assert a[8:68] != b[8:68]  # different wrapped DEKs
    assert len(a) == len(PLAINTEXT) + OVERHEAD == len(PLAINTEXT) + 96
    assert ring.decrypt(a, context=CTX) == PLAINTEXT
    assert ring.decrypt(ring.encrypt(b"", context=CTX), context=CTX) == b""
    assert PLAINTEXT not in a


def test_flipping_any_single_byte_fails() -> None:
    ring = Keyring.generate(now=T0)
    blob = ring.encrypt(PLAINTEXT, context=CTX)
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            damaged = blob[:i] + bytes([blob[i] ^ bit]) + blob[i + 1 :]
            with pytest.raises(DecryptionError):
                ring.decrypt(damaged, context=CTX)


def test_truncated_or_extended_blobs_fail() -> None:
    ring = Keyring.generate(now=T0)
    blob = ring.encrypt(PLAINTEXT, context=CTX)
    for cut in (0, 3, 8, 67, 80, OVERHEAD - 1, len(blob) - 1):
        with pytest.raises(DecryptionError):
            ring.decrypt(blob[:cut], context=CTX)
    with pytest.raises(DecryptionError):
        ring.decrypt(blob + b"\x00", context=CTX)


def test_blob_moved_to_another_context_fails() -> None:
    ring = Keyring.generate(now=T0)
    blob = ring.encrypt(PLAINTEXT, context=CTX)
    for other in (
        context("3f0c1b8e-mount", "app/db", 4),
        context("3f0c1b8e-mount", "app/other", 3),
        context("another-mount", "app/db", 3),
        b"",
    ):
        with pytest.raises(DecryptionError):
            ring.decrypt(blob, context=other)


def test_swapping_wrapped_keys_between_rows_fails() -> None:
    ring = Keyring.generate(now=T0)
    a = ring.encrypt(b"value A", context=CTX)
    b = ring.encrypt(b"value B", context=CTX)
    with pytest.raises(DecryptionError):
        ring.decrypt(a[:68] + b[68:], context=CTX)


def test_a_remembered_result_answers_only_the_same_blob_object_in_the_same_context() -> None:
    ring = Keyring.generate(now=T0)
    blob = ring.encrypt(PLAINTEXT, context=CTX)
    assert ring.decrypt(blob, context=CTX) == PLAINTEXT  # verified, and remembered
    assert ring.decrypt(blob, context=CTX) == PLAINTEXT
    with pytest.raises(DecryptionError):  # the same object elsewhere is still refused
        ring.decrypt(blob, context=context("3f0c1b8e-mount", "app/other", 3))
    copy = bytes(bytearray(blob))  # equal bytes, another object: verified on its own
    assert copy is not blob and ring.decrypt(copy, context=CTX) == PLAINTEXT
    damaged = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionError):
        ring.decrypt(damaged, context=CTX)
    ring.forget_plaintexts()
    assert ring.decrypt(blob, context=CTX) == PLAINTEXT


def test_another_keyring_cannot_decrypt() -> None:
    blob = Keyring.generate(now=T0).encrypt(PLAINTEXT, context=CTX)
    with pytest.raises(DecryptionError):
        Keyring.generate(now=T0).decrypt(blob, context=CTX)


def test_unknown_key_version_fails() -> None:
    ring = Keyring.generate(now=T0)
    blob = ring.encrypt(PLAINTEXT, context=CTX)
    forged = blob[:4] + struct.pack(">I", 2) + blob[8:]
    assert Keyring.key_version(forged) == 2
    with pytest.raises(DecryptionError):
        ring.decrypt(forged, context=CTX)
    # even when version 2 exists, the DEK layer binds the version it was wrapped under
    with pytest.raises(DecryptionError):
        ring.rotate(now=T1).decrypt(forged, context=CTX)


def test_key_version_reads_the_header_and_rejects_garbage() -> None:
    ring = Keyring.generate(now=T0).rotate(now=T1)
    assert Keyring.key_version(ring.encrypt(b"x", context=CTX)) == 2
    with pytest.raises(DecryptionError):
        Keyring.key_version(b"KSE\x01\x00")
    with pytest.raises(DecryptionError):
        Keyring.key_version(b"XXX\x01" + bytes(OVERHEAD))


# -- rotation, rewrap, disable -------------------------------------------------------------


def test_rotate_rewrap_disable() -> None:
    v1 = Keyring.generate(now=T0)
    old = v1.encrypt(PLAINTEXT, context=CTX)
    v2 = v1.rotate(now=T1)
    assert v1.active_version == 1  # immutable: rotate returned a new keyring
    assert v2.active_version == 2
    assert v2.versions() == [KeyVersionInfo(1, T0, False), KeyVersionInfo(2, T1, False)]
    assert Keyring.key_version(v2.encrypt(b"new", context=CTX)) == 2
    assert v2.decrypt(old, context=CTX) == PLAINTEXT  # decrypt with any

    new = v2.rewrap(old, context=CTX)
    assert Keyring.key_version(new) == 2
    assert new[68:] == old[68:]  # data nonce + ciphertext unchanged
    assert new[8:68] != old[8:68]
    assert v2.rewrap(new, context=CTX) == new  # already current: unchanged
    with pytest.raises(DecryptionError):
        v1.decrypt(new, context=CTX)

    v3 = v2.disable(1)
    assert v3.versions()[0].disabled is True
    assert v3.decrypt(new, context=CTX) == PLAINTEXT
    with pytest.raises(DecryptionError):
        v3.decrypt(old, context=CTX)
    with pytest.raises(DecryptionError):
        v3.rewrap(old, context=CTX)
    assert v2.decrypt(old, context=CTX) == PLAINTEXT  # v2 itself is unchanged


def test_rewrap_verifies_first() -> None:
    ring = Keyring.generate(now=T0)
    blob = ring.encrypt(PLAINTEXT, context=CTX)
    damaged = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionError):
        ring.rotate(now=T1).rewrap(damaged, context=CTX)
    with pytest.raises(DecryptionError):
        ring.rotate(now=T1).rewrap(blob, context=context("elsewhere"))


def test_disable_refuses_active_and_unknown_versions() -> None:
    ring = Keyring.generate(now=T0).rotate(now=T1)
    with pytest.raises(InvalidRequestError, match="active key version 2"):
        ring.disable(2)
    with pytest.raises(InvalidRequestError, match="no key version 7"):
        ring.disable(7)


# -- serialization and repr ----------------------------------------------------------------


def test_serialization_round_trip_keeps_keys_and_state() -> None:
    ring = Keyring.generate(now=T0).rotate(now=T1).disable(1)
    blob = ring.encrypt(PLAINTEXT, context=CTX)
    again = Keyring.from_bytes(ring.to_bytes())
    assert again.active_version == 2
    assert again.versions() == ring.versions()
    assert again.decrypt(blob, context=CTX) == PLAINTEXT
    assert again.to_bytes() == ring.to_bytes()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"kustos_keyring": 2, "active": 1, "keys": []}',
        b'{"kustos_keyring": 1, "active": 1, "keys": []}',
        b'{"kustos_keyring": 1, "active": 2, "keys": [{"version": 1, "created": "2024-01-01T00:00:00+00:00", "disabled": false, "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}]}',
        b'{"kustos_keyring": 1, "active": 1, "keys": [{"version": 1, "created": "2024-01-01T00:00:00+00:00", "disabled": false, "key": "AAEC"}]}',
        b'{"kustos_keyring": 1, "active": 1, "keys": [{"version": 1, "created": "2024-01-01T00:00:00+00:00", "disabled": true, "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}]}',
        b'{"kustos_keyring": 1, "active": true, "keys": [{"version": 1, "created": "2024-01-01T00:00:00+00:00", "disabled": false, "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}]}',
    ],
)
def test_malformed_keyrings_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError) as info:
        Keyring.from_bytes(data)
    assert "AAECAwQF" not in str(info.value)


def test_repr_never_shows_key_material() -> None:
    ring = keyring_with(VECTOR_KEK).rotate(now=T1)
    text = repr(ring) + str(ring) + repr(ring.versions())
    assert text.startswith("Keyring(active_version=2, versions=[1, 2], disabled=[])")
    assert VECTOR_KEK.hex() not in text
    assert base64.b64encode(VECTOR_KEK).decode() not in text
    assert "key=" not in repr(ring._keks)


def test_keyring_is_immutable_and_not_picklable() -> None:
    import pickle

    ring = Keyring.generate(now=T0)
    with pytest.raises(AttributeError):
        ring._active = 5
    with pytest.raises(TypeError):
        pickle.dumps(ring)


# -- fixed test vectors --------------------------------------------------------------------


def test_fixed_vector_is_reproduced_exactly() -> None:
    assert CTX.hex() == VECTOR_CTX_HEX
    ring = keyring_with(VECTOR_KEK)
    blob = ring.encrypt(
        PLAINTEXT, context=CTX, randbytes=fixed(VECTOR_DEK, VECTOR_WRAP_NONCE, VECTOR_DATA_NONCE)
    )
    assert blob.hex() == VECTOR_BLOB_HEX
    assert ring.decrypt(bytes.fromhex(VECTOR_BLOB_HEX), context=CTX) == PLAINTEXT


def test_fixed_vector_decrypts_independently_from_the_documented_format() -> None:
    blob = bytes.fromhex(VECTOR_BLOB_HEX)
    ctx = bytes.fromhex(VECTOR_CTX_HEX)
    magic, fmt, version = blob[0:3], blob[3], struct.unpack(">I", blob[4:8])[0]
    assert (magic, fmt, version) == (b"KSE", 1, 1)
    wrap_nonce, wrapped = blob[8:20], blob[20:68]
    data_nonce, data = blob[68:80], blob[80:]
    dek_aad = independent_context(b"kustos/envelope/dek", blob[0:8], ctx)
    data_aad = independent_context(b"kustos/envelope/data", blob[0:4], ctx)
    dek = AESGCM(VECTOR_KEK).decrypt(wrap_nonce, wrapped, dek_aad)
    assert dek == VECTOR_DEK
    assert AESGCM(dek).decrypt(data_nonce, data, data_aad) == PLAINTEXT


def test_independent_encryption_is_accepted() -> None:
    """A blob built only from the documented format (no Kustos code) decrypts."""
    ctx = context("m", "p", 1)
    header = b"KSE\x01" + struct.pack(">I", 1)
    wrapped = VECTOR_WRAP_NONCE + AESGCM(VECTOR_KEK).encrypt(
        VECTOR_WRAP_NONCE, VECTOR_DEK, independent_context(b"kustos/envelope/dek", header, ctx)
    )
    data = VECTOR_DATA_NONCE + AESGCM(VECTOR_DEK).encrypt(
        VECTOR_DATA_NONCE,
        b"independent",
        independent_context(b"kustos/envelope/data", header[:4], ctx),
    )
    assert keyring_with(VECTOR_KEK).decrypt(header + wrapped + data, context=ctx) == b"independent"


def test_rewrap_vector() -> None:
    """Rewrapping the fixed vector under KEK version 2 with a fixed nonce gives a known header and DEK block."""
    kek2 = bytes(range(0x60, 0x80))
    ring = keyring_with(VECTOR_KEK).rotate(now=T1, randbytes=fixed(kek2))
    old = bytes.fromhex(VECTOR_BLOB_HEX)
    new = ring.rewrap(old, context=CTX, randbytes=fixed(bytes(range(0xD0, 0xDC))))
    assert new[:8].hex() == "4b53450100000002"
    assert new[8:20] == bytes(range(0xD0, 0xDC))
    assert new[68:] == old[68:]
    expected_wrapped = AESGCM(kek2).encrypt(
        new[8:20], VECTOR_DEK, independent_context(b"kustos/envelope/dek", new[:8], CTX)
    )
    assert new[20:68] == expected_wrapped


# -- attestations ------------------------------------------------------------------------

DOCUMENT = b'{"versions":{"1":{"created_by":"root","reason":"rotate"}}}'


def test_an_attestation_vouches_for_exactly_one_document_in_one_place() -> None:
    keyring = Keyring.generate(now=T0)
    tag = attest(keyring, DOCUMENT, context=CTX)
    assert len(tag) == ATTESTATION_SIZE == OVERHEAD
    verify_attestation(keyring, tag, DOCUMENT, context=CTX)
    edited = DOCUMENT.replace(b"root", b"mallory")
    for document, ctx in ((edited, CTX), (DOCUMENT, context("3f0c1b8e-mount", "app/other", 3))):
        with pytest.raises(DecryptionError):
            verify_attestation(keyring, tag, document, context=ctx)
    with pytest.raises(DecryptionError):
        verify_attestation(Keyring.generate(now=T0), tag, DOCUMENT, context=CTX)
    with pytest.raises(DecryptionError):  # an envelope of something is not an attestation
        other = keyring.encrypt(b"x", context=attestation_context(CTX, DOCUMENT))
        verify_attestation(keyring, other, DOCUMENT, context=CTX)
    for position in (0, 10, len(tag) - 1):
        flipped = bytearray(tag)
        flipped[position] ^= 1
        with pytest.raises(DecryptionError):
            verify_attestation(keyring, bytes(flipped), DOCUMENT, context=CTX)


def test_attestations_follow_key_rotation_rewrap_and_disabling() -> None:
    keyring = Keyring.generate(now=T0)
    tag = attest(keyring, DOCUMENT, context=CTX)
    rotated = keyring.rotate(now=T1)
    verify_attestation(rotated, tag, DOCUMENT, context=CTX)
    moved = rotated.rewrap(tag, context=attestation_context(CTX, DOCUMENT))
    assert Keyring.key_version(moved) == 2
    disabled = rotated.disable(1)
    verify_attestation(disabled, moved, DOCUMENT, context=CTX)
    with pytest.raises(DecryptionError):
        verify_attestation(disabled, tag, DOCUMENT, context=CTX)


def test_attestation_context_vector() -> None:
    """``context(b"kustos/attest", ctx, SHA-256(document))``, byte for byte."""
    assert attestation_context(CTX, b"") == independent_context(
        b"kustos/attest",
        CTX,
        bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    )
