"""One Mount: log in as the pod's ServiceAccount, read each object, build files and versions.

:class:`Mounter` holds what the provider was started with (the server's
address, its CA, the default auth mount). :meth:`Mounter.mount` logs in with
the token the driver passed (``auth/<mount>/login``: the server asks the
API server whether the token is genuine and binds it to the role), reads
every secret path *with that login's token* — so the server's policies and
audit log see the pod, not the provider — and revokes the login token before
answering. Nothing is cached between mounts and nothing is written to disk:
the driver writes the files it is given.

A value bound to one ServiceAccount (``kustos:bound:v1:...``, see
``docs/bound.md``) is opened in place with the same login
(``sys/bound/decrypt``), so it opens only when the pod runs as the account it
was sealed for; for any other account the Mount fails, naming the object and
key. Only the values a file needs are opened.

Each object's version is the KV v2 version of its secret
(``data.metadata.version``), which the driver records in the pod's
SecretProviderClassPodStatus and compares on rotation; a path that is not a
KV v2 read (``<mount>/data/<path>``) is refused, since no version could be given.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kustos.client import KustosClient, open_in_place
from kustos.csi.parameters import MountParameters, ParameterError, SecretObject
from kustos.errors import ConfigError, KustosError, NotFoundError

__all__ = ["MountResult", "MountedFile", "Mounter"]

_log = logging.getLogger("kustos.csi")


@dataclass(frozen=True)
class MountedFile:
    """One file for the driver to write (``repr`` hides the contents)."""

    path: str
    mode: int
    contents: bytes

    def __repr__(self) -> str:
        return f"MountedFile(path={self.path!r}, mode={self.mode:#o}, contents=<{len(self.contents)} bytes>)"


@dataclass(frozen=True)
class MountResult:
    """The files and object versions of one Mount."""

    files: tuple[MountedFile, ...]
    versions: tuple[tuple[str, str], ...]


def _value(obj: SecretObject, data: dict[str, Any]) -> bytes:
    if obj.key is None:
        binary = sorted(k for k, v in data.items() if isinstance(v, bytes))
        if binary:
            raise ParameterError(
                f"object {obj.name!r}: key {binary[0]!r} of {obj.path!r} opens to binary data, "
                "which JSON cannot hold: name it with secretKey"
            )
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    if obj.key not in data:
        raise NotFoundError(f"object {obj.name!r}: secret {obj.path!r} has no key {obj.key!r}")
    value = data[obj.key]
    if isinstance(value, bytes):  # a bound value whose plaintext is not text
        return value
    if not isinstance(value, str):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if obj.encoding == "utf-8":
        return value.encode("utf-8")
    try:
        if obj.encoding == "base64":
            return base64.b64decode(value, validate=True)
        return bytes.fromhex(value)
    except (binascii.Error, ValueError):
        raise ParameterError(
            f"object {obj.name!r}: the value of key {obj.key!r} is not {obj.encoding}"
        ) from None


def _opened(client: KustosClient, obj: SecretObject, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (or only ``obj.key`` of it) with bound values opened as the pod's login."""
    needed = data if obj.key is None else {obj.key: data[obj.key]} if obj.key in data else {}
    opened = open_in_place(
        needed, opener=client.bound.decrypt, where=f"object {obj.name!r}: secret {obj.path!r}"
    )
    return {**data, **opened}


class Mounter:
    """Answers Mount requests against one Kustos (or Vault-compatible) server."""

    def __init__(
        self,
        *,
        address: str,
        ca_cert: Path | None = None,
        auth_path: str = "kubernetes",
        timeout: float = 10.0,
    ) -> None:
        self.address = address
        self.auth_path = auth_path
        self.timeout = timeout
        # One TLS context for every mount: building it (loading the CA store) costs more
        # than the whole mount otherwise.
        try:
            self._tls = (
                ssl.create_default_context(cafile=str(ca_cert))
                if ca_cert is not None
                else httpx.create_ssl_context()
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CA certificate {ca_cert}: {exc}") from None

    def mount(self, params: MountParameters) -> MountResult:
        """Fetch every object for one pod; raises a :class:`~kustos.errors.KustosError` naming it."""
        with KustosClient(self.address, timeout=self.timeout, verify=self._tls) as client:
            auth = client.auth_methods.login_kubernetes(
                role=params.role, jwt=params.jwt, mount_point=params.auth_path or self.auth_path
            )
            client.token = auth["client_token"]
            try:
                result = self._read_all(client, params)
            finally:
                try:
                    client.auth_token.revoke_self()
                except KustosError as exc:  # the token expires anyway; do not fail the mount
                    _log.warning("could not revoke the mount's login token: %s", exc)
        _log.info(
            "mounted %d objects for pod %s/%s (service account %s, role %s)",
            len(result.files),
            params.namespace,
            params.pod,
            params.service_account,
            params.role,
        )
        return result

    def _read_all(self, client: KustosClient, params: MountParameters) -> MountResult:
        files: list[MountedFile] = []
        versions: list[tuple[str, str]] = []
        secrets: dict[str, tuple[dict[str, Any], str]] = {}
        for obj in params.objects:
            if obj.path not in secrets:
                secrets[obj.path] = self._read(client, obj)
            data, version = secrets[obj.path]
            files.append(
                MountedFile(
                    path=obj.name,
                    mode=params.mode if obj.mode is None else obj.mode,
                    contents=_value(obj, _opened(client, obj, data)),
                )
            )
            versions.append((obj.name, version))
        return MountResult(files=tuple(files), versions=tuple(versions))

    def _read(self, client: KustosClient, obj: SecretObject) -> tuple[dict[str, Any], str]:
        body = client.generic.read(obj.path)
        if body is None:
            raise NotFoundError(f"object {obj.name!r}: no secret at {obj.path!r}")
        outer = body.get("data")
        inner = outer.get("data") if isinstance(outer, dict) else None
        metadata = outer.get("metadata") if isinstance(outer, dict) else None
        version = metadata.get("version") if isinstance(metadata, dict) else None
        if not isinstance(inner, dict) or not isinstance(version, int):
            raise ParameterError(
                f"object {obj.name!r}: {obj.path!r} is not a KV v2 secret "
                "(use the <mount>/data/<path> form, e.g. secret/data/app/db)"
            )
        return inner, str(version)
