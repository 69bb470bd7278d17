"""Wrapping and recovering a file's data key with its recipients and key groups.

With one key group every recipient wraps the whole data key and any one of
them recovers it. With several groups the data key is split with Shamir's
scheme (:mod:`kustos.crypto.shamir`, the byte format of sops/Vault), share
*i* is wrapped by every recipient of group *i*, and ``shamir_threshold``
groups are needed. Recovery calls each recipient's key source at most once
per file (age and PGP first, as sops orders them) and, when nothing works,
says which recipients were tried and why each failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kustos.crypto import shamir
from kustos.crypto.sops import DATA_KEY_SIZE
from kustos.errors import ConfigError, DecryptionError, KeyProviderError

from ..models import AgeKey, KmsKey, MasterKey, PgpKey, VaultKey
from . import age, hc_vault, kms, pgp

__all__ = ["KeyServices", "recover_data_key", "wrap_data_key"]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, kw_only=True)
class KeyServices:
    """What key sources need from the outside: the environment and the clock."""

    env: Mapping[str, str]
    now: Callable[[], dt.datetime] = _utc_now
    _age_identities: list[Any] = field(default_factory=list, repr=False, compare=False)

    def timestamp(self) -> str:
        """RFC 3339, UTC, seconds: sops's ``created_at``/``lastmodified``."""
        return self.now().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def age_identities(self) -> list[Any]:
        if not self._age_identities:
            self._age_identities.extend(age.load_identities(self.env))
        return self._age_identities


def _wrap_one(key: MasterKey, secret: bytes, services: KeyServices) -> MasterKey:
    created = services.timestamp()
    if isinstance(key, AgeKey):
        return replace(key, enc=age.encrypt(key.recipient, secret))
    if isinstance(key, PgpKey):
        return replace(key, enc=pgp.encrypt(key.fp, secret, env=services.env), created_at=created)
    if isinstance(key, KmsKey):
        return replace(key, enc=kms.encrypt(key, secret, env=services.env), created_at=created)
    if isinstance(key, VaultKey):
        return replace(key, enc=hc_vault.encrypt(key, secret, env=services.env), created_at=created)
    raise KeyProviderError(f"Kustos cannot encrypt for {key.identifier()}")


def wrap_data_key(
    groups: Sequence[Sequence[MasterKey]],
    data_key: bytes,
    *,
    threshold: int,
    services: KeyServices,
) -> tuple[tuple[MasterKey, ...], ...]:
    """Wrap ``data_key`` (or its Shamir shares) for every recipient; returns the filled groups."""
    if not groups or any(not g for g in groups):
        raise ConfigError(
            "no recipients: give --age, --pgp, --kms or --hc-vault-transit, or a .sops.yaml rule"
        )
    if len(groups) == 1:
        parts = [data_key]
    else:
        quorum = threshold or len(groups)
        if not 2 <= quorum <= len(groups):
            raise ConfigError(
                f"shamir threshold {quorum} must be between 2 and the number of key groups ({len(groups)})"
            )
        parts = shamir.split(data_key, len(groups), quorum)
    return tuple(
        tuple(_wrap_one(key, part, services) for key in group)
        for group, part in zip(groups, parts, strict=True)
    )


def _unwrap_one(key: MasterKey, services: KeyServices) -> bytes:
    if isinstance(key, AgeKey):
        return age.decrypt(key.enc, services.age_identities())
    if isinstance(key, PgpKey):
        return pgp.decrypt(key.enc, env=services.env)
    if isinstance(key, KmsKey):
        return kms.decrypt(key, env=services.env)
    if isinstance(key, VaultKey):
        return hc_vault.decrypt(key, env=services.env)
    raise DecryptionError("Kustos does not support this key type")


_ORDER = {"age": 0, "pgp": 1}


def recover_data_key(
    groups: Sequence[Sequence[MasterKey]],
    *,
    threshold: int,
    services: KeyServices,
) -> bytes:
    """The data key, from enough key groups; :class:`DecryptionError` listing what was tried."""
    needed = 1 if len(groups) == 1 else (threshold or len(groups))
    parts: list[bytes] = []
    tried: list[str] = []
    for index, group in enumerate(groups):
        if len(parts) >= needed:
            break
        for key in sorted(group, key=lambda k: _ORDER.get(k.kind, 2)):
            try:
                part = _unwrap_one(key, services)
            except (DecryptionError, KeyProviderError) as exc:
                label = f"group {index + 1}: " if len(groups) > 1 else ""
                tried.append(f"{label}{key.kind or 'other'} {key.identifier()} ({exc})")
                continue
            parts.append(part)
            break
    if len(parts) < needed:
        detail = "; ".join(tried) or "no recipients"
        if len(groups) > 1:
            raise DecryptionError(
                f"could not decrypt the data key: {len(parts)} of {needed} required key groups recovered. Tried: {detail}"
            )
        raise DecryptionError(f"could not decrypt the data key with any recipient. Tried: {detail}")
    data_key = parts[0] if len(groups) == 1 else shamir.combine(parts)
    if len(data_key) != DATA_KEY_SIZE:
        raise DecryptionError("the recovered data key has the wrong size")
    return data_key
