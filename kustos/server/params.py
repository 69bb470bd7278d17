"""Reading typed parameters from request bodies and query strings, with errors that name the field."""

from __future__ import annotations

from typing import Any

from kustos.errors import InvalidRequestError

__all__ = ["bool_param", "int_param", "str_list_param"]


def int_param(value: object, *, field: str, minimum: int = 0) -> int:
    """An integer (JSON number or decimal string) of at least ``minimum``."""
    if isinstance(value, bool):
        raise InvalidRequestError(f"{field} must be an integer")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise InvalidRequestError(f"{field} must be an integer")
    if value < minimum:
        raise InvalidRequestError(f"{field} must be {minimum} or more")
    return value


def bool_param(value: object, *, field: str) -> bool:
    """``true``/``false`` (JSON or string)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise InvalidRequestError(f"{field} must be true or false")


def str_list_param(value: Any, *, field: str) -> list[str]:
    """A list of strings, or one comma-separated string (Vault accepts both)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return [p.strip() for p in value if p.strip()]
    raise InvalidRequestError(f"{field} must be a list of strings or a comma-separated string")
