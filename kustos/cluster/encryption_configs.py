"""The EncryptionConfiguration kube-apiserver reads (``--encryption-provider-config``).

:func:`build_config` writes one ``resources`` entry for Secrets (and any
resources named) whose providers are, in order: the KMS v2 plugin (when a
socket is given), ``aescbc`` and/or ``secretbox`` with freshly generated keys
(when asked), and ``identity`` last. The first provider encrypts every write;
all of them are tried on reads, so ``identity`` last keeps Secrets written
before the switch readable until ``kustos cluster rewrite-secrets`` has
re-encrypted them.

The document holds the generated local keys: write it with mode 0600 on the
control-plane node only. A KMS v2 provider keeps no key in it.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Final

import yaml

from kustos.errors import ConfigError

__all__ = ["DEFAULT_TIMEOUT", "build_config", "render_config"]

DEFAULT_TIMEOUT: Final = "3s"
_RESOURCE: Final = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$|^\*\.\*$")
_NAME: Final = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")
_DURATION: Final = re.compile(r"^\d+(ms|s|m)$")


def build_config(
    *,
    kms_socket: str | None,
    kms_name: str | None,
    resources: Sequence[str] = ("secrets",),
    aescbc: bool = False,
    secretbox: bool = False,
    timeout: str = DEFAULT_TIMEOUT,
    randbytes: Callable[[int], bytes] = secrets.token_bytes,
) -> dict[str, Any]:
    """The EncryptionConfiguration as a document; :class:`ConfigError` names a bad argument."""
    providers: list[dict[str, Any]] = []
    if kms_socket:
        if not kms_name or not _NAME.match(kms_name):
            raise ConfigError(
                "--kms-name must be a name of letters, digits, '-', '_' or '.' "
                "(it is part of every stored value's prefix and cannot change later)"
            )
        endpoint = kms_socket if kms_socket.startswith("unix://") else f"unix://{kms_socket}"
        if not endpoint.startswith("unix:///"):
            raise ConfigError(f"the KMS socket must be an absolute path, got {kms_socket!r}")
        if not _DURATION.match(timeout):
            raise ConfigError(f"--timeout must be a duration like 3s, got {timeout!r}")
        providers.append(
            {
                "kms": {
                    "apiVersion": "v2",
                    "name": kms_name,
                    "endpoint": endpoint,
                    "timeout": timeout,
                }
            }
        )
    elif kms_name:
        raise ConfigError("--kms-name needs --kms-socket")
    if aescbc:
        providers.append({"aescbc": {"keys": [{"name": "key1", "secret": _key(randbytes)}]}})
    if secretbox:
        providers.append({"secretbox": {"keys": [{"name": "key1", "secret": _key(randbytes)}]}})
    if not providers:
        raise ConfigError("give --kms-socket (and --kms-name), --aescbc or --secretbox")
    providers.append({"identity": {}})
    names = _resources(resources)
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": names, "providers": providers}],
    }


def render_config(document: dict[str, Any]) -> str:
    """The document as YAML, with a header saying what it holds."""
    header = (
        "# kube-apiserver --encryption-provider-config (written by kustos cluster encryption-config)\n"
        "# The first provider encrypts new writes; identity last keeps older plaintext readable\n"
        "# until `kustos cluster rewrite-secrets` has rewritten it. Keep this file mode 0600.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)


def _resources(resources: Sequence[str]) -> list[str]:
    names: list[str] = []
    for raw in ["secrets", *resources]:
        name = raw.strip().lower()
        if not name:
            continue
        if not _RESOURCE.match(name):
            raise ConfigError(f"{raw!r} is not a resource name (e.g. secrets, configmaps)")
        if name not in names:
            names.append(name)
    return names


def _key(randbytes: Callable[[int], bytes]) -> str:
    key = randbytes(32)
    if len(key) != 32:
        raise ValueError("randbytes returned the wrong number of bytes")
    return base64.b64encode(key).decode("ascii")
