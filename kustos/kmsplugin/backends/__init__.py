"""KMS plugin backends, and the one place that builds the configured one.

:class:`BackendConfig` is filled by the command line (``kustos kms-plugin``);
:func:`open_backend` turns it into a ready :class:`~kustos.kmsplugin.backends.base.KmsBackend`:

- ``local``: key files (:class:`~kustos.keys.providers.local.LocalKeyProvider`;
  a missing file is created with a new key), key id ``local:<key fingerprint>``;
- ``pkcs11``: AES keys inside an HSM, by label
  (:class:`~kustos.keys.providers.pkcs11.Pkcs11KeyProvider`), key id
  ``pkcs11:<token>/<label>``;
- ``aws``: AWS KMS keys (:mod:`kustos.kmsplugin.backends.aws`), key id ``aws:<ARN>``;
- ``transit``: a Kustos server's transit key
  (:mod:`kustos.kmsplugin.backends.transit`), key id ``transit:<mount>/<key>:v<N>``.

For the first three, several keys may be given: the first wraps, all unwrap.
Modules are imported only when chosen (a local plugin never loads PKCS#11).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kustos.errors import ConfigError, KustosError
from kustos.kmsplugin.backends.base import KmsBackend
from kustos.sensitive import Sensitive

__all__ = ["BACKEND_KINDS", "BackendConfig", "open_backend"]

BACKEND_KINDS: Final = ("local", "pkcs11", "aws", "transit")
TRANSIT_AUTH_KINDS: Final = ("token", "approle", "kubernetes")


@dataclass(frozen=True)
class BackendConfig:
    """Everything any backend needs; each backend reads its own fields."""

    kind: str
    key_files: tuple[Path, ...] = ()
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    pkcs11_pin: Sensitive[str] | None = field(default=None, repr=False)
    key_labels: tuple[str, ...] = ()
    aws_keys: tuple[str, ...] = ()
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    transit_address: str | None = None
    transit_ca_cert: Path | None = None
    transit_key: str | None = None
    transit_mount: str = "transit"
    transit_auth: str = "token"
    transit_auth_mount: str | None = None
    transit_token: Sensitive[str] | None = field(default=None, repr=False)
    approle_role_id: str | None = None
    approle_secret_id: Sensitive[str] | None = field(default=None, repr=False)
    kubernetes_role: str | None = None
    kubernetes_jwt_file: Path | None = None


def open_backend(config: BackendConfig) -> KmsBackend:
    """A ready backend for ``config``; :class:`ConfigError` names a missing or invalid setting."""
    if config.kind == "local":
        return _local(config)
    if config.kind == "pkcs11":
        return _pkcs11(config)
    if config.kind == "aws":
        from kustos.kmsplugin.backends.aws import AwsBackend

        return AwsBackend(
            config.aws_keys, region=config.aws_region, endpoint_url=config.aws_endpoint_url
        )
    if config.kind == "transit":
        return _transit(config)
    raise ConfigError(
        f"unknown KMS plugin backend {config.kind!r}; expected one of {', '.join(BACKEND_KINDS)}"
    )


def _local(config: BackendConfig) -> KmsBackend:
    from kustos.keys.providers.local import LocalKeyProvider
    from kustos.kmsplugin.backends.keyed import KeyedBackend

    if not config.key_files:
        raise ConfigError("the local backend needs a key file (--key-file)")
    providers = [LocalKeyProvider(path) for path in config.key_files]
    return KeyedBackend("local", [(f"local:{p.key_id}", p) for p in providers])


def _pkcs11(config: BackendConfig) -> KmsBackend:
    from kustos.keys.providers.pkcs11 import Pkcs11KeyProvider
    from kustos.kmsplugin.backends.keyed import KeyedBackend

    module, token, pin = config.pkcs11_module, config.pkcs11_token, config.pkcs11_pin
    if not module or not token or pin is None or not config.key_labels:
        missing = [
            flag
            for flag, value in (
                ("--pkcs11-module", module),
                ("--pkcs11-token", token),
                ("--pkcs11-pin-file or KUSTOS_PKCS11_PIN", pin),
                ("--key-label", config.key_labels),
            )
            if not value
        ]
        raise ConfigError(f"the pkcs11 backend needs {', '.join(missing)}")
    keys = []
    try:
        for label in config.key_labels:
            provider = Pkcs11KeyProvider(module, token, pin, label)
            keys.append((f"pkcs11:{token}/{label}", provider))
    except KustosError:
        for _, provider in keys:
            provider.close()
        raise
    return KeyedBackend("pkcs11", keys)


def _transit(config: BackendConfig) -> KmsBackend:
    from kustos.client import KustosClient
    from kustos.kmsplugin.backends.transit import Login, TransitBackend

    if not config.transit_address or not config.transit_key:
        raise ConfigError("the transit backend needs --address and --transit-key")
    login: Login | None = None
    token = config.transit_token
    if config.transit_auth == "token":
        if token is None:
            raise ConfigError(
                "the transit backend with token auth needs a token "
                "(--token-file, KUSTOS_TOKEN or VAULT_TOKEN)"
            )
    elif config.transit_auth == "approle":
        role_id, secret_id = config.approle_role_id, config.approle_secret_id
        if not role_id:
            raise ConfigError("approle auth needs --approle-role-id")
        mount = config.transit_auth_mount or "approle"

        def login(client: KustosClient) -> None:
            auth = client.auth_methods.login_approle(
                role_id=role_id, secret_id=secret_id or "", mount_point=mount
            )
            client.token = auth["client_token"]

    elif config.transit_auth == "kubernetes":
        role, jwt_file = config.kubernetes_role, config.kubernetes_jwt_file
        if not role or jwt_file is None:
            raise ConfigError("kubernetes auth needs --kubernetes-role and a token file")
        mount = config.transit_auth_mount or "kubernetes"

        def login(client: KustosClient) -> None:
            try:
                jwt = Sensitive(jwt_file.read_text().strip())  # re-read: kubelet rotates it
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the service-account token {jwt_file}: {exc.strerror}"
                ) from None
            auth = client.auth_methods.login_kubernetes(role=role, jwt=jwt, mount_point=mount)
            client.token = auth["client_token"]

    else:
        raise ConfigError(
            f"unknown transit auth {config.transit_auth!r}; "
            f"expected one of {', '.join(TRANSIT_AUTH_KINDS)}"
        )
    client = KustosClient(
        config.transit_address,
        token if config.transit_auth == "token" else None,
        timeout=5.0,
        ca_cert=config.transit_ca_cert,
    )
    try:
        return TransitBackend(
            client, key=config.transit_key, mount=config.transit_mount, login=login
        )
    except BaseException:
        client.close()
        raise
