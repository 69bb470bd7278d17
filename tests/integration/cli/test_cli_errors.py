"""The real `kustos` process on things that used to end in a traceback: a clear line, a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest

KUSTOS = str(Path(sys.executable).with_name("kustos"))


def run(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUSTOS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def age_env(tmp_path: Path) -> dict[str, str]:
    identity = pyrage.x25519.Identity.generate()
    key = tmp_path / "age.txt"
    key.write_text(f"{identity}\n")
    return {
        **os.environ,
        "HOME": str(tmp_path),
        "SOPS_AGE_KEY_FILE": str(key),
        "SOPS_AGE_RECIPIENTS": str(identity.to_public()),
    }


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("Error: "), done.stderr


def test_missing_editor(age_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("password: s3cr3t\n")
    assert run("encrypt", "-i", str(path), env=age_env).returncode == 0
    before = path.read_bytes()
    done = run("edit", str(path), env={**age_env, "EDITOR": "/nonexistent"})
    assert done.returncode == 1
    _no_traceback(done)
    assert "cannot run the editor '/nonexistent'" in done.stderr
    assert path.read_bytes() == before


def test_invalid_yaml_reopens_the_editor_and_keeps_the_edits(
    age_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("password: s3cr3t\nuser: app\n")
    assert run("encrypt", "-i", str(path), env=age_env).returncode == 0
    count = tmp_path / "count"
    editor = tmp_path / "editor.sh"
    # first pass: a syntax error; second pass: the user's fix of the same buffer
    editor.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}\n"
        'if [ "$n" = 0 ]; then printf "password: [unclosed\\nuser: app\\n" > "$1";\n'
        "else sed -i 's/\\[unclosed/n3w/' \"$1\"; fi\n"
    )
    editor.chmod(0o755)
    done = run("edit", str(path), env={**age_env, "EDITOR": str(editor)})
    assert done.returncode == 0, done.stderr
    assert "Returning to the editor" in done.stderr
    assert count.read_text().strip() == "2"
    plain = run("decrypt", str(path), env=age_env)
    assert plain.stdout == "password: n3w\nuser: app\n"


def test_an_editor_that_never_fixes_it_leaves_the_file(
    age_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a: b\n")
    assert run("encrypt", "-i", str(path), env=age_env).returncode == 0
    before = path.read_bytes()
    editor = tmp_path / "bad.sh"
    editor.write_text('#!/bin/sh\nprintf "a: [\\n" > "$1"\n')
    editor.chmod(0o755)
    done = run("edit", str(path), env={**age_env, "EDITOR": str(editor)})
    assert done.returncode == 1
    _no_traceback(done)
    assert done.stderr.count("Returning to the editor.") == 2  # three tries in all
    assert "was not changed" in done.stderr and path.read_bytes() == before


def test_decrypted_output_files_are_private(age_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("password: s3cr3t\n")
    assert run("encrypt", "-i", str(path), env=age_env).returncode == 0
    out = tmp_path / "plain.yaml"
    out.write_text("")
    out.chmod(0o644)
    assert run("decrypt", str(path), "--output", str(out), env=age_env).returncode == 0
    assert out.read_text() == "password: s3cr3t\n"
    assert out.stat().st_mode & 0o777 == 0o600


def test_port_in_use_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        data = tmp_path / "data"
        done = run(
            "server", "--dev", "--port", str(port), "--data-dir", str(data),
            env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
    assert done.returncode == 1
    _no_traceback(done)
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert not data.exists()


def test_bad_address_in_the_environment(tmp_path: Path) -> None:
    done = run(
        "kv",
        "get",
        "secret/x",
        env={
            **os.environ,
            "HOME": str(tmp_path),
            "KUSTOS_ADDR": "http://[::1",
            "KUSTOS_TOKEN": "t",
        },
    )
    assert done.returncode == 2
    _no_traceback(done)
    assert "KUSTOS_ADDR is not a valid URL" in done.stderr


def test_an_initial_kv_mount_on_a_reserved_path_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run(
        "server", "--initial-kv-mount", "sys", "--data-dir", str(data),
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 1
    _no_traceback(done)
    assert "--initial-kv-mount: cannot mount at 'sys/': the prefix is reserved" in done.stderr
    assert not data.exists()
