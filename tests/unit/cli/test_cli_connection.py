"""Settings resolution (flags > KUSTOS_* > VAULT_* > token file > defaults) and the token file's modes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kustos.cli.connection import DEFAULT_ADDRESS, resolve_settings, save_token, token_file
from kustos.errors import ConfigError
from kustos.sensitive import Sensitive


def _resolve(env: dict[str, str], home: Path, **flags: object) -> object:
    args: dict[str, object] = {
        "address": None,
        "token": None,
        "tls_skip_verify": False,
        "ca_cert": None,
    }
    args.update(flags)
    return resolve_settings(env=env, home=home, **args)  # type: ignore[arg-type]


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    s = resolve_settings(
        address=None, token=None, tls_skip_verify=False, ca_cert=None, env={}, home=tmp_path
    )
    assert s.address == DEFAULT_ADDRESS
    assert s.address_source == "default"
    assert s.token is None
    assert s.verify is True
    assert s.ca_cert is None


def test_address_precedence(tmp_path: Path) -> None:
    env = {"KUSTOS_ADDR": "http://kustos:1", "VAULT_ADDR": "http://vault:2"}
    assert (
        resolve_settings(
            address="https://flag:3/",
            token=None,
            tls_skip_verify=False,
            ca_cert=None,
            env=env,
            home=tmp_path,
        ).address
        == "https://flag:3"
    )
    s = resolve_settings(
        address=None, token=None, tls_skip_verify=False, ca_cert=None, env=env, home=tmp_path
    )
    assert (s.address, s.address_source) == ("http://kustos:1", "KUSTOS_ADDR")
    s = resolve_settings(
        address=None,
        token=None,
        tls_skip_verify=False,
        ca_cert=None,
        env={"VAULT_ADDR": "http://vault:2"},
        home=tmp_path,
    )
    assert (s.address, s.address_source) == ("http://vault:2", "VAULT_ADDR")


def test_token_precedence(tmp_path: Path) -> None:
    save_token(Sensitive("from-file"), home=tmp_path)
    env = {"KUSTOS_TOKEN": "from-kustos", "VAULT_TOKEN": "from-vault"}

    def token(env: dict[str, str], flag: str | None = None) -> tuple[str | None, str]:
        s = resolve_settings(
            address=None, token=flag, tls_skip_verify=False, ca_cert=None, env=env, home=tmp_path
        )
        return (s.token.reveal() if s.token else None), s.token_source

    assert token(env, "from-flag") == ("from-flag", "--token")
    assert token(env) == ("from-kustos", "KUSTOS_TOKEN")
    assert token({"VAULT_TOKEN": "from-vault"}) == ("from-vault", "VAULT_TOKEN")
    assert token({}) == ("from-file", str(token_file(tmp_path)))
    assert token({"KUSTOS_TOKEN": "  "}) == ("from-file", str(token_file(tmp_path)))


def test_token_is_wrapped(tmp_path: Path) -> None:
    s = resolve_settings(
        address=None, token="abc", tls_skip_verify=False, ca_cert=None, env={}, home=tmp_path
    )
    assert isinstance(s.token, Sensitive)
    assert "abc" not in repr(s)


def test_tls_settings(tmp_path: Path) -> None:
    s = resolve_settings(
        address=None,
        token=None,
        tls_skip_verify=False,
        ca_cert=None,
        env={"VAULT_CACERT": "/ca.pem", "VAULT_SKIP_VERIFY": "true"},
        home=tmp_path,
    )
    assert s.ca_cert == Path("/ca.pem")
    assert s.verify is False
    s = resolve_settings(
        address=None,
        token=None,
        tls_skip_verify=False,
        ca_cert=Path("/flag.pem"),
        env={"KUSTOS_CACERT": "/k.pem", "KUSTOS_SKIP_VERIFY": "0"},
        home=tmp_path,
    )
    assert s.ca_cert == Path("/flag.pem")
    assert s.verify is True
    s = resolve_settings(
        address=None, token=None, tls_skip_verify=True, ca_cert=None, env={}, home=tmp_path
    )
    assert s.verify is False


def test_bad_address_names_its_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="from KUSTOS_ADDR must start with http"):
        resolve_settings(
            address=None,
            token=None,
            tls_skip_verify=False,
            ca_cert=None,
            env={"KUSTOS_ADDR": "127.0.0.1:8200"},
            home=tmp_path,
        )


def test_save_token_modes(tmp_path: Path) -> None:
    path = save_token(Sensitive("tok"), home=tmp_path)
    assert path == tmp_path / ".kustos" / "token"
    assert path.read_text() == "tok\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_save_token_tightens_an_existing_file_and_directory(tmp_path: Path) -> None:
    directory = tmp_path / ".kustos"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    old = directory / "token"
    old.write_text("old")
    old.chmod(0o644)
    save_token(Sensitive("new"), home=tmp_path)
    assert old.read_text() == "new\n"
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
