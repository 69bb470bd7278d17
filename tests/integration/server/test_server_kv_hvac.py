"""The unmodified hvac client against a real ``kustos server --dev`` over HTTP: every KV v2 call."""

from __future__ import annotations

import warnings

import httpx
import hvac
import hvac.exceptions
import pytest


def _read(vault: hvac.Client, path: str, version: int | None = None) -> dict[str, object]:
    result: dict[str, object] = vault.secrets.kv.v2.read_secret_version(
        path=path, version=version, raise_on_deleted_version=True
    )
    return result


def test_write_then_read_latest_and_by_version(vault: hvac.Client) -> None:
    first = vault.secrets.kv.v2.create_or_update_secret(
        path="hvac/app", secret={"user": "app", "password": "s3cret-1"}
    )
    assert first["data"]["version"] == 1
    assert first["data"]["destroyed"] is False
    vault.secrets.kv.v2.create_or_update_secret(
        path="hvac/app", secret={"user": "app", "password": "s3cret-2"}
    )

    latest = _read(vault, "hvac/app")
    assert latest["data"]["data"] == {"user": "app", "password": "s3cret-2"}  # type: ignore[index]
    assert latest["data"]["metadata"]["version"] == 2  # type: ignore[index]
    assert latest["lease_id"] == "" and latest["renewable"] is False and "request_id" in latest

    old = _read(vault, "hvac/app", version=1)
    assert old["data"]["data"] == {"user": "app", "password": "s3cret-1"}  # type: ignore[index]
    assert old["data"]["metadata"]["version"] == 1  # type: ignore[index]


def test_nested_values_round_trip(vault: hvac.Client) -> None:
    value = {"a": {"b": [1, 2, {"c": None}], "unicode": "päss✓"}, "n": 1.5, "t": True}
    vault.secrets.kv.v2.create_or_update_secret(path="hvac/nested", secret=value)
    assert _read(vault, "hvac/nested")["data"]["data"] == value  # type: ignore[index]


def test_missing_secret_is_invalid_path(vault: hvac.Client) -> None:
    with pytest.raises(hvac.exceptions.InvalidPath):
        _read(vault, "hvac/does-not-exist")
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.secrets.kv.v2.create_or_update_secret(path="hvac/one", secret={"k": "v"})
        _read(vault, "hvac/one", version=7)


def test_patch_with_hvac_and_with_merge_patch(vault: hvac.Client, http: httpx.Client) -> None:
    vault.secrets.kv.v2.create_or_update_secret(
        path="hvac/patch", secret={"a": "1", "b": {"x": "1", "y": "2"}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # hvac's own patch() reads without raise_on_deleted_version
        vault.secrets.kv.v2.patch(path="hvac/patch", secret={"c": "3"})
    assert _read(vault, "hvac/patch")["data"]["data"] == {
        "a": "1",
        "b": {"x": "1", "y": "2"},
        "c": "3",
    }  # type: ignore[index]

    response = http.patch(
        "/v1/secret/data/hvac/patch",
        content=b'{"data": {"a": null, "b": {"y": "20"}}, "options": {"cas": 2}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["version"] == 3
    assert _read(vault, "hvac/patch")["data"]["data"] == {"b": {"x": "1", "y": "20"}, "c": "3"}  # type: ignore[index]

    wrong_type = http.patch("/v1/secret/data/hvac/patch", json={"data": {"a": "1"}})
    assert wrong_type.status_code == 415
    assert "merge-patch" in wrong_type.json()["errors"][0]
    missing = http.patch(
        "/v1/secret/data/hvac/nope",
        content=b'{"data": {"a": "1"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert missing.status_code == 404


def test_list_with_folders(vault: hvac.Client) -> None:
    for path in ("list/a", "list/b", "list/dir/c", "list/dir/deeper/d"):
        vault.secrets.kv.v2.create_or_update_secret(path=path, secret={"k": "v"})
    assert vault.secrets.kv.v2.list_secrets(path="list")["data"]["keys"] == ["a", "b", "dir/"]
    assert vault.secrets.kv.v2.list_secrets(path="list/dir/")["data"]["keys"] == ["c", "deeper/"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.secrets.kv.v2.list_secrets(path="list/nothing-here")


def test_list_with_get_query_parameter(http: httpx.Client, vault: hvac.Client) -> None:
    vault.secrets.kv.v2.create_or_update_secret(path="qlist/x", secret={"k": "v"})
    response = http.get("/v1/secret/metadata/qlist", params={"list": "true"})
    assert response.status_code == 200
    assert response.json()["data"]["keys"] == ["x"]


def test_read_metadata(vault: hvac.Client) -> None:
    vault.secrets.kv.v2.create_or_update_secret(path="meta/app", secret={"k": "1"})
    vault.secrets.kv.v2.create_or_update_secret(path="meta/app", secret={"k": "2"})
    metadata = vault.secrets.kv.v2.read_secret_metadata(path="meta/app")["data"]
    assert metadata["current_version"] == 2
    assert metadata["oldest_version"] == 0
    assert metadata["max_versions"] == 0
    assert metadata["cas_required"] is False
    assert metadata["delete_version_after"] == "0s"
    assert metadata["custom_metadata"] is None
    assert set(metadata["versions"]) == {"1", "2"}
    assert metadata["versions"]["1"]["deletion_time"] == ""
    assert metadata["versions"]["1"]["destroyed"] is False
    assert metadata["versions"]["2"]["created_by"] == "root"
    assert metadata["created_time"] <= metadata["updated_time"]


def test_soft_delete_undelete_destroy(vault: hvac.Client) -> None:
    kv = vault.secrets.kv.v2
    for n in range(1, 4):
        kv.create_or_update_secret(path="lifecycle", secret={"n": str(n)})

    kv.delete_latest_version_of_secret(path="lifecycle")
    with pytest.raises(hvac.exceptions.InvalidPath) as deleted:
        _read(vault, "lifecycle")
    body = deleted.value.json
    assert body is not None and body["data"]["data"] is None
    assert (
        body["data"]["metadata"]["version"] == 3 and body["data"]["metadata"]["deletion_time"] != ""
    )
    # hvac can return the deleted version's metadata instead of raising
    soft = kv.read_secret_version(path="lifecycle", raise_on_deleted_version=False)
    assert soft["data"]["metadata"]["deletion_time"] != ""

    kv.delete_secret_versions(path="lifecycle", versions=[1])
    with pytest.raises(hvac.exceptions.InvalidPath):
        _read(vault, "lifecycle", version=1)
    assert _read(vault, "lifecycle", version=2)["data"]["data"] == {"n": "2"}  # type: ignore[index]

    kv.undelete_secret_versions(path="lifecycle", versions=[1, 3])
    assert _read(vault, "lifecycle")["data"]["data"] == {"n": "3"}  # type: ignore[index]
    assert _read(vault, "lifecycle", version=1)["data"]["data"] == {"n": "1"}  # type: ignore[index]

    kv.destroy_secret_versions(path="lifecycle", versions=[2])
    with pytest.raises(hvac.exceptions.InvalidPath) as destroyed:
        _read(vault, "lifecycle", version=2)
    assert (
        destroyed.value.json is not None
        and destroyed.value.json["data"]["metadata"]["destroyed"] is True
    )
    kv.undelete_secret_versions(
        path="lifecycle", versions=[2]
    )  # a destroyed version stays destroyed
    with pytest.raises(hvac.exceptions.InvalidPath):
        _read(vault, "lifecycle", version=2)
    versions = kv.read_secret_metadata(path="lifecycle")["data"]["versions"]
    assert versions["2"]["destroyed"] is True
    assert versions["1"]["deletion_time"] == "" and versions["3"]["deletion_time"] == ""


def test_check_and_set(vault: hvac.Client) -> None:
    kv = vault.secrets.kv.v2
    kv.create_or_update_secret(path="cas/app", secret={"v": "1"}, cas=0)
    with pytest.raises(hvac.exceptions.InvalidRequest) as conflict:
        kv.create_or_update_secret(path="cas/app", secret={"v": "2"}, cas=0)
    assert "check-and-set parameter did not match the current version" in str(conflict.value)
    kv.create_or_update_secret(path="cas/app", secret={"v": "2"}, cas=1)
    assert _read(vault, "cas/app")["data"]["data"] == {"v": "2"}  # type: ignore[index]

    kv.update_metadata(path="cas/app", cas_required=True)
    with pytest.raises(hvac.exceptions.InvalidRequest) as required:
        kv.create_or_update_secret(path="cas/app", secret={"v": "3"})
    assert "check-and-set parameter required" in str(required.value)
    assert _read(vault, "cas/app")["data"]["metadata"]["version"] == 2  # type: ignore[index]


def test_metadata_update_prunes_and_delete_removes_everything(vault: hvac.Client) -> None:
    kv = vault.secrets.kv.v2
    for n in range(1, 6):
        kv.create_or_update_secret(path="prune/app", secret={"n": str(n)})
    kv.update_metadata(
        path="prune/app",
        max_versions=2,
        custom_metadata={"owner": "team-a"},
        delete_version_after="1h",
    )
    metadata = kv.read_secret_metadata(path="prune/app")["data"]
    assert sorted(metadata["versions"]) == ["4", "5"]
    assert metadata["oldest_version"] == 4
    assert metadata["max_versions"] == 2
    assert metadata["custom_metadata"] == {"owner": "team-a"}
    assert metadata["delete_version_after"] == "1h0m0s"
    with pytest.raises(hvac.exceptions.InvalidPath):
        _read(vault, "prune/app", version=1)
    assert _read(vault, "prune/app")["data"]["metadata"]["custom_metadata"] == {"owner": "team-a"}  # type: ignore[index]

    kv.create_or_update_secret(path="prune/app", secret={"n": "6"})
    latest = _read(vault, "prune/app")["data"]["metadata"]  # type: ignore[index]
    assert (
        latest["version"] == 6 and latest["deletion_time"] != ""
    )  # delete_version_after applies to new versions
    assert sorted(kv.read_secret_metadata(path="prune/app")["data"]["versions"]) == ["5", "6"]

    kv.delete_metadata_and_all_versions(path="prune/app")
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_metadata(path="prune/app")
    with pytest.raises(hvac.exceptions.InvalidPath):
        _read(vault, "prune/app")


def test_metadata_patch_merges_custom_metadata(vault: hvac.Client, http: httpx.Client) -> None:
    vault.secrets.kv.v2.create_or_update_secret(path="mpatch", secret={"k": "v"})
    vault.secrets.kv.v2.update_metadata(path="mpatch", custom_metadata={"a": "1", "b": "2"})
    response = http.patch(
        "/v1/secret/metadata/mpatch",
        content=b'{"custom_metadata": {"a": null, "c": "3"}, "max_versions": 4}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 204, response.text
    metadata = vault.secrets.kv.v2.read_secret_metadata(path="mpatch")["data"]
    assert metadata["custom_metadata"] == {"b": "2", "c": "3"}
    assert metadata["max_versions"] == 4


def test_subkeys(vault: hvac.Client, http: httpx.Client) -> None:
    vault.secrets.kv.v2.create_or_update_secret(
        path="subkeys/app", secret={"user": "u", "db": {"host": "h", "creds": {"password": "p"}}}
    )
    full = http.get("/v1/secret/subkeys/subkeys/app")
    assert full.status_code == 200
    assert full.json()["data"]["subkeys"] == {
        "user": None,
        "db": {"host": None, "creds": {"password": None}},
    }
    assert full.json()["data"]["metadata"]["version"] == 1
    shallow = http.get("/v1/secret/subkeys/subkeys/app", params={"depth": 1})
    assert shallow.json()["data"]["subkeys"] == {"user": None, "db": None}
    assert b'"p"' not in full.content and b'"h"' not in full.content


def test_mount_config(vault: hvac.Client) -> None:
    vault.sys.enable_secrets_engine(backend_type="kv", path="cfg", options={"version": "2"})
    vault.secrets.kv.v2.configure(max_versions=3, cas_required=True, mount_point="cfg")
    config = vault.secrets.kv.v2.read_configuration(mount_point="cfg")["data"]
    assert config == {"max_versions": 3, "cas_required": True, "delete_version_after": "0s"}
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.secrets.kv.v2.create_or_update_secret(path="x", secret={"k": "v"}, mount_point="cfg")
    for n in range(5):
        vault.secrets.kv.v2.create_or_update_secret(
            path="x", secret={"n": str(n)}, cas=n, mount_point="cfg"
        )
    assert sorted(
        vault.secrets.kv.v2.read_secret_metadata(path="x", mount_point="cfg")["data"]["versions"]
    ) == [
        "3",
        "4",
        "5",
    ]


def test_mount_enable_list_disable(vault: hvac.Client) -> None:
    vault.sys.enable_secrets_engine(backend_type="kv-v2", path="team-a", description="team A")
    mounts = vault.sys.list_mounted_secrets_engines()
    assert mounts["data"]["team-a/"]["type"] == "kv"
    assert mounts["data"]["team-a/"]["options"] == {"version": "2"}
    assert mounts["data"]["team-a/"]["description"] == "team A"
    assert "secret/" in mounts["data"] and "secret/" in mounts

    vault.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"}, mount_point="team-a")
    assert _read_mount(vault, "team-a")["data"]["data"] == {"k": "v"}
    tune = vault.sys.read_mount_configuration(path="team-a")["data"]
    assert tune["options"] == {"version": "2"}

    with pytest.raises(hvac.exceptions.InvalidRequest) as in_use:
        vault.sys.enable_secrets_engine(backend_type="kv-v2", path="team-a")
    assert "already in use" in str(in_use.value)

    vault.sys.disable_secrets_engine(path="team-a")
    assert "team-a/" not in vault.sys.list_mounted_secrets_engines()["data"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        _read_mount(vault, "team-a")
    # a new mount at the same path starts empty
    vault.sys.enable_secrets_engine(backend_type="kv-v2", path="team-a")
    with pytest.raises(hvac.exceptions.InvalidPath):
        _read_mount(vault, "team-a")


def _read_mount(vault: hvac.Client, mount: str) -> dict[str, object]:
    result: dict[str, object] = vault.secrets.kv.v2.read_secret_version(
        path="app", mount_point=mount, raise_on_deleted_version=True
    )
    return result


def test_kv_version_1_is_refused(vault: hvac.Client) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
        vault.sys.enable_secrets_engine(backend_type="kv", path="old-kv")
    assert "only KV version 2 is supported" in str(refused.value)
