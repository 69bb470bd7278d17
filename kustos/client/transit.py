"""The transit secrets engine, as Vault documents it under ``/v1/<mount>/...``.

One method per endpoint, named like hvac's (``create_key``, ``encrypt_data``,
``rewrap_data``), the mount point last; each docstring names the HTTP method
and path. Plaintexts go in and come out as ``bytes`` (base64 on the wire is
handled here); decrypted plaintext is returned wrapped in
:class:`~kustos.sensitive.Sensitive` so it never shows in a repr or a log.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final, TypedDict, cast

from kustos.client._http import Adapter, JSONObject, join_path
from kustos.errors import KustosError, NotFoundError
from kustos.sensitive import Sensitive

__all__ = ["DEFAULT_TRANSIT_MOUNT", "Ciphertext", "DataKey", "Transit", "TransitKeyInfo"]

DEFAULT_TRANSIT_MOUNT: Final = "transit"


class TransitKeyInfo(TypedDict, total=False):
    """A key as ``GET keys/<name>`` describes it (never key material)."""

    name: str
    type: str
    derived: bool
    kdf: str
    deletion_allowed: bool
    exportable: bool
    allow_plaintext_backup: bool
    keys: dict[str, int]
    latest_version: int
    min_decryption_version: int
    min_encryption_version: int
    auto_rotate_period: int
    supports_encryption: bool
    supports_decryption: bool
    supports_derivation: bool
    supports_signing: bool


class Ciphertext(TypedDict):
    """What encrypt and rewrap answer."""

    ciphertext: str
    key_version: int


class DataKey(TypedDict, total=False):
    """What ``datakey/<type>/<name>`` answers (``plaintext`` only for the plaintext type)."""

    ciphertext: str
    key_version: int
    plaintext: str


def _data(body: JSONObject | None, *, what: str) -> JSONObject:
    if body is None or not isinstance(body.get("data"), dict):
        raise KustosError(f"{what}: the server's answer has no 'data' object")
    return cast(JSONObject, body["data"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, *, what: str) -> bytes:
    if not isinstance(text, str):
        raise KustosError(f"{what}: the server's answer has no base64 plaintext")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KustosError(f"{what}: the server's plaintext is not valid base64") from None


class Transit:
    """Endpoints of a transit mount. Reach it as ``client.transit``."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def create_key(
        self,
        name: str,
        *,
        key_type: str | None = None,
        derived: bool | None = None,
        auto_rotate_period: str | None = None,
        mount_point: str = DEFAULT_TRANSIT_MOUNT,
    ) -> TransitKeyInfo:
        """``POST /v1/<mount>/keys/<name>``: create the key (no change if it exists)."""
        payload: dict[str, Any] = {}
        if key_type is not None:
            payload["type"] = key_type
        if derived is not None:
            payload["derived"] = derived
        if auto_rotate_period is not None:
            payload["auto_rotate_period"] = auto_rotate_period
        body = self._adapter.request("POST", join_path(mount_point, "keys", name), json=payload)
        if body is None:  # Vault before 1.14 answers 204
            return self.read_key(name, mount_point=mount_point)
        return cast(TransitKeyInfo, _data(body, what="create key"))

    def read_key(self, name: str, *, mount_point: str = DEFAULT_TRANSIT_MOUNT) -> TransitKeyInfo:
        """``GET /v1/<mount>/keys/<name>``."""
        body = self._adapter.request("GET", join_path(mount_point, "keys", name))
        return cast(TransitKeyInfo, _data(body, what="read key"))

    def list_keys(self, *, mount_point: str = DEFAULT_TRANSIT_MOUNT) -> list[str]:
        """``LIST /v1/<mount>/keys``; an empty list when there are none."""
        try:
            body = self._adapter.request("LIST", join_path(mount_point, "keys"))
        except NotFoundError:
            return []
        keys = _data(body, what="list keys").get("keys") or []
        return [str(k) for k in keys]

    def delete_key(self, name: str, *, mount_point: str = DEFAULT_TRANSIT_MOUNT) -> None:
        """``DELETE /v1/<mount>/keys/<name>`` (the key must allow deletion)."""
        self._adapter.request("DELETE", join_path(mount_point, "keys", name))

    def update_key_configuration(
        self,
        name: str,
        *,
        min_decryption_version: int | None = None,
        min_encryption_version: int | None = None,
        deletion_allowed: bool | None = None,
        auto_rotate_period: str | None = None,
        mount_point: str = DEFAULT_TRANSIT_MOUNT,
    ) -> None:
        """``POST /v1/<mount>/keys/<name>/config``: change only the settings given."""
        payload: dict[str, Any] = {}
        if min_decryption_version is not None:
            payload["min_decryption_version"] = min_decryption_version
        if min_encryption_version is not None:
            payload["min_encryption_version"] = min_encryption_version
        if deletion_allowed is not None:
            payload["deletion_allowed"] = deletion_allowed
        if auto_rotate_period is not None:
            payload["auto_rotate_period"] = auto_rotate_period
        self._adapter.request("POST", join_path(mount_point, "keys", name, "config"), json=payload)

    def rotate_key(self, name: str, *, mount_point: str = DEFAULT_TRANSIT_MOUNT) -> TransitKeyInfo:
        """``POST /v1/<mount>/keys/<name>/rotate``: add a version that encrypts from now on."""
        body = self._adapter.request("POST", join_path(mount_point, "keys", name, "rotate"))
        if body is None:
            return self.read_key(name, mount_point=mount_point)
        return cast(TransitKeyInfo, _data(body, what="rotate key"))

    def encrypt_data(
        self,
        name: str,
        plaintext: bytes,
        *,
        context: bytes | None = None,
        key_version: int | None = None,
        mount_point: str = DEFAULT_TRANSIT_MOUNT,
    ) -> Ciphertext:
        """``POST /v1/<mount>/encrypt/<name>``: ``vault:vN:...`` ciphertext of ``plaintext``."""
        payload: dict[str, Any] = {"plaintext": _b64(plaintext)}
        if context is not None:
            payload["context"] = _b64(context)
        if key_version is not None:
            payload["key_version"] = key_version
        body = self._adapter.request("POST", join_path(mount_point, "encrypt", name), json=payload)
        return cast(Ciphertext, _data(body, what="encrypt"))

    def decrypt_data(
        self,
        name: str,
        ciphertext: str,
        *,
        context: bytes | None = None,
        mount_point: str = DEFAULT_TRANSIT_MOUNT,
    ) -> Sensitive[bytes]:
        """``POST /v1/<mount>/decrypt/<name>``: the plaintext (wrapped: call ``reveal()``)."""
        payload: dict[str, Any] = {"ciphertext": ciphertext}
        if context is not None:
            payload["context"] = _b64(context)
        body = self._adapter.request("POST", join_path(mount_point, "decrypt", name), json=payload)
        return Sensitive(_unb64(_data(body, what="decrypt").get("plaintext"), what="decrypt"))

    def rewrap_data(
        self,
        name: str,
        ciphertext: str,
        *,
        context: bytes | None = None,
        key_version: int | None = None,
        mount_point: str = DEFAULT_TRANSIT_MOUNT,
    ) -> Ciphertext:
        """``POST /v1/<mount>/rewrap/<name>``: the same plaintext under the latest (or given) version."""
        payload: dict[str, Any] = {"ciphertext": ciphertext}
        if context is not None:
            payload["context"] = _b64(context)
        if key_version is not None:
            payload["key_version"] = key_version
        body = self._adapter.request("POST", join_path(mount_point, "rewrap", name), json=payload)
        return cast(Ciphertext, _data(body, what="rewrap"))

    def generate_data_key(
        self,
        name: str,
        *,
        key_type: str = "plaintext",
        bits: int | None = None,
        context: bytes | None = None,
        mount_point: str = DEFAULT_TRANSIT_MOUNT,
    ) -> DataKey:
        """``POST /v1/<mount>/datakey/<plaintext|wrapped>/<name>``: a fresh data key, wrapped."""
        payload: dict[str, Any] = {}
        if bits is not None:
            payload["bits"] = bits
        if context is not None:
            payload["context"] = _b64(context)
        body = self._adapter.request(
            "POST", join_path(mount_point, "datakey", key_type, name), json=payload
        )
        return cast(DataKey, _data(body, what="datakey"))
