"""The ``transit`` backend: seeds wrapped by a Kustos (or Vault) server's transit key.

One ``encrypt``/``decrypt`` call to the server per wrap/unwrap, over one kept
connection, with a token obtained once (given, or by AppRole or Kubernetes
login) and renewed by logging in again only when the server refuses it. The
key id is ``transit:<mount>/<key>:v<version>``: rotating the key on the
server (``kustos transit rotate``) changes it, and the API server notices at
its next ``Status`` call. Older versions keep decrypting as long as the
server's ``min_decryption_version`` allows.

The ciphertext stored by the API server is the server's ``vault:vN:...``
string; unwrapping checks that its version is the one the key id names.
The token needs ``update`` on ``<mount>/encrypt/<key>`` and
``<mount>/decrypt/<key>`` and ``read`` on ``<mount>/keys/<key>``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

from kustos.client import KustosClient, ServerUnreachableError
from kustos.errors import (
    DecryptionError,
    InvalidRequestError,
    KeyProviderError,
    KustosError,
    NotFoundError,
    PermissionDeniedError,
)
from kustos.kmsplugin.backends.base import (
    ANNOTATION_BACKEND,
    ANNOTATION_FORMAT,
    FORMAT,
    BackendStatus,
    Wrapped,
)

__all__ = ["Login", "TransitBackend"]

Login = Callable[[KustosClient], None]
"""Logs ``client`` in (sets its token); called at start and when the token is refused."""

_T = TypeVar("_T")
_VERSION: Final = re.compile(r"vault:v(\d+):")


class TransitBackend:
    """Wraps with ``<mount>/encrypt/<key>``, unwraps with ``<mount>/decrypt/<key>``."""

    def __init__(
        self, client: KustosClient, *, key: str, mount: str = "transit", login: Login | None = None
    ) -> None:
        self._client = client
        self._key = key
        self._mount = mount.strip("/")
        self._login = login
        self._login_lock = threading.Lock()
        self._prefix = f"transit:{self._mount}/{key}:v"
        self._annotations = {ANNOTATION_FORMAT: FORMAT, ANNOTATION_BACKEND: b"transit"}
        if login is not None:
            self._relogin()
        self._key_id = self._read_key_id()

    @property
    def name(self) -> str:
        return "transit"

    def _read_key_id(self) -> str:
        info = self._call(lambda: self._client.transit.read_key(self._key, mount_point=self._mount))
        return f"{self._prefix}{int(info.get('latest_version', 1))}"

    def status(self) -> BackendStatus:
        try:
            self._key_id = self._read_key_id()
        except KustosError as exc:
            return BackendStatus(self._key_id, f"transit backend unavailable: {exc}")
        return BackendStatus(self._key_id)

    def encrypt(self, plaintext: bytes) -> Wrapped:
        answer = self._call(
            lambda: self._client.transit.encrypt_data(self._key, plaintext, mount_point=self._mount)
        )
        key_id = f"{self._prefix}{int(answer['key_version'])}"
        return Wrapped(answer["ciphertext"].encode("ascii"), key_id, dict(self._annotations))

    def decrypt(self, ciphertext: bytes, *, key_id: str, annotations: Mapping[str, bytes]) -> bytes:
        if not key_id.startswith(self._prefix):
            raise NotFoundError(f"the transit backend has no key {key_id!r}")
        if annotations.get(ANNOTATION_FORMAT, FORMAT) != FORMAT:
            raise DecryptionError()
        try:
            text = ciphertext.decode("ascii")
        except UnicodeDecodeError:
            raise DecryptionError() from None
        match = _VERSION.match(text)
        if match is None or f"{self._prefix}{match.group(1)}" != key_id:
            raise DecryptionError()
        try:
            plain = self._call(
                lambda: self._client.transit.decrypt_data(self._key, text, mount_point=self._mount)
            )
        except InvalidRequestError:
            raise DecryptionError() from None
        return plain.reveal()

    def close(self) -> None:
        self._client.close()

    def _call(self, operation: Callable[[], _T]) -> _T:
        """Run one request; log in again once if the token was refused; outages → KeyProviderError."""
        try:
            try:
                return operation()
            except PermissionDeniedError:
                if self._login is None:
                    raise
                self._relogin()
                return operation()
        except ServerUnreachableError as exc:
            raise KeyProviderError(str(exc)) from None

    def _relogin(self) -> None:
        login = self._login
        if login is None:
            return
        with self._login_lock:
            try:
                login(self._client)
            except ServerUnreachableError as exc:
                raise KeyProviderError(str(exc)) from None
