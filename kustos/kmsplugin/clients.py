"""A small client for a KMS v2 plugin's socket: what kube-apiserver sends, for checks and benchmarks.

``kustos cluster kms-status`` and ``bench/kms.py`` use it to ask a running
plugin for its status and to time ``Encrypt``/``Decrypt`` the way the API
server calls them. gRPC errors are re-raised as Kustos errors (the status
code's meaning: ``INVALID_ARGUMENT`` → :class:`DecryptionError` or
:class:`InvalidRequestError`, ``NOT_FOUND`` → :class:`NotFoundError`, anything
else → :class:`KeyProviderError`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc

from kustos.errors import (
    DecryptionError,
    InvalidRequestError,
    KeyProviderError,
    KustosError,
    NotFoundError,
)
from kustos.kmsplugin.backends.base import BackendStatus, Wrapped
from kustos.protos import kms_v2_pb2, kms_v2_pb2_grpc

__all__ = ["KmsPluginClient"]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class KmsPluginClient:
    """Calls ``Status``, ``Encrypt`` and ``Decrypt`` on the plugin listening at ``socket_path``."""

    def __init__(self, socket_path: Path, *, timeout: float = 5.0) -> None:
        self._channel = grpc.insecure_channel(f"unix://{Path(socket_path).absolute()}")
        self._stub = kms_v2_pb2_grpc.KeyManagementServiceStub(self._channel)
        self._timeout = timeout

    def status(self) -> tuple[str, BackendStatus]:
        """The API version and the status the plugin reports."""
        answer = self._call(self._stub.Status, kms_v2_pb2.StatusRequest())
        return answer.version, BackendStatus(answer.key_id, answer.healthz)

    def encrypt(self, plaintext: bytes) -> Wrapped:
        answer = self._call(
            self._stub.Encrypt,
            kms_v2_pb2.EncryptRequest(plaintext=plaintext, uid=str(uuid.uuid4())),
        )
        return Wrapped(answer.ciphertext, answer.key_id, dict(answer.annotations))

    def decrypt(self, ciphertext: bytes, *, key_id: str, annotations: Mapping[str, bytes]) -> bytes:
        answer = self._call(
            self._stub.Decrypt,
            kms_v2_pb2.DecryptRequest(
                ciphertext=ciphertext,
                uid=str(uuid.uuid4()),
                key_id=key_id,
                annotations=dict(annotations),
            ),
        )
        return bytes(answer.plaintext)

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable[_Request, _Response], request: _Request
    ) -> _Response:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> KmsPluginClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _error(exc: grpc.RpcError) -> KustosError:
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(code)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return DecryptionError() if "decryption failed" in details else InvalidRequestError(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(details)
    return KeyProviderError(f"KMS plugin: {code.name}: {details}")
