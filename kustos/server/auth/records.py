"""Reading and writing an auth method's records, each one a barrier ciphertext bound to its key.

Every record an auth method stores (its config with a reviewer JWT, roles,
role-id and secret-id entries, users with their password hashes) is a JSON
object encrypted by the barrier with the storage key as associated data, so
a record copied or moved to another key fails to decrypt instead of granting
someone else's role. :data:`AUTH_METHOD_FAMILY` tells key rotation (rewrap,
disabling old key versions) where these ciphertexts are.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import orjson

from kustos.errors import DecryptionError
from kustos.server.auth.mounts import METHOD_PREFIX, AuthMount
from kustos.server.barrier import Barrier, CiphertextFamily
from kustos.store.base import StorageBackend, Transaction

__all__ = ["AUTH_METHOD_FAMILY", "Records", "auth_method_families"]

AUTH_METHOD_FAMILY: Final = CiphertextFamily.whole_records(
    METHOD_PREFIX, lambda key: key.encode("utf-8")
)
"""Every record under ``auth-methods/`` is one ciphertext whose context is its storage key."""


def auth_method_families() -> list[CiphertextFamily]:
    """Where auth methods keep barrier ciphertexts (for ``Core.ciphertext_families``)."""
    return [AUTH_METHOD_FAMILY]


class Records:
    """JSON records of one auth mount under ``auth-methods/<uuid>/``, encrypted by the barrier."""

    def __init__(self, *, storage: StorageBackend, barrier: Barrier, mount: AuthMount) -> None:
        self._storage = storage
        self._barrier = barrier
        self._prefix = mount.storage_prefix

    def key(self, name: str) -> str:
        return self._prefix + name

    def seal(self, name: str, doc: dict[str, Any]) -> bytes:
        key = self.key(name)
        return self._barrier.encrypt(orjson.dumps(doc), context=key.encode("utf-8"))

    async def open(self, name: str, blob: bytes) -> dict[str, Any]:
        key = self.key(name)
        plain = await self._barrier.decrypt(blob, context=key.encode("utf-8"))
        try:
            doc = orjson.loads(plain)
        except orjson.JSONDecodeError:
            raise DecryptionError() from None
        if not isinstance(doc, dict):
            raise DecryptionError()
        return doc

    async def get(
        self, name: str, *, tx: Transaction | None = None, for_update: bool = False
    ) -> dict[str, Any] | None:
        blob = await (
            tx.get(self.key(name), for_update=for_update)
            if tx is not None
            else self._storage.get(self.key(name))
        )
        return None if blob is None else await self.open(name, blob)

    async def put(self, name: str, doc: dict[str, Any], *, tx: Transaction | None = None) -> None:
        blob = self.seal(name, doc)
        if tx is not None:
            await tx.put(self.key(name), blob)
            return
        async with self._storage.transaction() as own:
            await own.put(self.key(name), blob)

    async def delete(self, name: str, *, tx: Transaction | None = None) -> None:
        if tx is not None:
            await tx.delete(self.key(name))
            return
        async with self._storage.transaction() as own:
            await own.delete(self.key(name))

    async def delete_prefix(self, name: str, *, tx: Transaction) -> None:
        await tx.delete_prefix(self.key(name))

    async def list(self, name: str) -> list[str]:
        """Child names under ``name`` (which ends with ``/``), like the storage backend's ``list``."""
        return await self._storage.list(self.key(name))

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._storage.transaction()
