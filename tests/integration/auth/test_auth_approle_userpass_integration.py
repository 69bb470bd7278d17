"""approle and userpass against a real server subprocess through hvac: good and bad logins,
the issued token's policies and metadata (lookup-self), and nothing secret in the store."""

from __future__ import annotations

import hvac
import hvac.exceptions
import pytest

from tests.support.server import RunningServer


@pytest.fixture(scope="module")
def admin(kustos_server: RunningServer) -> hvac.Client:
    client = hvac.Client(url=kustos_server.addr, token=kustos_server.root_token)
    client.sys.enable_auth_method("approle")
    client.sys.enable_auth_method("userpass", path="people")
    return client


def test_approle_login_good_and_bad(kustos_server: RunningServer, admin: hvac.Client) -> None:
    admin.auth.approle.create_or_update_approle(
        "deploy", token_policies=["deploy"], token_ttl="15m", secret_id_num_uses=1
    )
    role_id = admin.auth.approle.read_role_id("deploy")["data"]["role_id"]
    secret = admin.auth.approle.generate_secret_id("deploy", metadata={"pipeline": "main"})["data"]
    ci = hvac.Client(url=kustos_server.addr)
    ci.auth.approle.login(role_id=role_id, secret_id=secret["secret_id"])
    me = ci.auth.token.lookup_self()["data"]
    assert me["policies"] == ["default", "deploy"]
    assert me["meta"] == {"role_name": "deploy", "pipeline": "main"}
    assert me["path"] == "auth/approle/login" and 890 <= me["ttl"] <= 900
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid role or secret ID"):
        hvac.Client(url=kustos_server.addr).auth.approle.login(
            role_id=role_id, secret_id=secret["secret_id"]
        )
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid role or secret ID"):
        hvac.Client(url=kustos_server.addr).auth.approle.login(role_id=role_id, secret_id="guess")
    roles = admin.auth.approle.list_roles()["data"]["keys"]
    assert roles == ["deploy"]
    stored = (kustos_server.data_dir).rglob("*")
    for path in stored:
        if path.is_file():
            assert secret["secret_id"].encode() not in path.read_bytes()


def test_userpass_login_good_and_bad(kustos_server: RunningServer, admin: hvac.Client) -> None:
    admin.auth.userpass.create_or_update_user(
        "Dana", password="s3cret-passphrase", policies=["ops"], mount_point="people"
    )
    human = hvac.Client(url=kustos_server.addr)
    answer = human.auth.userpass.login("dana", "s3cret-passphrase", mount_point="people")
    assert answer["auth"]["policies"] == ["default", "ops"]
    me = human.auth.token.lookup_self()["data"]
    assert me["display_name"] == "people-dana" and me["meta"] == {"username": "dana"}
    for user in ("dana", "nobody"):
        with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
            hvac.Client(url=kustos_server.addr).auth.userpass.login(
                user, "wrong", mount_point="people"
            )
        assert raised.value.errors == ["invalid username or password"]
    assert admin.auth.userpass.list_user(mount_point="people")["data"]["keys"] == ["dana"]
    methods = admin.sys.list_auth_methods()["data"]
    assert {methods[p]["type"] for p in ("approle/", "people/", "token/")} == {
        "approle",
        "userpass",
        "token",
    }
    admin.sys.disable_auth_method("people")
    assert "people/" not in admin.sys.list_auth_methods()["data"]
    assert not human.is_authenticated()  # the tokens a disabled method issued are revoked
