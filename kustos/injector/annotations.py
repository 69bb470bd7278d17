"""A pod's injection annotations, Kustos's and Vault's, read into one :class:`Injection`.

The injector is driven by pod annotations. Kustos's own live under
``kustos.io/``; Vault agent injector's (``vault.hashicorp.com/``) are read
unchanged so that a pod written for Vault moves over without edits. A key is
looked up under ``kustos.io/`` first, then under ``vault.hashicorp.com/``.

=====================================  ============================================================
annotation (after the prefix)          meaning
=====================================  ============================================================
``agent-inject``                       ``"true"`` asks for injection (Go ``ParseBool`` spellings)
``agent-inject-status``                ``injected``: already done, nothing more is added
``role``                               the kubernetes auth role the agent logs in with (required)
``agent-inject-secret-<name>``         file ``<name>`` gets the secret at this path (``PATH[#FIELD]``)
``agent-inject-template-<name>``       file ``<name>`` is rendered from this template
``agent-inject-file-<name>``           the file name for ``<name>`` (a plain name, no ``/``)
``agent-inject-command``               command run after each change (Vault: ``-command-<name>``)
``agent-pre-populate``                 ``"false"``: no init container (sidecar only)
``agent-pre-populate-only``            ``"true"``: init container only, no sidecar
``agent-init-first``                   put the agent's init container before the pod's own
``auth-path``                          the auth mount (``kubernetes``; Vault's ``auth/x`` works)
``secret-volume-path``                 where the memory volume is mounted (``/kustos/secrets``)
``service``                            the server address, instead of the injector's ``--address``
``ca-cert``, ``tls-secret``            CA file for the server, and a Secret mounted at ``/kustos/tls``
``agent-image``                        the agent's image
``agent-limits-cpu`` / ``-mem``,       the agent containers' resources (Kubernetes quantities)
``agent-requests-cpu`` / ``-mem``
``agent-run-as-user`` / ``-group``,    the agent's user and group
``agent-run-as-same-user``
``audience`` (``kustos.io/`` only)     audience of the projected ServiceAccount token
=====================================  ============================================================

Vault annotations that would change what is delivered but that Kustos cannot
honour (``agent-configmap``, ``agent-inject-token``, ``auth-type`` other than
``kubernetes``, ``tls-skip-verify``, Vault Enterprise ``namespace``...) are
refused; the ones that only tune Vault agent itself (log level, cache,
revoke-on-shutdown...) are accepted and reported back as admission warnings.
Every refusal is an :class:`AnnotationError` whose message names the
annotation and what is wrong with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kustos.errors import InvalidRequestError

__all__ = [
    "KUSTOS_PREFIX",
    "STATUS_ANNOTATION",
    "VAULT_PREFIX",
    "AnnotationError",
    "Injection",
    "Resources",
    "SecretFile",
    "already_injected",
    "read_injection",
    "wants_injection",
]

KUSTOS_PREFIX: Final = "kustos.io/"
VAULT_PREFIX: Final = "vault.hashicorp.com/"
_PREFIXES: Final = (KUSTOS_PREFIX, VAULT_PREFIX)
STATUS_ANNOTATION: Final = KUSTOS_PREFIX + "agent-inject-status"
"""Set to ``injected`` on every pod the injector changed: a second admission adds nothing."""

_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_FILE_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
_ROLE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_AUTH_PATH: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_SECRET_PATH: Final = re.compile(r"[A-Za-z0-9_.-][^\s#]*(#[^\s#]+)?")
_QUANTITY: Final = re.compile(
    r"\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[mkMGTPE]|[KMGTPE]i)?"
)
_DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_MAX_TEMPLATE: Final = 64 * 1024

_PER_NAME: Final = (
    "agent-inject-secret-",
    "agent-inject-template-",
    "agent-inject-file-",
    "agent-inject-command-",
)
_KNOWN: Final = frozenset(
    {
        "agent-inject",
        "agent-inject-status",
        "role",
        "auth-path",
        "auth-type",
        "agent-inject-command",
        "agent-pre-populate",
        "agent-pre-populate-only",
        "agent-init-first",
        "secret-volume-path",
        "service",
        "ca-cert",
        "tls-secret",
        "agent-image",
        "agent-limits-cpu",
        "agent-limits-mem",
        "agent-requests-cpu",
        "agent-requests-mem",
        "agent-run-as-user",
        "agent-run-as-group",
        "agent-run-as-same-user",
        "audience",
        "preserve-secret-case",
    }
)
_REFUSED: Final = {
    "agent-configmap": "a Vault agent configuration map cannot be read by the Kustos agent; "
    "use agent-inject-secret-<name> and agent-inject-template-<name>",
    "agent-extra-secret": "extra Secrets for a Vault agent configuration are not supported",
    "agent-inject-token": "the agent's token is never written into the pod",
    "auth-config-": "auth-config-* parameters of Vault's auto-auth are not supported",
    "namespace": "Vault Enterprise namespaces are not supported",
    "tls-skip-verify": "TLS verification cannot be turned off; give ca-cert (and tls-secret)",
    "client-cert": "client certificates to the server are not supported",
    "client-key": "client certificates to the server are not supported",
    "agent-json-patch": "raw JSON patches of the agent container are not supported",
    "agent-init-json-patch": "raw JSON patches of the agent container are not supported",
}
"""Vault annotations that change what gets delivered and that Kustos cannot honour."""


class AnnotationError(InvalidRequestError):
    """An injection annotation is malformed or asks for something unsupported; the pod is refused."""


@dataclass(frozen=True)
class SecretFile:
    """One file the agent writes into the memory volume.

    ``secret`` is the secret path (``PATH[#FIELD]``) or ``None``; ``template``
    is the annotation key whose value is the file's template, or ``None``.
    At least one of the two is set.
    """

    name: str
    secret: str | None = None
    template: str | None = None


@dataclass(frozen=True)
class Resources:
    """Requests and limits of the agent containers (Kubernetes quantities); empty = default."""

    limits_cpu: str | None = None
    limits_memory: str | None = None
    requests_cpu: str | None = None
    requests_memory: str | None = None


@dataclass(frozen=True)
class Injection:
    """What one pod asked for: who the agent logs in as and which files it writes."""

    role: str
    files: tuple[SecretFile, ...]
    init: bool = True
    sidecar: bool = True
    init_first: bool = False
    auth_path: str | None = None
    address: str | None = None
    audience: str | None = None
    image: str | None = None
    volume_path: str | None = None
    command: str | None = None
    ca_cert: str | None = None
    tls_secret: str | None = None
    resources: Resources = field(default_factory=Resources)
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_same_user: bool = False
    warnings: tuple[str, ...] = ()


def _lookup(annotations: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """``(key, value)`` of the first prefix that has ``suffix``, Kustos's first."""
    for prefix in _PREFIXES:
        key = prefix + suffix
        if key in annotations:
            return key, annotations[key]
    return None


def _bool(annotations: Mapping[str, str], suffix: str, *, default: bool) -> bool:
    found = _lookup(annotations, suffix)
    if found is None:
        return default
    key, value = found
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise AnnotationError(f'annotation {key} must be "true" or "false", got {value[:64]!r}')


def wants_injection(annotations: Mapping[str, str]) -> bool:
    """Whether ``agent-inject`` (either prefix) asks for injection; a malformed value is refused."""
    return _bool(annotations, "agent-inject", default=False)


def already_injected(annotations: Mapping[str, str]) -> bool:
    """Whether a Kustos (or Vault) injector already changed this pod."""
    return any(annotations.get(p + "agent-inject-status") == "injected" for p in _PREFIXES)


def _text(annotations: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    found = _lookup(annotations, suffix)
    if found is None:
        return None
    key, value = found
    value = value.strip()
    if not value:
        raise AnnotationError(f"annotation {key} is empty")
    return key, value


def _int(annotations: Mapping[str, str], suffix: str) -> int | None:
    found = _text(annotations, suffix)
    if found is None:
        return None
    key, value = found
    if not value.isdigit() or int(value) > 2**31 - 1:
        raise AnnotationError(f"annotation {key} must be a user or group id, got {value[:64]!r}")
    number = int(value)
    if number == 0:
        raise AnnotationError(f"annotation {key}: the agent does not run as root (id 0)")
    return number


def _quantity(annotations: Mapping[str, str], suffix: str) -> str | None:
    found = _text(annotations, suffix)
    if found is None:
        return None
    key, value = found
    if not _QUANTITY.fullmatch(value):
        raise AnnotationError(
            f"annotation {key} must be a Kubernetes quantity such as 100m, 64Mi or 1, got {value[:64]!r}"
        )
    return value


def _unknown_or_refused(annotations: Mapping[str, str]) -> list[str]:
    """Refuse what cannot be honoured; return warnings for the Vault knobs that are ignored."""
    warnings: list[str] = []
    for key in sorted(annotations):
        prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
        if prefix is None:
            continue
        suffix = key[len(prefix) :]
        if suffix in _KNOWN or suffix.startswith(_PER_NAME):
            continue
        reason = next((r for s, r in _REFUSED.items() if suffix == s or suffix.startswith(s)), None)
        if reason is not None:
            if suffix == "namespace" and not annotations[key].strip():
                continue
            raise AnnotationError(f"annotation {key} is not supported: {reason}")
        if prefix == KUSTOS_PREFIX:
            if suffix.startswith("agent-"):
                raise AnnotationError(
                    f"unknown annotation {key} (see the injector documentation for the list)"
                )
            continue
        warnings.append(f"annotation {key} is ignored by the Kustos injector")
    return warnings


def _file_name(key: str, name: str) -> str:
    if not _FILE_NAME.fullmatch(name) or name in (".", ".."):
        raise AnnotationError(
            f"annotation {key}: {name[:64]!r} is not a plain file name "
            "(letters, digits, '.', '_' and '-'; no '/')"
        )
    return name


def _collect_files(annotations: Mapping[str, str]) -> tuple[tuple[SecretFile, ...], str | None]:
    """The files by name, merging both prefixes; also a per-name command (Vault) if any."""
    preserve_case = _bool(annotations, "preserve-secret-case", default=False)
    secrets: dict[str, tuple[str, str]] = {}
    templates: dict[str, str] = {}
    file_names: dict[str, tuple[str, str]] = {}
    commands: dict[str, str] = {}
    for key in sorted(annotations):
        prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
        if prefix is None:
            continue
        suffix = key[len(prefix) :]
        kind = next((k for k in _PER_NAME if suffix.startswith(k)), None)
        if kind is None:
            continue
        name = suffix[len(kind) :]
        if not name:
            raise AnnotationError(f"annotation {key} has no name after {kind!r}")
        if prefix == VAULT_PREFIX and not preserve_case:
            name = name.lower()  # as Vault's injector does, unless preserve-secret-case
        value = annotations[key]
        if kind == "agent-inject-secret-":
            path = value.strip()
            if not _SECRET_PATH.fullmatch(path):
                raise AnnotationError(
                    f"annotation {key} must be a secret path such as secret/data/app/db "
                    f"(optionally #field), got {value[:128]!r}"
                )
            previous = secrets.get(name)
            if previous is not None and previous[1] != path:
                raise AnnotationError(
                    f"annotations {previous[0]} and {key} name different paths for file {name!r}"
                )
            secrets[name] = (key, path)
        elif kind == "agent-inject-template-":
            if not value.strip():
                raise AnnotationError(f"annotation {key} is an empty template")
            if len(value) > _MAX_TEMPLATE:
                raise AnnotationError(f"annotation {key} is longer than {_MAX_TEMPLATE} characters")
            templates.setdefault(name, key)
        elif kind == "agent-inject-file-":
            file_names[name] = (key, _file_name(key, value.strip()))
        else:
            if value.strip():
                commands[name] = value.strip()
    for name, (key, _) in file_names.items():
        if name not in secrets and name not in templates:
            raise AnnotationError(
                f"annotation {key} names no file: there is no agent-inject-secret-{name} "
                f"or agent-inject-template-{name}"
            )
    files: list[SecretFile] = []
    seen: dict[str, str] = {}
    for name in sorted(set(secrets) | set(templates)):
        key = secrets[name][0] if name in secrets else templates[name]
        target = file_names[name][1] if name in file_names else _file_name(key, name)
        if target in seen:
            raise AnnotationError(
                f"files {seen[target]!r} and {name!r} would both be written to {target!r}"
            )
        seen[target] = name
        files.append(
            SecretFile(
                name=target,
                secret=secrets[name][1] if name in secrets else None,
                template=templates.get(name),
            )
        )
    distinct = sorted(set(commands.values()))
    if len(distinct) > 1:
        raise AnnotationError(
            "agent-inject-command-<name> annotations name different commands; the Kustos agent "
            "runs one command after any change: use one command (kustos.io/agent-inject-command)"
        )
    return tuple(files), (distinct[0] if distinct else None)


def read_injection(annotations: Mapping[str, str]) -> Injection:
    """Everything the annotations ask for; raises :class:`AnnotationError` naming the bad one.

    Call it only for a pod where :func:`wants_injection` is true.
    """
    warnings = _unknown_or_refused(annotations)
    role_found = _text(annotations, "role")
    if role_found is None:
        raise AnnotationError(
            "annotation kustos.io/role (or vault.hashicorp.com/role) is required: "
            "the kubernetes auth role the agent logs in with"
        )
    role_key, role = role_found
    if not _ROLE.fullmatch(role):
        raise AnnotationError(f"annotation {role_key}: {role[:64]!r} is not a valid role name")
    files, per_name_command = _collect_files(annotations)
    if not files:
        raise AnnotationError(
            "nothing to inject: add kustos.io/agent-inject-secret-<name>: <path> "
            "or kustos.io/agent-inject-template-<name>"
        )
    auth_type = _text(annotations, "auth-type")
    if auth_type is not None and auth_type[1] != "kubernetes":
        raise AnnotationError(
            f"annotation {auth_type[0]}: only the kubernetes auth method is supported, "
            f"got {auth_type[1][:64]!r}"
        )
    auth_path: str | None = None
    auth_found = _text(annotations, "auth-path")
    if auth_found is not None:
        key, value = auth_found
        value = value.strip("/").removeprefix("auth/")
        if not _AUTH_PATH.fullmatch(value):
            raise AnnotationError(f"annotation {key}: {value[:64]!r} is not an auth mount path")
        auth_path = value
    volume_path: str | None = None
    volume_found = _text(annotations, "secret-volume-path")
    if volume_found is not None:
        key, value = volume_found
        if not value.startswith("/") or "/../" in value + "/" or value.rstrip("/") == "":
            raise AnnotationError(
                f"annotation {key} must be an absolute directory path, got {value[:128]!r}"
            )
        volume_path = value.rstrip("/")
    address: str | None = None
    service = _text(annotations, "service")
    if service is not None:
        key, value = service
        if not value.startswith(("http://", "https://")):
            raise AnnotationError(
                f"annotation {key} must be an http(s):// URL, got {value[:128]!r}"
            )
        address = value
    tls_secret: str | None = None
    tls_found = _text(annotations, "tls-secret")
    if tls_found is not None:
        key, value = tls_found
        if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
            raise AnnotationError(f"annotation {key}: {value[:64]!r} is not a Secret name")
        tls_secret = value
    ca_cert: str | None = None
    ca_found = _text(annotations, "ca-cert")
    if ca_found is not None:
        key, value = ca_found
        if not value.startswith("/"):
            raise AnnotationError(f"annotation {key} must be an absolute file path, got {value!r}")
        ca_cert = value
    command_found = _text(annotations, "agent-inject-command")
    command = command_found[1] if command_found else per_name_command
    if command_found and per_name_command and command_found[1] != per_name_command:
        raise AnnotationError(
            f"annotation {command_found[0]} and agent-inject-command-<name> name different commands"
        )
    audience: str | None = None
    audience_key = KUSTOS_PREFIX + "audience"
    if audience_key in annotations:
        audience = annotations[audience_key].strip()
    pre_populate = _bool(annotations, "agent-pre-populate", default=True)
    pre_populate_only = _bool(annotations, "agent-pre-populate-only", default=False)
    if pre_populate_only and not pre_populate:
        raise AnnotationError(
            "agent-pre-populate-only is true and agent-pre-populate is false: "
            "that leaves no agent container"
        )
    image_found = _text(annotations, "agent-image")
    return Injection(
        role=role,
        files=files,
        init=pre_populate,
        sidecar=not pre_populate_only,
        init_first=_bool(annotations, "agent-init-first", default=False),
        auth_path=auth_path,
        address=address,
        audience=audience,
        image=image_found[1] if image_found else None,
        volume_path=volume_path,
        command=command,
        ca_cert=ca_cert,
        tls_secret=tls_secret,
        resources=Resources(
            limits_cpu=_quantity(annotations, "agent-limits-cpu"),
            limits_memory=_quantity(annotations, "agent-limits-mem"),
            requests_cpu=_quantity(annotations, "agent-requests-cpu"),
            requests_memory=_quantity(annotations, "agent-requests-mem"),
        ),
        run_as_user=_int(annotations, "agent-run-as-user"),
        run_as_group=_int(annotations, "agent-run-as-group"),
        run_as_same_user=_bool(annotations, "agent-run-as-same-user", default=False),
        warnings=tuple(warnings),
    )
