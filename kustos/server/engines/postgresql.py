"""The ``postgresql-database-plugin``: how the database engine talks to a PostgreSQL server.

Vault's database engine runs *statements* the operator writes, with
placeholders filled in: ``{{name}}`` (or ``{{username}}``) the user,
``{{password}}`` its password, ``{{expiration}}`` the end of its lease as
``2006-01-02 15:04:05+0000``. A statement list entry may hold several
statements separated by ``;`` (split before filling in, so a ``;`` in a
password cannot split anything); an entry containing ``$$`` (a ``DO`` block
or a function body) is run whole. Each operation runs in one transaction.

The connection URL may hold ``{{username}}`` and ``{{password}}``; they are
never spliced into the text: the URL is parsed with stand-ins and the real
values are handed to libpq as separate parameters, so no quoting can go
wrong and the password never appears in a connection string or an error
message (messages are scrubbed of it besides).

Defaults, like Vault's plugin: renewal ``ALTER ROLE "{{name}}" VALID UNTIL
'{{expiration}}';``, static and root rotation ``ALTER ROLE "{{name}}" WITH
PASSWORD '{{password}}';``, and revocation (when a role names none)
``REASSIGN OWNED BY`` the connecting user, ``DROP OWNED BY`` and
``DROP ROLE``, only if the role still exists (revoking twice is harmless). Existing sessions of a revoked user are not
killed by the default; a role can add ``SELECT pg_terminate_backend(pid)
FROM pg_stat_activity WHERE usename = '{{name}}';`` to its revocation
statements (the connecting user needs the right to signal them).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict

from kustos.errors import InvalidRequestError, KustosError
from kustos.sensitive import Sensitive

__all__ = [
    "DEFAULT_RENEW",
    "DEFAULT_REVOKE",
    "DEFAULT_ROTATE",
    "PLUGIN_NAME",
    "Connection",
    "ConnectionPool",
    "DatabaseError",
    "StatementError",
    "expiration_text",
    "fill",
    "split_statements",
]

PLUGIN_NAME: Final = "postgresql-database-plugin"
DEFAULT_RENEW: Final = ("ALTER ROLE \"{{name}}\" VALID UNTIL '{{expiration}}';",)
DEFAULT_ROTATE: Final = ("ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}';",)
DEFAULT_REVOKE: Final = (
    "DO $$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{{name}}') THEN "
    'REASSIGN OWNED BY "{{name}}" TO CURRENT_USER; DROP OWNED BY "{{name}}"; '
    'DROP ROLE "{{name}}"; END IF; END $$;',
)
_PLACEHOLDER: Final = re.compile(r"\{\{\s*(name|username|password|expiration)\s*\}\}")
_USER_STAND_IN: Final = "kustosusernamestandin"
_PASSWORD_STAND_IN: Final = "kustospasswordstandin"  # noqa: S105 - a placeholder, not a secret
_CONNECT_TIMEOUT: Final = 10


class DatabaseError(KustosError):
    """The database could not be reached or the session broke (500; never holds a password)."""


class StatementError(InvalidRequestError):
    """The database refused a statement the operator configured (400: fix the role or connection)."""


def expiration_text(ts: float) -> str:
    """``2026-12-06 03:00:00+0000``: how ``{{expiration}}`` is written (Vault's format, UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S+0000")


def split_statements(entries: Sequence[str]) -> list[str]:
    """Each entry split at ``;`` (entries with ``$$`` kept whole), empty pieces dropped."""
    out: list[str] = []
    for entry in entries:
        pieces = [entry] if "$$" in entry else entry.split(";")
        out.extend(piece.strip() for piece in pieces if piece.strip())
    return out


def fill(statement: str, values: Mapping[str, str]) -> str:
    """Replace ``{{name}}``/``{{username}}``/``{{password}}``/``{{expiration}}`` with ``values``."""

    def one(match: re.Match[str]) -> str:
        key = "name" if match.group(1) == "username" else match.group(1)
        return values.get(key, match.group(0))

    return _PLACEHOLDER.sub(one, statement)


@dataclass(frozen=True)
class Connection:
    """How to reach one database: a URL (with optional placeholders) and the root credentials."""

    url: str
    username: str = ""
    password: Sensitive[str] = field(default_factory=lambda: Sensitive(""))

    def params(self, *, password: Sensitive[str] | None = None) -> dict[str, Any]:
        """libpq parameters with the credentials filled in (``password`` overrides the stored one)."""
        secret = (password if password is not None else self.password).reveal()
        text = self.url.replace("{{username}}", _USER_STAND_IN).replace(
            "{{password}}", _PASSWORD_STAND_IN
        )
        try:
            params: dict[str, Any] = dict(conninfo_to_dict(text))
        except psycopg.Error:
            raise InvalidRequestError(
                "connection_url could not be parsed: use postgresql://{{username}}:{{password}}@host:5432/db"
            ) from None
        for name, value in list(params.items()):
            if isinstance(value, str):
                if _PASSWORD_STAND_IN in value:
                    params[name] = value.replace(_PASSWORD_STAND_IN, secret)
                if _USER_STAND_IN in params[name]:
                    params[name] = params[name].replace(_USER_STAND_IN, self.username)
        params.setdefault("connect_timeout", _CONNECT_TIMEOUT)
        return params

    def _scrub(self, text: str, *extra: str) -> str:
        for secret in (self.password.reveal(), *extra):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _error(self, operation: str, exc: psycopg.Error, *extra: str) -> KustosError:
        """:class:`DatabaseError` for a connection problem, :class:`StatementError` for a refusal."""
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no detail"
            return DatabaseError(f"database: {operation} failed: {self._scrub(detail, *extra)}")
        diag = exc.diag.message_primary if exc.diag is not None else None
        detail = diag or type(exc).__name__
        if exc.sqlstate:
            detail += f" (SQLSTATE {exc.sqlstate})"
        return StatementError(f"database: {operation} failed: {self._scrub(detail, *extra)}")

    async def run(
        self,
        statements: Sequence[str],
        values: Mapping[str, str],
        *,
        operation: str,
        password: Sensitive[str] | None = None,
        pool: ConnectionPool | None = None,
    ) -> None:
        """Run ``statements`` (split, filled with ``values``) in one transaction.

        With ``pool``, an idle connection made with the same parameters is
        reused (and kept for the next call if this one succeeded).
        """
        secrets_in_play = [v for k, v in values.items() if k == "password"]
        if password is not None:
            secrets_in_play.append(password.reveal())
        params = self.params(password=password)
        key = ConnectionPool.key(params)
        try:
            conn = await (
                pool.acquire(key, params)
                if pool is not None
                else psycopg.AsyncConnection.connect(**params, autocommit=True)
            )
        except psycopg.Error as exc:
            raise self._error(f"{operation} (connect)", exc, *secrets_in_play) from None
        healthy = False
        try:
            async with conn.transaction():
                for statement in split_statements(statements):
                    await conn.execute(fill(statement, values).encode())
            healthy = True
        except psycopg.Error as exc:
            healthy = not conn.broken
            raise self._error(operation, exc, *secrets_in_play) from None
        finally:
            if pool is not None:
                await pool.release(key, conn, reuse=healthy)
            else:
                await conn.close()

    async def verify(self) -> None:
        """Connect and run ``SELECT 1``; :class:`DatabaseError` (or :class:`StatementError`) if that fails."""
        await self.run(["SELECT 1"], {}, operation="verify connection")


class ConnectionPool:
    """Idle database connections kept for reuse, per set of connection parameters.

    A new connection costs a TCP handshake, authentication and a backend
    process; keeping a few idle ones makes issuing credentials several times
    faster. Connections are keyed by a hash of their parameters (so a changed
    URL or a rotated root password never reuses an old session), kept at
    most ``max_idle`` per key and ``max_age`` seconds, and dropped when a
    statement broke them. Errors surface at once: a missing connection is
    made directly, never waited for.
    """

    def __init__(self, *, max_idle: int = 4, max_age: float = 300.0) -> None:
        self._max_idle = max_idle
        self._max_age = max_age
        self._idle: dict[str, list[tuple[float, psycopg.AsyncConnection[Any]]]] = {}
        self._born: dict[int, float] = {}

    @staticmethod
    def key(params: Mapping[str, Any]) -> str:
        """A digest of the parameters (they include the password: never kept in clear as a key)."""
        text = "\x00".join(f"{k}={params[k]}" for k in sorted(params))
        return hashlib.sha256(text.encode()).hexdigest()

    async def acquire(self, key: str, params: Mapping[str, Any]) -> psycopg.AsyncConnection[Any]:
        now = time.monotonic()
        idle = self._idle.get(key, [])
        while idle:
            born, conn = idle.pop()
            if not conn.closed and not conn.broken and now - born < self._max_age:
                self._born[id(conn)] = born
                return conn
            await conn.close()
        conn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        self._born[id(conn)] = now
        return conn

    async def release(self, key: str, conn: psycopg.AsyncConnection[Any], *, reuse: bool) -> None:
        born = self._born.pop(id(conn), time.monotonic())
        idle = self._idle.setdefault(key, [])
        if reuse and not conn.closed and not conn.broken and len(idle) < self._max_idle:
            idle.append((born, conn))
            return
        await conn.close()

    async def close(self) -> None:
        """Close every idle connection (at server shutdown)."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for _, conn in conns:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()
