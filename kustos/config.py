"""Settings of the long-running roles, as frozen dataclasses.

Settings are built once, in ``main()`` of a role (from CLI flags, environment
variables and ``--dev`` defaults), and passed down explicitly: nothing in
Kustos reads the environment or a file at import time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_VALUE_BYTES",
    "KeyProviderConfig",
    "ServerConfig",
    "StorageConfig",
    "redact_storage_url",
]

DEFAULT_MAX_VALUE_BYTES: Final = 1024 * 1024
"""Largest accepted request body for one secret write (1 MiB, like a Kubernetes Secret)."""
DEFAULT_BODY_TIMEOUT: Final = 10.0
"""Seconds a client has to send a request body (a slow or stalled sender is answered 408)."""


@dataclass(frozen=True)
class StorageConfig:
    """Where the server keeps its data.

    ``url`` is ``sqlite:///path/to/kustos.db`` (the embedded default) or a
    PostgreSQL conninfo / URL (``postgresql://user@host:5432/db``).
    """

    url: str = field(repr=False)
    """May hold a database password: never logged as is (see :attr:`redacted`)."""
    pool_min: int = 1
    pool_max: int = 10

    @property
    def redacted(self) -> str:
        """The URL with any password replaced by ``***``, for logs and banners."""
        return redact_storage_url(self.url)

    @property
    def kind(self) -> Literal["sqlite", "postgresql"]:
        if self.url.startswith("sqlite:"):
            return "sqlite"
        if self.url.startswith(("postgresql:", "postgres:")) or "host=" in self.url:
            return "postgresql"
        raise ValueError(f"unsupported storage URL scheme: {self.url.split(':', 1)[0]!r}")


@dataclass(frozen=True)
class KeyProviderConfig:
    """Which key provider protects the server's keyring, and its options.

    ``kind`` is one of ``local`` (``key_file``), ``shamir`` (shares given at
    unseal time) or ``pkcs11`` (``pkcs11_module``, ``pkcs11_token_label``,
    ``pkcs11_pin``, ``pkcs11_key_label``).
    """

    kind: Literal["local", "shamir", "pkcs11"] = "local"
    key_file: Path | None = None
    pkcs11_module: str | None = None
    pkcs11_token_label: str | None = None
    pkcs11_pin: str | None = field(default=None, repr=False)
    pkcs11_key_label: str = "kustos-root"


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``kustos server`` needs to start."""

    storage: StorageConfig
    keys: KeyProviderConfig
    host: str = "127.0.0.1"
    port: int = 8200
    tls_cert: Path | None = None
    tls_key: Path | None = None
    data_dir: Path = Path(".kustos")
    dev: bool = False
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    """Seconds a client has to send a request's whole body once its headers arrived (then 408)."""
    log_level: str = "info"
    access_log: bool = False
    ui: bool = True
    """Serve the web console under ``/ui/`` (``kustos server --no-ui`` turns it off)."""
    initial_kv_mounts: tuple[str, ...] = ()
    """KV version 2 mounts created by ``sys/init`` (``--initial-kv-mount``; e.g. ``secret/``)."""


_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_storage_url(url: str) -> str:
    """``url`` with its password (URL userinfo or a conninfo ``password=``) shown as ``***``."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.password is not None:
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            user = parts.username or ""
            netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
            url = urlunsplit(parts._replace(netloc=netloc))
    return _CONNINFO_PASSWORD.sub(lambda m: m.group(1) + "***", url)
