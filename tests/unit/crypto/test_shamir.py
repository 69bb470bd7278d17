"""Shamir sharing over GF(2^8): any threshold of shares rebuilds, fewer do not."""

from __future__ import annotations

import itertools
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kustos.crypto import shamir


@given(secret=st.binary(min_size=1, max_size=64), parts=st.integers(2, 8), data=st.data())
@settings(max_examples=50, deadline=None)
def test_any_threshold_subset_rebuilds(secret: bytes, parts: int, data: st.DataObject) -> None:
    threshold = data.draw(st.integers(2, parts))
    shares = shamir.split(secret, parts, threshold)
    assert all(len(s) == len(secret) + 1 for s in shares)
    subset = data.draw(st.permutations(shares))[:threshold]
    assert shamir.combine(subset) == secret


def test_fewer_than_threshold_gives_a_different_secret() -> None:
    secret = secrets.token_bytes(32)
    shares = shamir.split(secret, 5, 3)
    for pair in itertools.combinations(shares, 2):
        assert shamir.combine(list(pair)) != secret


def test_known_vector_from_fixed_polynomial() -> None:
    # Secret 0x2a, polynomial 0x2a + 0x07*x, shares at x = 1 and 2.
    # f(1) = 0x2a ^ 0x07 = 0x2d; f(2) = 0x2a ^ (0x07*2 = 0x0e) = 0x24.
    assert shamir.combine([bytes([0x2D, 1]), bytes([0x24, 2])]) == bytes([0x2A])


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ([b"\x01\x02"], "at least two"),
        ([b"\x01\x02", b"\x01\x02\x03"], "same length"),
        ([b"\x01\x02", b"\x03\x02"], "distinct"),
    ],
)
def test_bad_shares_are_rejected(shares: list[bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shamir.combine(shares)
