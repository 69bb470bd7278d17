"""The ``sops`` metadata block of an encrypted file, as values.

A sops file carries, next to its data, a ``sops`` block: the data key wrapped
for every recipient (``age``, ``pgp``, ``kms``, ``hc_vault``, ...), possibly
in several key groups with a Shamir threshold, the encrypted MAC with its
``lastmodified`` timestamp, which keys are (not) encrypted, and the format
version. This module turns that block into frozen dataclasses and back, in the
exact shape sops 3.x writes (keys sorted, a single key group written flat,
several as ``key_groups``), plus the flattened form dotenv and INI files use
(``pgp__list_0__map_fp``). Stores (``stores/``) read and write it; key
sources (``keysources/``) fill in ``enc``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final

from kustos.errors import ConfigError, DecryptionError

__all__ = [
    "FORMAT_VERSION",
    "AgeKey",
    "EncryptionRules",
    "KmsKey",
    "MasterKey",
    "Metadata",
    "OtherKey",
    "PgpKey",
    "VaultKey",
    "flatten_metadata",
    "metadata_from_dict",
    "metadata_to_dict",
    "unflatten_metadata",
]

#: The sops release whose file format Kustos writes (the ``version`` field).
FORMAT_VERSION: Final = "3.13.1"
DEFAULT_UNENCRYPTED_SUFFIX: Final = "_unencrypted"


@dataclass(frozen=True, kw_only=True)
class MasterKey:
    """One recipient of the data key (or of one Shamir share of it)."""

    kind: ClassVar[str] = ""
    enc: str = ""

    def identifier(self) -> str:
        """How the recipient is named in messages and compared by ``updatekeys``."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The entry as sops writes it (keys sorted)."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class AgeKey(MasterKey):
    """An age X25519 recipient; ``enc`` is an armored age file holding the data key."""

    kind: ClassVar[str] = "age"
    recipient: str

    def identifier(self) -> str:
        return self.recipient

    def to_dict(self) -> dict[str, Any]:
        return {"enc": self.enc, "recipient": self.recipient}


@dataclass(frozen=True, kw_only=True)
class PgpKey(MasterKey):
    """An OpenPGP key by fingerprint; ``enc`` is an armored PGP message."""

    kind: ClassVar[str] = "pgp"
    fp: str
    created_at: str = ""

    def identifier(self) -> str:
        return self.fp

    def to_dict(self) -> dict[str, Any]:
        return {"created_at": self.created_at, "enc": self.enc, "fp": self.fp}


@dataclass(frozen=True, kw_only=True)
class KmsKey(MasterKey):
    """An AWS KMS key by ARN; ``enc`` is the base64 KMS ciphertext blob."""

    kind: ClassVar[str] = "kms"
    arn: str
    role: str = ""
    context: Mapping[str, str] = field(default_factory=dict)
    aws_profile: str = ""
    created_at: str = ""

    def identifier(self) -> str:
        return self.arn

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"arn": self.arn, "aws_profile": self.aws_profile}
        if self.context:
            out["context"] = dict(sorted(self.context.items()))
        out["created_at"] = self.created_at
        out["enc"] = self.enc
        if self.role:
            out["role"] = self.role
        return out


@dataclass(frozen=True, kw_only=True)
class VaultKey(MasterKey):
    """A Vault-compatible transit key; ``enc`` is ``vault:vN:...`` ciphertext."""

    kind: ClassVar[str] = "hc_vault"
    vault_address: str
    engine_path: str
    key_name: str
    created_at: str = ""

    def identifier(self) -> str:
        return f"{self.vault_address}/v1/{self.engine_path}/keys/{self.key_name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at,
            "enc": self.enc,
            "engine_path": self.engine_path,
            "key_name": self.key_name,
            "vault_address": self.vault_address,
        }


@dataclass(frozen=True, kw_only=True)
class OtherKey(MasterKey):
    """A recipient type Kustos keeps but cannot use (``gcp_kms``, ``azure_kv``, ``hckms``)."""

    type_name: str
    fields: Mapping[str, Any]

    def identifier(self) -> str:
        name = next(
            (
                str(self.fields[k])
                for k in ("resource_id", "vault_url", "key_id")
                if k in self.fields
            ),
            "?",
        )
        return f"{self.type_name}:{name}"

    def to_dict(self) -> dict[str, Any]:
        return dict(sorted(self.fields.items()))


_KINDS: Final = ("age", "azure_kv", "gcp_kms", "hc_vault", "hckms", "kms", "pgp")


def _key_from_dict(kind: str, raw: Mapping[str, Any]) -> MasterKey | None:
    def s(name: str) -> str:
        value = raw.get(name)
        return "" if value is None else str(value)

    if kind == "age":
        return AgeKey(recipient=s("recipient"), enc=s("enc"))
    if kind == "pgp":
        return PgpKey(fp=s("fp"), created_at=s("created_at"), enc=s("enc"))
    if kind == "kms":
        if not s("arn"):  # sops 1.x writes empty placeholder entries
            return None
        context = raw.get("context") or {}
        return KmsKey(
            arn=s("arn"),
            role=s("role"),
            context={str(k): str(v) for k, v in dict(context).items()},
            aws_profile=s("aws_profile"),
            created_at=s("created_at"),
            enc=s("enc"),
        )
    if kind == "hc_vault":
        return VaultKey(
            vault_address=s("vault_address"),
            engine_path=s("engine_path"),
            key_name=s("key_name"),
            created_at=s("created_at"),
            enc=s("enc"),
        )
    return OtherKey(type_name=kind, fields=dict(raw), enc=s("enc"))


@dataclass(frozen=True, kw_only=True)
class EncryptionRules:
    """Which leaves get encrypted: at most one selector, as in sops."""

    unencrypted_suffix: str = ""
    encrypted_suffix: str = ""
    unencrypted_regex: str = ""
    encrypted_regex: str = ""
    unencrypted_comment_regex: str = ""
    encrypted_comment_regex: str = ""
    mac_only_encrypted: bool = False

    _SELECTORS: ClassVar[tuple[str, ...]] = (
        "unencrypted_suffix",
        "encrypted_suffix",
        "unencrypted_regex",
        "encrypted_regex",
        "unencrypted_comment_regex",
        "encrypted_comment_regex",
    )

    def normalized(self) -> EncryptionRules:
        """Check that at most one selector is set; default to ``unencrypted_suffix: _unencrypted``."""
        chosen = [name for name in self._SELECTORS if getattr(self, name)]
        if len(chosen) > 1:
            raise ConfigError(
                "cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, "
                f"unencrypted_regex, encrypted_comment_regex or unencrypted_comment_regex (got {', '.join(chosen)})"
            )
        if chosen and chosen[0].endswith("comment_regex"):
            raise ConfigError(f"{chosen[0]} is not supported by Kustos yet")
        for name in ("unencrypted_regex", "encrypted_regex"):
            pattern = getattr(self, name)
            if pattern:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(
                        f"{name} {pattern!r} is not a valid regular expression: {exc}"
                    ) from None
        if not chosen:
            return replace(self, unencrypted_suffix=DEFAULT_UNENCRYPTED_SUFFIX)
        return self

    def should_encrypt(self, path: Sequence[str]) -> bool:
        """sops's ``shouldBeEncrypted`` for a leaf at ``path`` (map keys only)."""
        if self.unencrypted_suffix:
            suffix = self.unencrypted_suffix
            for part in path:
                if part.endswith(suffix):
                    return False
            return True
        if self.encrypted_suffix:
            return any(part.endswith(self.encrypted_suffix) for part in path)
        if self.unencrypted_regex:
            return not any(re.search(self.unencrypted_regex, part) for part in path)
        if self.encrypted_regex:
            return any(re.search(self.encrypted_regex, part) for part in path)
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: getattr(self, name) for name in self._SELECTORS if getattr(self, name)
        }
        if self.mac_only_encrypted:
            out["mac_only_encrypted"] = True
        return out


KeyGroup = tuple[MasterKey, ...]


@dataclass(frozen=True, kw_only=True)
class Metadata:
    """The whole ``sops`` block of one file."""

    key_groups: tuple[KeyGroup, ...]
    rules: EncryptionRules = field(default_factory=EncryptionRules)
    shamir_threshold: int = 0
    lastmodified: str = ""
    mac: str = ""
    version: str = FORMAT_VERSION

    def all_keys(self) -> list[MasterKey]:
        """Every recipient in every group, in file order."""
        return [key for group in self.key_groups for key in group]


def metadata_to_dict(metadata: Metadata) -> dict[str, Any]:
    """The ``sops`` block as sops 3.x writes it: keys sorted, empty lists left out."""
    out: dict[str, Any] = {}
    groups = metadata.key_groups

    def group_dict(group: KeyGroup) -> dict[str, list[dict[str, Any]]]:
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for key in group:
            kind = key.type_name if isinstance(key, OtherKey) else key.kind
            by_kind.setdefault(kind, []).append(key.to_dict())
        return by_kind

    if len(groups) == 1:
        out.update(group_dict(groups[0]))
    else:
        out["key_groups"] = [dict(sorted(group_dict(g).items())) for g in groups]
    out["lastmodified"] = metadata.lastmodified
    out["mac"] = metadata.mac
    out.update(metadata.rules.to_dict())
    if metadata.shamir_threshold and len(groups) > 1:
        out["shamir_threshold"] = metadata.shamir_threshold
    out["version"] = metadata.version
    return dict(sorted(out.items()))


def _group_from_dict(raw: Mapping[str, Any]) -> KeyGroup:
    keys: list[MasterKey] = []
    for kind in _KINDS:
        entries = raw.get(kind) or []
        if not isinstance(entries, list):
            raise DecryptionError(f"sops metadata: '{kind}' must be a list")
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise DecryptionError(f"sops metadata: every '{kind}' entry must be a mapping")
            key = _key_from_dict(kind, entry)
            if key is not None:
                keys.append(key)
    return tuple(keys)


def metadata_from_dict(raw: Mapping[str, Any]) -> Metadata:
    """Parse a ``sops`` block (from YAML, JSON, or :func:`unflatten_metadata`)."""
    if not isinstance(raw, Mapping):
        raise DecryptionError("sops metadata is not a mapping")
    if raw.get("key_groups"):
        groups = tuple(_group_from_dict(g) for g in raw["key_groups"])
    else:
        groups = (_group_from_dict(raw),)
    groups = tuple(g for g in groups if g)
    if not groups:
        raise DecryptionError("sops metadata lists no keys: no recipient can decrypt this file")

    def text(name: str) -> str:
        value = raw.get(name)
        return "" if value is None else str(value)

    mac_only = raw.get("mac_only_encrypted", False)
    rules = EncryptionRules(
        unencrypted_suffix=text("unencrypted_suffix"),
        encrypted_suffix=text("encrypted_suffix"),
        unencrypted_regex=text("unencrypted_regex"),
        encrypted_regex=text("encrypted_regex"),
        unencrypted_comment_regex=text("unencrypted_comment_regex"),
        encrypted_comment_regex=text("encrypted_comment_regex"),
        mac_only_encrypted=mac_only is True or str(mac_only).lower() == "true",
    )
    try:
        rules = rules.normalized()
        threshold = int(raw.get("shamir_threshold") or 0)
    except (ConfigError, ValueError) as exc:
        raise DecryptionError(f"sops metadata is invalid: {exc}") from None
    lastmodified: Any = raw.get("lastmodified")
    if lastmodified is not None and hasattr(
        lastmodified, "strftime"
    ):  # a YAML loader made a datetime
        lastmodified = lastmodified.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Metadata(
        key_groups=groups,
        rules=rules,
        shamir_threshold=threshold,
        lastmodified=str(lastmodified or ""),
        mac=text("mac"),
        version=text("version"),
    )


_MAP: Final = "__map_"
_LIST: Final = "__list_"


def flatten_metadata(block: Mapping[str, Any], *, escape_newlines: bool) -> dict[str, str]:
    """Flatten a ``sops`` block for dotenv/INI: ``pgp__list_0__map_fp``, values as strings."""
    out: dict[str, str] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                put(f"{prefix}{_MAP}{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                put(f"{prefix}{_LIST}{i}", v)
        else:
            if isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            out[prefix] = text.replace("\n", "\\n") if escape_newlines else text

    for key, value in block.items():
        if isinstance(value, Mapping):
            for k, v in value.items():
                put(f"{key}{_MAP}{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                put(f"{key}{_LIST}{i}", v)
        else:
            put(key, value)
    return dict(sorted(out.items()))


_TOKEN_RE: Final = re.compile(r"__(map|list)_")


def unflatten_metadata(flat: Mapping[str, str], *, unescape_newlines: bool) -> dict[str, Any]:
    """Rebuild a ``sops`` block from its flattened form."""
    root: dict[str, Any] = {}
    for flat_key, raw_value in flat.items():
        value = raw_value.replace("\\n", "\n") if unescape_newlines else raw_value
        parts = _TOKEN_RE.split(flat_key)
        # parts: [first, kind, name, kind, name, ...]
        tokens: list[str | int] = [parts[0]]
        for kind, name in zip(parts[1::2], parts[2::2], strict=True):
            tokens.append(int(name) if kind == "list" else name)
        node: Any = root
        for token, nxt in itertools.pairwise(tokens):
            empty: Any = {} if isinstance(nxt, str) else []
            if isinstance(token, int):
                while len(node) <= token:
                    node.append(None)
                if node[token] is None:
                    node[token] = empty
                node = node[token]
            else:
                node = node.setdefault(token, empty)
        last = tokens[-1]
        if isinstance(last, int):
            while len(node) <= last:
                node.append(None)
            node[last] = value
        else:
            node[last] = value
    return root
