"""Key-range arithmetic behind prefix scans and folder listings."""

from __future__ import annotations

import pytest

from kustos.store._keyspace import child_name, list_children_sql, prefix_end


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("", None),
        ("a/", "a0"),
        ("kv/m/", "kv/m0"),
        ("z", "{"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff", None),
        ("x\ud7ff", "x\ue000"),  # skips the surrogate block, which UTF-8 cannot encode
    ],
)
def test_prefix_end(prefix: str, end: str | None) -> None:
    assert prefix_end(prefix) == end


@pytest.mark.parametrize("prefix", ["a/", "kv/", "é/", "秘/x", "a\U0010ffff"])
def test_prefix_end_bounds_every_key_with_the_prefix(prefix: str) -> None:
    end = prefix_end(prefix)
    assert end is not None
    for suffix in ["", "\x00", "zzz", "\U0010ffff" * 3, "é/秘"]:
        assert prefix <= prefix + suffix < end
    assert not end.startswith(prefix)


@pytest.mark.parametrize(
    ("key", "child"),
    [("a/b", "b"), ("a/b/c", "b/"), ("a/b/", "b/"), ("a/", "")],
)
def test_child_name(key: str, child: str) -> None:
    assert child_name(key, len("a/")) == child


def test_list_sql_binds_the_prefix_and_the_optional_upper_bound() -> None:
    for dialect, param in (("sqlite", ":{}"), ("postgresql", "%({})s")):
        for bounded in (True, False):
            sql = list_children_sql(dialect=dialect, bounded=bounded)
            assert param.format("prefix") in sql and param.format("n") in sql
            assert (param.format("end") in sql) is bounded
