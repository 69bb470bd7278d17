"""Where ``kustos seal`` gets certificates from, and who answers ``--validate`` and ``--re-encrypt``.

kubeseal talks to a Sealed Secrets controller; ``kustos seal`` talks to a
:class:`Controller`. Today there is one kind, :class:`ServerController`: a
Kustos server (or any controller serving ``/v1/cert.pem``, ``/v1/verify`` and
``/v1/rotate``) at ``--controller-url``/``--address``/``$KUSTOS_ADDR``,
reached through :class:`~kustos.client.KustosClient` with the command's
connection options (``--ca-cert``, ``--tls-skip-verify``, a token when one is
set). Another kind (a controller found through the Kubernetes API, by
``--controller-namespace``/``--controller-name``) only has to implement the
same four methods; the modes in :mod:`kustos.cli.seal.modes` never know which
one they were given.

Certificates named by ``--cert`` (a file, a ``file://`` or an ``http(s)://``
URL) are read by :func:`certificates`, which asks the controller only when no
``--cert`` was given, as kubeseal does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from kustos.cli.connection import Connection, describe_error
from kustos.cli.output import fail
from kustos.client import KustosClient
from kustos.crypto.sealing import SealingCertificate, load_certificates
from kustos.errors import KustosError, NotFoundError, UnsupportedOperationError

__all__ = ["Controller", "ServerController", "certificates"]


class Controller(Protocol):
    """What ``kustos seal`` needs from a sealing controller."""

    def certificate(self) -> bytes:
        """The newest sealing certificate (PEM), as ``GET /v1/cert.pem`` serves it."""
        ...

    def certificate_bundle(self) -> bytes | None:
        """The newest certificate and its X25519 exchange certificate, or ``None`` if not offered."""
        ...

    def verify(self, sealed: Mapping[str, Any]) -> bool:
        """Whether the controller's keys open every value of ``sealed``."""
        ...

    def rotate(self, sealed: Mapping[str, Any]) -> dict[str, Any]:
        """``sealed`` re-encrypted with the controller's newest key."""
        ...


class ServerController:
    """A controller reached over HTTP at the command's address (a Kustos server by default)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def address(self) -> str:
        return self._connection.settings().address

    def certificate(self) -> bytes:
        with self._connection.client() as client:
            return client.sealing.read_certificate()

    def certificate_bundle(self) -> bytes | None:
        with self._connection.client() as client:
            try:
                return client.sealing.read_certificate_bundle()
            except (NotFoundError, UnsupportedOperationError):
                return None  # not a Kustos server: only /v1/cert.pem

    def verify(self, sealed: Mapping[str, Any]) -> bool:
        with self._connection.client() as client:
            return client.sealing.verify(sealed)

    def rotate(self, sealed: Mapping[str, Any]) -> dict[str, Any]:
        with self._connection.client() as client:
            return client.sealing.rotate(sealed)


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def _read_cert(ref: str, connection: Connection) -> bytes:
    """kubeseal's ``--cert``: a local file, a ``file://`` URL, or an http(s) URL."""
    if ref.startswith(("http://", "https://")):
        parts = urlsplit(ref)
        settings = connection.settings()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            with KustosClient(
                f"{parts.scheme}://{parts.netloc}",
                verify=settings.verify,
                ca_cert=settings.ca_cert,
            ) as client:
                return client.generic.read_raw(path or "/")
        except KustosError as exc:
            fail(f"cannot fetch certificate {ref}: {describe_error(exc, settings)}")
    path = ref.removeprefix("file://")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read certificate {ref}: {exc.strerror}")


def certificates(
    refs: Sequence[str],
    *,
    controller: Controller,
    connection: Connection,
    bundle: bool = False,
) -> list[SealingCertificate]:
    """The ``--cert`` certificates (repeatable, comma-separated), else the controller's.

    With ``bundle`` (the native format) a Kustos server's bundle is asked for
    first: it adds the X25519 exchange certificate (fast unsealing).
    """
    sources = _split(refs)
    if not sources:
        pem = (controller.certificate_bundle() if bundle else None) or controller.certificate()
        try:
            return load_certificates(pem)[:1]
        except KustosError as exc:
            fail(f"the controller's certificate: {exc}")
    certs: list[SealingCertificate] = []
    for ref in sources:
        try:
            certs.extend(load_certificates(_read_cert(ref, connection))[:1])
        except KustosError as exc:
            fail(f"certificate {ref}: {exc}")
    return certs
