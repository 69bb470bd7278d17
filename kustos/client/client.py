"""``KustosClient``: one connection to a Kustos (or any Vault-compatible) server.

It owns the HTTP connection and the token, and exposes one attribute per API
area, mirroring the API: ``client.kv_v2``, ``client.sys``, ``client.auth_token``,
``client.transit``, ``client.bound``.
Settings (address, token, TLS) are given explicitly; resolving them from
flags, environment variables or files is the CLI's job (``kustos.cli.connection``).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from types import TracebackType

from kustos.client._http import Adapter
from kustos.client.audit import Audit
from kustos.client.auth_methods import AuthMethods
from kustos.client.auth_token import AuthToken
from kustos.client.bound import Bound
from kustos.client.generic import Generic
from kustos.client.kv_v2 import KvV2
from kustos.client.leases import Leases
from kustos.client.policies import Policies
from kustos.client.sealing import SealingKeys
from kustos.client.sys import Sys
from kustos.client.transit import Transit
from kustos.errors import ConfigError
from kustos.sensitive import Sensitive

__all__ = ["DEFAULT_TIMEOUT", "KustosClient"]

DEFAULT_TIMEOUT = 30.0


class KustosClient:
    """A synchronous client over httpx.

    ``token`` may be a plain string or a :class:`~kustos.sensitive.Sensitive`;
    it is kept wrapped and sent as ``X-Vault-Token``. ``verify=False`` skips
    TLS verification; ``ca_cert`` names a PEM bundle to trust instead of the
    system store; ``verify`` may also be a ready :class:`ssl.SSLContext`, used
    as is (building one costs ~0.1 s, so a caller that opens many short-lived
    clients builds it once). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        addr: str,
        token: str | Sensitive[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        verify: bool | ssl.SSLContext = True,
        ca_cert: str | Path | None = None,
    ) -> None:
        if not addr.startswith(("http://", "https://")):
            raise ConfigError(f"server address must start with http:// or https://, got {addr!r}")
        tls: bool | ssl.SSLContext = verify
        if verify is True and ca_cert is not None:
            try:
                tls = ssl.create_default_context(cafile=str(ca_cert))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot load CA certificate {ca_cert}: {exc.strerror or exc}"
                ) from None
        self._adapter = Adapter(addr, _wrap(token), timeout=timeout, verify=tls)
        self.kv_v2 = KvV2(self._adapter)
        self.sys = Sys(self._adapter)
        self.sealing = SealingKeys(self._adapter)
        self.auth_token = AuthToken(self._adapter)
        self.policies = Policies(self._adapter)
        self.audit = Audit(self._adapter)
        self.auth_methods = AuthMethods(self._adapter)
        self.generic = Generic(self._adapter)
        self.transit = Transit(self._adapter)
        self.bound = Bound(self._adapter)
        self.leases = Leases(self._adapter)

    @property
    def address(self) -> str:
        """The server's base address, without a trailing slash."""
        return self._adapter.address

    @property
    def token(self) -> Sensitive[str] | None:
        """The token sent with each request (masked in repr)."""
        return self._adapter.token

    @token.setter
    def token(self, value: str | Sensitive[str] | None) -> None:
        self._adapter.token = _wrap(value)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._adapter.close()

    def __enter__(self) -> KustosClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KustosClient(addr={self.address!r}, token={self.token!r})"


def _wrap(token: str | Sensitive[str] | None) -> Sensitive[str] | None:
    if token is None or isinstance(token, Sensitive):
        return token
    return Sensitive(token)
