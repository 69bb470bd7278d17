"""Kubernetes label selectors, and the namespaces the controllers select with them.

ClusterExternalSecrets pick namespaces with ``namespaceSelectors``, and a
ClusterSecretStore's ``conditions`` say which namespaces may use it; both
are ``metav1.LabelSelector``\\ s: ``matchLabels`` and ``matchExpressions``
(``In``, ``NotIn``, ``Exists``, ``DoesNotExist``), all of which must hold;
an empty selector selects everything. :func:`selector_matches` is that rule;
:class:`Namespaces` is the controller's view of every namespace and its
labels, fed by a watch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kustos.errors import InvalidRequestError
from kustos.kube import Body

__all__ = ["Namespaces", "selector_matches", "validate_selector"]

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_selector(selector: Mapping[str, Any], *, where: str) -> None:
    """Raise ``InvalidRequestError`` naming ``where`` when the selector is malformed."""
    for index, expression in enumerate(selector.get("matchExpressions") or []):
        operator = expression.get("operator")
        if operator not in _OPERATORS:
            raise InvalidRequestError(
                f"{where}.matchExpressions[{index}].operator must be one of "
                f"{', '.join(_OPERATORS)}, not {operator!r}"
            )
        if not expression.get("key"):
            raise InvalidRequestError(f"{where}.matchExpressions[{index}].key is required")
        values = expression.get("values") or []
        if operator in ("In", "NotIn") and not values:
            raise InvalidRequestError(f"{where}.matchExpressions[{index}] needs values")
        if operator in ("Exists", "DoesNotExist") and values:
            raise InvalidRequestError(f"{where}.matchExpressions[{index}] takes no values")


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy the label selector (empty: everything)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key", "")
        values = [str(v) for v in expression.get("values") or []]
        operator = expression.get("operator")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in _OPERATORS:
            return False
    return True


class Namespaces:
    """Every namespace the watch showed, with its labels; tells listeners when one changes."""

    def __init__(self) -> None:
        self._labels: dict[str, dict[str, str]] = {}
        self._terminating: set[str] = set()
        self._listeners: list[Callable[[str], None]] = []

    def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(name)`` whenever a namespace appears, changes its labels or goes."""
        self._listeners.append(callback)

    def event(self, event_type: str | None, body: Body) -> None:
        """A namespace was listed, added, modified or deleted."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name:
            return
        before = (self._labels.get(name), name in self._terminating)
        if event_type == "DELETED":
            self._labels.pop(name, None)
            self._terminating.discard(name)
        else:
            self._labels[name] = dict(meta.get("labels") or {})
            if meta.get("deletionTimestamp"):
                self._terminating.add(name)
            else:
                self._terminating.discard(name)
        if before != (self._labels.get(name), name in self._terminating):
            for callback in self._listeners:
                callback(name)

    def labels(self, name: str) -> dict[str, str] | None:
        """The labels of ``name``; ``None`` when the namespace is not known (or gone)."""
        return self._labels.get(name)

    def active(self) -> list[str]:
        """Every namespace that exists and is not being deleted, sorted."""
        return sorted(n for n in self._labels if n not in self._terminating)

    def terminating(self, name: str) -> bool:
        """Whether ``name`` is being deleted (nothing may be created in it)."""
        return name in self._terminating
