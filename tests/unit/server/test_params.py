"""The parameter layer: every input becomes a bounded value of its type or a 400 naming the field."""

from __future__ import annotations

import pytest

from kustos.errors import InvalidRequestError
from kustos.server.params import (
    MAX_JSON_DEPTH,
    bool_param,
    check_nesting,
    duration_param,
    enum_param,
    int_param,
    object_param,
    parse_json_object,
    status_code_param,
    str_list_param,
    str_param,
)
from kustos.server.sealing import SealingConfig


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (7, 7), ("7", 7), (" 12 ", 12), (3.0, 3), ("-0", 0), (None, 5), ("", 5)],
)
def test_int_param_accepts(value: object, expected: int) -> None:
    assert int_param(value, field="n", maximum=100, default=5) == expected


@pytest.mark.parametrize(
    "value",
    ["²", "٣", "1²", "١٢", "1_0", "1e3", "0x10", "1 2", "9" * 5000, "-1", 101, 1.5, 1e300,
     float("inf"), True, [], {}, 2**64, "18446744073709551616"],
)  # fmt: skip
def test_int_param_refuses_with_the_field_name(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="count"):
        int_param(value, field="count", maximum=100)


def test_int_param_without_a_default_is_required() -> None:
    with pytest.raises(InvalidRequestError, match="missing required parameter 'n'"):
        int_param(None, field="n", maximum=1)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), ("90", 90.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("30d", 2_592_000.0),
     ("250ms", 0.25), ("2µs", 2e-6), (0, 0.0)],
)  # fmt: skip
def test_duration_param_accepts(value: object, seconds: float) -> None:
    assert duration_param(value, field="ttl") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["²", "²s", "1h²m", "٣m", "9" * 100, "1e300s", "-1s", "-1", -1, 1e300, 2**64, True, [],
     "1x", "h", "1h 2m"],
)  # fmt: skip
def test_duration_param_refuses(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="ttl"):
        duration_param(value, field="ttl")


@pytest.mark.parametrize("code", [0, 100, 101, 199, 204, 205, 304, 600, 1e20, "x", True])
def test_status_code_param_is_a_final_status_with_a_body(code: object) -> None:
    with pytest.raises(InvalidRequestError, match="partial_failure_response_code"):
        status_code_param(code, field="partial_failure_response_code")
    assert status_code_param(207, field="c") == 207
    assert status_code_param(None, field="c", default=400) == 400


def test_enum_str_bool_object_and_list_params() -> None:
    assert enum_param("b", field="kind", choices=("a", "b")) == "b"
    assert enum_param(None, field="kind", choices=("a", "b"), default="a") == "a"
    for bad in (["a"], {"a": 1}, 1, "c"):
        with pytest.raises(InvalidRequestError, match="kind must be one of a, b"):
            enum_param(bad, field="kind", choices=("a", "b"))
    assert str_param(" x ", field="name", max_length=3) == "x"
    with pytest.raises(InvalidRequestError, match="name is longer than 3"):
        str_param("abcd", field="name", max_length=3)
    with pytest.raises(InvalidRequestError, match="name must be a string"):
        str_param(1, field="name", max_length=3)
    assert bool_param("TRUE", field="flag") is True
    assert bool_param(0, field="flag") is False
    with pytest.raises(InvalidRequestError, match="flag must be true or false"):
        bool_param("yes", field="flag")
    with pytest.raises(InvalidRequestError, match="config must be a JSON object"):
        object_param([], field="config")
    assert str_list_param("a, b,,", field="p") == ["a", "b"]
    with pytest.raises(InvalidRequestError, match="p has more than 2 items"):
        str_list_param(["a", "b", "c"], field="p", max_items=2)


def test_nesting_is_checked_before_parsing() -> None:
    ok = b'{"a": ' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH
    assert parse_json_object(ok)
    deep = b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(InvalidRequestError, match="deeper than 64 levels"):
        parse_json_object(deep)
    with pytest.raises(InvalidRequestError, match="deeper than 64 levels"):
        check_nesting(b"[" * 100_000)  # not even JSON: the nesting alone is refused
    # brackets inside strings do not count; many shallow containers are fine
    check_nesting(b'{"a": "' + b"[" * 1000 + b'"}')
    check_nesting(b"[" + b"[]," * 10_000 + b"[]]")
    check_nesting(b'{"a": "\\"[[[[", "b": [' + b"[" * 60 + b"]" * 60 + b"]}")


def test_a_stored_key_size_out_of_range_is_read_as_4096() -> None:
    """A sealing config an older release stored with {"key_bits": 1000000} does not burn a core."""
    assert SealingConfig.from_doc({"key_bits": 1_000_000}).key_bits == 4096
    assert SealingConfig.from_doc({"key_bits": 3072}).key_bits == 3072
