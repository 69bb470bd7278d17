"""``sys/*``: health, init/unseal/seal, mounts, key rotation and rewrap.

Vault-compatible endpoints keep Vault's bodies and statuses (``sys/health``
and ``sys/seal-status`` answer even when sealed; ``sys/init`` returns its
keys once). Kustos extensions: ``sys/rewrap`` (move every ciphertext to the
newest key version), ``sys/keyring`` (list key versions) and
``sys/keyring/disable`` (retire an old version once nothing uses it).
``sys/remount`` moves a secrets engine at once (its data is keyed by the
mount's uuid, not its path); ``sys/remount/status/<id>`` answers for the
moves this process made, as Vault's asynchronous migrations do.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from kustos import __version__
from kustos.errors import InvalidRequestError, NotFoundError
from kustos.server.access import require
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.core import Core
from kustos.server.mounts import normalize_mount_path
from kustos.server.params import bool_param, duration_param, int_param
from kustos.server.times import rfc3339

__all__ = ["UNAUTHENTICATED", "SystemApi"]

UNAUTHENTICATED: Final = frozenset(
    {"sys/health", "sys/seal-status", "sys/init", "sys/unseal", "sys/leader"}
)
"""``sys`` paths served without a token (and while sealed)."""

_Handler = Callable[[Call], Awaitable[Reply]]
_KEPT_MOVES: Final = 100
"""How many finished mount moves ``sys/remount/status`` remembers."""
_MAX_SHARES: Final = 255
"""Shamir's scheme over GF(256): at most 255 shares."""


def _status_code(call: Call, name: str, default: int) -> int:
    """A status ``sys/health`` answers with (``?activecode=``...): a final status, 200-599."""
    return int_param(call.query.get(name), field=name, minimum=200, maximum=599, default=default)


class SystemApi:
    """Answers ``sys/*``."""

    prefix = "sys/"

    def __init__(self, core: Core) -> None:
        self._core = core
        self._exact: dict[str, _Handler] = {
            "sys/health": self._health,
            "sys/seal-status": self._seal_status,
            "sys/init": self._init,
            "sys/unseal": self._unseal,
            "sys/seal": self._seal,
            "sys/leader": self._leader,
            "sys/mounts": self._list_mounts,
            "sys/rotate": self._rotate,
            "sys/key-status": self._key_status,
            "sys/keyring": self._keyring,
            "sys/keyring/disable": self._disable_key_version,
            "sys/rewrap": self._rewrap,
            "sys/remount": self._remount,
        }
        self._moves: dict[str, dict[str, str]] = {}
        """Finished mount moves by migration id (``sys/remount/status/<id>``), newest last."""

    @staticmethod
    def route(path: str) -> str:
        """Route template for metrics and logs."""
        trimmed = path.rstrip("/")
        if trimmed.startswith("sys/mounts/"):
            return "sys/mounts/:path/tune" if trimmed.endswith("/tune") else "sys/mounts/:path"
        if trimmed.startswith("sys/internal/ui/mounts/"):
            return "sys/internal/ui/mounts/:path"
        if trimmed.startswith("sys/remount/status/"):
            return "sys/remount/status/:id"
        return trimmed if trimmed.count("/") <= 2 and len(trimmed) <= 40 else "sys/unknown"

    def needs_unsealed(self, path: str) -> bool:
        return path.rstrip("/") not in UNAUTHENTICATED

    def needs_token(self, path: str) -> bool:
        return path.rstrip("/") not in UNAUTHENTICATED

    async def handle(self, call: Call) -> Reply:
        path = call.path.rstrip("/")
        handler = self._exact.get(path)
        if handler is not None:
            return await handler(call)
        if path.startswith("sys/mounts/"):
            rest = path[len("sys/mounts/") :]
            if rest.endswith("/tune"):
                return await self._tune(call, rest[: -len("/tune")])
            return await self._mount(call, rest)
        if path.startswith("sys/internal/ui/mounts/"):
            return await self._ui_mount(call, path[len("sys/internal/ui/mounts/") :])
        if path.startswith("sys/remount/status/"):
            return self._remount_status(call, path[len("sys/remount/status/") :])
        raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')

    def _require(self, call: Call, capability: str, path: str | None = None) -> None:
        require(
            self._core.authorizer, call.require_token(), path or call.path.rstrip("/"), capability
        )

    # -- health and seal ---------------------------------------------------------------------

    async def _health(self, call: Call) -> Reply:
        if call.method not in ("GET", "HEAD"):
            raise unsupported(call)
        barrier = self._core.barrier
        if not barrier.initialized:
            status = _status_code(call, "uninitcode", 501)
        elif barrier.sealed:
            status = _status_code(call, "sealedcode", 503)
        else:
            status = _status_code(call, "activecode", 200)
        body = {
            "initialized": barrier.initialized,
            "sealed": barrier.sealed,
            "standby": False,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(self._core.clock()),
            "version": __version__,
            "enterprise": False,
            "cluster_name": "kustos",
            "cluster_id": "",
        }
        return Reply(status=status, raw=body)

    def _seal_status_doc(self) -> dict[str, Any]:
        status = self._core.barrier.status()
        doc: dict[str, Any] = {
            "type": status.type,
            "initialized": status.initialized,
            "sealed": status.sealed,
            "t": status.threshold,
            "n": status.shares,
            "progress": status.progress,
            "nonce": "",
            "version": __version__,
            "build_date": "",
            "migration": False,
            "recovery_seal": False,
            "storage_type": self._core.storage.name,
        }
        if not status.sealed:
            doc["cluster_name"] = "kustos"
            doc["cluster_id"] = ""
        return doc

    async def _seal_status(self, call: Call) -> Reply:
        if call.method != "GET":
            raise unsupported(call)
        return Reply(raw=self._seal_status_doc())

    async def _init(self, call: Call) -> Reply:
        if call.method == "GET":
            return Reply(raw={"initialized": self._core.barrier.initialized})
        if call.method not in ("PUT", "POST"):
            raise unsupported(call)
        body = call.json()
        shares = int_param(
            body.get("secret_shares"), field="secret_shares", maximum=_MAX_SHARES, default=0
        )
        threshold = int_param(
            body.get("secret_threshold"), field="secret_threshold", maximum=_MAX_SHARES, default=0
        )
        if self._core.barrier.auto_unseal:
            shares, threshold = 1, 1
        result = await self._core.initialize(secret_shares=shares, secret_threshold=threshold)
        keys_b64 = [s.reveal() for s in result.shares]
        return Reply(
            raw={
                "keys": [base64.b64decode(k).hex() for k in keys_b64],
                "keys_base64": keys_b64,
                "root_token": result.root_token.reveal(),
            }
        )

    async def _unseal(self, call: Call) -> Reply:
        if call.method not in ("PUT", "POST"):
            raise unsupported(call)
        body = call.json()
        key = body.get("key")
        if key is not None and not isinstance(key, str):
            raise InvalidRequestError("'key' must be a string (an unseal key share, base64 or hex)")
        reset = bool_param(body.get("reset"), field="reset", default=False)
        await self._core.barrier.unseal(key=key, reset=reset)
        await self._core.finish_unseal()
        self._core.refresh_seal_metrics()
        return Reply(raw=self._seal_status_doc())

    async def _seal(self, call: Call) -> Reply:
        if call.method not in ("PUT", "POST"):
            raise unsupported(call)
        self._require(call, "sudo")
        self._core.barrier.seal()
        self._core.cache.clear()
        self._core.refresh_seal_metrics()
        return Reply.no_content()

    async def _leader(self, call: Call) -> Reply:
        return Reply(
            raw={
                "ha_enabled": False,
                "is_self": True,
                "active_time": "0001-01-01T00:00:00Z",
                "leader_address": "",
                "leader_cluster_address": "",
                "performance_standby": False,
                "performance_standby_last_remote_wal": 0,
            }
        )

    # -- mounts ----------------------------------------------------------------------------------

    async def _list_mounts(self, call: Call) -> Reply:
        if call.method != "GET":
            raise unsupported(call)
        self._require(call, "read")
        mounts = {m.path: m.describe() for m in self._core.mounts.entries()}
        return Reply(data=mounts, top=mounts)

    async def _mount(self, call: Call, path: str) -> Reply:
        mounts = self._core.mounts
        if call.method == "GET":
            self._require(call, "read")
            entry = mounts.get(normalize_mount_path(path))
            if entry is None:
                raise InvalidRequestError(f"no secrets engine is mounted at {path.strip('/')}/")
            return Reply(data=entry.describe())
        if call.method in ("POST", "PUT"):
            body = call.json()
            engine_type, options = self._kv_type(body)
            description = body.get("description") or ""
            if not isinstance(description, str):
                raise InvalidRequestError("'description' must be a string")
            config = self._mount_config(body.get("config"))
            normalized = normalize_mount_path(path)
            self._require(call, "update")
            done = answer_at_commit(Reply.no_content())
            await mounts.enable(
                normalized,
                type=engine_type,
                description=description,
                options=options,
                config=config,
            )
            return done
        if call.method == "DELETE":
            self._require(call, "delete")
            done = answer_at_commit(Reply.no_content())
            normalized = normalize_mount_path(path)
            if mounts.get(normalized) is not None:  # its leases end with it (as in Vault)
                await self._core.leases.revoke_prefix(normalized)
            removed = await mounts.disable(normalized)
            if removed is not None:
                self._core.cache.invalidate_prefix(removed.storage_prefix)
            return done
        raise unsupported(call)

    @staticmethod
    def _kv_type(body: dict[str, Any]) -> tuple[str, dict[str, str]]:
        engine_type = body.get("type")
        if not isinstance(engine_type, str) or not engine_type:
            raise InvalidRequestError(
                "missing secrets engine 'type' (this server serves kv version 2, transit and database)"
            )
        if engine_type in ("transit", "database"):
            return engine_type, {}
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise InvalidRequestError("'options' must be a JSON object")
        version = str(options.get("version", "")).strip()
        if engine_type == "kv-v2":
            version = version or "2"
        elif engine_type != "kv":
            raise InvalidRequestError(
                f"unknown secrets engine type {engine_type!r}; this server serves kv version 2, transit and database"
            )
        if version != "2":
            raise InvalidRequestError(
                'only KV version 2 is supported: pass options.version="2" (or type kv-v2)'
            )
        return "kv", {"version": "2"}

    @staticmethod
    def _mount_config(raw: object) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise InvalidRequestError("'config' must be a JSON object")
        config: dict[str, Any] = {}
        for name in ("default_lease_ttl", "max_lease_ttl"):
            if raw.get(name) not in (None, ""):
                config[name] = int(duration_param(raw[name], field=f"config.{name}"))
        if raw.get("force_no_cache") is not None:
            config["force_no_cache"] = bool_param(raw["force_no_cache"], field="force_no_cache")
        return config

    async def _remount(self, call: Call) -> Reply:
        """``POST sys/remount {"from", "to"}``: move a secrets engine; done at once, data kept."""
        if call.method not in ("PUT", "POST"):
            raise unsupported(call)
        body = call.json()
        source, target = body.get("from"), body.get("to")
        if not isinstance(source, str) or not isinstance(target, str) or not source or not target:
            raise InvalidRequestError(
                "'from' and 'to' are required: the mount's path and its new path"
            )
        if source.startswith("auth/") or target.startswith("auth/"):
            raise InvalidRequestError("moving auth methods is not supported; disable and enable it")
        self._require(call, "update")
        self._require(call, "sudo")
        moved = await self._core.mounts.move(source, target)
        migration_id = str(uuid.uuid4())
        self._moves[migration_id] = {
            "source_mount": normalize_mount_path(source),
            "target_mount": moved.path,
            "status": "success",
        }
        while len(self._moves) > _KEPT_MOVES:
            del self._moves[next(iter(self._moves))]
        return Reply(data={"migration_id": migration_id})

    def _remount_status(self, call: Call, migration_id: str) -> Reply:
        if call.method != "GET":
            raise unsupported(call)
        self._require(call, "read", "sys/remount/status")
        info = self._moves.get(migration_id)
        if info is None:
            raise NotFoundError(f"no mount move with migration id {migration_id!r}")
        return Reply(data={"migration_id": migration_id, "migration_info": dict(info)})

    async def _tune(self, call: Call, path: str) -> Reply:
        mounts = self._core.mounts
        normalized = normalize_mount_path(path)
        if call.method == "GET":
            self._require(call, "read")
            entry = mounts.get(normalized)
            if entry is None:
                raise InvalidRequestError(f"no secrets engine is mounted at {normalized}")
            described = entry.describe()
            return Reply(
                data={
                    **described["config"],
                    "description": entry.description,
                    "options": described["options"],
                }
            )
        if call.method in ("POST", "PUT"):
            body = call.json()
            options = body.get("options")
            if options is not None:
                if not isinstance(options, dict) or str(options.get("version", "2")) != "2":
                    raise InvalidRequestError(
                        'only KV version 2 is supported: options.version must stay "2"'
                    )
            description = body.get("description")
            if description is not None and not isinstance(description, str):
                raise InvalidRequestError("'description' must be a string")
            config = self._mount_config(
                {k: body.get(k) for k in ("default_lease_ttl", "max_lease_ttl", "force_no_cache")}
            )
            self._require(call, "update")
            done = answer_at_commit(Reply.no_content())
            await mounts.tune(normalized, description=description, config=config)
            return done
        raise unsupported(call)

    async def _ui_mount(self, call: Call, path: str) -> Reply:
        if call.method != "GET":
            raise unsupported(call)
        call.require_token()
        resolved = self._core.mounts.resolve(path)
        if resolved is None:
            raise InvalidRequestError(
                f'preflight capability check returned 403, please ensure client\'s policies grant access to path "{path}/"'
            )
        entry, _ = resolved
        return Reply(data={**entry.describe(), "path": entry.path})

    # -- keys ---------------------------------------------------------------------------------------

    async def _rotate(self, call: Call) -> Reply:
        if call.method not in ("PUT", "POST"):
            raise unsupported(call)
        self._require(call, "sudo")
        done = answer_at_commit(Reply.no_content())
        await self._core.barrier.rotate_key()
        return done

    async def _key_status(self, call: Call) -> Reply:
        if call.method != "GET":
            raise unsupported(call)
        self._require(call, "read")
        barrier = self._core.barrier
        versions = barrier.key_versions()
        active = next(v for v in versions if v.version == barrier.active_version)
        return Reply(
            data={
                "term": active.version,
                "install_time": rfc3339(active.created.timestamp()),
                "encryptions": None,
            }
        )

    async def _keyring(self, call: Call) -> Reply:
        if call.method != "GET":
            raise unsupported(call)
        self._require(call, "read")
        barrier = self._core.barrier
        return Reply(
            data={
                "active_version": barrier.active_version,
                "versions": [
                    {
                        "version": v.version,
                        "created_time": rfc3339(v.created.timestamp()),
                        "disabled": v.disabled,
                    }
                    for v in barrier.key_versions()
                ],
            }
        )

    async def _disable_key_version(self, call: Call) -> Reply:
        if call.method not in ("PUT", "POST"):
            raise unsupported(call)
        body = call.json()
        if body.get("version") is None:
            raise InvalidRequestError(
                "missing required parameter 'version' (the key version to disable)"
            )
        version = int_param(body["version"], field="version", minimum=1, maximum=2**32 - 1)
        self._require(call, "sudo")
        done = answer_at_commit(Reply.no_content())
        await self._core.barrier.disable_key_version(version, self._core.ciphertext_families())
        self._core.cache.clear()
        return done

    async def _rewrap(self, call: Call) -> Reply:
        if call.method not in ("PUT", "POST"):
            raise unsupported(call)
        body = call.json()
        limit = (
            None
            if body.get("max_records") is None
            else int_param(body["max_records"], field="max_records", minimum=1, maximum=2**31 - 1)
        )
        self._require(call, "sudo")
        report = await self._core.barrier.rewrap(
            self._core.ciphertext_families(), limit=limit, invalidate=self._core.cache.invalidate
        )
        return Reply(
            data={
                "active_version": report.active_version,
                "scanned": report.scanned,
                "rewrapped": report.rewrapped,
                "remaining": report.remaining,
                "failed": report.failed,
            }
        )
