"""kustos.crypto.sealing: the hybrid (Sealed Secrets) and native value formats, keys and PEM."""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kustos.crypto.sealing import (
    SealingKeyPair,
    generate_data_key,
    generate_sealing_key,
    hybrid_decrypt,
    hybrid_encrypt,
    load_certificate,
    load_certificates,
    load_private_key,
    load_private_keys,
    native_aad,
    native_decrypt_value,
    native_encrypt_value,
    unwrap_data_key,
    wrap_data_key,
)
from kustos.crypto.sealing_backup import open_with_passphrase, seal_with_passphrase
from kustos.errors import DecryptionError, InvalidRequestError
from kustos.sensitive import Sensitive

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pair() -> SealingKeyPair:
    return generate_sealing_key(now=NOW, bits=2048)


@pytest.fixture(scope="module")
def pair4096() -> SealingKeyPair:
    return generate_sealing_key(now=NOW)


def test_hybrid_layout_matches_the_reference(pair4096: SealingKeyPair) -> None:
    session = bytes(range(32))
    blob = hybrid_encrypt(
        pair4096.certificate, b"hello", label=b"ns/name", randbytes=lambda n: session[:n]
    )
    (rsa_len,) = struct.unpack(">H", blob[:2])
    assert rsa_len == 512 and len(blob) == 2 + 512 + 5 + 16
    assert base64.b64encode(blob).startswith(b"Ag")
    # the GCM part is deterministic given the session key: zero nonce, no AAD
    assert blob[2 + 512 :] == AESGCM(session).encrypt(b"\x00" * 12, b"hello", None)
    key = serialization.load_pem_private_key(pair4096.private_key.pem().reveal(), password=None)
    oaep = padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=b"ns/name"
    )
    assert key.decrypt(blob[2:514], oaep) == session  # type: ignore[union-attr]
    assert hybrid_decrypt(pair4096.private_key, blob, label=b"ns/name").reveal() == b"hello"


@pytest.mark.parametrize(
    "mutate", ["label", "flip_rsa", "flip_gcm", "truncate", "empty", "bad_len"]
)
def test_hybrid_failures_raise_decryption_error_only(pair: SealingKeyPair, mutate: str) -> None:
    blob = bytearray(hybrid_encrypt(pair.certificate, b"value", label=b"a/b"))
    label = b"a/b"
    if mutate == "label":
        label = b"a/c"
    elif mutate == "flip_rsa":
        blob[10] ^= 1
    elif mutate == "flip_gcm":
        blob[-1] ^= 1
    elif mutate == "truncate":
        blob = blob[:200]
    elif mutate == "empty":
        blob = bytearray()
    elif mutate == "bad_len":
        blob[0:2] = b"\x00\x10"
    with pytest.raises(DecryptionError) as err:
        hybrid_decrypt(pair.private_key, bytes(blob), label=label)
    assert str(err.value) == str(DecryptionError())


def test_native_value_binds_its_place(pair: SealingKeyPair) -> None:
    dk = generate_data_key()
    aad = native_aad(scope="strict", namespace="prod", name="db", key="password", data_key_id="d1")
    blob = native_encrypt_value(dk, b"pw", aad=aad)
    assert native_decrypt_value(dk, blob, aad=aad).reveal() == b"pw"
    for other in (
        native_aad(scope="strict", namespace="prod", name="db", key="user", data_key_id="d1"),
        native_aad(
            scope="namespace-wide", namespace="prod", name="", key="password", data_key_id="d1"
        ),
        native_aad(scope="strict", namespace="prod", name="db", key="password", data_key_id="d2"),
    ):
        with pytest.raises(DecryptionError):
            native_decrypt_value(dk, blob, aad=other)
    with pytest.raises(DecryptionError):
        native_decrypt_value(generate_data_key(), blob, aad=aad)
    wrapped = wrap_data_key(pair.certificate, dk, label=b"prod/db")
    assert unwrap_data_key(pair.private_key, wrapped, label=b"prod/db") == dk
    with pytest.raises(DecryptionError):
        unwrap_data_key(pair.private_key, wrapped, label=b"prod/other")


def test_native_aad_vector() -> None:
    """Fixed vector: length-prefixed fields after the format name, so no two places collide."""
    aad = native_aad(scope="strict", namespace="ns", name="n", key="k", data_key_id="d1")
    assert (
        aad
        == b"kustos.io/v1"
        + b"\x00\x00\x00\x06strict"
        + b"\x00\x00\x00\x02ns"
        + b"\x00\x00\x00\x01n"
        + b"\x00\x00\x00\x01k"
        + b"\x00\x00\x00\x02d1"
    )
    assert native_aad(scope="s", namespace="a/b", name="", key="c", data_key_id="d") != native_aad(
        scope="s", namespace="a", name="b", key="c", data_key_id="d"
    )


def test_key_id_is_truncated_sha256_of_spki(pair: SealingKeyPair) -> None:
    spki = (
        serialization.load_pem_private_key(pair.private_key.pem().reveal(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert (
        pair.certificate.key_id == pair.private_key.key_id == hashlib.sha256(spki).hexdigest()[:16]
    )
    assert repr(pair.private_key) == f"SealingPrivateKey(key_id={pair.private_key.key_id!r})"
    assert "PRIVATE" not in repr(pair.private_key)


def test_pem_parsing(pair: SealingKeyPair, pair4096: SealingKeyPair) -> None:
    bundle = pair.certificate.pem() + pair4096.certificate.pem()
    assert [c.key_id for c in load_certificates(bundle)] == [
        pair.certificate.key_id,
        pair4096.certificate.key_id,
    ]
    assert load_certificate(bundle) == pair.certificate
    key = serialization.load_pem_private_key(pair.private_key.pem().reveal(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert load_private_key(pkcs8).key_id == pair.private_key.key_id
    assert len(load_private_keys(pkcs8 + pair4096.private_key.pem().reveal())) == 2
    with pytest.raises(InvalidRequestError, match="no PEM certificate"):
        load_certificates(b"hello")
    with pytest.raises(InvalidRequestError, match="no PEM private key"):
        load_private_keys(pair.certificate.pem())
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidRequestError, match="expected an RSA private key"):
        load_private_keys(ec_pem)


def test_small_keys_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="2048"):
        generate_sealing_key(now=NOW, bits=1024)


def test_certificate_expiry(pair: SealingKeyPair) -> None:
    assert not pair.certificate.is_expired(now=NOW + timedelta(days=3000))
    assert pair.certificate.is_expired(now=NOW + timedelta(days=3651))


def test_passphrase_box() -> None:
    box = seal_with_passphrase(Sensitive(b"keyring"), passphrase=Sensitive("a long passphrase"))
    assert (
        open_with_passphrase(box, passphrase=Sensitive("a long passphrase")).reveal() == b"keyring"
    )
    with pytest.raises(DecryptionError):
        open_with_passphrase(box, passphrase=Sensitive("another passphrase"))


# -- X25519 exchange keys (native format's fast wrap) ------------------------------------------


def _independent_x25519_unwrap(
    seed: bytes, ephemeral: bytes, wrapped: bytes, *, aad: bytes
) -> bytes:
    """The ECIES recipe from the module docstring, written from scratch."""
    from cryptography.hazmat.primitives.asymmetric import x25519
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    own = x25519.X25519PrivateKey.from_private_bytes(seed)
    shared = own.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeral))
    kek = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + own.public_key().public_bytes_raw(),
        info=b"kustos.io/v1 data key",
    ).derive(shared)
    return AESGCM(kek).decrypt(bytes(12), wrapped, aad)


def test_exchange_key_is_derived_from_the_rsa_key(pair: SealingKeyPair) -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    d = pair.private_key._key.private_numbers().d
    seed = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"kustos.io/v1 x25519 exchange key",
        info=pair.private_key.key_id.encode(),
    ).derive(d.to_bytes((d.bit_length() + 7) // 8, "big"))
    expected = x25519.X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert pair.private_key.exchange_public_bytes() == expected
    # the same key parsed again derives the same exchange key
    again = load_private_key(pair.private_key.pem().reveal())
    assert again.exchange_public_bytes() == expected

    bundle = pair.private_key.with_exchange(pair.certificate)
    assert bundle.has_exchange_key and not pair.certificate.has_exchange_key
    assert bundle.pem() == pair.certificate.pem()  # cert.pem stays the RSA certificate
    assert bundle.bundle_pem().startswith(pair.certificate.pem())
    assert bundle.bundle_pem().count(b"BEGIN CERTIFICATE") == 2
    # deterministic: every replica serves the same bytes
    assert pair.private_key.exchange_certificate_pem(pair.certificate) == (
        again.exchange_certificate_pem(pair.certificate)
    )
    loaded = load_certificates(bundle.bundle_pem())
    assert len(loaded) == 1 and loaded[0].has_exchange_key


def test_x25519_wrap_interoperates_with_an_independent_recipe(pair: SealingKeyPair) -> None:
    from kustos.crypto.sealing import native_wrap_aad, unwrap_data_key_x25519, wrap_data_key_x25519

    bundle = pair.private_key.with_exchange(pair.certificate)
    data_key = generate_data_key()
    aad = native_wrap_aad(
        scope="strict", namespace="ns", name="db", data_key_id="d1", key_id=bundle.key_id
    )
    ephemeral, wrapped = wrap_data_key_x25519(bundle, data_key, aad=aad)
    assert len(ephemeral) == 32 and len(wrapped) == 48
    assert (
        unwrap_data_key_x25519(pair.private_key, ephemeral, wrapped, aad=aad).reveal()
        == data_key.reveal()
    )
    d = pair.private_key._key.private_numbers().d
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    seed = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"kustos.io/v1 x25519 exchange key",
        info=pair.private_key.key_id.encode(),
    ).derive(d.to_bytes((d.bit_length() + 7) // 8, "big"))
    assert _independent_x25519_unwrap(seed, ephemeral, wrapped, aad=aad) == data_key.reveal()
    other = native_wrap_aad(
        scope="strict", namespace="ns", name="other", data_key_id="d1", key_id=bundle.key_id
    )
    for eph, wr, ad in (
        (ephemeral, wrapped, other),
        (ephemeral, wrapped[:-1] + bytes([wrapped[-1] ^ 1]), aad),
        (bytes(32), wrapped, aad),  # low-order point
        (ephemeral[:31], wrapped, aad),
    ):
        with pytest.raises(DecryptionError):
            unwrap_data_key_x25519(pair.private_key, eph, wr, aad=ad)
    with pytest.raises(InvalidRequestError, match="no X25519 exchange key"):
        wrap_data_key_x25519(pair.certificate, data_key, aad=aad)


def test_exchange_certificate_signed_by_another_key_is_refused(pair: SealingKeyPair) -> None:
    stranger = generate_sealing_key(now=NOW, bits=2048)
    forged = stranger.private_key.exchange_certificate_pem(stranger.certificate)
    with pytest.raises(InvalidRequestError, match="not signed by any RSA certificate"):
        load_certificates(pair.certificate.pem() + forged)
    with pytest.raises(InvalidRequestError, match="no RSA sealing certificate"):
        load_certificates(forged)
