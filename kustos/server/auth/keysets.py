"""Signing keys fetched from an issuer (a JWKS URL or OIDC discovery), cached, refreshed on rotation.

The ``jwt`` and ``kubernetes`` auth methods verify tokens with keys an
issuer publishes: a JSON Web Key Set at ``jwks_url``, or the ``jwks_uri``
named by the OpenID Connect discovery document at
``<oidc_discovery_url>/.well-known/openid-configuration`` (whose ``issuer``
must equal the discovery URL, as OIDC requires). :class:`KeySets` keeps one
cached set per (mount, source):

* a set is fetched on first use and again once it is older than ``ttl``
  (keys an issuer withdrew stop being trusted within ``ttl``);
* a token no cached key verifies (an unknown ``kid``: the issuer rotated its
  keys) makes :meth:`KeySets.verify` fetch the set again and retry once, at
  most once per ``min_refresh`` seconds per set, and concurrent misses share
  one fetch, so tokens with made-up key ids cannot make the server hammer
  the issuer;
* a failed refresh keeps the keys already cached.

Fetches go only to the URLs an operator configured (and the ``jwks_uri``
their discovery document names), with a timeout, no redirects and a size
cap. A source that cannot be fetched or read raises
:class:`KeySetUnavailableError` (500: the issuer, not the caller, is at
fault). Time is the injected clock.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson

from kustos.errors import InvalidRequestError, KustosError
from kustos.server.auth.jwts import (
    ALLOWED_ALGORITHMS,
    UnknownSigningKeyError,
    VerificationKey,
    load_jwks,
    verify_signature,
)

__all__ = [
    "DISCOVERY_PATH",
    "KeySetSource",
    "KeySetUnavailableError",
    "KeySets",
    "VerifiedToken",
    "ca_context",
    "check_url",
]

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
DEFAULT_TTL: Final = 300.0
"""Seconds a fetched key set is used before it is fetched again."""
DEFAULT_MIN_REFRESH: Final = 10.0
"""Seconds between two fetches caused by tokens that no cached key verifies."""
_TIMEOUT: Final = 10.0
_MAX_DOCUMENT: Final = 1024 * 1024
_MAX_KEYS: Final = 100
_MAX_URL: Final = 2048


class KeySetUnavailableError(KustosError):
    """The issuer's key set or discovery document could not be fetched or read (500)."""


def ca_context(pem: str, *, field: str) -> ssl.SSLContext:
    """A TLS context trusting the PEM CA certificate(s) ``pem``; bad PEM is an error naming ``field``."""
    try:
        return ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidRequestError(f"{field} is not a valid PEM CA certificate: {exc}") from None


def check_url(url: str, *, field: str) -> str:
    """``url`` if it is an absolute ``https://`` (or ``http://``) URL with a host, else an error."""
    parsed = httpx.URL(url) if url.startswith(("https://", "http://")) else None
    if parsed is None or not parsed.host or len(url) > _MAX_URL:
        raise InvalidRequestError(f"{field} must be an https:// URL (http:// on a private network)")
    return url


@dataclass(frozen=True)
class KeySetSource:
    """Where a set comes from: ``jwks_url``, or ``discovery_url`` (an OIDC issuer), and a CA."""

    jwks_url: str = ""
    discovery_url: str = ""
    ca_pem: str = ""

    @property
    def name(self) -> str:
        return self.jwks_url or self.discovery_url


@dataclass(frozen=True)
class VerifiedToken:
    """A token whose signature checked out: its claims, and the issuer discovery names (or ``""``)."""

    claims: dict[str, Any]
    issuer: str


@dataclass
class _Entry:
    keys: list[VerificationKey] = field(default_factory=list)
    issuer: str = ""
    fetched_at: float = float("-inf")
    refreshed_after_miss_at: float = float("-inf")
    generation: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KeySets:
    """Cached key sets, one per ``(owner, source)`` (the owner is an auth mount's uuid)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        ttl: float = DEFAULT_TTL,
        min_refresh: float = DEFAULT_MIN_REFRESH,
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._entries: dict[tuple[str, KeySetSource], _Entry] = {}

    def forget(self, owner: str) -> None:
        """Drop every set cached for ``owner`` (its configuration changed)."""
        self._entries = {k: v for k, v in self._entries.items() if k[0] != owner}

    async def keys(self, owner: str, source: KeySetSource) -> tuple[list[VerificationKey], str]:
        """The set's keys and discovered issuer, fetched if not cached or older than ``ttl``."""
        entry = self._entries.setdefault((owner, source), _Entry())
        if self._clock() - entry.fetched_at < self._ttl:
            return entry.keys, entry.issuer
        async with entry.lock:
            if self._clock() - entry.fetched_at >= self._ttl:
                await self._fetch_into(entry, source, keep_on_error=False)
        return entry.keys, entry.issuer

    async def verify(
        self,
        token: str,
        *,
        owner: str,
        source: KeySetSource,
        algorithms: Sequence[str] = ALLOWED_ALGORITHMS,
        extra_keys: Sequence[VerificationKey] = (),
    ) -> VerifiedToken:
        """Check ``token``'s signature with the set (plus ``extra_keys``), refetching once on a miss."""
        keys, issuer = await self.keys(owner, source)
        try:
            claims = verify_signature(token, keys=[*extra_keys, *keys], algorithms=algorithms)
            return VerifiedToken(claims=claims, issuer=issuer)
        except UnknownSigningKeyError as miss:
            entry = self._entries[(owner, source)]
            seen = entry.generation
            async with entry.lock:
                missed_at = self._clock()
                if entry.generation == seen:  # nobody fetched it again while we waited
                    if missed_at - entry.refreshed_after_miss_at < self._min_refresh:
                        raise UnknownSigningKeyError(
                            f"{miss}; the key set at {source.name} was fetched again less than "
                            f"{self._min_refresh:g}s ago"
                        ) from None
                    entry.refreshed_after_miss_at = missed_at
                    await self._fetch_into(entry, source, keep_on_error=True)
            claims = verify_signature(token, keys=[*extra_keys, *entry.keys], algorithms=algorithms)
            return VerifiedToken(claims=claims, issuer=entry.issuer)

    async def check(self, source: KeySetSource) -> None:
        """Fetch ``source`` once, uncached; raise :class:`InvalidRequestError` if that fails."""
        try:
            await _fetch(source)
        except KeySetUnavailableError as exc:
            raise InvalidRequestError(str(exc)) from None

    async def _fetch_into(
        self, entry: _Entry, source: KeySetSource, *, keep_on_error: bool
    ) -> None:
        try:
            entry.keys, entry.issuer = await _fetch(source)
        except KeySetUnavailableError:
            if not keep_on_error or not entry.keys:
                raise
            return
        entry.fetched_at = self._clock()
        entry.generation += 1


async def _fetch(source: KeySetSource) -> tuple[list[VerificationKey], str]:
    verify: bool | ssl.SSLContext = True
    if source.ca_pem:
        verify = ca_context(source.ca_pem, field="the CA certificate")
    async with httpx.AsyncClient(verify=verify, timeout=_TIMEOUT, follow_redirects=False) as http:
        issuer = ""
        jwks_url = source.jwks_url
        if source.discovery_url:
            url = source.discovery_url.rstrip("/") + DISCOVERY_PATH
            document = await _get_json(http, url, what="the OIDC discovery document")
            found = document.get("issuer")
            issuer = found if isinstance(found, str) else ""
            if issuer.rstrip("/") != source.discovery_url.rstrip("/"):
                raise KeySetUnavailableError(
                    f"the OIDC discovery document at {url} names issuer {str(issuer)[:200]!r}, "
                    f"not {source.discovery_url!r}"
                )
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise KeySetUnavailableError(
                    f"the OIDC discovery document at {url} has no jwks_uri URL"
                )
            jwks_url = jwks_uri
        document = await _get_json(http, jwks_url, what="the JSON Web Key Set")
    try:
        keys = load_jwks(document)
    except InvalidRequestError as exc:
        raise KeySetUnavailableError(f"{jwks_url}: {exc}") from None
    return keys[:_MAX_KEYS], issuer


async def _get_json(http: httpx.AsyncClient, url: str, *, what: str) -> dict[str, Any]:
    try:
        async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_DOCUMENT:
                    raise KeySetUnavailableError(f"{what} at {url} is larger than 1 MiB")
            status = response.status_code
    except httpx.HTTPError as exc:
        raise KeySetUnavailableError(
            f"could not fetch {what} at {url}: {type(exc).__name__}"
        ) from None
    if status != 200:
        raise KeySetUnavailableError(f"could not fetch {what} at {url}: HTTP {status}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise KeySetUnavailableError(f"{what} at {url} is not JSON") from None
    if not isinstance(document, dict):
        raise KeySetUnavailableError(f"{what} at {url} is not a JSON object")
    return document
