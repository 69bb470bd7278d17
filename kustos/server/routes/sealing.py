"""Sealing endpoints: the Sealed Secrets controller's (``/v1/cert.pem``, ``verify``, ``rotate``) and ``sys/sealing/*``.

The Sealed Secrets controller serves ``GET /v1/cert.pem``, ``POST /v1/verify``
and ``POST /v1/rotate`` at the root of ``/v1``; so does Kustos, so kubeseal and
``kustos seal --controller-url`` work unchanged. These three names are exact
paths (a mount called ``verify-x`` is not shadowed) and reserved in the mount
table (``kustos.server.mounts.RESERVED_PREFIXES``).

Authentication and policy paths (capability checked through the one
``authorize`` hook):

=====================================  ===============  ===============================
endpoint                               token            capability on
=====================================  ===============  ===============================
``GET cert.pem``                       none (public)    —
``GET sys/sealing/cert``               none (public)    —
``POST verify``                        yes              ``update`` on ``sys/sealing/verify``
``POST rotate``                        yes              ``update`` on ``sys/sealing/rotate``
``GET|LIST sys/sealing/keys``          yes              ``read`` (LIST: ``list``)
``POST sys/sealing/keys/rotate``       yes              ``update``
``POST sys/sealing/keys/backup``       yes              ``sudo``
``POST sys/sealing/keys/import``       yes              ``sudo``
``GET|POST sys/sealing/config``        yes              ``read`` / ``update``
``POST sys/sealing/unseal``            yes              ``update``
=====================================  ===============  ===============================

``sys/sealing/unseal`` is the operator's contract: body
``{"sealed_secret": <SealedSecret, either group>}``, answer
``{"data": {"secret": <v1 Secret manifest>, "key_id": "..."}}``; a value
that does not open is a 400 naming the object and key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final

from kustos.errors import DecryptionError, InvalidRequestError, NotFoundError, SealedError
from kustos.gitops.sealing import (
    SealingKeyEntry,
    SealingKeyring,
    format_of,
    import_sealed_secrets_keys,
    is_backup,
    load_manifest,
    load_manifests,
    open_values,
    read_backup,
    reencrypt,
    unseal,
    write_backup,
)
from kustos.sensitive import Sensitive
from kustos.server.access import require
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.core import Core
from kustos.server.params import duration_param, int_param, str_list_param
from kustos.server.sealing import MAX_KEY_BITS, MIN_KEY_BITS, SealingConfig, SealingService

__all__ = ["ROOT_PATHS", "SealingRootApi", "SealingSysApi", "sealing_apis"]

ROOT_PATHS: Final = ("cert.pem", "verify", "rotate")
"""The Sealed Secrets controller's paths, served at the root of ``/v1``."""
PEM_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
_PUBLIC: Final = frozenset({"cert.pem", "sys/sealing/cert"})

_Handler = Callable[[Call], Awaitable[Reply]]


def _service(core: Core) -> SealingService:
    service = getattr(core, "sealing", None)
    if not isinstance(service, SealingService):  # pragma: no cover - wiring error
        raise NotFoundError("sealing is not enabled on this server")
    return service


def _require_unsealed(core: Core) -> None:
    if core.barrier.sealed or not core.barrier.initialized:
        raise SealedError()


def _sealed_secret(call: Call) -> dict[str, Any]:
    """A SealedSecret request body (JSON or YAML), as kubeseal sends it."""
    if not call.body.strip():
        raise InvalidRequestError("missing request body: a SealedSecret")
    doc = load_manifest(call.body, source="request body")
    format_of(doc, source="request body")
    return doc


def _parse_period(value: object) -> timedelta | None:
    seconds = duration_param(
        value, field="renew_period", default=0.0
    )  # "30d" is a Go-style duration here
    return timedelta(seconds=seconds) if seconds > 0 else None


def _parse_time(value: object) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidRequestError("key_cutoff_time must be an RFC 3339 time or empty")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(f"key_cutoff_time: invalid RFC 3339 time {value!r}") from None
    if parsed.tzinfo is None:
        raise InvalidRequestError("key_cutoff_time must include a time zone (e.g. Z)")
    return parsed


def _describe(entry: SealingKeyEntry, *, active: bool) -> dict[str, Any]:
    return {
        "key_id": entry.key_id,
        "created": entry.created_at.isoformat(),
        "not_after": entry.certificate.not_after.isoformat(),
        "active": active,
        "origin": entry.origin,
        "bits": entry.certificate.key_size,
    }


class SealingRootApi:
    """One of ``cert.pem``, ``verify``, ``rotate`` at the root of ``/v1`` (an exact path)."""

    def __init__(self, core: Core, name: str) -> None:
        if name not in ROOT_PATHS:
            raise ValueError(f"not a sealing root path: {name}")
        self._core = core
        self.prefix = name

    def route(self, path: str) -> str:
        return self.prefix

    def needs_unsealed(self, path: str) -> bool:
        return self.prefix != "cert.pem"

    def needs_token(self, path: str) -> bool:
        return self.prefix != "cert.pem"

    async def handle(self, call: Call) -> Reply:
        if self.prefix == "cert.pem":
            if call.method not in ("GET", "HEAD"):
                raise unsupported(call)
            _require_unsealed(self._core)

            def answer(keyring: SealingKeyring) -> Reply:
                return Reply(
                    body=keyring.sealing_certificate().pem(), content_type=PEM_CONTENT_TYPE
                )

            # a read that renews the key declares its answer before the new key commits
            keyring = await _service(self._core).keyring(
                renewed=lambda renewed: answer_at_commit(answer(renewed))
            )
            return answer(keyring)
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        require(self._core.authorizer, call.require_token(), f"sys/sealing/{self.prefix}", "update")
        doc = _sealed_secret(call)
        keyring = await _service(self._core).keyring()
        try:
            if self.prefix == "verify":
                open_values(doc, keys=keyring.private_keys())
                return Reply(body=b"", content_type=PEM_CONTENT_TYPE)
            rotated = reencrypt(
                doc,
                keys=keyring.private_keys(),
                certificate=keyring.sealing_bundle(),
                now=_service(self._core).now(),
            )
        except DecryptionError as exc:
            return Reply(status=409, raw={"errors": [str(exc)]})
        return Reply(raw=rotated)


class SealingSysApi:
    """``sys/sealing/*``: keys, config, certificate bundle, and the operator's unseal."""

    prefix = "sys/sealing/"

    def __init__(self, core: Core) -> None:
        self._core = core
        self._exact: dict[str, _Handler] = {
            "sys/sealing/cert": self._cert,
            "sys/sealing/keys": self._keys,
            "sys/sealing/keys/rotate": self._rotate,
            "sys/sealing/keys/backup": self._backup,
            "sys/sealing/keys/import": self._import,
            "sys/sealing/config": self._config,
            "sys/sealing/unseal": self._unseal,
        }

    def route(self, path: str) -> str:
        trimmed = path.rstrip("/")
        return trimmed if trimmed in self._exact else "sys/sealing/unknown"

    def needs_unsealed(self, path: str) -> bool:
        return path.rstrip("/") not in _PUBLIC

    def needs_token(self, path: str) -> bool:
        return path.rstrip("/") not in _PUBLIC

    async def handle(self, call: Call) -> Reply:
        handler = self._exact.get(call.path.rstrip("/"))
        if handler is None:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        return await handler(call)

    @property
    def _service(self) -> SealingService:
        return _service(self._core)

    def _require(self, call: Call, capability: str) -> None:
        require(self._core.authorizer, call.require_token(), call.path.rstrip("/"), capability)

    async def _cert(self, call: Call) -> Reply:
        if call.method not in ("GET", "HEAD"):
            raise unsupported(call)
        _require_unsealed(self._core)

        def answer(keyring: SealingKeyring) -> Reply:
            return Reply(body=keyring.sealing_bundle().bundle_pem(), content_type=PEM_CONTENT_TYPE)

        # a read that renews the key declares its answer before the new key commits
        keyring = await self._service.keyring(
            renewed=lambda renewed: answer_at_commit(answer(renewed))
        )
        return answer(keyring)

    async def _keys(self, call: Call) -> Reply:
        if call.method not in ("GET", "LIST"):
            raise unsupported(call)
        self._require(call, "list" if call.method == "LIST" else "read")
        keyring = await self._service.keyring()
        newest = keyring.newest
        keys = [_describe(e, active=e is newest) for e in keyring.entries]
        return Reply(data={"keys": keys, "active_key_id": newest.key_id if newest else None})

    async def _rotate(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require(call, "update")
        declared: list[Reply] = []
        entry = await self._service.rotate(
            before_commit=lambda entry: declared.append(
                answer_at_commit(Reply(data=_describe(entry, active=True)))
            )
        )
        return declared[-1] if declared else Reply(data=_describe(entry, active=True))

    async def _backup(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require(call, "sudo")
        body = call.json()
        recipients = str_list_param(body.get("age_recipients"), field="age_recipients")
        passphrase = body.get("passphrase")
        if passphrase is not None and not isinstance(passphrase, str):
            raise InvalidRequestError("'passphrase' must be a string")
        if bool(recipients) == bool(passphrase):
            raise InvalidRequestError("give exactly one of 'passphrase' or 'age_recipients'")
        keyring = await self._service.keyring()
        bundle = write_backup(
            keyring,
            passphrase=Sensitive(passphrase) if passphrase else None,
            age_recipients=recipients,
        )
        return Reply(
            data={
                "backup": bundle.decode(),
                "keys": len(keyring),
                "key_ids": [e.key_id for e in keyring.entries],
                "encryption": "age" if recipients else "passphrase",
            }
        )

    async def _import(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require(call, "sudo")
        body = call.json()
        entries: list[SealingKeyEntry] = []
        secrets = body.get("secrets")
        if secrets is not None:
            if not isinstance(secrets, list) or not all(isinstance(s, dict) for s in secrets):
                raise InvalidRequestError("'secrets' must be a list of Secret objects")
            flat: list[dict[str, Any]] = []
            for doc in secrets:
                flat.extend((doc.get("items") or []) if doc.get("kind") == "List" else [doc])
            entries.extend(import_sealed_secrets_keys(flat))
        manifest = body.get("manifest")
        if manifest is not None:
            if not isinstance(manifest, str):
                raise InvalidRequestError("'manifest' must be YAML or JSON text")
            entries.extend(import_sealed_secrets_keys(load_manifests(manifest, source="manifest")))
        backup = body.get("backup")
        if backup is not None:
            if not isinstance(backup, str) or not is_backup(backup.encode()):
                raise InvalidRequestError("'backup' must be a sealing key backup bundle (text)")
            passphrase = body.get("passphrase")
            identities = str_list_param(body.get("age_identities"), field="age_identities")
            entries.extend(
                read_backup(
                    backup.encode(),
                    passphrase=Sensitive(passphrase)
                    if isinstance(passphrase, str) and passphrase
                    else None,
                    age_identities=[i.encode() for i in identities],
                ).entries
            )
        if secrets is None and manifest is None and backup is None:
            raise InvalidRequestError(
                "give 'secrets' (key Secret objects), 'manifest' (YAML/JSON text) or 'backup'"
            )

        def answer(keyring: SealingKeyring, results: list[tuple[SealingKeyEntry, bool]]) -> Reply:
            newest = keyring.newest
            return Reply(
                data={
                    "keys": [
                        {
                            **_describe(e, active=newest is not None and e.key_id == newest.key_id),
                            "imported": new,
                        }
                        for e, new in results
                    ]
                }
            )

        declared: list[Reply] = []  # the answer, audited before the keys commit
        results = await self._service.import_entries(
            entries,
            before_commit=lambda keyring, results: declared.append(
                answer_at_commit(answer(keyring, results))
            ),
        )
        if declared:
            return declared[-1]
        return answer(await self._service.stored_keyring(), results)

    async def _config(self, call: Call) -> Reply:
        service = self._service
        if call.method == "GET":
            self._require(call, "read")
            config = await service.config()
        elif call.method in ("POST", "PUT"):
            self._require(call, "update")
            body = call.json()
            known = {"renew_period", "key_cutoff_time", "key_bits"}
            unknown = sorted(set(body) - known)
            if unknown:
                raise InvalidRequestError(
                    f"unknown parameter(s) {', '.join(unknown)}; expected {sorted(known)}"
                )
            changes: dict[str, Any] = {}
            if "renew_period" in body:
                changes["renew_period"] = _parse_period(body["renew_period"])
            if "key_cutoff_time" in body:
                changes["key_cutoff_time"] = _parse_time(body["key_cutoff_time"])
            if body.get("key_bits") is not None:
                changes["key_bits"] = int_param(
                    body["key_bits"],
                    field="key_bits",
                    minimum=MIN_KEY_BITS,
                    maximum=MAX_KEY_BITS,
                )
                if changes["key_bits"] % 1024:
                    raise InvalidRequestError(
                        "key_bits must be a multiple of 1024 (2048, 3072 or 4096)"
                    )
            config = replace(await service.config(), **changes)
            service.check_config(config)
            done = answer_at_commit(await self._config_reply(config))
            await service.set_config(config)
            return done
        else:
            raise unsupported(call)
        return await self._config_reply(config)

    async def _config_reply(self, config: SealingConfig) -> Reply:
        keyring = await self._service.stored_keyring()
        due = config.policy().next_renewal(keyring) if len(keyring) else None
        return Reply(data={**config.to_doc(), "next_renewal": due.isoformat() if due else None})

    async def _unseal(self, call: Call) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._require(call, "update")
        sealed = call.json().get("sealed_secret")
        if not isinstance(sealed, dict):
            raise InvalidRequestError("missing 'sealed_secret': a SealedSecret object (JSON)")
        format_of(sealed, source="sealed_secret")
        keyring = await self._service.keyring()
        try:
            secret = unseal(sealed, keys=keyring.private_keys())
        except DecryptionError as exc:
            raise InvalidRequestError(str(exc)) from None
        return Reply(data={"secret": secret.to_manifest(), "key_id": secret.key_id})


def sealing_apis(core: Core) -> list[SealingSysApi | SealingRootApi]:
    """The sealing areas for :func:`kustos.server.routes.build_apis` (``sys/sealing/`` before ``sys/``)."""
    return [SealingSysApi(core), *(SealingRootApi(core, name) for name in ROOT_PATHS)]
