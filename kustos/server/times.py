"""Time as the Vault API spells it: RFC 3339 timestamps and Go duration strings.

The server takes its clock as a parameter (``Clock``: seconds since the
epoch, like :func:`time.time`) so tests can pin it. Vault accepts durations
as Go strings (``"1h30m"``, ``"0s"``), bare integers (seconds) or integer
strings, and prints them the way Go's ``time.Duration.String`` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from kustos.errors import InvalidRequestError

__all__ = ["Clock", "format_duration", "parse_duration", "rfc3339"]

Clock = Callable[[], float]
"""Seconds since the epoch (``time.time``)."""

_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_MAX_SECONDS: Final = 100 * 365 * 86400.0


def rfc3339(ts: float) -> str:
    """``2024-05-01T12:00:00.123456Z`` (UTC, microseconds), like Vault's timestamps."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(value: object, *, field: str) -> float:
    """Seconds in ``value`` (int seconds, ``"90"``, or a Go duration such as ``"1h30m"``).

    Raises :class:`InvalidRequestError` naming ``field`` for anything else,
    negative values, or durations over 100 years.
    """
    if isinstance(value, bool):
        raise InvalidRequestError(
            f'{field} must be a duration such as "30m" or a number of seconds'
        )
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            seconds = float(text)
        else:
            seconds = _parse_go(text, field=field)
    else:
        raise InvalidRequestError(
            f'{field} must be a duration such as "30m" or a number of seconds'
        )
    if seconds < 0 or seconds > _MAX_SECONDS:
        raise InvalidRequestError(f"{field} must be between 0s and 100 years")
    return seconds


def _parse_go(text: str, *, field: str) -> float:
    if not text:
        raise InvalidRequestError(f'{field} is empty; use a duration such as "30m"')
    position = 0
    total = 0.0
    while position < len(text):
        match = _PART.match(text, position)
        if match is None:
            raise InvalidRequestError(
                f'{field}: invalid duration {text[:40]!r}; use for example "1h30m" or "45s"'
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Go's ``Duration.String``: ``0s``, ``45s``, ``1m30s``, ``1h0m0s``, ``1.5s``, ``250ms``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    whole_hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = (
        f"{int(secs)}" if float(secs).is_integer() else f"{secs:.9f}".rstrip("0").rstrip(".")
    )
    if whole_hours:
        return f"{int(whole_hours)}h{int(minutes)}m{secs_text}s"
    if minutes:
        return f"{int(minutes)}m{secs_text}s"
    return f"{secs_text}s"
