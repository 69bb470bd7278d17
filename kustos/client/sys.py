"""The ``sys/*`` backend: health, seal and unseal, initialisation, mounts and the keyring.

One method per endpoint, named verb_object; each docstring names the HTTP
method and path under ``/v1/``. Vault answers most of these endpoints without
a ``data`` wrapper; :func:`_payload` accepts both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypedDict, cast

from kustos.client._http import Adapter, JSONObject, join_path
from kustos.errors import InvalidRequestError, KustosError

__all__ = ["HEALTH_STATUSES", "InitResult", "KeyStatus", "SealStatus", "Sys"]

HEALTH_STATUSES: Final = (200, 429, 472, 473, 501, 503)
"""Statuses ``sys/health`` uses to signal state (active, standby, DR, perf standby, uninitialised, sealed)."""

_REQUEST_FIELDS: Final = frozenset(
    {
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
        "mount_type",
    }
)


class SealStatus(TypedDict, total=False):
    """``sys/seal-status`` (also the answer to ``sys/unseal``)."""

    type: str
    initialized: bool
    sealed: bool
    t: int
    n: int
    progress: int
    nonce: str
    version: str
    cluster_name: str
    cluster_id: str


class InitResult(TypedDict, total=False):
    """``sys/init``: the unseal key shares and the root token. Shown once; store them safely."""

    keys: list[str]
    keys_base64: list[str]
    root_token: str


class KeyStatus(TypedDict, total=False):
    """``sys/key-status``: the current keyring term (KEK version) and when it was installed."""

    term: int
    install_time: str
    encryptions: int


def _payload(body: JSONObject | None, *, what: str) -> JSONObject:
    if body is None:
        raise KustosError(f"{what}: the server answered with an empty body")
    data = body.get("data")
    if isinstance(data, dict):
        return cast(JSONObject, data)
    return body


class Sys:
    """Endpoints under ``/v1/sys/``. Reach it as ``client.sys``."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def read_health_status(self) -> JSONObject:
        """``GET /v1/sys/health``: initialised/sealed/standby state.

        Answers with 429, 472, 473, 501 and 503 are the server's way of saying
        its state, so they are returned, not raised.
        """
        body = self._adapter.request("GET", "sys/health", ok_statuses=HEALTH_STATUSES)
        return body or {}

    def read_seal_status(self) -> SealStatus:
        """``GET /v1/sys/seal-status``: sealed or not, threshold ``t`` of ``n`` shares, unseal progress."""
        return cast(
            SealStatus,
            _payload(self._adapter.request("GET", "sys/seal-status"), what="seal status"),
        )

    def is_initialized(self) -> bool:
        """``GET /v1/sys/init``: whether the server has been initialised."""
        body = _payload(self._adapter.request("GET", "sys/init"), what="init status")
        return bool(body.get("initialized"))

    def initialize(self, *, secret_shares: int = 5, secret_threshold: int = 3) -> InitResult:
        """``POST /v1/sys/init``: create the root key, split it into shares and mint the root token.

        The result holds every share and the root token in plain text; it is
        returned once and never again.
        """
        if not 1 <= secret_threshold <= secret_shares:
            raise InvalidRequestError(
                f"key threshold must be between 1 and the number of shares ({secret_shares}), got {secret_threshold}"
            )
        body = self._adapter.request(
            "POST",
            "sys/init",
            json={"secret_shares": secret_shares, "secret_threshold": secret_threshold},
        )
        return cast(InitResult, _payload(body, what="init"))

    def submit_unseal_key(self, key: str | None = None, *, reset: bool = False) -> SealStatus:
        """``POST /v1/sys/unseal``: submit one share (or ``reset=True`` to discard the progress)."""
        payload: dict[str, Any] = {"reset": True} if reset else {"key": key}
        if not reset and not key:
            raise InvalidRequestError("an unseal key share is required")
        return cast(
            SealStatus,
            _payload(self._adapter.request("POST", "sys/unseal", json=payload), what="unseal"),
        )

    def seal(self) -> None:
        """``POST /v1/sys/seal``: drop the keys from memory; data paths answer 503 until unsealed."""
        self._adapter.request("POST", "sys/seal")

    def list_mounts(self) -> dict[str, JSONObject]:
        """``GET /v1/sys/mounts``: every secrets engine, keyed by its path (ending in ``/``)."""
        body = self._adapter.request("GET", "sys/mounts")
        payload = _payload(body, what="list mounts")
        return {
            k: cast(JSONObject, v)
            for k, v in payload.items()
            if k not in _REQUEST_FIELDS and isinstance(v, dict)
        }

    def enable_mount(
        self,
        path: str,
        *,
        backend_type: str = "kv",
        description: str = "",
        options: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """``POST /v1/sys/mounts/<path>``: mount a secrets engine (default: KV version 2)."""
        payload: dict[str, Any] = {
            "type": backend_type,
            "description": description,
            "options": dict(options) if options is not None else {"version": "2"},
        }
        if config is not None:
            payload["config"] = dict(config)
        self._adapter.request("POST", "sys/mounts/" + join_path(path), json=payload)

    def disable_mount(self, path: str) -> None:
        """``DELETE /v1/sys/mounts/<path>``: unmount an engine and delete everything stored under it."""
        self._adapter.request("DELETE", "sys/mounts/" + join_path(path))

    def tune_mount(
        self,
        path: str,
        *,
        description: str | None = None,
        default_lease_ttl: str | int | None = None,
        max_lease_ttl: str | int | None = None,
    ) -> None:
        """``POST /v1/sys/mounts/<path>/tune``: change the settings given (the others are kept)."""
        payload: dict[str, Any] = {}
        if description is not None:
            payload["description"] = description
        if default_lease_ttl is not None:
            payload["default_lease_ttl"] = default_lease_ttl
        if max_lease_ttl is not None:
            payload["max_lease_ttl"] = max_lease_ttl
        self._adapter.request("POST", f"sys/mounts/{join_path(path)}/tune", json=payload)

    def read_mount_tune(self, path: str) -> JSONObject:
        """``GET /v1/sys/mounts/<path>/tune``: lease TTLs, description and options of a mount."""
        body = self._adapter.request("GET", f"sys/mounts/{join_path(path)}/tune")
        return _payload(body, what="mount tune")

    def move_mount(self, from_path: str, to_path: str) -> None:
        """``POST /v1/sys/remount``: move the engine at ``from_path`` to ``to_path`` with its data."""
        self._adapter.request(
            "POST", "sys/remount", json={"from": join_path(from_path), "to": join_path(to_path)}
        )

    def rotate_key(self) -> None:
        """``POST /v1/sys/rotate``: add a new keyring term (KEK version); new writes use it."""
        self._adapter.request("POST", "sys/rotate")

    def read_key_status(self) -> KeyStatus:
        """``GET /v1/sys/key-status``: the current term and its install time."""
        return cast(
            KeyStatus, _payload(self._adapter.request("GET", "sys/key-status"), what="key status")
        )

    def rewrap(self, *, max_records: int | None = None) -> JSONObject:
        """``POST /v1/sys/rewrap``: re-wrap stored ciphertexts with the newest key version (Kustos extension).

        With ``max_records``, at most that many records are re-wrapped in this
        call; the answer's ``remaining`` says how many are left, so callers can
        loop and show progress. The answer holds ``active_version``,
        ``scanned``, ``rewrapped``, ``remaining`` and ``failed``.
        """
        if max_records is not None and max_records < 1:
            raise InvalidRequestError(f"rewrap max_records must be 1 or more, got {max_records}")
        payload = {"max_records": max_records} if max_records is not None else {}
        return _payload(self._adapter.request("POST", "sys/rewrap", json=payload), what="rewrap")

    def read_keyring(self) -> JSONObject:
        """``GET /v1/sys/keyring``: the active key version and every version with its state (Kustos extension)."""
        return _payload(self._adapter.request("GET", "sys/keyring"), what="keyring")

    def disable_key_version(self, version: int) -> None:
        """``POST /v1/sys/keyring/disable``: retire an old key version once nothing uses it (Kustos extension)."""
        if version < 1:
            raise InvalidRequestError(f"key versions start at 1, got {version}")
        self._adapter.request("POST", "sys/keyring/disable", json={"version": int(version)})
