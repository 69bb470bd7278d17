"""``sys/bound/*``: encrypt a value for one ServiceAccount; only that ServiceAccount's login opens it.

* ``POST sys/bound/encrypt`` ``{namespace, service_account, plaintext (base64), uid?, bind_uid?}``
  → ``{ciphertext, namespace, service_account, uid, key_version}``. Needs
  ``update`` on ``sys/bound/encrypt`` (or no token at all when
  ``allow_unauthenticated_encrypt`` is on). ``uid`` pins the value to one
  incarnation of the account; ``bind_uid: true`` asks the cluster for it
  (through the kubernetes auth mount's ``token_reviewer_jwt``).
* ``POST sys/bound/decrypt`` ``{ciphertext}`` → ``{plaintext (base64), namespace,
  service_account}``. The token itself is the authorization: it must come
  from a login at the configured kubernetes mount as exactly the account
  the value names (and carry its UID when the value is pinned; a pinned value
  also needs the account to exist now with that UID, read from the cluster at
  each open, since a token outlives its account). No policy grants this, not
  even ``root``.
* ``GET|POST sys/bound/config`` (``read`` / ``update``), ``POST sys/bound/rotate``
  (``update``), ``GET sys/bound/keys`` (``read``).
* ``POST sys/bound/kamus/encrypt``: Kamus's ``/api/v1/encrypt`` (the app maps
  that URL here) — body ``{"service-account", "namespace", "data"}``, the
  ciphertext as the plain-text answer; Kamus refuses the ``default``
  account, and so does this endpoint (and ``sys/bound/encrypt``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from kustos.crypto import bound
from kustos.crypto.bound import BoundIdentity
from kustos.errors import (
    DecryptionError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from kustos.server.access import require
from kustos.server.auth.issuing import str_field
from kustos.server.auth.kubernetes import service_account_uid
from kustos.server.auth.mounts import AuthTable, normalize_auth_path
from kustos.server.auth.records import Records
from kustos.server.bound import BoundConfig, opener_of
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.core import Core
from kustos.server.params import bool_param

__all__ = ["KAMUS_ENCRYPT", "BoundApi"]

KAMUS_ENCRYPT: Final = "sys/bound/kamus/encrypt"
"""Where the app sends Kamus's ``POST /api/v1/encrypt``."""
_ROUTES: Final = frozenset(
    {
        "sys/bound/encrypt",
        "sys/bound/decrypt",
        "sys/bound/config",
        "sys/bound/rotate",
        "sys/bound/keys",
        KAMUS_ENCRYPT,
    }
)
_MAX_PLAINTEXT: Final = 1024 * 1024


class BoundApi:
    """Answers ``sys/bound/*``."""

    prefix = "sys/bound/"

    def __init__(self, core: Core) -> None:
        self._core = core
        self._auth = AuthTable(storage=core.storage, clock=core.clock)

    @staticmethod
    def route(path: str) -> str:
        trimmed = path.rstrip("/")
        return trimmed if trimmed in _ROUTES else "sys/bound/unknown"

    @staticmethod
    def needs_unsealed(path: str) -> bool:
        return True

    @staticmethod
    def needs_token(path: str) -> bool:
        """Encrypting may be anonymous (``allow_unauthenticated_encrypt``; the handler decides)."""
        return path.rstrip("/") not in ("sys/bound/encrypt", KAMUS_ENCRYPT)

    async def handle(self, call: Call) -> Reply:
        path = call.path.rstrip("/")
        if path == "sys/bound/config":
            return await self._config(call)
        if path == "sys/bound/keys":
            if call.method != "GET":
                raise unsupported(call)
            require(self._core.authorizer, call.require_token(), path, "read")
            # the first read creates the first key: its answer is audited before that commits
            active, versions = await self._core.bound.key_versions(
                before_commit=lambda active, versions: answer_at_commit(
                    Reply(data={"active_version": active, "versions": versions})
                )
            )
            return Reply(data={"active_version": active, "versions": versions})
        if path not in _ROUTES:
            raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        if path == "sys/bound/rotate":
            require(self._core.authorizer, call.require_token(), path, "update")
            declared: list[Reply] = []
            version = await self._core.bound.rotate(
                before_commit=lambda version: declared.append(
                    answer_at_commit(Reply(data={"active_version": version}))
                )
            )
            return declared[-1] if declared else Reply(data={"active_version": version})
        if path == "sys/bound/decrypt":
            return await self._decrypt(call)
        config = await self._core.bound.config()
        if call.token is not None:
            require(self._core.authorizer, call.token, "sys/bound/encrypt", "update")
        elif not config.allow_unauthenticated_encrypt:
            raise PermissionDeniedError(
                "permission denied: encrypting needs a token with update on sys/bound/encrypt "
                "(sys/bound/config allow_unauthenticated_encrypt is off)"
            )
        body = call.json()
        if path == KAMUS_ENCRYPT:
            return await self._kamus(body)
        return await self._encrypt(body, config)

    # -- config -----------------------------------------------------------------------------

    async def _config(self, call: Call) -> Reply:
        service = self._core.bound
        if call.method == "GET":
            require(self._core.authorizer, call.require_token(), "sys/bound/config", "read")
            return Reply(data=(await service.config()).to_doc())
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        require(self._core.authorizer, call.require_token(), "sys/bound/config", "update")
        body = call.json()
        current = await service.config()
        mount = current.kubernetes_mount
        if "kubernetes_mount" in body:
            mount = normalize_auth_path(str_field(body, "kubernetes_mount")).rstrip("/")
        allow = current.allow_unauthenticated_encrypt
        if "allow_unauthenticated_encrypt" in body:
            allow = bool_param(
                body["allow_unauthenticated_encrypt"], field="allow_unauthenticated_encrypt"
            )
        done = answer_at_commit(Reply.no_content())
        await service.set_config(
            BoundConfig(kubernetes_mount=mount, allow_unauthenticated_encrypt=allow)
        )
        return done

    # -- encrypt ----------------------------------------------------------------------------

    async def _encrypt(self, body: dict[str, Any], config: BoundConfig) -> Reply:
        namespace = str_field(body, "namespace").strip()
        name = str_field(body, "service_account").strip()
        if not namespace or not name:
            raise InvalidRequestError("namespace and service_account are required")
        plaintext = _plaintext(body)
        uid = str_field(body, "uid").strip()
        if not uid and body.get("bind_uid") is not None:
            if bool_param(body["bind_uid"], field="bind_uid"):
                uid = await self._lookup_uid(config, namespace, name)
        identity = _identity(namespace, name, uid)

        def answer(text: str, version: int) -> Reply:
            return Reply(
                data={
                    "ciphertext": text,
                    "namespace": identity.namespace,
                    "service_account": identity.name,
                    "uid": identity.uid,
                    "key_version": version,
                }
            )

        # the first value sealed creates the first root key: its answer is declared before that
        text, version = await self._core.bound.seal(
            plaintext,
            identity=identity,
            before_commit=lambda text, version: answer_at_commit(answer(text, version)),
        )
        return answer(text, version)

    async def _kamus(self, body: dict[str, Any]) -> Reply:
        namespace = str_field(body, "namespace").strip()
        name = str_field(body, "service-account").strip()
        data = body.get("data")
        if not namespace or not name or not isinstance(data, str):
            raise InvalidRequestError(
                'a Kamus encrypt request needs "service-account", "namespace" and "data" (text)'
            )
        if len(data) > _MAX_PLAINTEXT:
            raise InvalidRequestError(f"data is larger than {_MAX_PLAINTEXT} bytes")

        def answer(text: str) -> Reply:
            return Reply(body=text.encode("ascii"), content_type="text/plain; charset=utf-8")

        text, _ = await self._core.bound.seal(
            data.encode("utf-8"),
            identity=_identity(namespace, name, ""),
            before_commit=lambda text, _version: answer_at_commit(answer(text)),
        )
        return answer(text)

    async def _lookup_uid(self, config: BoundConfig, namespace: str, name: str) -> str:
        await self._auth.load()
        mount_path = normalize_auth_path(config.kubernetes_mount)
        mount = next((m for m in self._auth.entries() if m.path == mount_path), None)
        if mount is None or mount.type != "kubernetes":
            raise InvalidRequestError(
                f"bind_uid needs a kubernetes auth method at auth/{mount_path} "
                "(sys/bound/config kubernetes_mount), or pass the uid"
            )
        records = Records(storage=self._core.storage, barrier=self._core.barrier, mount=mount)
        return await service_account_uid(records, namespace=namespace, name=name)

    # -- decrypt ----------------------------------------------------------------------------

    async def _decrypt(self, call: Call) -> Reply:
        token = call.require_token()
        text = str_field(call.json(), "ciphertext").strip()
        if not text:
            raise InvalidRequestError("missing ciphertext")
        value = bound.parse(text)
        config = await self._core.bound.config()
        opener = opener_of(token, kubernetes_mount=config.kubernetes_mount)
        if opener is None:
            raise PermissionDeniedError(
                "permission denied: only a token from a ServiceAccount login at "
                f"auth/{config.kubernetes_mount}/login opens bound values "
                f"(this one came from {token.path})"
            )
        wanted = value.identity
        if (opener.namespace, opener.name) != (wanted.namespace, wanted.name):
            raise PermissionDeniedError(
                f"permission denied: the value is bound to service account {wanted.account}, "
                f"this token belongs to {opener.account}"
            )
        if wanted.uid and wanted.uid != opener.uid:
            raise PermissionDeniedError(
                f"permission denied: the value is bound to service account {wanted.account} "
                f"with uid {wanted.uid}; this token's account has uid {opener.uid or 'unknown'} "
                "(deleted and recreated?)"
            )
        if wanted.uid:
            await self._check_account_now(config, wanted)
        try:
            plaintext = await self._core.bound.open(value, opener=opener)
        except DecryptionError:
            raise InvalidRequestError(
                "the bound value could not be opened: it was altered, or sealed by another "
                "server (or with a key version this server does not have)"
            ) from None
        return Reply(
            data={
                "plaintext": base64.b64encode(plaintext).decode("ascii"),
                "namespace": opener.namespace,
                "service_account": opener.name,
            }
        )

    async def _check_account_now(self, config: BoundConfig, wanted: BoundIdentity) -> None:
        """A token outlives the account it logged in as: a value pinned to a UID opens only while
        the cluster still has that account with that UID (asked now, with the reviewer's token)."""
        try:
            current = await self._lookup_uid(config, wanted.namespace, wanted.name)
        except NotFoundError:
            raise PermissionDeniedError(
                f"permission denied: service account {wanted.account} no longer exists "
                f"(the value is bound to its uid {wanted.uid})"
            ) from None
        except InvalidRequestError as exc:
            raise PermissionDeniedError(
                "permission denied: a value bound to a uid opens only once the server has read "
                f"the account's current uid from the cluster, and it cannot: {exc}"
            ) from None
        if current != wanted.uid:
            raise PermissionDeniedError(
                f"permission denied: service account {wanted.account} was deleted and recreated "
                f"(its uid is now {current}; the value is bound to {wanted.uid})"
            )


def _identity(namespace: str, name: str, uid: str) -> BoundIdentity:
    if name == "default":
        raise InvalidRequestError(
            "refusing to encrypt for the default service account: every pod without its own "
            "account runs as it; create a service account for the workload"
        )
    return BoundIdentity(namespace=namespace, name=name, uid=uid)


def _plaintext(body: dict[str, Any]) -> bytes:
    raw = body.get("plaintext")
    if not isinstance(raw, str):
        raise InvalidRequestError("plaintext (base64) is required")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("plaintext must be base64") from None
    if len(data) > _MAX_PLAINTEXT:
        raise InvalidRequestError(f"plaintext is larger than {_MAX_PLAINTEXT} bytes")
    return data
