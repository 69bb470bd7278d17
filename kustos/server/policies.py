"""The server's ACL policies: stored documents, parsed once, and the authorizer built on them.

Policy documents (HCL or JSON) live in storage at ``core/policy/acl/<name>``
as ``{"name", "policy"}`` JSON (policies are not secret; token entries and
mounts are stored the same way). They are parsed when written or loaded,
never per request: :class:`PolicyStore` keeps the parsed
:class:`~kustos.policy.Policy` objects in memory and one
:class:`~kustos.policy.ACL` per distinct *set* of policy names a token holds,
dropped whenever a policy changes.

:meth:`PolicyStore.authorize` is the server's ``Authorizer``: pure and
synchronous, no I/O. The ``root`` policy allows everything; ``default`` is
built in (its text may be replaced, it cannot be deleted); a policy name a
token holds but that does not exist grants nothing (as in Vault).

Several replicas sharing one database: every write bumps
``core/policy/epoch``. With change notifications (PostgreSQL LISTEN/NOTIFY)
another replica reloads the policies as soon as that commit is announced
(:mod:`kustos.server.replicas` calls :meth:`PolicyStore.load`) and nothing
is polled; while notifications are down, or on a shared backend without
them, :meth:`PolicyStore.refresh_if_stale` re-reads the documents when the
epoch moved, checked at most every ``refresh_interval`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson

from kustos.errors import InvalidRequestError, NotFoundError, StorageError
from kustos.policy import (
    ACL,
    DEFAULT_POLICY_TEXT,
    Operation,
    Policy,
    default_policy,
    normalize_policy_name,
    root_policy,
)
from kustos.server.times import Clock
from kustos.server.tokens import TokenEntry
from kustos.store.base import StorageBackend

__all__ = ["CHANGED_TOPIC", "POLICY_PREFIX", "PolicyStore"]

POLICY_PREFIX: Final = "core/policy/acl/"
CHANGED_TOPIC: Final = "policies"
"""Topic a policy write or delete announces itself under with its commit (``{"name": ...}``): the
other replicas reload their policies, then tell their change-stream subscribers."""
_EPOCH_KEY: Final = "core/policy/epoch"
_PARAMETER_OPERATIONS: Final = {
    "GET": Operation.read,
    "PATCH": Operation.patch,
}


class PolicyStore:
    """Policy CRUD in storage, parsed policies and ACLs in memory, and the authorizer."""

    def __init__(
        self, *, storage: StorageBackend, clock: Clock, refresh_interval: float | None = None
    ) -> None:
        """``refresh_interval``: ``None`` when this process owns its storage (no refresh needed)."""
        self._storage = storage
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._policies: dict[str, Policy] = {"default": default_policy()}
        self._acls: dict[tuple[str, ...], ACL] = {}
        self._epoch = b""
        self._checked_at = float("-inf")
        self.on_change: Callable[[str], None] | None = None
        """Called with a policy's name after it is written or deleted here (the change hub)."""

    # -- loading -------------------------------------------------------------------------

    async def load(self) -> None:
        """Read and parse every stored policy (on start, and when another replica changed one)."""
        policies: dict[str, Policy] = {"default": default_policy()}
        for name in await self._storage.list(POLICY_PREFIX):
            raw = await self._storage.get(POLICY_PREFIX + name)
            if raw is None:
                continue
            text = _decode(raw)
            known = self._policies.get(name)
            policies[name] = (
                known if known is not None and known.raw == text else Policy.parse(name, text)
            )
        self._policies = policies
        self._acls = {}
        self._epoch = await self._storage.get(_EPOCH_KEY) or b""
        self._checked_at = self._clock()

    def poll(self, interval: float | None) -> None:
        """Check for other replicas' changes every ``interval`` seconds (``None``: never; they are announced)."""
        self._refresh_interval = interval
        self._checked_at = float("-inf")

    async def refresh_if_stale(self) -> None:
        """With shared storage, re-read the policies if another replica changed them (checked once a second)."""
        interval = self._refresh_interval
        if interval is None or self._clock() - self._checked_at < interval:
            return
        self._checked_at = self._clock()
        if (await self._storage.get(_EPOCH_KEY) or b"") != self._epoch:
            await self.load()

    # -- CRUD ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every policy name, built-ins included (``root`` and ``default``), sorted."""
        return sorted({*self._policies, "root"})

    def get(self, name: str) -> Policy | None:
        """The parsed policy called ``name`` (``root`` has no document: :class:`InvalidRequestError`)."""
        canonical = normalize_policy_name(name)
        if canonical == "root":
            raise InvalidRequestError(
                "the root policy has no document: it grants every capability on every path"
            )
        return self._policies.get(canonical)

    def text(self, name: str) -> str:
        """The document as written (the built-in text for an unedited ``default``)."""
        policy = self.get(name)
        if policy is None:
            raise NotFoundError(f"no policy named {normalize_policy_name(name)!r}")
        return policy.raw or DEFAULT_POLICY_TEXT

    async def write(self, name: str, text: str) -> Policy:
        """Parse and store a policy (create or replace). ``root`` cannot be written."""
        canonical = normalize_policy_name(name)
        if canonical == "root":
            raise InvalidRequestError("cannot update the root policy")
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError("'policy' must be a non-empty policy document (HCL or JSON)")
        policy = Policy.parse(canonical, text)
        await self._store(canonical, orjson.dumps({"name": canonical, "policy": text}))
        self._policies[canonical] = policy
        self._acls = {}
        if self.on_change is not None:
            self.on_change(canonical)
        return policy

    async def delete(self, name: str) -> None:
        """Remove a policy; ``default`` and ``root`` cannot be deleted. Absent names are fine."""
        canonical = normalize_policy_name(name)
        if canonical in ("default", "root"):
            raise InvalidRequestError(f"cannot delete the {canonical} policy")
        await self._store(canonical, None)
        self._policies.pop(canonical, None)
        self._acls = {}
        if self.on_change is not None:
            self.on_change(canonical)

    async def _store(self, name: str, value: bytes | None) -> None:
        async with self._storage.transaction() as tx:
            current = await tx.get(_EPOCH_KEY, for_update=True)
            epoch = str(int(current or b"0") + 1).encode("ascii")
            if value is None:
                await tx.delete(POLICY_PREFIX + name)
            else:
                await tx.put(POLICY_PREFIX + name, value)
            await tx.put(_EPOCH_KEY, epoch)
            tx.announce(CHANGED_TOPIC, {"name": name})
        self._epoch = epoch

    # -- deciding ------------------------------------------------------------------------

    def acl(self, policies: Sequence[str]) -> ACL:
        """The ACL of a set of policy names (cached until a policy changes)."""
        key = tuple(policies)
        acl = self._acls.get(key)
        if acl is None:
            if "root" in key:
                acl = ACL([root_policy()])
            else:
                acl = ACL(p for name in key if (p := self._policies.get(name)) is not None)
            if len(self._acls) > 4096:
                self._acls = {}
            self._acls[key] = acl
        return acl

    def authorize(self, token: TokenEntry, path: str, capability: str) -> bool:
        """The server's ``Authorizer``: may ``token`` use ``capability`` on ``path``? (pure, no I/O)."""
        if "root" in token.policies:
            return True
        acl = self.acl(token.policies)
        if capability == "sudo":
            return "sudo" in acl.capabilities(path)
        if capability == "list":
            # as Vault does for list operations: a/b is checked as a/b/ (so a/b/* rules apply)
            return "list" in acl.capabilities(
                path if path.endswith("/") else path + "/", listing=True
            )
        return capability in acl.capabilities(path)

    def parameter_problem(
        self, token: TokenEntry, path: str, method: str, data: Mapping[str, Any] | None
    ) -> str | None:
        """Why ``data`` breaks the parameter rules (allowed/denied/required) of the rule for ``path``, if it does.

        The authorizer only sees path and capability; the dispatcher calls this
        once per request so parameter constraints are enforced on every route.
        """
        if "root" in token.policies:
            return None
        acl = self.acl(token.policies)
        permissions = acl.permissions(path)
        if permissions is None or permissions.denies:
            return None
        if not (
            permissions.allowed_parameters
            or permissions.denied_parameters
            or permissions.required_parameters
        ):
            return None
        operation = _PARAMETER_OPERATIONS.get(method)
        if method in ("POST", "PUT"):
            operation = (
                Operation.update if "update" in permissions.capabilities else Operation.create
            )
        if operation is None or operation.value not in permissions.capabilities:
            return None
        decision = acl.check(operation, path, data=data)
        return None if decision.allowed else decision.reason


def _decode(raw: bytes) -> str:
    try:
        doc = orjson.loads(raw)
        text = doc["policy"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise StorageError("a stored policy is malformed") from None
    if not isinstance(text, str):
        raise StorageError("a stored policy is malformed")
    return text
