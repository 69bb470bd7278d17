"""Metrics and structured logs of the server: what operators watch, never what they protect.

:class:`Metrics` owns one Prometheus ``CollectorRegistry`` per app (no global
registry, so several apps can live in one test process): request counts and
latencies by *route template* (``kv:data:read``, ``sys/health``; never the
secret path), HTTP method and status; the seal state; storage errors; how
well group commit batches writes (commits and transactions committed).

:func:`configure_logging` installs a JSON-lines formatter on the ``kustos``
logger. Log records carry a request id, method, route template, status and
duration, passed through ``extra=``; nothing logs a secret value or a token.
"""

from __future__ import annotations

import bisect
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Final, TextIO

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = [
    "METRICS_CONTENT_TYPE",
    "JsonFormatter",
    "Metrics",
    "configure_logging",
]

METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _RequestStats(Collector):
    """Request counts and latency histograms, kept as plain numbers and turned into metrics on scrape.

    The hot path only bumps list entries (no locks, no label lookups); the
    server runs one event loop, so nothing else touches them concurrently.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, int], list[float]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = [0.0] * (len(_BUCKETS) + 2)  # count, sum, one per bucket
        series[0] += 1
        series[1] += seconds
        index = bisect.bisect_left(_BUCKETS, seconds)
        if index < len(_BUCKETS):
            series[2 + index] += 1

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "kustos_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        latency = HistogramMetricFamily(
            "kustos_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), series in sorted(self._series.items()):
            labels = [route, method, str(status)]
            requests.add_metric(labels, series[0])
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(_BUCKETS, series[2:], strict=True):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", series[0]))
            latency.add_metric(labels, buckets, series[1])
        yield requests
        yield latency


class _CommitStats(Collector):
    """Storage commits and the transactions they carried, read from the backend on scrape."""

    def __init__(self, stats: Callable[[], tuple[int, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        groups, members = self._stats()
        yield CounterMetricFamily(
            "kustos_storage_commits",
            "Durable storage commits (each one fsync or one COMMIT; group commit shares one "
            "between concurrent transactions).",
            value=groups,
        )
        yield CounterMetricFamily(
            "kustos_storage_transactions",
            "Storage transactions committed; divided by kustos_storage_commits_total, the mean group size.",
            value=members,
        )


class Metrics:
    """The server's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = _RequestStats()
        self.registry.register(self._requests)
        self.observe_request: Callable[[str, str, int, float], None] = self._requests.observe
        """Count one answered request and record how long it took: ``(route, method, status, seconds)``."""
        self._sealed = Gauge(
            "kustos_sealed",
            "1 while the server is sealed (or not initialized), 0 when it serves data.",
            registry=self.registry,
        )
        self._initialized = Gauge(
            "kustos_initialized", "1 once the server has been initialized.", registry=self.registry
        )
        self._storage_errors = Counter(
            "kustos_storage_errors_total",
            "Storage backend failures seen while answering requests, by route template.",
            ["route"],
            registry=self.registry,
        )
        self._integrity_errors = Counter(
            "kustos_integrity_errors_total",
            "Stored records that failed to decrypt or verify.",
            registry=self.registry,
        )
        self._unreserved_commits = Counter(
            "kustos_audit_unreserved_commits_total",
            "Changes committed before their response was audited (the handler declared no answer "
            "before its commit; see kustos.server.committing), by route template.",
            ["route"],
            registry=self.registry,
        )
        self._sealed.set(1)

    def set_seal_state(self, *, initialized: bool, sealed: bool) -> None:
        self._initialized.set(1 if initialized else 0)
        self._sealed.set(1 if sealed else 0)

    def watch_commits(self, stats: Callable[[], tuple[int, int]]) -> None:
        """Export ``stats()`` (``(commits, transactions)`` so far) as two counters."""
        self.registry.register(_CommitStats(stats))

    def storage_error(self, *, route: str) -> None:
        self._storage_errors.labels(route).inc()

    def integrity_error(self) -> None:
        self._integrity_errors.inc()

    def unreserved_commit(self, route: str) -> None:
        self._unreserved_commits.labels(route).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the fields given in ``extra``."""

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "request_id",
        "method",
        "route",
        "status",
        "duration_ms",
        "mount",
        "path",
        "error",
        "addr",
    )

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in self._FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode("utf-8")


def configure_logging(*, level: str = "info", stream: TextIO | None = None) -> None:
    """Send ``kustos`` (and uvicorn's error) logs as JSON lines to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    for name in ("kustos", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(numeric)
        logger.propagate = False
