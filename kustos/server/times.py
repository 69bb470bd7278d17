"""Time as the Vault API spells it: RFC 3339 timestamps and Go duration strings.

The server takes its clock as a parameter (``Clock``: seconds since the
epoch, like :func:`time.time`) so tests can pin it. Vault accepts durations
as Go strings (``"1h30m"``, ``"0s"``), bare integers (seconds) or integer
strings, and prints them the way Go's ``time.Duration.String`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from kustos.server.params import duration_param

__all__ = ["Clock", "format_duration", "parse_duration", "rfc3339"]

Clock = Callable[[], float]
"""Seconds since the epoch (``time.time``)."""


def rfc3339(ts: float) -> str:
    """``2024-05-01T12:00:00.123456Z`` (UTC, microseconds), like Vault's timestamps."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(value: object, *, field: str) -> float:
    """Seconds in ``value`` (int seconds, ``"90"``, or a Go duration such as ``"1h30m"``).

    The same as :func:`kustos.server.params.duration_param` without a default
    (the one parsing layer); kept for callers that read a required duration.
    """
    return duration_param(value, field=field)


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
