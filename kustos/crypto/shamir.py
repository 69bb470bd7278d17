"""Shamir's secret sharing over GF(2^8), in the byte format of Vault and sops.

Vault's ``shamir`` package (which sops reuses for key groups) splits a secret
byte by byte: each byte is the constant term of a random polynomial of degree
``threshold - 1`` over GF(2^8) with the AES polynomial (x^8+x^4+x^3+x+1). A
share is the polynomial values for every byte followed by one byte, the
x-coordinate (never 0). So a share is ``len(secret) + 1`` bytes, x last.

Guarantees: any ``threshold`` distinct shares rebuild the secret; fewer reveal
nothing about it. Limits: shares carry no integrity check: a wrong share gives
a wrong secret without error, so callers must verify the result (for example
by decrypting something with it). At most 255 shares.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

__all__ = ["combine", "split"]

_EXP = [0] * 512
_LOG = [0] * 256


def _init_tables() -> None:
    x = 1
    for i in range(255):
        _EXP[i] = x
        _LOG[x] = i
        # multiply by the generator 3 in GF(2^8)
        y = x << 1
        if y & 0x100:
            y ^= 0x11B
        x ^= y
    for i in range(255, 512):
        _EXP[i] = _EXP[i - 255]


_init_tables()


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(2^8)")
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for c in reversed(coefficients):
        result = _mul(result, x) ^ c
    return result


def split(
    secret: bytes,
    parts: int,
    threshold: int,
    *,
    randbytes: Callable[[int], bytes] = secrets.token_bytes,
) -> list[bytes]:
    """Split ``secret`` into ``parts`` shares, any ``threshold`` of which rebuild it."""
    if not secret:
        raise ValueError("cannot split an empty secret")
    if not 2 <= threshold <= parts <= 255:
        raise ValueError("need 2 <= threshold <= parts <= 255")
    # Distinct random x-coordinates in 1..255, as Vault does.
    xs: list[int] = []
    while len(xs) < parts:
        candidate = randbytes(1)[0]
        if candidate != 0 and candidate not in xs:
            xs.append(candidate)
    shares = [bytearray(len(secret) + 1) for _ in range(parts)]
    for i, x in enumerate(xs):
        shares[i][-1] = x
    for byte_index, byte in enumerate(secret):
        coefficients = [byte, *randbytes(threshold - 1)]
        for i, x in enumerate(xs):
            shares[i][byte_index] = _evaluate(coefficients, x)
    return [bytes(s) for s in shares]


def combine(shares: Sequence[bytes]) -> bytes:
    """Rebuild the secret from shares (Lagrange interpolation at x = 0)."""
    if len(shares) < 2:
        raise ValueError("at least two shares are needed")
    length = len(shares[0])
    if length < 2 or any(len(s) != length for s in shares):
        raise ValueError("shares must all have the same length (at least 2 bytes)")
    xs = [s[-1] for s in shares]
    if 0 in xs or len(set(xs)) != len(xs):
        raise ValueError("shares must have distinct, non-zero x-coordinates")
    secret = bytearray(length - 1)
    for byte_index in range(length - 1):
        value = 0
        for i, xi in enumerate(xs):
            basis = 1
            for j, xj in enumerate(xs):
                if i != j:
                    basis = _mul(basis, _div(xj, xj ^ xi))
            value ^= _mul(shares[i][byte_index], basis)
        secret[byte_index] = value
    return bytes(secret)
