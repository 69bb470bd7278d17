"""The injector's HTTPS endpoint: ``POST /mutate``, ``GET /healthz``, ``GET /metrics``.

:func:`create_app` builds the Starlette app around :func:`~kustos.injector.reviewing.review`;
:func:`serve` runs it with uvicorn on TLS (the API server only calls webhooks
over HTTPS, and checks the certificate against the ``caBundle`` of the
MutatingWebhookConfiguration).

Metrics (a registry of its own, Prometheus text format):

* ``kustos_injector_admissions_total{outcome}`` — ``injected``, ``skipped``,
  ``refused`` (bad annotations) and ``invalid`` (a body that is not an AdmissionReview);
* ``kustos_injector_admission_seconds`` — time spent deciding, per review.

Log lines name the pod and the outcome, never an annotation's value (a
template may quote a secret's path, never a secret, but values stay out anyway).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Final

import orjson
import uvicorn
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kustos.injector.mutating import InjectorSettings
from kustos.injector.reviewing import ReviewError, review

__all__ = ["InjectorMetrics", "create_app", "serve"]

_log = logging.getLogger("kustos.injector")
_MAX_BODY: Final = 8 * 1024 * 1024
"""An AdmissionReview carries the object (and, on update, the old one); etcd caps objects at 1.5 MiB."""


class InjectorMetrics:
    """The injector's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.admissions = Counter(
            "kustos_injector_admissions_total",
            "AdmissionReviews answered, by outcome (injected, skipped, refused, invalid).",
            ["outcome"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "kustos_injector_admission_seconds",
            "Time spent deciding one AdmissionReview (reading, mutating, patching).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        for outcome in ("injected", "skipped", "refused", "invalid"):
            self.admissions.labels(outcome)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def create_app(settings: InjectorSettings, *, metrics: InjectorMetrics | None = None) -> Starlette:
    """The injector's ASGI app."""
    counters = metrics or InjectorMetrics()

    async def mutate(request: Request) -> Response:
        started = time.perf_counter()
        body = await request.body()
        if len(body) > _MAX_BODY:
            counters.admissions.labels("invalid").inc()
            return JSONResponse({"errors": ["the AdmissionReview is too large"]}, status_code=413)
        try:
            document = orjson.loads(body)
            verdict = review(document, settings)
        except (orjson.JSONDecodeError, ReviewError) as exc:
            counters.admissions.labels("invalid").inc()
            message = str(exc) if isinstance(exc, ReviewError) else "the body is not JSON"
            return JSONResponse({"errors": [message]}, status_code=400)
        counters.admissions.labels(verdict.outcome).inc()
        counters.seconds.observe(time.perf_counter() - started)
        if verdict.outcome != "skipped":
            request_doc = document["request"]
            _log.info(
                "pod %s/%s: %s%s",
                request_doc.get("namespace", ""),
                request_doc.get("name") or "(generated name)",
                verdict.outcome,
                f" ({verdict.message})" if verdict.message else "",
            )
        return Response(orjson.dumps(verdict.body), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def metrics_endpoint(request: Request) -> Response:
        return Response(counters.exposition(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/mutate", mutate, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ]
    )


def serve(
    settings: InjectorSettings,
    *,
    host: str,
    port: int,
    tls_cert: Path,
    tls_key: Path,
    log_level: str = "info",
) -> None:
    """Serve the injector on ``host:port`` over TLS until SIGINT/SIGTERM."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("kustos", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(log_level.upper())
        logger.propagate = False
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        ssl_certfile=str(tls_cert),
        ssl_keyfile=str(tls_key),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
