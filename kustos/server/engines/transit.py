"""The transit secrets engine ("encryption as a service"), with Vault's paths, fields and ciphertexts.

Callers send data, get ``vault:v<N>:...`` ciphertext back and keep it
themselves; the server keeps only named keys. Clients of Vault's transit
API (hvac, sops's ``hc_vault`` key source, the Kustos CLI) work unchanged.
Under a mount (``transit/``)::

    keys                      LIST
    keys/<name>               POST (create), GET (key info), DELETE (needs deletion_allowed)
    keys/<name>/config        POST (min_decryption_version, min_encryption_version,
                                    deletion_allowed, auto_rotate_period)
    keys/<name>/rotate        POST
    encrypt/<name>            POST plaintext (base64), context, key_version, batch_input
    decrypt/<name>            POST ciphertext, context, batch_input
    rewrap/<name>             POST ciphertext, context, key_version, batch_input
    datakey/plaintext/<name>  POST context, bits       (also datakey/wrapped/<name>)
    hmac/<name>[/<algorithm>] POST input, key_version, algorithm
    verify/<name>[/<algorithm>] POST input, hmac

Storage, under the mount's ``logical/<uuid>/``: ``policy/<name>`` (JSON:
type, settings and version creation times; no key material) and
``key/<name>@<version>`` (the version's :class:`~kustos.crypto.transit.KeyMaterial`,
encrypted by the barrier with context ``("kustos/transit", mount uuid, name,
version)``, so key material is never stored in plaintext and a key record
copied to another name, version or mount does not decrypt).

Every endpoint asks the one authorizer, with Vault's capabilities:
``create``/``update`` on ``keys/<name>`` (create), ``read``, ``list``,
``delete``; ``update`` on encrypt/decrypt/rewrap/datakey/hmac/verify/rotate/
config (``create`` too when encrypt creates a missing key, like Vault's upsert).
A key with ``auto_rotate_period`` rotates when it is next used for encryption
after the period has passed since its latest version.
A ciphertext that fails to verify is answered 400 ``cipher: message
authentication failed`` and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from kustos.crypto import transit as tc
from kustos.crypto.envelope import context as envelope_context
from kustos.errors import DecryptionError, InvalidRequestError, KustosError, NotFoundError
from kustos.server.access import Authorizer, require
from kustos.server.barrier import Barrier, CiphertextFamily
from kustos.server.caching import RecordCache
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.mounts import MountEntry
from kustos.server.params import (
    bool_param,
    duration_param,
    enum_param,
    int_param,
    status_code_param,
)
from kustos.server.times import Clock
from kustos.store.base import StorageBackend, Transaction

__all__ = ["AUTH_FAILED", "MAX_BATCH", "TransitEngine", "key_info"]

AUTH_FAILED: Final = "cipher: message authentication failed"
"""Vault's answer to a ciphertext that does not verify (the only thing a caller learns)."""
MAX_BATCH: Final = 10_000
"""Items accepted in one ``batch_input``."""

_CONTEXT_LABEL: Final = "kustos/transit"
_NAME: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_])?")
_OPERATIONS: Final = ("keys", "encrypt", "decrypt", "rewrap", "datakey", "hmac", "verify")
_DERIVED_WITHOUT_CONTEXT: Final = (
    "missing 'context' for key derivation; the key was created using a derived key, which means "
    "additional, per-request information must be included in order to perform operations with the key"
)
_TOO_OLD: Final = "ciphertext or signature version is disallowed by policy (too old)"
_DATAKEY_BITS: Final = (128, 256, 512)
_MAX_KEY_VERSION: Final = 2**31 - 1
_CONTEXT_CACHE: Final = 65_536

Memo = dict[int, tc.KeyMaterial]
"""Key versions unwrapped during one request (a batch unwraps each version once)."""

Policy = dict[str, Any]


# -- pure helpers ------------------------------------------------------------------------


def _key_name(name: str) -> str:
    if not name:
        raise InvalidRequestError("missing key name")
    if not _NAME.fullmatch(name):
        raise InvalidRequestError(
            f"invalid key name {name!r}: 1-128 letters, digits, '_', '-' or '.', "
            "starting and ending with a letter, digit or '_'"
        )
    return name


def _b64(value: object, *, field: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"failed to base64-decode {field}") from None


def _b64text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _new_policy(name: str, *, key_type: str, derived: bool, now: float) -> Policy:
    return {
        "v": 1,
        "name": name,
        "type": key_type,
        "derived": derived,
        "kdf": tc.KDF if derived else "",
        "deletion_allowed": False,
        "exportable": False,
        "allow_plaintext_backup": False,
        "min_decryption_version": 1,
        "min_encryption_version": 0,
        "latest_version": 0,
        "auto_rotate_period": 0,
        "versions": {},
        "created": now,
    }


def _parse_policy(raw: bytes) -> Policy:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DecryptionError() from None
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise DecryptionError()
    return doc


def key_info(policy: Mapping[str, Any]) -> dict[str, Any]:
    """A key as Vault's ``GET keys/<name>`` shows it (never key material)."""
    info: dict[str, Any] = {
        "name": policy["name"],
        "type": policy["type"],
        "derived": policy["derived"],
        "deletion_allowed": policy["deletion_allowed"],
        "exportable": False,
        "allow_plaintext_backup": False,
        "imported_key": False,
        "convergent_encryption": False,
        "keys": {v: int(ts) for v, ts in policy["versions"].items()},
        "latest_version": policy["latest_version"],
        "min_available_version": 0,
        "min_decryption_version": policy["min_decryption_version"],
        "min_encryption_version": policy["min_encryption_version"],
        "auto_rotate_period": policy["auto_rotate_period"],
        "supports_encryption": True,
        "supports_decryption": True,
        "supports_derivation": True,
        "supports_signing": False,
    }
    if policy["derived"]:
        info["kdf"] = policy["kdf"]
    return info


class _ItemError(KustosError):
    """One batch item failed; its message goes into the item's ``error``."""


class TransitEngine:
    """Serves every transit mount; one instance per server."""

    mount_type: Final = "transit"

    def __init__(
        self,
        *,
        storage: StorageBackend,
        barrier: Barrier,
        cache: RecordCache,
        clock: Clock,
        authorizer: Authorizer,
        randbytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._storage = storage
        self._barrier = barrier
        self._cache = cache
        self._clock = clock
        self._authorizer = authorizer
        self._randbytes = randbytes
        self._contexts: dict[tuple[str, str, int], bytes] = {}

    # -- storage layout ---------------------------------------------------------------------

    @staticmethod
    def _policy_key(mount: MountEntry, name: str) -> str:
        return f"{mount.storage_prefix}policy/{name}"

    @staticmethod
    def _material_key(mount: MountEntry, name: str, version: int) -> str:
        return f"{mount.storage_prefix}key/{name}@{version}"

    @staticmethod
    def _encode_context(mount: MountEntry, name: str, version: int) -> bytes:
        return envelope_context(_CONTEXT_LABEL, mount.uuid, name, version)

    def _context(self, mount: MountEntry, name: str, version: int) -> bytes:
        """The barrier context of one key version (memoized: it is on every request's path)."""
        key = (mount.uuid, name, version)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._encode_context(mount, name, version)
            if len(self._contexts) >= _CONTEXT_CACHE:
                self._contexts.clear()
            self._contexts[key] = ctx
        return ctx

    @classmethod
    def ciphertext_families(cls, mount: MountEntry) -> list[CiphertextFamily]:
        """Key material records (``key/<name>@<version>``), each one barrier ciphertext."""
        prefix = f"{mount.storage_prefix}key/"

        def context_for(key: str) -> bytes | None:
            name, sep, version = key[len(prefix) :].rpartition("@")
            if not sep or not name or not version.isdigit():
                return None
            return cls._encode_context(mount, name, int(version))

        return [CiphertextFamily.whole_records(prefix, context_for)]

    # -- routing ------------------------------------------------------------------------------

    @staticmethod
    def read_only(method: str, rest: str) -> bool:
        """Conservatively no: transit's reads are rare, and every call is audited entry by entry."""
        return False

    @staticmethod
    def route(method: str, rest: str) -> str:
        """The route template for metrics and logs (never the key name)."""
        parts = rest.split("/")
        operation = parts[0] if parts[0] in _OPERATIONS else "unknown"
        if operation == "keys" and len(parts) == 3 and parts[2] in ("config", "rotate"):
            operation = f"keys/{parts[2]}"
        return f"transit:{operation}"

    async def handle(self, call: Call, mount: MountEntry, rest: str) -> Reply:
        """Answer one request under ``mount``; ``rest`` is the path inside the mount."""
        parts = rest.rstrip("/").split("/") if rest.rstrip("/") else [""]
        operation, args = parts[0], parts[1:]
        method = call.method
        if operation == "keys":
            if not args:
                if method == "LIST":
                    return await self._list(call, mount)
                raise unsupported(call)
            name = _key_name(args[0])
            if len(args) == 1:
                if method in ("POST", "PUT"):
                    return await self._create(call, mount, name)
                if method == "GET":
                    return await self._read(call, mount, name)
                if method == "DELETE":
                    return await self._delete(call, mount, name)
                raise unsupported(call)
            if len(args) == 2 and args[1] in ("config", "rotate"):
                if method not in ("POST", "PUT"):
                    raise unsupported(call)
                if args[1] == "config":
                    return await self._config(call, mount, name)
                return await self._rotate(call, mount, name)
        elif operation in ("encrypt", "decrypt", "rewrap") and len(args) == 1:
            if method not in ("POST", "PUT"):
                raise unsupported(call)
            name = _key_name(args[0])
            if operation == "encrypt":
                return await self._encrypt(call, mount, name)
            if operation == "decrypt":
                return await self._decrypt(call, mount, name)
            return await self._rewrap(call, mount, name)
        elif operation == "datakey" and len(args) == 2:
            if method not in ("POST", "PUT"):
                raise unsupported(call)
            if args[0] not in ("plaintext", "wrapped"):
                raise InvalidRequestError(
                    f"invalid data key type {args[0]!r}: use plaintext or wrapped"
                )
            return await self._datakey(
                call, mount, _key_name(args[1]), plaintext=args[0] == "plaintext"
            )
        elif operation in ("hmac", "verify") and len(args) in (1, 2):
            if method not in ("POST", "PUT"):
                raise unsupported(call)
            name = _key_name(args[0])
            algorithm = args[1] if len(args) == 2 else None
            if operation == "hmac":
                return await self._hmac(call, mount, name, algorithm)
            return await self._verify(call, mount, name, algorithm)
        raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')

    def _require(self, call: Call, capability: str) -> None:
        require(self._authorizer, call.require_token(), call.path, capability)

    @staticmethod
    def _reply(data: Any, *, status: int = 200, warnings: list[str] | None = None) -> Reply:
        return Reply(status=status, data=data, mount_type="transit", warnings=warnings)

    # -- keys -----------------------------------------------------------------------------------

    async def _load_policy(self, mount: MountEntry, name: str) -> Policy | None:
        return await self._cache.get(self._policy_key(mount, name), _parse_policy)

    async def _policy(self, mount: MountEntry, name: str) -> Policy:
        policy = await self._load_policy(mount, name)
        if policy is None:
            raise InvalidRequestError("encryption key not found")
        return policy

    async def _material(
        self, mount: MountEntry, name: str, version: int, memo: Memo
    ) -> tc.KeyMaterial:
        known = memo.get(version)
        if known is not None:
            return known
        blob = await self._cache.get(self._material_key(mount, name, version), bytes)
        if blob is None:
            raise DecryptionError()  # a listed version without its key: storage was tampered with
        plain = await self._barrier.decrypt(blob, context=self._context(mount, name, version))
        material = memo[version] = tc.KeyMaterial.from_bytes(plain)
        return material

    async def _add_version(
        self, tx: Transaction, touched: list[str], mount: MountEntry, policy: Policy
    ) -> tc.KeyMaterial:
        """Add a key version to ``policy`` (stored in ``tx``); its key material."""
        version = int(policy["latest_version"]) + 1
        material = tc.KeyMaterial.generate(randbytes=self._randbytes)
        name = policy["name"]
        key = self._material_key(mount, name, version)
        await tx.put(
            key,
            self._barrier.encrypt(material.to_bytes(), context=self._context(mount, name, version)),
        )
        touched.append(key)
        policy["versions"][str(version)] = int(self._clock())
        policy["latest_version"] = version
        return material

    async def _put_policy(
        self, tx: Transaction, touched: list[str], mount: MountEntry, policy: Policy
    ) -> None:
        key = self._policy_key(mount, policy["name"])
        await tx.put(key, orjson.dumps(policy))
        touched.append(key)

    @staticmethod
    def _key_type(body: Mapping[str, Any]) -> str:
        key_type = body.get("type")
        if key_type is None or key_type == "":
            return tc.DEFAULT_KEY_TYPE
        if not isinstance(key_type, str) or key_type not in tc.KEY_TYPES:
            shown = repr(key_type[:64]) if isinstance(key_type, str) else "(not a string)"
            raise InvalidRequestError(
                f"unknown key type {shown}: this server supports {', '.join(tc.KEY_TYPES)}"
            )
        return key_type

    @staticmethod
    def _refuse_unsupported(body: Mapping[str, Any]) -> None:
        for flag in ("exportable", "allow_plaintext_backup", "convergent_encryption"):
            if body.get(flag) is not None and bool_param(body[flag], field=flag):
                raise InvalidRequestError(
                    f"{flag}=true is not supported by this server: keys never leave it"
                )

    async def _create_policy(
        self,
        mount: MountEntry,
        name: str,
        *,
        key_type: str,
        derived: bool,
        auto_rotate: float,
        answer: Callable[[Policy], Reply] | None = None,
    ) -> tuple[Policy, Reply | None]:
        """Create key ``name`` unless it exists; ``(policy, answer)``.

        ``answer(policy)`` builds the call's answer when the key is created; it
        is declared before the creation commits (:mod:`kustos.server.committing`)
        and returned (``None`` when the key existed).
        """
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            raw = await tx.get(self._policy_key(mount, name), for_update=True)
            if raw is not None:
                return _parse_policy(raw), None
            policy = _new_policy(name, key_type=key_type, derived=derived, now=self._clock())
            policy["auto_rotate_period"] = int(auto_rotate)
            await self._add_version(tx, touched, mount, policy)
            await self._put_policy(tx, touched, mount, policy)
            declared = answer_at_commit(answer(policy)) if answer is not None else None
        return policy, declared

    async def _create(self, call: Call, mount: MountEntry, name: str) -> Reply:
        body = call.json()
        key_type = self._key_type(body)
        self._refuse_unsupported(body)
        derived = bool_param(body.get("derived"), field="derived", default=False)
        auto_rotate = self._auto_rotate(body.get("auto_rotate_period"))
        existing = await self._load_policy(mount, name)
        self._require(call, "create" if existing is None else "update")
        policy, declared = await self._create_policy(
            mount,
            name,
            key_type=key_type,
            derived=derived,
            auto_rotate=auto_rotate,
            answer=lambda policy: self._reply(key_info(policy)),
        )
        return declared or self._reply(key_info(policy))

    @staticmethod
    def _auto_rotate(raw: object) -> float:
        if raw is None or raw == "" or raw == 0:
            return 0.0
        period = duration_param(raw, field="auto_rotate_period")
        if 0 < period < 3600:
            raise InvalidRequestError("auto_rotate_period must be 0 (off) or at least 1 hour")
        return period

    async def _read(self, call: Call, mount: MountEntry, name: str) -> Reply:
        self._require(call, "read")
        policy = await self._load_policy(mount, name)
        if policy is None:
            raise NotFoundError("")
        return self._reply(key_info(policy))

    async def _list(self, call: Call, mount: MountEntry) -> Reply:
        self._require(call, "list")
        prefix = f"{mount.storage_prefix}policy/"
        names = sorted([key[len(prefix) :] async for key, _ in self._storage.scan(prefix)])
        if not names:
            raise NotFoundError("")
        return self._reply({"keys": names})

    async def _delete(self, call: Call, mount: MountEntry, name: str) -> Reply:
        self._require(call, "delete")
        done = answer_at_commit(Reply.no_content())
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            raw = await tx.get(self._policy_key(mount, name), for_update=True)
            if raw is None:
                raise InvalidRequestError("could not delete key; not found")
            policy = _parse_policy(raw)
            if not policy["deletion_allowed"]:
                raise InvalidRequestError("deletion is not allowed for this key")
            for version in policy["versions"]:
                key = self._material_key(mount, name, int(version))
                await tx.delete(key)
                touched.append(key)
            policy_key = self._policy_key(mount, name)
            await tx.delete(policy_key)
            touched.append(policy_key)
        return done

    async def _config(self, call: Call, mount: MountEntry, name: str) -> Reply:
        self._require(call, "update")
        body = call.json()
        self._refuse_unsupported(body)
        unknown = sorted(
            set(body)
            - {
                "min_decryption_version", "min_encryption_version", "deletion_allowed",
                "auto_rotate_period", "exportable", "allow_plaintext_backup",
            }
        )  # fmt: skip
        if unknown:
            raise InvalidRequestError(f"unknown key configuration field(s): {', '.join(unknown)}")
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            raw = await tx.get(self._policy_key(mount, name), for_update=True)
            if raw is None:
                raise InvalidRequestError("encryption key not found")
            policy = _parse_policy(raw)
            latest = int(policy["latest_version"])
            if body.get("min_decryption_version") is not None:
                value = int_param(
                    body["min_decryption_version"],
                    field="min_decryption_version",
                    maximum=_MAX_KEY_VERSION,
                )
                if value > latest:
                    raise InvalidRequestError(
                        "cannot set min decryption version beyond the latest version"
                    )
                policy["min_decryption_version"] = max(value, 1)
            if body.get("min_encryption_version") is not None:
                value = int_param(
                    body["min_encryption_version"],
                    field="min_encryption_version",
                    maximum=_MAX_KEY_VERSION,
                )
                if value > latest:
                    raise InvalidRequestError(
                        "cannot set min encryption version beyond the latest version"
                    )
                policy["min_encryption_version"] = value
            if body.get("deletion_allowed") is not None:
                policy["deletion_allowed"] = bool_param(
                    body["deletion_allowed"], field="deletion_allowed"
                )
            if body.get("auto_rotate_period") is not None:
                policy["auto_rotate_period"] = int(self._auto_rotate(body["auto_rotate_period"]))
            min_enc = int(policy["min_encryption_version"])
            if min_enc and min_enc < int(policy["min_decryption_version"]):
                raise InvalidRequestError(
                    "min encryption version must be at least the min decryption version (or 0 for the latest)"
                )
            await self._put_policy(tx, touched, mount, policy)
            reply = answer_at_commit(self._reply(key_info(policy)))
        return reply

    async def _rotate(self, call: Call, mount: MountEntry, name: str) -> Reply:
        self._require(call, "update")
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            raw = await tx.get(self._policy_key(mount, name), for_update=True)
            if raw is None:
                raise InvalidRequestError("encryption key not found")
            policy = _parse_policy(raw)
            await self._add_version(tx, touched, mount, policy)
            await self._put_policy(tx, touched, mount, policy)
            reply = answer_at_commit(self._reply(key_info(policy)))
        return reply

    # -- key use ---------------------------------------------------------------------------------

    async def _version_key(
        self, mount: MountEntry, policy: Policy, version: int, context: bytes, memo: Memo
    ) -> bytes:
        """The encryption key of ``version`` (derived from ``context`` for derived keys)."""
        material = await self._material(mount, policy["name"], version, memo)
        if policy["derived"]:
            if not context:
                raise _ItemError(_DERIVED_WITHOUT_CONTEXT)
            return tc.derive_key(material.key, context)
        return material.key

    @staticmethod
    def _encryption_version(policy: Policy, requested: object) -> int:
        latest = int(policy["latest_version"])
        if requested is None or requested == "" or requested == 0:
            return latest
        version = int_param(requested, field="key_version", maximum=_MAX_KEY_VERSION)
        if version > latest:
            raise _ItemError(
                "requested version for encryption is higher than the latest key version"
            )
        if version < int(policy["min_encryption_version"]):
            raise _ItemError(
                "requested version for encryption is less than the minimum encryption key version"
            )
        return version

    async def _encrypt_one(
        self, mount: MountEntry, policy: Policy, item: Mapping[str, Any], memo: Memo
    ) -> dict[str, Any]:
        if item.get("plaintext") is None:
            raise _ItemError("missing plaintext to encrypt")
        plaintext = _b64(item.get("plaintext"), field="plaintext")
        context = _b64(item.get("context"), field="context")
        version = self._encryption_version(policy, item.get("key_version"))
        key = await self._version_key(mount, policy, version, context, memo)
        blob = tc.encrypt(policy["type"], key, plaintext, randbytes=self._randbytes)
        return {"ciphertext": tc.format_ciphertext(version, blob), "key_version": version}

    async def _decrypt_blob(
        self, mount: MountEntry, policy: Policy, ciphertext: object, context: bytes, memo: Memo
    ) -> bytes:
        if not isinstance(ciphertext, str) or not ciphertext:
            raise _ItemError("missing ciphertext to decrypt")
        version, blob = tc.parse_ciphertext(ciphertext)
        if version > int(policy["latest_version"]):
            raise _ItemError("invalid ciphertext: version is too new")
        if version < int(policy["min_decryption_version"]):
            raise _ItemError(_TOO_OLD)
        key = await self._version_key(mount, policy, version, context, memo)
        try:
            return tc.decrypt(policy["type"], key, blob)
        except DecryptionError:
            raise _ItemError(AUTH_FAILED) from None

    async def _decrypt_one(
        self, mount: MountEntry, policy: Policy, item: Mapping[str, Any], memo: Memo
    ) -> dict[str, Any]:
        context = _b64(item.get("context"), field="context")
        plaintext = await self._decrypt_blob(mount, policy, item.get("ciphertext"), context, memo)
        return {"plaintext": _b64text(plaintext)}

    async def _rewrap_one(
        self, mount: MountEntry, policy: Policy, item: Mapping[str, Any], memo: Memo
    ) -> dict[str, Any]:
        context = _b64(item.get("context"), field="context")
        plaintext = await self._decrypt_blob(mount, policy, item.get("ciphertext"), context, memo)
        version = self._encryption_version(policy, item.get("key_version"))
        key = await self._version_key(mount, policy, version, context, memo)
        blob = tc.encrypt(policy["type"], key, plaintext, randbytes=self._randbytes)
        return {"ciphertext": tc.format_ciphertext(version, blob), "key_version": version}

    async def _run(
        self,
        call: Call,
        mount: MountEntry,
        policy: Policy,
        one: Callable[[MountEntry, Policy, Mapping[str, Any], Memo], Any],
        *,
        memo: Memo | None = None,
    ) -> Reply:
        """One item from the body, or every item of ``batch_input`` (errors per item, like Vault).

        ``memo``: key material already in hand (a key not committed yet).
        """
        body = call.json()
        batch = body.get("batch_input")
        memo = {} if memo is None else memo
        if batch is None:
            try:
                return self._reply(await one(mount, policy, body, memo))
            except _ItemError as exc:
                raise InvalidRequestError(str(exc)) from None
        if not isinstance(batch, list) or not all(isinstance(i, dict) for i in batch):
            raise InvalidRequestError("batch_input must be a list of JSON objects")
        if not batch:
            raise InvalidRequestError("missing batch input to process")
        if len(batch) > MAX_BATCH:
            raise InvalidRequestError(f"batch_input has more than {MAX_BATCH} items")
        failure_status = status_code_param(
            body.get("partial_failure_response_code"),
            field="partial_failure_response_code",
            default=400,
        )
        results: list[dict[str, Any]] = []
        failed = False
        for item in batch:
            try:
                result = await one(mount, policy, item, memo)
            except (_ItemError, InvalidRequestError) as exc:
                result = {"error": str(exc)}
                failed = True
            if "reference" in item:
                result["reference"] = item["reference"]
            results.append(result)
        return self._reply({"batch_results": results}, status=failure_status if failed else 200)

    async def _encrypt(self, call: Call, mount: MountEntry, name: str) -> Reply:
        body = call.json()
        policy = await self._load_policy(mount, name)
        if policy is None:  # Vault's upsert: encrypt creates a missing key for callers allowed to
            self._require(call, "create")
            upserted = await self._upsert(call, mount, name, body)
            if upserted is not None:
                return upserted
            policy = await self._policy(mount, name)  # another request created it meanwhile
        else:
            self._require(call, "update")
        policy = await self._rotate_if_due(mount, policy)
        return await self._run(call, mount, policy, self._encrypt_one)

    async def _upsert(
        self, call: Call, mount: MountEntry, name: str, body: Mapping[str, Any]
    ) -> Reply | None:
        """Create key ``name`` and encrypt with it in one transaction; ``None`` if it exists.

        The encryption runs before the key commits (with the new key material in
        hand), so its answer is audited first (:mod:`kustos.server.committing`)
        and a refused item leaves no key behind.
        """
        batch = body.get("batch_input")
        first = (
            batch[0] if isinstance(batch, list) and batch and isinstance(batch[0], dict) else body
        )
        key_type = self._key_type(body)
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            if await tx.get(self._policy_key(mount, name), for_update=True) is not None:
                return None
            policy = _new_policy(
                name, key_type=key_type, derived=bool(first.get("context")), now=self._clock()
            )
            material = await self._add_version(tx, touched, mount, policy)
            await self._put_policy(tx, touched, mount, policy)
            reply = answer_at_commit(
                await self._run(call, mount, policy, self._encrypt_one, memo={1: material})
            )
        return reply

    async def _rotate_if_due(self, mount: MountEntry, policy: Policy) -> Policy:
        """Rotate a key whose ``auto_rotate_period`` has passed since its latest version (on use)."""
        period = int(policy["auto_rotate_period"])
        latest_created = policy["versions"].get(str(policy["latest_version"]), 0)
        if not period or self._clock() - float(latest_created) < period:
            return policy
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            raw = await tx.get(self._policy_key(mount, policy["name"]), for_update=True)
            if raw is None:
                raise InvalidRequestError("encryption key not found")
            fresh = _parse_policy(raw)
            created = fresh["versions"].get(str(fresh["latest_version"]), 0)
            if self._clock() - float(created) >= period:  # still due: no other request rotated it
                await self._add_version(tx, touched, mount, fresh)
                await self._put_policy(tx, touched, mount, fresh)
        return fresh

    async def _decrypt(self, call: Call, mount: MountEntry, name: str) -> Reply:
        self._require(call, "update")
        policy = await self._policy(mount, name)
        return await self._run(call, mount, policy, self._decrypt_one)

    async def _rewrap(self, call: Call, mount: MountEntry, name: str) -> Reply:
        self._require(call, "update")
        policy = await self._policy(mount, name)
        return await self._run(call, mount, policy, self._rewrap_one)

    async def _datakey(self, call: Call, mount: MountEntry, name: str, *, plaintext: bool) -> Reply:
        self._require(call, "update")
        body = call.json()
        bits = int_param(body.get("bits"), field="bits", minimum=128, maximum=512, default=256)
        if bits not in _DATAKEY_BITS:
            raise InvalidRequestError("invalid bits length: use 128, 256 or 512")
        policy = await self._policy(mount, name)
        data_key = self._randbytes(bits // 8)
        try:
            result = await self._encrypt_one(
                mount, policy, {"plaintext": _b64text(data_key), "context": body.get("context"),
                                "key_version": body.get("key_version")}, {},
            )  # fmt: skip
        except _ItemError as exc:
            raise InvalidRequestError(str(exc)) from None
        if plaintext:
            result["plaintext"] = _b64text(data_key)
        return self._reply(result)

    @staticmethod
    def _algorithm(body: Mapping[str, Any], from_path: str | None) -> str:
        if from_path is not None:
            return enum_param(from_path, field="algorithm", choices=tuple(tc.HMAC_ALGORITHMS))
        name = "algorithm" if body.get("algorithm") not in (None, "") else "hash_algorithm"
        return enum_param(
            body.get(name), field=name, choices=tuple(tc.HMAC_ALGORITHMS), default="sha2-256"
        )

    async def _hmac(self, call: Call, mount: MountEntry, name: str, from_path: str | None) -> Reply:
        self._require(call, "update")
        body = call.json()
        algorithm = self._algorithm(body, from_path)
        policy = await self._policy(mount, name)

        async def one(
            mount: MountEntry, policy: Policy, item: Mapping[str, Any], memo: Memo
        ) -> dict[str, Any]:
            data = _b64(item.get("input"), field="input")
            version = self._encryption_version(policy, item.get("key_version"))
            material = await self._material(mount, policy["name"], version, memo)
            digest = tc.hmac_digest(material.hmac_key, data, algorithm=algorithm)
            return {"hmac": tc.format_ciphertext(version, digest), "key_version": version}

        return await self._run(call, mount, policy, one)

    async def _verify(
        self, call: Call, mount: MountEntry, name: str, from_path: str | None
    ) -> Reply:
        self._require(call, "update")
        body = call.json()
        algorithm = self._algorithm(body, from_path)
        policy = await self._policy(mount, name)

        async def one(
            mount: MountEntry, policy: Policy, item: Mapping[str, Any], memo: Memo
        ) -> dict[str, Any]:
            data = _b64(item.get("input"), field="input")
            given = item.get("hmac")
            if not isinstance(given, str) or not given:
                raise _ItemError("missing hmac to verify (signature verification is not supported)")
            version, digest = tc.parse_ciphertext(given, what="hmac")
            if version > int(policy["latest_version"]):
                raise _ItemError("invalid hmac: version is too new")
            if version < int(policy["min_decryption_version"]):
                raise _ItemError(_TOO_OLD)
            material = await self._material(mount, policy["name"], version, memo)
            expected = tc.hmac_digest(material.hmac_key, data, algorithm=algorithm)
            return {"valid": hmac.compare_digest(expected, digest)}

        return await self._run(call, mount, policy, one)
