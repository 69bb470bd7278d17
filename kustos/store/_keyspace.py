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

__all__ = ["child_name", "children_params", "list_children_sql", "prefix_end"]

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


def children_params(
    prefix: str, *, after: str | None = None, limit: int | None = None
) -> tuple[dict[str, object], dict[str, bool]]:
    """The parameters of :func:`list_children_sql` for a listing of ``prefix`` (and its options).

    ``after``: only children whose name sorts after it (it need not exist);
    ``limit``: at most that many children (``None`` or less than 1: all).
    Returns ``(params, options)``; pass the options to :func:`list_children_sql`.
    """
    end = prefix_end(prefix)
    params: dict[str, object] = {"prefix": prefix, "n": len(prefix)}
    if end is not None:
        params["end"] = end
    options = {"bounded": end is not None, "start": False, "inclusive": False, "limited": False}
    if after:
        slash = after.find("/")
        if slash >= 0:  # "c/" or "c/x": every name after it sorts after the whole folder c/
            params["start"] = prefix + after[:slash] + "0"
            options["inclusive"] = True
        else:
            params["start"] = prefix + after
        options["start"] = True
    if limit is not None and limit > 0:
        params["limit"] = limit
        options["limited"] = True
    return params, options


def list_children_sql(
    *,
    dialect: str,
    bounded: bool,
    start: bool = False,
    inclusive: bool = False,
    limited: bool = False,
) -> str:
    """A recursive query returning the first key under each direct child of a prefix.

    Parameters (named): ``prefix``, ``n`` (its length in characters) and,
    when ``bounded``, ``end`` (``prefix_end(prefix)``). From each key found it
    jumps past the whole folder (``prefix + child + "0"``, ``"0"`` being the
    character after ``"/"``) or to the next key, so it reads one index entry
    per child, not one per key below the prefix. With ``start`` the walk
    begins after (or, ``inclusive``, at) the key ``start``; with ``limited``
    it stops after ``limit`` children, so a page of a big folder reads one
    index entry per child on the page (see :func:`children_params`).
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
    first = f"key > {param('prefix')}"
    if start:
        first = f"{first} AND key {'>=' if inclusive else '>'} {param('start')}"
    # with a limit, each row carries its position and the walk stops at the last one wanted
    columns, first_count, next_count, stop = "k", "", "", ""
    if limited:
        limit = param("limit") if dialect == "sqlite" else f"{param('limit')}::integer"
        columns, first_count, next_count = "k, c", ", 1", ", walk.c + 1"
        stop = f" AND walk.c < {limit}"
    return (
        f"WITH RECURSIVE walk({columns}) AS ("  # noqa: S608 - fixed fragments, values are bound
        f" SELECT (SELECT min(key) FROM entries WHERE {first}{upper}){first_count}"
        " UNION ALL"
        " SELECT (SELECT min(key) FROM entries WHERE key > walk.k"
        f" AND key >= CASE WHEN {find_slash} > 0 THEN {folder_end} ELSE walk.k END{upper})"
        f"{next_count} FROM walk WHERE walk.k IS NOT NULL{stop}"
        ") SELECT k FROM walk WHERE k IS NOT NULL"
    )
