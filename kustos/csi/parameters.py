"""A Mount request's JSON fields read into :class:`MountParameters` (pure, no I/O).

The driver sends three JSON strings: ``attributes`` (the
SecretProviderClass's ``spec.parameters`` merged with what the driver adds
about the pod), ``secrets`` (the ``nodePublishSecretRef`` Secret, unused
here) and ``permission`` (the default file mode, a JSON number). Parameters,
named as Vault's CSI provider names them so SecretProviderClasses move over:

==============================  ==============================================================
``roleName``                    kubernetes auth role to log in with (required)
``objects``                     YAML list: ``objectName`` (the file), ``secretPath``
                                (``secret/data/app/db``), ``secretKey`` (one field; without
                                it the whole data as JSON), ``encoding`` (``utf-8``, ``base64``,
                                ``hex``: how the value is decoded into the file),
                                ``filePermission`` (octal, e.g. ``"0400"``)
``audience``                    which of the driver's ServiceAccount tokens to use
``vaultKubernetesMountPath``    auth mount path (``kubernetes``); ``authPath`` also works
==============================  ==============================================================

From the driver: ``csi.storage.k8s.io/serviceAccount.tokens`` (JSON: audience
→ ``{token, expirationTimestamp}``, present when the CSIDriver object lists
``tokenRequests``), ``csi.storage.k8s.io/pod.namespace``, ``.../pod.name`` and
``.../serviceAccount.name`` (for log lines). ``vaultAddress`` is ignored: the
provider talks only to the server it was started with.

Errors are :class:`ParameterError` and name the parameter (and object), never a token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import yaml

from kustos.errors import InvalidRequestError
from kustos.sensitive import Sensitive

__all__ = ["MountParameters", "ParameterError", "SecretObject", "read_mount_request"]

TOKENS_ATTRIBUTE: Final = "csi.storage.k8s.io/serviceAccount.tokens"
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
_SECRET_PATH: Final = re.compile(r"[A-Za-z0-9_.-][^\s#?]*")
_AUTH_PATH: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_ROLE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_MAX_OBJECTS: Final = 256

Encoding = Literal["utf-8", "base64", "hex"]


class ParameterError(InvalidRequestError):
    """The SecretProviderClass parameters or the driver's request are unusable; nothing was read."""


@dataclass(frozen=True)
class SecretObject:
    """One file of the volume: where it comes from and how it is written."""

    name: str
    path: str
    key: str | None = None
    encoding: Encoding = "utf-8"
    mode: int | None = None


@dataclass(frozen=True)
class MountParameters:
    """Everything one Mount needs, checked."""

    role: str
    objects: tuple[SecretObject, ...]
    jwt: Sensitive[str]
    mode: int
    auth_path: str | None = None
    namespace: str = ""
    pod: str = ""
    service_account: str = ""


def _json_object(text: str, *, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ParameterError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise ParameterError(f"{what} is not a JSON object")
    return value


def _mode(value: Any, *, what: str) -> int:
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text, 8)
        except ValueError:
            raise ParameterError(f"{what} must be an octal file mode such as 0400") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise ParameterError(f"{what} must be a file mode")
    if not 0 <= number <= 0o777:
        raise ParameterError(f"{what} must be between 0000 and 0777")
    return number


def _object_name(value: Any, index: int) -> str:
    if not isinstance(value, str) or not value:
        raise ParameterError(f"objects[{index}].objectName is required")
    segments = value.split("/")
    if any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
        raise ParameterError(
            f"objects[{index}].objectName {value[:128]!r} must be a relative file path "
            "(letters, digits, '.', '_', '-', separated by '/'; no '..')"
        )
    return value


def _objects(text: Any) -> tuple[SecretObject, ...]:
    if not isinstance(text, str) or not text.strip():
        raise ParameterError(
            "parameter 'objects' is required: a YAML list of objectName/secretPath"
        )
    try:
        items = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ParameterError("parameter 'objects' is not valid YAML") from None
    if not isinstance(items, list) or not items:
        raise ParameterError("parameter 'objects' must be a non-empty YAML list")
    if len(items) > _MAX_OBJECTS:
        raise ParameterError(f"parameter 'objects' lists more than {_MAX_OBJECTS} objects")
    objects: list[SecretObject] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ParameterError(f"objects[{index}] must be a mapping")
        name = _object_name(item.get("objectName"), index)
        if name in names:
            raise ParameterError(f"objects[{index}].objectName {name!r} appears twice")
        names.add(name)
        path = item.get("secretPath")
        if isinstance(path, str):
            path = path.strip().strip("/")
        if not isinstance(path, str) or not _SECRET_PATH.fullmatch(path):
            raise ParameterError(
                f"objects[{index}].secretPath must be a secret path such as secret/data/app/db"
            )
        key = item.get("secretKey")
        if key is not None and (not isinstance(key, str) or not key):
            raise ParameterError(f"objects[{index}].secretKey must be a non-empty string")
        encoding = str(item.get("encoding") or "utf-8").lower()
        if encoding not in ("utf-8", "base64", "hex"):
            raise ParameterError(
                f"objects[{index}].encoding must be utf-8, base64 or hex, got {encoding[:32]!r}"
            )
        mode = item.get("filePermission")
        objects.append(
            SecretObject(
                name=name,
                path=path,
                key=key,
                encoding=encoding,  # type: ignore[arg-type]  # checked above
                mode=None if mode is None else _mode(mode, what=f"objects[{index}].filePermission"),
            )
        )
    return tuple(objects)


def _token(attributes: dict[str, Any], audience: str | None) -> Sensitive[str]:
    raw = attributes.get(TOKENS_ATTRIBUTE)
    if not isinstance(raw, str) or not raw:
        raise ParameterError(
            f"the driver sent no ServiceAccount token ({TOKENS_ATTRIBUTE}): add tokenRequests "
            "to the secrets-store.csi.k8s.io CSIDriver object"
        )
    tokens = _json_object(raw, what=TOKENS_ATTRIBUTE)
    if audience is None and len(tokens) == 1:
        audience = next(iter(tokens))
    if audience is None:
        raise ParameterError(
            f"the driver sent tokens for {len(tokens)} audiences: set parameter 'audience'"
        )
    entry = tokens.get(audience)
    token = entry.get("token") if isinstance(entry, dict) else None
    if not isinstance(token, str) or not token:
        raise ParameterError(
            f"the driver sent no token for audience {audience[:64]!r}: list it in the "
            "CSIDriver's tokenRequests"
        )
    return Sensitive(token)


def read_mount_request(*, attributes: str, permission: str) -> MountParameters:
    """The parameters of one Mount; raises :class:`ParameterError` naming what is wrong."""
    values = _json_object(attributes, what="attributes")
    role = values.get("roleName")
    if not isinstance(role, str) or not role.strip():
        raise ParameterError("parameter 'roleName' is required: the kubernetes auth role")
    if not _ROLE.fullmatch(role.strip()):
        raise ParameterError(f"parameter 'roleName' {role[:64]!r} is not a valid role name")
    objects = _objects(values.get("objects"))
    audience = values.get("audience")
    if audience is not None and not isinstance(audience, str):
        raise ParameterError("parameter 'audience' must be a string")
    auth_path = values.get("vaultKubernetesMountPath") or values.get("authPath")
    if auth_path is not None:
        if not isinstance(auth_path, str) or not _AUTH_PATH.fullmatch(
            auth_path.strip("/").removeprefix("auth/")
        ):
            raise ParameterError("parameter 'vaultKubernetesMountPath' is not an auth mount path")
        auth_path = auth_path.strip("/").removeprefix("auth/")
    mode = 0o644 if not permission else _mode(_permission(permission), what="permission")
    return MountParameters(
        role=role.strip(),
        objects=objects,
        jwt=_token(values, audience or None),
        mode=mode,
        auth_path=auth_path,
        namespace=str(values.get("csi.storage.k8s.io/pod.namespace", "")),
        pod=str(values.get("csi.storage.k8s.io/pod.name", "")),
        service_account=str(values.get("csi.storage.k8s.io/serviceAccount.name", "")),
    )


def _permission(text: str) -> int:
    try:
        value = json.loads(text)
    except ValueError:
        raise ParameterError("permission is not JSON (a decimal file mode such as 420)") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParameterError("permission must be a decimal file mode such as 420")
    return value
