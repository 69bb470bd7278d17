"""Sealing keys for the unit tests, generated once per session (RSA-4096 takes ~0.5 s each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kustos.crypto.sealing import SealingKeyPair, generate_sealing_key

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def key4096() -> SealingKeyPair:
    """The production-sized key: ciphertexts start ``AgA``."""
    return generate_sealing_key(now=NOW - timedelta(days=1))


@pytest.fixture(scope="session")
def key_a() -> SealingKeyPair:
    return generate_sealing_key(now=NOW - timedelta(days=1), bits=2048)


@pytest.fixture(scope="session")
def key_b() -> SealingKeyPair:
    return generate_sealing_key(now=NOW - timedelta(days=1), bits=2048)
