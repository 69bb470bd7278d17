"""The agent's metrics and probes: ``/metrics`` (Prometheus), ``/readyz`` and ``/healthz``.

``/readyz`` answers 200 once every file has been rendered and access has not
been revoked (503 with the reason otherwise), so a pod whose secrets were
wiped leaves its Service's endpoints. ``/healthz`` answers 200 while the
process runs. Metrics count renders, removals by reason, logins and errors,
and how long after the server committed a change it reached the file; they
carry file names and reasons, never values or paths' contents.

The listener is a small Starlette app under uvicorn, run as a task inside the
agent's event loop (:func:`serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["AgentMetrics", "Readiness", "serve"]

_LAG_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Readiness:
    """Whether the pod may take traffic, and if not, why (a reason, never a value)."""

    ready: bool = False
    reason: str = "starting"


@dataclass
class AgentMetrics:
    """Prometheus metrics in their own registry."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.ready = Gauge("kustos_agent_ready", "1 when every file is rendered", registry=r)
        self.files = Gauge("kustos_agent_files", "Files the agent has on disk now", registry=r)
        self.renders = Counter(
            "kustos_agent_renders", "Files written with new content", ["file"], registry=r
        )
        self.removals = Counter(
            "kustos_agent_removals", "Files removed, by reason", ["reason"], registry=r
        )
        self.logins = Counter(
            "kustos_agent_logins", "Logins with the ServiceAccount token", registry=r
        )
        self.renewals = Counter("kustos_agent_renewals", "Token renewals", registry=r)
        self.errors = Counter("kustos_agent_errors", "Errors, by kind", ["kind"], registry=r)
        self.stream_connected = Gauge(
            "kustos_agent_stream_connected", "1 while the change stream is open", registry=r
        )
        self.token_ttl = Gauge(
            "kustos_agent_token_ttl_seconds", "TTL of the agent's token when issued", registry=r
        )
        self.execs = Counter(
            "kustos_agent_execs", "--exec runs, by outcome", ["outcome"], registry=r
        )
        self.lag = Histogram(
            "kustos_agent_change_lag_seconds",
            "From the server committing a change to the file being written or removed",
            buckets=_LAG_BUCKETS,
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _app(metrics: AgentMetrics, readiness: Readiness) -> Starlette:
    async def metrics_route(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def ready_route(request: Request) -> Response:
        if readiness.ready:
            return PlainTextResponse("ok\n")
        return PlainTextResponse(f"not ready: {readiness.reason}\n", status_code=503)

    async def health_route(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(
        routes=[
            Route("/metrics", metrics_route, methods=["GET"]),
            Route("/readyz", ready_route, methods=["GET"]),
            Route("/healthz", health_route, methods=["GET"]),
        ]
    )


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the agent's loop: the agent handles SIGTERM itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    host: str, port: int, *, metrics: AgentMetrics, readiness: Readiness, stop: asyncio.Event
) -> None:
    """Serve the probes and metrics on ``host:port`` until ``stop`` is set."""
    config = uvicorn.Config(
        _app(metrics, readiness),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="none",
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="agent-http")
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=5)
