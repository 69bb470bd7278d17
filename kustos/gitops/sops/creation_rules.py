"""``.sops.yaml`` creation rules: which recipients and selectors a new file gets.

The config is looked up from the current directory upwards (``.sops.yaml``),
as sops does, or given with ``--config``. The first rule whose ``path_regex``
matches the file's path (relative to the config's directory) wins; a rule
without ``path_regex`` matches every file. A rule names recipients flat
(``age``, ``pgp``, ``kms``, ``hc_vault_transit_uri``: a comma-separated string
or a list) or as ``key_groups`` with ``shamir_threshold``, plus at most one of
the four encrypt/unencrypt selectors and ``mac_only_encrypted``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kustos.errors import ConfigError

from .keysources import age, hc_vault, kms
from .models import AgeKey, EncryptionRules, MasterKey, PgpKey

__all__ = ["CreationRule", "find_config", "load_rule", "recipients_from"]

CONFIG_NAME = ".sops.yaml"


@dataclass(frozen=True, kw_only=True)
class CreationRule:
    """The recipients and selectors for one file."""

    key_groups: tuple[tuple[MasterKey, ...], ...]
    shamir_threshold: int = 0
    rules: EncryptionRules = field(default_factory=EncryptionRules)


def find_config(start: Path) -> Path | None:
    """The nearest ``.sops.yaml`` in ``start`` or its parents."""
    current = start.resolve()
    for directory in (current, *current.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ConfigError(f"expected a string or a list of strings, got {type(value).__name__}")


def recipients_from(
    *,
    age_recipients: list[str] = (),  # type: ignore[assignment]
    pgp_fps: list[str] = (),  # type: ignore[assignment]
    kms_arns: list[str] = (),  # type: ignore[assignment]
    vault_uris: list[str] = (),  # type: ignore[assignment]
    kms_context: Mapping[str, str] | None = None,
    aws_profile: str = "",
) -> tuple[MasterKey, ...]:
    """One key group from recipient names (flags, environment or a rule)."""
    group: list[MasterKey] = []
    for recipient in age_recipients:
        age.parse_recipient(recipient)
        group.append(AgeKey(recipient=recipient))
    group.extend(PgpKey(fp=fp.replace(" ", "")) for fp in pgp_fps)
    for arn in kms_arns:
        group.extend(kms.parse_arns(arn, context=kms_context, profile=aws_profile))
    group.extend(hc_vault.parse_uri(uri) for uri in vault_uris)
    return tuple(group)


def _kms_entries(value: Any, profile: str) -> list[str]:
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        raise ConfigError("use plain ARNs here; KMS entries with context belong in key_groups")
    return _names(value)


def _rule_from(raw: Mapping[str, Any]) -> CreationRule:
    profile = str(raw.get("aws_profile") or "")
    groups: list[tuple[MasterKey, ...]] = []
    if raw.get("key_groups"):
        for group in raw["key_groups"]:
            keys: list[MasterKey] = list(
                recipients_from(
                    age_recipients=_names(group.get("age")),
                    pgp_fps=_names(group.get("pgp")),
                    vault_uris=_names(group.get("hc_vault")),
                )
            )
            for entry in group.get("kms") or []:
                if isinstance(entry, Mapping):
                    context = {str(k): str(v) for k, v in (entry.get("context") or {}).items()}
                    role = str(entry.get("role") or "")
                    arn = str(entry["arn"]) + (f"+{role}" if role else "")
                    keys.extend(
                        kms.parse_arns(
                            arn, context=context, profile=str(entry.get("aws_profile") or profile)
                        )
                    )
                else:
                    keys.extend(kms.parse_arns(str(entry), profile=profile))
            groups.append(tuple(keys))
    else:
        flat = recipients_from(
            age_recipients=_names(raw.get("age")),
            pgp_fps=_names(raw.get("pgp")),
            kms_arns=_kms_entries(raw.get("kms"), profile),
            vault_uris=_names(raw.get("hc_vault_transit_uri")),
            aws_profile=profile,
        )
        if flat:
            groups.append(flat)
    rules = EncryptionRules(
        unencrypted_suffix=str(raw.get("unencrypted_suffix") or ""),
        encrypted_suffix=str(raw.get("encrypted_suffix") or ""),
        unencrypted_regex=str(raw.get("unencrypted_regex") or ""),
        encrypted_regex=str(raw.get("encrypted_regex") or ""),
        unencrypted_comment_regex=str(raw.get("unencrypted_comment_regex") or ""),
        encrypted_comment_regex=str(raw.get("encrypted_comment_regex") or ""),
        mac_only_encrypted=bool(raw.get("mac_only_encrypted")),
    )
    return CreationRule(
        key_groups=tuple(groups),
        shamir_threshold=int(raw.get("shamir_threshold") or 0),
        rules=rules,
    )


def load_rule(config: Path, file_path: Path) -> CreationRule | None:
    """The first creation rule of ``config`` matching ``file_path``, or None."""
    try:
        document = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {config}: {exc}") from None
    rules = document.get("creation_rules") if isinstance(document, Mapping) else None
    if not rules:
        return None
    config_dir = str(config.resolve().parent) + "/"
    absolute = str(file_path.resolve())
    relative = absolute[len(config_dir) :] if absolute.startswith(config_dir) else str(file_path)
    for raw in rules:
        pattern = raw.get("path_regex") or ""
        try:
            if not pattern or re.search(pattern, relative):
                return _rule_from(raw)
        except re.error as exc:
            raise ConfigError(f"invalid path_regex {pattern!r} in {config}: {exc}") from None
    return None
