"""GitOps sealing: Sealed Secrets-compatible SealedSecrets, Kustos' native format, and their keys.

Layout (the cryptography itself is in :mod:`kustos.crypto.sealing`):

* :mod:`.manifests`  — reading/writing manifests, decoding a ``v1 Secret``;
* :mod:`.scopes`     — strict / namespace-wide / cluster-wide and their labels;
* :mod:`.formats`    — API versions, annotations, the native layout;
* :mod:`.encrypting` — Secret → SealedSecret, ``--raw``, ``--merge-into``;
* :mod:`.unsealing`  — SealedSecret + private keys → Secret (operator, recovery);
* :mod:`.templating` — ``spec.template.data`` rendering;
* :mod:`.keyrings`   — the keyring, renewal/cut-off policy, Sealed Secrets key import;
* :mod:`.backups`    — encrypted key backup bundles (age or passphrase).

The CLI (:mod:`kustos.cli.seal`) is a thin layer over these.
"""

from __future__ import annotations

from kustos.gitops.sealing.backups import is_backup, read_backup, write_backup
from kustos.gitops.sealing.encrypting import (
    check_certificates,
    merge_into,
    seal_raw,
    seal_secret,
    seal_values,
)
from kustos.gitops.sealing.formats import (
    BITNAMI_API_VERSION,
    KEY_ID_ANNOTATION,
    NATIVE_API_VERSION,
    SealFormat,
    format_of,
)
from kustos.gitops.sealing.keyrings import (
    DEFAULT_RENEWAL_PERIOD,
    KEYRING_AAD,
    SEALED_SECRETS_KEY_LABEL,
    RenewalPolicy,
    SealingKeyEntry,
    SealingKeyring,
    import_sealed_secrets_keys,
    renew,
    to_sealed_secrets_key_secret,
)
from kustos.gitops.sealing.manifests import (
    SecretManifest,
    dump_manifest,
    dump_manifests,
    load_manifest,
    load_manifests,
    parse_secret,
)
from kustos.gitops.sealing.scopes import (
    CLUSTER_WIDE_ANNOTATION,
    NAMESPACE_WIDE_ANNOTATION,
    Scope,
    scope_label,
    scope_of,
)
from kustos.gitops.sealing.unsealing import UnsealedSecret, open_values, reencrypt, unseal

__all__ = [
    "BITNAMI_API_VERSION",
    "CLUSTER_WIDE_ANNOTATION",
    "DEFAULT_RENEWAL_PERIOD",
    "KEYRING_AAD",
    "KEY_ID_ANNOTATION",
    "NAMESPACE_WIDE_ANNOTATION",
    "NATIVE_API_VERSION",
    "SEALED_SECRETS_KEY_LABEL",
    "RenewalPolicy",
    "Scope",
    "SealFormat",
    "SealingKeyEntry",
    "SealingKeyring",
    "SecretManifest",
    "UnsealedSecret",
    "check_certificates",
    "dump_manifest",
    "dump_manifests",
    "format_of",
    "import_sealed_secrets_keys",
    "is_backup",
    "load_manifest",
    "load_manifests",
    "merge_into",
    "open_values",
    "parse_secret",
    "read_backup",
    "reencrypt",
    "renew",
    "scope_label",
    "scope_of",
    "seal_raw",
    "seal_secret",
    "seal_values",
    "to_sealed_secrets_key_secret",
    "unseal",
    "write_backup",
]
