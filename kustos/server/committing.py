"""Auditing a write's answer *before* its change is committed: no change is kept that the audit
log cannot vouch for, and no change is kept that the caller was told had failed.

Why: the dispatcher writes a call's request entry before the handler runs and
its response entry after. If the response entry then fails (a full audit
disk), the change is already committed while the caller is answered 503: it
believes the write failed. So for an audited call that may change something,
the dispatcher installs a :class:`CommitGate` as the storage commit hook
(:data:`kustos.store.base.COMMIT_HOOK`): a transaction that changed something
awaits it just before it commits. The handler declares its answer with
:func:`answer_at_commit` before (or inside) the transaction; the gate writes
the response entry for that answer there, and if it cannot, raises
:class:`~kustos.audit.AuditWriteError`: the transaction rolls back and the
caller gets 503 with nothing changed. Once the entry is written the commit
proceeds and the caller gets exactly the declared answer.

How a handler that changes something uses it (the contract for new routes)::

    reply = answer_at_commit(Reply.no_content())      # an answer known beforehand
    await self._core.mounts.enable(...)               # commits: the entry is written first
    return reply

    async with storage.transaction() as tx:           # an answer computed in the transaction
        result = ...
        reply = answer_at_commit(self._reply(result))
    return reply

Return the answer you declared (or an equal one, such as another
``Reply.no_content()``). A handler whose change commits without
a declared answer still works: its response entry is written after the
commit, as before, and if that fails the caller still gets the true answer
(the change happened) while the failure is logged and counted
(``kustos_audit_unreserved_commits_total``); the fuzz test fails on such
commits. Only the first commit of a call writes the entry (a handler with
several transactions should declare before the first). Without an audit
device, or outside a request, :func:`answer_at_commit` does nothing.
"""

from __future__ import annotations

import asyncio

from kustos.server.auditing import AuditCall
from kustos.server.calls import Reply
from kustos.store.base import COMMIT_HOOK

__all__ = ["CommitGate", "answer_at_commit"]


class CommitGate:
    """The commit hook of one audited call (installed by the dispatcher, see the module docstring)."""

    __slots__ = ("_audit", "_task", "reached_commit", "reply", "written")

    def __init__(self, audit: AuditCall) -> None:
        self._audit = audit
        self._task = asyncio.current_task()
        self.reply: Reply | None = None
        """The answer the handler declared (:func:`answer_at_commit`)."""
        self.written = False
        """True once the response entry for :attr:`reply` was written before a commit."""
        self.reached_commit = False
        """True once a transaction of this call that changed something went on to commit."""

    async def __call__(self) -> None:
        if asyncio.current_task() is not self._task:
            return  # a task the handler started inherited the context: not this call's commit
        if not self.written and self.reply is not None:
            self._audit.response_before_commit(self.reply)  # AuditWriteError: roll back
            self.written = True
        self.reached_commit = True


def answer_at_commit(reply: Reply) -> Reply:
    """Declare ``reply`` as the answer of the current call's change; returns it.

    The response entry for it is written just before the change commits
    (see the module docstring). Does nothing when the call is not audited.
    """
    gate = COMMIT_HOOK.get()
    if isinstance(gate, CommitGate) and not gate.written:
        gate.reply = reply
    return reply
