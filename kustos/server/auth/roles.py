"""One role endpoint (read, write, delete) for the auth methods whose roles are single records.

The kubernetes, jwt and aws methods keep each role as one record
``role/<name>``: reading it describes it, writing it parses the body over
the current role inside one transaction (so ``create`` or ``update`` is
decided on what is stored), deleting it removes the record. The methods
differ only in their role names' rule and their role type, given here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from kustos.errors import InvalidRequestError, NotFoundError
from kustos.server.auth import MethodDeps
from kustos.server.auth.mounts import AuthMount
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit

__all__ = ["RoleRecord", "role_endpoint"]


class RoleRecord(Protocol):
    """What a method's role type offers: its stored form and what a read shows."""

    def to_doc(self) -> dict[str, Any]: ...

    def describe(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=RoleRecord)


async def role_endpoint(
    call: Call,
    deps: MethodDeps,
    mount: AuthMount,
    name: str,
    *,
    name_rule: re.Pattern[str],
    name_error: str,
    from_doc: Callable[[dict[str, Any]], R],
    parse: Callable[[dict[str, Any], R | None], R],
) -> Reply:
    """``GET``, ``POST``/``PUT`` or ``DELETE`` on ``role/<name>`` of ``mount``."""
    if not name_rule.fullmatch(name):
        raise InvalidRequestError(name_error)
    records = deps.records(mount)
    key = f"role/{name}"
    if call.method == "GET":
        deps.require(call, "read")
        doc = await records.get(key)
        if doc is None:
            raise NotFoundError("")
        return Reply(data=from_doc(doc).describe())
    if call.method == "DELETE":
        deps.require(call, "delete")
        done = answer_at_commit(Reply.no_content())
        await records.delete(key)
        return done
    if call.method not in ("POST", "PUT"):
        raise unsupported(call)
    body = call.json()
    done = answer_at_commit(Reply.no_content())
    async with records.transaction() as tx:
        current = await records.get(key, tx=tx, for_update=True)
        deps.require(call, "create" if current is None else "update")
        role = parse(body, None if current is None else from_doc(current))
        await records.put(key, role.to_doc(), tx=tx)
    return done
