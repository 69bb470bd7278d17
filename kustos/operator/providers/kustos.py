"""The ``kustos`` provider: a Kustos server's KV mount, read like Vault, and *pushed*.

Reads go through the Vault KV v2 wire API (:class:`~kustos.operator.providers.vault.VaultProvider`;
mount ``secret`` unless ``spec.provider.kustos.path`` says otherwise). On top
of that the provider follows the server's change stream
(``GET /v1/sys/events/subscribe?prefix=<mount>/``, :mod:`kustos.client.events`):
each committed change under the mount is handed to the controller's callback
as the key that changed, so the ExternalSecrets reading it are reconciled at
once instead of at their next ``refreshInterval``. When the stream drops the
controller keeps polling at ``refreshInterval``; the stream reconnects with a
growing back-off and resumes from the last event it saw (a ``resync`` from
the server, when changes were lost, reconciles every ExternalSecret of the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import httpx

from kustos.client.events import follow
from kustos.operator.providers.base import Provider, ProviderContext
from kustos.operator.providers.vault import (
    VaultEndpoint,
    VaultLogin,
    VaultProvider,
    build_endpoint,
)
from kustos.sensitive import Sensitive

__all__ = ["READY_WAIT", "ChangeCallback", "KustosProvider", "create"]

ChangeCallback = Callable[[frozenset[str] | None], None]
"""Called with the keys (as ExternalSecrets name them) that changed, or ``None``: re-read everything."""

READY_WAIT: Final = 2.0
"""Seconds :meth:`KustosProvider.watch` waits for the stream to be live before the first read."""

_log = logging.getLogger("kustos.operator")


class KustosProvider(VaultProvider):
    """A KV v2 mount of a Kustos server, with push through the change stream."""

    def __init__(
        self,
        *,
        endpoint: VaultEndpoint,
        mount: str,
        kv_version: str,
        token: Sensitive[str] | None = None,
        login: VaultLogin | None = None,
        backoff: tuple[float, float] = (0.2, 30.0),
    ) -> None:
        super().__init__(
            endpoint=endpoint, mount=mount, kv_version=kv_version, token=token, login=login
        )
        self._stream_http: httpx.AsyncClient | None = None
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        """Whether the change stream is live right now (else the controller's polling is all there is)."""

    async def watch(self, on_change: ChangeCallback) -> None:
        """Follow the change stream in the background; return once it is live (or after :data:`READY_WAIT`)."""
        if self._task is not None:
            return
        live = asyncio.Event()
        self._task = asyncio.create_task(
            self._follow(on_change, live), name=f"kustos-stream-{self._mount}"
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_WAIT):
                await live.wait()

    async def _follow(self, on_change: ChangeCallback, live: asyncio.Event) -> None:
        self._stream_http = self._endpoint.httpx_client()
        await self._ensure_token()  # a login method (kubernetes, appRole) logs in first
        events = follow(
            self._stream_http,
            prefix=f"{self._mount}/",
            token=self.current_token,  # asked before each connection: a new login is picked up
            backoff=self._backoff,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                if event.type == "ready":
                    self.connected = True
                    live.set()
                elif event.type == "change":
                    on_change(frozenset({event.path}))
                elif event.type == "resync":
                    on_change(None)
                elif event.type == "disconnected":
                    self.connected = False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._stream_http is not None:
            await self._stream_http.aclose()
            self._stream_http = None
        await super().close()


async def create(context: ProviderContext) -> Provider:
    """Factory registered as ``kustos``."""
    endpoint, mount, version, token, login = await build_endpoint(context, default_mount="secret")
    return KustosProvider(
        endpoint=endpoint, mount=mount, kv_version=version, token=token, login=login
    )
