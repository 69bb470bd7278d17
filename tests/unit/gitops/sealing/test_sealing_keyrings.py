"""Keyring renewal and cut-off, serialization, Sealed Secrets key import, encrypted backups."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyrage import x25519

from kustos.crypto.sealing import SealingKeyPair, generate_sealing_key
from kustos.errors import DecryptionError, InvalidRequestError
from kustos.gitops.sealing import (
    SEALED_SECRETS_KEY_LABEL,
    RenewalPolicy,
    SealingKeyEntry,
    SealingKeyring,
    import_sealed_secrets_keys,
    is_backup,
    load_manifests,
    parse_secret,
    read_backup,
    renew,
    seal_secret,
    to_sealed_secrets_key_secret,
    unseal,
    write_backup,
)
from kustos.sensitive import Sensitive

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _entry(pair: SealingKeyPair, created: datetime) -> SealingKeyEntry:
    return SealingKeyEntry(
        private_key=pair.private_key, certificate=pair.certificate, created_at=created
    )


def _fake_generator(pairs: list[SealingKeyPair]):  # type: ignore[no-untyped-def]
    """Hands out pre-made keys (RSA generation is slow) and records when it was called."""
    calls: list[datetime] = []

    def generate(now: datetime) -> SealingKeyPair:
        calls.append(now)
        return pairs[len(calls) - 1]

    return generate, calls


def test_renewal_after_the_period_keeps_old_keys(
    key_a: SealingKeyPair, key_b: SealingKeyPair
) -> None:
    generate, calls = _fake_generator([key_a, key_b])
    policy = RenewalPolicy(period=timedelta(days=30))
    ring, entry = renew(SealingKeyring(), policy=policy, now=T0, generate=generate)
    assert entry is not None and entry.key_id == key_a.certificate.key_id
    ring, entry = renew(
        ring, policy=policy, now=T0 + timedelta(days=29, hours=23), generate=generate
    )
    assert entry is None and len(ring) == 1
    assert policy.next_renewal(ring) == T0 + timedelta(days=30)
    ring, entry = renew(ring, policy=policy, now=T0 + timedelta(days=30), generate=generate)
    assert entry is not None
    assert [e.key_id for e in ring.entries] == [key_a.certificate.key_id, key_b.certificate.key_id]
    assert ring.sealing_certificate() == key_b.certificate
    assert [k.key_id for k in ring.private_keys()] == [
        key_b.certificate.key_id,
        key_a.certificate.key_id,
    ]
    assert calls == [T0, T0 + timedelta(days=30)]
    # a value sealed with the old key still unseals with the renewed keyring
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "a", "namespace": "b"},
        "stringData": {"k": "v"},
    }
    (old,) = seal_secret(
        parse_secret(doc), certificates=[key_a.certificate], now=T0, key_id_hint=False
    )
    assert unseal(old, keys=ring.private_keys()).data["k"].reveal() == b"v"


def test_cutoff_forces_a_new_key_and_disabled_period_never_renews(key_a: SealingKeyPair) -> None:
    ring = SealingKeyring(entries=(_entry(key_a, T0),))
    never = RenewalPolicy(period=None)
    assert not never.renewal_due(ring, now=T0 + timedelta(days=3650))
    cutoff = RenewalPolicy(period=None, cutoff=T0 + timedelta(days=2))
    assert not cutoff.renewal_due(ring, now=T0 + timedelta(days=1))  # cut-off not reached yet
    assert cutoff.renewal_due(ring, now=T0 + timedelta(days=2))
    newer = SealingKeyring(entries=(_entry(key_a, T0 + timedelta(days=3)),))
    assert not cutoff.renewal_due(newer, now=T0 + timedelta(days=4))  # newest is after the cut-off
    with pytest.raises(InvalidRequestError):
        RenewalPolicy(period=timedelta(0))


def test_keyring_round_trips_and_rejects_duplicates(
    key_a: SealingKeyPair, key_b: SealingKeyPair
) -> None:
    ring = SealingKeyring(entries=(_entry(key_b, T0 + timedelta(days=1)), _entry(key_a, T0)))
    assert [e.key_id for e in ring.entries] == [
        key_a.certificate.key_id,
        key_b.certificate.key_id,
    ]  # oldest first
    blob = ring.to_bytes()
    assert repr(blob) == "Sensitive(<redacted>)"
    again = SealingKeyring.from_bytes(blob)
    assert [(e.key_id, e.created_at) for e in again.entries] == [
        (e.key_id, e.created_at) for e in ring.entries
    ]
    assert len(again.with_entries([_entry(key_a, T0)])) == 2  # already present: skipped
    with pytest.raises(InvalidRequestError, match="appears twice"):
        SealingKeyring(entries=(_entry(key_a, T0), _entry(key_a, T0)))
    with pytest.raises(InvalidRequestError, match="certificate holds another public key"):
        SealingKeyEntry(private_key=key_a.private_key, certificate=key_b.certificate, created_at=T0)
    with pytest.raises(InvalidRequestError, match="not a keyring"):
        SealingKeyring.from_bytes(b"garbage")


def test_import_of_sealed_secrets_key_secrets(key_a: SealingKeyPair, key_b: SealingKeyPair) -> None:
    exported = [
        to_sealed_secrets_key_secret(_entry(p, T0 + timedelta(days=i)))
        for i, p in enumerate((key_a, key_b))
    ]
    as_list = {"apiVersion": "v1", "kind": "List", "items": exported}
    docs = load_manifests(json.dumps(as_list))
    entries = import_sealed_secrets_keys(docs)
    assert [e.key_id for e in entries] == [key_a.certificate.key_id, key_b.certificate.key_id]
    assert entries[1].created_at == T0 + timedelta(days=1)
    assert entries[0].origin.startswith("sealed-secrets:kube-system/sealed-secrets-key")

    unlabelled = json.loads(json.dumps(exported[0]))
    del unlabelled["metadata"]["labels"]
    with pytest.raises(InvalidRequestError, match=f"missing label {SEALED_SECRETS_KEY_LABEL}"):
        import_sealed_secrets_keys([unlabelled])
    opaque = {**exported[0], "type": "Opaque"}
    with pytest.raises(InvalidRequestError, match=r"expected type kubernetes\.io/tls"):
        import_sealed_secrets_keys([opaque])
    broken = json.loads(json.dumps(exported[0]))
    broken["data"]["tls.key"] = base64.b64encode(b"nope").decode()
    with pytest.raises(
        InvalidRequestError, match=r"Secret kube-system/sealed-secrets-key.*no PEM private key"
    ):
        import_sealed_secrets_keys([broken])


def test_passphrase_backup_round_trip(key_a: SealingKeyPair, key_b: SealingKeyPair) -> None:
    ring = SealingKeyring(entries=(_entry(key_a, T0), _entry(key_b, T0 + timedelta(days=30))))
    bundle = write_backup(ring, passphrase=Sensitive("correct horse battery"))
    assert is_backup(bundle)
    assert b"PRIVATE KEY" not in bundle
    doc = json.loads(bundle)
    assert [k["keyId"] for k in doc["keys"]] == [key_a.certificate.key_id, key_b.certificate.key_id]
    opened = read_backup(bundle, passphrase=Sensitive("correct horse battery"))
    assert [e.key_id for e in opened.entries] == [e.key_id for e in ring.entries]
    with pytest.raises(DecryptionError, match="wrong passphrase"):
        read_backup(bundle, passphrase=Sensitive("wrong horse battery"))
    doc["ciphertext"] = doc["ciphertext"][:-4] + "AAAA"
    with pytest.raises(DecryptionError):
        read_backup(json.dumps(doc).encode(), passphrase=Sensitive("correct horse battery"))
    with pytest.raises(InvalidRequestError, match="at least 8"):
        write_backup(ring, passphrase=Sensitive("short"))


def test_age_backup_opens_with_the_stock_age_tool(key_a: SealingKeyPair, tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    ring = SealingKeyring(entries=(_entry(key_a, T0),))
    bundle = write_backup(ring, age_recipients=[str(identity.to_public())])
    assert bundle.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    identity_file = tmp_path / "key.txt"
    identity_file.write_text(str(identity) + "\n")
    assert (
        read_backup(bundle, age_identities=[identity_file.read_bytes()]).entries[0].key_id
        == key_a.certificate.key_id
    )
    (tmp_path / "bundle.age").write_bytes(bundle)
    out = subprocess.run(
        ["age", "-d", "-i", str(identity_file), str(tmp_path / "bundle.age")],
        capture_output=True,
        check=True,
    )
    assert SealingKeyring.from_bytes(out.stdout).entries[0].key_id == key_a.certificate.key_id
    other = x25519.Identity.generate()
    with pytest.raises(DecryptionError, match="no given identity opens it"):
        read_backup(bundle, age_identities=[str(other).encode()])


def test_generated_certificate_looks_like_sealed_secrets() -> None:
    pair = generate_sealing_key(now=T0, bits=2048)
    assert pair.certificate.subject == "O=sealed-secret,CN=sealed-secret"
    assert pair.certificate.not_after - T0 >= timedelta(days=3649)
    assert not pair.certificate.is_expired(now=T0 + timedelta(days=365))
