"""The round-trip contract every KeyProvider passes; subclassed per provider (local, shamir, pkcs11, awskms).

A subclass named ``Test...`` supplies two fixtures: ``provider`` (ready to
wrap) and ``other_provider`` (same kind, a different key).
"""

from __future__ import annotations

import pytest

from kustos.errors import DecryptionError, KeyProviderError, SealedError
from kustos.keys.base import KeyProvider

KEYRING = b'{"kustos_keyring":1,"keys":"pretend these are KEKs"}'
AAD = b"kustos/keyring"


class KeyProviderContract:
    """Round trip, binding to aad, tamper evidence, isolation between keys, close."""

    def test_implements_the_protocol(self, provider: KeyProvider) -> None:
        assert isinstance(provider, KeyProvider)
        assert provider.name in {"local", "shamir", "pkcs11", "awskms"}
        assert provider.sealed is False

    def test_round_trip(self, provider: KeyProvider) -> None:
        for plaintext in (KEYRING, b"", bytes(range(256)) * 64):
            blob = provider.wrap(plaintext, aad=AAD)
            if plaintext:
                assert plaintext not in blob
            assert provider.unwrap(blob, aad=AAD) == plaintext

    def test_wrapping_is_randomized(self, provider: KeyProvider) -> None:
        assert provider.wrap(KEYRING, aad=AAD) != provider.wrap(KEYRING, aad=AAD)

    def test_other_aad_fails(self, provider: KeyProvider) -> None:
        blob = provider.wrap(KEYRING, aad=AAD)
        for other in (b"kustos/sealing-key", b"", AAD + b"\x00"):
            with pytest.raises(DecryptionError):
                provider.unwrap(blob, aad=other)

    def test_flipping_any_byte_fails(self, provider: KeyProvider) -> None:
        blob = provider.wrap(KEYRING, aad=AAD)
        for i in range(len(blob)):
            with pytest.raises(DecryptionError):
                provider.unwrap(blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :], aad=AAD)

    def test_truncated_or_garbage_fails(self, provider: KeyProvider) -> None:
        blob = provider.wrap(KEYRING, aad=AAD)
        for bad in (b"", blob[:5], blob[:-1], blob + b"x", b"\x01" * 40):
            with pytest.raises(DecryptionError):
                provider.unwrap(bad, aad=AAD)

    def test_another_key_cannot_unwrap(
        self, provider: KeyProvider, other_provider: KeyProvider
    ) -> None:
        blob = provider.wrap(KEYRING, aad=AAD)
        with pytest.raises(DecryptionError):
            other_provider.unwrap(blob, aad=AAD)

    def test_close_forgets_the_key(self, provider: KeyProvider) -> None:
        blob = provider.wrap(KEYRING, aad=AAD)
        provider.close()
        with pytest.raises((KeyProviderError, SealedError)):
            provider.unwrap(blob, aad=AAD)
        with pytest.raises((KeyProviderError, SealedError)):
            provider.wrap(KEYRING, aad=AAD)
