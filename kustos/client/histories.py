"""A KV v2 secret's history as rows: who wrote each version, why, and which keys differ between two.

Pure functions over the ``metadata/<path>`` answer (and, for a diff, the
key names of two versions from ``subkeys/<path>``); they never need a value.
The CLI (``kustos kv history`` / ``kustos kv diff``) prints these rows, and
the server's web console (:mod:`kustos.server.console`) shows the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["CHANGE_KINDS", "diff_rows", "history_rows"]

CHANGE_KINDS: Final = ("added", "changed", "removed")
"""The kinds of key-level change a version records (key names only)."""

_STANDARD_VERSION_FIELDS: Final = (
    "created_time",
    "deletion_time",
    "destroyed",
    "created_by",
    "identity",
    "reason",
    "changes",
)


def history_rows(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per version (newest first) from a secret's metadata: when, who, why, and which key
    names were added, changed or removed (``None`` when the server did not record it) - never values."""
    versions = metadata.get("versions") or {}
    current = metadata.get("current_version")
    rows: list[dict[str, Any]] = []
    for key in sorted(versions, key=lambda v: int(v), reverse=True):
        info = versions[key] or {}
        deleted = info.get("deletion_time") or ""
        changes = info.get("changes") if isinstance(info.get("changes"), dict) else None
        row: dict[str, Any] = {
            "version": int(key),
            "created": info.get("created_time", ""),
            "who": info.get("identity") or info.get("created_by") or "",
            "reason": info.get("reason") or "",
        }
        for kind in CHANGE_KINDS:
            row[kind] = list(changes.get(kind) or []) if changes is not None else None
        row.update(
            {
                "deleted": deleted,
                "destroyed": bool(info.get("destroyed", False)),
                "current": int(key) == current,
            }
        )
        for extra, value in info.items():
            if extra not in _STANDARD_VERSION_FIELDS:
                row[extra] = value
        rows.append(row)
    return rows


def diff_rows(
    metadata: Mapping[str, Any],
    keys_from: Mapping[str, Any],
    keys_to: Mapping[str, Any],
    *,
    first: int,
    second: int,
    values: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The key-level difference between versions ``first`` and ``second`` of one secret.

    ``keys_from``/``keys_to`` are the top-level keys of each version (from
    ``subkeys``, no values). Without ``values``, a key present in both counts
    as changed when a version after ``first`` up to ``second`` recorded it as
    changed, added or removed (``changed?`` when a version in between has no
    record). With ``values`` (both versions' data), changes are exact and the
    old and new values are included.
    """
    rows: list[dict[str, Any]] = []
    low, high = sorted((first, second))
    versions = metadata.get("versions") or {}
    touched: set[str] = set()
    unknown = False
    for number in range(low + 1, high + 1):
        changes = (versions.get(str(number)) or {}).get("changes")
        if not isinstance(changes, dict):
            unknown = True
            continue
        for kind in CHANGE_KINDS:
            touched.update(changes.get(kind) or [])
    for key in sorted(set(keys_from) | set(keys_to)):
        if key not in keys_from:
            change = "added"
        elif key not in keys_to:
            change = "removed"
        elif values is not None:
            change = "changed" if values[0].get(key) != values[1].get(key) else ""
        elif key in touched:
            change = "changed"
        else:
            change = "changed?" if unknown else ""
        if not change:
            continue
        row: dict[str, Any] = {"key": key, "change": change}
        if values is not None:
            row[f"v{first}"] = values[0].get(key)
            row[f"v{second}"] = values[1].get(key)
        rows.append(row)
    return rows
