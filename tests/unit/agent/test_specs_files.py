"""The agent's options parsed (and refused by name), and its atomic, fixed-mode file writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kustos.agent.files import SecretFiles
from kustos.agent.specs import (
    AgentSettings,
    SecretSpec,
    parse_exec,
    parse_listen,
    parse_secret,
    parse_template,
)
from kustos.errors import ConfigError, InvalidRequestError


def test_secret_specs() -> None:
    assert parse_secret("db=secret/app/db") == SecretSpec("db", "secret/app/db")
    assert parse_secret("pw=secret/data/app/db#password") == SecretSpec(
        "pw", "secret/data/app/db", "password"
    )
    assert parse_secret("db.json= /secret/app/db/ ").path == "secret/app/db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("db", "NAME=PATH"),
        ("=secret/x", "NAME=PATH"),
        ("../x=secret/app", "not a file name"),
        (".hidden=secret/app", "not a file name"),
        ("a/b=secret/app", "not a file name"),
        ("db=secret", "not a secret path"),
        ("db=secret/../x", "not a secret path"),
    ],
)
def test_bad_secret_specs_are_named(text: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        parse_secret(text)


def test_template_and_other_options(tmp_path: Path) -> None:
    source = tmp_path / "t.tmpl"
    source.write_text("{{ db.password }}")
    spec = parse_template(f"conf={source}")
    assert spec.name == "conf" and spec.source == "{{ db.password }}"
    assert "{{" not in repr(spec)
    with pytest.raises(InvalidRequestError, match="cannot read"):
        parse_template(f"conf={tmp_path / 'missing'}")
    assert parse_exec("kill -HUP 1") == ("kill", "-HUP", "1")
    with pytest.raises(InvalidRequestError, match="--exec"):
        parse_exec("'unclosed")
    assert parse_listen("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_listen("off") is None
    with pytest.raises(InvalidRequestError, match="HOST:PORT"):
        parse_listen("nope")


def test_settings_refuse_nothing_to_do_and_duplicates(tmp_path: Path) -> None:
    common = {"address": "https://kustos:8200", "role": "app", "jwt_file": tmp_path / "jwt"}
    with pytest.raises(InvalidRequestError, match="nothing to do"):
        AgentSettings.from_options(**common, directory=tmp_path, secrets=[])
    with pytest.raises(InvalidRequestError, match="used twice: db"):
        AgentSettings.from_options(
            **common, directory=tmp_path, secrets=["db=secret/a", "db=secret/b"]
        )
    with pytest.raises(InvalidRequestError, match="--address"):
        AgentSettings.from_options(
            **{**common, "address": "kustos:8200"}, directory=tmp_path, secrets=["db=secret/a"]
        )
    once = AgentSettings.from_options(
        **common, directory=tmp_path, secrets=["db=secret/a"], once=True
    )
    assert once.listen is None


def test_files_are_atomic_mode_0400_and_not_rewritten(tmp_path: Path) -> None:
    files = SecretFiles(tmp_path)
    assert files.write("db", b"one")
    path = tmp_path / "db"
    assert path.read_bytes() == b"one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    inode = path.stat().st_ino
    assert not files.write("db", b"one")  # unchanged: no rewrite
    assert path.stat().st_ino == inode
    assert files.write("db", b"two")
    assert path.read_bytes() == b"two" and path.stat().st_ino != inode  # replaced by rename
    assert sorted(os.listdir(tmp_path)) == ["db"]  # no temporary file left
    assert files.present == ["db"]
    assert files.remove("db") and not path.exists()
    assert not files.remove("db")


def test_files_adopt_what_an_init_container_wrote(tmp_path: Path) -> None:
    (tmp_path / "db").write_bytes(b"same")
    files = SecretFiles(tmp_path)
    assert not files.write("db", b"same")
    assert files.present == ["db"]
    assert files.remove_all(["db", "other"]) == ["db"]


def test_files_need_a_writable_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        SecretFiles(tmp_path / "missing")
