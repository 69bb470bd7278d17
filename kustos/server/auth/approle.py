"""The ``approle`` auth method: machines (CI pipelines) log in with a role id and a secret id.

Endpoints under ``auth/<mount>/`` (Vault's names and shapes): ``role/<name>``
(``bind_secret_id``, ``secret_id_ttl``, ``secret_id_num_uses`` and the
``token_*`` fields), ``LIST role``, ``role/<name>/role-id`` (GET, or POST a
custom one), ``role/<name>/secret-id`` (POST: a new secret id, shown once;
LIST: accessors), ``role/<name>/custom-secret-id``,
``role/<name>/secret-id/lookup|destroy``,
``role/<name>/secret-id-accessor/lookup|destroy`` and ``login``
``{role_id, secret_id}`` (no token needed).

A secret id is never stored: its entry lives under an HMAC-SHA256 of it,
keyed with a random per-role key kept in the (encrypted) role record, and
the stored MAC is compared with :func:`hmac.compare_digest`. Use counts are
decremented in the login's transaction (the last use deletes the entry) and
expiry is checked against the server clock. Every login failure answers
the same ``invalid role or secret ID``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field, replace
from typing import Any, Final, NoReturn

import orjson

from kustos.errors import InvalidRequestError, NotFoundError
from kustos.server.auth import MethodDeps
from kustos.server.auth.issuing import TokenSettings, issue_login_token, str_field
from kustos.server.auth.mounts import AuthMount
from kustos.server.auth.records import Records
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.params import bool_param, int_param
from kustos.server.times import parse_duration, rfc3339
from kustos.store.base import Transaction

__all__ = ["INVALID_CREDENTIALS", "MAX_NUM_USES", "AppRoleMethod"]

INVALID_CREDENTIALS: Final = "invalid role or secret ID"
_ROLE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._@-]{0,127}")
_MAX_ID: Final = 512
MAX_NUM_USES: Final = 2**31 - 1
"""The largest ``secret_id_num_uses`` / ``num_uses`` accepted."""
_MAX_METADATA_KEYS: Final = 64
_MAX_METADATA_TEXT: Final = 512


def _not_found() -> NoReturn:
    raise NotFoundError("")


def _role_id_key(role_id: str) -> str:
    return "role-id/" + hashlib.sha256(role_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Role:
    role_id: str
    hmac_key: str
    bind_secret_id: bool = True
    secret_id_ttl: float = 0.0
    secret_id_num_uses: int = 0
    token: TokenSettings = field(default_factory=TokenSettings)

    def to_doc(self) -> dict[str, Any]:
        return {
            "role_id": self.role_id,
            "hmac_key": self.hmac_key,
            "bind_secret_id": self.bind_secret_id,
            "secret_id_ttl": self.secret_id_ttl,
            "secret_id_num_uses": self.secret_id_num_uses,
            "token": self.token.to_doc(),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> _Role:
        return cls(
            role_id=str(doc["role_id"]),
            hmac_key=str(doc["hmac_key"]),
            bind_secret_id=bool(doc.get("bind_secret_id", True)),
            secret_id_ttl=float(doc.get("secret_id_ttl", 0.0)),
            secret_id_num_uses=int(doc.get("secret_id_num_uses", 0)),
            token=TokenSettings.from_doc(doc.get("token", {})),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "bind_secret_id": self.bind_secret_id,
            "secret_id_ttl": int(self.secret_id_ttl),
            "secret_id_num_uses": self.secret_id_num_uses,
            "secret_id_bound_cidrs": None,
            "local_secret_ids": False,
            **self.token.describe(),
        }

    def mac(self, secret_id: str) -> str:
        return hmac.new(
            bytes.fromhex(self.hmac_key), secret_id.encode("utf-8"), hashlib.sha256
        ).hexdigest()


class AppRoleMethod:
    """Serves every mount of type ``approle``."""

    def __init__(self, deps: MethodDeps) -> None:
        self._deps = deps

    @staticmethod
    def route(rest: str) -> str:
        parts = rest.rstrip("/").split("/")
        if parts[0] in ("login", "role", "") and len(parts) == 1:
            return parts[0] or "root"
        if parts[0] == "role" and len(parts) >= 2:
            return "/".join(["role", ":name", *parts[2:4]])
        return "unknown"

    async def handle(self, call: Call, mount: AuthMount, rest: str) -> Reply:
        parts = rest.rstrip("/").split("/")
        records = self._deps.records(mount)
        if parts == ["login"]:
            return await self._login(call, mount, records)
        if parts == ["role"]:
            if call.method != "LIST":
                raise unsupported(call)
            self._deps.require(call, "list")
            names = [n for n in await records.list("role/") if not n.endswith("/")]
            return Reply(data={"keys": names}) if names else _not_found()
        if parts[0] == "role" and len(parts) >= 2:
            name = parts[1].lower()
            if not _ROLE_NAME.fullmatch(name):
                raise InvalidRequestError(
                    "role name must be 1-128 letters, digits, '.', '_', '@' or '-'"
                )
            sub = "/".join(parts[2:])
            if sub == "":
                return await self._role(call, records, name)
            if sub == "role-id":
                return await self._role_id(call, records, name)
            if sub in ("secret-id", "custom-secret-id"):
                return await self._secret_id(call, records, name, custom=sub == "custom-secret-id")
            if sub in (
                "secret-id/lookup",
                "secret-id/destroy",
                "secret-id-accessor/lookup",
                "secret-id-accessor/destroy",
            ):
                return await self._secret_id_manage(call, records, name, sub)
        raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')

    # -- roles -------------------------------------------------------------------------------

    async def _load_role(
        self, records: Records, name: str, *, tx: Transaction | None = None
    ) -> _Role:
        doc = await records.get(f"role/{name}", tx=tx)
        if doc is None:
            raise InvalidRequestError(f'role "{name}" does not exist')
        return _Role.from_doc(doc)

    async def _role(self, call: Call, records: Records, name: str) -> Reply:
        key = f"role/{name}"
        if call.method == "GET":
            self._deps.require(call, "read")
            doc = await records.get(key)
            return _not_found() if doc is None else Reply(data=_Role.from_doc(doc).describe())
        if call.method == "DELETE":
            self._deps.require(call, "delete")
            done = answer_at_commit(Reply.no_content())
            async with records.transaction() as tx:
                doc = await records.get(key, tx=tx, for_update=True)
                if doc is not None:
                    role = _Role.from_doc(doc)
                    await records.delete(_role_id_key(role.role_id), tx=tx)
                    await records.delete_prefix(f"secret-id/{name}/", tx=tx)
                    await records.delete_prefix(f"secret-id-accessor/{name}/", tx=tx)
                    await records.delete(key, tx=tx)
            return done
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        body = call.json()
        done = answer_at_commit(Reply.no_content())
        async with records.transaction() as tx:
            current_doc = await records.get(key, tx=tx, for_update=True)
            self._deps.require(call, "create" if current_doc is None else "update")
            if current_doc is None:
                current = _Role(role_id=self._deps.new_id(), hmac_key=secrets.token_hex(32))
            else:
                current = _Role.from_doc(current_doc)
            role = _parse_role(body, current)
            if "role_id" in body:
                role = replace(role, role_id=_check_id(str_field(body, "role_id"), field="role_id"))
            if role.role_id != current.role_id or current_doc is None:
                await self._claim_role_id(records, tx, role.role_id, name)
                if current_doc is not None:
                    await records.delete(_role_id_key(current.role_id), tx=tx)
            await records.put(key, role.to_doc(), tx=tx)
        return done

    async def _claim_role_id(
        self, records: Records, tx: Transaction, role_id: str, name: str
    ) -> None:
        index = _role_id_key(role_id)
        owner = await records.get(index, tx=tx, for_update=True)
        if owner is not None and owner.get("role") != name:
            raise InvalidRequestError("role_id already in use")
        await records.put(index, {"role": name}, tx=tx)

    async def _role_id(self, call: Call, records: Records, name: str) -> Reply:
        if call.method == "GET":
            self._deps.require(call, "read")
            return Reply(data={"role_id": (await self._load_role(records, name)).role_id})
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._deps.require(call, "update")
        role_id = _check_id(str_field(call.json(), "role_id"), field="role_id")
        done = answer_at_commit(Reply.no_content())
        async with records.transaction() as tx:
            role = await self._load_role(records, name, tx=tx)
            if role.role_id != role_id:
                await self._claim_role_id(records, tx, role_id, name)
                await records.delete(_role_id_key(role.role_id), tx=tx)
                await records.put(f"role/{name}", replace(role, role_id=role_id).to_doc(), tx=tx)
        return done

    # -- secret ids ----------------------------------------------------------------------------

    async def _secret_id(self, call: Call, records: Records, name: str, *, custom: bool) -> Reply:
        if call.method == "LIST" and not custom:
            self._deps.require(call, "list")
            await self._load_role(records, name)
            accessors = [
                a for a in await records.list(f"secret-id-accessor/{name}/") if not a.endswith("/")
            ]
            return Reply(data={"keys": accessors}) if accessors else _not_found()
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._deps.require(call, "update")
        body = call.json()
        secret_id = (
            _check_id(str_field(body, "secret_id"), field="secret_id")
            if custom
            else self._deps.new_id()
        )
        metadata = _metadata(body.get("metadata"))
        now = self._deps.clock()
        accessor = self._deps.new_id()
        async with records.transaction() as tx:
            role = await self._load_role(records, name, tx=tx)
            ttl = role.secret_id_ttl
            if body.get("ttl") not in (None, "", 0, "0"):
                requested = parse_duration(body["ttl"], field="ttl")
                ttl = min(requested, ttl) if ttl else requested
            uses = role.secret_id_num_uses
            if body.get("num_uses") not in (None, ""):
                requested_uses = int_param(body["num_uses"], field="num_uses", maximum=MAX_NUM_USES)
                if uses and (requested_uses == 0 or requested_uses > uses):
                    raise InvalidRequestError(
                        "num_uses cannot be higher than the role's secret_id_num_uses"
                    )
                uses = requested_uses or uses
            mac = role.mac(secret_id)
            entry_key = f"secret-id/{name}/{mac}"
            if await records.get(entry_key, tx=tx, for_update=True) is not None:
                raise InvalidRequestError("secret_id already exists")
            await records.put(
                entry_key,
                {
                    "mac": mac,
                    "accessor": accessor,
                    "creation_time": now,
                    "expiration_time": now + ttl if ttl else None,
                    "num_uses": uses,
                    "metadata": metadata,
                },
                tx=tx,
            )
            await records.put(f"secret-id-accessor/{name}/{accessor}", {"mac": mac}, tx=tx)
            reply = answer_at_commit(
                Reply(
                    data={
                        "secret_id": secret_id,
                        "secret_id_accessor": accessor,
                        "secret_id_ttl": int(ttl),
                        "secret_id_num_uses": uses,
                    }
                )
            )
        return reply

    async def _secret_id_manage(self, call: Call, records: Records, name: str, sub: str) -> Reply:
        if call.method not in ("POST", "PUT", "DELETE"):
            raise unsupported(call)
        destroy = sub.endswith("destroy")
        self._deps.require(call, "update" if not destroy or call.method != "DELETE" else "delete")
        body = call.json()
        async with records.transaction() as tx:
            role = await self._load_role(records, name, tx=tx)
            if sub.startswith("secret-id-accessor"):
                accessor = _check_id(
                    str_field(body, "secret_id_accessor"), field="secret_id_accessor"
                )
                pointer = await records.get(
                    f"secret-id-accessor/{name}/{accessor}", tx=tx, for_update=True
                )
                if pointer is None:
                    raise InvalidRequestError(
                        f"failed to find accessor entry for secret_id_accessor: {accessor!r}"
                    )
                mac = str(pointer.get("mac", ""))
            else:
                mac = role.mac(_check_id(str_field(body, "secret_id"), field="secret_id"))
            entry = await records.get(f"secret-id/{name}/{mac}", tx=tx, for_update=True)
            if entry is None:
                if destroy:
                    return Reply.no_content()
                _not_found()
            if destroy:
                await records.delete(f"secret-id/{name}/{mac}", tx=tx)
                await records.delete(f"secret-id-accessor/{name}/{entry['accessor']}", tx=tx)
                return answer_at_commit(Reply.no_content())
        expiration = entry.get("expiration_time")
        return Reply(
            data={
                "secret_id_accessor": entry["accessor"],
                "creation_time": rfc3339(float(entry["creation_time"])),
                "expiration_time": rfc3339(float(expiration))
                if expiration
                else "0001-01-01T00:00:00Z",
                "secret_id_num_uses": int(entry.get("num_uses", 0)),
                "secret_id_ttl": int(float(expiration) - float(entry["creation_time"]))
                if expiration
                else 0,
                "metadata": entry.get("metadata") or {},
                "cidr_list": [],
                "token_bound_cidrs": [],
            }
        )

    # -- login ------------------------------------------------------------------------------------

    async def _login(self, call: Call, mount: AuthMount, records: Records) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        body = call.json()
        role_id = str_field(body, "role_id").strip()
        secret_id = str_field(body, "secret_id").strip()
        if not role_id:
            raise InvalidRequestError("missing role_id")
        if len(role_id) > _MAX_ID or len(secret_id) > _MAX_ID:
            raise InvalidRequestError(INVALID_CREDENTIALS)
        owner = await records.get(_role_id_key(role_id))
        if owner is None:
            raise InvalidRequestError(INVALID_CREDENTIALS)
        name = str(owner.get("role", ""))
        now = self._deps.clock()
        metadata: dict[str, str] = {"role_name": name}
        expired = False
        async with records.transaction() as tx:
            role_doc = await records.get(f"role/{name}", tx=tx)
            if role_doc is None:
                raise InvalidRequestError(INVALID_CREDENTIALS)
            role = _Role.from_doc(role_doc)
            if not hmac.compare_digest(role.role_id.encode("utf-8"), role_id.encode("utf-8")):
                raise InvalidRequestError(INVALID_CREDENTIALS)
            if role.bind_secret_id:
                if not secret_id:
                    raise InvalidRequestError("missing secret_id")
                mac = role.mac(secret_id)
                entry_key = f"secret-id/{name}/{mac}"
                entry = await records.get(entry_key, tx=tx, for_update=True)
                if entry is None or not hmac.compare_digest(
                    str(entry.get("mac", "")).encode(), mac.encode()
                ):
                    raise InvalidRequestError(INVALID_CREDENTIALS)
                expiration = entry.get("expiration_time")
                uses = int(entry.get("num_uses", 0))
                accessor_key = f"secret-id-accessor/{name}/{entry['accessor']}"
                if expiration is not None and now >= float(expiration):
                    # refused in its own transaction: an expired entry is cleaned up, not counted
                    await records.delete(entry_key, tx=tx)
                    await records.delete(accessor_key, tx=tx)
                    expired = True
                else:
                    if uses == 1:
                        await records.delete(entry_key, tx=tx)
                        await records.delete(accessor_key, tx=tx)
                    elif uses > 1:
                        await records.put(entry_key, {**entry, "num_uses": uses - 1}, tx=tx)
                    metadata.update(
                        {str(k): str(v) for k, v in (entry.get("metadata") or {}).items()}
                    )
            if not expired:  # the use is counted and the token issued in one transaction
                auth = await issue_login_token(
                    tokens=self._deps.tokens,
                    mount=mount,
                    settings=role.token,
                    display_name=None,
                    metadata=metadata,
                    now=now,
                    tx=tx,
                )
                reply = answer_at_commit(Reply(auth=auth))
        if expired:
            raise InvalidRequestError(INVALID_CREDENTIALS)
        return reply


def _check_id(value: str, *, field: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidRequestError(f"missing {field}")
    if len(value) > _MAX_ID or "/" in value or any(ord(c) < 32 for c in value):
        raise InvalidRequestError(
            f"{field} must be at most {_MAX_ID} printable characters without '/'"
        )
    return value


def _metadata(raw: Any) -> dict[str, str]:
    if raw in (None, ""):
        return {}
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequestError("metadata must be a JSON object of string values") from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise InvalidRequestError("metadata must be a JSON object of string values")
    if len(raw) > _MAX_METADATA_KEYS:
        raise InvalidRequestError(f"metadata has more than {_MAX_METADATA_KEYS} keys")
    if any(len(k) > _MAX_METADATA_TEXT or len(v) > _MAX_METADATA_TEXT for k, v in raw.items()):
        raise InvalidRequestError(
            f"metadata keys and values must be at most {_MAX_METADATA_TEXT} characters"
        )
    return {str(k): v for k, v in raw.items()}


def _parse_role(body: dict[str, Any], current: _Role) -> _Role:
    bind = current.bind_secret_id
    if body.get("bind_secret_id") is not None:
        bind = bool_param(body["bind_secret_id"], field="bind_secret_id")
    if not bind and not body.get("secret_id_bound_cidrs") and not body.get("token_bound_cidrs"):
        raise InvalidRequestError(
            "bind_secret_id=false needs secret_id_bound_cidrs or token_bound_cidrs, which this server does not support; "
            "keep bind_secret_id=true"
        )
    if body.get("secret_id_bound_cidrs") or body.get("token_bound_cidrs"):
        raise InvalidRequestError("secret_id_bound_cidrs and token_bound_cidrs are not supported")
    ttl = current.secret_id_ttl
    if body.get("secret_id_ttl") not in (None, ""):
        ttl = parse_duration(body["secret_id_ttl"], field="secret_id_ttl")
    uses = current.secret_id_num_uses
    if body.get("secret_id_num_uses") not in (None, ""):
        uses = int_param(
            body["secret_id_num_uses"], field="secret_id_num_uses", maximum=MAX_NUM_USES
        )
    return replace(
        current,
        bind_secret_id=bind,
        secret_id_ttl=ttl,
        secret_id_num_uses=uses,
        token=current.token.updated(body),
    )
