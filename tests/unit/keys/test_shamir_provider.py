"""The Shamir key provider: sealed until t valid, distinct shares; bad shares are named and not counted."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from kustos.config import KeyProviderConfig
from kustos.errors import ConfigError, InvalidRequestError, SealedError
from kustos.keys import open_provider
from kustos.keys.providers.shamir import ShamirConfig, ShamirKeyProvider, UnsealProgress
from tests.unit.keys.provider_contract import AAD, KEYRING, KeyProviderContract


def unsealed(shares: int = 3, threshold: int = 2) -> ShamirKeyProvider:
    provider = ShamirKeyProvider()
    provider.initialize(shares=shares, threshold=threshold)
    return provider


class TestShamirContract(KeyProviderContract):
    @pytest.fixture
    def provider(self) -> Iterator[ShamirKeyProvider]:
        p = unsealed()
        yield p
        p.close()

    @pytest.fixture
    def other_provider(self) -> ShamirKeyProvider:
        return unsealed()


@pytest.fixture
def initialized() -> tuple[list[str], ShamirConfig, bytes]:
    """A 3-of-5 setup: the shares, the stored config (through JSON) and a keyring wrapped at init."""
    provider = ShamirKeyProvider()
    shares, config = provider.initialize(shares=5, threshold=3)
    blob = provider.wrap(KEYRING, aad=AAD)
    provider.seal()
    stored = json.loads(json.dumps(config.to_dict()))
    return shares, ShamirConfig.from_dict(stored), blob


def test_starts_sealed() -> None:
    provider = ShamirKeyProvider()
    assert provider.sealed is True
    with pytest.raises(SealedError, match="sealed"):
        provider.wrap(b"x", aad=b"")
    with pytest.raises(SealedError):
        provider.unwrap(b"x" * 40, aad=b"")
    assert open_provider(KeyProviderConfig(kind="shamir")).sealed is True


def test_initialize_returns_shares_once_and_a_public_config() -> None:
    provider = ShamirKeyProvider()
    shares, config = provider.initialize(shares=5, threshold=3)
    assert len(shares) == 5 and len(set(shares)) == 5
    assert all(len(base64.b64decode(s, validate=True)) == 33 for s in shares)
    assert (config.shares, config.threshold) == (5, 3)
    stored = json.dumps(config.to_dict())
    assert all(s not in stored for s in shares)
    assert set(config.to_dict()) == {"type", "shares", "threshold", "share_verifiers", "key_check"}
    assert provider.sealed is False  # holds the new root key so the caller can wrap a fresh keyring


def test_three_of_five_two_leave_it_sealed_the_third_unseals(
    initialized: tuple[list[str], ShamirConfig, bytes],
) -> None:
    shares, config, blob = initialized
    provider = ShamirKeyProvider()  # a restarted process
    assert provider.submit(shares[4], config) == UnsealProgress(
        sealed=True, progress=1, threshold=3, shares=5
    )
    assert provider.submit(shares[1], config) == UnsealProgress(
        sealed=True, progress=2, threshold=3, shares=5
    )
    assert provider.sealed is True
    with pytest.raises(SealedError):
        provider.unwrap(blob, aad=AAD)
    assert provider.submit(shares[2], config) == UnsealProgress(
        sealed=False, progress=0, threshold=3, shares=5
    )
    assert provider.sealed is False
    assert provider.unwrap(blob, aad=AAD) == KEYRING
    # already unsealed: another share changes nothing
    assert provider.submit(shares[0], config).sealed is False


def test_every_three_share_subset_unseals(
    initialized: tuple[list[str], ShamirConfig, bytes],
) -> None:
    import itertools

    shares, config, blob = initialized
    for subset in itertools.combinations(shares, 3):
        provider = ShamirKeyProvider()
        for share in subset:
            progress = provider.submit(share, config)
        assert progress.sealed is False
        assert provider.unwrap(blob, aad=AAD) == KEYRING


def test_wrong_share_is_rejected_and_not_counted(
    initialized: tuple[list[str], ShamirConfig, bytes],
) -> None:
    shares, config, blob = initialized
    foreign, _ = ShamirKeyProvider().initialize(shares=5, threshold=3)
    provider = ShamirKeyProvider()
    provider.submit(shares[0], config)
    with pytest.raises(InvalidRequestError, match="not one of this server's key shares"):
        provider.submit(foreign[0], config)
    tweaked = bytearray(base64.b64decode(shares[1]))
    tweaked[0] ^= 1
    with pytest.raises(InvalidRequestError, match="not one of this server's key shares"):
        provider.submit(base64.b64encode(bytes(tweaked)).decode(), config)
    assert provider.status(config) == UnsealProgress(sealed=True, progress=1, threshold=3, shares=5)
    provider.submit(shares[1], config)
    assert provider.submit(shares[2], config).sealed is False
    assert provider.unwrap(blob, aad=AAD) == KEYRING


def test_duplicate_share_is_rejected(initialized: tuple[list[str], ShamirConfig, bytes]) -> None:
    shares, config, _ = initialized
    provider = ShamirKeyProvider()
    provider.submit(shares[0], config)
    with pytest.raises(InvalidRequestError, match=r"already submitted \(progress 1/3\)"):
        provider.submit(shares[0], config)
    # the same share in hex is the same share
    with pytest.raises(InvalidRequestError, match="already submitted"):
        provider.submit(base64.b64decode(shares[0]).hex(), config)
    assert provider.progress == 1


@pytest.mark.parametrize(
    ("share", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not a share!", "neither base64 nor hex"),
        (base64.b64encode(b"x" * 16).decode(), "expected 33 bytes, got 16"),
        ("ab" * 41, "expected 33 bytes, got 41"),
    ],
)
def test_malformed_share_is_rejected(
    initialized: tuple[list[str], ShamirConfig, bytes], share: str, problem: str
) -> None:
    _, config, _ = initialized
    provider = ShamirKeyProvider()
    with pytest.raises(InvalidRequestError, match=f"malformed unseal share: {problem}"):
        provider.submit(share, config)
    assert provider.progress == 0


def test_hex_shares_are_accepted(initialized: tuple[list[str], ShamirConfig, bytes]) -> None:
    shares, config, blob = initialized
    provider = ShamirKeyProvider()
    for share in shares[:3]:
        provider.submit(base64.b64decode(share).hex().upper(), config)
    assert provider.unwrap(blob, aad=AAD) == KEYRING


def test_reset_and_seal(initialized: tuple[list[str], ShamirConfig, bytes]) -> None:
    shares, config, blob = initialized
    provider = ShamirKeyProvider()
    provider.submit(shares[0], config)
    provider.submit(shares[1], config)
    provider.reset()
    assert provider.status(config).progress == 0
    provider.submit(shares[0], config)  # not a duplicate any more
    provider.submit(shares[1], config)
    assert provider.submit(shares[2], config).sealed is False
    provider.seal()
    assert provider.sealed is True
    assert provider.status(config) == UnsealProgress(sealed=True, progress=0, threshold=3, shares=5)
    with pytest.raises(SealedError):
        provider.unwrap(blob, aad=AAD)


def test_one_of_one(initialized: tuple[list[str], ShamirConfig, bytes]) -> None:
    provider = ShamirKeyProvider()
    shares, config = provider.initialize(shares=1, threshold=1)
    blob = provider.wrap(KEYRING, aad=AAD)
    restarted = ShamirKeyProvider()
    assert restarted.submit(shares[0], config).sealed is False
    assert restarted.unwrap(blob, aad=AAD) == KEYRING


@pytest.mark.parametrize(
    ("shares", "threshold", "problem"),
    [
        (0, 1, "secret_shares must be between 1 and 255, got 0"),
        (256, 3, "secret_shares must be between 1 and 255, got 256"),
        (3, 4, r"secret_threshold must be between 1 and secret_shares \(3\), got 4"),
        (3, 0, "got 0"),
        (5, 1, "greater than one"),
    ],
)
def test_initialize_validates_counts(shares: int, threshold: int, problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem):
        ShamirKeyProvider().initialize(shares=shares, threshold=threshold)


def test_injected_randomness_makes_initialize_reproducible() -> None:
    def counter() -> object:
        state = {"n": 0}

        def randbytes(n: int) -> bytes:
            out = bytes((state["n"] + i) % 251 + 1 for i in range(n))
            state["n"] += n
            return out

        return randbytes

    a = ShamirKeyProvider(randbytes=counter()).initialize(shares=3, threshold=2)  # type: ignore[arg-type]
    b = ShamirKeyProvider(randbytes=counter()).initialize(shares=3, threshold=2)  # type: ignore[arg-type]
    assert a == b


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("key_check"),
        lambda d: d.update(type="pkcs11"),
        lambda d: d.update(threshold=9),
        lambda d: d.update(shares="5"),
        lambda d: d["share_verifiers"].pop(),
        lambda d: d["share_verifiers"][0].update(sha256="zz"),
    ],
)
def test_malformed_stored_config_is_a_config_error(
    initialized: tuple[list[str], ShamirConfig, bytes], mutate: object
) -> None:
    _, config, _ = initialized
    data = json.loads(json.dumps(config.to_dict()))
    assert callable(mutate)
    mutate(data)
    with pytest.raises(ConfigError, match="stored Shamir configuration is malformed"):
        ShamirConfig.from_dict(data)


def test_repr_shows_no_key_or_share(initialized: tuple[list[str], ShamirConfig, bytes]) -> None:
    shares, config, _ = initialized
    provider = ShamirKeyProvider()
    provider.submit(shares[0], config)
    assert repr(provider) == "ShamirKeyProvider(sealed=True, progress=1)"
    assert shares[0] not in repr(provider._pending)
