"""Policy documents: parsing Vault-compatible HCL and JSON into frozen rules, and printing them back.

A policy is a named list of ``path`` rules. Each rule grants (or, with
``deny``, refuses) capabilities on a path pattern and may constrain request
parameters. This module only turns text into :class:`Policy` values and back
(:meth:`Policy.to_hcl` is what ``kustos policy fmt`` prints); deciding what a
token may do with several policies is :mod:`kustos.policy.evaluating`.

Every parse error is a :class:`PolicyError` whose message names the policy,
the line (when known), the path and the offending capability or key, so an
operator can fix the document without guessing.
"""

from __future__ import annotations

import json
import re
import threading
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from hcl.parser import HclParser

from kustos.errors import InvalidRequestError

__all__ = [
    "CAPABILITIES",
    "PathRule",
    "Policy",
    "PolicyError",
    "normalize_policy_name",
]

#: Every capability a rule may name, in the order Kustos prints them.
CAPABILITIES: Final = ("create", "read", "update", "patch", "delete", "list", "sudo", "deny")

# Vault's legacy ``policy = "..."`` shorthand, still accepted in old documents.
_LEGACY_POLICY: Final[Mapping[str, tuple[str, ...]]] = types.MappingProxyType(
    {
        "deny": ("deny",),
        "read": ("read", "list"),
        "write": ("create", "read", "update", "delete", "list"),
        "sudo": ("create", "read", "update", "delete", "list", "sudo"),
    }
)

_RULE_KEYS: Final = frozenset(
    {"capabilities", "policy", "allowed_parameters", "denied_parameters", "required_parameters"}
)
# Vault features Kustos does not implement. Ignoring them would silently drop a
# restriction the author relied on, so a document using them is refused.
_UNSUPPORTED_KEYS: Final = frozenset(
    {
        "min_wrapping_ttl",
        "max_wrapping_ttl",
        "mfa_methods",
        "control_group",
        "subscribe_event_types",
    }
)
_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,127}$")
_PATH_HEADER_RE: Final = re.compile(r'^\s*path\s+"((?:[^"\\]|\\.)*)"')

ParameterValues = tuple[Any, ...]


class PolicyError(InvalidRequestError):
    """A policy document is malformed: bad syntax, an unknown capability, an invalid path."""


def normalize_policy_name(name: str) -> str:
    """Return the canonical (lower-case, trimmed) policy name, or raise :class:`PolicyError`."""
    canonical = name.strip().lower()
    if not _NAME_RE.fullmatch(canonical):
        raise PolicyError(
            f"invalid policy name {name!r}: use 1-128 characters from a-z, 0-9, '_', '-', '.', '@',"
            " starting with a letter or digit"
        )
    return canonical


@dataclass(frozen=True, kw_only=True)
class PathRule:
    """One ``path "<pattern>" { ... }`` block of a policy.

    ``path`` is the pattern as written (leading ``/`` removed): a trailing
    ``*`` makes it a prefix rule, a ``+`` segment matches exactly one path
    segment. ``capabilities`` keeps the written order without duplicates.
    Parameter maps have lower-case keys, as Vault stores them.
    """

    path: str
    capabilities: tuple[str, ...]
    allowed_parameters: Mapping[str, ParameterValues] = field(default_factory=dict)
    denied_parameters: Mapping[str, ParameterValues] = field(default_factory=dict)
    required_parameters: tuple[str, ...] = ()
    line: int | None = field(default=None, compare=False)

    @property
    def is_prefix(self) -> bool:
        """Whether the pattern ends in ``*`` and so matches every path starting with :attr:`prefix`."""
        return self.path.endswith("*")

    @property
    def prefix(self) -> str:
        """The pattern without its trailing ``*``."""
        return self.path[:-1] if self.is_prefix else self.path

    @property
    def has_segment_wildcards(self) -> bool:
        """Whether the pattern contains a ``+`` segment."""
        return "+" in self.path

    @property
    def effective_capabilities(self) -> frozenset[str]:
        """What the rule contributes: ``{"deny"}`` alone if it denies, else its capabilities."""
        if "deny" in self.capabilities:
            return frozenset({"deny"})
        return frozenset(self.capabilities)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """A named, parsed policy document. Build one with :meth:`parse`."""

    name: str
    rules: tuple[PathRule, ...]
    raw: str = field(default="", compare=False, repr=False)

    @classmethod
    def parse(cls, name: str, text: str) -> Policy:
        """Parse a policy document in HCL or JSON (chosen by its first character).

        Raises :class:`PolicyError` naming the line, path, capability or key
        that is wrong. A document with no rules is valid (it grants nothing).
        """
        canonical = normalize_policy_name(name)
        where = f"policy {canonical!r}"
        if text.lstrip().startswith("{"):
            document, lines = _load_json(text, where=where)
        else:
            document, lines = _load_hcl(text, where=where)
        rules = _rules_from_document(document, lines=lines, where=where)
        return cls(name=canonical, rules=rules, raw=text)

    def to_hcl(self) -> str:
        """Render the policy as canonical HCL (the output of ``kustos policy fmt``).

        Comments of the source are not kept: pyhcl does not report them.
        """
        blocks = [_rule_to_hcl(rule) for rule in self.rules]
        return "\n".join(blocks)

    def to_json(self) -> dict[str, Any]:
        """Render the policy as Vault's JSON policy shape ``{"path": {pattern: {...}}}``."""
        paths: dict[str, Any] = {}
        for rule in self.rules:
            body: dict[str, Any] = {"capabilities": list(rule.capabilities)}
            if rule.allowed_parameters:
                body["allowed_parameters"] = {
                    k: list(v) for k, v in rule.allowed_parameters.items()
                }
            if rule.denied_parameters:
                body["denied_parameters"] = {k: list(v) for k, v in rule.denied_parameters.items()}
            if rule.required_parameters:
                body["required_parameters"] = list(rule.required_parameters)
            paths[rule.path] = body
        return {"path": paths}


# --- loading ---------------------------------------------------------------------------------


def _load_json(text: str, *, where: str) -> tuple[Any, dict[str, list[int]]]:
    lines: dict[str, list[int]] = {}

    def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise PolicyError(f"{where}: key {key!r} appears twice in the same JSON object")
            result[key] = value
        return result

    try:
        document = json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            f"{where}: JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    for number, line in enumerate(text.splitlines(), start=1):
        match = re.match(r'^\s*"((?:[^"\\]|\\.)*)"\s*:\s*\{', line)
        if match:
            lines.setdefault(match.group(1), []).append(number)
    return document, lines


def _scan_hcl_paths(text: str) -> dict[str, list[int]]:
    """Find the line of every ``path "..."`` header, skipping ``/* */`` comments.

    pyhcl keeps only the last of two blocks with the same path, so this scan
    is also what lets :func:`_load_hcl` refuse such duplicates instead of
    silently dropping a rule.
    """
    found: dict[str, list[int]] = {}
    in_block_comment = False
    for number, line in enumerate(text.splitlines(), start=1):
        if in_block_comment:
            if "*/" in line:
                in_block_comment = False
                line = line.split("*/", 1)[1]
            else:
                continue
        stripped = line.lstrip()
        if stripped.startswith("/*") and "*/" not in stripped:
            in_block_comment = True
            continue
        match = _PATH_HEADER_RE.match(line)
        if match:
            path = json.loads(f'"{match.group(1)}"')
            found.setdefault(path, []).append(number)
    return found


_local = threading.local()


def _hcl_parser() -> Any:
    # Building pyhcl's parser tables costs ~60 ms; one parser per thread makes a parse ~4 ms.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = HclParser()
        _local.parser = parser
    return parser


def _load_hcl(text: str, *, where: str) -> tuple[Any, dict[str, list[int]]]:
    lines = _scan_hcl_paths(text)
    for path, numbers in lines.items():
        if len(numbers) > 1:
            joined = ", ".join(str(n) for n in numbers)
            raise PolicyError(
                f"{where}: path {path!r} is defined more than once (lines {joined}); merge the blocks into one"
            )
    try:
        document = _hcl_parser().parse(text)
    except Exception as exc:  # pyhcl raises ValueError, and sometimes others, for bad syntax
        raise PolicyError(f"{where}: HCL syntax error: {exc}") from None
    return document, lines


def _rules_from_document(
    document: Any, *, lines: Mapping[str, list[int]], where: str
) -> tuple[PathRule, ...]:
    if not isinstance(document, dict):
        raise PolicyError(f"{where}: a policy document must be an object with 'path' blocks")
    unknown = sorted(set(document) - {"path", "name"})
    if unknown:
        raise PolicyError(f"{where}: unknown top-level key {unknown[0]!r} (expected 'path' blocks)")
    raw_paths = document.get("path", {})
    blocks: list[tuple[str, Any]] = []
    if isinstance(raw_paths, dict):
        blocks.extend(raw_paths.items())
    elif isinstance(raw_paths, list):
        for item in raw_paths:
            if not isinstance(item, dict):
                raise PolicyError(f"{where}: each entry of 'path' must be an object of path blocks")
            blocks.extend(item.items())
    else:
        raise PolicyError(f"{where}: 'path' must be an object mapping patterns to rules")
    rules: list[PathRule] = []
    seen: dict[str, int] = {}
    for pattern, body in blocks:
        numbers = lines.get(pattern) or []
        line = numbers[0] if numbers else None
        rule = _parse_rule(pattern, body, line=line, where=where)
        if rule.path in seen:
            raise PolicyError(f"{_at(where, line)}: path {rule.path!r} is defined more than once")
        seen[rule.path] = len(rules)
        rules.append(rule)
    return tuple(rules)


def _at(where: str, line: int | None) -> str:
    return f"{where}, line {line}" if line is not None else where


def _validate_pattern(pattern: str, *, at: str) -> str:
    path = pattern.lstrip("/")
    if path == "":
        raise PolicyError(f'{at}: empty path pattern (use "*" to match every path)')
    star = path.find("*")
    if star != -1 and star != len(path) - 1:
        raise PolicyError(
            f"{at}: path {pattern!r}: '*' is only allowed as the last character (a prefix glob)"
        )
    for segment in path.rstrip("*").split("/"):
        if "+" in segment and segment != "+":
            raise PolicyError(
                f"{at}: path {pattern!r}: '+' must be a whole path segment (as in 'secret/+/config')"
            )
    return path


def _string_list(value: Any, *, at: str, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{at}: {key} must be a list of strings")
    return list(value)


def _parameters(value: Any, *, at: str, key: str) -> Mapping[str, ParameterValues]:
    if isinstance(value, list):
        # HCL turns repeated blocks into a list of objects; merge them.
        merged: dict[str, Any] = {}
        for item in value:
            if not isinstance(item, dict):
                raise PolicyError(
                    f"{at}: {key} must be an object mapping parameter names to value lists"
                )
            merged.update(item)
        value = merged
    if not isinstance(value, dict):
        raise PolicyError(f"{at}: {key} must be an object mapping parameter names to value lists")
    result: dict[str, ParameterValues] = {}
    for name, values in value.items():
        if not isinstance(values, list):
            raise PolicyError(
                f"{at}: {key}.{name} must be a list of allowed values ([] means any value)"
            )
        result[str(name).lower()] = tuple(values)
    return types.MappingProxyType(result)


def _parse_rule(pattern: Any, body: Any, *, line: int | None, where: str) -> PathRule:
    at = _at(where, line)
    if not isinstance(pattern, str):
        raise PolicyError(f"{at}: a path pattern must be a string")
    path = _validate_pattern(pattern, at=at)
    at = f"{at}, path {pattern!r}"
    if not isinstance(body, dict):
        raise PolicyError(f"{at}: the rule must be a block with 'capabilities'")
    for key in body:
        if key in _UNSUPPORTED_KEYS:
            raise PolicyError(
                f"{at}: {key!r} is a Vault feature Kustos does not support; remove it"
            )
        if key not in _RULE_KEYS:
            allowed = ", ".join(sorted(_RULE_KEYS))
            raise PolicyError(f"{at}: unknown key {key!r} (expected one of: {allowed})")
    capabilities: list[str] = []
    for capability in _string_list(body.get("capabilities", []), at=at, key="capabilities"):
        if capability not in CAPABILITIES:
            raise PolicyError(
                f"{at}: invalid capability {capability!r} (valid: {', '.join(CAPABILITIES)})"
            )
        if capability not in capabilities:
            capabilities.append(capability)
    legacy = body.get("policy")
    if legacy is not None:
        if not isinstance(legacy, str) or legacy not in _LEGACY_POLICY:
            raise PolicyError(
                f"{at}: invalid policy value {legacy!r} (valid: {', '.join(_LEGACY_POLICY)})"
            )
        for capability in _LEGACY_POLICY[legacy]:
            if capability not in capabilities:
                capabilities.append(capability)
    required = _string_list(body.get("required_parameters", []), at=at, key="required_parameters")
    return PathRule(
        path=path,
        capabilities=tuple(capabilities),
        allowed_parameters=_parameters(
            body.get("allowed_parameters", {}), at=at, key="allowed_parameters"
        ),
        denied_parameters=_parameters(
            body.get("denied_parameters", {}), at=at, key="denied_parameters"
        ),
        required_parameters=tuple(dict.fromkeys(p.lower() for p in required)),
        line=line,
    )


# --- printing --------------------------------------------------------------------------------


def _hcl_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    raise PolicyError(f"cannot print parameter value of type {type(value).__name__} as HCL")


def _hcl_list(values: Sequence[Any]) -> str:
    return "[" + ", ".join(_hcl_value(v) for v in values) + "]"


def _rule_to_hcl(rule: PathRule) -> str:
    lines = [f"path {json.dumps(rule.path)} {{", f"  capabilities = {_hcl_list(rule.capabilities)}"]
    for key, params in (
        ("allowed_parameters", rule.allowed_parameters),
        ("denied_parameters", rule.denied_parameters),
    ):
        if params:
            lines.append(f"  {key} = {{")
            lines.extend(
                f"    {json.dumps(name)} = {_hcl_list(values)}" for name, values in params.items()
            )
            lines.append("  }")
    if rule.required_parameters:
        lines.append(f"  required_parameters = {_hcl_list(rule.required_parameters)}")
    lines.append("}")
    return "\n".join(lines) + "\n"
