"""The database secrets engine: short-lived database users on demand, and rotated static ones.

Vault's paths, fields and response shapes, so hvac's ``secrets.database``
works unchanged. Under a mount (``database/``)::

    config                 LIST
    config/<name>          POST/PUT (plugin_name, connection_url, username, password,
                                     allowed_roles, verify_connection, root_rotation_statements,
                                     password_policy, max_*_connections, max_connection_lifetime)
                           GET (never the password), DELETE
    reset/<name>           POST   (checks the connection again)
    rotate-root/<name>     POST   (a new root password only Kustos knows)
    roles                  LIST
    roles/<name>           POST/PUT (db_name, creation_statements, revocation_statements,
                                     rollback_statements, renew_statements, default_ttl, max_ttl),
                           GET, DELETE
    creds/<name>           GET    a new user + password, with a lease
    static-roles           LIST
    static-roles/<name>    POST/PUT (db_name, username, rotation_period, rotation_statements),
                           GET, DELETE
    static-creds/<name>    GET    the static user's current password
    rotate-role/<name>     POST   rotate a static role's password now

Only ``postgresql-database-plugin`` is built in (:mod:`.postgresql`).

Storage under the mount's ``logical/<uuid>/``: ``config/<name>`` and
``static-role/<name>`` hold passwords, so each record is barrier-encrypted
with context ``("kustos/database", mount uuid, kind, name)`` and the root
password is never returned by any endpoint; ``role/<name>`` (statements and
TTLs, no secret) is plain JSON. A dynamic user's lease
(:mod:`kustos.server.leases`) remembers its username, role and connection;
when it ends the role's revocation statements run (a default drops the
user). A static role's next rotation is a durable timer
(:mod:`kustos.server.timers`), so it happens on time across restarts and once
across replicas. Generated passwords follow the connection's
``password_policy`` (``sys/policies/password``) or Vault's default.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import secrets
import string
from collections.abc import Mapping
from typing import Any, Final

import orjson

from kustos.crypto.envelope import context
from kustos.errors import InvalidRequestError, NotFoundError, StorageError
from kustos.sensitive import Sensitive
from kustos.server.access import Authorizer, require
from kustos.server.barrier import Barrier, CiphertextFamily
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.engines.postgresql import (
    DEFAULT_RENEW,
    DEFAULT_REVOKE,
    DEFAULT_ROTATE,
    PLUGIN_NAME,
    Connection,
    ConnectionPool,
    DatabaseError,
    StatementError,
    expiration_text,
)
from kustos.server.leases import Lease, LeaseManager
from kustos.server.mounts import MountEntry, MountTable
from kustos.server.params import bool_param, int_param
from kustos.server.passwords import PasswordPolicies, validate_policy_name
from kustos.server.timers import Timers
from kustos.server.times import Clock, format_duration, parse_duration, rfc3339
from kustos.store.base import StorageBackend

__all__ = ["MIN_ROTATION_PERIOD", "DatabaseEngine"]

MIN_ROTATION_PERIOD: Final = 5.0
"""Seconds; Vault's minimum ``rotation_period`` for static roles."""

_CONTEXT_LABEL: Final = "kustos/database"
_NAME: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_])?")
_DB_USER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.@-]{0,62}")
_MAX_STATEMENTS: Final = 64
_MAX_STATEMENT: Final = 16 * 1024
_MAX_URL: Final = 4096
_MAX_SECRET: Final = 1024
_MAX_ROLES_ALLOWED: Final = 256
_OPERATIONS: Final = (
    "config",
    "reset",
    "rotate-root",
    "roles",
    "creds",
    "static-roles",
    "static-creds",
    "rotate-role",
)
_CONFIG_FIELDS: Final = frozenset(
    {
        "plugin_name",
        "plugin_version",
        "connection_url",
        "username",
        "password",
        "allowed_roles",
        "verify_connection",
        "root_rotation_statements",
        "password_policy",
        "max_open_connections",
        "max_idle_connections",
        "max_connection_lifetime",
        "password_authentication",
    }
)
_ROLE_FIELDS: Final = frozenset(
    {
        "db_name",
        "creation_statements",
        "revocation_statements",
        "rollback_statements",
        "renew_statements",
        "default_ttl",
        "max_ttl",
        "credential_type",
        "credential_config",
    }
)
_STATIC_FIELDS: Final = frozenset(
    {
        "db_name",
        "username",
        "rotation_period",
        "rotation_statements",
        "credential_type",
        "credential_config",
    }
)
_UNSUPPORTED: Final = {
    "username_template": "username_template is not supported; users are named "
    "v-<display name>-<role>-<random>-<unix time>",
    "rotation_schedule": "rotation_schedule is not supported; use rotation_period",
    "rotation_window": "rotation_window is not supported; use rotation_period",
    "skip_import_rotation": "skip_import_rotation is not supported; a new static role is "
    "rotated at once",
}
_RANDOM_CHARS: Final = string.ascii_letters + string.digits

Doc = dict[str, Any]


# -- parameters --------------------------------------------------------------------------


_NO_CONTENT_WRITES: Final = frozenset(
    {"config", "roles", "static-roles", "rotate-role", "rotate-root"}
)
"""Operations whose writes answer 204 (declared before they commit, see kustos.server.committing)."""


def _name(value: str, *, what: str) -> str:
    if not value:
        raise InvalidRequestError(f"missing {what} name")
    if not _NAME.fullmatch(value):
        raise InvalidRequestError(
            f"invalid {what} name {value[:40]!r}: 1-128 letters, digits, '_', '-' or '.', "
            "starting and ending with a letter, digit or '_'"
        )
    return value


def _check_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for field, message in _UNSUPPORTED.items():
        if field in body and body[field] not in (None, "", False):
            raise InvalidRequestError(message)
    unknown = sorted(set(body) - allowed - set(_UNSUPPORTED))
    if unknown:
        raise InvalidRequestError(f"unknown parameter(s): {', '.join(unknown[:10])}")


def _string(value: object, *, field: str, limit: int, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{field} must be a string")
    if len(value) > limit:
        raise InvalidRequestError(f"{field} is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidRequestError(f"{field} contains a NUL character")
    if not allow_empty and not value.strip():
        raise InvalidRequestError(f"{field} must not be empty")
    return value


def _statements(value: object, *, field: str) -> list[str]:
    """A list of statements, or one string (Vault accepts both); JSON-encoded lists too."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise InvalidRequestError(f"{field} must be a list of strings") from None
        else:
            value = [value]
    if not isinstance(value, list):
        raise InvalidRequestError(f"{field} must be a list of strings")
    if len(value) > _MAX_STATEMENTS:
        raise InvalidRequestError(f"{field} has more than {_MAX_STATEMENTS} entries")
    out = [_string(item, field=field, limit=_MAX_STATEMENT) for item in value]
    return [item for item in out if item.strip()]


def _allowed_roles(value: object) -> list[str]:
    if value is None or value == "":
        return []
    items: list[object]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list):
        items = list(value)
    else:
        raise InvalidRequestError("allowed_roles must be a list of role names")
    if len(items) > _MAX_ROLES_ALLOWED:
        raise InvalidRequestError(f"allowed_roles has more than {_MAX_ROLES_ALLOWED} entries")
    roles: list[str] = []
    for item in items:
        text = _string(item, field="allowed_roles", limit=128, allow_empty=False).strip()
        if text != "*" and not re.fullmatch(r"[A-Za-z0-9_.*?-]{1,128}", text):
            raise InvalidRequestError(
                f"allowed_roles entry {text[:40]!r} must be a role name, a glob or '*'"
            )
        roles.append(text)
    return roles


def _ttl(value: object, *, field: str) -> int:
    return int(parse_duration(value, field=field)) if value not in (None, "") else 0


def _bounded(value: object, *, field: str, minimum: int, maximum: int) -> int:
    return int_param(value, field=field, minimum=minimum, maximum=maximum)


def _credential_type(body: Mapping[str, Any]) -> None:
    kind = body.get("credential_type")
    if kind not in (None, "", "password"):
        raise InvalidRequestError("credential_type must be 'password' (the only type supported)")
    config = body.get("credential_config")
    if config not in (None, {}, ""):
        raise InvalidRequestError("credential_config is not supported for credential_type password")


def _random(length: int) -> str:
    return "".join(secrets.choice(_RANDOM_CHARS) for _ in range(length))


def _truncate(text: str, size: int) -> str:
    return text[:size]


def _username(display_name: str, role: str, now: float) -> str:
    """Vault's PostgreSQL default: ``v-<display 8>-<role 8>-<random 20>-<unix time>``, 63 at most."""
    display = re.sub(r"[^A-Za-z0-9_-]", "-", display_name) or "token"
    role_part = re.sub(r"[^A-Za-z0-9_-]", "-", role)
    return _truncate(
        f"v-{_truncate(display, 8)}-{_truncate(role_part, 8)}-{_random(20)}-{int(now)}", 63
    )


class DatabaseEngine:
    """Serves every ``database`` mount; one instance per server."""

    mount_type: Final = "database"

    def __init__(
        self,
        *,
        storage: StorageBackend,
        barrier: Barrier,
        clock: Clock,
        authorizer: Authorizer,
        leases: LeaseManager,
        passwords: PasswordPolicies,
        timers: Timers,
        mounts: MountTable,
    ) -> None:
        self._storage = storage
        self._barrier = barrier
        self._clock = clock
        self._authorizer = authorizer
        self._leases = leases
        self._passwords = passwords
        self._timers = timers
        self._mounts = mounts
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._pool = ConnectionPool()
        timers.register("db-static", self._scheduled_rotation)

    async def close(self) -> None:
        """Close the idle database connections (at server shutdown)."""
        await self._pool.close()

    # -- storage layout ---------------------------------------------------------------

    @staticmethod
    def _key(mount: MountEntry, kind: str, name: str) -> str:
        return f"{mount.storage_prefix}{kind}/{name}"

    @staticmethod
    def _context(mount: MountEntry, kind: str, name: str) -> bytes:
        return context(_CONTEXT_LABEL, mount.uuid, kind, name)

    @classmethod
    def ciphertext_families(cls, mount: MountEntry) -> list[CiphertextFamily]:
        """Connection configs and static roles (they hold passwords), each one barrier ciphertext."""
        families = []
        for kind in ("config", "static-role"):
            prefix = f"{mount.storage_prefix}{kind}/"

            def context_for(key: str, *, prefix: str = prefix, kind: str = kind) -> bytes:
                return cls._context(mount, kind, key[len(prefix) :])

            families.append(CiphertextFamily.whole_records(prefix, context_for))
        return families

    async def _read_secret(self, mount: MountEntry, kind: str, name: str) -> Doc | None:
        raw = await self._storage.get(self._key(mount, kind, name))
        if raw is None:
            return None
        plain = await self._barrier.decrypt(raw, context=self._context(mount, kind, name))
        try:
            doc = orjson.loads(plain)
        except orjson.JSONDecodeError:
            raise StorageError(f"a stored database {kind} is malformed") from None
        if not isinstance(doc, dict):
            raise StorageError(f"a stored database {kind} is malformed")
        return doc

    def _seal(self, mount: MountEntry, kind: str, name: str, doc: Doc) -> bytes:
        return self._barrier.encrypt(orjson.dumps(doc), context=self._context(mount, kind, name))

    async def _read_role(self, mount: MountEntry, name: str) -> Doc | None:
        raw = await self._storage.get(self._key(mount, "role", name))
        if raw is None:
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise StorageError("a stored database role is malformed") from None
        if not isinstance(doc, dict):
            raise StorageError("a stored database role is malformed")
        return doc

    def _lock(self, mount: MountEntry, kind: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((mount.uuid, kind, name), asyncio.Lock())

    # -- routing ------------------------------------------------------------------------

    @staticmethod
    def route(method: str, rest: str) -> str:
        operation = rest.partition("/")[0]
        return f"database:{operation if operation in _OPERATIONS else 'unknown'}"

    @staticmethod
    def read_only(method: str, rest: str) -> bool:
        """Reads change nothing, except ``creds/`` (it creates a user)."""
        return method in ("GET", "HEAD", "LIST") and not rest.startswith("creds/")

    def _require(self, call: Call, capability: str) -> None:
        require(self._authorizer, call.require_token(), call.path.rstrip("/"), capability)

    async def handle(self, call: Call, mount: MountEntry, rest: str) -> Reply:
        operation, _, name = rest.rstrip("/").partition("/")
        method = call.method
        if operation not in _OPERATIONS:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        if not name:
            if method == "LIST" and operation in ("config", "roles", "static-roles"):
                self._require(call, "list")
                kind = {"config": "config", "roles": "role", "static-roles": "static-role"}[
                    operation
                ]
                keys = [
                    k
                    for k in await self._storage.list(f"{mount.storage_prefix}{kind}/")
                    if not k.endswith("/")
                ]
                if not keys:
                    raise NotFoundError("")
                return self._reply({"keys": keys})
            raise (
                unsupported(call)
                if operation
                in (
                    "config",
                    "roles",
                    "static-roles",
                )
                else InvalidRequestError(f"missing name after {operation}/")
            )
        name = _name(
            name, what="connection" if operation in ("config", "reset", "rotate-root") else "role"
        )
        if method in ("POST", "PUT", "DELETE") and operation in _NO_CONTENT_WRITES:
            answer_at_commit(Reply.no_content())  # audited before the change commits
        if operation == "config":
            return await self._config(call, mount, name)
        if operation == "roles":
            return await self._role(call, mount, name)
        if operation == "static-roles":
            return await self._static_role(call, mount, name)
        if operation == "creds" and method in ("GET", "POST", "PUT"):
            self._require(call, "read" if method == "GET" else "update")
            return await self._creds(call, mount, name)
        if operation == "static-creds" and method == "GET":
            self._require(call, "read")
            return await self._static_creds(mount, name)
        if operation == "rotate-role" and method in ("POST", "PUT"):
            self._require(call, "update")
            await self._rotate_static(mount, name)
            return Reply.no_content()
        if operation == "rotate-root" and method in ("POST", "PUT"):
            self._require(call, "update")
            await self._rotate_root(mount, name)
            return Reply.no_content()
        if operation == "reset" and method in ("POST", "PUT"):
            self._require(call, "update")
            config = await self._config_doc(mount, name)
            await self._connection(config).verify()
            return Reply.no_content()
        raise unsupported(call)

    def _reply(self, data: Any) -> Reply:
        return Reply(data=data, mount_type="database")

    # -- connections ----------------------------------------------------------------------

    async def _config_doc(self, mount: MountEntry, name: str) -> Doc:
        doc = await self._read_secret(mount, "config", name)
        if doc is None:
            raise InvalidRequestError(f"database connection {name!r} does not exist")
        return doc

    @staticmethod
    def _connection(config: Doc, *, password: str | None = None) -> Connection:
        return Connection(
            url=str(config["connection_url"]),
            username=str(config.get("username") or ""),
            password=Sensitive(
                password if password is not None else str(config.get("password") or "")
            ),
        )

    @staticmethod
    def _describe_config(config: Doc) -> Doc:
        return {
            "allowed_roles": list(config.get("allowed_roles") or []),
            "connection_details": {
                "connection_url": config["connection_url"],
                "username": config.get("username") or "",
                "max_open_connections": config.get("max_open_connections", 4),
                "max_idle_connections": config.get("max_idle_connections", 0),
                "max_connection_lifetime": format_duration(
                    float(config.get("max_connection_lifetime", 0))
                ),
                "password_authentication": "password",
            },
            "password_policy": config.get("password_policy") or "",
            "plugin_name": config["plugin_name"],
            "plugin_version": "",
            "root_credentials_rotate_statements": list(
                config.get("root_rotation_statements") or []
            ),
            "verify_connection": bool(config.get("verify_connection", True)),
        }

    async def _config(self, call: Call, mount: MountEntry, name: str) -> Reply:
        key = self._key(mount, "config", name)
        if call.method == "GET":
            self._require(call, "read")
            stored = await self._read_secret(mount, "config", name)
            if stored is None:
                raise NotFoundError("")
            return self._reply(self._describe_config(stored))
        if call.method == "DELETE":
            self._require(call, "delete")
            async with self._storage.transaction() as tx:
                await tx.delete(key)
            return Reply.no_content()
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        body = call.json()
        _check_fields(body, _CONFIG_FIELDS)
        existing = await self._read_secret(mount, "config", name)
        self._require(call, "create" if existing is None else "update")
        config: Doc = dict(existing or {})
        plugin = body.get("plugin_name", config.get("plugin_name"))
        if plugin in (None, ""):
            raise InvalidRequestError("plugin_name is required: postgresql-database-plugin")
        if plugin != PLUGIN_NAME:
            raise InvalidRequestError(
                f"plugin_name {str(plugin)[:64]!r} is not available; this server has {PLUGIN_NAME}"
            )
        config["plugin_name"] = PLUGIN_NAME
        if "plugin_version" in body and body["plugin_version"] not in (None, ""):
            raise InvalidRequestError("plugin_version must be empty: the plugin is built in")
        if "connection_url" in body or "connection_url" not in config:
            url = _string(
                body.get("connection_url"),
                field="connection_url",
                limit=_MAX_URL,
                allow_empty=False,
            )
            config["connection_url"] = url.strip()
        for field in ("username", "password"):
            if field in body and body[field] is not None:
                config[field] = _string(body[field], field=field, limit=_MAX_SECRET)
        if "allowed_roles" in body:
            config["allowed_roles"] = _allowed_roles(body["allowed_roles"])
        config.setdefault("allowed_roles", [])
        if body.get("verify_connection") is not None:
            config["verify_connection"] = bool_param(
                body["verify_connection"], field="verify_connection"
            )
        config.setdefault("verify_connection", True)
        if "root_rotation_statements" in body:
            config["root_rotation_statements"] = _statements(
                body["root_rotation_statements"], field="root_rotation_statements"
            )
        if body.get("password_policy") not in (None, ""):
            policy = validate_policy_name(
                _string(body["password_policy"], field="password_policy", limit=128)
            )
            await self._passwords.get(policy)  # must exist
            config["password_policy"] = policy
        if body.get("max_open_connections") not in (None, ""):
            config["max_open_connections"] = _bounded(
                body["max_open_connections"], field="max_open_connections", minimum=1, maximum=1000
            )
        if body.get("max_idle_connections") not in (None, ""):
            config["max_idle_connections"] = _bounded(
                body["max_idle_connections"], field="max_idle_connections", minimum=0, maximum=1000
            )
        if body.get("max_connection_lifetime") not in (None, ""):
            config["max_connection_lifetime"] = _ttl(
                body["max_connection_lifetime"], field="max_connection_lifetime"
            )
        if body.get("password_authentication") not in (None, "", "password"):
            raise InvalidRequestError(
                "password_authentication must be 'password' (scram-sha-256 is not supported)"
            )
        connection = self._connection(config)
        connection.params()  # the URL must parse
        if config["verify_connection"]:
            try:
                await connection.verify()
            except (DatabaseError, StatementError) as exc:
                raise InvalidRequestError(
                    f"error creating database object: error verifying connection: {exc}"
                ) from None
        async with self._storage.transaction() as tx:
            await tx.put(key, self._seal(mount, "config", name, config))
        return Reply.no_content()

    async def _rotate_root(self, mount: MountEntry, name: str) -> None:
        async with self._lock(mount, "config", name):
            config = await self._config_doc(mount, name)
            username = str(config.get("username") or "")
            if not username or not config.get("password"):
                raise InvalidRequestError(
                    "rotate-root needs the connection's username and password to be configured"
                )
            policy = await self._passwords.get(str(config.get("password_policy") or ""))
            new_password = policy.generate()
            statements = list(config.get("root_rotation_statements") or []) or list(DEFAULT_ROTATE)
            await self._connection(config).run(
                statements,
                {"name": username, "password": new_password.reveal()},
                operation="rotate root credentials",
            )
            config["password"] = new_password.reveal()
            async with self._storage.transaction() as tx:
                await tx.put(
                    self._key(mount, "config", name), self._seal(mount, "config", name, config)
                )

    def _allowed(self, config: Doc, role: str) -> bool:
        return any(
            pattern == "*" or fnmatch.fnmatchcase(role, pattern)
            for pattern in config.get("allowed_roles") or []
        )

    # -- dynamic roles ----------------------------------------------------------------------

    @staticmethod
    def _describe_role(role: Doc) -> Doc:
        return {
            "db_name": role["db_name"],
            "creation_statements": list(role["creation_statements"]),
            "revocation_statements": list(role.get("revocation_statements") or []),
            "rollback_statements": list(role.get("rollback_statements") or []),
            "renew_statements": list(role.get("renew_statements") or []),
            "default_ttl": int(role.get("default_ttl", 0)),
            "max_ttl": int(role.get("max_ttl", 0)),
            "credential_type": "password",
            "credential_config": {},
        }

    async def _role(self, call: Call, mount: MountEntry, name: str) -> Reply:
        key = self._key(mount, "role", name)
        if call.method == "GET":
            self._require(call, "read")
            stored = await self._read_role(mount, name)
            if stored is None:
                raise NotFoundError("")
            return self._reply(self._describe_role(stored))
        if call.method == "DELETE":
            self._require(call, "delete")
            async with self._storage.transaction() as tx:
                await tx.delete(key)
            return Reply.no_content()
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        body = call.json()
        _check_fields(body, _ROLE_FIELDS)
        _credential_type(body)
        existing = await self._read_role(mount, name)
        self._require(call, "create" if existing is None else "update")
        role: Doc = dict(existing or {"v": 1})
        if "db_name" in body or "db_name" not in role:
            role["db_name"] = _name(
                _string(body.get("db_name"), field="db_name", limit=128, allow_empty=False),
                what="connection",
            )
        for field in (
            "creation_statements",
            "revocation_statements",
            "rollback_statements",
            "renew_statements",
        ):
            if field in body:
                role[field] = _statements(body[field], field=field)
            role.setdefault(field, [])
        if not role["creation_statements"]:
            raise InvalidRequestError("creation_statements are required")
        for field in ("default_ttl", "max_ttl"):
            if field in body:
                role[field] = _ttl(body[field], field=field)
            role.setdefault(field, 0)
        if role["max_ttl"] and role["default_ttl"] > role["max_ttl"]:
            raise InvalidRequestError("default_ttl must not be longer than max_ttl")
        async with self._storage.transaction() as tx:
            await tx.put(key, orjson.dumps(role))
        return Reply.no_content()

    async def _creds(self, call: Call, mount: MountEntry, name: str) -> Reply:
        role = await self._read_role(mount, name)
        if role is None:
            raise InvalidRequestError(f"unknown role: {name}")
        config = await self._config_doc(mount, str(role["db_name"]))
        if not self._allowed(config, name):
            raise InvalidRequestError(f'"{name}" is not an allowed role')
        token = call.require_token()
        now = self._clock()
        ttl, max_ttl = self._leases.ttls(
            mount, ttl=float(role.get("default_ttl", 0)), max_ttl=float(role.get("max_ttl", 0))
        )
        policy = await self._passwords.get(str(config.get("password_policy") or ""))
        username = _username(token.display_name, name, now)
        password = policy.generate()
        connection = self._connection(config)
        values = {
            "name": username,
            "password": password.reveal(),
            "expiration": expiration_text(now + ttl),
        }
        await connection.run(
            role["creation_statements"], values, operation="create user", pool=self._pool
        )
        lease_path = f"{mount.path}creds/{name}"
        lease_id = self._leases.new_lease_id(lease_path)
        # the answer is audited before the lease commits (a refused one drops the user below)
        reply = answer_at_commit(
            Reply(
                data={"username": username, "password": password.reveal()},
                mount_type="database",
                lease_id=lease_id,
                lease_duration=int(ttl),
                renewable=True,
            )
        )
        try:
            await self._leases.issue(
                lease_id=lease_id,
                mount=mount,
                path=lease_path,
                ttl=ttl,
                max_ttl=max_ttl,
                token=token,
                internal={"username": username, "role": name, "db_name": role["db_name"]},
                renewable=True,
                issue_time=now,
            )
        except BaseException:
            statements = role.get("revocation_statements") or list(DEFAULT_REVOKE)
            await connection.run(statements, {"name": username}, operation="roll back user")
            raise
        return reply

    # -- leases (LeaseHolder) ----------------------------------------------------------------

    async def revoke_lease(self, mount: MountEntry, lease: Lease) -> None:
        """Run the role's revocation statements (or drop the user) for a lease's user."""
        username = str(lease.internal.get("username") or "")
        if not username:
            return
        config = await self._config_doc(mount, str(lease.internal.get("db_name") or ""))
        role = await self._read_role(mount, str(lease.internal.get("role") or ""))
        statements = (role or {}).get("revocation_statements") or list(DEFAULT_REVOKE)
        await self._connection(config).run(
            statements, {"name": username}, operation="revoke user", pool=self._pool
        )

    async def renew_lease(self, mount: MountEntry, lease: Lease, expire_time: float) -> None:
        """Run the role's renew statements (default ``ALTER ROLE ... VALID UNTIL``)."""
        username = str(lease.internal.get("username") or "")
        if not username:
            return
        config = await self._config_doc(mount, str(lease.internal.get("db_name") or ""))
        role = await self._read_role(mount, str(lease.internal.get("role") or ""))
        statements = (role or {}).get("renew_statements") or list(DEFAULT_RENEW)
        await self._connection(config).run(
            statements,
            {"name": username, "expiration": expiration_text(expire_time)},
            operation="renew user",
            pool=self._pool,
        )

    # -- static roles ------------------------------------------------------------------------

    @staticmethod
    def _describe_static(role: Doc, now: float) -> Doc:
        return {
            "db_name": role["db_name"],
            "username": role["username"],
            "rotation_period": int(role["rotation_period"]),
            "rotation_statements": list(role.get("rotation_statements") or []),
            "last_vault_rotation": rfc3339(role["last_rotation"])
            if role.get("last_rotation")
            else None,
            "ttl": max(0, round(float(role.get("next_rotation", now)) - now)),
            "credential_type": "password",
            "credential_config": {},
        }

    async def _static_role(self, call: Call, mount: MountEntry, name: str) -> Reply:
        if call.method == "GET":
            self._require(call, "read")
            stored = await self._read_secret(mount, "static-role", name)
            if stored is None:
                raise NotFoundError("")
            return self._reply(self._describe_static(stored, self._clock()))
        if call.method == "DELETE":
            self._require(call, "delete")
            async with self._lock(mount, "static-role", name), self._storage.transaction() as tx:
                raw = await tx.get(self._key(mount, "static-role", name), for_update=True)
                if raw is not None:
                    await tx.delete(self._key(mount, "static-role", name))
            return Reply.no_content()
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        body = call.json()
        _check_fields(body, _STATIC_FIELDS)
        _credential_type(body)
        existing = await self._read_secret(mount, "static-role", name)
        self._require(call, "create" if existing is None else "update")
        role: Doc = dict(existing or {"v": 1})
        if "db_name" in body or "db_name" not in role:
            role["db_name"] = _name(
                _string(body.get("db_name"), field="db_name", limit=128, allow_empty=False),
                what="connection",
            )
        if "username" in body or "username" not in role:
            username = _string(body.get("username"), field="username", limit=63, allow_empty=False)
            if existing is not None and username != existing["username"]:
                raise InvalidRequestError("cannot update static role username")
            if not _DB_USER.fullmatch(username):
                raise InvalidRequestError(
                    "username must be 1-63 letters, digits, '_', '.', '@' or '-', "
                    "starting with a letter or '_'"
                )
            role["username"] = username
        if "rotation_period" in body or "rotation_period" not in role:
            if body.get("rotation_period") in (None, ""):
                raise InvalidRequestError("rotation_period is required")
            period = parse_duration(body["rotation_period"], field="rotation_period")
            if period < MIN_ROTATION_PERIOD:
                raise InvalidRequestError(
                    f"rotation_period must be {int(MIN_ROTATION_PERIOD)} seconds or more"
                )
            role["rotation_period"] = int(period)
        if "rotation_statements" in body:
            role["rotation_statements"] = _statements(
                body["rotation_statements"], field="rotation_statements"
            )
        role.setdefault("rotation_statements", [])
        config = await self._config_doc(mount, role["db_name"])
        if not self._allowed(config, name):
            raise InvalidRequestError(f'"{name}" is not an allowed role')
        async with self._lock(mount, "static-role", name):
            if existing is None:
                await self._set_static_password(mount, name, role, config)
            else:
                old_next = float(existing.get("next_rotation", 0))
                role["next_rotation"] = float(existing.get("last_rotation", self._clock())) + float(
                    role["rotation_period"]
                )
                async with self._storage.transaction() as tx:
                    await tx.put(
                        self._key(mount, "static-role", name),
                        self._seal(mount, "static-role", name, role),
                    )
                    await self._timers.cancel(tx, old_next, "db-static", f"{mount.uuid}/{name}")
                    await self._timers.schedule(
                        tx, role["next_rotation"], "db-static", f"{mount.uuid}/{name}"
                    )
        return Reply.no_content()

    async def _set_static_password(
        self, mount: MountEntry, name: str, role: Doc, config: Doc
    ) -> None:
        """Give the static user a new password in the database, then store it and the next rotation."""
        policy = await self._passwords.get(str(config.get("password_policy") or ""))
        new_password = policy.generate()
        statements = list(role.get("rotation_statements") or []) or list(DEFAULT_ROTATE)
        await self._connection(config).run(
            statements,
            {"name": role["username"], "password": new_password.reveal()},
            operation="rotate static role password",
            pool=self._pool,
        )
        now = self._clock()
        old_next = role.get("next_rotation")
        role["password"] = new_password.reveal()
        role["last_rotation"] = now
        role["next_rotation"] = now + float(role["rotation_period"])
        ref = f"{mount.uuid}/{name}"
        async with self._storage.transaction() as tx:
            await tx.put(
                self._key(mount, "static-role", name), self._seal(mount, "static-role", name, role)
            )
            if old_next is not None:
                await self._timers.cancel(tx, float(old_next), "db-static", ref)
            await self._timers.schedule(tx, role["next_rotation"], "db-static", ref)

    async def _rotate_static(self, mount: MountEntry, name: str) -> None:
        async with self._lock(mount, "static-role", name):
            role = await self._read_secret(mount, "static-role", name)
            if role is None:
                raise InvalidRequestError(f"unknown static role: {name}")
            config = await self._config_doc(mount, role["db_name"])
            await self._set_static_password(mount, name, role, config)

    async def _static_creds(self, mount: MountEntry, name: str) -> Reply:
        role = await self._read_secret(mount, "static-role", name)
        if role is None:
            raise InvalidRequestError(f"unknown static role: {name}")
        now = self._clock()
        return self._reply(
            {
                "username": role["username"],
                "password": role["password"],
                "last_vault_rotation": rfc3339(role["last_rotation"]),
                "rotation_period": int(role["rotation_period"]),
                "ttl": max(0, round(float(role["next_rotation"]) - now)),
            }
        )

    async def _scheduled_rotation(self, ref: str) -> float | None:
        """Timer ``db-static``: rotate when due (the role may have been rotated or changed since)."""
        mount_uuid, _, name = ref.partition("/")
        mount = next((m for m in self._mounts.entries() if m.uuid == mount_uuid), None)
        if mount is None or mount.type != self.mount_type:
            return None
        role = await self._read_secret(mount, "static-role", name)
        if role is None:
            return None
        due = float(role.get("next_rotation", 0))
        if due > self._clock() + 0.001:
            return due
        await self._rotate_static(mount, name)
        return None
