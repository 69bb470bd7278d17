"""The one way API handlers read their input: the JSON body and typed, bounded parameters.

Why it exists: every byte a caller sends must end as a value of the declared
type *within declared bounds*, or as :class:`~kustos.errors.InvalidRequestError`
(400) naming the field; never as a ``TypeError``/``ValueError``/``RecursionError``
that the dispatcher can only answer with 500. Python's builtins are too
lenient for that: ``"²".isdigit()`` and ``"٣".isdigit()`` are true but
``int()`` refuses them, ``int()`` refuses digit strings over 4,300 characters,
``1e300`` and ``2**64`` are valid JSON numbers that storage and ``struct``
refuse, and JSON nested a few hundred levels deep breaks recursive code
(orjson's serializer, the audit hasher).

How a route reads its input (the contract for every new route):

1. The body: ``call.json()`` (:func:`parse_json_object`: a JSON object at most
   :data:`MAX_JSON_DEPTH` deep; the dispatcher already refused deeper bodies
   with :func:`check_nesting` before anything else ran). Never ``orjson.loads``
   a request body yourself.
2. Every field through one of the functions below, with its name as
   ``field=`` (the error message names it)::

       body = call.json()
       bits = int_param(body.get("bits"), field="bits", minimum=128, maximum=512, default=256)
       ttl = duration_param(body.get("ttl"), field="ttl", default=0.0)
       kind = enum_param(body.get("type"), field="type", choices=("a", "b"), default="a")
       name = str_param(body.get("name"), field="name", max_length=128)
       depth = int_param(call.query.get("depth"), field="depth", maximum=64, default=0)

   ``None`` and ``""`` mean "absent": the ``default`` is returned, or, without
   one, the parameter is required ("missing required parameter 'x'").
3. Every integer has a ``maximum``, every string a ``max_length``, every list
   a ``max_items`` (the keyword is required where a bound is not obvious).
   Anything stored or used to size work (versions kept, key bits, batch
   items, counts) gets a bound that keeps the server responsive.
4. Statuses a caller may choose go through :func:`status_code_param` (a
   final status the server can send with a body).
5. What these functions do not cover: raise ``InvalidRequestError`` naming the
   field; let nothing else escape. The property-based fuzz test
   (``tests/integration/server/test_fuzz.py``) sends thousands of generated
   requests to every route family and fails on any 5xx or dropped
   connection: add your route family to its table.

Neighbours: :mod:`kustos.server.calls` (the :class:`~kustos.server.calls.Call`
whose ``json()`` uses :func:`parse_json_object`), :mod:`kustos.server.times`
(formatting durations and timestamps).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Final, TypeVar

import orjson

from kustos.errors import InvalidRequestError

__all__ = [
    "MAX_DURATION_SECONDS",
    "MAX_JSON_DEPTH",
    "REQUIRED",
    "bool_param",
    "check_nesting",
    "duration_param",
    "enum_param",
    "int_param",
    "object_param",
    "parse_json_object",
    "status_code_param",
    "str_list_param",
    "str_param",
]

MAX_JSON_DEPTH: Final = 64
"""Deepest nesting of arrays and objects a request body may have (Vault's documents nest a handful)."""
MAX_DURATION_SECONDS: Final = 100 * 365 * 86400.0
"""The longest duration any parameter accepts: 100 years."""
_MAX_INT_DIGITS: Final = 20
"""Digits an integer string may have (2**64 has 20): longer strings are refused before ``int()``."""
_MAX_DURATION_TEXT: Final = 64
_MAX_LIST_ITEMS: Final = 256
_MAX_LIST_ITEM_LENGTH: Final = 1024
_INTEGER: Final = re.compile(r"-?[0-9]{1,20}", re.ASCII)
_LONG_INTEGER: Final = re.compile(r"-?[0-9]+", re.ASCII)
_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_STRINGS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS: Final = re.compile(rb"[\[\]{}]")
_NO_BODY_STATUSES: Final = frozenset({204, 205, 304})


class _Required:
    """The marker for "no default": the parameter must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""``default=REQUIRED`` (the default): an absent parameter is an error naming it."""

_T = TypeVar("_T")


def _absent(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _missing(field: str, default: _T | _Required) -> _T:
    if isinstance(default, _Required):
        raise InvalidRequestError(f"missing required parameter '{field}'")
    return default


# -- the body -----------------------------------------------------------------------------------


def check_nesting(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a body whose ``[``/``{`` nesting (outside JSON strings) is deeper than ``max_depth``.

    Cheap for ordinary bodies: when the body does not even contain more than
    ``max_depth`` opening brackets it cannot nest deeper, and only C-speed
    counting runs. Works on JSON and on YAML flow style alike (a body is
    checked before anyone knows how it will be parsed).
    """
    if body.count(b"{") + body.count(b"[") <= max_depth:
        return
    depth = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise InvalidRequestError(
                    f"the request body nests arrays and objects deeper than {max_depth} levels"
                )
        elif depth:
            depth -= 1


def parse_json_object(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The body as a JSON object, nested at most ``max_depth`` levels.

    An empty body and ``null`` are ``{}`` (``vault write -f`` sends ``null``).
    """
    if not body.strip():
        return {}
    check_nesting(body, max_depth=max_depth)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"failed to parse JSON input: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InvalidRequestError("failed to parse JSON input: the body must be a JSON object")
    return doc


# -- scalars --------------------------------------------------------------------------------------


def int_param(
    value: object,
    *,
    field: str,
    minimum: int = 0,
    maximum: int,
    default: int | _Required = REQUIRED,
) -> int:
    """An integer in ``minimum..maximum``: a JSON number with no fraction, or ASCII decimal digits.

    ``"²"``, ``"٣"``, ``"1_000"``, ``" 12 "`` with inner spaces, ``true``,
    ``1.5``, ``1e300`` out of range and strings over 20 digits are refused
    with a message naming ``field``.
    """
    if _absent(value):
        return _missing(field, default)
    number: int
    if isinstance(value, bool):
        raise InvalidRequestError(f"{field} must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidRequestError(f"{field} must be an integer")
        if not -(2.0**63) <= value <= 2.0**63:
            raise InvalidRequestError(_range_message(field, minimum, maximum))
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _INTEGER.fullmatch(text):
            if _LONG_INTEGER.fullmatch(text):  # ASCII digits, just too many of them
                raise InvalidRequestError(_range_message(field, minimum, maximum))
            raise InvalidRequestError(f"{field} must be an integer (ASCII digits)")
        number = int(text)
    else:
        raise InvalidRequestError(f"{field} must be an integer")
    if not minimum <= number <= maximum:
        raise InvalidRequestError(_range_message(field, minimum, maximum))
    return number


def _range_message(field: str, minimum: int, maximum: int) -> str:
    return f"{field} must be between {minimum} and {maximum}"


def status_code_param(value: object, *, field: str, default: int | _Required = REQUIRED) -> int:
    """An HTTP status a caller chooses for an answer: 200-599 (a final status), not 204/205/304
    (they carry no body, and these answers have one)."""
    code = int_param(value, field=field, minimum=200, maximum=599, default=default)
    if code in _NO_BODY_STATUSES:
        raise InvalidRequestError(
            f"{field} must be an HTTP status that carries a body (200-599, not 204, 205 or 304)"
        )
    return code


def bool_param(value: object, *, field: str, default: bool | _Required = REQUIRED) -> bool:
    """``true``/``false`` (JSON), or the strings ``true``, ``false``, ``1``, ``0`` (any case)."""
    if isinstance(value, bool):
        return value
    if _absent(value):
        return _missing(field, default)
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InvalidRequestError(f"{field} must be true or false")


def str_param(
    value: object,
    *,
    field: str,
    max_length: int,
    default: str | _Required = REQUIRED,
    strip: bool = True,
) -> str:
    """A string of at most ``max_length`` characters (stripped of surrounding spaces unless ``strip=False``)."""
    if value is None:
        return _missing(field, default)
    if not isinstance(value, str):
        raise InvalidRequestError(f"{field} must be a string")
    text = value.strip() if strip else value
    if not text and not isinstance(default, _Required):
        return default
    if not text:
        raise InvalidRequestError(f"missing required parameter '{field}'")
    if len(text) > max_length:
        raise InvalidRequestError(f"{field} is longer than {max_length} characters")
    return text


def enum_param(
    value: object,
    *,
    field: str,
    choices: Sequence[str],
    default: str | _Required = REQUIRED,
) -> str:
    """One of ``choices`` (exactly, as a string); the error lists them."""
    if _absent(value):
        return _missing(field, default)
    if isinstance(value, str) and value in choices:
        return value
    shown = repr(value[:64]) if isinstance(value, str) else f"a JSON {_json_type(value)}"
    raise InvalidRequestError(f"{field} must be one of {', '.join(choices)} (got {shown})")


def duration_param(
    value: object,
    *,
    field: str,
    minimum: float = 0.0,
    maximum: float = MAX_DURATION_SECONDS,
    default: float | _Required = REQUIRED,
) -> float:
    """Seconds: a JSON number, ASCII digits (seconds), or a Go duration such as ``"1h30m"``.

    Refuses negative values, values over ``maximum`` (100 years unless
    given), Unicode digits and strings over 64 characters.
    """
    if _absent(value):
        return _missing(field, default)
    problem = f'{field} must be a duration such as "30m" or a number of seconds'
    seconds: float
    if isinstance(value, bool):
        raise InvalidRequestError(problem)
    if isinstance(value, int):
        if not -(2**63) <= value <= 2**63:
            raise InvalidRequestError(_duration_range(field, minimum, maximum))
        seconds = float(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequestError(problem)
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_DURATION_TEXT or (not text.isascii() and "µ" not in text):
            raise InvalidRequestError(problem)
        if _INTEGER.fullmatch(text):
            seconds = float(int(text))
        else:
            seconds = _go_duration(text, field=field)
    else:
        raise InvalidRequestError(problem)
    if not minimum <= seconds <= maximum:
        raise InvalidRequestError(_duration_range(field, minimum, maximum))
    return seconds


def _duration_range(field: str, minimum: float, maximum: float) -> str:
    if minimum == 0 and maximum == MAX_DURATION_SECONDS:
        return f"{field} must be between 0s and 100 years"
    return f"{field} must be between {minimum:g} and {maximum:g} seconds"


def _go_duration(text: str, *, field: str) -> float:
    position = 0
    total = 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise InvalidRequestError(
                f'{field}: invalid duration {text[:40]!r}; use for example "1h30m" or "45s"'
            )
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return total


# -- structures -----------------------------------------------------------------------------------


def object_param(
    value: object, *, field: str, default: dict[str, Any] | _Required = REQUIRED
) -> dict[str, Any]:
    """A JSON object."""
    if value is None:
        return _missing(field, default)
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{field} must be a JSON object")
    return value


def str_list_param(
    value: Any,
    *,
    field: str,
    max_items: int = _MAX_LIST_ITEMS,
    max_length: int = _MAX_LIST_ITEM_LENGTH,
) -> list[str]:
    """A list of strings, or one comma-separated string (Vault accepts both); empty items dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [p.strip() for p in value.split(",")]
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        items = [p.strip() for p in value]
    else:
        raise InvalidRequestError(f"{field} must be a list of strings or a comma-separated string")
    items = [p for p in items if p]
    if len(items) > max_items:
        raise InvalidRequestError(f"{field} has more than {max_items} items")
    for item in items:
        if len(item) > max_length:
            raise InvalidRequestError(f"an item of {field} is longer than {max_length} characters")
    return items


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__
