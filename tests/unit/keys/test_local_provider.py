"""The local key provider: key file created once with mode 0600, refused when too open."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kustos.config import KeyProviderConfig
from kustos.errors import ConfigError, DecryptionError
from kustos.keys import open_provider
from kustos.keys.providers.local import LocalKeyProvider
from tests.unit.keys.provider_contract import AAD, KEYRING, KeyProviderContract


class TestLocalContract(KeyProviderContract):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> Iterator[LocalKeyProvider]:
        p = LocalKeyProvider(tmp_path / "keys" / "root.key")
        yield p
        p.close()

    @pytest.fixture
    def other_provider(self, tmp_path: Path) -> LocalKeyProvider:
        return LocalKeyProvider(tmp_path / "other.key")


def test_creates_the_key_file_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "root.key"
    first = LocalKeyProvider(path)
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    content = path.read_bytes()
    assert content.endswith(b"\n") and len(content) == 45
    assert len(base64.b64decode(content.strip(), validate=True)) == 32
    blob = first.wrap(KEYRING, aad=AAD)
    second = LocalKeyProvider(path)  # a restart reads the same key
    assert path.read_bytes() == content
    assert second.unwrap(blob, aad=AAD) == KEYRING
    assert [p.name for p in tmp_path.joinpath("data").iterdir()] == [
        "root.key"
    ]  # no temp files left


def test_injected_randomness_gives_the_documented_file(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    LocalKeyProvider(path, randbytes=lambda n: bytes(range(n)))
    assert path.read_bytes() == base64.b64encode(bytes(range(32))) + b"\n"


def test_an_existing_file_written_by_hand_is_used(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, base64.b64encode(b"k" * 32))  # no trailing newline is fine
    os.close(fd)
    a = LocalKeyProvider(path)
    b = LocalKeyProvider(path)
    assert b.unwrap(a.wrap(b"x", aad=b""), aad=b"") == b"x"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_refuses_a_key_file_open_to_group_or_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "root.key"
    LocalKeyProvider(path)
    path.chmod(mode)
    with pytest.raises(
        ConfigError, match=rf"accessible by group or others \(mode {mode:04o}\).*chmod 600"
    ):
        LocalKeyProvider(path)


@pytest.mark.parametrize(
    "content", [b"", b"not base64!!\n", base64.b64encode(b"short") + b"\n", b"A" * 2000]
)
def test_refuses_a_key_file_without_a_32_byte_key(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "root.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="does not hold a base64-encoded 32-byte key"):
        LocalKeyProvider(path)


def test_refuses_a_directory_or_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "dir.key").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=r"dir\.key is not a regular file"):
        LocalKeyProvider(tmp_path / "dir.key")
    target = tmp_path / "real.key"
    LocalKeyProvider(target)
    (tmp_path / "link.key").symlink_to(target)
    with pytest.raises(ConfigError, match="cannot open key file"):
        LocalKeyProvider(tmp_path / "link.key")


def test_uncreatable_key_file_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"cannot (open|create) key file .*root.key"):
        LocalKeyProvider(blocker / "root.key")


def test_key_never_in_repr(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    provider = LocalKeyProvider(path)
    key_text = path.read_text().strip()
    assert key_text not in repr(provider)
    assert repr(provider) == f"LocalKeyProvider(key_file={str(path)!r})"


def test_wrapped_blobs_are_bound_to_the_provider_kind(tmp_path: Path) -> None:
    """A local blob is aead.seal(key, ..., aad=context(b"kustos/keys/local", aad)), nothing else."""
    from kustos.crypto import aead

    path = tmp_path / "root.key"
    provider = LocalKeyProvider(path)
    key = base64.b64decode(path.read_bytes())
    with pytest.raises(DecryptionError):
        provider.unwrap(aead.seal(key, KEYRING, aad=AAD), aad=AAD)


def test_open_provider_builds_a_local_provider(tmp_path: Path) -> None:
    provider = open_provider(KeyProviderConfig(kind="local", key_file=tmp_path / "k"))
    assert provider.name == "local"
    assert provider.unwrap(provider.wrap(b"x", aad=b"a"), aad=b"a") == b"x"
    with pytest.raises(ConfigError, match="needs a key file"):
        open_provider(KeyProviderConfig(kind="local"))


def test_open_provider_names_missing_pkcs11_settings() -> None:
    with pytest.raises(ConfigError, match="pkcs11_module, pkcs11_token_label, pkcs11_pin"):
        open_provider(KeyProviderConfig(kind="pkcs11"))
    with pytest.raises(ConfigError, match="unknown key provider 'kms'"):
        open_provider(KeyProviderConfig(kind="kms"))  # type: ignore[arg-type]
