"""The sealing endpoints: ``/v1/cert.pem``, ``/v1/verify``, ``/v1/rotate`` and ``sys/sealing/*``.

One method per endpoint, named verb_object; each docstring names the HTTP
method and path under ``/v1/``. Requests and answers are plain JSON
documents (SealedSecrets and Secrets as dicts); the sealing library
(:mod:`kustos.gitops.sealing`) parses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, cast

from kustos.client._http import Adapter, JSONObject
from kustos.errors import CheckAndSetError, KustosError

__all__ = ["SealingKeyInfo", "SealingKeys", "UnsealResult"]


class SealingKeyInfo(TypedDict, total=False):
    """One sealing key as ``sys/sealing/keys`` lists it."""

    key_id: str
    created: str
    not_after: str
    active: bool
    origin: str
    bits: int
    imported: bool


class UnsealResult(TypedDict):
    """``sys/sealing/unseal``: the Secret manifest and the key that opened it."""

    secret: dict[str, Any]
    key_id: str | None


def _data(body: JSONObject | None, what: str) -> dict[str, Any]:
    data = (body or {}).get("data")
    if not isinstance(data, dict):
        raise KustosError(f"{what}: the server's answer has no data")
    return data


class SealingKeys:
    """Sealing keys held by the server, and the Sealed Secrets controller endpoints."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def read_certificate(self) -> bytes:
        """``GET /v1/cert.pem``: the newest sealing certificate (PEM, RSA only, no token needed)."""
        return self._raw_get("cert.pem")

    def read_certificate_bundle(self) -> bytes:
        """``GET /v1/sys/sealing/cert``: the newest certificate plus its X25519 exchange certificate."""
        return self._raw_get("sys/sealing/cert")

    def _raw_get(self, path: str) -> bytes:
        # the adapter decodes JSON; these two answer PEM text
        return self._adapter.get_bytes("/v1/" + path)

    def verify(self, sealed_secret: Mapping[str, Any]) -> bool:
        """``POST /v1/verify``: True when the server's keys open every value (200), False on 409."""
        try:
            self._adapter.request("POST", "verify", json=dict(sealed_secret))
        except CheckAndSetError:  # 409: the table's conflict status
            return False
        return True

    def rotate(self, sealed_secret: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/rotate``: the SealedSecret re-encrypted with the newest key."""
        body = self._adapter.request("POST", "rotate", json=dict(sealed_secret))
        if not isinstance(body, dict):
            raise KustosError("rotate: the server's answer is empty")
        return body

    def list_keys(self) -> list[SealingKeyInfo]:
        """``GET /v1/sys/sealing/keys``: every key (newest seals, all unseal)."""
        data = _data(self._adapter.request("GET", "sys/sealing/keys"), "sys/sealing/keys")
        return cast(list[SealingKeyInfo], data.get("keys") or [])

    def rotate_key(self) -> SealingKeyInfo:
        """``POST /v1/sys/sealing/keys/rotate``: a new sealing key now."""
        return cast(
            SealingKeyInfo,
            _data(self._adapter.request("POST", "sys/sealing/keys/rotate"), "rotate"),
        )

    def backup_keys(
        self, *, passphrase: str | None = None, age_recipients: Sequence[str] = ()
    ) -> dict[str, Any]:
        """``POST /v1/sys/sealing/keys/backup`` (sudo): ``{"backup": <bundle text>, "keys": n, ...}``."""
        payload: dict[str, Any] = {}
        if passphrase is not None:
            payload["passphrase"] = passphrase
        if age_recipients:
            payload["age_recipients"] = list(age_recipients)
        return _data(
            self._adapter.request("POST", "sys/sealing/keys/backup", json=payload), "backup"
        )

    def import_keys(
        self,
        *,
        secrets: Sequence[Mapping[str, Any]] | None = None,
        manifest: str | None = None,
        backup: str | None = None,
        passphrase: str | None = None,
        age_identities: Sequence[str] = (),
    ) -> list[SealingKeyInfo]:
        """``POST /v1/sys/sealing/keys/import`` (sudo): Sealed Secrets key Secrets or a backup bundle."""
        payload: dict[str, Any] = {}
        if secrets is not None:
            payload["secrets"] = [dict(s) for s in secrets]
        if manifest is not None:
            payload["manifest"] = manifest
        if backup is not None:
            payload["backup"] = backup
        if passphrase is not None:
            payload["passphrase"] = passphrase
        if age_identities:
            payload["age_identities"] = list(age_identities)
        data = _data(
            self._adapter.request("POST", "sys/sealing/keys/import", json=payload), "import"
        )
        return cast(list[SealingKeyInfo], data.get("keys") or [])

    def read_config(self) -> dict[str, Any]:
        """``GET /v1/sys/sealing/config``: renewal period (seconds), cut-off time, key size, next renewal."""
        return _data(self._adapter.request("GET", "sys/sealing/config"), "config")

    def configure(
        self,
        *,
        renew_period: str | int | None = None,
        key_cutoff_time: str | None = None,
        key_bits: int | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/sys/sealing/config``; ``renew_period`` 0 disables renewal, ``key_cutoff_time`` "" clears it."""
        payload: dict[str, Any] = {}
        if renew_period is not None:
            payload["renew_period"] = renew_period
        if key_cutoff_time is not None:
            payload["key_cutoff_time"] = key_cutoff_time
        if key_bits is not None:
            payload["key_bits"] = key_bits
        return _data(self._adapter.request("POST", "sys/sealing/config", json=payload), "config")

    def unseal(self, sealed_secret: Mapping[str, Any]) -> UnsealResult:
        """``POST /v1/sys/sealing/unseal``: the Secret a SealedSecret (either group) stands for."""
        data = _data(
            self._adapter.request(
                "POST", "sys/sealing/unseal", json={"sealed_secret": dict(sealed_secret)}
            ),
            "unseal",
        )
        return UnsealResult(secret=data["secret"], key_id=data.get("key_id"))
