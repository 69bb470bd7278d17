"""The injector's decisions on AdmissionReviews: what gets added, what is refused, and idempotence."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
import pytest

from kustos.injector import InjectorSettings, ReviewError, review
from kustos.injector.annotations import AnnotationError, read_injection

SETTINGS = InjectorSettings(address="https://kustos.example:8200", image="kustos:test")


def _pod(annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": "shop", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}], **spec},
    }


def _review(pod: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b1c",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": operation,
            "namespace": "shop",
            "name": "app",
            "object": pod,
        },
    }


def _apply(pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Review ``pod``; return the patched pod and the response."""
    verdict = review(_review(pod), SETTINGS)
    response = verdict.body["response"]
    assert response["uid"] == "0b1c"
    assert response["allowed"] is True, response
    if "patch" not in response:
        return copy.deepcopy(pod), response
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(pod, ops), response


KUSTOS = {
    "kustos.io/agent-inject": "true",
    "kustos.io/role": "shop",
    "kustos.io/agent-inject-secret-db": "secret/data/shop/db",
    "kustos.io/agent-inject-secret-api-key": "secret/data/shop/api#key",
}


def _containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def test_a_kustos_pod_gets_init_sidecar_memory_volume_and_token_volume() -> None:
    pod, response = _apply(_pod(dict(KUSTOS)))
    inits = pod["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["kustos-agent-init", "kustos-agent"]
    init, sidecar = inits
    assert "restartPolicy" not in init and sidecar["restartPolicy"] == "Always"
    assert init["args"][-1] == "--once" and "--once" not in sidecar["args"]
    assert init["image"] == "kustos:test"
    args = sidecar["args"]
    assert args[:2] == ["agent", "--address"]
    pairs = dict(zip(args[1::2], args[2::2], strict=False))
    assert pairs["--address"] == "https://kustos.example:8200"
    assert pairs["--role"] == "shop"
    assert pairs["--auth-path"] == "kubernetes"
    assert pairs["--jwt-file"] == "/kustos/token/token"
    assert pairs["--dir"] == "/kustos/secrets"
    assert pairs["--audience"] == "kustos"
    secrets = [args[i + 1] for i, a in enumerate(args) if a == "--secret"]
    assert secrets == ["api-key=secret/data/shop/api#key", "db=secret/data/shop/db"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["kustos-secrets"] == {"name": "kustos-secrets", "emptyDir": {"medium": "Memory"}}
    (source,) = volumes["kustos-token"]["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "path": "token",
        "expirationSeconds": 3600,
        "audience": "kustos",
    }
    app = _containers(pod)["app"]
    assert app["volumeMounts"] == [
        {"name": "kustos-secrets", "mountPath": "/kustos/secrets", "readOnly": True}
    ]
    token_mounts = {m["name"] for m in sidecar["volumeMounts"]}
    assert token_mounts == {"kustos-secrets", "kustos-token"}
    assert all(m["name"] != "kustos-token" for m in app["volumeMounts"])
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    assert sidecar["securityContext"]["runAsUser"] == 10001
    assert pod["metadata"]["annotations"]["kustos.io/agent-inject-status"] == "injected"
    assert "warnings" not in response


def test_a_second_admission_adds_nothing() -> None:
    once, _ = _apply(_pod(dict(KUSTOS)))
    verdict = review(_review(once), SETTINGS)
    assert verdict.outcome == "skipped"
    assert verdict.body["response"] == {"uid": "0b1c", "allowed": True}


def test_a_vault_pod_is_injected_unchanged_with_templates_from_the_downward_api() -> None:
    template = '{{ with secret "secret/data/shop/db" }}{{ .Data.data.password }}{{ end }}'
    pod, response = _apply(
        _pod(
            {
                "vault.hashicorp.com/agent-inject": "true",
                "vault.hashicorp.com/role": "shop",
                "vault.hashicorp.com/auth-path": "auth/k8s",
                "vault.hashicorp.com/agent-inject-secret-DB.txt": "secret/data/shop/db",
                "vault.hashicorp.com/agent-inject-template-DB.txt": template,
                "vault.hashicorp.com/agent-inject-secret-raw": "secret/data/shop/raw",
                "vault.hashicorp.com/agent-inject-file-raw": "raw.json",
                "vault.hashicorp.com/agent-pre-populate-only": "true",
                "vault.hashicorp.com/agent-init-first": "true",
                "vault.hashicorp.com/log-level": "debug",
            },
            initContainers=[{"name": "migrate", "image": "app:1"}],
        )
    )
    names = [c["name"] for c in pod["spec"]["initContainers"]]
    assert names == ["kustos-agent-init", "migrate"]  # init first, no sidecar
    (agent,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "kustos-agent-init"]
    args = agent["args"]
    assert args[args.index("--auth-path") + 1] == "k8s"
    assert "db.txt=/kustos/templates/db.txt" in args  # names lower-cased, as Vault does
    assert "raw.json=secret/data/shop/raw" in args
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["kustos-templates"]["downwardAPI"]["items"] == [
        {
            "path": "db.txt",
            "fieldRef": {
                "fieldPath": "metadata.annotations['vault.hashicorp.com/agent-inject-template-DB.txt']"
            },
        }
    ]
    assert {m["mountPath"] for m in _containers(pod)["migrate"]["volumeMounts"]} == {
        "/kustos/secrets"
    }
    assert response["warnings"] == [
        "annotation vault.hashicorp.com/log-level is ignored by the Kustos injector"
    ]


def test_the_agent_runs_as_the_apps_user_and_takes_resources_from_annotations() -> None:
    pod, _ = _apply(
        _pod(
            {
                **KUSTOS,
                "kustos.io/agent-limits-mem": "256Mi",
                "kustos.io/agent-requests-cpu": "100m",
                "kustos.io/agent-inject-command": "kill -HUP 1",
                "kustos.io/secret-volume-path": "/etc/secrets/",
                "kustos.io/audience": "",
            },
            securityContext={"runAsUser": 1000, "runAsGroup": 3000},
        )
    )
    sidecar = _containers(pod)["kustos-agent"]
    assert sidecar["securityContext"]["runAsUser"] == 1000
    assert sidecar["securityContext"]["runAsGroup"] == 3000
    assert sidecar["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    args = sidecar["args"]
    assert args[args.index("--exec") + 1] == "kill -HUP 1"
    assert "--exec" not in _containers(pod)["kustos-agent-init"]["args"]
    assert args[args.index("--dir") + 1] == "/etc/secrets"
    assert "--audience" not in args  # "" = the API server's own audience: nothing to check
    (source,) = next(v for v in pod["spec"]["volumes"] if v["name"] == "kustos-token")["projected"][
        "sources"
    ]
    assert "audience" not in source["serviceAccountToken"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kustos.io/agent-inject": "yes"}, 'kustos.io/agent-inject must be "true" or "false"'),
        ({"kustos.io/role": ""}, "annotation kustos.io/role is empty"),
        ({"kustos.io/role": None}, "kustos.io/role (or vault.hashicorp.com/role) is required"),
        (
            {"kustos.io/agent-inject-secret-db": "secret/data/with space"},
            "annotation kustos.io/agent-inject-secret-db must be a secret path",
        ),
        ({"kustos.io/agent-limits-mem": "lots"}, "must be a Kubernetes quantity"),
        ({"kustos.io/agent-run-as-user": "0"}, "does not run as root"),
        ({"kustos.io/agent-inject-file-db": "../etc/passwd"}, "is not a plain file name"),
        ({"kustos.io/agent-inject-file-nope": "x"}, "names no file"),
        ({"kustos.io/agent-inject-secert-db": "secret/data/x"}, "unknown annotation"),
        ({"vault.hashicorp.com/agent-configmap": "cfg"}, "is not supported"),
        ({"vault.hashicorp.com/tls-skip-verify": "true"}, "TLS verification cannot be turned off"),
        ({"vault.hashicorp.com/auth-type": "jwt"}, "only the kubernetes auth method"),
        (
            {"kustos.io/agent-pre-populate": "false", "kustos.io/agent-pre-populate-only": "true"},
            "leaves no agent container",
        ),
        (
            {"vault.hashicorp.com/agent-inject-secret-db": "secret/data/other"},
            "name different paths for file 'db'",
        ),
    ],
)
def test_bad_annotations_are_refused_with_a_message_naming_them(
    changes: dict[str, str | None], message: str
) -> None:
    annotations = dict(KUSTOS)
    for key, value in changes.items():
        if value is None:
            annotations.pop(key)
        else:
            annotations[key] = value
    verdict = review(_review(_pod(annotations)), SETTINGS)
    assert verdict.outcome == "refused"
    response = verdict.body["response"]
    assert response["allowed"] is False and "patch" not in response
    assert response["status"]["code"] == 400
    assert message in response["status"]["message"], response["status"]["message"]


def test_a_pod_with_a_conflicting_volume_or_mount_is_refused() -> None:
    taken = _pod(dict(KUSTOS), volumes=[{"name": "kustos-secrets", "emptyDir": {}}])
    assert (
        "already has a volume named 'kustos-secrets'"
        in review(_review(taken), SETTINGS).body["response"]["status"]["message"]
    )
    mounted = _pod(dict(KUSTOS))
    mounted["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "x", "mountPath": "/kustos/secrets"}
    ]
    assert (
        "already mounts something at /kustos/secrets"
        in review(_review(mounted), SETTINGS).body["response"]["status"]["message"]
    )


def test_pods_without_the_annotation_updates_and_other_kinds_pass_untouched() -> None:
    for document in (
        _review(_pod({})),
        _review(_pod({"kustos.io/agent-inject": "false", "kustos.io/role": "x"})),
        _review(_pod(dict(KUSTOS)), operation="UPDATE"),
    ):
        verdict = review(document, SETTINGS)
        assert verdict.outcome == "skipped"
        assert verdict.body["response"] == {"uid": "0b1c", "allowed": True}
    secret = _review(_pod(dict(KUSTOS)))
    secret["request"]["kind"] = {"group": "", "version": "v1", "kind": "Secret"}
    assert review(secret, SETTINGS).outcome == "skipped"


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}},
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 3}},
    ],
)
def test_a_body_that_is_not_an_admission_review_is_an_error(document: Any) -> None:
    with pytest.raises(ReviewError):
        review(document, SETTINGS)


def test_run_as_same_user_needs_a_non_root_app_user() -> None:
    annotations = {**KUSTOS, "kustos.io/agent-run-as-same-user": "true"}
    verdict = review(_review(_pod(annotations)), SETTINGS)
    assert "agent-run-as-same-user is true" in verdict.message


def test_annotation_errors_never_echo_long_values() -> None:
    with pytest.raises(AnnotationError) as caught:
        read_injection({**KUSTOS, "kustos.io/agent-limits-cpu": "x" * 5000})
    assert len(str(caught.value)) < 300
