"""The KMS v2 gRPC service on a unix socket: what kube-apiserver calls.

:class:`KmsService` answers ``v2.KeyManagementService`` (``Status``,
``Encrypt``, ``Decrypt``; ``kustos/protos/kms_v2.proto``) from a
:class:`~kustos.kmsplugin.backends.base.KmsBackend`. :func:`serve` binds the
socket (mode 0600; a stale socket file left by a dead plugin is replaced, a
live one is refused), runs until ``stop`` is set, then drains and removes it.

Each call costs exactly one backend operation: ``Encrypt`` one wrap,
``Decrypt`` one unwrap, ``Status`` the backend's health check (about once a
minute). The API server calls ``Encrypt`` once per DEK seed and ``Decrypt``
only on a cache miss, so no Secret read or write waits on a plugin call in
steady state.

Errors become gRPC status codes: a ciphertext that does not open
``INVALID_ARGUMENT``, an unknown key id ``NOT_FOUND``, a backend that cannot
be reached ``UNAVAILABLE``. Plaintexts never reach a log or a message; each
call is logged with its ``uid``, the key id and how long it took.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, NoReturn

import grpc

from kustos.errors import (
    ConfigError,
    DecryptionError,
    InvalidRequestError,
    KustosError,
    NotFoundError,
)
from kustos.kmsplugin.backends.base import KmsBackend
from kustos.protos import kms_v2_pb2, kms_v2_pb2_grpc

__all__ = ["API_VERSION", "MAX_PLAINTEXT", "KmsService", "parse_listen", "serve"]

API_VERSION: Final = "v2"
MAX_PLAINTEXT: Final = 4096
"""Largest plaintext ``Encrypt`` accepts (the API server sends a 32-byte seed)."""
_MAX_MESSAGE: Final = 64 * 1024

_log = logging.getLogger("kustos.kmsplugin")


def parse_listen(listen: str) -> Path:
    """The socket path of ``unix:///abs/path`` (or ``unix:/abs/path``, or a bare path)."""
    if listen.startswith("unix://"):
        path = listen[len("unix://") :]
    elif listen.startswith("unix:"):
        path = listen[len("unix:") :]
    elif "://" in listen:
        raise ConfigError(f"--listen must be a unix socket (unix:///path/kms.sock), got {listen!r}")
    else:
        path = listen
    if not path:
        raise ConfigError("--listen names no socket path")
    resolved = Path(path).expanduser().absolute()
    if len(os.fsencode(str(resolved))) >= 108:
        raise ConfigError(f"socket path {resolved} is too long for a unix socket (max 107 bytes)")
    return resolved


class KmsService(kms_v2_pb2_grpc.KeyManagementServiceServicer):
    """``v2.KeyManagementService`` over one backend."""

    def __init__(self, backend: KmsBackend) -> None:
        self._backend = backend

    def Status(  # noqa: N802 - gRPC method names
        self, request: kms_v2_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> kms_v2_pb2.StatusResponse:
        with self._call(context, "status", "") as note:
            status = self._backend.status()
            note(status.key_id)
        if not status.healthy:
            _log.warning("status: %s", status.healthz)
        return kms_v2_pb2.StatusResponse(
            version=API_VERSION, healthz=status.healthz, key_id=status.key_id
        )

    def Encrypt(  # noqa: N802 - gRPC method names
        self, request: kms_v2_pb2.EncryptRequest, context: grpc.ServicerContext
    ) -> kms_v2_pb2.EncryptResponse:
        with self._call(context, "encrypt", request.uid) as note:
            if not request.plaintext or len(request.plaintext) > MAX_PLAINTEXT:
                raise InvalidRequestError(
                    f"plaintext must be 1 to {MAX_PLAINTEXT} bytes, got {len(request.plaintext)}"
                )
            wrapped = self._backend.encrypt(request.plaintext)
            note(wrapped.key_id)
        return kms_v2_pb2.EncryptResponse(
            ciphertext=wrapped.ciphertext,
            key_id=wrapped.key_id,
            annotations=dict(wrapped.annotations),
        )

    def Decrypt(  # noqa: N802 - gRPC method names
        self, request: kms_v2_pb2.DecryptRequest, context: grpc.ServicerContext
    ) -> kms_v2_pb2.DecryptResponse:
        with self._call(context, "decrypt", request.uid) as note:
            note(request.key_id)
            if not request.ciphertext or not request.key_id:
                raise InvalidRequestError("ciphertext and key_id are required")
            plaintext = self._backend.decrypt(
                request.ciphertext,
                key_id=request.key_id,
                annotations=dict(request.annotations),
            )
        return kms_v2_pb2.DecryptResponse(plaintext=plaintext)

    @contextlib.contextmanager
    def _call(
        self, context: grpc.ServicerContext, what: str, uid: str
    ) -> Iterator[Callable[[str], None]]:
        """Time and log one call; turn Kustos errors into gRPC status codes."""
        key_id = [""]

        def note(value: str) -> None:
            key_id[0] = value

        started = time.perf_counter()
        try:
            yield note
        except KustosError as exc:
            code, message = _status_of(exc)
            _log.warning("%s uid=%s key_id=%s failed: %s", what, uid, key_id[0], message)
            _abort(context, code, message)
        except Exception:
            _log.exception("%s uid=%s key_id=%s: internal error", what, uid, key_id[0])
            _abort(context, grpc.StatusCode.INTERNAL, f"{what}: internal error in the KMS plugin")
        elapsed = (time.perf_counter() - started) * 1000
        log = _log.debug if what == "status" else _log.info
        log("%s uid=%s key_id=%s %.1f ms", what, uid, key_id[0], elapsed)


def _status_of(exc: KustosError) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, DecryptionError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, InvalidRequestError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, ConfigError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    return grpc.StatusCode.UNAVAILABLE, str(exc) or type(exc).__name__


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def _prepare_socket(path: Path) -> None:
    """Remove a stale socket file; refuse a live one or a file that is not a socket."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: a dead plugin's leftover
        return
    finally:
        probe.close()
    raise ConfigError(f"another process is already listening on {path}")


def serve(
    backend: KmsBackend,
    *,
    socket_path: Path,
    stop: threading.Event,
    workers: int = 8,
    on_ready: Callable[[], None] | None = None,
    grace: float = 5.0,
) -> None:
    """Serve ``backend`` on ``socket_path`` until ``stop`` is set; then drain and clean up."""
    _prepare_socket(socket_path)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kms"),
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
        ],
    )
    kms_v2_pb2_grpc.add_KeyManagementServiceServicer_to_server(KmsService(backend), server)
    previous = os.umask(0o177)  # the socket is created 0600: only the API server's user dials it
    try:
        if server.add_insecure_port(f"unix://{socket_path}") == 0:
            raise ConfigError(f"cannot listen on {socket_path}")
        server.start()
    finally:
        os.umask(previous)
    _log.info("KMS v2 plugin (%s backend) listening on unix://%s", backend.name, socket_path)
    try:
        if on_ready is not None:
            on_ready()
        stop.wait()
    finally:
        server.stop(grace).wait()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        _log.info("KMS v2 plugin stopped")
