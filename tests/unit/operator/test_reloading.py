"""Reloader rules: Stakater's hash, env var names, annotation matching, and patch planning."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from kustos.operator.reloading import (
    ANNOTATION_HASHES,
    ANNOTATION_LAST_RELOADED_FROM,
    SourceKind,
    Strategy,
    configmap_hash,
    env_var_name,
    plan_reloads,
    recorded_hash,
    referenced_sources,
    secret_hash,
    source_hash,
    wants_reload,
)


def _secret(
    name: str, data: dict[str, bytes], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations or {}},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _deployment(
    name: str,
    annotations: dict[str, str],
    *,
    env: list[dict[str, Any]] | None = None,
    env_from: str | None = None,
    volume_secret: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "x", "env": list(env or [])}
    spec: dict[str, Any] = {"containers": [container, {"name": "sidecar", "image": "y"}]}
    if env_from:
        container["envFrom"] = [{"secretRef": {"name": env_from}}]
    if volume_secret:
        spec["volumes"] = [{"name": "creds", "secret": {"secretName": volume_secret}}]
        container["volumeMounts"] = [{"name": "creds", "mountPath": "/creds"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
        "spec": {"template": {"metadata": {}, "spec": spec}},
    }


def test_secret_hash_is_sha1_of_sorted_key_value_pairs_joined_by_semicolon() -> None:
    expected = hashlib.sha1(b"a=1;b=two", usedforsecurity=False).hexdigest()
    assert secret_hash({"b": b"two", "a": b"1"}) == expected
    assert source_hash(SourceKind.SECRET, _secret("s", {"b": b"two", "a": b"1"})) == expected


def test_configmap_hash_encodes_binary_data_in_base64() -> None:
    expected = hashlib.sha1(b"bin=dGVzdA==;test=test", usedforsecurity=False).hexdigest()
    assert configmap_hash({"test": "test"}, {"bin": b"test"}) == expected
    assert configmap_hash({"test": "test"}) != expected


def test_env_var_name_follows_stakater() -> None:
    assert (
        env_var_name(kind=SourceKind.SECRET, name="www.stakater.com")
        == "STAKATER_WWW_STAKATER_COM_SECRET"
    )
    assert (
        env_var_name(kind=SourceKind.CONFIGMAP, name="db--creds") == "STAKATER_DB_CREDS_CONFIGMAP"
    )


def test_referenced_sources_finds_env_envfrom_and_volumes() -> None:
    workload = _deployment(
        "d",
        {},
        env=[{"name": "P", "valueFrom": {"secretKeyRef": {"name": "a", "key": "k"}}}],
        env_from="b",
        volume_secret="c",
    )
    refs = referenced_sources(workload["spec"]["template"]["spec"])
    assert refs == {
        (SourceKind.SECRET, "a"): ["app"],
        (SourceKind.SECRET, "b"): ["app"],
        (SourceKind.SECRET, "c"): ["app"],
    }


def test_annotations_select_workloads() -> None:
    auto = _deployment("auto", {"reloader.stakater.com/auto": "true"}, env_from="db")
    named = _deployment("named", {"secret.reloader.stakater.com/reload": "other, db"})
    search = _deployment("search", {"reloader.stakater.com/search": "true"}, env_from="db")
    search_other = _deployment(
        "search-other", {"reloader.stakater.com/search": "true"}, env_from="unrelated"
    )
    plain = _deployment("plain", {}, env_from="db")
    auto_other = _deployment(
        "auto-other", {"reloader.stakater.com/auto": "true"}, env_from="unrelated"
    )
    assert wants_reload(auto, kind=SourceKind.SECRET, name="db", source_annotations={})
    assert wants_reload(named, kind=SourceKind.SECRET, name="db", source_annotations={})
    assert not wants_reload(named, kind=SourceKind.CONFIGMAP, name="db", source_annotations={})
    assert not wants_reload(search, kind=SourceKind.SECRET, name="db", source_annotations={})
    assert wants_reload(
        search,
        kind=SourceKind.SECRET,
        name="db",
        source_annotations={"reloader.stakater.com/match": "true"},
    )
    # search, like auto, acts only on what the pod template uses (Stakater's rule)
    assert not wants_reload(
        search_other,
        kind=SourceKind.SECRET,
        name="db",
        source_annotations={"reloader.stakater.com/match": "true"},
    )
    assert not wants_reload(plain, kind=SourceKind.SECRET, name="db", source_annotations={})
    assert not wants_reload(auto_other, kind=SourceKind.SECRET, name="db", source_annotations={})
    assert not wants_reload(
        auto,
        kind=SourceKind.SECRET,
        name="db",
        source_annotations={"reloader.stakater.com/ignore": "true"},
    )


def test_env_var_strategy_patches_the_using_container_once() -> None:
    source = _secret("db", {"password": b"s3cret"})
    new = source_hash(SourceKind.SECRET, source)
    workloads = [
        _deployment("auto", {"reloader.stakater.com/auto": "true"}, env_from="db"),
        _deployment("plain", {}, env_from="db"),
    ]
    reloads = plan_reloads(
        kind=SourceKind.SECRET,
        source=source,
        new_hash=new,
        previous_hash="old",
        workloads=workloads,
        strategy=Strategy.ENV_VARS,
        now=1700000000,
    )
    assert [r.name for r in reloads] == ["auto"]
    template = reloads[0].patch["spec"]["template"]
    app, sidecar = template["spec"]["containers"]
    assert {"name": "STAKATER_DB_SECRET", "value": new} in app["env"]
    assert "env" not in sidecar
    source_info = json.loads(template["metadata"]["annotations"][ANNOTATION_LAST_RELOADED_FROM])
    assert source_info == {
        "type": "SECRET",
        "name": "db",
        "namespace": "ns",
        "hash": new,
        "containerRefs": ["app"],
        "observedAt": 1700000000,
    }
    # Once the patch is applied, the same hash plans nothing: no second rollout.
    workloads[0]["spec"]["template"]["spec"]["containers"] = template["spec"]["containers"]
    assert (
        recorded_hash(workloads[0], kind=SourceKind.SECRET, name="db", strategy=Strategy.ENV_VARS)
        == new
    )
    assert (
        plan_reloads(
            kind=SourceKind.SECRET,
            source=source,
            new_hash=new,
            previous_hash="old",
            workloads=workloads,
            strategy=Strategy.ENV_VARS,
            now=1,
        )
        == []
    )


def test_first_sight_after_restart_patches_only_stale_workloads() -> None:
    source = _secret("db", {"password": b"new"})
    new = source_hash(SourceKind.SECRET, source)
    never = _deployment("never", {"reloader.stakater.com/auto": "true"}, env_from="db")
    current = _deployment(
        "current",
        {"reloader.stakater.com/auto": "true"},
        env=[{"name": "STAKATER_DB_SECRET", "value": new}],
        env_from="db",
    )
    stale = _deployment(
        "stale",
        {"reloader.stakater.com/auto": "true"},
        env=[{"name": "STAKATER_DB_SECRET", "value": "0" * 40}],
        env_from="db",
    )
    reloads = plan_reloads(
        kind=SourceKind.SECRET,
        source=source,
        new_hash=new,
        previous_hash=None,
        workloads=[never, current, stale],
        strategy=Strategy.ENV_VARS,
        now=0,
    )
    assert [r.name for r in reloads] == ["stale"]


def test_unchanged_hash_plans_nothing() -> None:
    source = _secret("db", {"password": b"x"})
    new = source_hash(SourceKind.SECRET, source)
    workloads = [_deployment("auto", {"reloader.stakater.com/auto": "true"}, env_from="db")]
    assert (
        plan_reloads(
            kind=SourceKind.SECRET,
            source=source,
            new_hash=new,
            previous_hash=new,
            workloads=workloads,
            strategy=Strategy.ENV_VARS,
            now=0,
        )
        == []
    )


def test_annotation_strategy_records_per_source_hashes() -> None:
    source = _secret("db", {"password": b"x"})
    new = source_hash(SourceKind.SECRET, source)
    workload = _deployment("d", {"secret.reloader.stakater.com/reload": "db"})
    (reload,) = plan_reloads(
        kind=SourceKind.SECRET,
        source=source,
        new_hash=new,
        previous_hash="old",
        workloads=[workload],
        strategy=Strategy.ANNOTATIONS,
        now=5,
    )
    annotations = reload.patch["spec"]["template"]["metadata"]["annotations"]
    assert json.loads(annotations[ANNOTATION_HASHES]) == {"secret/db": new}
    assert "spec" not in reload.patch["spec"]["template"]
    workload["spec"]["template"]["metadata"]["annotations"] = annotations
    assert (
        recorded_hash(workload, kind=SourceKind.SECRET, name="db", strategy=Strategy.ANNOTATIONS)
        == new
    )
