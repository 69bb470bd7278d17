"""The sealing keyring: every sealing key a cluster ever had, and when to make the next.

A :class:`SealingKeyring` holds :class:`SealingKeyEntry` items (private key,
self-signed certificate, creation time, origin), oldest first. The newest
entry seals; every entry unseals (old keys are never dropped by renewal, so
SealedSecrets already in Git keep working). It serializes with
:meth:`SealingKeyring.to_bytes` to one JSON document that contains the
private keys in PEM: **that blob is secret**. The server stores it wrapped by
its key provider (``KeyProvider.wrap(blob, aad=b"kustos/sealing-keyring")``),
and :mod:`kustos.gitops.sealing.backups` encrypts it for backups; nothing in
Kustos writes it in plaintext except the explicit local-file mode of
``kustos seal keys``.

Renewal is a pure function of ``now`` (:class:`RenewalPolicy`): a new key is
due when there is none, when the newest is older than ``period`` (Sealed
Secrets: 30 days), or when the newest was created before the ``cutoff``
(Sealed Secrets' ``--key-cutoff-time``: "make a fresh key now, e.g. after a
suspected leak"). :func:`renew` applies it.

Sealed Secrets keeps its keys as ``kubernetes.io/tls`` Secrets labelled
``sealedsecrets.bitnami.com/sealed-secrets-key``; :func:`import_sealed_secrets_keys`
reads them (a List, several documents or one Secret) so a cluster migrates
without re-sealing, and :func:`to_sealed_secrets_key_secret` writes one back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Final

from kustos.crypto.sealing import (
    SealingCertificate,
    SealingKeyPair,
    SealingPrivateKey,
    generate_sealing_key,
    load_certificate,
    load_private_key,
)
from kustos.errors import InvalidRequestError
from kustos.gitops.sealing.manifests import describe
from kustos.sensitive import Sensitive

__all__ = [
    "DEFAULT_RENEWAL_PERIOD",
    "KEYRING_AAD",
    "SEALED_SECRETS_KEY_LABEL",
    "RenewalPolicy",
    "SealingKeyEntry",
    "SealingKeyring",
    "import_sealed_secrets_keys",
    "renew",
    "to_sealed_secrets_key_secret",
]

SEALED_SECRETS_KEY_LABEL: Final = "sealedsecrets.bitnami.com/sealed-secrets-key"
DEFAULT_RENEWAL_PERIOD: Final = timedelta(days=30)
KEYRING_AAD: Final = b"kustos/sealing-keyring"
"""Associated data the server should use when it wraps :meth:`SealingKeyring.to_bytes`."""
_FORMAT: Final = "kustos.io/sealing-keyring/v1"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return value.astimezone(UTC)


def _parse_time(text: str, *, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(f"{what}: invalid timestamp {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SealingKeyEntry:
    """One sealing key: private half, certificate, when it was made and where it came from."""

    private_key: SealingPrivateKey
    certificate: SealingCertificate
    created_at: datetime
    origin: str = "generated"

    def __post_init__(self) -> None:
        if not self.private_key.matches(self.certificate):
            raise InvalidRequestError(
                f"sealing key {self.private_key.key_id}: certificate holds another public key"
            )
        object.__setattr__(self, "created_at", _utc(self.created_at))

    @property
    def key_id(self) -> str:
        return self.private_key.key_id

    @cached_property
    def bundle(self) -> SealingCertificate:
        """The certificate with its X25519 exchange certificate attached (native format's fast path)."""
        return self.private_key.with_exchange(self.certificate)

    def describe(self) -> dict[str, Any]:
        """Public facts for listings (no private material)."""
        return {
            "key_id": self.key_id,
            "created_at": self.created_at.isoformat(),
            "not_after": self.certificate.not_after.isoformat(),
            "bits": self.certificate.key_size,
            "origin": self.origin,
        }


@dataclass(frozen=True)
class SealingKeyring:
    """All sealing keys, oldest first; the newest seals, all unseal."""

    entries: tuple[SealingKeyEntry, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for entry in self.entries:
            if entry.key_id in seen:
                raise InvalidRequestError(
                    f"sealing key {entry.key_id} appears twice in the keyring"
                )
            seen.add(entry.key_id)
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda e: e.created_at)))

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def newest(self) -> SealingKeyEntry | None:
        return self.entries[-1] if self.entries else None

    def sealing_certificate(self) -> SealingCertificate:
        """The certificate to seal with (the newest key's); served as ``/v1/cert.pem``."""
        if self.newest is None:
            raise InvalidRequestError(
                "the sealing keyring is empty: generate or import a key first"
            )
        return self.newest.certificate

    def sealing_bundle(self) -> SealingCertificate:
        """The newest key's certificate with its X25519 exchange certificate (``bundle_pem()``)."""
        if self.newest is None:
            raise InvalidRequestError(
                "the sealing keyring is empty: generate or import a key first"
            )
        return self.newest.bundle

    def private_keys(self) -> list[SealingPrivateKey]:
        """Every private key, newest first (the order unsealing tries them without a hint)."""
        return [e.private_key for e in reversed(self.entries)]

    def find(self, key_id: str) -> SealingKeyEntry | None:
        return next((e for e in self.entries if e.key_id == key_id), None)

    def with_entries(self, new: Iterable[SealingKeyEntry]) -> SealingKeyring:
        """A keyring with ``new`` added; keys already present (same key id) are skipped."""
        known = {e.key_id for e in self.entries}
        added: list[SealingKeyEntry] = []
        for entry in new:
            if entry.key_id not in known:
                known.add(entry.key_id)
                added.append(entry)
        return SealingKeyring(entries=self.entries + tuple(added))

    def to_bytes(self) -> Sensitive[bytes]:
        """Serialize (private keys included) to JSON bytes; wrap before storing."""
        doc = {
            "format": _FORMAT,
            "keys": [
                {
                    "keyId": e.key_id,
                    "createdAt": e.created_at.isoformat(),
                    "origin": e.origin,
                    "certificate": e.certificate.pem().decode(),
                    "privateKey": e.private_key.pem().reveal().decode(),
                }
                for e in self.entries
            ],
        }
        return Sensitive(json.dumps(doc, indent=1).encode())

    @classmethod
    def from_bytes(cls, data: bytes | Sensitive[bytes]) -> SealingKeyring:
        """Reverse :meth:`to_bytes`; errors name the entry, never show key material."""
        raw = data.reveal() if isinstance(data, Sensitive) else data
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidRequestError(
                "sealing keyring: not a keyring document (invalid JSON)"
            ) from None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != _FORMAT
            or not isinstance(doc.get("keys"), list)
        ):
            raise InvalidRequestError(f"sealing keyring: expected format {_FORMAT!r}")
        entries = []
        for i, item in enumerate(doc["keys"]):
            what = f"sealing keyring entry {i}"
            try:
                entry = SealingKeyEntry(
                    private_key=load_private_key(item["privateKey"].encode()),
                    certificate=load_certificate(item["certificate"].encode()),
                    created_at=_parse_time(item["createdAt"], what=what),
                    origin=str(item.get("origin", "generated")),
                )
            except (KeyError, TypeError, AttributeError):
                raise InvalidRequestError(f"{what}: missing or malformed field") from None
            except InvalidRequestError as exc:
                raise InvalidRequestError(f"{what}: {exc}") from None
            if item.get("keyId") not in (None, entry.key_id):
                raise InvalidRequestError(f"{what}: keyId does not match the key")
            entries.append(entry)
        return cls(entries=tuple(entries))


Generator = Callable[[datetime], SealingKeyPair]


def _default_generator(now: datetime) -> SealingKeyPair:
    return generate_sealing_key(now=now)


@dataclass(frozen=True)
class RenewalPolicy:
    """When a new sealing key is due; pure functions of ``now``.

    ``period`` None disables periodic renewal (Sealed Secrets' ``--key-renew-period=0``).
    ``cutoff``: a newest key created before it is replaced at once.
    """

    period: timedelta | None = DEFAULT_RENEWAL_PERIOD
    cutoff: datetime | None = field(default=None)

    def __post_init__(self) -> None:
        if self.period is not None and self.period <= timedelta(0):
            raise InvalidRequestError("renewal period must be positive (or None to disable)")
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", _utc(self.cutoff))

    def next_renewal(self, keyring: SealingKeyring) -> datetime | None:
        """When the next key is due by period (None: never, or now if the keyring is empty)."""
        newest = keyring.newest
        if newest is None:
            return datetime.min.replace(tzinfo=UTC)
        if self.period is None:
            return None
        return newest.created_at + self.period

    def renewal_due(self, keyring: SealingKeyring, *, now: datetime) -> bool:
        """True when :func:`renew` would add a key at ``now``."""
        now = _utc(now)
        newest = keyring.newest
        if newest is None:
            return True
        if self.cutoff is not None and newest.created_at < self.cutoff <= now:
            return True
        due = self.next_renewal(keyring)
        return due is not None and now >= due


def renew(
    keyring: SealingKeyring,
    *,
    policy: RenewalPolicy,
    now: datetime,
    generate: Generator = _default_generator,
) -> tuple[SealingKeyring, SealingKeyEntry | None]:
    """Add a fresh key when ``policy`` says one is due; old keys stay for unsealing.

    Returns the (possibly unchanged) keyring and the new entry, or None.
    """
    if not policy.renewal_due(keyring, now=now):
        return keyring, None
    pair = generate(_utc(now))
    entry = SealingKeyEntry(
        private_key=pair.private_key, certificate=pair.certificate, created_at=now
    )
    return keyring.with_entries([entry]), entry


def _decode_tls_field(doc: Mapping[str, Any], key: str) -> bytes:
    data = doc.get("data") or {}
    string_data = doc.get("stringData") or {}
    if key in string_data:
        return str(string_data[key]).encode()
    if key not in data:
        raise InvalidRequestError(f"{describe(doc)}: missing data key {key!r}")
    try:
        return base64.b64decode(data[key], validate=True)
    except (ValueError, TypeError):
        raise InvalidRequestError(
            f"{describe(doc)}: data key {key!r} is not valid base64"
        ) from None


def import_sealed_secrets_keys(
    docs: Sequence[Mapping[str, Any]], *, require_label: bool = True
) -> list[SealingKeyEntry]:
    """Read Sealed Secrets key Secrets into keyring entries.

    Each document must be a ``kubernetes.io/tls`` Secret with ``tls.key`` and
    ``tls.crt``, labelled ``sealedsecrets.bitnami.com/sealed-secrets-key``
    (any value: ``active`` or ``compromised``; pass ``require_label=False`` for
    a hand-made Secret). The creation time is the Secret's
    ``creationTimestamp`` when present, else the certificate's NotBefore.
    """
    entries: list[SealingKeyEntry] = []
    for doc in docs:
        what = describe(doc)
        if doc.get("kind") != "Secret":
            raise InvalidRequestError(f"{what}: expected a Sealed Secrets key Secret (kind Secret)")
        if doc.get("type") != "kubernetes.io/tls":
            raise InvalidRequestError(
                f"{what}: expected type kubernetes.io/tls, got {doc.get('type')!r}"
            )
        meta = doc.get("metadata") or {}
        if require_label and SEALED_SECRETS_KEY_LABEL not in (meta.get("labels") or {}):
            raise InvalidRequestError(f"{what}: missing label {SEALED_SECRETS_KEY_LABEL}")
        try:
            private_key = load_private_key(_decode_tls_field(doc, "tls.key"))
            certificate = load_certificate(_decode_tls_field(doc, "tls.crt"))
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"{what}: {exc}") from None
        created_text = meta.get("creationTimestamp")
        created = (
            _parse_time(str(created_text), what=what) if created_text else certificate.not_before
        )
        origin = f"sealed-secrets:{meta.get('namespace') or ''}/{meta.get('name') or ''}"
        entries.append(
            SealingKeyEntry(
                private_key=private_key, certificate=certificate, created_at=created, origin=origin
            )
        )
    return entries


def to_sealed_secrets_key_secret(
    entry: SealingKeyEntry, *, namespace: str = "kube-system"
) -> dict[str, Any]:
    """A Sealed Secrets key Secret for ``entry`` (plaintext private key: handle as a secret)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": f"sealed-secrets-key{entry.key_id[:5]}",
            "namespace": namespace,
            "labels": {SEALED_SECRETS_KEY_LABEL: "active"},
            "creationTimestamp": entry.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "data": {
            "tls.crt": base64.b64encode(entry.certificate.pem()).decode(),
            "tls.key": base64.b64encode(entry.private_key.pem().reveal()).decode(),
        },
    }
