"""Token features over HTTP with hvac: TTL and max TTL, renew (self, token, accessor), revoke with
children, revoke-orphan, accessors, the subset rule and sudo on the root-protected endpoints."""

from __future__ import annotations

from collections.abc import Callable

import hvac
import hvac.exceptions
import pytest

from tests.support.server import RunningServer

Login = Callable[..., hvac.Client]


def _client(server: RunningServer, token: str) -> hvac.Client:
    return hvac.Client(url=server.addr, token=token)


def test_ttl_max_ttl_and_renewals(vault: hvac.Client, kustos_server: RunningServer) -> None:
    auth = vault.auth.token.create(policies=["default"], ttl="10m", explicit_max_ttl="30m")["auth"]
    assert auth["lease_duration"] == 600
    renewed = vault.auth.token.renew(auth["client_token"], increment="20m")["auth"]
    assert 1190 <= renewed["lease_duration"] <= 1200
    by_accessor = vault.auth.token.renew_accessor(auth["accessor"], increment="2h")["auth"]
    assert by_accessor["client_token"] == ""
    assert by_accessor["lease_duration"] <= 1800  # capped by explicit_max_ttl
    looked = vault.auth.token.lookup(auth["client_token"])["data"]
    assert looked["explicit_max_ttl"] == 1800 and looked["ttl"] <= 1800
    self_renewed = _client(kustos_server, auth["client_token"]).auth.token.renew_self(
        increment="5m"
    )["auth"]
    assert 290 <= self_renewed["lease_duration"] <= 300


def test_revoke_takes_children_revoke_orphan_does_not(
    vault: hvac.Client, kustos_server: RunningServer
) -> None:
    _ = vault.sys.create_or_update_acl_policy(
        name="token-parent", policy='path "auth/token/create" { capabilities = ["update"] }'
    )
    parent = vault.auth.token.create(policies=["token-parent"], ttl="1h")["auth"]["client_token"]
    parent_client = _client(kustos_server, parent)
    child = parent_client.auth.token.create(policies=["token-parent"], ttl="30m")["auth"][
        "client_token"
    ]
    grandchild = _client(kustos_server, child).auth.token.create(policies=["default"], ttl="10m")
    assert grandchild["auth"]["orphan"] is False
    vault.auth.token.revoke(parent)
    for token in (parent, child, grandchild["auth"]["client_token"]):
        with pytest.raises(hvac.exceptions.Forbidden):
            _client(kustos_server, token).auth.token.lookup_self()

    parent = vault.auth.token.create(policies=["token-parent"], ttl="1h")["auth"]["client_token"]
    child = _client(kustos_server, parent).auth.token.create(policies=["default"], ttl="30m")[
        "auth"
    ]["client_token"]
    vault.auth.token.revoke_and_orphan_children(parent)
    with pytest.raises(hvac.exceptions.Forbidden):
        _client(kustos_server, parent).auth.token.lookup_self()
    assert _client(kustos_server, child).auth.token.lookup_self()["data"]["orphan"] is True


def test_orphans_and_subset_rule_need_sudo(vault: hvac.Client, login: Login) -> None:
    vault.sys.create_or_update_acl_policy(
        name="maker", policy='path "auth/token/create" { capabilities = ["update"] }'
    )
    vault.sys.create_or_update_acl_policy(
        name="sudo-maker",
        policy='path "auth/token/create" { capabilities = ["update", "sudo"] }\n'
        'path "auth/token/create-orphan" { capabilities = ["update", "sudo"] }',
    )
    vault.sys.create_or_update_acl_policy(
        name="other", policy='path "secret/*" { capabilities = ["read"] }'
    )
    maker = login("maker")
    assert maker.auth.token.create(policies=["maker"], ttl="5m")["auth"]["policies"] == [
        "default",
        "maker",
    ]
    with pytest.raises(hvac.exceptions.Forbidden, match="subset"):
        maker.auth.token.create(policies=["other"])
    with pytest.raises(hvac.exceptions.Forbidden, match="orphan"):
        maker.auth.token.create(policies=["maker"], no_parent=True)
    sudo = login("sudo-maker")
    created = sudo.auth.token.create(policies=["other"], no_parent=True, ttl="5m")["auth"]
    assert created["orphan"] is True and "other" in created["policies"]
    with pytest.raises(hvac.exceptions.Forbidden):
        sudo.auth.token.create(policies=["root"])
    orphan = sudo.auth.token.create_orphan(policies=["other"], ttl="5m")["auth"]
    assert orphan["orphan"] is True


def test_lookup_and_lookup_accessor_need_sudo(vault: hvac.Client, login: Login) -> None:
    target = vault.auth.token.create(policies=["default"], ttl="5m")["auth"]
    vault.sys.create_or_update_acl_policy(
        name="lookup-plain",
        policy='path "auth/token/lookup" { capabilities = ["update"] }\n'
        'path "auth/token/lookup-accessor" { capabilities = ["update"] }',
    )
    vault.sys.create_or_update_acl_policy(
        name="lookup-sudo",
        policy='path "auth/token/lookup" { capabilities = ["update", "sudo"] }\n'
        'path "auth/token/lookup-accessor" { capabilities = ["update", "sudo"] }',
    )
    plain = login("lookup-plain")
    with pytest.raises(hvac.exceptions.Forbidden):
        plain.auth.token.lookup(target["client_token"])
    with pytest.raises(hvac.exceptions.Forbidden):
        plain.auth.token.lookup_accessor(target["accessor"])
    sudo = login("lookup-sudo")
    assert sudo.auth.token.lookup(target["client_token"])["data"]["accessor"] == target["accessor"]
    by_accessor = sudo.auth.token.lookup_accessor(target["accessor"])["data"]
    assert by_accessor["id"] == "" and by_accessor["policies"] == ["default"]
