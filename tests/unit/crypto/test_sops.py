"""The sops value cipher: format, 32-byte IVs, path AAD, IV reuse, and an independent AES-GCM check."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kustos.crypto.sops import (
    MAC_ONLY_ENCRYPTED_INIT,
    MacHasher,
    ValueCipher,
    format_float,
    generate_data_key,
    is_encrypted_value,
)
from kustos.errors import DecryptionError

KEY = bytes(range(32))
_FORMAT = re.compile(r"^ENC\[AES256_GCM,data:([^,]*),iv:([^,]+),tag:([^,]+),type:(\w+)\]$")


def test_value_format_and_independent_decryption() -> None:
    value = ValueCipher(KEY).encrypt(b"hunter2", aad="db:password:", value_type="str")
    match = _FORMAT.match(value)
    assert match is not None
    data, iv, tag = (base64.b64decode(match.group(i)) for i in (1, 2, 3))
    assert len(iv) == 32 and len(tag) == 16 and match.group(4) == "str"
    # Decrypt with a separate AES-GCM implementation: same key, IV, AAD.
    assert AESGCM(KEY).decrypt(iv, data + tag, b"db:password:") == b"hunter2"
    assert is_encrypted_value(value) and not is_encrypted_value("ENC[nope]")


def test_decrypt_of_an_independently_made_value() -> None:
    iv = bytes(32)
    sealed = AESGCM(KEY).encrypt(iv, b"42", b"a:b:")
    value = (
        f"ENC[AES256_GCM,data:{base64.b64encode(sealed[:-16]).decode()},"
        f"iv:{base64.b64encode(iv).decode()},tag:{base64.b64encode(sealed[-16:]).decode()},type:int]"
    )
    assert ValueCipher(KEY).decrypt(value, aad="a:b:") == (b"42", "int")


def test_wrong_path_wrong_key_and_tampering_fail_the_same_way() -> None:
    value = ValueCipher(KEY).encrypt(b"x", aad="a:", value_type="str")
    with pytest.raises(DecryptionError):
        ValueCipher(KEY).decrypt(value, aad="b:")
    with pytest.raises(DecryptionError):
        ValueCipher(bytes(32)).decrypt(value, aad="a:")
    with pytest.raises(DecryptionError):
        ValueCipher(KEY).decrypt(value.replace("type:str", "type:nope"), aad="a:")
    with pytest.raises(DecryptionError):
        ValueCipher(KEY).decrypt("ENC[AES256_GCM,data:!!,iv:AA==,tag:AA==,type:str]", aad="a:")


def test_iv_is_reused_only_for_same_plaintext_type_and_path() -> None:
    cipher = ValueCipher(KEY)
    original = ValueCipher(KEY).encrypt(b"same", aad="k:", value_type="str")
    cipher.decrypt(original, aad="k:")
    assert cipher.encrypt(b"same", aad="k:", value_type="str") == original
    assert cipher.encrypt(b"other", aad="k:", value_type="str") != original
    moved = cipher.encrypt(b"same", aad="j:", value_type="str")
    assert _FORMAT.match(moved).group(2) != _FORMAT.match(original).group(2)  # type: ignore[union-attr]


def test_fresh_ivs_without_stash() -> None:
    cipher = ValueCipher(KEY)
    assert cipher.encrypt(b"v", aad="k:", value_type="str") != cipher.encrypt(
        b"v", aad="k:", value_type="str"
    )
    assert len(generate_data_key()) == 32
    with pytest.raises(DecryptionError):
        ValueCipher(b"short")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (-2.25, "-2.25"),
        (1e-7, "0.0000001"),
    ],
)
def test_float_encoding_matches_go(value: float, text: str) -> None:
    assert format_float(value) == text


def test_mac_hasher() -> None:
    mac = MacHasher()
    mac.update(b"bar")
    assert mac.hexdigest() == hashlib.sha512(b"bar").hexdigest().upper()
    only = MacHasher(mac_only_encrypted=True)
    only.update(b"bar")
    assert (
        only.hexdigest()
        == hashlib.sha512(hashlib.sha256(b"sops").digest() + b"bar").hexdigest().upper()
    )
    assert MAC_ONLY_ENCRYPTED_INIT.hex().startswith("8a3fd2ad")
