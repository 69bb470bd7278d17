"""The ``pkcs11`` key provider: the root key is an AES-256 key that never leaves an HSM.

Any PKCS#11 module works (a network HSM, a YubiHSM, a cloud HSM client,
SoftHSM2 in the tests). At start the provider logs in to the token with the
given label and PIN and looks for a secret key with ``key_label``; if there is
none it generates one *inside the token*: AES-256, ``CKA_TOKEN`` (persistent),
``CKA_SENSITIVE`` and not ``CKA_EXTRACTABLE``, usable only to encrypt and
decrypt. An existing key that is extractable or not sensitive is refused.

Wrapping runs ``CKM_AES_GCM`` inside the HSM with a 96-bit random nonce and a
128-bit tag. The stored blob is::

    0x01 (format) || nonce (12) || ciphertext || tag (16)

with associated data ``context(b"kustos/keys/pkcs11", b"\\x01", aad)`` (see
:func:`kustos.crypto.envelope.context`). Unwrap failures caused by the data
(wrong ``aad``, tampering, another key) raise
:class:`~kustos.errors.DecryptionError`; a token or session that is gone
raises :class:`~kustos.errors.KeyProviderError` after one reconnect attempt.

Limits: PKCS#11 logs in once per process and token, so a second provider on
a token that is already logged in opens its session without checking the
PIN again. One PKCS#11 session is shared and serialized by a lock (the provider
is called at start and on key rotation only). The PKCS#11 library is loaded
once per process (python-pkcs11 keeps it), so one process talks to one module.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any, Final

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11err
from pkcs11.mechanisms import GCMParams

from kustos.crypto.envelope import context
from kustos.errors import ConfigError, DecryptionError, KeyProviderError
from kustos.sensitive import Sensitive

__all__ = ["Pkcs11KeyProvider"]

_FORMAT: Final = b"\x01"
_LABEL: Final = b"kustos/keys/pkcs11"
_NONCE_SIZE: Final = 12
_TAG_BITS: Final = 128
_MIN_BLOB: Final = len(_FORMAT) + _NONCE_SIZE + _TAG_BITS // 8

_OUTAGES: Final = (
    p11err.DeviceError,
    p11err.DeviceMemory,
    p11err.DeviceRemoved,
    p11err.HostMemory,
    p11err.SessionClosed,
    p11err.SessionHandleInvalid,
    p11err.TokenNotPresent,
    p11err.UserNotLoggedIn,
    p11err.KeyHandleInvalid,
    p11err.ObjectHandleInvalid,
)


class Pkcs11KeyProvider:
    """Wraps and unwraps with AES-256-GCM computed by an HSM, under a key it finds or creates there."""

    def __init__(
        self,
        module: str,
        token_label: str,
        pin: Sensitive[str] | str,
        key_label: str,
        *,
        create_key: bool = True,
        randbytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._module_path = module
        self._token_label = token_label
        self._pin = pin if isinstance(pin, Sensitive) else Sensitive(pin)
        self._key_label = key_label
        self._create_key = create_key
        self._randbytes = randbytes
        self._lock = threading.Lock()
        self._session: Any = None
        self._key: Any = None
        self._closed = False
        with self._lock:
            self._connect()

    @property
    def name(self) -> str:
        return "pkcs11"

    @property
    def sealed(self) -> bool:
        return self._closed

    @property
    def token_label(self) -> str:
        """The label of the token the key lives in."""
        return self._token_label

    @property
    def key_label(self) -> str:
        """The label of the key inside the token."""
        return self._key_label

    def wrap(self, plaintext: bytes, *, aad: bytes) -> bytes:
        nonce = self._randbytes(_NONCE_SIZE)
        params = GCMParams(nonce, context(_LABEL, _FORMAT, aad), _TAG_BITS)
        try:
            sealed = self._call(
                lambda key: key.encrypt(
                    plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            )
        except p11err.PKCS11Error as exc:
            raise KeyProviderError(f"HSM could not encrypt: {type(exc).__name__}") from None
        return _FORMAT + nonce + bytes(sealed)

    def unwrap(self, blob: bytes, *, aad: bytes) -> bytes:
        if len(blob) < _MIN_BLOB or blob[:1] != _FORMAT:
            raise DecryptionError()
        nonce, sealed = blob[1 : 1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE :]
        params = GCMParams(nonce, context(_LABEL, _FORMAT, aad), _TAG_BITS)
        try:
            plain = self._call(
                lambda key: key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            )
        except _OUTAGES as exc:
            raise KeyProviderError(f"HSM unavailable: {type(exc).__name__}") from None
        except p11err.PKCS11Error:
            # SoftHSM2 reports a bad tag as CKR_GENERAL_ERROR, others as CKR_ENCRYPTED_DATA_INVALID
            raise DecryptionError() from None
        return bytes(plain)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._disconnect()

    # -- session handling ---------------------------------------------------------------

    def _call(self, operation: Callable[[Any], Any]) -> Any:
        """Run ``operation(key)`` under the lock; reconnect once if the session was lost."""
        with self._lock:
            if self._closed:
                raise KeyProviderError("the pkcs11 key provider was closed")
            try:
                return operation(self._key)
            except _OUTAGES:
                self._disconnect()
                self._connect()
                return operation(self._key)

    def _connect(self) -> None:
        try:
            library = pkcs11.lib(self._module_path)
        except (OSError, RuntimeError, p11err.PKCS11Error) as exc:
            raise ConfigError(f"cannot load PKCS#11 module {self._module_path}: {exc}") from None
        try:
            token = library.get_token(token_label=self._token_label)
        except p11err.NoSuchToken:
            raise ConfigError(
                f"no PKCS#11 token labelled {self._token_label!r} in {self._module_path}"
            ) from None
        except p11err.MultipleTokensReturned:
            raise ConfigError(
                f"several PKCS#11 tokens are labelled {self._token_label!r}"
            ) from None
        except p11err.PKCS11Error as exc:
            raise KeyProviderError(f"PKCS#11 token lookup failed: {type(exc).__name__}") from None
        try:
            try:
                session = token.open(user_pin=self._pin.reveal(), rw=True)
            except p11err.UserAlreadyLoggedIn:
                # PKCS#11 login is per process: another session (another provider) logged in already
                session = token.open(rw=True)
        except (p11err.PinIncorrect, p11err.PinInvalid, p11err.PinLenRange):
            raise ConfigError(
                f"the PIN for PKCS#11 token {self._token_label!r} was rejected"
            ) from None
        except p11err.PinLocked:
            raise ConfigError(
                f"the PIN for PKCS#11 token {self._token_label!r} is locked"
            ) from None
        except p11err.PKCS11Error as exc:
            raise KeyProviderError(
                f"cannot open a session on token {self._token_label!r}: {type(exc).__name__}"
            ) from None
        try:
            key = self._find_or_create_key(session)
        except BaseException:
            session.close()
            raise
        self._session, self._key = session, key

    def _find_or_create_key(self, session: Any) -> Any:
        where = f"key {self._key_label!r} in token {self._token_label!r}"
        try:
            key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=self._key_label)
        except p11err.MultipleObjectsReturned:
            raise ConfigError(
                f"several secret keys are labelled {self._key_label!r} in token {self._token_label!r}"
            ) from None
        except p11err.NoSuchKey:
            if not self._create_key:
                raise ConfigError(f"{where} does not exist") from None
            try:
                return session.generate_key(
                    KeyType.AES,
                    256,
                    label=self._key_label,
                    store=True,
                    capabilities=0,
                    template={
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.ENCRYPT: True,
                        Attribute.DECRYPT: True,
                        Attribute.WRAP: False,
                        Attribute.UNWRAP: False,
                        Attribute.SIGN: False,
                        Attribute.VERIFY: False,
                        Attribute.DERIVE: False,
                    },
                )
            except p11err.PKCS11Error as exc:
                raise KeyProviderError(f"cannot generate {where}: {type(exc).__name__}") from None
        except p11err.PKCS11Error as exc:
            raise KeyProviderError(f"cannot look up {where}: {type(exc).__name__}") from None
        try:
            key_type, length = key[Attribute.KEY_TYPE], key[Attribute.VALUE_LEN]
            sensitive, extractable = key[Attribute.SENSITIVE], key[Attribute.EXTRACTABLE]
        except p11err.PKCS11Error as exc:
            raise KeyProviderError(
                f"cannot read the attributes of {where}: {type(exc).__name__}"
            ) from None
        if key_type != KeyType.AES or length != 32:
            raise ConfigError(f"{where} is not an AES-256 key")
        if not sensitive or extractable:
            raise ConfigError(
                f"{where} is extractable or not sensitive; refusing a key that can leave the HSM"
            )
        return key

    def _disconnect(self) -> None:
        session, self._session, self._key = self._session, None, None
        if session is not None:
            try:
                session.close()
            except p11err.PKCS11Error:
                pass  # the session is gone already

    def __repr__(self) -> str:
        return (
            f"Pkcs11KeyProvider(module={self._module_path!r}, token_label={self._token_label!r}, "
            f"key_label={self._key_label!r}, pin={self._pin!r})"
        )
