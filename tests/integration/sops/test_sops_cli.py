"""The files CLI end to end: real kustos process, real gpg, tmpfs for plaintext."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from sops_support import kustos

from tests.support.gpg import gpg_home

pytestmark = pytest.mark.slow


def test_encrypt_decrypt_in_place_output_extract(
    pgp_env: dict[str, str], tmp_path: Path, fp: str
) -> None:
    plain = tmp_path / "values.yaml"
    plain.write_text("db:\n  user: app\n  password: hunter2  # keep\nlist: [1, 2]\n")
    kustos("encrypt", "--pgp", fp, "-i", str(plain), env=pgp_env)
    text = plain.read_text()
    assert "hunter2" not in text and "# keep" in text and "mac: ENC[" in text
    out = tmp_path / "out.yaml"
    kustos("decrypt", str(plain), "--output", str(out), env=pgp_env)
    assert out.read_text() == "db:\n  user: app\n  password: hunter2  # keep\nlist: [1, 2]\n"
    got = kustos("decrypt", str(plain), "--extract", '["db"]["password"]', env=pgp_env).stdout
    assert got == b"hunter2"
    missing = kustos("decrypt", str(plain), "--extract", '["nope"]', env=pgp_env, check=False)
    assert missing.returncode != 0 and b'component ["nope"] not found' in missing.stderr
    as_json = kustos("decrypt", str(plain), "--output-type", "json", env=pgp_env).stdout
    assert json.loads(as_json)["db"]["password"] == "hunter2"


def test_errors_are_clear(pgp_env: dict[str, str], tmp_path: Path, fp: str) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("a: b\n")
    done = kustos("decrypt", str(plain), env=pgp_env, check=False)
    assert done.returncode == 1 and b"not sops-encrypted" in done.stderr
    tampered = tmp_path / "t.yaml"
    tampered.write_text("foo: bar\n")
    kustos("encrypt", "--pgp", fp, "-i", str(tampered), env=pgp_env)
    text = tampered.read_text()
    start = text.index("data:") + len("data:")
    tampered.write_text(text[:start] + ("A" if text[start] != "A" else "B") + text[start + 1 :])
    done = kustos("decrypt", str(tampered), env=pgp_env, check=False)
    assert done.returncode == 1 and b'could not decrypt the value at ["foo"]' in done.stderr
    none = kustos(
        "encrypt", str(plain), env={**pgp_env, "SOPS_PGP_FP": ""}, cwd=tmp_path, check=False
    )
    assert none.returncode == 1 and b"no recipients" in none.stderr


def test_env_vars_and_sops_yaml(pgp_env: dict[str, str], tmp_path: Path, fp: str) -> None:
    plain = tmp_path / "a.env"
    plain.write_text("TOKEN=abc\n")
    enc = kustos("encrypt", str(plain), env={**pgp_env, "SOPS_PGP_FP": fp}).stdout
    assert b"sops_pgp__list_0__map_fp=" + fp.encode() in enc
    (tmp_path / ".sops.yaml").write_text(
        f"creation_rules:\n  - path_regex: \\.json$\n    pgp: {fp}\n"
    )
    (tmp_path / "b.json").write_text('{"k": "v"}')
    enc_json = kustos("encrypt", "b.json", env=pgp_env, cwd=tmp_path).stdout
    assert json.loads(enc_json)["sops"]["pgp"][0]["fp"] == fp


def test_set_unset_edit_keep_unchanged_ciphertext(
    pgp_env: dict[str, str], tmp_path: Path, fp: str
) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"a": "one", "b": "two"}')
    kustos("encrypt", "--pgp", fp, "-i", str(path), env=pgp_env)
    before = json.loads(path.read_text())
    kustos("set", str(path), '["b"]', '"changed"', env=pgp_env)
    after = json.loads(path.read_text())
    assert after["a"] == before["a"] and after["b"] != before["b"]
    kustos("set", str(path), '["c"]', '{"n": 1}', env=pgp_env)
    kustos("unset", str(path), '["a"]', env=pgp_env)
    assert json.loads(kustos("decrypt", str(path), env=pgp_env).stdout) == {
        "b": "changed",
        "c": {"n": 1},
    }
    # edit with a scripted editor: it must see the plaintext on tmpfs, and the file keeps unchanged values
    editor = tmp_path / "editor.sh"
    seen = tmp_path / "seen-path"
    editor.write_text(f'#!/bin/sh\necho "$1" > {seen}\nsed -i \'s/changed/edited/\' "$1"\n')
    editor.chmod(0o755)
    before_edit = json.loads(path.read_text())
    kustos("edit", str(path), env={**pgp_env, "EDITOR": str(editor)})
    edited = json.loads(path.read_text())
    assert edited["c"] == before_edit["c"] and edited["b"] != before_edit["b"]
    tmp_seen = Path(seen.read_text().strip())
    assert str(tmp_seen).startswith(("/dev/shm/", os.environ.get("XDG_RUNTIME_DIR") or "/dev/shm/"))
    assert not tmp_seen.exists()
    assert json.loads(kustos("decrypt", str(path), env=pgp_env).stdout)["b"] == "edited"


def test_rotate_and_updatekeys(pgp_env: dict[str, str], tmp_path: Path, fp: str) -> None:
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "age.txt"
    key_file.write_text(f"{identity}\n")
    path = tmp_path / "r.yaml"
    path.write_text("a: one\n")
    kustos(
        "encrypt",
        "--pgp",
        fp,
        "--age",
        str(identity.to_public()),
        "-i",
        str(path),
        env=pgp_env,
    )
    first = path.read_text()
    rotated = kustos("rotate", str(path), env=pgp_env).stdout.decode()
    assert rotated.splitlines()[0] != first.splitlines()[0]
    (tmp_path / ".sops.yaml").write_text(f"creation_rules:\n  - pgp: {fp}\n")
    done = kustos("updatekeys", "-y", str(path), env=pgp_env, cwd=tmp_path)
    assert (
        b"may still hold the old data key" in done.stderr
        and str(identity.to_public()).encode() in done.stderr
    )
    updated = path.read_text()
    assert "age:" not in updated and updated.splitlines()[0] == first.splitlines()[0]
    kustos("updatekeys", "--rotate", str(path), env=pgp_env, cwd=tmp_path)
    assert path.read_text().splitlines()[0] != first.splitlines()[0]


def test_exec_env_and_exec_file(pgp_env: dict[str, str], tmp_path: Path, fp: str) -> None:
    path = tmp_path / "e.env"
    path.write_text("SECRET_TOKEN=abc123\n")
    kustos("encrypt", "--pgp", fp, "-i", str(path), env=pgp_env)
    out = kustos("exec-env", str(path), "--", "echo token=$SECRET_TOKEN", env=pgp_env).stdout
    assert out == b"token=abc123\n"
    out = kustos(
        "exec-file", str(path), "--", "sh", "-c", 'cat "$1"; echo "$1"', "sh", "{}", env=pgp_env
    ).stdout
    content, where = out.decode().rsplit("\n", 2)[0], out.decode().splitlines()[-1]
    assert content == "SECRET_TOKEN=abc123"
    assert where.startswith(("/dev/shm/", os.environ.get("XDG_RUNTIME_DIR") or "/dev/shm/"))
    assert not Path(where).exists()
    code = kustos("exec-env", str(path), "--", "exit 7", env=pgp_env, check=False).returncode
    assert code == 7


def test_helm_decrypts_values_into_tmpfs(pgp_env: dict[str, str], tmp_path: Path, fp: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "helm"
    log = tmp_path / "helm-args"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {log}\n'
        'while [ $# -gt 0 ]; do case "$1" in -f|--values) echo "== $2"; cat "$2"; '
        'stat -c %a "$2"; shift 2;; *) shift;; esac; done\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    secret = tmp_path / "secrets.yaml"
    secret.write_text("password: hunter2\n")
    kustos("encrypt", "--pgp", fp, "-i", str(secret), env=pgp_env)
    plain = tmp_path / "plain.yaml"
    plain.write_text("replicas: 2\n")
    env = {**pgp_env, "PATH": f"{bindir}:{pgp_env['PATH']}"}
    out = kustos("helm", "upgrade", "--install", "rel", "chart", "-f", str(plain), "--values", str(secret),
                 env=env).stdout.decode()  # fmt: skip
    assert "replicas: 2" in out and "password: hunter2\n600" in out
    args = log.read_text()
    assert str(plain) in args and str(secret) not in args
    shm_path = next(
        a
        for a in args.split()
        if a.startswith(("/dev/shm/", os.environ.get("XDG_RUNTIME_DIR") or "/x"))
    )
    assert not Path(shm_path).exists()


def test_git_textconv(pgp_env: dict[str, str], tmp_path: Path, fp: str) -> None:
    vector = tmp_path / "f.yaml"
    vector.write_text("foo: bar\n")
    kustos("encrypt", "--pgp", fp, "-i", str(vector), env=pgp_env)
    assert kustos("git", "textconv", str(vector), env=pgp_env).stdout == b"foo: bar\n"
    with gpg_home(generate=False) as empty:
        no_keys = {**pgp_env, "GNUPGHOME": str(empty.home)}
        assert kustos("git", "textconv", str(vector), env=no_keys).stdout == vector.read_bytes()
