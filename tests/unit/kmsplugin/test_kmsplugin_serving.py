"""The KMS v2 gRPC service in-process over a real unix socket, with the local backend.

The plugin's own client (what the API server sends) drives it: status, wrap
and unwrap, rotation (new key first, old still unwraps), the errors the API
server sees, and the socket file's handling.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kustos.errors import ConfigError, DecryptionError, InvalidRequestError, NotFoundError
from kustos.kmsplugin import BackendConfig, KmsBackend, open_backend
from kustos.kmsplugin.backends.base import ANNOTATION_FORMAT
from kustos.kmsplugin.backends.keyed import KeyedBackend
from kustos.kmsplugin.clients import KmsPluginClient
from kustos.kmsplugin.serving import parse_listen, serve

SEED = b"\x42" * 32


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory under /tmp: unix socket paths must stay under 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="kms-", dir="/tmp") as name:
        yield Path(name)


class Running:
    def __init__(self, backend: KmsBackend, path: Path) -> None:
        self.backend, self.path = backend, path
        self.stop = threading.Event()
        ready = threading.Event()
        self.errors: list[BaseException] = []

        def run() -> None:
            try:
                serve(backend, socket_path=path, stop=self.stop, on_ready=ready.set, grace=0.5)
            except BaseException as exc:
                self.errors.append(exc)
                ready.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)
        if self.errors:
            raise self.errors[0]
        self.client = KmsPluginClient(path)

    def close(self) -> None:
        self.client.close()
        self.stop.set()
        self.thread.join(10)
        self.backend.close()


def start(short_dir: Path, *key_files: str) -> Running:
    backend = open_backend(
        BackendConfig(kind="local", key_files=tuple(short_dir / f for f in key_files))
    )
    return Running(backend, short_dir / "kms.sock")


def test_status_wrap_and_unwrap(short_dir: Path) -> None:
    plugin = start(short_dir, "k1.key")
    try:
        version, status = plugin.client.status()
        assert version == "v2" and status.healthz == "ok"
        assert status.key_id.startswith("local:") and len(status.key_id) == len("local:") + 32
        wrapped = plugin.client.encrypt(SEED)
        assert wrapped.key_id == status.key_id
        assert SEED not in wrapped.ciphertext and len(wrapped.ciphertext) < 1024
        assert all("." in key and "/" not in key for key in wrapped.annotations)
        assert plugin.client.encrypt(SEED).ciphertext != wrapped.ciphertext
        got = plugin.client.decrypt(
            wrapped.ciphertext, key_id=wrapped.key_id, annotations=wrapped.annotations
        )
        assert got == SEED
        mode = stat.S_IMODE(os.stat(plugin.path).st_mode)
        assert mode & 0o077 == 0
    finally:
        plugin.close()
    assert not plugin.path.exists()


def test_rotation_new_key_first_old_still_unwraps(short_dir: Path) -> None:
    first = start(short_dir, "k1.key")
    try:
        old = first.client.encrypt(SEED)
    finally:
        first.close()
    second = start(short_dir, "k2.key", "k1.key")
    try:
        _, status = second.client.status()
        assert status.key_id != old.key_id
        new = second.client.encrypt(SEED)
        assert new.key_id == status.key_id
        assert second.client.decrypt(old.ciphertext, key_id=old.key_id, annotations={}) == SEED
        assert second.client.decrypt(new.ciphertext, key_id=new.key_id, annotations={}) == SEED
    finally:
        second.close()
    only_new = start(short_dir, "k2.key")
    try:
        with pytest.raises(NotFoundError, match="no key"):
            only_new.client.decrypt(old.ciphertext, key_id=old.key_id, annotations={})
    finally:
        only_new.close()


def test_what_the_api_server_sees_when_something_is_wrong(short_dir: Path) -> None:
    plugin = start(short_dir, "k1.key", "k2.key")
    try:
        wrapped = plugin.client.encrypt(SEED)
        assert isinstance(plugin.backend, KeyedBackend)
        other_key = plugin.backend.key_ids[1]
        tampered = bytes([wrapped.ciphertext[0] ^ 1]) + wrapped.ciphertext[1:]
        with pytest.raises(DecryptionError):
            plugin.client.decrypt(tampered, key_id=wrapped.key_id, annotations={})
        # the ciphertext is bound to the key id it was made under
        with pytest.raises(DecryptionError):
            plugin.client.decrypt(wrapped.ciphertext, key_id=other_key, annotations={})
        with pytest.raises(DecryptionError):
            plugin.client.decrypt(
                wrapped.ciphertext, key_id=wrapped.key_id, annotations={ANNOTATION_FORMAT: b"9"}
            )
        with pytest.raises(InvalidRequestError, match="plaintext must be"):
            plugin.client.encrypt(b"")
        with pytest.raises(InvalidRequestError, match="required"):
            plugin.client.decrypt(b"", key_id=wrapped.key_id, annotations={})
    finally:
        plugin.close()


def test_no_plaintext_in_logs(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kustos.kmsplugin")
    secret = b"plaintext-seed-never-logged-1234"
    plugin = start(short_dir, "k1.key")
    try:
        wrapped = plugin.client.encrypt(secret)
        plugin.client.decrypt(wrapped.ciphertext, key_id=wrapped.key_id, annotations={})
        plugin.client.status()
    finally:
        plugin.close()
    text = caplog.text
    assert "encrypt uid=" in text and "decrypt uid=" in text
    assert secret.decode() not in text and secret.hex() not in text


def test_a_stale_socket_is_replaced_a_live_one_refused(short_dir: Path) -> None:
    path = short_dir / "kms.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed plugin leaves
    plugin = start(short_dir, "k1.key")
    try:
        assert plugin.client.status()[1].healthy
        with pytest.raises(ConfigError, match="already listening"):
            start(short_dir, "k1.key")
    finally:
        plugin.close()
    path.write_text("not a socket")
    with pytest.raises(ConfigError, match="not a socket"):
        start(short_dir, "k1.key")


def test_listen_addresses() -> None:
    assert parse_listen("unix:///tmp/a/kms.sock") == Path("/tmp/a/kms.sock")
    assert parse_listen("unix:/tmp/kms.sock") == Path("/tmp/kms.sock")
    assert parse_listen("/tmp/kms.sock") == Path("/tmp/kms.sock")
    with pytest.raises(ConfigError, match="unix socket"):
        parse_listen("tcp://127.0.0.1:9000")
    with pytest.raises(ConfigError, match="too long"):
        parse_listen("unix:///tmp/" + "x" * 120)


def test_backend_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--key-file"):
        open_backend(BackendConfig(kind="local"))
    with pytest.raises(ConfigError, match="--pkcs11-module"):
        open_backend(BackendConfig(kind="pkcs11", key_labels=("a",)))
    with pytest.raises(ConfigError, match="--address"):
        open_backend(BackendConfig(kind="transit"))
    with pytest.raises(ConfigError, match="unknown KMS plugin backend"):
        open_backend(BackendConfig(kind="vault"))
    with pytest.raises(ConfigError, match="same key twice"):
        open_backend(
            BackendConfig(kind="local", key_files=(tmp_path / "a.key", tmp_path / "a.key"))
        )
