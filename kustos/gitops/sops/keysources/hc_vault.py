"""Vault-compatible transit recipients (``hc_vault``) over httpx.

Speaks Vault's documented transit API, so the same entry works with
HashiCorp Vault, the Kustos server's transit engine, or the sops binary:
``POST /v1/<engine>/encrypt/<key>`` with ``{"plaintext": base64(data key)}``
returns ``vault:vN:...`` ciphertext; ``POST /v1/<engine>/decrypt/<key>``
returns the base64 plaintext. The token comes from ``VAULT_TOKEN`` or
``~/.vault-token``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kustos.errors import ConfigError, DecryptionError, KeyProviderError

from ..models import VaultKey

if TYPE_CHECKING:  # httpx is imported when a transit call is made: it costs ~0.1 s of CLI start-up
    import httpx

__all__ = ["decrypt", "encrypt", "parse_uri"]

_PATH = re.compile(r"^/v\d+/(?P<engine>.+)/keys/(?P<key>[^/]+)/?$")


def parse_uri(uri: str) -> VaultKey:
    """``https://vault:8200/v1/<engine>/keys/<name>``, as ``--hc-vault-transit`` takes it."""
    parts = urlsplit(uri.strip())
    match = _PATH.match(parts.path)
    if not parts.scheme or not parts.netloc or match is None:
        raise ConfigError(
            f"invalid Vault transit URI {uri!r} (expected https://vault.example.com:8200/v1/transit/keys/NAME)"
        )
    return VaultKey(
        vault_address=f"{parts.scheme}://{parts.netloc}",
        engine_path=match.group("engine").strip("/"),
        key_name=match.group("key"),
    )


def _token(env: Mapping[str, str]) -> str:
    if env.get("VAULT_TOKEN"):
        return env["VAULT_TOKEN"]
    path = Path(env.get("HOME", "~")).expanduser() / ".vault-token"
    return path.read_text().strip() if path.is_file() else ""


def _errors(response: httpx.Response) -> str:
    """Vault's ``{"errors": [...]}`` as ``": a; b"`` (they name the failure, never a secret)."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(errors, list) or not errors:
        return ""
    return ": " + "; ".join(str(e)[:200] for e in errors[:3])


def _post(
    key: VaultKey, op: str, body: dict[str, str], env: Mapping[str, str]
) -> dict[str, object]:
    url = f"{key.vault_address}/v1/{key.engine_path}/{op}/{key.key_name}"
    headers = {"X-Vault-Token": _token(env)}
    if env.get("VAULT_NAMESPACE"):
        headers["X-Vault-Namespace"] = env["VAULT_NAMESPACE"]
    import httpx

    response = httpx.post(url, json=body, headers=headers, timeout=30.0)
    if response.status_code != 200:
        raise KeyProviderError(
            f"Vault transit {op} at {url} answered HTTP {response.status_code}{_errors(response)}"
        )
    data = response.json().get("data")
    if not isinstance(data, dict):
        raise KeyProviderError(f"Vault transit {op} at {url} returned no data")
    return data


def encrypt(key: VaultKey, data_key: bytes, *, env: Mapping[str, str]) -> str:
    """``vault:vN:...`` ciphertext of the data key."""
    import httpx

    try:
        data = _post(key, "encrypt", {"plaintext": base64.b64encode(data_key).decode()}, env)
    except httpx.HTTPError as exc:
        raise KeyProviderError(
            f"cannot reach Vault at {key.vault_address}: {type(exc).__name__}"
        ) from None
    ciphertext = data.get("ciphertext")
    if not isinstance(ciphertext, str):
        raise KeyProviderError("Vault transit encrypt returned no ciphertext")
    return ciphertext


def decrypt(key: VaultKey, *, env: Mapping[str, str]) -> bytes:
    """Recover the data key through transit decrypt."""
    import httpx

    try:
        data = _post(key, "decrypt", {"ciphertext": key.enc}, env)
        return base64.b64decode(str(data.get("plaintext", "")), validate=True)
    except (httpx.HTTPError, KeyProviderError, ValueError) as exc:
        raise DecryptionError(f"Vault transit refused: {exc}") from None
