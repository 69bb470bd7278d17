"""Where ``kustos seal`` gets certificates from, and who answers ``--validate`` and ``--re-encrypt``.

kubeseal talks to a Sealed Secrets controller; ``kustos seal`` talks to a
:class:`Controller`, of two kinds (the modes in :mod:`kustos.cli.seal.modes`
never know which one they were given):

* :class:`ServerController`: a Kustos server (or any controller serving
  ``/v1/cert.pem``, ``/v1/verify`` and ``/v1/rotate``) at
  ``--controller-url``/``--address``/``$KUSTOS_ADDR``, reached through
  :class:`~kustos.client.KustosClient` with the command's connection options
  (``--ca-cert``, ``--tls-skip-verify``, a token when one is set);
* :class:`ClusterController`: the controller behind a Kubernetes Service
  (``--controller-namespace``/``--controller-name``), reached as kubeseal
  reaches it: through the API server's service proxy, with the kubeconfig's
  credentials (:mod:`kustos.kube`; ``--kubeconfig``, ``--context``). The port
  is the Service's first, by name (``GET .../services/<name>``), and the path
  ``/api/v1/namespaces/<ns>/services/http:<name>:<port>/proxy/v1/cert.pem``
  (``https:`` when that port is named ``https`` or has ``appProtocol:
  https``, a Kustos server serving TLS). The API server's own refusals (no
  such Service, no ready endpoint behind it, RBAC) become messages that say
  what to check.

Certificates named by ``--cert`` (a file, a ``file://`` or an ``http(s)://``
URL) are read by :func:`certificates`, which asks the controller only when no
``--cert`` was given, as kubeseal does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

import orjson
import yaml

from kustos.cli.connection import Connection, describe_error
from kustos.cli.output import fail
from kustos.client import KustosClient
from kustos.crypto.sealing import SealingCertificate, load_certificates
from kustos.errors import KustosError, NotFoundError, UnsupportedOperationError
from kustos.kube import (
    SERVICES,
    KubeClient,
    ProxyAnswer,
    context_namespace,
    find_connection,
)
from kustos.kube import Connection as KubeConnection
from kustos.sensitive import Sensitive

__all__ = [
    "KUBESEAL_CONTROLLER_NAME",
    "KUBESEAL_CONTROLLER_NAMESPACE",
    "ClusterController",
    "Controller",
    "KubeTarget",
    "ServerController",
    "certificates",
]

KUBESEAL_CONTROLLER_NAMESPACE: Final = "kube-system"
"""kubeseal's default ``--controller-namespace``."""
KUBESEAL_CONTROLLER_NAME: Final = "sealed-secrets-controller"
"""kubeseal's default ``--controller-name``."""
_PEM_ACCEPT: Final = "application/x-pem-file, */*"
_T = TypeVar("_T")


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


@dataclass(frozen=True)
class KubeTarget:
    """Which Kubernetes configuration to use (``--kubeconfig``, ``--context``; else as kubectl finds it)."""

    kubeconfig: str | None = None
    context: str | None = None

    def namespace(self) -> str | None:
        """The context's namespace (``default`` if it names none); ``None`` without any kube config."""
        try:
            return context_namespace(
                kubeconfig=self.kubeconfig,
                context=self.context,
                environ=os.environ,
                home=Path.home(),
            )
        except KustosError as exc:
            fail(str(exc))

    async def connect(self) -> KubeConnection:
        return await find_connection(
            kubeconfig=self.kubeconfig,
            context=self.context,
            environ=os.environ,
            home=Path.home(),
        )


class ClusterController:
    """The sealing controller behind a Service, through the API server's service proxy (kubeseal's way).

    ``token`` (a Kustos token, only when one was given explicitly) goes to the
    controller as ``X-Vault-Token`` with ``verify`` and ``rotate``; the API
    server authenticates the request with the kubeconfig's own credentials.
    """

    def __init__(
        self, *, target: KubeTarget, namespace: str, name: str, token: Sensitive[str] | None
    ) -> None:
        self._target = target
        self.namespace = namespace
        self.name = name
        self._token = token
        self._connection: KubeConnection | None = None
        self._port: tuple[str, str] | None = None

    @property
    def where(self) -> str:
        return f"Service {self.namespace}/{self.name}"

    def certificate(self) -> bytes:
        answer = self._run("GET", "v1/cert.pem", accept=_PEM_ACCEPT)
        if answer.status != 200:
            fail(f"cannot fetch the certificate: {self._describe(answer)}")
        return answer.content

    def certificate_bundle(self) -> bytes | None:
        answer = self._run("GET", "v1/sys/sealing/cert", accept=_PEM_ACCEPT)
        if answer.api_status is not None:
            fail(f"cannot fetch the certificate: {self._describe(answer)}")
        return answer.content if answer.status == 200 else None  # not a Kustos server

    def verify(self, sealed: Mapping[str, Any]) -> bool:
        answer = self._run("POST", "v1/verify", body=orjson.dumps(dict(sealed)))
        if answer.status == 409:
            return False
        if answer.status >= 300:
            fail(f"cannot validate the SealedSecret: {self._describe(answer)}")
        return True

    def rotate(self, sealed: Mapping[str, Any]) -> dict[str, Any]:
        answer = self._run("POST", "v1/rotate", body=orjson.dumps(dict(sealed)))
        if answer.status == 409:
            fail("unable to rotate the SealedSecret: the controller cannot open it")
        if answer.status >= 300:
            fail(f"cannot re-encrypt the SealedSecret: {self._describe(answer)}")
        try:
            doc = yaml.safe_load(answer.content)
        except yaml.YAMLError:
            doc = None
        if not isinstance(doc, dict):
            fail(f"the controller behind {self.where} answered /v1/rotate without a SealedSecret")
        return doc

    # -- the request -------------------------------------------------------------------------

    def _run(
        self, method: str, path: str, *, body: bytes | None = None, accept: str | None = None
    ) -> ProxyAnswer:
        headers = {"Accept": accept} if accept else {}
        if self._token is not None and method == "POST":
            headers["X-Vault-Token"] = self._token.reveal()

        async def call(kube: KubeClient) -> ProxyAnswer:
            scheme, port = await self._service_port(kube)
            return await kube.proxy_service(
                namespace=self.namespace,
                service=self.name,
                scheme=scheme,
                port=port,
                path=path,
                method=method,
                body=body,
                headers=headers,
            )

        return self._with_kube(call)

    def _with_kube(self, work: Callable[[KubeClient], Awaitable[_T]]) -> _T:
        async def run() -> _T:
            if self._connection is None:
                self._connection = await self._target.connect()
            async with KubeClient(connection=self._connection) as kube:
                return await work(kube)

        try:
            return asyncio.run(run())
        except KustosError as exc:
            fail(str(exc))

    async def _service_port(self, kube: KubeClient) -> tuple[str, str]:
        """kubeseal's choice: the Service's first port, by name; its scheme from name or appProtocol."""
        if self._port is None:
            service = await kube.get(SERVICES, name=self.name, namespace=self.namespace)
            if service is None:
                fail(
                    f"there is no {self.where}: name the sealing controller's Service with "
                    "--controller-namespace and --controller-name (kubeseal's defaults are "
                    f"{KUBESEAL_CONTROLLER_NAMESPACE} and {KUBESEAL_CONTROLLER_NAME}; "
                    "the Kustos chart's is <release>-server in the release namespace)"
                )
            ports = (service.get("spec") or {}).get("ports") or []
            if not ports:
                fail(f"{self.where} has no ports")
            first = ports[0]
            name = str(first.get("name") or "")
            https = "https" in (name, str(first.get("appProtocol") or "").lower())
            self._port = ("https" if https else "http", name)
        return self._port

    def _describe(self, answer: ProxyAnswer) -> str:
        """Why the proxied request failed, for a person at a terminal."""
        status = answer.api_status
        if status is not None:
            message = str(status.get("message") or status.get("reason") or "")
            # The Service was found a moment ago: a 503 says its Endpoints list no ready
            # address, a 404 that it has no Endpoints object at all (no selector, say).
            if (answer.status == 503 and "no endpoints available" in message) or (
                answer.status == 404 and status.get("reason") == "NotFound"
            ):
                return (
                    f"{self.where} has no ready endpoints, so the API server has nowhere to send "
                    f"the request ({message}): is the controller running and ready, and does the "
                    f"Service select it? (kubectl -n {self.namespace} get pods,endpoints)"
                )
            if answer.status == 403:
                return (
                    f"the API server refused the request ({message}); reaching the controller "
                    "needs get (and, for --validate and --re-encrypt, create) on services/proxy"
                )
            return f"the API server answered {answer.status}: {message}"
        return (
            f"the controller behind {self.where} answered {answer.status}{_detail(answer.content)}"
        )


def _detail(content: bytes) -> str:
    """A backend's error, briefly: Vault-style ``errors``, else the first line of text."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return ": " + "; ".join(str(e) for e in body["errors"])[:300]
    text = content.decode("utf-8", "replace").strip().splitlines()
    return f": {text[0][:200]}" if text else ""


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
