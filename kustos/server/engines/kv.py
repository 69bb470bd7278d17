"""The KV version 2 secrets engine, with Vault's paths, semantics and response shapes.

Under a mount (``secret/``)::

    data/<path>       GET (?version=N), POST/PUT (options.cas), PATCH (merge patch), DELETE (latest)
    delete/<path>     POST {"versions": [..]}    soft delete
    undelete/<path>   POST {"versions": [..]}
    destroy/<path>    POST/PUT {"versions": [..]}  erase the ciphertexts
    metadata/<path>   GET, POST/PUT, PATCH, DELETE (everything), LIST (folders end in /;
                      ?after=<name>&limit=<n> pages it, as OpenBao's paginated lists do)
    subkeys/<path>    GET (?version=, ?depth=)
    config            GET, POST (max_versions, cas_required, delete_version_after)
    rotation/<path>   GET, POST/PUT, DELETE, LIST: a scheduled rotation rule (:mod:`.kv_rotation`)
    rotate/<path>     POST: rotate the rule's fields now

Storage, under the mount's ``logical/<uuid>/``: ``config`` (JSON),
``meta/<path>`` and ``ver/<path>@<version>``. A value is envelope-encrypted
by the barrier with context ``("kustos/kv", mount uuid, path, version)``,
so a ciphertext copied to another path, version or mount does not decrypt.
The metadata record is ``b"KVM1"``, the length of its JSON part (uint32,
big-endian), the JSON (versions, times, settings, custom metadata; never a
value) and the ciphertext of the *current* version, so reading the latest
version is one storage read; older versions live at ``ver/<path>@<n>``
(a version moves there when a newer one is written).

Every change happens in one storage transaction that locks the metadata
record, so check-and-set is safe across requests and processes, and
announces itself with its commit (:data:`ANNOUNCEMENT_TOPIC`) so every
replica's change stream carries it; input is
validated before the transaction, so bad input changes nothing. Each version
records who wrote it (the token's display name, and ``identity``: the
namespace/service account for a Kubernetes login), why (``X-Kustos-Reason``)
and which top-level key *names* it added, changed or removed (``changes``;
never values), so history needs no decryption.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson

from kustos.crypto.envelope import ATTESTATION_SIZE, attestation_context, context
from kustos.errors import CheckAndSetError, DecryptionError, InvalidRequestError, NotFoundError
from kustos.sensitive import Sensitive
from kustos.server.access import Authorizer, require
from kustos.server.barrier import Barrier, CiphertextFamily
from kustos.server.caching import RecordCache
from kustos.server.calls import MAX_PATH_LENGTH, Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.engines.kv_rotation import ROTATION_AUTHOR, KvRotation
from kustos.server.errors import RequestTooLargeError
from kustos.server.events import ChangeHub
from kustos.server.mounts import MountEntry, MountTable
from kustos.server.params import bool_param, duration_param, int_param, str_param
from kustos.server.passwords import PasswordPolicies
from kustos.server.timers import Timers
from kustos.server.times import Clock, format_duration, rfc3339
from kustos.server.tokens import TokenEntry
from kustos.store.base import StorageBackend, Transaction
from kustos.store.changes import Changes

__all__ = [
    "ANNOUNCEMENT_TOPIC",
    "DEFAULT_MAX_VERSIONS",
    "KvEngine",
    "key_changes",
    "merge_patch",
    "subkeys",
]

ANNOUNCEMENT_TOPIC: Final = "kv"
"""Topic of the announcement each change commits with (:meth:`Transaction.announce`): mount, path,
version and kind, never a value; other replicas publish it on their change streams."""
DEFAULT_MAX_VERSIONS: Final = 10
"""Versions kept per secret when neither the secret nor the mount sets ``max_versions`` (Vault's default)."""
MAX_VERSIONS_LIMIT: Final = 1000
"""The largest ``max_versions`` accepted: the history of a secret lives in one metadata record."""
MAX_VERSION_NUMBER: Final = 2**31 - 1
"""The largest version number a request may name (``version``, ``cas``, ``versions``)."""
_MAX_VERSIONS_PER_CALL: Final = 1000
_MAX_SUBKEYS_DEPTH: Final = 1024

_CONTEXT_LABEL: Final = "kustos/kv"
_MAX_CUSTOM_KEYS: Final = 64
_MAX_CUSTOM_KEY_LEN: Final = 128
_MAX_CUSTOM_VALUE_LEN: Final = 512
_MAX_REASON_LEN: Final = 512
_OPERATIONS: Final = (
    "data",
    "metadata",
    "delete",
    "undelete",
    "destroy",
    "subkeys",
    "rotation",
    "rotate",
)
_READ_METHODS: Final = frozenset({"GET", "HEAD", "LIST"})
_ROUTES: Final = {operation: f"kv:{operation}" for operation in (*_OPERATIONS, "config")}

Meta = dict[str, Any]

_CONTEXT_CACHE: Final = 65_536


# -- pure helpers ------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge recursively, ``null`` removes a key."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def subkeys(data: Mapping[str, Any], *, depth: int = 0, _level: int = 1) -> dict[str, Any]:
    """The structure of ``data`` without values: leaves become ``null``; ``depth`` 0 = unlimited."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and (depth == 0 or _level < depth):
            out[key] = subkeys(value, depth=depth, _level=_level + 1)
        else:
            out[key] = None
    return out


def _custom_metadata(value: object, *, allow_null_values: bool = False) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequestError("custom_metadata must be a JSON object of string values")
    if len(value) > _MAX_CUSTOM_KEYS:
        raise InvalidRequestError(f"custom_metadata has more than {_MAX_CUSTOM_KEYS} keys")
    for key, item in value.items():
        if not key or len(key) > _MAX_CUSTOM_KEY_LEN:
            raise InvalidRequestError(
                f"custom_metadata keys must be 1-{_MAX_CUSTOM_KEY_LEN} characters"
            )
        if item is None and allow_null_values:
            continue
        if not isinstance(item, str):
            raise InvalidRequestError(f"custom_metadata[{key!r}] must be a string")
        if len(item) > _MAX_CUSTOM_VALUE_LEN:
            raise InvalidRequestError(
                f"custom_metadata[{key!r}] is longer than {_MAX_CUSTOM_VALUE_LEN} characters"
            )
    return value


def _versions_param(body: Mapping[str, Any]) -> list[int]:
    raw = body.get("versions")
    if raw is None or raw == [] or raw == "":
        raise InvalidRequestError("no version number provided")
    if isinstance(raw, str):
        items: list[object] = [p for p in raw.split(",") if p.strip()]
    elif isinstance(raw, list):
        items = list(raw)
    else:
        items = [raw]
    if len(items) > _MAX_VERSIONS_PER_CALL:
        raise InvalidRequestError(f"versions has more than {_MAX_VERSIONS_PER_CALL} items")
    return [int_param(v, field="versions", minimum=1, maximum=MAX_VERSION_NUMBER) for v in items]


def _secret_path(rest: str, *, operation: str) -> str:
    if not rest:
        raise InvalidRequestError(f"missing secret path after {operation}/")
    if rest.endswith("/"):
        raise InvalidRequestError("secret path must not end with '/'")
    return rest


def _deleted(vm: Mapping[str, Any], now: float) -> bool:
    ts = vm.get("deletion_ts")
    return ts is not None and ts <= now


def _version_metadata(meta: Meta, version: int, vm: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "created_time": vm["created_time"],
        "custom_metadata": meta.get("custom_metadata"),
        "deletion_time": vm["deletion_time"],
        "destroyed": vm["destroyed"],
        "version": version,
    }


_META_MAGIC: Final = b"KVM2"
_OLD_MAGIC: Final = b"KVM1"
_META_LABEL: Final = "kustos/kv-meta"
_LATEST: Final = "_latest"
"""In-memory key of the current version's ciphertext inside a parsed metadata dict (never in the JSON)."""
_HEAD: Final = 8
_TAG: Final = ATTESTATION_SIZE
_MIGRATION_BATCH: Final = 128
_KNOWN_META: Final = 4096


def _split_meta(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """``(document, attestation, current version's ciphertext)`` of a metadata record.

    Layout: ``b"KVM2"``, the JSON document's length (uint32, big-endian), the
    document, its attestation (:data:`ATTESTATION_SIZE` bytes, see
    :meth:`KvEngine._attest`) and the current version's ciphertext (may be empty).
    Anything else, including the unauthenticated ``KVM1`` records of older
    releases (migrated at unseal, :meth:`KvEngine.migrate_metadata`), is an
    integrity error.
    """
    if raw[:4] != _META_MAGIC or len(raw) < _HEAD:
        raise DecryptionError()
    end = _HEAD + int.from_bytes(raw[4:_HEAD], "big")
    if len(raw) < end + _TAG:
        raise DecryptionError()
    return raw[_HEAD:end], raw[end : end + _TAG], raw[end + _TAG :]


def _decode_meta(document: bytes, latest: bytes) -> Meta:
    try:
        doc: Meta = orjson.loads(document)
    except orjson.JSONDecodeError:
        raise DecryptionError() from None
    if not isinstance(doc, dict):
        raise DecryptionError()
    if latest:
        doc[_LATEST] = latest
    return doc


def _is_legacy(raw: bytes) -> bool:
    """Whether ``raw`` is a readable metadata record of an older release (garbage is not)."""
    try:
        return _parse_legacy_meta(raw) is not None
    except DecryptionError:
        return False


def _parse_legacy_meta(raw: bytes) -> Meta | None:
    """A metadata record of an older release (``KVM1`` or bare JSON), unauthenticated; ``None``
    for a record in the current format."""
    if raw[:4] == _META_MAGIC:
        return None
    if raw[:1] == b"{":  # written before ciphertexts moved into metadata records
        return _decode_meta(raw, b"")
    if raw[:4] != _OLD_MAGIC or len(raw) < _HEAD:
        raise DecryptionError()
    end = _HEAD + int.from_bytes(raw[4:_HEAD], "big")
    return _decode_meta(raw[_HEAD:end], raw[end:])


class KvEngine:
    """Serves every KV v2 mount; one instance per server."""

    mount_type: Final = "kv"

    def __init__(
        self,
        *,
        storage: StorageBackend,
        barrier: Barrier,
        cache: RecordCache,
        clock: Clock,
        authorizer: Authorizer,
        max_value_bytes: int,
        events: ChangeHub | None = None,
        passwords: PasswordPolicies | None = None,
        timers: Timers | None = None,
        mounts: MountTable | None = None,
    ) -> None:
        """``passwords``, ``timers`` and ``mounts`` together enable rotation rules (``rotation/``)."""
        self._events = events if events is not None else ChangeHub(clock=clock)
        self._storage = storage
        self._barrier = barrier
        self._cache = cache
        self._clock = clock
        self._authorizer = authorizer
        self._max_value_bytes = max_value_bytes
        self._contexts: dict[tuple[str, str, int], bytes] = {}
        self._known_meta: dict[str, bytes] = {}
        """Metadata records (storage key → bytes) this engine wrote or verified last (bounded)."""
        self.rotation: KvRotation | None = None
        """Scheduled rotation of fields (:mod:`.kv_rotation`), when the server wires it in."""
        if passwords is not None and timers is not None and mounts is not None:
            self.rotation = KvRotation(
                storage=storage,
                clock=clock,
                authorizer=authorizer,
                passwords=passwords,
                timers=timers,
                mounts=mounts,
                rotate_fields=self.rotate_fields,
            )
        self._configs: dict[str, dict[str, Any]] = {}
        """Parsed mount configs by storage key, read once per change (every write needs one)."""
        self._configs_epoch = 0

    # -- storage layout ---------------------------------------------------------------------

    @staticmethod
    def _meta_key(mount: MountEntry, path: str) -> str:
        return f"{mount.storage_prefix}meta/{path}"

    @staticmethod
    def _version_key(mount: MountEntry, path: str, version: int) -> str:
        return f"{mount.storage_prefix}ver/{path}@{version}"

    @staticmethod
    def _config_key(mount: MountEntry) -> str:
        return f"{mount.storage_prefix}config"

    @staticmethod
    def _encode_context(mount: MountEntry, path: str, version: int) -> bytes:
        return context(_CONTEXT_LABEL, mount.uuid, path, version)

    def _context(self, mount: MountEntry, path: str, version: int) -> bytes:
        """The encryption context of one version (memoized: encoding shows up on the read path)."""
        key = (mount.uuid, path, version)
        contexts = self._contexts
        ctx = contexts.get(key)
        if ctx is None:
            ctx = self._encode_context(mount, path, version)
            if len(contexts) >= _CONTEXT_CACHE:
                contexts.clear()
            contexts[key] = ctx
        return ctx

    @classmethod
    def ciphertext_families(cls, mount: MountEntry) -> list[CiphertextFamily]:
        """Where this mount's ciphertexts are (current versions in metadata records, older ones
        in version records), for rewrap and key-version checks."""
        versions = f"{mount.storage_prefix}ver/"
        metas = f"{mount.storage_prefix}meta/"

        def context_for(key: str) -> bytes | None:
            path, sep, version = key[len(versions) :].rpartition("@")
            if not sep or not path or not version.isdigit():
                return None
            return cls._encode_context(mount, path, int(version))

        def locate_latest(key: str, record: bytes) -> tuple[bytes, bytes] | None:
            try:
                document, _, blob = _split_meta(record)
                meta = _decode_meta(document, b"")
            except DecryptionError:
                return None
            if not blob:
                return None
            return blob, cls._encode_context(mount, key[len(metas) :], int(meta["current_version"]))

        def replace_latest(record: bytes, blob: bytes) -> bytes:
            document, _, _ = _split_meta(record)
            return record[: _HEAD + len(document) + _TAG] + blob

        def locate_attestation(key: str, record: bytes) -> tuple[bytes, bytes] | None:
            try:
                document, tag, _ = _split_meta(record)
            except DecryptionError:
                return None
            where = cls._meta_context(mount, key[len(metas) :])
            return tag, attestation_context(where, document)

        def replace_attestation(record: bytes, tag: bytes) -> bytes:
            document, _, blob = _split_meta(record)
            return record[: _HEAD + len(document)] + tag + blob

        return [
            CiphertextFamily.whole_records(versions, context_for),
            CiphertextFamily(prefix=metas, locate=locate_latest, replace=replace_latest),
            CiphertextFamily(prefix=metas, locate=locate_attestation, replace=replace_attestation),
        ]

    @staticmethod
    def _meta_context(mount: MountEntry, path: str) -> bytes:
        """Where a metadata record belongs: its attestation binds the document to it."""
        return context(_META_LABEL, mount.uuid, path)

    def _attest(self, mount: MountEntry, path: str, document: bytes) -> bytes:
        return self._barrier.attest(document, context=self._meta_context(mount, path))

    def _verified_meta(self, raw: bytes, mount: MountEntry, path: str) -> Meta:
        """A metadata record, its document verified (``DecryptionError`` if it was changed).

        Bytes equal to the last record this engine wrote or verified at that
        key need no second verification (a write re-reads the record it
        wrote moments before; equal bytes are the same attested record).
        """
        document, tag, latest = _split_meta(raw)
        key = self._meta_key(mount, path)
        if self._known_meta.get(key) != raw:
            self._barrier.verify_attestation_loaded(
                tag, document, context=self._meta_context(mount, path)
            )
            self._remember_meta(key, raw)
        return _decode_meta(document, latest)

    def _remember_meta(self, key: str, raw: bytes) -> None:
        known = self._known_meta
        if len(known) >= _KNOWN_META and key not in known:
            known.clear()
        known[key] = raw

    async def migrate_metadata(self, mount: MountEntry) -> int:
        """Attest every metadata record of ``mount`` written by an older release (``KVM1``, or
        bare JSON) in the current format; return how many were rewritten.

        Runs once the barrier is unsealed and before data paths are served
        (:meth:`kustos.server.core.Core.finish_unseal`); the engine refuses
        old records afterwards, so a record someone rewrites in the old
        format later is an integrity error, not history taken on trust.
        Each batch re-reads its records under lock; a record changed or
        deleted meanwhile is left as the other writer left it.
        """
        prefix = f"{mount.storage_prefix}meta/"
        pending = [key async for key, raw in self._storage.scan(prefix) if _is_legacy(raw)]
        done = 0
        for start in range(0, len(pending), _MIGRATION_BATCH):
            async with self._cache.writing() as touched, self._storage.transaction() as tx:
                for key in pending[start : start + _MIGRATION_BATCH]:
                    raw = await tx.get(key, for_update=True)
                    meta = _parse_legacy_meta(raw) if raw is not None and _is_legacy(raw) else None
                    if meta is None:
                        continue
                    path = key[len(prefix) :]
                    await tx.put(key, self._encode_meta(mount, path, meta))
                    touched.append(key)
                    done += 1
        return done

    async def _get_meta(self, mount: MountEntry, path: str) -> Meta | None:
        """The verified metadata of ``path`` (through the read cache)."""
        key = self._meta_key(mount, path)
        try:
            return await self._cache.get(key, lambda raw: self._verified_meta(raw, mount, path))
        except DecryptionError:  # perhaps a KEK version another replica added: reload, once
            raw = await self._storage.get(key)
            if raw is None:
                return None
            document, tag, latest = _split_meta(raw)
            await self._barrier.verify_attestation(
                tag, document, context=self._meta_context(mount, path)
            )
            return _decode_meta(document, latest)

    def _encode_meta(self, mount: MountEntry, path: str, meta: Meta) -> bytes:
        blob: bytes = meta.get(_LATEST) or b""
        document = orjson.dumps({k: v for k, v in meta.items() if k != _LATEST})
        return (
            _META_MAGIC
            + len(document).to_bytes(4, "big")
            + document
            + self._attest(mount, path, document)
            + blob
        )

    # -- routing ------------------------------------------------------------------------------

    @staticmethod
    def route(method: str, rest: str) -> str:
        """The route template for metrics and logs (never the secret path)."""
        return _ROUTES.get(rest.partition("/")[0], "kv:unknown")

    @staticmethod
    def read_only(method: str, rest: str) -> bool:
        """Reads and lists change nothing (every write is a POST, PUT, PATCH or DELETE)."""
        return method in _READ_METHODS

    def handle(self, call: Call, mount: MountEntry, rest: str) -> Awaitable[Reply]:
        """Answer one request under ``mount``; ``rest`` is the path inside the mount.

        Returns the handler's coroutine without awaiting it (one coroutine frame less per request).
        """
        operation, _, path = rest.partition("/")
        method = call.method
        if operation == "data":
            path = _secret_path(path, operation=operation)
            if method == "GET":
                return self._read(call, mount, path, subkeys_depth=None)
            if method in ("POST", "PUT"):
                return self._write(call, mount, path)
            if method == "PATCH":
                return self._patch(call, mount, path)
            if method == "DELETE":
                return self._delete_latest(call, mount, path)
        elif operation == "metadata":
            if method == "LIST":
                return self._list(call, mount, path)
            path = _secret_path(path, operation=operation)
            if method == "GET":
                return self._read_metadata(call, mount, path)
            if method in ("POST", "PUT"):
                return self._write_metadata(call, mount, path, patch=False)
            if method == "PATCH":
                return self._write_metadata(call, mount, path, patch=True)
            if method == "DELETE":
                return self._delete_metadata(call, mount, path)
        elif operation in ("delete", "undelete", "destroy"):
            path = _secret_path(path, operation=operation)
            if method in ("POST", "PUT"):
                return self._change_versions(call, mount, path, operation=operation)
        elif operation == "subkeys":
            path = _secret_path(path, operation=operation)
            if method == "GET":
                depth = int_param(
                    call.query.get("depth"), field="depth", maximum=_MAX_SUBKEYS_DEPTH, default=0
                )
                return self._read(call, mount, path, subkeys_depth=depth)
        elif operation in ("rotation", "rotate") and self.rotation is not None:
            return self.rotation.handle(call, mount, operation, path)
        elif operation == "config" and not path:
            if method == "GET":
                return self._read_config(call, mount)
            if method in ("POST", "PUT"):
                return self._write_config(call, mount)
        else:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        raise unsupported(call)

    def _require(self, call: Call, capability: str) -> None:
        require(self._authorizer, call.require_token(), call.path, capability)

    def _reply(self, data: Any, *, status: int = 200) -> Reply:
        return Reply(status=status, data=data, mount_type="kv")

    # -- reads ----------------------------------------------------------------------------------

    async def _read(
        self, call: Call, mount: MountEntry, path: str, *, subkeys_depth: int | None
    ) -> Reply:
        self._require(call, "read")
        raw_version = call.query.get("version")
        version = int_param(raw_version, field="version", maximum=MAX_VERSION_NUMBER, default=0)
        key = self._meta_key(mount, path)
        hit = self._cache.peek(key)
        meta: Meta | None = hit[0] if hit is not None else await self._get_meta(mount, path)
        if meta is None:
            raise NotFoundError("")
        if version == 0:
            version = meta["current_version"]
        vm = meta["versions"].get(str(version))
        if vm is None:
            raise NotFoundError("")
        metadata = _version_metadata(meta, version, vm)
        if vm["destroyed"] or _deleted(vm, self._clock()):
            if subkeys_depth is not None:
                return self._reply({"subkeys": None, "metadata": metadata}, status=404)
            return self._reply({"data": None, "metadata": metadata}, status=404)
        blob: bytes | None = meta.get(_LATEST) if version == meta["current_version"] else None
        if blob is None:
            blob = await self._cache.get(self._version_key(mount, path, version), bytes)
        if blob is None:
            raise DecryptionError()  # a live version without its ciphertext: storage was tampered with
        ctx = self._context(mount, path, version)
        try:
            plaintext = self._barrier.decrypt_loaded(blob, context=ctx)
        except (
            DecryptionError
        ):  # perhaps a KEK version another replica added: reload and retry once
            plaintext = await self._barrier.decrypt(blob, context=ctx)
        if subkeys_depth is not None:
            value = orjson.loads(plaintext)
            if not isinstance(value, dict):
                raise DecryptionError()
            return self._reply(
                {"subkeys": subkeys(value, depth=subkeys_depth), "metadata": metadata}
            )
        return self._reply({"data": orjson.Fragment(plaintext), "metadata": metadata})

    async def _read_metadata(self, call: Call, mount: MountEntry, path: str) -> Reply:
        self._require(call, "read")
        meta = await self._get_meta(mount, path)
        if meta is None:
            raise NotFoundError("")
        versions = {
            key: {
                "created_time": vm["created_time"],
                "deletion_time": vm["deletion_time"],
                "destroyed": vm["destroyed"],
                "created_by": vm.get("created_by", ""),
                "identity": vm.get("identity") or vm.get("created_by", ""),
                "reason": vm.get("reason"),
                "changes": vm.get("changes"),
            }
            for key, vm in meta["versions"].items()
        }
        return self._reply(
            {
                "cas_required": meta["cas_required"],
                "created_time": meta["created_time"],
                "current_version": meta["current_version"],
                "custom_metadata": meta.get("custom_metadata"),
                "delete_version_after": format_duration(meta["delete_version_after"]),
                "max_versions": meta["max_versions"],
                "oldest_version": meta["oldest_version"],
                "updated_time": meta["updated_time"],
                "versions": versions,
            }
        )

    async def _list(self, call: Call, mount: MountEntry, prefix: str) -> Reply:
        self._require(call, "list")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        # OpenBao's paginated lists: the names after ``after`` (which need not exist), at most
        # ``limit`` of them (0 or less: all); storage reads one index entry per name returned
        limit = int_param(
            call.query.get("limit"), field="limit", minimum=-(2**31), maximum=2**31 - 1, default=0
        )
        keys = await self._storage.list(
            f"{mount.storage_prefix}meta/{prefix}",
            after=str_param(
                call.query.get("after"),
                field="after",
                max_length=MAX_PATH_LENGTH,
                default="",
                strip=False,
            )
            or None,
            limit=limit if limit > 0 else None,
        )
        if not keys:
            raise NotFoundError("")
        return self._reply({"keys": keys})

    async def _read_config(self, call: Call, mount: MountEntry) -> Reply:
        self._require(call, "read")
        raw = await self._storage.get(self._config_key(mount))
        config = self._parse_config(raw)
        return self._reply(
            {
                "cas_required": config["cas_required"],
                "delete_version_after": format_duration(config["delete_version_after"]),
                "max_versions": config["max_versions"],
            }
        )

    @staticmethod
    def _parse_config(raw: bytes | None) -> dict[str, Any]:
        config: dict[str, Any] = {
            "max_versions": 0,
            "cas_required": False,
            "delete_version_after": 0.0,
        }
        if raw is not None:
            config.update(orjson.loads(raw))
        return config

    # -- writes -----------------------------------------------------------------------------------

    def _secret_bytes(self, data: Any) -> bytes:
        if data is None:
            raise InvalidRequestError("no data provided")
        if not isinstance(data, dict):
            raise InvalidRequestError("'data' must be a JSON object of key/value pairs")
        plaintext = orjson.dumps(data)
        if len(plaintext) > self._max_value_bytes:
            raise RequestTooLargeError(
                f"secret data is {len(plaintext)} bytes, more than the maximum of {self._max_value_bytes} bytes"
            )
        return plaintext

    @staticmethod
    def _cas_option(body: Mapping[str, Any]) -> int | None:
        options = body.get("options")
        if options is None:
            return None
        if not isinstance(options, dict):
            raise InvalidRequestError("'options' must be a JSON object")
        cas = options.get("cas")
        return (
            None if cas is None else int_param(cas, field="options.cas", maximum=MAX_VERSION_NUMBER)
        )

    def _reason(self, call: Call) -> str | None:
        reason = call.reason
        if reason is not None and len(reason) > _MAX_REASON_LEN:
            raise InvalidRequestError(
                f"X-Kustos-Reason is longer than {_MAX_REASON_LEN} characters"
            )
        return reason

    def _new_meta(self, now_text: str) -> Meta:
        return {
            "v": 1,
            "created_time": now_text,
            "updated_time": now_text,
            "current_version": 0,
            "oldest_version": 0,
            "max_versions": 0,
            "cas_required": False,
            "delete_version_after": 0.0,
            "custom_metadata": None,
            "versions": {},
        }

    async def _load_meta(self, tx: Transaction, mount: MountEntry, path: str) -> Meta | None:
        raw = await tx.get(self._meta_key(mount, path), for_update=True)
        return None if raw is None else self._verified_meta(raw, mount, path)

    @staticmethod
    def _check_cas(meta: Meta | None, config: Mapping[str, Any], cas: int | None) -> None:
        required = bool(config["cas_required"]) or bool(meta and meta["cas_required"])
        if required and cas is None:
            raise InvalidRequestError("check-and-set parameter required for this call")
        current = meta["current_version"] if meta else 0
        if cas is not None and cas != current:
            raise CheckAndSetError("check-and-set parameter did not match the current version")

    async def _append_version(
        self,
        tx: Transaction,
        touched: list[str],
        *,
        token: TokenEntry | None,
        mount: MountEntry,
        path: str,
        meta: Meta,
        config: Mapping[str, Any],
        plaintext: bytes,
        reason: str | None,
        previous_data: Any = None,
        new: Any = None,
        author: str = "",
    ) -> dict[str, Any]:
        now = self._clock()
        now_text = rfc3339(now)
        previous = int(meta["current_version"])
        version = previous + 1
        blob = self._barrier.encrypt(plaintext, context=self._context(mount, path, version))
        earlier: bytes | None = meta.pop(_LATEST, None)
        if earlier is not None:  # the previous current version moves to its own record
            key = self._version_key(mount, path, previous)
            await tx.put(key, earlier)
            touched.append(key)
        meta[_LATEST] = blob
        dva = _effective(meta["delete_version_after"], config["delete_version_after"])
        deletion_ts = now + dva if dva > 0 else None
        vm = {
            "created_time": now_text,
            "deletion_time": rfc3339(deletion_ts) if deletion_ts is not None else "",
            "deletion_ts": deletion_ts,
            "destroyed": False,
            "created_by": token.display_name if token is not None else author,
            "identity": _identity(token),
            "reason": reason,
            "changes": key_changes(previous_data, new),
        }
        meta["versions"][str(version)] = vm
        meta["current_version"] = version
        meta["updated_time"] = now_text
        await self._prune(tx, touched, mount, path, meta, config)
        await self._put_meta(tx, touched, mount, path, meta)
        return _version_metadata(meta, version, vm)

    async def _prune(
        self,
        tx: Transaction,
        touched: list[str],
        mount: MountEntry,
        path: str,
        meta: Meta,
        config: Mapping[str, Any],
    ) -> None:
        keep = int(meta["max_versions"]) or int(config["max_versions"]) or DEFAULT_MAX_VERSIONS
        versions: dict[str, Any] = meta["versions"]
        if len(versions) <= keep:
            return
        ordered = sorted(int(v) for v in versions)
        for old in ordered[: len(ordered) - keep]:
            del versions[str(old)]
            key = self._version_key(mount, path, old)
            await tx.delete(key)
            touched.append(key)
        meta["oldest_version"] = min(int(v) for v in versions)

    async def _put_meta(
        self, tx: Transaction, touched: list[str], mount: MountEntry, path: str, meta: Meta
    ) -> None:
        key = self._meta_key(mount, path)
        record = self._encode_meta(mount, path, meta)
        await tx.put(key, record)
        self._remember_meta(key, record)
        touched.append(key)

    async def _config_in(self, tx: Transaction, mount: MountEntry) -> dict[str, Any]:
        """The mount's config (settings, not secret), remembered until it changes.

        Not locked, as before it was remembered: a config write racing a data
        write may or may not apply to it. Nothing is remembered while the read
        cache is bypassed (another replica's changes may go unannounced).
        """
        key = self._config_key(mount)
        config = self._configs.get(key)
        if config is not None:
            return config
        epoch = self._configs_epoch
        config = self._parse_config(await tx.get(key))
        if epoch == self._configs_epoch and not self._cache.bypassed:
            if len(self._configs) >= _CONTEXT_CACHE:
                self._configs.clear()
            self._configs[key] = config
        return config

    def forget_configs(self, changes: Changes) -> None:
        """Drop remembered mount configs that a commit (of another replica) may have changed."""
        if changes.everything or not changes.watching or changes.prefixes:
            self._configs_epoch += 1
            self._configs.clear()
            return
        for key in changes.keys:
            if key.endswith("/config") and key.startswith("logical/"):
                self._configs_epoch += 1
                self._configs.pop(key, None)

    async def _live_data(self, tx: Transaction, mount: MountEntry, path: str, meta: Meta) -> Any:
        """The current version's data (for the key changes of the next version), or ``None`` if it is gone."""
        version = int(meta["current_version"])
        vm = meta["versions"].get(str(version))
        if version == 0 or vm is None or vm["destroyed"] or _deleted(vm, self._clock()):
            return None
        blob = meta.get(_LATEST) or await tx.get(self._version_key(mount, path, version))
        if blob is None:
            return None
        return orjson.loads(
            await self._barrier.decrypt(blob, context=self._context(mount, path, version))
        )

    async def _write(self, call: Call, mount: MountEntry, path: str) -> Reply:
        body = call.json()
        plaintext = self._secret_bytes(body.get("data"))
        cas = self._cas_option(body)
        reason = self._reason(call)
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            config = await self._config_in(tx, mount)
            meta = await self._load_meta(tx, mount, path)
            self._require(call, "create" if meta is None else "update")
            self._check_cas(meta, config, cas)
            previous = None if meta is None else await self._live_data(tx, mount, path, meta)
            if meta is None:
                meta = self._new_meta(rfc3339(self._clock()))
            result = await self._append_version(
                tx,
                touched,
                token=call.token,
                mount=mount,
                path=path,
                meta=meta,
                config=config,
                plaintext=plaintext,
                reason=reason,
                previous_data=previous,
                new=body.get("data"),
            )
            _announce(tx, mount, path, int(result["version"]), "write")
            reply = answer_at_commit(self._reply(result))
        self._events.publish(mount.path, path, int(result["version"]), "write")
        return reply

    async def rotate_fields(
        self,
        mount: MountEntry,
        path: str,
        fields: list[str],
        generate: Callable[[], Sensitive[str]],
        reason: str,
    ) -> int:
        """Write a new version with ``fields`` set to generated values, the others kept; its number."""
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            config = await self._config_in(tx, mount)
            meta = await self._load_meta(tx, mount, path)
            previous = None if meta is None else await self._live_data(tx, mount, path, meta)
            if meta is None:
                meta = self._new_meta(rfc3339(self._clock()))
            current = dict(previous) if isinstance(previous, dict) else {}
            data = {**current, **{name: generate().reveal() for name in fields}}
            result = await self._append_version(
                tx,
                touched,
                token=None,
                mount=mount,
                path=path,
                meta=meta,
                config=config,
                plaintext=self._secret_bytes(data),
                reason=reason,
                previous_data=previous,
                new=data,
                author=ROTATION_AUTHOR,
            )
            _announce(tx, mount, path, int(result["version"]), "write")
            # rotate/<path>'s answer, audited before this commits (a timer's rotation: no call)
            answer_at_commit(Reply(data={"version": int(result["version"])}, mount_type="kv"))
        version = int(result["version"])
        self._events.publish(mount.path, path, version, "write")
        return version

    async def _patch(self, call: Call, mount: MountEntry, path: str) -> Reply:
        call.require_merge_patch()
        body = call.json()
        patch = body.get("data")
        if patch is None:
            raise InvalidRequestError("no data provided")
        if not isinstance(patch, dict):
            raise InvalidRequestError("'data' must be a JSON object of key/value pairs")
        cas = self._cas_option(body)
        reason = self._reason(call)
        not_found: Reply | None = None
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            self._require(call, "patch")
            config = await self._config_in(tx, mount)
            meta = await self._load_meta(tx, mount, path)
            if meta is None or meta["current_version"] == 0:
                raise NotFoundError("")
            version = int(meta["current_version"])
            vm = meta["versions"][str(version)]
            if vm["destroyed"] or _deleted(vm, self._clock()):
                not_found = self._reply(
                    {"data": None, "metadata": _version_metadata(meta, version, vm)}, status=404
                )
            else:
                if cas is not None and cas != version:
                    raise CheckAndSetError(
                        "check-and-set parameter did not match the current version"
                    )
                blob = meta.get(_LATEST) or await tx.get(self._version_key(mount, path, version))
                if blob is None:
                    raise DecryptionError()
                current = orjson.loads(
                    await self._barrier.decrypt(blob, context=self._context(mount, path, version))
                )
                merged = merge_patch(current, patch)
                plaintext = self._secret_bytes(merged)
                result = await self._append_version(
                    tx,
                    touched,
                    token=call.token,
                    mount=mount,
                    path=path,
                    meta=meta,
                    config=config,
                    plaintext=plaintext,
                    reason=reason,
                    previous_data=current,
                    new=merged,
                )
                _announce(tx, mount, path, int(result["version"]), "write")
                reply = answer_at_commit(self._reply(result))
        if not_found is not None:
            return not_found
        self._events.publish(mount.path, path, int(result["version"]), "write")
        return reply

    async def _delete_latest(self, call: Call, mount: MountEntry, path: str) -> Reply:
        self._require(call, "delete")
        done = answer_at_commit(Reply.no_content())
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            meta = await self._load_meta(tx, mount, path)
            if meta is None or meta["current_version"] == 0:
                return Reply.no_content()
            vm = meta["versions"].get(str(meta["current_version"]))
            now = self._clock()
            if vm is not None and not vm["destroyed"] and not _deleted(vm, now):
                vm["deletion_time"] = rfc3339(now)
                vm["deletion_ts"] = now
                meta["updated_time"] = rfc3339(now)
                await self._put_meta(tx, touched, mount, path, meta)
                deleted = int(meta["current_version"])
                _announce(tx, mount, path, deleted, "delete")
            else:
                return Reply.no_content()
        self._events.publish(mount.path, path, deleted, "delete")
        return done

    async def _change_versions(
        self, call: Call, mount: MountEntry, path: str, *, operation: str
    ) -> Reply:
        versions = _versions_param(call.json())
        self._require(call, "update")
        done = answer_at_commit(Reply.no_content())
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            meta = await self._load_meta(tx, mount, path)
            if meta is None:
                return Reply.no_content()
            now = self._clock()
            changed = False
            for version in versions:
                vm = meta["versions"].get(str(version))
                if vm is None:
                    continue
                if operation == "delete" and not vm["destroyed"] and not _deleted(vm, now):
                    vm["deletion_time"], vm["deletion_ts"] = rfc3339(now), now
                    changed = True
                elif (
                    operation == "undelete"
                    and not vm["destroyed"]
                    and vm["deletion_ts"] is not None
                ):
                    vm["deletion_time"], vm["deletion_ts"] = "", None
                    changed = True
                elif operation == "destroy" and not vm["destroyed"]:
                    vm["destroyed"] = True
                    if version == meta["current_version"]:
                        meta.pop(_LATEST, None)
                    key = self._version_key(mount, path, version)
                    await tx.delete(key)
                    touched.append(key)
                    changed = True
            if changed:
                meta["updated_time"] = rfc3339(now)
                await self._put_meta(tx, touched, mount, path, meta)
                _announce(tx, mount, path, int(meta["current_version"]), operation)
        if changed:
            self._events.publish(mount.path, path, int(meta["current_version"]), operation)
        return done

    async def _write_metadata(
        self, call: Call, mount: MountEntry, path: str, *, patch: bool
    ) -> Reply:
        if patch:
            call.require_merge_patch()
        body = call.json()
        changes = self._metadata_changes(body, patch=patch)
        done = answer_at_commit(Reply.no_content())
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            config = await self._config_in(tx, mount)
            meta = await self._load_meta(tx, mount, path)
            if patch:
                self._require(call, "patch")
                if meta is None:
                    raise NotFoundError("")
            else:
                self._require(call, "create" if meta is None else "update")
            now_text = rfc3339(self._clock())
            if meta is None:
                meta = self._new_meta(now_text)
            for name, value in changes.items():
                if name == "custom_metadata" and patch:
                    merged = merge_patch(meta.get("custom_metadata") or {}, value)
                    meta["custom_metadata"] = merged or None
                elif name == "custom_metadata":
                    meta["custom_metadata"] = value or None
                else:
                    meta[name] = value
            meta["updated_time"] = now_text
            await self._prune(tx, touched, mount, path, meta, config)
            await self._put_meta(tx, touched, mount, path, meta)
            _announce(tx, mount, path, int(meta["current_version"]), "metadata")
        self._events.publish(mount.path, path, int(meta["current_version"]), "metadata")
        return done

    @staticmethod
    def _metadata_changes(body: Mapping[str, Any], *, patch: bool) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if body.get("max_versions") is not None:
            changes["max_versions"] = int_param(
                body["max_versions"], field="max_versions", maximum=MAX_VERSIONS_LIMIT
            )
        if body.get("cas_required") is not None:
            changes["cas_required"] = bool_param(body["cas_required"], field="cas_required")
        if body.get("delete_version_after") is not None:
            changes["delete_version_after"] = duration_param(
                body["delete_version_after"], field="delete_version_after"
            )
        if body.get("custom_metadata") is not None:
            changes["custom_metadata"] = _custom_metadata(
                body["custom_metadata"], allow_null_values=patch
            )
        unknown = sorted(
            set(body) - {"max_versions", "cas_required", "delete_version_after", "custom_metadata"}
        )
        if unknown:
            raise InvalidRequestError(f"unknown metadata field(s): {', '.join(unknown)}")
        return changes

    async def _delete_metadata(self, call: Call, mount: MountEntry, path: str) -> Reply:
        self._require(call, "delete")
        done = answer_at_commit(Reply.no_content())
        async with self._cache.writing() as touched, self._storage.transaction() as tx:
            meta = await self._load_meta(tx, mount, path)
            if meta is None:
                return Reply.no_content()
            for version in meta["versions"]:
                key = self._version_key(mount, path, int(version))
                await tx.delete(key)
                touched.append(key)
            meta_key = self._meta_key(mount, path)
            await tx.delete(meta_key)
            touched.append(meta_key)
            _announce(tx, mount, path, int(meta["current_version"]), "metadata-delete")
        self._events.publish(mount.path, path, int(meta["current_version"]), "metadata-delete")
        return done

    async def _write_config(self, call: Call, mount: MountEntry) -> Reply:
        self._require(call, "update")
        body = call.json()
        changes: dict[str, Any] = {}
        if body.get("max_versions") is not None:
            changes["max_versions"] = int_param(
                body["max_versions"], field="max_versions", maximum=MAX_VERSIONS_LIMIT
            )
        if body.get("cas_required") is not None:
            changes["cas_required"] = bool_param(body["cas_required"], field="cas_required")
        if body.get("delete_version_after") is not None:
            changes["delete_version_after"] = duration_param(
                body["delete_version_after"], field="delete_version_after"
            )
        key = self._config_key(mount)
        self._configs_epoch += 1
        self._configs.pop(key, None)
        done = answer_at_commit(Reply.no_content())
        try:
            async with self._storage.transaction() as tx:
                config = self._parse_config(await tx.get(key, for_update=True))
                config.update(changes)
                await tx.put(key, orjson.dumps(config))
        finally:
            self._configs_epoch += 1
            self._configs.pop(key, None)
        return done


def _announce(tx: Transaction, mount: MountEntry, path: str, version: int, kind: str) -> None:
    """Tell the other replicas of this change with the commit (their change streams publish it)."""
    tx.announce(
        ANNOUNCEMENT_TOPIC, {"mount": mount.path, "path": path, "version": version, "kind": kind}
    )


def key_changes(previous: Any, new: Any) -> dict[str, list[str]]:
    """Which top-level key *names* a version added, changed or removed against the one before (never values).

    Key names are not secret (``subkeys`` shows them too); they are kept in
    the version's metadata so ``kustos kv history`` can say what changed
    without anyone decrypting a value.
    """
    before = previous if isinstance(previous, dict) else {}
    after = new if isinstance(new, dict) else {}
    return {
        "added": sorted(k for k in after if k not in before),
        "changed": sorted(k for k in after if k in before and before[k] != after[k]),
        "removed": sorted(k for k in before if k not in after),
    }


def _identity(token: Any) -> str:
    """Who wrote a version: ``<namespace>/<service account>`` for a Kubernetes login, else the display name."""
    if token is None:
        return ""
    meta = token.meta
    namespace, account = meta.get("service_account_namespace"), meta.get("service_account_name")
    if namespace and account:
        return f"{namespace}/{account}"
    return str(token.display_name)


def _effective(secret_value: float, mount_value: float) -> float:
    """Vault's rule for delete_version_after: the smaller of the non-zero settings."""
    values = [v for v in (float(secret_value), float(mount_value)) if v > 0]
    return min(values) if values else 0.0
