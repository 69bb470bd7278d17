"""Bound values: pinned vectors, the recipe re-derived with ``cryptography`` directly, and every way
an opener other than the bound ServiceAccount fails with the one ``DecryptionError``."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kustos.crypto import bound
from kustos.crypto.bound import BoundIdentity
from kustos.errors import DecryptionError, InvalidRequestError

ROOT = bytes(range(32))
NONCE = bytes(range(100, 112))
UID = "7b0c0a52-3c1e-4a57-9d2f-0c1a2b3c4d5e"
API = BoundIdentity("payments", "api")
API_UID = BoundIdentity("payments", "api", UID)

# computed once with the recipe in the module docstring and pinned: a change of format fails here
VECTOR_NAME = "kustos:bound:v1:1:payments/api:ZGVmZ2hpamtsbW5vm6w63UXu2jgky4qiIn43cs8YZRwBHA=="
VECTOR_UID = (
    "kustos:bound:v1:2:payments/api/7b0c0a52-3c1e-4a57-9d2f-0c1a2b3c4d5e:"
    "ZGVmZ2hpamtsbW5vV3Ga3KhXzMyK9KTo6SgtiVBEFZPhAg=="
)
DERIVED_API = "85b2dbd1b0882723238d7123da3a61eb6b23fbbb6b1ea1ef757e15673e537faa"


def _independent(root: bytes, binding: str, version: int, plaintext: bytes) -> str:
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"kustos/bound/v1",
        info=b"kustos/bound/v1\x00" + binding.encode(),
    ).derive(root)
    header = f"kustos:bound:v1:{version}:{binding}"
    blob = NONCE + AESGCM(key).encrypt(NONCE, plaintext, header.encode())
    return f"{header}:{base64.b64encode(blob).decode()}"


def test_pinned_vectors() -> None:
    assert bound.derive_key(ROOT, API).hex() == DERIVED_API
    assert bound.seal_value(ROOT, b"s3cr3t", version=1, identity=API, nonce=NONCE) == VECTOR_NAME
    assert bound.seal_value(ROOT, b"s3cr3t", version=2, identity=API_UID, nonce=NONCE) == VECTOR_UID


def test_recipe_matches_cryptography_used_directly() -> None:
    assert VECTOR_NAME == _independent(ROOT, "payments/api", 1, b"s3cr3t")
    assert VECTOR_UID == _independent(ROOT, f"payments/api/{UID}", 2, b"s3cr3t")


def test_opens_for_the_bound_account() -> None:
    keys = {1: ROOT, 2: ROOT}
    assert bound.open_value(keys, bound.parse(VECTOR_NAME), opener=API) == b"s3cr3t"
    # a name-bound value opens for any UID of that account (the login carries one)
    assert bound.open_value(keys, bound.parse(VECTOR_NAME), opener=API_UID) == b"s3cr3t"
    assert bound.open_value(keys, bound.parse(VECTOR_UID), opener=API_UID) == b"s3cr3t"


@pytest.mark.parametrize(
    ("vector", "opener"),
    [
        (VECTOR_NAME, BoundIdentity("payments", "web")),
        (VECTOR_NAME, BoundIdentity("payment", "api")),
        (VECTOR_NAME, BoundIdentity("other", "api")),
        (VECTOR_UID, BoundIdentity("payments", "api", "00000000-0000-0000-0000-000000000000")),
        (VECTOR_UID, BoundIdentity("payments", "api")),
        (VECTOR_UID, BoundIdentity("payments", "web", UID)),
    ],
)
def test_other_openers_fail_the_same_way(vector: str, opener: BoundIdentity) -> None:
    with pytest.raises(DecryptionError) as caught:
        bound.open_value({1: ROOT, 2: ROOT}, bound.parse(vector), opener=opener)
    assert str(caught.value) == str(DecryptionError())


def test_header_is_authenticated() -> None:
    value = bound.parse(VECTOR_NAME)
    # the same bytes presented as another account's value, or under another version, fail
    relabelled = bound.BoundValue(
        version=1, identity=BoundIdentity("payments", "web"), blob=value.blob
    )
    with pytest.raises(DecryptionError):
        bound.open_value({1: ROOT}, relabelled, opener=BoundIdentity("payments", "web"))
    moved = bound.BoundValue(version=2, identity=API, blob=value.blob)
    with pytest.raises(DecryptionError):
        bound.open_value({1: ROOT, 2: ROOT}, moved, opener=API)
    flipped = bytearray(value.blob)
    flipped[-1] ^= 1
    with pytest.raises(DecryptionError):
        bound.open_value(
            {1: ROOT}, bound.BoundValue(version=1, identity=API, blob=bytes(flipped)), opener=API
        )
    with pytest.raises(DecryptionError):
        bound.open_value({2: ROOT}, value, opener=API)  # key version 1 unknown
    with pytest.raises(DecryptionError):
        bound.open_value({1: bytes(32)}, value, opener=API)  # another root key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vault:v1:abc", "must start with"),
        ("kustos:bound:v1:1:payments/api", "expected"),
        ("kustos:bound:v1:x:payments/api:AAAA", "key version"),
        ("kustos:bound:v1:0:payments/api:AAAA", "key version"),
        ("kustos:bound:v1:1:payments:AAAA", "binding"),
        ("kustos:bound:v1:1:Payments/api:AAAA", "invalid namespace"),
        ("kustos:bound:v1:1:payments/a_b:AAAA", "invalid service account name"),
        ("kustos:bound:v1:1:payments/api:not base64!", "not base64"),
        ("kustos:bound:v1:1:payments/api:AAAA", "too short"),
    ],
)
def test_malformed_text_is_named(text: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        bound.parse(text)


def test_is_bound_and_round_trip() -> None:
    assert bound.is_bound(VECTOR_NAME) and bound.is_bound(VECTOR_NAME.encode())
    assert not bound.is_bound("s3cr3t") and not bound.is_bound(None)
    assert bound.parse(VECTOR_UID).text() == VECTOR_UID
    assert bound.parse(VECTOR_UID).identity == API_UID
    fresh = bound.seal_value(bound.generate_root_key(), b"x", version=1, identity=API)
    assert fresh != bound.seal_value(ROOT, b"x", version=1, identity=API)
