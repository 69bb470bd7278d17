"""The provider's gRPC service on a unix socket: ``v1alpha1.CSIDriverProvider`` (``Version``, ``Mount``).

The stubs come from ``kustos/protos/csi_provider.proto``, compiled at build
time. :class:`ProviderService` maps each RPC onto :mod:`kustos.csi.parameters`
and :class:`~kustos.csi.mounting.Mounter`, and each failure onto a gRPC status
the driver logs and reports as a pod event:

==============================================  ====================
bad parameters or request                       ``INVALID_ARGUMENT``
login refused, or a read the policy denies      ``PERMISSION_DENIED``
no such secret or key                           ``NOT_FOUND``
the server cannot be reached                    ``UNAVAILABLE``
anything else the server refused                ``FAILED_PRECONDITION``
==============================================  ====================

Messages name the object and path, never a value or a token.
:func:`serve` binds the socket (removing a stale one, mode 0600: only the
driver, running as root on the node, may call) and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Final

import grpc

from kustos import __version__
from kustos.client.errors import ServerUnreachableError
from kustos.csi.mounting import Mounter
from kustos.csi.parameters import ParameterError, read_mount_request
from kustos.errors import InvalidRequestError, KustosError, NotFoundError, PermissionDeniedError
from kustos.protos import csi_provider_pb2 as pb
from kustos.protos import csi_provider_pb2_grpc as pb_grpc

__all__ = ["DEFAULT_SOCKET", "ProviderService", "bind", "serve"]

DEFAULT_SOCKET: Final = Path("/var/run/secrets-store-csi-providers/kustos.sock")
API_VERSION: Final = "v1alpha1"
_log = logging.getLogger("kustos.csi")


def _status(exc: KustosError) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ParameterError | InvalidRequestError):
        return grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument"
    if isinstance(exc, PermissionDeniedError):
        return grpc.StatusCode.PERMISSION_DENIED, "PermissionDenied"
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND, "NotFound"
    if isinstance(exc, ServerUnreachableError):
        return grpc.StatusCode.UNAVAILABLE, "Unavailable"
    return grpc.StatusCode.FAILED_PRECONDITION, "FailedPrecondition"


class ProviderService(pb_grpc.CSIDriverProviderServicer):
    """``Version`` and ``Mount`` over a :class:`~kustos.csi.mounting.Mounter`."""

    def __init__(self, mounter: Mounter) -> None:
        self._mounter = mounter

    def Version(  # noqa: N802 - the RPC's name
        self, request: pb.VersionRequest, context: grpc.ServicerContext
    ) -> pb.VersionResponse:
        return pb.VersionResponse(
            version=API_VERSION, runtime_name="kustos", runtime_version=__version__
        )

    def Mount(  # noqa: N802 - the RPC's name
        self, request: pb.MountRequest, context: grpc.ServicerContext
    ) -> pb.MountResponse:
        try:
            params = read_mount_request(
                attributes=request.attributes, permission=request.permission
            )
            result = self._mounter.mount(params)
        except KustosError as exc:
            code, reason = _status(exc)
            _log.warning("mount refused (%s): %s", reason, exc)
            context.abort(code, f"kustos: {exc}")
        return pb.MountResponse(
            object_version=[pb.ObjectVersion(id=i, version=v) for i, v in result.versions],
            files=[pb.File(path=f.path, mode=f.mode, contents=f.contents) for f in result.files],
        )


def bind(mounter: Mounter, socket_path: Path, *, workers: int = 8) -> grpc.Server:
    """A started gRPC server for ``mounter`` on the unix socket ``socket_path``."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    pb_grpc.add_CSIDriverProviderServicer_to_server(ProviderService(mounter), server)
    previous = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix://{socket_path}")
        server.start()
    finally:
        os.umask(previous)
    return server


def serve(mounter: Mounter, socket_path: Path, *, workers: int = 8) -> None:
    """Serve on ``socket_path`` until SIGINT or SIGTERM, then remove the socket."""
    server = bind(mounter, socket_path, workers=workers)
    _log.info("serving v1alpha1.CSIDriverProvider on %s", socket_path)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5).wait()
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
