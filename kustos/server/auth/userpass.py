"""The ``userpass`` auth method: people log in with a username and a password.

Endpoints under ``auth/<mount>/`` (Vault's names and shapes):
``users/<name>`` (POST ``{password, token_policies|policies, token_ttl, ...}``,
GET without the password, DELETE), ``LIST users``,
``users/<name>/password`` and ``users/<name>/policies``, and
``login/<name>`` ``{password}`` (no token needed).

Passwords are hashed with Argon2id (argon2-cffi, RFC 9106 low-memory
profile: 64 MiB, 3 passes) in a worker thread; only the hash is stored,
inside the barrier-encrypted user record. A wrong password and an unknown
user get the same answer (``invalid username or password``, 400) after the
same work: an unknown user's password is verified against a dummy hash.
Usernames are case-insensitive (stored lowercased), like Vault's.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final, NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from kustos.errors import InvalidRequestError, NotFoundError
from kustos.server.auth import MethodDeps
from kustos.server.auth.issuing import TokenSettings, login_reply, str_field
from kustos.server.auth.mounts import AuthMount
from kustos.server.auth.records import Records
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit

__all__ = ["INVALID_CREDENTIALS", "UserpassMethod"]

INVALID_CREDENTIALS: Final = "invalid username or password"
_USERNAME: Final = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,127}")
_MAX_PASSWORD: Final = 1024


def _not_found() -> NoReturn:
    raise NotFoundError("")


class UserpassMethod:
    """Serves every mount of type ``userpass``."""

    def __init__(self, deps: MethodDeps, *, hasher: PasswordHasher | None = None) -> None:
        self._deps = deps
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    @staticmethod
    def route(rest: str) -> str:
        parts = rest.rstrip("/").split("/")
        if parts[0] == "login" and len(parts) == 2:
            return "login/:name"
        if parts[0] == "users":
            return "/".join(["users", *([":name"] if len(parts) > 1 else []), *parts[2:3]])
        return "unknown"

    async def handle(self, call: Call, mount: AuthMount, rest: str) -> Reply:
        parts = rest.rstrip("/").split("/")
        records = self._deps.records(mount)
        if parts[0] == "login" and len(parts) == 2:
            return await self._login(call, mount, records, parts[1].lower())
        if parts == ["users"]:
            if call.method != "LIST":
                raise unsupported(call)
            self._deps.require(call, "list")
            names = [n for n in await records.list("user/") if not n.endswith("/")]
            return Reply(data={"keys": names}) if names else _not_found()
        if parts[0] == "users" and len(parts) in (2, 3):
            name = _username(parts[1])
            if len(parts) == 2:
                return await self._user(call, records, name)
            if parts[2] in ("password", "policies"):
                return await self._user_field(call, records, name, parts[2])
        raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')

    # -- users -------------------------------------------------------------------------

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _user(self, call: Call, records: Records, name: str) -> Reply:
        key = f"user/{name}"
        if call.method == "GET":
            self._deps.require(call, "read")
            doc = await records.get(key)
            if doc is None:
                _not_found()
            return Reply(data=TokenSettings.from_doc(doc.get("token", {})).describe())
        if call.method == "DELETE":
            self._deps.require(call, "delete")
            done = answer_at_commit(Reply.no_content())
            await records.delete(key)
            return done
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        body = call.json()
        password = _password(body) if body.get("password") not in (None, "") else None
        password_hash = await self._hash(password) if password is not None else None
        done = answer_at_commit(Reply.no_content())
        async with records.transaction() as tx:
            current = await records.get(key, tx=tx, for_update=True)
            self._deps.require(call, "create" if current is None else "update")
            if current is None and password_hash is None:
                raise InvalidRequestError("missing password")
            settings = TokenSettings.from_doc(current.get("token", {}) if current else {}).updated(
                body
            )
            record: dict[str, Any] = {
                "password_hash": password_hash or (current or {}).get("password_hash"),
                "token": settings.to_doc(),
            }
            await records.put(key, record, tx=tx)
        return done

    async def _user_field(self, call: Call, records: Records, name: str, field: str) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._deps.require(call, "update")
        body = call.json()
        password_hash = await self._hash(_password(body)) if field == "password" else None
        done = answer_at_commit(Reply.no_content())
        async with records.transaction() as tx:
            current = await records.get(f"user/{name}", tx=tx, for_update=True)
            if current is None:
                raise InvalidRequestError(f'username "{name}" does not exist')
            if password_hash is not None:
                current["password_hash"] = password_hash
            else:
                current["token"] = (
                    TokenSettings.from_doc(current.get("token", {})).updated(body).to_doc()
                )
            await records.put(f"user/{name}", current, tx=tx)
        return done

    # -- login -----------------------------------------------------------------------------

    async def _login(self, call: Call, mount: AuthMount, records: Records, name: str) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        password = str_field(call.json(), "password")
        if not password:
            raise InvalidRequestError("missing password")
        if len(password) > _MAX_PASSWORD:
            raise InvalidRequestError(INVALID_CREDENTIALS)
        doc = await records.get(f"user/{name}") if _USERNAME.fullmatch(name) else None
        stored = str(doc.get("password_hash", "")) if doc is not None else ""
        if doc is None or not stored:
            # same work as a real check, same answer: the response does not tell whether the user exists
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash("kustos-dummy-password")
            await self._verify(self._dummy_hash, password)
            raise InvalidRequestError(INVALID_CREDENTIALS)
        if not await self._verify(stored, password):
            raise InvalidRequestError(INVALID_CREDENTIALS)
        return await login_reply(
            storage=self._deps.storage,
            tokens=self._deps.tokens,
            mount=mount,
            settings=TokenSettings.from_doc(doc.get("token", {})),
            display_name=name,
            metadata={"username": name},
            now=self._deps.clock(),
        )

    async def _verify(self, stored: str, password: str) -> bool:
        def check() -> bool:
            try:
                return bool(self._hasher.verify(stored, password))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)


def _username(raw: str) -> str:
    name = raw.lower()
    if not _USERNAME.fullmatch(name):
        raise InvalidRequestError(
            "username must be 1-128 letters, digits, '.', '_', '@', '+' or '-'"
        )
    return name


def _password(body: dict[str, Any]) -> str:
    password = str_field(body, "password")
    if not password:
        raise InvalidRequestError("missing password")
    if len(password) > _MAX_PASSWORD:
        raise InvalidRequestError(f"password is longer than {_MAX_PASSWORD} characters")
    return password
