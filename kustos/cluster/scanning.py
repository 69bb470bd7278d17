"""Read etcd directly and say, for every stored Secret, how it is protected; never print a value.

``kube-apiserver`` keeps each Secret under ``<etcd prefix>/secrets/<namespace>/<name>``
(``--etcd-prefix`` defaults to ``/registry``). :func:`scan` pages through that
range with etcd's v3 API (its JSON gateway, ``POST /v3/kv/range``, over
HTTP(S) with client certificates when etcd requires them), classifies each
value with :func:`kustos.cluster.formats.classify` and drops the value at
once: only the key, the format and the KMS key id leave this module.

This is the proof an operator (or a CI job) needs after switching a cluster
to encryption at rest: ``kustos cluster scan-etcd`` exits non-zero while any
Secret is still stored in plaintext.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from kustos.cluster.formats import StoredFormat, classify
from kustos.errors import ConfigError, KustosError

__all__ = ["EtcdSettings", "ScannedValue", "prefix_for", "scan"]

DEFAULT_PAGE: Final = 500


@dataclass(frozen=True)
class EtcdSettings:
    """Where etcd listens and how to authenticate (``cert``/``key``: a client certificate)."""

    endpoints: tuple[str, ...]
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class ScannedValue:
    """One stored object: where it is and how it is protected (never its value)."""

    key: str
    namespace: str
    name: str
    format: StoredFormat


def prefix_for(resource: str = "secrets", *, etcd_prefix: str = "/registry") -> str:
    """The etcd key prefix of a resource's objects, e.g. ``/registry/secrets/``."""
    return f"{etcd_prefix.rstrip('/')}/{resource.strip('/')}/"


def _client(settings: EtcdSettings, endpoint: str) -> httpx.Client:
    verify: bool | ssl.SSLContext = True
    if endpoint.startswith("https://"):
        try:
            context = ssl.create_default_context(
                cafile=str(settings.cacert) if settings.cacert else None
            )
            if settings.cert is not None:
                context.load_cert_chain(
                    str(settings.cert), str(settings.key) if settings.key else None
                )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the etcd TLS files: {exc}") from None
        verify = context
    elif settings.cert is not None or settings.cacert is not None:
        raise ConfigError(f"TLS files were given but the endpoint {endpoint} is not https://")
    return httpx.Client(base_url=endpoint.rstrip("/"), verify=verify, timeout=settings.timeout)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _range_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _page(client: httpx.Client, start: bytes, end: bytes, limit: int) -> dict[str, Any]:
    body = {"key": _b64(start), "range_end": _b64(end), "limit": limit}
    response = client.post("/v3/kv/range", json=body)
    if response.status_code == 404:  # etcd before 3.4 serves the gateway under /v3beta
        response = client.post("/v3beta/kv/range", json=body)
    if response.status_code != 200:
        raise KustosError(
            f"etcd answered {response.status_code} to a range read: {response.text[:200]}"
        )
    answer: dict[str, Any] = response.json()
    return answer


def scan(
    settings: EtcdSettings,
    *,
    prefix: str = "/registry/secrets/",
    page_size: int = DEFAULT_PAGE,
    on_page: Callable[[int], None] | None = None,
) -> Iterator[ScannedValue]:
    """Every key under ``prefix`` with its stored format, in key order.

    Tries the endpoints in order until one answers. ``on_page`` is called with
    the number of keys in each page (for a progress display).
    """
    if not settings.endpoints:
        raise ConfigError("give at least one etcd endpoint (--endpoints https://127.0.0.1:2379)")
    if not prefix.endswith("/"):
        prefix += "/"
    start, end = prefix.encode(), _range_end(prefix.encode())
    errors: list[str] = []
    for endpoint in settings.endpoints:
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(
                f"etcd endpoint must start with http:// or https://, got {endpoint!r}"
            )
        yielded = False
        try:
            with _client(settings, endpoint) as client:
                for value in _scan(client, start, end, prefix, page_size, on_page):
                    yielded = True
                    yield value
            return
        except httpx.TransportError as exc:
            if yielded:  # another endpoint would start over: report instead of repeating keys
                raise KustosError(f"lost etcd at {endpoint} during the scan: {exc}") from None
            errors.append(f"{endpoint}: {type(exc).__name__}: {exc}")
    raise KustosError("cannot reach etcd: " + "; ".join(errors))


def _scan(
    client: httpx.Client,
    start: bytes,
    end: bytes,
    prefix: str,
    page_size: int,
    on_page: Callable[[int], None] | None,
) -> Iterator[ScannedValue]:
    while True:
        answer = _page(client, start, end, page_size)
        kvs: Sequence[dict[str, Any]] = answer.get("kvs") or []
        if on_page is not None:
            on_page(len(kvs))
        for kv in kvs:
            raw_key = base64.b64decode(kv["key"])
            key = raw_key.decode("utf-8", errors="replace")
            stored = classify(base64.b64decode(kv.get("value", "")))
            namespace, _, name = key[len(prefix) :].partition("/")
            if not name:  # a cluster-scoped resource
                namespace, name = "", namespace
            yield ScannedValue(key=key, namespace=namespace, name=name, format=stored)
        if not answer.get("more") or not kvs:
            return
        start = base64.b64decode(kvs[-1]["key"]) + b"\x00"
