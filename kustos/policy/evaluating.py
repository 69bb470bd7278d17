"""The ACL: what a token holding several policies may do on one path.

This follows Vault's ``vault/acl.go`` semantics so that existing policies mean
the same thing here:

* **Merging.** Rules with the *same pattern* in different policies merge: their
  capabilities are united, except that ``deny`` in any of them makes the
  merged rule deny-only. Parameter constraints merge as in Vault (lists are
  joined; an empty list, meaning "any value", wins).
* **Choosing the rule.** Rules with *different* patterns never merge: only the
  single highest-priority matching rule applies. An exact pattern beats any
  glob. Among globs, given two matching patterns P1 and P2, P1 has lower
  priority when (checked in this order):

  1. its first ``+`` or ``*`` occurs earlier;
  2. it ends in ``*`` and P2 does not;
  3. it has more ``+`` segments;
  4. it is shorter;
  5. it sorts before P2.

  Of the prefix (``*``) patterns only the longest matching prefix competes.
* **Lists.** A ``list`` on ``a/b/`` also considers rules written without the
  trailing slash; a deny at least as specific as the best rule granting
  ``list`` still wins.
* **Default deny.** No matching rule means no capabilities.
* **root** grants everything and cannot be combined with other policies.

The module is pure: no I/O, no clock. The server builds one :class:`ACL` per
token (cheap) and calls :meth:`ACL.check` from its single ``authorize()``.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kustos.errors import UnsupportedOperationError
from kustos.policy.documents import CAPABILITIES, ParameterValues, PathRule, Policy, PolicyError

__all__ = [
    "ACL",
    "Decision",
    "Operation",
    "Permissions",
    "operation_for",
]

_GRANTS: Final = frozenset(CAPABILITIES) - {"deny"}


class Operation(enum.StrEnum):
    """A logical operation, as Vault names them; each needs the capability of the same name."""

    create = "create"
    read = "read"
    update = "update"
    patch = "patch"
    delete = "delete"
    list = "list"


# Operations whose request parameters are checked against allowed/denied/required_parameters.
_PARAMETER_OPERATIONS: Final = frozenset(
    {Operation.read, Operation.create, Operation.update, Operation.patch}
)


def operation_for(
    method: str, *, exists: bool | None = None, list_query: bool = False
) -> Operation:
    """Map an HTTP request to the operation (and so the capability) it needs.

    ``GET`` reads, or lists when the request carries ``?list=true``
    (``list_query``); ``LIST`` lists; ``PATCH`` patches; ``DELETE`` deletes.
    ``POST``/``PUT`` create when the target does not exist yet and update when
    it does. Pass ``exists`` from the path's existence check; a path without
    one (``exists=None``) is an update, as in Vault.

    Raises :class:`~kustos.errors.UnsupportedOperationError` for other methods.
    """
    verb = method.upper()
    if verb == "GET":
        return Operation.list if list_query else Operation.read
    if verb == "LIST":
        return Operation.list
    if verb in {"POST", "PUT"}:
        return Operation.create if exists is False else Operation.update
    if verb == "PATCH":
        return Operation.patch
    if verb == "DELETE":
        return Operation.delete
    raise UnsupportedOperationError(f"unsupported HTTP method {method!r}")


@dataclass(frozen=True, kw_only=True)
class Permissions:
    """The merged rule that applies to one path.

    ``capabilities`` is either ``{"deny"}`` alone or a set of granted
    capabilities. ``pattern`` is the winning pattern, ``policies`` the names of
    the policies that contributed to it (for audit and error messages).
    """

    pattern: str
    capabilities: frozenset[str]
    allowed_parameters: Mapping[str, ParameterValues] = field(default_factory=dict)
    denied_parameters: Mapping[str, ParameterValues] = field(default_factory=dict)
    required_parameters: frozenset[str] = frozenset()
    policies: tuple[str, ...] = ()

    @property
    def denies(self) -> bool:
        return "deny" in self.capabilities

    @property
    def granted(self) -> frozenset[str]:
        """The capabilities this rule grants (empty when it denies)."""
        return frozenset() if self.denies else self.capabilities


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The answer to "may this token do this operation on this path?".

    ``reason`` is a short, secret-free explanation suitable for a 403 body or
    an audit line. ``sudo`` says whether the path grants ``sudo`` (root-
    protected endpoints require it in addition to the operation's capability).
    """

    allowed: bool
    operation: Operation
    path: str
    capabilities: frozenset[str]
    sudo: bool
    is_root: bool
    pattern: str | None
    policies: tuple[str, ...]
    reason: str


def _merge_parameters(
    existing: Mapping[str, ParameterValues], new: Mapping[str, ParameterValues]
) -> Mapping[str, ParameterValues]:
    if not new:
        return existing
    if not existing:
        return new
    merged = dict(existing)
    for key, values in new.items():
        if key in merged and (len(values) == 0 or len(merged[key]) == 0):
            merged[key] = ()
        elif key in merged:
            merged[key] = values + merged[key]
        else:
            merged[key] = values
    return types.MappingProxyType(merged)


def _merge(existing: Permissions | None, rule: PathRule, policy: str) -> Permissions:
    caps = rule.effective_capabilities
    required = frozenset(rule.required_parameters)
    if existing is None:
        if "deny" in caps:
            return Permissions(pattern=rule.path, capabilities=caps, policies=(policy,))
        return Permissions(
            pattern=rule.path,
            capabilities=caps,
            allowed_parameters=rule.allowed_parameters,
            denied_parameters=rule.denied_parameters,
            required_parameters=required,
            policies=(policy,),
        )
    policies = existing.policies if policy in existing.policies else (*existing.policies, policy)
    if existing.denies:
        return Permissions(
            pattern=existing.pattern, capabilities=existing.capabilities, policies=policies
        )
    if "deny" in caps:
        return Permissions(
            pattern=existing.pattern, capabilities=frozenset({"deny"}), policies=policies
        )
    return Permissions(
        pattern=existing.pattern,
        capabilities=existing.capabilities | caps,
        allowed_parameters=_merge_parameters(existing.allowed_parameters, rule.allowed_parameters),
        denied_parameters=_merge_parameters(existing.denied_parameters, rule.denied_parameters),
        required_parameters=existing.required_parameters | required,
        policies=policies,
    )


@dataclass(frozen=True)
class _Candidate:
    first_glob: int
    is_prefix: bool
    wildcards: int
    stem: str
    permissions: Permissions

    def priority(self) -> tuple[int, bool, int, int, str]:
        # Larger tuples win; see the module docstring for the five criteria.
        return (self.first_glob, not self.is_prefix, -self.wildcards, len(self.stem), self.stem)


@dataclass(frozen=True)
class _SegmentRule:
    stem: str
    parts: tuple[str, ...]
    is_prefix: bool
    first_plus: int
    wildcards: int
    permissions: Permissions

    def match(self, path_parts: list[str]) -> _Candidate | None:
        if len(path_parts) < len(self.parts):
            return None
        if not self.is_prefix and len(path_parts) != len(self.parts):
            return None
        last = len(self.parts) - 1
        for index, part in enumerate(self.parts):
            if part == "+" or part == path_parts[index]:
                continue
            if self.is_prefix and index == last and path_parts[index].startswith(part):
                continue
            return None
        return _Candidate(
            self.first_plus, self.is_prefix, self.wildcards, self.stem, self.permissions
        )


def _glob_match(pattern: str, value: str) -> bool:
    # Vault's parameter-value globbing: a leading and/or trailing '*'.
    if len(pattern) >= 2 and pattern.startswith("*") and pattern.endswith("*"):
        return pattern[1:-1] in value
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return pattern == value


def _value_in(value: Any, allowed: ParameterValues) -> bool:
    for item in allowed:
        if item is None or value is None:
            if item is value:
                return True
        elif isinstance(item, str):
            if isinstance(value, str) and _glob_match(item, value):
                return True
        elif type(item) is type(value) and item == value:
            return True
    return False


def _as_items(value: Any) -> list[Any] | None:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and "," in value:
        return [part.strip() for part in value.split(",")]
    return None


def _allowed_value(value: Any, allowed: ParameterValues) -> bool:
    if len(allowed) == 0 or _value_in(value, allowed):
        return True
    items = _as_items(value)
    return items is not None and all(_value_in(item, allowed) for item in items)


def _denied_value(value: Any, denied: ParameterValues) -> bool:
    if len(denied) == 0 or _value_in(value, denied):
        return True
    items = _as_items(value)
    return items is not None and any(_value_in(item, denied) for item in items)


def _parameter_problem(permissions: Permissions, data: Mapping[str, Any] | None) -> str | None:
    """Return why ``data`` breaks the rule's parameter constraints, or ``None`` if it does not."""
    supplied = {str(k).lower(): v for k, v in (data or {}).items()}
    for name in sorted(permissions.required_parameters):
        if name not in supplied:
            return f"required parameter {name!r} is missing"
    if not supplied:
        return None
    denied = permissions.denied_parameters
    if "*" in denied:
        return "all parameters are denied on this path"
    for name, value in supplied.items():
        if name in denied and _denied_value(value, denied[name]):
            return f"parameter {name!r} or its value is denied"
    allowed = permissions.allowed_parameters
    if not allowed or (len(allowed) == 1 and "*" in allowed):
        return None
    for name, value in supplied.items():
        if name not in allowed:
            if "*" not in allowed:
                return f"parameter {name!r} is not allowed"
            continue
        if not _allowed_value(value, allowed[name]):
            return f"value of parameter {name!r} is not allowed"
    return None


class ACL:
    """The combined access rules of a set of policies.

    >>> acl = ACL([Policy.parse("app", 'path "secret/data/app/*" { capabilities = ["read"] }')])
    >>> acl.allows("secret/data/app/db", "read")
    True

    Raises :class:`~kustos.policy.PolicyError` when ``root`` is combined with
    other policies (as Vault does: a root token holds ``root`` alone).
    """

    def __init__(self, policies: Iterable[Policy]) -> None:
        policy_list = list(policies)
        names = [p.name for p in policy_list]
        self.policy_names: tuple[str, ...] = tuple(dict.fromkeys(names))
        self.is_root = "root" in names
        if self.is_root and len(self.policy_names) != 1:
            raise PolicyError("other policies present along with root")
        exact: dict[str, Permissions] = {}
        prefix: dict[str, Permissions] = {}
        segment: dict[str, Permissions] = {}
        for policy in policy_list:
            for rule in policy.rules:
                if rule.has_segment_wildcards:
                    segment[rule.path] = _merge(segment.get(rule.path), rule, policy.name)
                elif rule.is_prefix:
                    prefix[rule.prefix] = _merge(prefix.get(rule.prefix), rule, policy.name)
                else:
                    exact[rule.path] = _merge(exact.get(rule.path), rule, policy.name)
        self._exact = exact
        self._prefix = prefix
        self._prefix_lengths = sorted({len(p) for p in prefix}, reverse=True)
        self._segment: list[_SegmentRule] = []
        for pattern, permissions in segment.items():
            is_prefix = pattern.endswith("*")
            stem = pattern[:-1] if is_prefix else pattern
            parts = tuple(stem.split("/"))
            self._segment.append(
                _SegmentRule(
                    stem=stem,
                    parts=parts,
                    is_prefix=is_prefix,
                    first_plus=pattern.index("+"),
                    wildcards=sum(1 for part in parts if part == "+"),
                    permissions=permissions,
                )
            )

    # --- lookup ----------------------------------------------------------------------------

    def _candidates(self, path: str) -> list[_Candidate]:
        found: list[_Candidate] = []
        for length in self._prefix_lengths:
            if length <= len(path):
                key = path[:length]
                permissions = self._prefix.get(key)
                if permissions is not None:
                    found.append(_Candidate(length, True, 0, key, permissions))
                    break
        if self._segment:
            parts = path.split("/")
            for rule in self._segment:
                candidate = rule.match(parts)
                if candidate is not None:
                    found.append(candidate)
        return found

    def permissions(self, path: str, *, listing: bool = False) -> Permissions | None:
        """Return the merged rule that governs ``path``, or ``None`` if none matches.

        ``listing`` applies Vault's extra matching for ``list`` operations
        (a trailing slash may be matched by rules written without it).
        Not meaningful for a root ACL, which has no rules.
        """
        path = path.lstrip("/")
        found = self._exact.get(path)
        if found is not None:
            return found
        if listing:
            found = self._exact.get(path.removesuffix("/"))
            if found is not None:
                return found
            if path.endswith("/"):
                return self._resolve_listing(self._candidates(path[:-1]) + self._candidates(path))
        candidates = self._candidates(path)
        if not candidates:
            return None
        return max(candidates, key=_Candidate.priority).permissions

    @staticmethod
    def _resolve_listing(candidates: list[_Candidate]) -> Permissions | None:
        if not candidates:
            return None
        denies = [c for c in candidates if c.permissions.denies]
        listers = [c for c in candidates if "list" in c.permissions.capabilities]
        best_deny = max(denies, key=_Candidate.priority) if denies else None
        best_list = max(listers, key=_Candidate.priority) if listers else None
        if best_deny is not None and (
            best_list is None or best_list.priority() < best_deny.priority()
        ):
            return best_deny.permissions
        if best_list is not None:
            return best_list.permissions
        return max(candidates, key=_Candidate.priority).permissions

    # --- public questions ------------------------------------------------------------------

    def capabilities(self, path: str, *, listing: bool = False) -> frozenset[str]:
        """The capabilities granted on ``path`` (never contains ``deny``; empty means no access)."""
        if self.is_root:
            return frozenset(_GRANTS)
        permissions = self.permissions(path, listing=listing)
        return frozenset() if permissions is None else permissions.granted

    def capabilities_response(self, path: str) -> list[str]:
        """The list ``sys/capabilities-self`` answers: ``["root"]``, ``["deny"]`` or the sorted grants."""
        if self.is_root:
            return ["root"]
        granted = self.capabilities(path, listing=True)
        return sorted(granted) if granted else ["deny"]

    def allows(self, path: str, capability: str, *, data: Mapping[str, Any] | None = None) -> bool:
        """Whether ``capability`` is granted on ``path`` (and ``data`` meets the parameter rules)."""
        if capability == "sudo":
            return self.is_root or "sudo" in self.capabilities(path)
        if capability not in _GRANTS:
            raise PolicyError(f"unknown capability {capability!r}")
        return self.check(Operation(capability), path, data=data).allowed

    def check(
        self, operation: Operation | str, path: str, *, data: Mapping[str, Any] | None = None
    ) -> Decision:
        """Decide whether ``operation`` on ``path`` is allowed, with a reason either way.

        ``data`` is the request body (or query parameters); for read, create,
        update and patch it is checked against the rule's
        ``required_parameters``, ``denied_parameters`` and ``allowed_parameters``.
        """
        op = Operation(operation)
        clean = path.lstrip("/")
        if self.is_root:
            return Decision(
                allowed=True,
                operation=op,
                path=clean,
                capabilities=frozenset(_GRANTS),
                sudo=True,
                is_root=True,
                pattern=None,
                policies=("root",),
                reason="root policy",
            )
        permissions = self.permissions(clean, listing=op is Operation.list)
        if permissions is None:
            return self._deny(
                op, clean, None, f"no policy grants {op.value!r} on {clean!r} (default deny)"
            )
        if permissions.denies:
            return self._deny(
                op,
                clean,
                permissions,
                f"{op.value!r} on {clean!r} is explicitly denied by rule {permissions.pattern!r}",
            )
        if op.value not in permissions.capabilities:
            return self._deny(
                op, clean, permissions, f"rule {permissions.pattern!r} does not grant {op.value!r}"
            )
        if op in _PARAMETER_OPERATIONS:
            problem = _parameter_problem(permissions, data)
            if problem is not None:
                return self._deny(
                    op, clean, permissions, f"{problem} (rule {permissions.pattern!r})"
                )
        return Decision(
            allowed=True,
            operation=op,
            path=clean,
            capabilities=permissions.granted,
            sudo="sudo" in permissions.capabilities,
            is_root=False,
            pattern=permissions.pattern,
            policies=permissions.policies,
            reason=f"granted by rule {permissions.pattern!r}",
        )

    @staticmethod
    def _deny(op: Operation, path: str, permissions: Permissions | None, reason: str) -> Decision:
        return Decision(
            allowed=False,
            operation=op,
            path=path,
            capabilities=frozenset() if permissions is None else permissions.granted,
            sudo=False if permissions is None else "sudo" in permissions.granted,
            is_root=False,
            pattern=None if permissions is None else permissions.pattern,
            policies=() if permissions is None else permissions.policies,
            reason=reason,
        )
