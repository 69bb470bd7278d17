"""ExternalSecret pure steps: spec parsing, durations, templates, creation/deletion policies, fake provider."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kustos.errors import InvalidRequestError, NotFoundError
from kustos.operator.providers.base import RemoteRef
from kustos.operator.providers.fake import FakeProvider
from kustos.operator.syncing import (
    ANNOTATION_DATA_HASH,
    LABEL_MANAGED,
    desired_secret,
    fetch_data,
    parse_duration,
    parse_spec,
    plan_deletion,
    plan_secret,
)
from kustos.sensitive import Sensitive

OWNER = {
    "apiVersion": "kustos.io/v1",
    "kind": "ExternalSecret",
    "metadata": {"name": "es", "namespace": "ns", "uid": "u-1"},
}


def _es(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "secretStoreRef": {"name": "store"},
        "data": [{"secretKey": "k", "remoteRef": {"key": "a"}}],
    }
    base.update(spec)
    return {**OWNER, "spec": base}


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(None, 3600.0), ("0", 0.0), ("15s", 15.0), ("1h30m", 5400.0), ("250ms", 0.25)],
)
def test_parse_duration(text: str | None, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "10", "1d", "-5s"])
def test_parse_duration_rejects_nonsense(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="refreshInterval"):
        parse_duration(bad)


def test_parse_spec_defaults_and_errors() -> None:
    spec = parse_spec(_es())
    assert (
        spec.target_name,
        spec.creation_policy.value,
        spec.deletion_policy.value,
        spec.refresh,
    ) == ("es", "Owner", "Retain", 3600.0)
    with pytest.raises(InvalidRequestError, match=r"secretStoreRef\.name"):
        parse_spec({**OWNER, "spec": {"data": []}})
    with pytest.raises(
        InvalidRequestError,
        match=r"creationPolicy must be one of Owner, Orphan, Merge, None, CreateOrMerge, not .Sometimes.",
    ):
        parse_spec(_es(target={"creationPolicy": "Sometimes"}))
    with pytest.raises(InvalidRequestError, match=r"dataFrom\[0\]"):
        parse_spec(_es(dataFrom=[{}]))


async def test_fetch_data_with_property_extract_find_and_rewrite() -> None:
    provider = FakeProvider(
        entries=[
            {"key": "json", "value": '{"user": "u", "nested": {"port": 5432}}'},
            {"key": "app/one", "value": "1"},
            {"key": "app/two", "value": "2"},
            {"key": "b64", "value": _b64(b"raw")},
            {"key": "v", "value": "old", "version": "1"},
        ]
    )
    spec = parse_spec(
        _es(
            data=[
                {"secretKey": "port", "remoteRef": {"key": "json", "property": "nested.port"}},
                {"secretKey": "raw", "remoteRef": {"key": "b64", "decodingStrategy": "Base64"}},
                {"secretKey": "old", "remoteRef": {"key": "v", "version": "1"}},
            ],
            dataFrom=[
                {"extract": {"key": "json"}},
                {
                    "find": {"name": {"regexp": "^app/"}},
                    "rewrite": [{"regexp": {"source": "app/(.*)", "target": "x-$1"}}],
                },
            ],
        )
    )
    data = {k: v.reveal() for k, v in (await fetch_data(spec, provider)).items()}
    assert data == {
        "user": b"u",
        "nested": b'{"port":5432}',
        "x-one": b"1",
        "x-two": b"2",
        "port": b"5432",
        "raw": b"raw",
        "old": b"old",
    }
    with pytest.raises(NotFoundError):
        await provider.get(RemoteRef(key="missing"))


def test_template_merge_policy_and_errors_do_not_leak_values() -> None:
    spec = parse_spec(
        _es(target={"template": {"mergePolicy": "Merge", "data": {"url": "https://{{ user }}@h"}}})
    )
    desired = desired_secret(spec, {"user": Sensitive(b"bob")})
    assert desired.plain() == {"user": b"bob", "url": b"https://bob@h"}
    assert "bob" not in repr(desired)
    bad = parse_spec(_es(target={"template": {"data": {"x": "{{ missing }}"}}}))
    with pytest.raises(InvalidRequestError, match="key 'x'") as info:
        desired_secret(bad, {"user": Sensitive(b"s3cr3t")})
    assert "s3cr3t" not in str(info.value)
    sandboxed = parse_spec(
        _es(target={"template": {"data": {"x": "{{ user.__class__.__mro__ }}"}}})
    )
    with pytest.raises(InvalidRequestError):
        desired_secret(sandboxed, {"user": Sensitive(b"v")})


def test_plan_create_then_nothing_then_revert_hand_edit() -> None:
    spec = parse_spec(_es())
    desired = desired_secret(spec, {"k": Sensitive(b"v")})
    create = plan_secret(spec=spec, owner=OWNER, existing=None, desired=desired)
    assert create.action == "create" and create.event_reason == "Created"
    body = create.body
    assert body["data"] == {"k": _b64(b"v")}
    assert body["metadata"]["labels"][LABEL_MANAGED] == "true"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert plan_secret(spec=spec, owner=OWNER, existing=body, desired=desired).action == "none"
    edited = {**body, "data": {"k": _b64(b"hand"), "extra": _b64(b"x")}}
    revert = plan_secret(spec=spec, owner=OWNER, existing=edited, desired=desired)
    assert revert.action == "patch" and revert.body["data"] == {"k": _b64(b"v"), "extra": None}
    assert revert.event_reason == "Updated"


def test_creation_policies() -> None:
    desired_for = lambda spec: desired_secret(spec, {"k": Sensitive(b"v")})  # noqa: E731
    orphan = parse_spec(_es(target={"creationPolicy": "Orphan"}))
    assert (
        "ownerReferences"
        not in plan_secret(
            spec=orphan, owner=OWNER, existing=None, desired=desired_for(orphan)
        ).body["metadata"]
    )
    none = parse_spec(_es(target={"creationPolicy": "None"}))
    assert (
        plan_secret(spec=none, owner=OWNER, existing=None, desired=desired_for(none)).action
        == "none"
    )
    merge = parse_spec(_es(target={"creationPolicy": "Merge"}))
    with pytest.raises(InvalidRequestError, match="does not exist"):
        plan_secret(spec=merge, owner=OWNER, existing=None, desired=desired_for(merge))
    existing = {"metadata": {"name": "es"}, "data": {"other": _b64(b"keep")}}
    patch = plan_secret(spec=merge, owner=OWNER, existing=existing, desired=desired_for(merge))
    assert (
        patch.body["data"] == {"k": _b64(b"v")}
        and ANNOTATION_DATA_HASH in patch.body["metadata"]["annotations"]
    )
    owner = parse_spec(_es())
    foreign = {
        "metadata": {
            "name": "es",
            "ownerReferences": [{"controller": True, "uid": "other", "kind": "X", "name": "y"}],
        }
    }
    with pytest.raises(InvalidRequestError, match="owned by"):
        plan_secret(spec=owner, owner=OWNER, existing=foreign, desired=desired_for(owner))


def test_deletion_policies() -> None:
    managed = {
        "metadata": {"labels": {LABEL_MANAGED: "true"}},
        "data": {"k": "dg==", "other": "eA=="},
    }
    assert (
        plan_deletion(spec=parse_spec(_es()), existing=managed, managed_keys=["k"]).action == "none"
    )
    delete = plan_deletion(
        spec=parse_spec(_es(target={"deletionPolicy": "Delete"})),
        existing=managed,
        managed_keys=["k"],
    )
    assert delete.action == "delete"
    unmanaged = {"metadata": {}, "data": {"k": "dg=="}}
    assert (
        plan_deletion(
            spec=parse_spec(_es(target={"deletionPolicy": "Delete"})),
            existing=unmanaged,
            managed_keys=["k"],
        ).action
        == "none"
    )
    merge = plan_deletion(
        spec=parse_spec(_es(target={"deletionPolicy": "Merge"})),
        existing=managed,
        managed_keys=["k"],
    )
    assert merge.action == "patch" and merge.body["data"] == {"k": None}
