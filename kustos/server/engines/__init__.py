"""Secrets engines: what answers under a mount (``kv`` for now; transit and others later).

An engine gets the mount entry, the path inside the mount and the
:class:`~kustos.server.calls.Call`, and returns a
:class:`~kustos.server.calls.Reply`. It keeps its data under the mount's
``storage_prefix`` and encrypts secrets through the barrier.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kustos.server.barrier import CiphertextFamily
    from kustos.server.calls import Call, Reply
    from kustos.server.mounts import MountEntry

__all__ = ["Engine"]


class Engine(Protocol):
    """What ``Core.engines[mount.type]`` must offer."""

    def route(self, method: str, rest: str) -> str:
        """Route template for metrics and logs (never the secret path itself)."""
        ...

    def handle(self, call: Call, mount: MountEntry, rest: str) -> Awaitable[Reply]:
        """The reply to one request under ``mount`` (an awaitable; errors may also be raised at once)."""
        ...

    def read_only(self, method: str, rest: str) -> bool:
        """Whether this request can change nothing (then its audit entries are written together)."""
        ...

    def ciphertext_families(self, mount: MountEntry) -> list[CiphertextFamily]:
        """Where this mount stores ciphertexts (for rewrap and key-version checks)."""
        ...
