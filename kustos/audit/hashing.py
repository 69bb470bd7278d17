"""The two kinds of hashing in an audit entry: HMAC of values, and the hash chain between entries.

* **Values** in request and response bodies are replaced by
  ``hmac-sha256:<hex>``, keyed with the device's secret key, so the file never
  holds a secret, yet an operator who knows a value can find it: ask the
  server for its HMAC (``sys/audit-hash``, :func:`hash_value`) and grep.
* **Entries** are chained: each carries ``prev_hash`` (the hash of the entry
  before it) and ``hash``, the SHA-256 of its own canonical JSON without
  ``hash`` and ``mac``. ``mac`` is an HMAC of ``hash`` with the device key, so
  whoever holds the key can also detect a file rewritten from scratch.

Canonical JSON is orjson with sorted keys and no whitespace; the writer emits
exactly these bytes, and the verifier insists on them.

Speed: a device hashes about ten values per API call. :class:`ValueHasher`
computes HMAC-SHA256 as RFC 2104 defines it from two SHA-256 states keyed
once (inner and outer pad) and copied per value: the same bytes as
:func:`hash_value` (:mod:`hmac`), at about half the cost per value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping
from typing import Any, Final

import orjson

from kustos.sensitive import Sensitive

__all__ = [
    "CHAIN_PREFIX",
    "GENESIS_PREV_HASH",
    "HMAC_PREFIX",
    "ValueHasher",
    "canonical_json",
    "chain_mac",
    "entry_hash",
    "hash_structure",
    "hash_value",
    "key_check",
]

HMAC_PREFIX: Final = "hmac-sha256:"
_HMAC_PREFIX_BYTES: Final = HMAC_PREFIX.encode()
CHAIN_PREFIX: Final = "sha256:"
#: ``prev_hash`` of the genesis entry that opens every audit file.
GENESIS_PREV_HASH: Final = CHAIN_PREFIX + "0" * 64

_CHAIN_MAC_CONTEXT: Final = b"kustos-audit-chain\x00"
_KEY_CHECK_VALUE: Final = "kustos-audit-key-check"
_SHA256_BLOCK: Final = 64


def hash_value(key: Sensitive[bytes], value: str | bytes) -> str:
    """Return ``hmac-sha256:<hex>`` of ``value`` (UTF-8) under ``key``: what ``sys/audit-hash`` answers."""
    data = value.encode() if isinstance(value, str) else value
    return HMAC_PREFIX + hmac.new(key.reveal(), data, hashlib.sha256).hexdigest()


def key_check(key: Sensitive[bytes]) -> str:
    """A fingerprint of ``key`` stored in the genesis entry, to refuse reopening a file with another key."""
    return hash_value(key, _KEY_CHECK_VALUE)


def _scalar_text(value: int | float) -> str:
    return orjson.dumps(value).decode()


class ValueHasher:
    """:func:`hash_value`, :func:`hash_structure` and :func:`chain_mac` under one key, keyed once.

    Holds keyed HMAC objects (never shows them: the repr names nothing).
    """

    __slots__ = ("_chain", "_inner", "_outer")

    def __init__(self, key: Sensitive[bytes]) -> None:
        secret = key.reveal()
        if len(secret) > _SHA256_BLOCK:
            secret = hashlib.sha256(secret).digest()
        padded = secret.ljust(_SHA256_BLOCK, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
        self._chain = self._inner.copy()
        self._chain.update(_CHAIN_MAC_CONTEXT)

    def value(self, value: str | bytes) -> str:
        """``hmac-sha256:<hex>`` of ``value`` (UTF-8), as :func:`hash_value`."""
        inner = self._inner.copy()
        inner.update(value.encode() if isinstance(value, str) else value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return HMAC_PREFIX + outer.hexdigest()

    def chain_mac(self, chained_hash: str) -> str:
        """As :func:`chain_mac`."""
        return self.chain_mac_bytes(chained_hash.encode()).decode()

    def chain_mac_bytes(self, chained_hash: bytes) -> bytes:
        """:meth:`chain_mac` of the UTF-8 ``chained_hash``, as UTF-8 (for a device building bytes)."""
        inner = self._chain.copy()
        inner.update(chained_hash)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return _HMAC_PREFIX_BYTES + outer.hexdigest().encode()

    def structure(self, value: Any, clear_keys: Collection[str] = ()) -> Any:
        """As :func:`hash_structure`."""
        kind = value.__class__
        if kind is str:  # fast paths for what JSON bodies hold; the checks below decide the rest
            return self.value(value)
        if kind is dict:
            structure = self.structure
            if not clear_keys:  # strings hashed inline: most values of a JSON body are
                hashed = self.value
                return {
                    (k if k.__class__ is str else str(k)): (
                        hashed(v) if v.__class__ is str else structure(v)
                    )
                    for k, v in value.items()
                }
            return {
                str(k): (
                    v
                    if str(k) in clear_keys and not isinstance(v, Sensitive)
                    else structure(v, clear_keys)
                )
                for k, v in value.items()
            }
        if value is None or kind is bool:
            return value
        if kind is int:
            return self.value(_scalar_text(value))
        if isinstance(value, str | bytes):
            return self.value(value)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return self.value(_scalar_text(value))
        if isinstance(value, Sensitive):
            return self.value(value.reveal())
        if isinstance(
            value, orjson.Fragment
        ):  # pre-encoded JSON (a KV read's value): hash what it holds
            return self.structure(orjson.loads(orjson.dumps(value)), clear_keys)
        if isinstance(value, Mapping):
            structure = self.structure
            return {
                str(k): (
                    v
                    if clear_keys and str(k) in clear_keys and not isinstance(v, Sensitive)
                    else structure(v, clear_keys)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.structure(v, clear_keys) for v in value]
        return self.value(str(value))

    def __repr__(self) -> str:
        return "ValueHasher(<keyed>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("ValueHasher holds a key and cannot be pickled")


def hash_structure(key: Sensitive[bytes], value: Any, *, clear_keys: Collection[str] = ()) -> Any:
    """Return a copy of ``value`` with every string and number replaced by its HMAC.

    Mapping keys stay readable (as in Vault); so do booleans and ``null``.
    Numbers are hashed too (as their JSON text), unlike Vault, because a PIN
    or port sent as a number is still a secret. Values under a key listed in
    ``clear_keys`` (at any depth) are kept as they are. (Many calls under one
    key: use :class:`ValueHasher`.)
    """
    return ValueHasher(key).structure(value, clear_keys)


def canonical_json(value: Any) -> bytes:
    """The one byte form of an entry: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the entry's canonical JSON without its ``hash`` and ``mac`` fields."""
    body = {k: v for k, v in entry.items() if k not in {"hash", "mac"}}
    return CHAIN_PREFIX + hashlib.sha256(canonical_json(body)).hexdigest()


def chain_mac(key: Sensitive[bytes], chained_hash: str) -> str:
    """HMAC of an entry's ``hash`` under the device key (domain-separated from value HMACs)."""
    return (
        HMAC_PREFIX
        + hmac.new(
            key.reveal(), _CHAIN_MAC_CONTEXT + chained_hash.encode(), hashlib.sha256
        ).hexdigest()
    )
