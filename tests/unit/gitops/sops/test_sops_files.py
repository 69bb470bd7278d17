"""Encrypting and decrypting files: age, key groups, formats, diff-friendly edits, rotate, updatekeys."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyrage
import pytest

from kustos.errors import ConfigError, DecryptionError
from kustos.gitops.sops import (
    AgeKey,
    EncryptionRules,
    KeyServices,
    PgpKey,
    decrypt_file,
    encrypt_file,
    load_rule,
    reencrypt,
    removed_recipients,
    rotate,
    store_for,
    update_keys,
)

TEST_FP = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4"  # only parsed, never used to encrypt

YAML_DOC = b"""\
# top comment
app:
  name: demo   # inline comment
  replicas: 3
  ratio: 0.5
  enabled: true
  password: "s3cr3t: with colon"
  empty: ""
  nothing: null
  tags: [a, b]
  items:
    - one
    - key: two
  cert: |
    line1
    line2
  public_unencrypted: visible
---
second: doc
"""


def _identity(tmp_path: Path, name: str = "keys.txt") -> tuple[str, Path]:
    identity = pyrage.x25519.Identity.generate()
    path = tmp_path / name
    path.write_text(f"# created by test\n{identity}\n")
    return str(identity.to_public()), path


def test_age_round_trip_yaml_keeps_comments_order_and_types(tmp_path: Path) -> None:
    recipient, key_file = _identity(tmp_path)
    services = KeyServices(env={"SOPS_AGE_KEY_FILE": str(key_file), "HOME": str(tmp_path)})
    store = store_for(path="values.yaml")
    encrypted = encrypt_file(
        YAML_DOC, store=store, key_groups=[[AgeKey(recipient=recipient)]], services=services
    )
    text = encrypted.decode()
    assert "s3cr3t" not in text and "line1" not in text and "demo" not in text
    assert "# top comment" in text and "# inline comment" in text
    assert "public_unencrypted: visible" in text
    assert 'empty: ""' in text and "nothing: null" in text
    assert "type:int]" in text and "type:float]" in text and "type:bool]" in text
    assert text.count("sops:\n") == 2  # every document carries the metadata
    assert "-----BEGIN AGE ENCRYPTED FILE-----" in text
    result = decrypt_file(encrypted, store=store, services=services)
    assert result.plaintext.decode().startswith(
        "# top comment\napp:\n  name: demo   # inline comment\n"
    )
    assert result.tree[0]["app"]["replicas"] == 3
    assert result.tree[0]["app"]["password"] == "s3cr3t: with colon"
    assert result.tree[0]["app"]["cert"] == "line1\nline2\n"
    assert result.tree[0]["app"]["items"] == ["one", {"key": "two"}]
    assert result.tree[1] == {"second": "doc"}
    again = decrypt_file(encrypt_file(result.plaintext, store=store, key_groups=[[AgeKey(recipient=recipient)]],
                                      services=services), store=store, services=services)  # fmt: skip
    assert again.tree == result.tree


def test_age_binary_can_decrypt_the_data_key(tmp_path: Path) -> None:
    recipient, key_file = _identity(tmp_path)
    services = KeyServices(env={"SOPS_AGE_KEY_FILE": str(key_file)})
    encrypted = encrypt_file(b'{"a": "b"}', store=store_for(path="x.json"),
                             key_groups=[[AgeKey(recipient=recipient)]], services=services)  # fmt: skip
    import json

    enc = json.loads(encrypted)["sops"]["age"][0]["enc"]
    done = subprocess.run(
        ["age", "-d", "-i", str(key_file)], input=enc.encode(), capture_output=True, check=True
    )
    assert len(done.stdout) == 32
    assert (
        decrypt_file(encrypted, store=store_for(path="x.json"), services=services).data_key
        == done.stdout
    )


def test_wrong_age_identity_lists_recipients_tried(tmp_path: Path) -> None:
    recipient, _ = _identity(tmp_path, "a.txt")
    _, other = _identity(tmp_path, "b.txt")
    store = store_for(path="x.yaml")
    encrypted = encrypt_file(b"a: b\n", store=store, key_groups=[[AgeKey(recipient=recipient)]],
                             services=KeyServices(env={}))  # fmt: skip
    with pytest.raises(DecryptionError, match=f"age {recipient}"):
        decrypt_file(
            encrypted, store=store, services=KeyServices(env={"SOPS_AGE_KEY_FILE": str(other)})
        )


def test_key_groups_two_of_three(tmp_path: Path) -> None:
    ids = [_identity(tmp_path, f"k{i}.txt") for i in range(3)]
    groups = [[AgeKey(recipient=r)] for r, _ in ids]
    store = store_for(path="x.yaml")
    encrypted = encrypt_file(b"a: secret\n", store=store, key_groups=groups, shamir_threshold=2,
                             services=KeyServices(env={}))  # fmt: skip
    text = encrypted.decode()
    assert "key_groups:" in text and "shamir_threshold: 2" in text
    for a, b in ((0, 1), (1, 2), (0, 2)):
        key_text = ids[a][1].read_text() + ids[b][1].read_text()
        services = KeyServices(env={"SOPS_AGE_KEY": key_text})
        assert decrypt_file(encrypted, store=store, services=services).tree == {"a": "secret"}
    with pytest.raises(DecryptionError, match="1 of 2 required key groups"):
        decrypt_file(
            encrypted,
            store=store,
            services=KeyServices(env={"SOPS_AGE_KEY": ids[1][1].read_text()}),
        )


@pytest.mark.parametrize(
    ("name", "plain"),
    [
        ("x.json", b'{\n\t"a": "b",\n\t"n": 1,\n\t"l": [\n\t\ttrue,\n\t\t2.5\n\t]\n}\n'),
        ("x.env", b"# comment\nA=1\nB=two words\nC=multi\\nline\n"),
        ("x.ini", b"[db]\nhost = example\npass = secret\n\n[other]\nk = v\n"),
        ("x.bin", bytes(range(256))),
    ],
)
def test_other_formats_round_trip(name: str, plain: bytes, tmp_path: Path) -> None:
    recipient, key_file = _identity(tmp_path)
    services = KeyServices(env={"SOPS_AGE_KEY_FILE": str(key_file)})
    store = store_for(path=name)
    encrypted = encrypt_file(
        plain, store=store, key_groups=[[AgeKey(recipient=recipient)]], services=services
    )
    assert b"secret" not in encrypted and b"two words" not in encrypted
    assert store.looks_encrypted(encrypted)
    assert decrypt_file(encrypted, store=store, services=services).plaintext == plain


def test_edit_keeps_ciphertext_of_unchanged_values(tmp_path: Path) -> None:
    recipient, key_file = _identity(tmp_path)
    services = KeyServices(env={"SOPS_AGE_KEY_FILE": str(key_file)})
    store = store_for(path="x.yaml")
    first = encrypt_file(b"a: one\nb: two\nc: [x, y]\n", store=store,
                         key_groups=[[AgeKey(recipient=recipient)]], services=services)  # fmt: skip
    previous = decrypt_file(first, store=store, services=services)
    second = reencrypt(
        b"a: one\nb: CHANGED\nc: [x, y]\n", store=store, previous=previous, services=services
    )
    old_lines, new_lines = first.decode().splitlines(), second.decode().splitlines()
    assert old_lines[0] == new_lines[0]  # a unchanged
    assert old_lines[1] != new_lines[1]  # b changed
    assert old_lines[2] == new_lines[2]  # list unchanged
    assert decrypt_file(second, store=store, services=services).tree == {
        "a": "one",
        "b": "CHANGED",
        "c": ["x", "y"],
    }


def test_rotate_makes_a_new_data_key(tmp_path: Path) -> None:
    recipient, key_file = _identity(tmp_path)
    services = KeyServices(env={"SOPS_AGE_KEY_FILE": str(key_file)})
    store = store_for(path="x.yaml")
    first = encrypt_file(
        b"a: one\n", store=store, key_groups=[[AgeKey(recipient=recipient)]], services=services
    )
    previous = decrypt_file(first, store=store, services=services)
    rotated = rotate(previous, store=store, services=services)
    after = decrypt_file(rotated, store=store, services=services)
    assert after.data_key != previous.data_key and after.tree == {"a": "one"}
    assert rotated.splitlines()[0] != first.splitlines()[0]


def test_update_keys_rewraps_and_reports_removed(tmp_path: Path) -> None:
    r1, k1 = _identity(tmp_path, "1.txt")
    r2, k2 = _identity(tmp_path, "2.txt")
    store = store_for(path="x.yaml")
    both = KeyServices(env={"SOPS_AGE_KEY": k1.read_text() + k2.read_text()})
    first = encrypt_file(b"a: one\n", store=store, key_groups=[[AgeKey(recipient=r1), AgeKey(recipient=r2)]],
                         services=both)  # fmt: skip
    previous = decrypt_file(first, store=store, services=both)
    new_groups = [[AgeKey(recipient=r2)]]
    assert removed_recipients(previous, new_groups) == [r1]
    updated = update_keys(previous, store=store, services=both, key_groups=new_groups)
    assert updated.splitlines()[0] == first.splitlines()[0]  # values untouched
    with pytest.raises(DecryptionError):
        decrypt_file(updated, store=store, services=KeyServices(env={"SOPS_AGE_KEY_FILE": str(k1)}))
    assert decrypt_file(
        updated, store=store, services=KeyServices(env={"SOPS_AGE_KEY_FILE": str(k2)})
    ).data_key == (previous.data_key)


def test_encrypted_regex_and_mac_only_encrypted(tmp_path: Path) -> None:
    recipient, key_file = _identity(tmp_path)
    services = KeyServices(env={"SOPS_AGE_KEY_FILE": str(key_file)})
    store = store_for(path="x.yaml")
    rules = EncryptionRules(encrypted_regex="^(data|stringData)$", mac_only_encrypted=True)
    doc = b"kind: Secret\nstringData:\n  pw: x\n"
    encrypted = encrypt_file(doc, store=store, key_groups=[[AgeKey(recipient=recipient)]], services=services,
                             rules=rules)  # fmt: skip
    assert b"kind: Secret" in encrypted and b'encrypted_regex: "^(data|stringData)$"' in encrypted
    assert b"mac_only_encrypted: true" in encrypted
    # With mac_only_encrypted, changing a clear value does not break the MAC.
    changed = encrypted.replace(b"kind: Secret", b"kind: Other")
    assert decrypt_file(changed, store=store, services=services).tree["kind"] == "Other"
    with pytest.raises(ConfigError, match="more than one"):
        EncryptionRules(encrypted_regex="a", unencrypted_suffix="_u").normalized()


def test_already_encrypted_and_bad_input(tmp_path: Path) -> None:
    recipient, _ = _identity(tmp_path)
    store = store_for(path="x.yaml")
    groups = [[AgeKey(recipient=recipient)]]
    encrypted = encrypt_file(
        b"a: b\n", store=store, key_groups=groups, services=KeyServices(env={})
    )
    with pytest.raises(ConfigError, match="already encrypted"):
        encrypt_file(encrypted, store=store, key_groups=groups, services=KeyServices(env={}))
    with pytest.raises(ConfigError, match="invalid YAML"):
        encrypt_file(b"a: [\n", store=store, key_groups=groups, services=KeyServices(env={}))
    with pytest.raises(ConfigError, match="invalid age recipient"):
        encrypt_file(
            b"a: b\n",
            store=store,
            key_groups=[[AgeKey(recipient="age1nope")]],
            services=KeyServices(env={}),
        )


def test_creation_rules_first_match_wins(tmp_path: Path) -> None:
    r1, _ = _identity(tmp_path, "1.txt")
    r2, _ = _identity(tmp_path, "2.txt")
    config = tmp_path / ".sops.yaml"
    config.write_text(
        "creation_rules:\n"
        f"  - path_regex: secrets/.*\\.yaml$\n    age: {r1}\n    encrypted_regex: ^data$\n"
        f"  - path_regex: groups/.*\n    shamir_threshold: 2\n    key_groups:\n"
        f"      - age: [{r1}]\n      - age: [{r2}]\n      - pgp: [{TEST_FP}]\n"
        f"  - age: '{r2}'\n"
    )
    first = load_rule(config, tmp_path / "secrets" / "a.yaml")
    assert first is not None and first.key_groups == ((AgeKey(recipient=r1),),)
    assert first.rules.encrypted_regex == "^data$"
    grouped = load_rule(config, tmp_path / "groups" / "b.json")
    assert grouped is not None and grouped.shamir_threshold == 2 and len(grouped.key_groups) == 3
    assert grouped.key_groups[2] == (PgpKey(fp=TEST_FP),)
    fallback = load_rule(config, tmp_path / "other.env")
    assert fallback is not None and fallback.key_groups == ((AgeKey(recipient=r2),),)
