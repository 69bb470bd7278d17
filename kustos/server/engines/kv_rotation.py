"""Scheduled rotation of static KV secrets: a rule on a KV path, and the timer that applies it.

A rotation rule names a KV v2 secret, which of its top-level fields to
replace, the password policy that generates the new values (``""``: Vault's
default) and how often (``rotation_period``). When a rule falls due, the
KV engine writes a new version of the secret with those fields replaced and
every other field kept, recorded with ``created_by`` ``kustos-rotation`` and
the reason ``scheduled rotation`` (``manual rotation`` for ``rotate/``), and
published on the change stream like any write, so the operator and agents
deliver it at once. Under a KV mount (``secret/``)::

    rotation/<path>   POST/PUT {fields, password_policy, rotation_period}, GET, DELETE
    rotation/<prefix> LIST     (folders end in /)
    rotate/<path>     POST     rotate now (the schedule restarts from now)

The rule is stored (not secret) at ``logical/<mount uuid>/rotation/<path>``
and its next run is a durable timer (:mod:`kustos.server.timers`, kind
``kv-rotate``): on time across restarts, and once across replicas. A secret
that does not exist yet (or whose current version is deleted or destroyed)
gets a new version with just the rotated fields.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson

from kustos.errors import InvalidRequestError, NotFoundError, StorageError
from kustos.sensitive import Sensitive
from kustos.server.access import Authorizer, require
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.mounts import MountEntry, MountTable
from kustos.server.passwords import PasswordPolicies, validate_policy_name
from kustos.server.timers import Timers
from kustos.server.times import Clock, parse_duration, rfc3339
from kustos.store.base import StorageBackend

__all__ = ["MIN_PERIOD", "SCHEDULED_REASON", "KvRotation", "RotateFields"]

SCHEDULED_REASON: Final = "scheduled rotation"
MANUAL_REASON: Final = "manual rotation"
ROTATION_AUTHOR: Final = "kustos-rotation"
MIN_PERIOD: Final = 5.0
"""Seconds: the shortest ``rotation_period`` (as for the database engine's static roles)."""
_MAX_FIELDS: Final = 64
_FIELD: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_ALLOWED: Final = frozenset({"fields", "password_policy", "rotation_period"})

RotateFields = Callable[
    [MountEntry, str, list[str], Callable[[], Sensitive[str]], str], Awaitable[int]
]
"""``(mount, path, fields, generate, reason) -> new version``: the KV engine's write."""

Rule = dict[str, Any]


def _fields(value: object) -> list[str]:
    items: object = value
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(items, list) or not items:
        raise InvalidRequestError("fields must be a non-empty list of field names")
    if len(items) > _MAX_FIELDS:
        raise InvalidRequestError(f"fields has more than {_MAX_FIELDS} names")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not _FIELD.fullmatch(item):
            raise InvalidRequestError(
                "each of fields must be a name of 1-128 characters without control characters"
            )
        if item in out:
            raise InvalidRequestError(f"field {item[:40]!r} is named twice")
        out.append(item)
    return out


class KvRotation:
    """Rotation rules of every KV mount; the KV engine hands it ``rotation/`` and ``rotate/`` calls."""

    def __init__(
        self,
        *,
        storage: StorageBackend,
        clock: Clock,
        authorizer: Authorizer,
        passwords: PasswordPolicies,
        timers: Timers,
        mounts: MountTable,
        rotate_fields: RotateFields,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._authorizer = authorizer
        self._passwords = passwords
        self._timers = timers
        self._mounts = mounts
        self._rotate_fields = rotate_fields
        timers.register("kv-rotate", self._due)

    @staticmethod
    def _key(mount: MountEntry, path: str) -> str:
        return f"{mount.storage_prefix}rotation/{path}"

    async def _load(self, mount: MountEntry, path: str) -> Rule | None:
        raw = await self._storage.get(self._key(mount, path))
        if raw is None:
            return None
        try:
            rule = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise StorageError("a stored rotation rule is malformed") from None
        if not isinstance(rule, dict):
            raise StorageError("a stored rotation rule is malformed")
        return rule

    def _describe(self, rule: Rule) -> dict[str, Any]:
        now = self._clock()
        return {
            "fields": list(rule["fields"]),
            "password_policy": rule["password_policy"],
            "rotation_period": int(rule["rotation_period"]),
            "last_rotation": rfc3339(rule["last_rotation"]) if rule["last_rotation"] else None,
            "next_rotation": rfc3339(rule["next_rotation"]),
            "ttl": max(0, round(float(rule["next_rotation"]) - now)),
        }

    def _require(self, call: Call, capability: str) -> None:
        require(self._authorizer, call.require_token(), call.path.rstrip("/"), capability)

    async def handle(self, call: Call, mount: MountEntry, operation: str, path: str) -> Reply:
        """``rotation/<path>`` (the rule) or ``rotate/<path>`` (rotate now)."""
        if operation == "rotation" and call.method == "LIST":
            self._require(call, "list")
            prefix = f"{mount.storage_prefix}rotation/{path}"
            keys = await self._storage.list(
                prefix if not path or path.endswith("/") else prefix + "/"
            )
            if not keys:
                raise NotFoundError("")
            return Reply(data={"keys": keys}, mount_type="kv")
        if not path:
            raise InvalidRequestError(f"missing secret path after {operation}/")
        if operation == "rotate":
            if call.method not in ("POST", "PUT"):
                raise unsupported(call)
            self._require(call, "update")
            rule = await self._load(mount, path)
            if rule is None:
                raise InvalidRequestError(f"no rotation rule for {path}")
            version = await self._rotate(mount, path, rule, reason=MANUAL_REASON)
            return Reply(data={"version": version}, mount_type="kv")
        if call.method == "GET":
            self._require(call, "read")
            rule = await self._load(mount, path)
            if rule is None:
                raise NotFoundError("")
            return Reply(data=self._describe(rule), mount_type="kv")
        if call.method == "DELETE":
            self._require(call, "delete")
            done = answer_at_commit(Reply.no_content())
            async with self._storage.transaction() as tx:
                raw = await tx.get(self._key(mount, path), for_update=True)
                if raw is not None:
                    await tx.delete(self._key(mount, path))
            return done
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        return await self._write(call, mount, path)

    async def _write(self, call: Call, mount: MountEntry, path: str) -> Reply:
        body = call.json()
        unknown = sorted(set(body) - _ALLOWED)
        if unknown:
            raise InvalidRequestError(f"unknown parameter(s): {', '.join(unknown[:10])}")
        existing = await self._load(mount, path)
        self._require(call, "create" if existing is None else "update")
        rule: Rule = dict(existing or {"v": 1, "last_rotation": None, "password_policy": ""})
        if "fields" in body or "fields" not in rule:
            rule["fields"] = _fields(body.get("fields"))
        if "password_policy" in body:
            policy = body["password_policy"]
            if policy is None:
                policy = ""
            if not isinstance(policy, str):
                raise InvalidRequestError("password_policy must be a policy name")
            if policy:
                await self._passwords.get(validate_policy_name(policy))  # must exist
            rule["password_policy"] = policy
        if "rotation_period" in body or "rotation_period" not in rule:
            if body.get("rotation_period") in (None, ""):
                raise InvalidRequestError("rotation_period is required, e.g. 24h")
            period = parse_duration(body["rotation_period"], field="rotation_period")
            if period < MIN_PERIOD:
                raise InvalidRequestError(
                    f"rotation_period must be {int(MIN_PERIOD)} seconds or more"
                )
            rule["rotation_period"] = int(period)
        start = float(rule["last_rotation"] or self._clock())
        old_next = rule.get("next_rotation")
        rule["next_rotation"] = start + float(rule["rotation_period"])
        ref = f"{mount.uuid}/{path}"
        done = answer_at_commit(Reply.no_content())
        async with self._storage.transaction() as tx:
            await tx.put(self._key(mount, path), orjson.dumps(rule))
            if old_next is not None:
                await self._timers.cancel(tx, float(old_next), "kv-rotate", ref)
            await self._timers.schedule(tx, rule["next_rotation"], "kv-rotate", ref)
        return done

    async def _rotate(self, mount: MountEntry, path: str, rule: Rule, *, reason: str) -> int:
        policy = await self._passwords.get(str(rule.get("password_policy") or ""))
        version = await self._rotate_fields(
            mount, path, list(rule["fields"]), policy.generate, reason
        )
        now = self._clock()
        ref = f"{mount.uuid}/{path}"
        async with self._storage.transaction() as tx:
            raw = await tx.get(self._key(mount, path), for_update=True)
            if raw is None:  # the rule was deleted meanwhile
                return version
            current = orjson.loads(raw)
            await self._timers.cancel(tx, float(current["next_rotation"]), "kv-rotate", ref)
            current["last_rotation"] = now
            current["next_rotation"] = now + float(current["rotation_period"])
            await tx.put(self._key(mount, path), orjson.dumps(current))
            await self._timers.schedule(tx, current["next_rotation"], "kv-rotate", ref)
        return version

    async def _due(self, ref: str) -> float | None:
        """Timer ``kv-rotate``: rotate when due (the rule may have changed or gone since)."""
        mount_uuid, _, path = ref.partition("/")
        mount = next((m for m in self._mounts.entries() if m.uuid == mount_uuid), None)
        if mount is None or mount.type != "kv":
            return None
        rule = await self._load(mount, path)
        if rule is None:
            return None
        due = float(rule["next_rotation"])
        if due > self._clock() + 0.001:
            return due
        await self._rotate(mount, path, rule, reason=SCHEDULED_REASON)
        return None
