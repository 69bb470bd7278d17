"""A KMS backend over :class:`~kustos.keys.KeyProvider` s: one provider per key, newest first.

The ``local``, ``pkcs11`` and ``aws`` backends are this class with providers
from ``kustos.keys.providers`` (a key file, an HSM key, an AWS KMS key). Like
MultiFernet, the first key wraps and every key unwraps: rotating is putting
a new key first and keeping the old ones listed until nothing needs them
(``kustos cluster rewrite-secrets`` re-encrypts everything under the new one).

Each seed is wrapped with associated data naming the key id (:func:`seed_aad`),
so a ciphertext presented with another key id does not open. ``status`` runs
a wrap and unwrap of a random probe through the current key: for an HSM or
AWS KMS that is the one check that the key is usable right now.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping, Sequence
from typing import Final

from kustos.errors import (
    ConfigError,
    DecryptionError,
    KeyProviderError,
    KustosError,
    NotFoundError,
    SealedError,
)
from kustos.keys import KeyProvider
from kustos.kmsplugin.backends.base import (
    ANNOTATION_BACKEND,
    ANNOTATION_FORMAT,
    FORMAT,
    BackendStatus,
    Wrapped,
    seed_aad,
)

__all__ = ["KeyedBackend"]

_PROBE_AAD: Final = b"kustos/kmsplugin/probe"


class KeyedBackend:
    """Wraps with the first ``(key_id, provider)`` pair, unwraps with the one named by ``key_id``."""

    def __init__(self, name: str, keys: Sequence[tuple[str, KeyProvider]]) -> None:
        if not keys:
            raise ConfigError(f"the {name} backend needs at least one key")
        ids = [key_id for key_id, _ in keys]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"the {name} backend was given the same key twice")
        self._name = name
        self._lock = threading.Lock()
        self._keys: dict[str, KeyProvider] = dict(keys)
        self._current = ids[0]
        self._annotations = {ANNOTATION_FORMAT: FORMAT, ANNOTATION_BACKEND: name.encode()}

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_ids(self) -> list[str]:
        """Every key this backend can unwrap with, the current one first."""
        with self._lock:
            return [self._current, *(k for k in self._keys if k != self._current)]

    def _set_current(self, key_id: str, provider: KeyProvider) -> None:
        """Make ``provider`` (known as ``key_id``) the wrapping key; the old one still unwraps."""
        with self._lock:
            self._keys.setdefault(key_id, provider)
            self._current = key_id

    def _provider(self, key_id: str) -> KeyProvider | None:
        with self._lock:
            return self._keys.get(key_id)

    def _current_provider(self) -> tuple[str, KeyProvider]:
        key_id = self.key_ids[0]
        provider = self._provider(key_id)
        if provider is None:
            raise KeyProviderError(f"the {self._name} backend was closed")
        return key_id, provider

    def status(self) -> BackendStatus:
        key_id, provider = self._current_provider()
        probe = secrets.token_bytes(32)
        try:
            if provider.unwrap(provider.wrap(probe, aad=_PROBE_AAD), aad=_PROBE_AAD) != probe:
                return BackendStatus(key_id, f"{self._name} backend: probe did not round-trip")
        except (KeyProviderError, SealedError, DecryptionError) as exc:
            return BackendStatus(key_id, f"{self._name} backend unavailable: {exc}")
        return BackendStatus(key_id)

    def encrypt(self, plaintext: bytes) -> Wrapped:
        key_id, provider = self._current_provider()
        blob = provider.wrap(plaintext, aad=seed_aad(key_id))
        return Wrapped(blob, key_id, dict(self._annotations))

    def decrypt(self, ciphertext: bytes, *, key_id: str, annotations: Mapping[str, bytes]) -> bytes:
        if annotations.get(ANNOTATION_FORMAT, FORMAT) != FORMAT:
            raise DecryptionError()
        provider = self._provider(key_id) or self._unknown(key_id)
        return provider.unwrap(ciphertext, aad=seed_aad(key_id))

    def _unknown(self, key_id: str) -> KeyProvider:
        """A provider for a key id not configured (none by default: the key is unknown)."""
        raise NotFoundError(
            f"the {self._name} backend has no key {key_id!r}; "
            "keep every key still in use listed after the current one"
        )

    def close(self) -> None:
        with self._lock:
            providers, self._keys = list(self._keys.values()), {}
        for provider in providers:
            try:
                provider.close()
            except KustosError:
                pass
