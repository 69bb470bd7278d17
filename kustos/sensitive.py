"""A wrapper for secret values whose ``repr`` and ``str`` never show them.

Secret material travels through Kustos inside :class:`Sensitive` so that a log
line, an exception message, a traceback or a debugger never prints it by
accident. Getting the value out is explicit: :meth:`Sensitive.reveal`.
"""

from __future__ import annotations

import hmac
from typing import Final, Generic, TypeVar

__all__ = ["MASK", "Sensitive"]

MASK: Final = "<redacted>"

T = TypeVar("T", bytes, str)


class Sensitive(Generic[T]):
    """Holds one secret value; shows ``<redacted>`` everywhere but :meth:`reveal`.

    Equality is constant-time, so two tokens or MACs can be compared without
    leaking how many leading bytes match.
    """

    __slots__ = ("_value",)

    _value: T

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        """Return the secret value itself. Callers own what happens to it next."""
        return self._value

    def __repr__(self) -> str:
        return f"Sensitive({MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, format_spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sensitive):
            return NotImplemented
        a, b = self._value, other._value
        if isinstance(a, str):
            a_bytes = a.encode()
        else:
            a_bytes = a
        if isinstance(b, str):
            b_bytes = b.encode()
        else:
            b_bytes = b
        return hmac.compare_digest(a_bytes, b_bytes)

    def __hash__(self) -> int:
        return hash(("Sensitive", len(self._value)))

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Sensitive values cannot be pickled")
