"""Running the server: one event loop, the core opened before the port is bound, uvicorn on top.

:func:`serve` opens the :class:`~kustos.server.core.Core` (so a bad storage
URL or key file stops the start with a clear error), runs the ``--dev``
bootstrap, then serves the app with uvicorn (TLS when a certificate and key
are given). ``on_ready`` is called once the socket is listening.

uvicorn's fast HTTP parser (httptools) only knows registered HTTP methods,
and Vault clients send ``LIST``. :func:`http_protocol` returns a protocol
that parses with httptools and hands a connection whose next request
starts with ``LIST`` over to uvicorn's h11 protocol (as uvicorn itself does
for WebSocket upgrades); without httptools it is plain h11.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

import uvicorn

from kustos.config import ServerConfig
from kustos.server.app import create_app
from kustos.server.core import Core, DevBootstrap
from kustos.server.observability import configure_logging

__all__ = ["http_protocol", "serve"]

_log = logging.getLogger("kustos.server")

OnReady = Callable[[Core, DevBootstrap | None], None]


def http_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol, taught to accept Vault's ``LIST`` method (or ``"h11"``)."""
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed
        return "h11"

    class ListAwareHttpToolsProtocol(HttpToolsProtocol):
        """httptools for everything; a connection that sends ``LIST`` continues on h11."""

        _between_requests = True

        def on_message_begin(self) -> None:
            self._between_requests = False
            super().on_message_begin()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._between_requests = True

        def data_received(self, data: bytes) -> None:
            if (
                self._between_requests
                and data[:5] == b"LIST "
                and (self.cycle is None or self.cycle.response_complete)
                and not self.pipeline
            ):
                self._switch_to_h11(data)
                return
            super().data_received(data)

        def _switch_to_h11(self, data: bytes) -> None:
            self._unset_keepalive_if_required()
            self.connections.discard(self)
            protocol = H11Protocol(
                config=self.config,
                server_state=self.server_state,
                app_state=self.app_state,
                _loop=self.loop,
            )
            protocol.connection_made(self.transport)
            self.transport.set_protocol(protocol)
            protocol.data_received(data)

    return ListAwareHttpToolsProtocol


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def serve(
    config: ServerConfig,
    *,
    dev_root_token_id: str | None = None,
    cache_entries: int | None = None,
    on_ready: OnReady | None = None,
) -> None:
    """Open the core, bootstrap dev mode, and serve until SIGINT/SIGTERM."""
    configure_logging(level=config.log_level)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(
            _serve(
                config,
                dev_root_token_id=dev_root_token_id,
                cache_entries=cache_entries,
                on_ready=on_ready,
            )
        )


async def _serve(
    config: ServerConfig,
    *,
    dev_root_token_id: str | None,
    cache_entries: int | None,
    on_ready: OnReady | None,
) -> None:
    core = await Core.open(config, cache_entries=cache_entries)
    try:
        boot = await core.dev_bootstrap(root_token_id=dev_root_token_id) if config.dev else None
        app = create_app(config, core=core)
        options: dict[str, Any] = {}
        if config.tls_cert is not None and config.tls_key is not None:
            options = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
        uv_config = uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            http=http_protocol(),
            lifespan="on",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=30,
            # open change streams (sys/events/subscribe) would otherwise hold shutdown for up to a
            # minute; subscribers resume from their last event id after a restart
            timeout_graceful_shutdown=5,
            **options,
        )
        server = uvicorn.Server(uv_config)
        _tune_gc()
        watcher = asyncio.create_task(_announce(server, core, boot, on_ready))
        try:
            await server.serve()
        finally:
            watcher.cancel()
    finally:
        await core.close()


def _tune_gc() -> None:
    """Move start-up objects out of the collector's way and collect young objects less often.

    A request allocates a few hundred short-lived objects; with CPython's
    default thresholds that triggers a collection every few requests.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


async def _announce(
    server: uvicorn.Server, core: Core, boot: DevBootstrap | None, on_ready: OnReady | None
) -> None:
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    _log.info("listening", extra={"addr": f"{server.config.host}:{server.config.port}"})
    if on_ready is not None:
        on_ready(core, boot)
