"""Finding the API server and the credentials, the way kubectl and controller-runtime do.

Kubeconfig files are read by ``kubernetes_asyncio``'s config loader, not by
hand: it understands every form a cluster hands out — client certificate
and key as inline data or files, the CA as data or a file, a bearer token or
``tokenFile``, exec credential plugins (``aws eks get-token``, ``kubelogin``,
...), username/password, contexts and merged ``$KUBECONFIG`` lists — and the
in-cluster ServiceAccount token that the kubelet rotates. Inline certificate
and key data are written by the loader to private temporary files (mode
0600, removed when the process exits), because Python's ``ssl`` loads
certificate chains from files.

The result is one :class:`Connection`: where the server is, how to verify it,
which client certificate to present, and a :class:`Credentials` source for
the ``Authorization`` header. Tokens are never read once and kept: the
credentials are loaded again when an exec credential expires, when the API
server refuses a token (401), and (in a pod) when the projected token file
is older than a minute. Both HTTP stacks of a role use the same connection:
:class:`~kustos.kube.client.KubeClient` asks for the current header
on every request and retries once on 401; kopf logs in with :meth:`Connection.login`
(its login handler is re-run on 401 and at expiry).

:func:`find_connection` picks the source like controller-runtime's
``GetConfig``: the ``--kubeconfig`` flag, then ``$KUBECONFIG``, then the pod's
ServiceAccount, then ``~/.kube/config``. The environment and the home
directory are parameters; nothing is read at import time.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import yaml
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import (
    ConfigException,
    list_kube_config_contexts,
    load_incluster_config,
    load_kube_config,
)

from kustos.errors import ConfigError
from kustos.sensitive import Sensitive

__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "Connection",
    "Credentials",
    "Login",
    "StaticToken",
    "context_namespace",
    "find_connection",
    "load_in_cluster",
    "load_kubeconfig",
]

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where a pod finds its ServiceAccount token, the cluster CA and its namespace."""

_EXPIRY_SKEW: Final = datetime.timedelta(seconds=10)
"""Refresh an expiring credential this long before its ``expirationTimestamp``."""


class Credentials(Protocol):
    """A source of the ``Authorization`` header that can renew itself."""

    async def authorization(self) -> Sensitive[str] | None:
        """The header value to send now (``Bearer …``), or ``None`` (client certificates only)."""

    async def refresh(self, *, rejected: Sensitive[str] | None = None) -> None:
        """Load the credentials again; ``rejected`` is what the API server just refused.

        When another request already replaced ``rejected``, nothing is reloaded.
        """

    @property
    def expiration(self) -> datetime.datetime | None:
        """When the current credential expires (timezone-aware), if the source says."""


class StaticToken:
    """A fixed bearer token (tests, and callers that were handed one)."""

    def __init__(self, token: Sensitive[str], *, scheme: str = "Bearer") -> None:
        self._value = Sensitive(f"{scheme} {token.reveal()}")

    async def authorization(self) -> Sensitive[str] | None:
        return self._value

    async def refresh(self, *, rejected: Sensitive[str] | None = None) -> None:
        return None

    @property
    def expiration(self) -> datetime.datetime | None:
        return None

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


@dataclass(frozen=True)
class _Loaded:
    """One result of a kubernetes_asyncio loader."""

    configuration: Configuration
    expiration: datetime.datetime | None = None
    default_namespace: str | None = None


class _LoaderCredentials:
    """The token of a kubernetes_asyncio ``Configuration``, loaded again on expiry or refusal.

    In a pod the configuration carries the loader's own refresh hook, which
    re-reads the rotated token file when it is a minute old; every header
    goes through ``get_api_key_with_prefix`` so that hook runs.
    """

    def __init__(self, *, load: Callable[[], Awaitable[_Loaded]], first: _Loaded) -> None:
        self._load = load
        self._loaded = first
        self._lock = asyncio.Lock()

    async def _current(self) -> Sensitive[str] | None:
        value = await self._loaded.configuration.get_api_key_with_prefix("BearerToken")
        return Sensitive(str(value)) if value else None

    async def authorization(self) -> Sensitive[str] | None:
        expiration = self._loaded.expiration
        if expiration is not None and _now() >= expiration - _EXPIRY_SKEW:
            await self.refresh(rejected=await self._current())
        return await self._current()

    async def refresh(self, *, rejected: Sensitive[str] | None = None) -> None:
        async with self._lock:
            if rejected is not None:
                current = await self._current()
                if current is not None and current != rejected:
                    return  # another request renewed it meanwhile
            self._loaded = await self._load()

    @property
    def expiration(self) -> datetime.datetime | None:
        return self._loaded.expiration

    def __repr__(self) -> str:
        return "LoaderCredentials(<redacted>)"


@dataclass(frozen=True)
class Login:
    """What a second HTTP stack (kopf's aiohttp) needs to act as the same :class:`Connection`."""

    server: str
    ca_path: str | None
    insecure: bool
    certificate_path: str | None
    private_key_path: str | None
    scheme: str | None
    token: Sensitive[str] | None
    default_namespace: str | None
    proxy: str | None
    expiration: datetime.datetime | None


@dataclass(frozen=True)
class Connection:
    """Where the API server is, how to trust it, and who we are.

    Build it with :func:`find_connection` (or :func:`load_kubeconfig`,
    :func:`load_in_cluster`); constructing one directly suits a local,
    plain-HTTP emulator in tests (``Connection(server="http://127.0.0.1:…")``).
    """

    server: str
    ca_path: str | None = None
    """A PEM file of the CA that signed the API server's certificate."""
    certificate_path: str | None = None
    private_key_path: str | None = None
    insecure: bool = False
    """``insecure-skip-tls-verify``: do not verify the server's certificate."""
    proxy: str | None = None
    default_namespace: str | None = None
    """The context's namespace (or the pod's own): where namespaced commands act by default."""
    credentials: Credentials | None = field(default=None, compare=False)
    timeout: float = 30.0

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings: the CA to trust and the client certificate to present (``False``: no verification)."""
        if self.insecure:
            return False
        if not self.server.startswith("https://"):
            return True
        context = ssl.create_default_context(cafile=self.ca_path)
        if self.certificate_path:
            context.load_cert_chain(self.certificate_path, self.private_key_path)
        return context

    async def authorization(self) -> Sensitive[str] | None:
        """The ``Authorization`` header to send now, if any."""
        if self.credentials is None:
            return None
        return await self.credentials.authorization()

    async def refresh(self, *, rejected: Sensitive[str] | None = None) -> None:
        """Renew the credentials (after a 401 with ``rejected``)."""
        if self.credentials is not None:
            await self.credentials.refresh(rejected=rejected)

    async def login(self) -> Login:
        """The current credentials for kopf's login handler."""
        header = await self.authorization()
        scheme: str | None = None
        token: Sensitive[str] | None = None
        if header is not None:
            scheme, _, value = header.reveal().partition(" ")
            token = Sensitive(value)
        return Login(
            server=self.server,
            ca_path=self.ca_path,
            insecure=self.insecure,
            certificate_path=self.certificate_path,
            private_key_path=self.private_key_path,
            scheme=scheme,
            token=token,
            default_namespace=self.default_namespace,
            proxy=self.proxy,
            expiration=self.credentials.expiration if self.credentials is not None else None,
        )


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _aware(moment: Any) -> datetime.datetime | None:
    if not isinstance(moment, datetime.datetime):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _connection(loaded: _Loaded, credentials: Credentials) -> Connection:
    configuration = loaded.configuration
    if getattr(configuration, "tls_server_name", None):
        raise ConfigError(
            "the kubeconfig sets tls-server-name, which is not supported; "
            "use a server URL whose host the certificate names"
        )
    return Connection(
        server=str(configuration.host).rstrip("/"),
        ca_path=configuration.ssl_ca_cert or None,
        certificate_path=configuration.cert_file or None,
        private_key_path=configuration.key_file or None,
        insecure=not configuration.verify_ssl,
        proxy=configuration.proxy or None,
        default_namespace=loaded.default_namespace,
        credentials=credentials,
    )


async def load_kubeconfig(*, path: str, context: str | None = None) -> Connection:
    """A connection from a kubeconfig (``path`` may be a ``:``-separated list, as in ``$KUBECONFIG``).

    ``context`` picks a context (default: the file's ``current-context``).
    Raises :class:`~kustos.errors.ConfigError` naming what is wrong.
    """
    existing = [part for part in path.split(":") if part and Path(part).expanduser().is_file()]
    if not existing:
        raise ConfigError(f"kubeconfig {path} does not exist")
    where = f"kubeconfig {path}" + (f" (context {context!r})" if context else "")

    async def load() -> _Loaded:
        configuration = Configuration()
        try:
            loader = await load_kube_config(
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except ConfigException as exc:
            raise ConfigError(f"{where} cannot be used: {exc}") from None
        except AssertionError:
            raise ConfigError(f"{where}: no such context, or its cluster is missing") from None
        except (KeyError, TypeError, ValueError, OSError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"{where} is not a valid kubeconfig ({type(exc).__name__}: {exc})"
            ) from None
        current = loader.current_context or {}
        namespace = (current.get("context") or {}).get("namespace")
        return _Loaded(
            configuration=configuration,
            expiration=_aware(getattr(loader, "exec_plugin_expiry", None)),
            default_namespace=str(namespace) if namespace else None,
        )

    first = await load()
    return _connection(first, _LoaderCredentials(load=load, first=first))


async def load_in_cluster(
    *, environ: Mapping[str, str], directory: Path = SERVICE_ACCOUNT_DIR
) -> Connection:
    """A connection as the pod's ServiceAccount (``KUBERNETES_SERVICE_HOST/PORT`` and ``directory``)."""
    namespace_file = directory / "namespace"

    async def load() -> _Loaded:
        configuration = Configuration()
        try:
            load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration,
                token_filename=str(directory / "token"),
                cert_filename=str(directory / "ca.crt"),
                environ=dict(environ),
            )
        except ConfigException as exc:
            raise ConfigError(f"in-cluster configuration cannot be used: {exc}") from None
        namespace = (
            namespace_file.read_text().strip() if namespace_file.is_file() else None
        ) or None
        return _Loaded(configuration=configuration, default_namespace=namespace)

    first = await load()
    return _connection(first, _LoaderCredentials(load=load, first=first))


def _in_cluster(environ: Mapping[str, str], directory: Path) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and (directory / "token").is_file()


async def find_connection(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    environ: Mapping[str, str],
    home: Path,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> Connection:
    """The connection controller-runtime would use.

    In order: ``kubeconfig`` (the ``--kubeconfig`` flag), ``$KUBECONFIG``,
    the pod's ServiceAccount (``KUBERNETES_SERVICE_HOST`` set and a token in
    ``service_account_dir``), ``home/.kube/config``. ``context`` applies to
    kubeconfig files only.
    """
    if kubeconfig:
        return await load_kubeconfig(path=kubeconfig, context=context)
    from_env = environ.get("KUBECONFIG", "").strip()
    if from_env:
        return await load_kubeconfig(path=from_env, context=context)
    if _in_cluster(environ, service_account_dir):
        if context:
            raise ConfigError(
                "--context needs a kubeconfig; in a pod there is only the one cluster"
            )
        return await load_in_cluster(environ=environ, directory=service_account_dir)
    default = home / ".kube" / "config"
    if default.is_file():
        return await load_kubeconfig(path=str(default), context=context)
    raise ConfigError(
        "no Kubernetes credentials: give --kubeconfig, set KUBECONFIG, run in a pod, "
        f"or create {default}"
    )


def _kubeconfig_namespace(path: str, context: str | None) -> str:
    """The namespace of ``context`` (default: the current one) in a kubeconfig, read without logging in."""
    where = f"kubeconfig {path}" + (f" (context {context!r})" if context else "")
    try:
        contexts, current = list_kube_config_contexts(config_file=path)
    except ConfigException as exc:
        raise ConfigError(f"{where} cannot be used: {exc}") from None
    except (AssertionError, KeyError, TypeError, ValueError, OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where} is not a valid kubeconfig ({type(exc).__name__})") from None
    chosen = current
    if context:
        chosen = next(
            (c for c in contexts if isinstance(c, dict) and c.get("name") == context), None
        )
        if chosen is None:
            raise ConfigError(f"{where}: no such context")
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def context_namespace(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    environ: Mapping[str, str],
    home: Path,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> str | None:
    """The namespace kubectl would act in, or ``None`` when there is no Kubernetes configuration.

    The source is chosen as in :func:`find_connection`; from a kubeconfig it
    is the context's ``namespace`` (``default`` when the context names none,
    as client-go's ``clientcmd`` says), in a pod the pod's own namespace.
    Only the contexts are read: no exec plugin runs, nothing is sent.
    """
    if kubeconfig:
        if not any(Path(p).expanduser().is_file() for p in kubeconfig.split(":") if p):
            raise ConfigError(f"kubeconfig {kubeconfig} does not exist")
        return _kubeconfig_namespace(kubeconfig, context)
    from_env = environ.get("KUBECONFIG", "").strip()
    if from_env and any(Path(p).expanduser().is_file() for p in from_env.split(":") if p):
        return _kubeconfig_namespace(from_env, context)
    if _in_cluster(environ, service_account_dir) and not context:
        namespace_file = service_account_dir / "namespace"
        if namespace_file.is_file():
            return namespace_file.read_text().strip() or "default"
        return "default"
    default = home / ".kube" / "config"
    if default.is_file():
        return _kubeconfig_namespace(str(default), context)
    return None
