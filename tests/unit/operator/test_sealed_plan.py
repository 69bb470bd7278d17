"""The SealedSecret controller's pure decision: create, take over, patch in, or refuse."""

from __future__ import annotations

from typing import Any

import pytest

from kustos.operator.sealed import (
    ANNOTATION_MANAGED,
    ANNOTATION_PATCH,
    ANNOTATION_SKIP_OWNER,
    NotManagedError,
    plan_sealed_secret,
)

SEALED: dict[str, Any] = {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
                          "metadata": {"name": "db", "namespace": "app", "uid": "u-1"}}  # fmt: skip
UNSEALED: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": "db", "namespace": "app", "labels": {"team": "a"}},
                            "data": {"pw": "c2VjcmV0"}}  # fmt: skip


def _existing(
    annotations: dict[str, str] | None = None, owners: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"metadata": {"name": "db", "namespace": "app", "annotations": annotations or {},
                         "ownerReferences": owners or []},
            "data": {"pw": "b2xk", "extra": "eA=="}, "type": "Opaque"}  # fmt: skip


def test_a_missing_secret_is_created_with_an_owner_reference() -> None:
    plan = plan_sealed_secret(sealed=SEALED, unsealed=UNSEALED, existing=None)
    assert plan.action == "create" and plan.event_reason == "Unsealed"
    [owner] = plan.body["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["kind"], owner["controller"]) == ("u-1", "SealedSecret", True)
    assert plan.body["data"] == {"pw": "c2VjcmV0"} and plan.body["metadata"]["labels"] == {
        "team": "a"
    }


def test_skip_set_owner_references() -> None:
    unsealed = {
        **UNSEALED,
        "metadata": {**UNSEALED["metadata"], "annotations": {ANNOTATION_SKIP_OWNER: "true"}},
    }
    plan = plan_sealed_secret(sealed=SEALED, unsealed=unsealed, existing=None)
    assert "ownerReferences" not in plan.body["metadata"]


def test_an_unmanaged_secret_is_refused() -> None:
    with pytest.raises(NotManagedError, match="already exists and is not managed by SealedSecret"):
        plan_sealed_secret(sealed=SEALED, unsealed=UNSEALED, existing=_existing())
    other_owner = [{"kind": "SealedSecret", "uid": "someone-else", "controller": True}]
    with pytest.raises(NotManagedError):
        plan_sealed_secret(sealed=SEALED, unsealed=UNSEALED, existing=_existing(owners=other_owner))


def test_managed_replaces_data_and_takes_ownership() -> None:
    plan = plan_sealed_secret(
        sealed=SEALED, unsealed=UNSEALED, existing=_existing({ANNOTATION_MANAGED: "true"})
    )
    assert plan.action == "patch"
    assert plan.body["data"] == {"pw": "c2VjcmV0", "extra": None}
    assert plan.body["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_patch_merges_our_keys_and_keeps_the_others() -> None:
    plan = plan_sealed_secret(
        sealed=SEALED, unsealed=UNSEALED, existing=_existing({ANNOTATION_PATCH: "true"})
    )
    assert plan.body["data"] == {"pw": "c2VjcmV0"}
    assert "ownerReferences" not in plan.body["metadata"]


def test_an_owned_secret_in_sync_needs_nothing() -> None:
    owned = _existing(owners=[{"kind": "SealedSecret", "uid": "u-1", "controller": True}])
    owned["data"] = {"pw": "c2VjcmV0"}
    owned["metadata"]["labels"] = {"team": "a"}
    assert plan_sealed_secret(sealed=SEALED, unsealed=UNSEALED, existing=owned).action == "none"
