"""``sys/leases/*`` (and Vault's older ``sys/renew``, ``sys/revoke*``): look up, renew, revoke leases.

Vault's paths and shapes::

    sys/leases/lookup                 PUT/POST {lease_id}      id, issue_time, expire_time, ttl, renewable, last_renewal
    sys/leases/lookup/<prefix>        LIST                     the next segments of lease ids (sudo)
    sys/leases/renew[/<lease id>]     PUT/POST {lease_id, increment}   (also sys/renew[/<id>])
    sys/leases/revoke[/<lease id>]    PUT/POST {lease_id}              (also sys/revoke[/<id>])
    sys/leases/revoke-prefix/<prefix> PUT/POST                 every lease under the prefix (sudo)
    sys/leases/revoke-force/<prefix>  PUT/POST                 the same, ignoring engine errors (sudo)
    sys/leases/tidy                   PUT/POST                 drop dangling index entries

Authorization asks the one authorizer for the path as called (``update`` on
``sys/leases/renew``...), and ``sudo`` besides on the root-protected ones,
like Vault. :mod:`kustos.server.leases` does the work.
"""

from __future__ import annotations

from typing import Final

from kustos.errors import InvalidRequestError, NotFoundError
from kustos.server.access import require
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.core import Core
from kustos.server.leases import Lease, validate_lease_id
from kustos.server.times import parse_duration, rfc3339

__all__ = ["LeasesApi"]

_ALIASES: Final = {
    "sys/renew": "renew",
    "sys/revoke": "revoke",
    "sys/revoke-prefix": "revoke-prefix",
    "sys/revoke-force": "revoke-force",
}
_SUDO: Final = frozenset({"revoke-prefix", "revoke-force", "lookup-list"})
_ACTIONS: Final = ("lookup", "renew", "revoke", "revoke-prefix", "revoke-force", "tidy")


class LeasesApi:
    """Answers ``sys/leases/*`` or one of the ``sys/renew``-style aliases (by ``prefix``)."""

    def __init__(self, core: Core, *, prefix: str) -> None:
        self._core = core
        self.prefix = prefix

    def _split(self, path: str) -> tuple[str, str]:
        """``(action, rest of the path)``."""
        trimmed = path.rstrip("/")
        if self.prefix == "sys/leases/":
            action, _, rest = trimmed[len("sys/leases/") :].partition("/")
            return action, rest
        head = self.prefix.rstrip("/")
        return _ALIASES[head], trimmed[len(head) :].lstrip("/")

    def route(self, path: str) -> str:
        action, _ = self._split(path)
        return f"sys/leases/{action}" if action in _ACTIONS else "sys/leases/unknown"

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    @staticmethod
    def needs_token(path: str) -> bool:
        return True

    def _require(self, call: Call, capability: str, *, sudo: bool = False) -> None:
        token = call.require_token()
        path = call.path.rstrip("/")
        require(self._core.authorizer, token, path, capability)
        if sudo:
            require(self._core.authorizer, token, path, "sudo")

    async def handle(self, call: Call) -> Reply:
        action, rest = self._split(call.path)
        leases = self._core.leases
        if action == "lookup":
            if call.method == "LIST":
                self._require(call, "list", sudo=True)
                keys = await leases.list_ids(rest)
                if not keys:
                    raise NotFoundError("")
                return Reply(data={"keys": keys})
            if call.method not in ("PUT", "POST") or rest:
                raise unsupported(call)
            self._require(call, "update")
            lease_id = validate_lease_id(call.json().get("lease_id"))
            lease = await leases.lookup(lease_id)
            if lease is None:
                raise InvalidRequestError("invalid lease")
            now = self._core.clock()
            return Reply(
                data={
                    "id": lease.lease_id,
                    "issue_time": rfc3339(lease.issue_time),
                    "expire_time": rfc3339(lease.expire_time),
                    "last_renewal": rfc3339(lease.last_renewal) if lease.last_renewal else None,
                    "renewable": lease.renewable,
                    "ttl": lease.remaining(now),
                }
            )
        if call.method not in ("PUT", "POST"):
            raise unsupported(call)
        if action == "renew":
            self._require(call, "update")
            body = call.json()
            lease_id = validate_lease_id(rest or body.get("lease_id"))
            increment = (
                None
                if body.get("increment") in (None, "", 0)
                else parse_duration(body["increment"], field="increment")
            )

            def answer(lease: Lease) -> Reply:
                return Reply(
                    data=None,
                    lease_id=lease.lease_id,
                    lease_duration=lease.remaining(self._core.clock()),
                    renewable=lease.renewable,
                )

            declared: list[Reply] = []  # the answer, audited before the renewal commits
            lease = await leases.renew(
                lease_id,
                increment=increment,
                before_commit=lambda renewed: declared.append(answer_at_commit(answer(renewed))),
            )
            return declared[-1] if declared else answer(lease)
        if action == "revoke":
            self._require(call, "update")
            lease_id = validate_lease_id(rest or call.json().get("lease_id"))
            done = answer_at_commit(Reply.no_content())
            await leases.revoke(lease_id)
            return done
        if action in ("revoke-prefix", "revoke-force"):
            self._require(call, "update", sudo=True)
            prefix = rest or call.json().get("prefix")
            prefix = validate_lease_id(prefix, field="prefix")
            done = answer_at_commit(Reply.no_content())
            await leases.revoke_prefix(prefix, force=action == "revoke-force")
            return done
        if action == "tidy" and not rest:
            self._require(call, "update")
            report = await leases.tidy()
            return Reply(
                status=202,
                data={
                    "token_links_removed": report.token_links_removed,
                    "orphaned_leases_revoked": report.orphaned_leases_revoked,
                },
                warnings=["Tidy operation completed."],
            )
        raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
