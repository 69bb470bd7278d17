"""Sealing scopes: how far a SealedSecret may move and still unseal.

Sealed Secrets binds every value to a *label* (the RSA-OAEP label) chosen by
the scope, and reads the scope from annotations of the object's metadata:

========================  ========================================  ======================
scope                     annotation (value ``"true"``)             label
========================  ========================================  ======================
``strict`` (default)      —                                         ``"<namespace>/<name>"``
``namespace-wide``        ``sealedsecrets.bitnami.com/namespace-wide``  ``"<namespace>"``
``cluster-wide``          ``sealedsecrets.bitnami.com/cluster-wide``    ``""``
========================  ========================================  ======================

``cluster-wide`` wins when both annotations are set, as in Sealed Secrets.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

__all__ = [
    "CLUSTER_WIDE_ANNOTATION",
    "NAMESPACE_WIDE_ANNOTATION",
    "Scope",
    "pinned_name",
    "pinned_namespace",
    "scope_label",
    "scope_of",
    "with_scope_annotations",
]

NAMESPACE_WIDE_ANNOTATION: Final = "sealedsecrets.bitnami.com/namespace-wide"
CLUSTER_WIDE_ANNOTATION: Final = "sealedsecrets.bitnami.com/cluster-wide"


class Scope(enum.StrEnum):
    """The three Sealed Secrets scopes, spelled as kubeseal's ``--scope`` takes them."""

    strict = "strict"
    namespace_wide = "namespace-wide"
    cluster_wide = "cluster-wide"


def scope_of(annotations: Mapping[str, str] | None) -> Scope:
    """The scope that ``annotations`` declare (strict when neither annotation is ``"true"``)."""
    annotations = annotations or {}
    if annotations.get(CLUSTER_WIDE_ANNOTATION) == "true":
        return Scope.cluster_wide
    if annotations.get(NAMESPACE_WIDE_ANNOTATION) == "true":
        return Scope.namespace_wide
    return Scope.strict


def with_scope_annotations(annotations: Mapping[str, str] | None, scope: Scope) -> dict[str, str]:
    """A copy of ``annotations`` whose scope annotations say exactly ``scope``."""
    out = {
        k: v
        for k, v in (annotations or {}).items()
        if k not in (NAMESPACE_WIDE_ANNOTATION, CLUSTER_WIDE_ANNOTATION)
    }
    if scope is Scope.namespace_wide:
        out[NAMESPACE_WIDE_ANNOTATION] = "true"
    elif scope is Scope.cluster_wide:
        out[CLUSTER_WIDE_ANNOTATION] = "true"
    return out


def scope_label(scope: Scope, *, namespace: str, name: str) -> bytes:
    """The RSA-OAEP label Sealed Secrets uses for ``scope``."""
    if scope is Scope.cluster_wide:
        return b""
    if scope is Scope.namespace_wide:
        return namespace.encode()
    return f"{namespace}/{name}".encode()


def pinned_namespace(scope: Scope, namespace: str) -> str:
    """The namespace a value is bound to under ``scope`` (empty when not bound)."""
    return "" if scope is Scope.cluster_wide else namespace


def pinned_name(scope: Scope, name: str) -> str:
    """The name a value is bound to under ``scope`` (empty when not bound)."""
    return name if scope is Scope.strict else ""
