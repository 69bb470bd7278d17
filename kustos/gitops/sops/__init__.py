"""Encrypted files in the sops 3.x format: values encrypted, keys readable, integrity by MAC.

Layout: :mod:`.models` (the ``sops`` metadata block), :mod:`.trees` (the
leaf walk, path AAD and MAC rules), :mod:`.stores` (YAML, JSON, dotenv,
INI, binary), :mod:`.keysources` (age, PGP, AWS KMS, Vault transit, key
groups with Shamir), :mod:`.creation_rules` (``.sops.yaml``) and
:mod:`.operations` (encrypt, decrypt, re-encrypt, rotate, update keys). The
value cipher itself is :mod:`kustos.crypto.sops`. The CLI is
:mod:`kustos.cli.files`.
"""

from __future__ import annotations

from .creation_rules import CreationRule, find_config, load_rule, recipients_from
from .keysources import KeyServices
from .models import AgeKey, EncryptionRules, KmsKey, MasterKey, Metadata, PgpKey, VaultKey
from .operations import (
    DecryptedFile,
    decrypt_file,
    encrypt_file,
    extract,
    parse_tree_path,
    reencrypt,
    removed_recipients,
    rotate,
    set_value,
    unset_value,
    update_keys,
)
from .stores import store_for

__all__ = [
    "AgeKey",
    "CreationRule",
    "DecryptedFile",
    "EncryptionRules",
    "KeyServices",
    "KmsKey",
    "MasterKey",
    "Metadata",
    "PgpKey",
    "VaultKey",
    "decrypt_file",
    "encrypt_file",
    "extract",
    "find_config",
    "load_rule",
    "parse_tree_path",
    "recipients_from",
    "reencrypt",
    "removed_recipients",
    "rotate",
    "set_value",
    "store_for",
    "unset_value",
    "update_keys",
]
