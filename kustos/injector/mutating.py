"""The pod change itself: the agent containers, the memory volume, the token volume.

:func:`inject` is pure: it takes a pod (a plain ``dict``, as the API server
sends it), what its annotations asked for (:class:`~kustos.injector.annotations.Injection`)
and the injector's settings, and returns a changed copy. :func:`patch_for`
turns the difference into the RFC 6902 JSON Patch an admission response carries
(computed with the ``jsonpatch`` library, so the operations always match the
object they apply to).

What a pod gets:

* an init container ``kustos-agent-init`` running ``kustos agent ... --once``
  (unless ``agent-pre-populate: "false"``), so the files exist before the
  application starts;
* a native sidecar ``kustos-agent`` (an init container with
  ``restartPolicy: Always``, Kubernetes 1.29+) following the server's change
  stream (unless ``agent-pre-populate-only: "true"``);
* volume ``kustos-secrets``: an ``emptyDir`` with ``medium: Memory`` (tmpfs;
  nothing reaches the node's disk), mounted read-only into every container of
  the pod at ``/kustos/secrets`` (configurable) and read-write into the agent;
* volume ``kustos-token``: a projected ServiceAccount token with the
  configured audience, mounted only into the agent containers;
* volume ``kustos-templates`` when templates are given: a downward-API volume
  that turns each ``agent-inject-template-<name>`` annotation into a file the
  agent reads with ``--template <name>=<file>``;
* volume ``kustos-tls`` when ``tls-secret`` names a Secret (the server's CA);
* annotation ``kustos.io/agent-inject-status: injected``.

The agent runs as the application's user when the pod or its first container
names a non-root ``runAsUser`` (the files it writes are mode 0400, readable
by that user only), otherwise as 10001; it never runs as root.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jsonpatch

from kustos.injector.annotations import STATUS_ANNOTATION, AnnotationError, Injection

__all__ = [
    "AGENT_CONTAINER",
    "DEFAULT_AGENT_IMAGE",
    "DEFAULT_AUDIENCE",
    "INIT_CONTAINER",
    "InjectorSettings",
    "agent_args",
    "inject",
    "patch_for",
]

AGENT_CONTAINER: Final = "kustos-agent"
INIT_CONTAINER: Final = "kustos-agent-init"
SECRETS_VOLUME: Final = "kustos-secrets"
TOKEN_VOLUME: Final = "kustos-token"  # noqa: S105 - a volume name
TEMPLATES_VOLUME: Final = "kustos-templates"
TLS_VOLUME: Final = "kustos-tls"
TOKEN_DIR: Final = "/kustos/token"  # noqa: S105 - a directory
TEMPLATES_DIR: Final = "/kustos/templates"
TLS_DIR: Final = "/kustos/tls"
DEFAULT_AGENT_IMAGE: Final = "ghcr.io/kustos/kustos:0.1.0"
DEFAULT_AUDIENCE: Final = "kustos"
_DEFAULT_UID: Final = 10001
_OURS: Final = frozenset({AGENT_CONTAINER, INIT_CONTAINER})


@dataclass(frozen=True)
class InjectorSettings:
    """The injector's own flags: defaults every pod gets unless its annotations say otherwise."""

    address: str
    image: str = DEFAULT_AGENT_IMAGE
    audience: str = DEFAULT_AUDIENCE
    auth_path: str = "kubernetes"
    volume_path: str = "/kustos/secrets"
    token_seconds: int = 3600
    requests_cpu: str = "25m"
    requests_memory: str = "64Mi"
    limits_memory: str = "128Mi"
    limits_cpu: str | None = None


def agent_args(
    injection: Injection, settings: InjectorSettings, *, once: bool, volume_path: str
) -> list[str]:
    """The ``kustos agent`` arguments for one container (the image's entrypoint is ``kustos``)."""
    args = [
        "agent",
        "--address",
        injection.address or settings.address,
        "--role",
        injection.role,
        "--auth-path",
        injection.auth_path or settings.auth_path,
        "--jwt-file",
        f"{TOKEN_DIR}/token",
        "--dir",
        volume_path,
    ]
    audience = settings.audience if injection.audience is None else injection.audience
    if audience:
        args += ["--audience", audience]  # the agent checks its token carries it
    if injection.ca_cert:
        args += ["--ca-cert", injection.ca_cert]
    for item in injection.files:
        if item.template is not None:
            args += ["--template", f"{item.name}={TEMPLATES_DIR}/{item.name}"]
        elif item.secret is not None:
            args += ["--secret", f"{item.name}={item.secret}"]
    if injection.command and not once:
        args += ["--exec", injection.command]
    if once:
        args.append("--once")
    return args


def _app_user(pod: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The non-root ``runAsUser``/``runAsGroup`` of the first container, else of the pod."""
    spec = pod.get("spec") or {}
    pod_context = spec.get("securityContext") or {}
    containers = spec.get("containers") or []
    first = (containers[0].get("securityContext") or {}) if containers else {}
    user = first.get("runAsUser", pod_context.get("runAsUser"))
    group = first.get("runAsGroup", pod_context.get("runAsGroup"))
    return (
        user if isinstance(user, int) and user > 0 else None,
        group if isinstance(group, int) and group > 0 else None,
    )


def _security_context(pod: Mapping[str, Any], injection: Injection) -> dict[str, Any]:
    app_user, app_group = _app_user(pod)
    if injection.run_as_same_user and app_user is None:
        raise AnnotationError(
            "agent-run-as-same-user is true but the pod's first container runs as root or "
            "names no runAsUser"
        )
    user = injection.run_as_user or app_user or _DEFAULT_UID
    group = injection.run_as_group or app_group or _DEFAULT_UID
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": group,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(injection: Injection, settings: InjectorSettings) -> dict[str, Any]:
    chosen = injection.resources
    requests = {
        "cpu": chosen.requests_cpu or settings.requests_cpu,
        "memory": chosen.requests_memory or settings.requests_memory,
    }
    limits = {"memory": chosen.limits_memory or settings.limits_memory}
    cpu_limit = chosen.limits_cpu or settings.limits_cpu
    if cpu_limit:
        limits["cpu"] = cpu_limit
    return {"requests": requests, "limits": limits}


def _agent_mounts(injection: Injection, volume_path: str) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": SECRETS_VOLUME, "mountPath": volume_path},
        {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
    ]
    if any(item.template for item in injection.files):
        mounts.append({"name": TEMPLATES_VOLUME, "mountPath": TEMPLATES_DIR, "readOnly": True})
    if injection.tls_secret:
        mounts.append({"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": True})
    return mounts


def _volumes(injection: Injection, settings: InjectorSettings) -> list[dict[str, Any]]:
    audience = settings.audience if injection.audience is None else injection.audience
    token: dict[str, Any] = {"path": "token", "expirationSeconds": settings.token_seconds}
    if audience:
        token["audience"] = audience
    volumes: list[dict[str, Any]] = [
        {"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory"}},
        {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}},
    ]
    templates = [
        {
            "path": item.name,
            "fieldRef": {"fieldPath": f"metadata.annotations['{item.template}']"},
        }
        for item in injection.files
        if item.template
    ]
    if templates:
        volumes.append({"name": TEMPLATES_VOLUME, "downwardAPI": {"items": templates}})
    if injection.tls_secret:
        volumes.append({"name": TLS_VOLUME, "secret": {"secretName": injection.tls_secret}})
    return volumes


def _check_free(pod: Mapping[str, Any], volumes: list[dict[str, Any]], volume_path: str) -> None:
    spec = pod.get("spec") or {}
    taken = {v.get("name") for v in spec.get("volumes") or []}
    for volume in volumes:
        if volume["name"] in taken:
            raise AnnotationError(
                f"the pod already has a volume named {volume['name']!r}; "
                "the injector needs that name for its own volume"
            )
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if container.get("name") in _OURS:
            raise AnnotationError(
                f"the pod already has a container named {container['name']!r} "
                f"but no {STATUS_ANNOTATION} annotation"
            )
        for mount in container.get("volumeMounts") or []:
            if str(mount.get("mountPath", "")).rstrip("/") == volume_path:
                raise AnnotationError(
                    f"container {container.get('name')!r} already mounts something at "
                    f"{volume_path}; choose another kustos.io/secret-volume-path"
                )


def inject(
    pod: Mapping[str, Any], injection: Injection, settings: InjectorSettings
) -> dict[str, Any]:
    """A copy of ``pod`` with the agent added; raises :class:`AnnotationError` on a conflict."""
    volume_path = injection.volume_path or settings.volume_path
    volumes = _volumes(injection, settings)
    _check_free(pod, volumes, volume_path)
    changed: dict[str, Any] = copy.deepcopy(dict(pod))
    metadata = changed.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    metadata["annotations"] = {**annotations, STATUS_ANNOTATION: "injected"}
    spec = changed.setdefault("spec", {})
    common = {
        "image": injection.image or settings.image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": _security_context(pod, injection),
        "resources": _resources(injection, settings),
        "volumeMounts": _agent_mounts(injection, volume_path),
    }
    ours: list[dict[str, Any]] = []
    if injection.init:
        ours.append(
            {
                "name": INIT_CONTAINER,
                "args": agent_args(injection, settings, once=True, volume_path=volume_path),
                **copy.deepcopy(common),
            }
        )
    if injection.sidecar:
        ours.append(
            {
                "name": AGENT_CONTAINER,
                "args": agent_args(injection, settings, once=False, volume_path=volume_path),
                "restartPolicy": "Always",
                **copy.deepcopy(common),
            }
        )
    app_mount = {"name": SECRETS_VOLUME, "mountPath": volume_path, "readOnly": True}
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            container["volumeMounts"] = [*(container.get("volumeMounts") or []), dict(app_mount)]
    existing_init = spec.get("initContainers") or []
    spec["initContainers"] = (
        [*ours, *existing_init] if injection.init_first else [*existing_init, *ours]
    )
    spec["volumes"] = [*(spec.get("volumes") or []), *volumes]
    return changed


def patch_for(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The RFC 6902 operations that turn ``before`` into ``after``."""
    operations: list[dict[str, Any]] = jsonpatch.make_patch(dict(before), dict(after)).patch
    return operations
