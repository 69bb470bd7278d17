"""Answering questions from an audit file: who did what, and which workloads read which secrets.

:func:`search` filters entries by path prefix, identity, time and operation.
:func:`access_map` folds the response entries of reads into one row per
(identity, path): how many reads succeeded, how many were denied, first and
last time. Identities come from the readable auth fields: a Kubernetes
workload is ``<namespace>/<service account>`` (from the auth metadata the
kubernetes login records), anyone else their display name, entity id or
token accessor.

These functions read files written by :mod:`kustos.audit.devices` and do not
verify the chain; run :func:`kustos.audit.verify_file` for that. Lines that
are not valid entries are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "AccessRecord",
    "AuditRecord",
    "access_map",
    "identity_of",
    "iter_entries",
    "parse_time",
    "search",
]


def parse_time(value: str) -> datetime:
    """Parse an entry's RFC 3339 time (or any ISO 8601 time; naive means UTC)."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def identity_of(auth: Any) -> tuple[str, str]:
    """Return ``(identity, kind)`` for an entry's ``auth`` object.

    ``kind`` is ``service-account`` (identity ``namespace/name``), ``token``
    (display name, entity id or accessor) or ``anonymous``.
    """
    if not isinstance(auth, dict):
        return "anonymous", "anonymous"
    metadata = _object(auth.get("metadata"))
    name = metadata.get("service_account_name")
    namespace = metadata.get("service_account_namespace")
    if name and namespace:
        return f"{namespace}/{name}", "service-account"
    for field in ("display_name", "entity_id", "accessor"):
        value = auth.get(field)
        if isinstance(value, str) and value:
            return value, "token"
    return "anonymous", "anonymous"


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One entry, reduced to the readable fields a human searches by."""

    line: int
    time: datetime
    type: str
    identity: str
    kind: str
    operation: str
    path: str
    status: int | None
    error: str
    request_id: str
    remote_address: str
    policies: tuple[str, ...]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "type": self.type,
            "identity": self.identity,
            "kind": self.kind,
            "operation": self.operation,
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "request_id": self.request_id,
            "remote_address": self.remote_address,
            "policies": list(self.policies),
            "reason": self.reason,
        }


def iter_entries(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, entry)`` for each parseable request or response entry."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("type") in {"request", "response"}:
                yield number, entry


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _record(number: int, entry: dict[str, Any]) -> AuditRecord | None:
    request = _object(entry.get("request"))
    response = _object(entry.get("response"))
    auth = _object(entry.get("auth"))
    try:
        moment = parse_time(str(entry.get("time", "")))
    except ValueError:
        return None
    identity, kind = identity_of(auth)
    status = response.get("status")
    raw_policies = auth.get("policies")
    policies: list[Any] = raw_policies if isinstance(raw_policies, list) else []
    return AuditRecord(
        line=number,
        time=moment,
        type=str(entry.get("type")),
        identity=identity,
        kind=kind,
        operation=str(request.get("operation", "")),
        path=str(request.get("path", "")),
        status=status if isinstance(status, int) else None,
        error=str(entry.get("error") or ""),
        request_id=str(request.get("id", "")),
        remote_address=str(request.get("remote_address", "")),
        policies=tuple(str(p) for p in policies),
        reason=str(request.get("reason", "")),
    )


def _matches_who(entry: dict[str, Any], identity: str, who: str) -> bool:
    needle = who.lower()
    auth = _object(entry.get("auth"))
    haystack = [identity]
    for field in ("display_name", "entity_id", "accessor"):
        if isinstance(auth.get(field), str):
            haystack.append(auth[field])
    metadata = auth.get("metadata")
    if isinstance(metadata, dict):
        haystack.extend(str(v) for v in metadata.values())
    return any(needle in value.lower() for value in haystack if value)


def search(
    path: str | os.PathLike[str],
    *,
    path_prefix: str | None = None,
    who: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    operation: str | None = None,
    entry_type: str | None = None,
) -> list[AuditRecord]:
    """Entries matching every given filter, in file order.

    ``path_prefix`` matches the request path from its start (a trailing ``*``
    is ignored); ``who`` is a case-insensitive substring of the identity,
    display name, entity id, accessor or any auth metadata value; ``since``
    and ``until`` bound the entry time (inclusive); ``entry_type`` is
    ``request`` or ``response``.
    """
    prefix = path_prefix.lstrip("/").rstrip("*") if path_prefix else None
    found: list[AuditRecord] = []
    for number, entry in iter_entries(path):
        record = _record(number, entry)
        if record is None:
            continue
        if entry_type is not None and record.type != entry_type:
            continue
        if prefix is not None and not record.path.lstrip("/").startswith(prefix):
            continue
        if operation is not None and record.operation != operation:
            continue
        if since is not None and record.time < since:
            continue
        if until is not None and record.time > until:
            continue
        if who is not None and not _matches_who(entry, record.identity, who):
            continue
        found.append(record)
    return found


@dataclass(frozen=True, kw_only=True)
class AccessRecord:
    """How one identity used one path."""

    identity: str
    kind: str
    path: str
    reads: int
    denied: int
    first: datetime
    last: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "kind": self.kind,
            "path": self.path,
            "reads": self.reads,
            "denied": self.denied,
            "first": self.first.isoformat().replace("+00:00", "Z"),
            "last": self.last.isoformat().replace("+00:00", "Z"),
        }


def access_map(
    path: str | os.PathLike[str],
    *,
    operations: Collection[str] = ("read",),
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AccessRecord]:
    """One row per (identity, path) for the response entries of ``operations``.

    A response with a status below 400 counts as a read, 403 as denied; other
    failures are not counted. Rows are sorted by identity, then path.
    """
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for number, entry in iter_entries(path):
        if entry.get("type") != "response":
            continue
        record = _record(number, entry)
        if record is None or record.operation not in operations:
            continue
        if (since is not None and record.time < since) or (
            until is not None and record.time > until
        ):
            continue
        status = record.status if record.status is not None else 0
        if 0 < status < 400:
            outcome = "reads"
        elif status == 403:
            outcome = "denied"
        else:
            continue
        key = (record.identity, record.kind, record.path)
        row = rows.setdefault(
            key, {"reads": 0, "denied": 0, "first": record.time, "last": record.time}
        )
        row[outcome] += 1
        row["first"] = min(row["first"], record.time)
        row["last"] = max(row["last"], record.time)
    return [
        AccessRecord(
            identity=i,
            kind=k,
            path=p,
            reads=r["reads"],
            denied=r["denied"],
            first=r["first"],
            last=r["last"],
        )
        for (i, k, p), r in sorted(rows.items())
    ]
