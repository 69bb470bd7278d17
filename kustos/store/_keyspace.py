"""Key-range arithmetic and the folder-listing query shared by the SQL backends.

Both backends store keys so that they compare in code point order (SQLite's
BINARY collation and PostgreSQL's ``"C"`` collation compare UTF-8 bytes, which
sorts like Python ``str``). A prefix is therefore a key *range*
``[prefix, prefix_end(prefix))``, answered from the primary-key index, and a
Vault-style folder listing is a *loose index scan*: jump from one child to the
next instead of reading every key below the prefix.
"""

from __future__ import annotations

from typing import Final

__all__ = ["child_name", "list_children_sql", "prefix_end"]

_MAX_CODE_POINT: Final = 0x10FFFF
_SURROGATES: Final = range(0xD800, 0xE000)


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``.

    ``None`` when there is none (the empty prefix: every key matches).
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < _MAX_CODE_POINT:
            following = last + 1
            if following in _SURROGATES:  # not encodable in UTF-8: skip the block
                following = _SURROGATES.stop
            chars.append(chr(following))
            return "".join(chars)
    return None


def child_name(key: str, prefix_length: int) -> str:
    """The direct child of the prefix that ``key`` lies under: ``name`` or ``name/``."""
    rest = key[prefix_length:]
    slash = rest.find("/")
    return rest if slash < 0 else rest[: slash + 1]


def list_children_sql(*, dialect: str, bounded: bool) -> str:
    """A recursive query returning the first key under each direct child of a prefix.

    Parameters (named): ``prefix``, ``n`` (its length in characters) and,
    when ``bounded``, ``end`` (``prefix_end(prefix)``). From each key found it
    jumps past the whole folder (``prefix + child + "0"``, ``"0"`` being the
    character after ``"/"``) or to the next key, so it reads one index entry
    per child, not one per key below the prefix.
    """
    if dialect == "sqlite":
        param = ":{}".format
        find_slash = "instr(substr(walk.k, {n} + 1), '/')"
    else:
        param = "%({})s".format
        find_slash = "strpos(substr(walk.k, {n} + 1), '/')"
    n = param("n") if dialect == "sqlite" else f"{param('n')}::integer"
    find_slash = find_slash.format(n=n)
    upper = f" AND key < {param('end')}" if bounded else ""
    folder_end = f"substr(walk.k, 1, {n} + {find_slash} - 1) || '0'"
    return (
        "WITH RECURSIVE walk(k) AS ("  # noqa: S608 - fixed fragments, values are bound
        f" SELECT (SELECT min(key) FROM entries WHERE key > {param('prefix')}{upper})"
        " UNION ALL"
        " SELECT (SELECT min(key) FROM entries WHERE key > walk.k"
        f" AND key >= CASE WHEN {find_slash} > 0 THEN {folder_end} ELSE walk.k END{upper})"
        " FROM walk WHERE walk.k IS NOT NULL"
        ") SELECT k FROM walk WHERE k IS NOT NULL"
    )
