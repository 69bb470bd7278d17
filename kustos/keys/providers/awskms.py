"""The ``awskms`` key provider: wrapping is done by AWS KMS under a key that never leaves it.

``wrap`` asks KMS for a fresh AES-256 data key (``GenerateDataKey``) under
the configured key (an id, ARN, alias name or alias ARN, resolved once to the
key's ARN by ``DescribeKey``), with the encryption context
``{"kustos:aad": base64(aad)}``, and seals the plaintext with it locally
(:mod:`kustos.crypto.aead`, associated data bound to ``aad``), so plaintexts
of any size (KMS ``Encrypt`` takes 1 to 4096 bytes) cost one KMS call. The
stored blob is::

    0x01 (format) || len(kms_blob) (2 bytes, big-endian) || kms_blob || aead(data key, plaintext)

``unwrap`` calls ``Decrypt`` on ``kms_blob`` with the same context and the
resolved key id, checks that KMS answered with that key (a blob made by any
other key fails like a tampered one), and opens the rest locally.

Errors: a blob that KMS refuses (tampered, other key, other context) raises
:class:`~kustos.errors.DecryptionError`; an endpoint that cannot be reached,
throttling, a disabled key or missing permissions raise
:class:`~kustos.errors.KeyProviderError` naming the AWS error code, never
the data. Credentials and region come from boto3's usual chain (environment,
profile, web identity) unless given; ``endpoint_url`` points at another
endpoint (a VPC endpoint, or moto's server in the tests).

Limits: each wrap and unwrap is one HTTPS round trip to KMS. :meth:`AwsKmsKeyProvider.refresh` re-resolves the key,
so a retargeted alias is noticed without a restart.
"""

from __future__ import annotations

import base64
import struct
import threading
from typing import Any, Final

from kustos.crypto import aead
from kustos.crypto.envelope import context
from kustos.errors import ConfigError, DecryptionError, KeyProviderError

__all__ = ["AwsKmsKeyProvider", "kms_client"]

_CONTEXT_KEY: Final = "kustos:aad"
_FORMAT: Final = b"\x01"
_LABEL: Final = b"kustos/keys/awskms"
_HEAD: Final = len(_FORMAT) + 2
_OUTAGE_CODES: Final = frozenset(
    {
        "AccessDeniedException",
        "DependencyTimeoutException",
        "DisabledException",
        "KeyUnavailableException",
        "KMSInternalException",
        "KMSInvalidStateException",
        "ThrottlingException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
    }
)


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


class AwsKmsKeyProvider:
    """Wraps and unwraps with AWS KMS ``Encrypt``/``Decrypt`` under one symmetric key."""

    def __init__(
        self,
        key_id: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
        timeout: float = 5.0,
    ) -> None:
        if not key_id:
            raise ConfigError("the awskms key provider needs a key id, ARN or alias")
        self._key_ref = key_id
        self._closed = False
        self._lock = threading.Lock()
        if client is None:
            client = kms_client(
                region=region or _region_of(key_id), endpoint_url=endpoint_url, timeout=timeout
            )
        self._client = client
        self._key_arn = self._describe()

    @property
    def name(self) -> str:
        return "awskms"

    @property
    def sealed(self) -> bool:
        return self._closed

    @property
    def key_ref(self) -> str:
        """The key as configured (id, ARN or alias)."""
        return self._key_ref

    @property
    def key_arn(self) -> str:
        """The ARN of the key that wraps now (an alias resolved)."""
        return self._key_arn

    def refresh(self) -> str:
        """Resolve the configured key again (an alias may point elsewhere now); the ARN."""
        arn = self._describe()
        with self._lock:
            self._key_arn = arn
        return arn

    def wrap(self, plaintext: bytes, *, aad: bytes) -> bytes:
        self._check_open()
        try:
            response = self._client.generate_data_key(
                KeyId=self._key_arn, KeySpec="AES_256", EncryptionContext=_context(aad)
            )
        except Exception as exc:
            raise KeyProviderError(
                f"AWS KMS could not make a data key: {_describe_error(exc)}"
            ) from None
        kms_blob = bytes(response["CiphertextBlob"])
        sealed = aead.seal(
            bytes(response["Plaintext"]), plaintext, aad=context(_LABEL, _FORMAT, aad)
        )
        return _FORMAT + struct.pack(">H", len(kms_blob)) + kms_blob + sealed

    def unwrap(self, blob: bytes, *, aad: bytes) -> bytes:
        self._check_open()
        if len(blob) < _HEAD or blob[:1] != _FORMAT:
            raise DecryptionError()
        (size,) = struct.unpack(">H", blob[1:_HEAD])
        kms_blob, sealed = blob[_HEAD : _HEAD + size], blob[_HEAD + size :]
        if size == 0 or len(kms_blob) != size or len(sealed) < aead.OVERHEAD:
            raise DecryptionError()
        try:
            response = self._client.decrypt(
                CiphertextBlob=kms_blob, KeyId=self._key_arn, EncryptionContext=_context(aad)
            )
        except Exception as exc:
            code = _error_code(exc)
            # AccessDenied on Decrypt is what a blob naming a key we may not use gets
            if code is None or (code in _OUTAGE_CODES and code != "AccessDeniedException"):
                raise KeyProviderError(
                    f"AWS KMS could not decrypt: {_describe_error(exc)}"
                ) from None
            raise DecryptionError() from None
        if response.get("KeyId") not in (None, self._key_arn):
            raise DecryptionError()
        return aead.unseal(bytes(response["Plaintext"]), sealed, aad=context(_LABEL, _FORMAT, aad))

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise KeyProviderError("the awskms key provider was closed")

    def _describe(self) -> str:
        try:
            metadata = self._client.describe_key(KeyId=self._key_ref)["KeyMetadata"]
        except Exception as exc:
            if _error_code(exc) == "NotFoundException":
                raise ConfigError(f"AWS KMS has no key {self._key_ref!r}") from None
            raise KeyProviderError(
                f"AWS KMS could not describe key {self._key_ref!r}: {_describe_error(exc)}"
            ) from None
        if metadata.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT" or metadata.get(
            "KeySpec", "SYMMETRIC_DEFAULT"
        ) not in ("SYMMETRIC_DEFAULT",):
            raise ConfigError(f"AWS KMS key {self._key_ref!r} is not a symmetric encryption key")
        return str(metadata["Arn"])

    def __repr__(self) -> str:
        return f"AwsKmsKeyProvider(key={self._key_ref!r})"


def kms_client(
    *, region: str | None = None, endpoint_url: str | None = None, timeout: float = 5.0
) -> Any:
    """A boto3 KMS client (credentials from boto3's chain) with short timeouts and 2 attempts."""
    import boto3
    from botocore.config import Config

    try:
        return boto3.session.Session().client(
            "kms",
            region_name=region,
            endpoint_url=endpoint_url or None,
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )
    except Exception as exc:  # NoRegionError and friends
        raise ConfigError(f"cannot set up an AWS KMS client: {exc}") from None


def _context(aad: bytes) -> dict[str, str]:
    return {_CONTEXT_KEY: base64.b64encode(aad).decode("ascii")}


def _region_of(key_id: str) -> str | None:
    parts = key_id.split(":")
    return parts[3] if key_id.startswith("arn:") and len(parts) > 3 and parts[3] else None


def _describe_error(exc: Exception) -> str:
    code = _error_code(exc)
    return code if code is not None else type(exc).__name__
