"""Policies enforced by the server, end to end over HTTP with hvac: CRUD, each capability, globs,
deny precedence, path priority, write-only, capabilities endpoints, parameter rules."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import hvac
import hvac.exceptions
import pytest

from tests.support.server import RunningServer

Login = Callable[..., hvac.Client]


def _policy(vault: hvac.Client, name: str, text: str) -> None:
    vault.sys.create_or_update_acl_policy(name=name, policy=text)


def _write(client: hvac.Client, path: str, data: dict[str, str]) -> None:
    client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point="secret")


def _read(client: hvac.Client, path: str) -> dict[str, str]:
    answer = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    data: dict[str, str] = answer["data"]["data"]
    return data


def test_policy_crud_both_spellings(vault: hvac.Client) -> None:
    text = 'path "secret/data/crud/*" {\n  capabilities = ["read"]\n}\n'
    vault.sys.create_or_update_acl_policy(name="crud-acl", policy=text)
    assert vault.sys.read_acl_policy("crud-acl")["data"] == {"name": "crud-acl", "policy": text}
    assert "crud-acl" in vault.sys.list_acl_policies()["data"]["keys"]
    vault.sys.create_or_update_policy(
        name="crud-legacy", policy={"path": {"secret/data/x": {"capabilities": ["list"]}}}
    )
    legacy = vault.sys.read_policy("crud-legacy")
    assert legacy["name"] == "crud-legacy" and '"secret/data/x"' in legacy["rules"]
    listed = vault.sys.list_policies()["policies"]
    assert {"crud-acl", "crud-legacy", "default", "root"} <= set(listed)
    vault.sys.delete_policy("crud-legacy")
    vault.sys.delete_acl_policy("crud-acl")
    assert "crud-acl" not in vault.sys.list_acl_policies()["data"]["keys"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.sys.read_acl_policy("crud-acl")


def test_builtins_and_bad_documents_are_refused(vault: hvac.Client) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest, match="cannot delete the default policy"):
        vault.sys.delete_acl_policy("default")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="root policy"):
        vault.sys.read_acl_policy("root")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="cannot update the root policy"):
        vault.sys.create_or_update_acl_policy(
            name="root", policy='path "*" { capabilities = ["read"] }'
        )
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid capability 'reed'"):
        vault.sys.create_or_update_acl_policy(
            name="bad", policy='path "a/*" { capabilities = ["reed"] }'
        )
    assert 'path "auth/token/lookup-self"' in vault.sys.read_acl_policy("default")["data"]["policy"]


def test_each_capability(vault: hvac.Client, login: Login) -> None:
    _write(vault, "caps/existing", {"k": "v"})
    _policy(vault, "cap-create", 'path "secret/data/caps/*" { capabilities = ["create"] }')
    _policy(vault, "cap-update", 'path "secret/data/caps/*" { capabilities = ["update"] }')
    _policy(vault, "cap-read", 'path "secret/data/caps/*" { capabilities = ["read"] }')
    _policy(vault, "cap-patch", 'path "secret/data/caps/*" { capabilities = ["patch"] }')
    _policy(vault, "cap-delete", 'path "secret/data/caps/*" { capabilities = ["delete"] }')
    _policy(vault, "cap-list", 'path "secret/metadata/caps/*" { capabilities = ["list"] }')
    _policy(
        vault, "cap-sudo", 'path "auth/token/lookup-accessor" { capabilities = ["update", "sudo"] }'
    )

    creator = login("cap-create")
    _write(creator, "caps/new-by-create", {"k": "1"})
    with pytest.raises(hvac.exceptions.Forbidden):  # exists already: update needed
        _write(creator, "caps/existing", {"k": "2"})

    updater = login("cap-update")
    _write(updater, "caps/existing", {"k": "3"})
    with pytest.raises(hvac.exceptions.Forbidden):  # does not exist: create needed
        _write(updater, "caps/new-by-update", {"k": "1"})

    reader = login("cap-read")
    assert _read(reader, "caps/existing") == {"k": "3"}
    with pytest.raises(hvac.exceptions.Forbidden):
        _write(reader, "caps/existing", {"k": "4"})

    patcher = login("cap-patch")
    patched = httpx.patch(  # hvac's patch() reads first; this is the real PATCH
        f"{patcher.url}/v1/secret/data/caps/existing",
        headers={"X-Vault-Token": patcher.token, "Content-Type": "application/merge-patch+json"},
        content=b'{"data": {"extra": "x"}}',
    )
    assert patched.status_code == 200
    assert _read(vault, "caps/existing") == {"k": "3", "extra": "x"}
    with pytest.raises(hvac.exceptions.Forbidden):
        _read(patcher, "caps/existing")

    deleter = login("cap-delete")
    deleter.secrets.kv.v2.delete_latest_version_of_secret(
        path="caps/new-by-create", mount_point="secret"
    )
    with pytest.raises(hvac.exceptions.Forbidden):
        _read(deleter, "caps/existing")

    lister = login("cap-list")
    assert (
        "existing"
        in lister.secrets.kv.v2.list_secrets(path="caps/", mount_point="secret")["data"]["keys"]
    )
    with pytest.raises(hvac.exceptions.Forbidden):
        _read(lister, "caps/existing")
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v2.list_secrets(path="caps", mount_point="secret")

    accessor = vault.auth.token.lookup_self()["data"]["accessor"]
    sudoer = login("cap-sudo")
    assert sudoer.auth.token.lookup_accessor(accessor)["data"]["policies"] == ["root"]
    with pytest.raises(hvac.exceptions.Forbidden):  # update without sudo is not enough
        login("cap-update").auth.token.lookup_accessor(accessor)


def test_globs_deny_precedence_and_priority(vault: hvac.Client, login: Login) -> None:
    for path in (
        "team-a/config",
        "team-b/config",
        "team-a/deep/config",
        "app/special",
        "app/plain",
        "app/denied",
    ):
        _write(vault, path, {"v": path})
    _policy(vault, "glob-plus", 'path "secret/data/+/config" { capabilities = ["read"] }')
    _policy(vault, "prefix", 'path "secret/data/app/*" { capabilities = ["read", "update"] }')
    _policy(vault, "exact", 'path "secret/data/app/special" { capabilities = ["update"] }')
    _policy(vault, "deny-same-pattern", 'path "secret/data/app/*" { capabilities = ["deny"] }')
    _policy(vault, "deny-exact", 'path "secret/data/app/denied" { capabilities = ["deny"] }')

    plus = login("glob-plus")
    assert _read(plus, "team-a/config") == {"v": "team-a/config"}
    assert _read(plus, "team-b/config") == {"v": "team-b/config"}
    with pytest.raises(hvac.exceptions.Forbidden):  # + is exactly one segment
        _read(plus, "team-a/deep/config")

    both = login("prefix", "exact", "deny-exact")
    assert _read(both, "app/plain") == {"v": "app/plain"}
    with pytest.raises(hvac.exceptions.Forbidden):  # the exact rule wins over the glob: update only
        _read(both, "app/special")
    _write(both, "app/special", {"v": "changed"})
    with pytest.raises(hvac.exceptions.Forbidden):  # an exact deny beats the prefix grant
        _read(both, "app/denied")

    denied = login("prefix", "deny-same-pattern")
    with pytest.raises(hvac.exceptions.Forbidden):  # deny merged into the same pattern wins
        _read(denied, "app/plain")


def test_write_only(vault: hvac.Client, login: Login, kustos_server: RunningServer) -> None:
    _policy(
        vault, "write-only", 'path "secret/data/payments/*" { capabilities = ["create", "update"] }'
    )
    writer = login("write-only")
    _write(writer, "payments/db", {"password": "s3cr3t-write-only"})
    _write(writer, "payments/db", {"password": "rotated-write-only"})
    assert _read(vault, "payments/db") == {"password": "rotated-write-only"}
    with pytest.raises(hvac.exceptions.Forbidden):
        _read(writer, "payments/db")
    with pytest.raises(hvac.exceptions.Forbidden):
        writer.secrets.kv.v2.read_secret_metadata(path="payments/db", mount_point="secret")
    token = writer.token
    for url in ("secret/subkeys/payments/db", "secret/data/payments/db?version=1"):
        answer = httpx.get(f"{kustos_server.addr}/v1/{url}", headers={"X-Vault-Token": token})
        assert (
            answer.status_code == 403
            and "rotated" not in answer.text
            and "s3cr3t" not in answer.text
        )


def test_capabilities_endpoints(vault: hvac.Client, login: Login) -> None:
    _policy(vault, "cap-query", 'path "secret/data/q/*" { capabilities = ["read", "list"] }')
    client = login("cap-query")
    mine = client.sys.get_capabilities(paths=["secret/data/q/x", "secret/data/other"])
    assert mine["secret/data/q/x"] == ["list", "read"] and mine["secret/data/other"] == ["deny"]
    single = client.sys.get_capabilities(paths=["secret/data/q/x"])
    assert single["capabilities"] == ["list", "read"]
    other = vault.sys.get_capabilities(paths=["secret/data/q/x"], token=client.token)
    assert other["capabilities"] == ["list", "read"]
    accessor = client.auth.token.lookup_self()["data"]["accessor"]
    assert vault.sys.get_capabilities(paths=["secret/data/q/x"], accessor=accessor)[
        "capabilities"
    ] == ["list", "read"]
    assert vault.sys.get_capabilities(paths=["anything"])["capabilities"] == ["root"]


def test_policy_change_applies_at_once(vault: hvac.Client, login: Login) -> None:
    _write(vault, "live/x", {"v": "1"})
    _policy(vault, "live", 'path "secret/data/live/*" { capabilities = ["read"] }')
    client = login("live")
    assert _read(client, "live/x") == {"v": "1"}
    _policy(vault, "live", 'path "secret/data/live/*" { capabilities = ["deny"] }')
    with pytest.raises(hvac.exceptions.Forbidden):
        _read(client, "live/x")
    vault.sys.delete_acl_policy("live")
    with pytest.raises(hvac.exceptions.Forbidden):
        _read(client, "live/x")


def test_every_area_goes_through_the_policies(vault: hvac.Client, login: Login) -> None:
    client = login("default")
    calls: list[Callable[[], object]] = [
        lambda: client.sys.list_mounted_secrets_engines(),
        lambda: client.sys.list_acl_policies(),
        lambda: client.sys.create_or_update_acl_policy(
            name="x", policy='path "*" { capabilities = ["sudo"] }'
        ),
        lambda: client.sys.list_enabled_audit_devices(),
        lambda: client.auth.token.create(policies=["default"]),
        lambda: client.auth.token.lookup(vault.token),
    ]
    for call in calls:
        with pytest.raises(hvac.exceptions.Forbidden):
            call()
    _policy(vault, "mounts-reader", 'path "sys/mounts" { capabilities = ["read"] }')
    assert "secret/" in login("mounts-reader").sys.list_mounted_secrets_engines()["data"]


def test_parameter_rules_are_enforced(
    vault: hvac.Client, login: Login, kustos_server: RunningServer
) -> None:
    _policy(vault, "app-read", 'path "secret/data/app/*" { capabilities = ["read"] }')
    _policy(
        vault,
        "token-maker",
        'path "auth/token/create" {\n  capabilities = ["update"]\n'
        '  allowed_parameters = { "policies" = ["app-read", "default"], "ttl" = [] }\n}\n',
    )
    maker = login("token-maker", "app-read")
    url = f"{kustos_server.addr}/v1/auth/token/create"
    headers = {"X-Vault-Token": maker.token}
    assert (
        httpx.post(url, headers=headers, json={"policies": ["app-read"], "ttl": "10m"}).status_code
        == 200
    )
    refused = httpx.post(url, headers=headers, json={"policies": ["app-read"], "display_name": "x"})
    assert refused.status_code == 403 and "display_name" in refused.json()["errors"][0]
    refused = httpx.post(url, headers=headers, json={"policies": ["token-maker"]})
    assert refused.status_code == 403 and "policies" in refused.json()["errors"][0]
