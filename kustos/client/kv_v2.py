"""The KV version 2 secrets engine, as Vault documents it under ``/v1/<mount>/...``.

One method per endpoint, named verb_object, the mount point last; each
docstring names the HTTP method and path. Methods return the ``data`` member
of the answer as plain dicts (typed below); secret values are returned as the
server sent them and are never logged here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, TypedDict, cast

from kustos.client._http import Adapter, JSONObject, join_path
from kustos.errors import InvalidRequestError, KustosError

__all__ = [
    "DEFAULT_MOUNT_POINT",
    "REASON_HEADER",
    "KvConfig",
    "KvV2",
    "SecretMetadata",
    "SecretVersion",
    "VersionInfo",
    "VersionMetadata",
]

DEFAULT_MOUNT_POINT: Final = "secret"
REASON_HEADER: Final = "X-Kustos-Reason"
"""Why a write was made; the server records it in the version's history."""


class VersionMetadata(TypedDict):
    """Metadata of one version, as returned by a read or a write of ``data/<path>``."""

    created_time: str
    custom_metadata: dict[str, str] | None
    deletion_time: str
    destroyed: bool
    version: int


class SecretVersion(TypedDict):
    """One version of a secret: its key/value ``data`` (``None`` when deleted) and metadata."""

    data: dict[str, Any] | None
    metadata: VersionMetadata


class VersionInfo(TypedDict, total=False):
    """One entry of ``versions`` in a secret's metadata (servers may add fields such as who and why)."""

    created_time: str
    deletion_time: str
    destroyed: bool


class SecretMetadata(TypedDict, total=False):
    """Metadata of a secret and all its versions (``metadata/<path>``)."""

    cas_required: bool
    created_time: str
    current_version: int
    custom_metadata: dict[str, str] | None
    delete_version_after: str
    max_versions: int
    oldest_version: int
    updated_time: str
    versions: dict[str, VersionInfo]


class KvConfig(TypedDict, total=False):
    """Engine-wide settings of a KV v2 mount (``config``)."""

    cas_required: bool
    delete_version_after: str
    max_versions: int


def _data(body: JSONObject | None, *, what: str) -> JSONObject:
    if body is None or not isinstance(body.get("data"), dict):
        raise KustosError(f"{what}: the server's answer has no 'data' object")
    return cast(JSONObject, body["data"])


def _versions(versions: Sequence[int]) -> list[int]:
    if not versions:
        raise InvalidRequestError("at least one version number is required")
    out = [int(v) for v in versions]
    if any(v < 1 for v in out):
        raise InvalidRequestError("version numbers start at 1")
    return out


def _reason_headers(reason: str | None) -> dict[str, str]:
    if reason is None:
        return {}
    if not reason.strip():
        raise InvalidRequestError("reason must not be empty")
    if not reason.isascii() or any(ord(ch) < 32 or ord(ch) == 127 for ch in reason):
        raise InvalidRequestError("reason must be printable ASCII (it travels in an HTTP header)")
    return {REASON_HEADER: reason}


class KvV2:
    """Endpoints of a KV v2 mount. Reach it as ``client.kv_v2``."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def read_config(self, *, mount_point: str = DEFAULT_MOUNT_POINT) -> KvConfig:
        """``GET /v1/<mount>/config``: the mount's max_versions, cas_required, delete_version_after."""
        body = self._adapter.request("GET", join_path(mount_point, "config"))
        return cast(KvConfig, _data(body, what="read config"))

    def configure(
        self,
        *,
        max_versions: int | None = None,
        cas_required: bool | None = None,
        delete_version_after: str | None = None,
        mount_point: str = DEFAULT_MOUNT_POINT,
    ) -> None:
        """``POST /v1/<mount>/config``: change the mount's settings (only the ones given)."""
        payload: dict[str, Any] = {}
        if max_versions is not None:
            payload["max_versions"] = max_versions
        if cas_required is not None:
            payload["cas_required"] = cas_required
        if delete_version_after is not None:
            payload["delete_version_after"] = delete_version_after
        self._adapter.request("POST", join_path(mount_point, "config"), json=payload)

    def read_secret_version(
        self, path: str, *, version: int | None = None, mount_point: str = DEFAULT_MOUNT_POINT
    ) -> SecretVersion:
        """``GET /v1/<mount>/data/<path>[?version=N]``: the latest (or the given) version.

        Raises :class:`~kustos.errors.NotFoundError` when the secret does not
        exist, or that version was deleted or destroyed.
        """
        params = {"version": int(version)} if version is not None else None
        body = self._adapter.request("GET", join_path(mount_point, "data", path), params=params)
        return cast(SecretVersion, _data(body, what=f"read {path}"))

    def create_or_update_secret(
        self,
        path: str,
        data: Mapping[str, Any],
        *,
        cas: int | None = None,
        reason: str | None = None,
        mount_point: str = DEFAULT_MOUNT_POINT,
    ) -> VersionMetadata:
        """``POST /v1/<mount>/data/<path>``: write a new version.

        ``cas=0`` writes only if the secret does not exist; ``cas=N`` only if
        the current version is N (else :class:`~kustos.errors.CheckAndSetError`).
        ``reason`` is sent as the ``X-Kustos-Reason`` header.
        """
        payload: dict[str, Any] = {"data": dict(data)}
        if cas is not None:
            payload["options"] = {"cas": int(cas)}
        body = self._adapter.request(
            "POST",
            join_path(mount_point, "data", path),
            json=payload,
            headers=_reason_headers(reason),
        )
        return cast(VersionMetadata, _data(body, what=f"write {path}"))

    def patch(
        self,
        path: str,
        data: Mapping[str, Any],
        *,
        cas: int | None = None,
        reason: str | None = None,
        mount_point: str = DEFAULT_MOUNT_POINT,
    ) -> VersionMetadata:
        """``PATCH /v1/<mount>/data/<path>`` (JSON merge patch): write a new version from the latest.

        Keys in ``data`` replace the latest version's keys; a key set to
        ``None`` is removed; other keys are kept.
        """
        payload: dict[str, Any] = {"data": dict(data)}
        if cas is not None:
            payload["options"] = {"cas": int(cas)}
        headers = {"Content-Type": "application/merge-patch+json", **_reason_headers(reason)}
        body = self._adapter.request(
            "PATCH", join_path(mount_point, "data", path), json=payload, headers=headers
        )
        return cast(VersionMetadata, _data(body, what=f"patch {path}"))

    def delete_latest_version(self, path: str, *, mount_point: str = DEFAULT_MOUNT_POINT) -> None:
        """``DELETE /v1/<mount>/data/<path>``: soft-delete the latest version (undeletable)."""
        self._adapter.request("DELETE", join_path(mount_point, "data", path))

    def delete_versions(
        self, path: str, versions: Sequence[int], *, mount_point: str = DEFAULT_MOUNT_POINT
    ) -> None:
        """``POST /v1/<mount>/delete/<path>``: soft-delete the given versions."""
        self._adapter.request(
            "POST", join_path(mount_point, "delete", path), json={"versions": _versions(versions)}
        )

    def undelete_versions(
        self, path: str, versions: Sequence[int], *, mount_point: str = DEFAULT_MOUNT_POINT
    ) -> None:
        """``POST /v1/<mount>/undelete/<path>``: restore soft-deleted versions."""
        self._adapter.request(
            "POST", join_path(mount_point, "undelete", path), json={"versions": _versions(versions)}
        )

    def destroy_versions(
        self, path: str, versions: Sequence[int], *, mount_point: str = DEFAULT_MOUNT_POINT
    ) -> None:
        """``POST /v1/<mount>/destroy/<path>``: erase the given versions for good (Vault also accepts PUT)."""
        self._adapter.request(
            "POST", join_path(mount_point, "destroy", path), json={"versions": _versions(versions)}
        )

    def read_metadata(self, path: str, *, mount_point: str = DEFAULT_MOUNT_POINT) -> SecretMetadata:
        """``GET /v1/<mount>/metadata/<path>``: settings and the history of every version."""
        body = self._adapter.request("GET", join_path(mount_point, "metadata", path))
        return cast(SecretMetadata, _data(body, what=f"read metadata of {path}"))

    def update_metadata(
        self,
        path: str,
        *,
        max_versions: int | None = None,
        cas_required: bool | None = None,
        delete_version_after: str | None = None,
        custom_metadata: Mapping[str, str] | None = None,
        mount_point: str = DEFAULT_MOUNT_POINT,
    ) -> None:
        """``POST /v1/<mount>/metadata/<path>``: set the secret's settings (only the ones given)."""
        payload: dict[str, Any] = {}
        if max_versions is not None:
            payload["max_versions"] = max_versions
        if cas_required is not None:
            payload["cas_required"] = cas_required
        if delete_version_after is not None:
            payload["delete_version_after"] = delete_version_after
        if custom_metadata is not None:
            payload["custom_metadata"] = dict(custom_metadata)
        self._adapter.request("POST", join_path(mount_point, "metadata", path), json=payload)

    def patch_metadata(
        self,
        path: str,
        *,
        max_versions: int | None = None,
        cas_required: bool | None = None,
        delete_version_after: str | None = None,
        custom_metadata: Mapping[str, str | None] | None = None,
        mount_point: str = DEFAULT_MOUNT_POINT,
    ) -> None:
        """``PATCH /v1/<mount>/metadata/<path>`` (JSON merge patch): change only the given settings.

        A ``custom_metadata`` key mapped to ``None`` is removed.
        """
        payload: dict[str, Any] = {}
        if max_versions is not None:
            payload["max_versions"] = max_versions
        if cas_required is not None:
            payload["cas_required"] = cas_required
        if delete_version_after is not None:
            payload["delete_version_after"] = delete_version_after
        if custom_metadata is not None:
            payload["custom_metadata"] = dict(custom_metadata)
        self._adapter.request(
            "PATCH",
            join_path(mount_point, "metadata", path),
            json=payload,
            headers={"Content-Type": "application/merge-patch+json"},
        )

    def delete_metadata_and_all_versions(
        self, path: str, *, mount_point: str = DEFAULT_MOUNT_POINT
    ) -> None:
        """``DELETE /v1/<mount>/metadata/<path>``: remove the secret, its metadata and every version."""
        self._adapter.request("DELETE", join_path(mount_point, "metadata", path))

    def list_secrets(self, path: str = "", *, mount_point: str = DEFAULT_MOUNT_POINT) -> list[str]:
        """``LIST /v1/<mount>/metadata/<path>/``: the keys below ``path``; folders end in ``/``.

        Raises :class:`~kustos.errors.NotFoundError` when nothing is below ``path``.
        """
        api_path = join_path(mount_point, "metadata", path) + "/"
        body = self._adapter.request("LIST", api_path)
        keys = _data(body, what=f"list {path or '/'}").get("keys", [])
        if not isinstance(keys, list):
            raise KustosError(f"list {path or '/'}: 'keys' is not a list")
        return [str(k) for k in keys]

    def read_subkeys(
        self,
        path: str,
        *,
        version: int | None = None,
        depth: int | None = None,
        mount_point: str = DEFAULT_MOUNT_POINT,
    ) -> dict[str, Any]:
        """``GET /v1/<mount>/subkeys/<path>``: the structure of a version, every leaf value replaced by null."""
        params: dict[str, str | int] = {}
        if version is not None:
            params["version"] = int(version)
        if depth is not None:
            params["depth"] = int(depth)
        body = self._adapter.request(
            "GET", join_path(mount_point, "subkeys", path), params=params or None
        )
        return _data(body, what=f"read subkeys of {path}")
