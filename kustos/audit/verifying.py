"""Checking an audit file's hash chain and naming the first line that breaks it.

Each line must be the canonical JSON of its entry, its ``hash`` must match its
content, its ``prev_hash`` must be the ``hash`` of the line before, and its
``seq`` must be one more. The first line must be the genesis entry. So:

* an **edited** line fails its own hash (or canonical form);
* a **deleted**, **swapped** or **inserted** line breaks the link of the first
  line whose predecessor changed;
* a line **truncated** mid-way is not valid JSON or has no end of line.

Without a key anyone can check the chain; it does not stop someone who
rewrites the whole file from the edit onwards. Passing the device key also
checks the ``mac`` fields (and the genesis key fingerprint), which a
rewriter cannot forge; passing ``expected_head`` (a hash the server reported
earlier) catches entries removed from the end.

A ``mac`` vouches for its entry and, through the chain, for every entry
before it. The writer puts one on every entry it writes alone and on the last
entry of each batch of reads written together (the entries before it in the
batch carry only ``hash``). So with the key, every entry must carry a valid
``mac`` or be followed by one, and the file must end with one. A line that
breaks the chain is named as without the key; a ``mac`` that does not match,
or a file that ends without one, is reported at the first line not yet
vouched for, which is where a forgery can begin.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from kustos.audit.hashing import GENESIS_PREV_HASH, canonical_json, chain_mac, entry_hash, key_check
from kustos.sensitive import Sensitive

__all__ = ["VerifyResult", "verify_file"]


@dataclass(frozen=True, kw_only=True)
class VerifyResult:
    """The outcome of :func:`verify_file`.

    ``first_bad_line`` is 1-based; ``entries`` counts the lines that verified
    before it; ``head`` is the hash of the last good entry.
    """

    ok: bool
    entries: int
    first_bad_line: int | None = None
    reason: str | None = None
    head: str | None = None
    device_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad_line": self.first_bad_line,
            "reason": self.reason,
            "head": self.head,
            "device_id": self.device_id,
        }


_MAC_MISMATCH: Final = "the entry's mac does not match under this key (forged or rewritten)"


def _problem(
    line: bytes, number: int, previous: dict[str, Any] | None, key: Sensitive[bytes] | None
) -> tuple[str | None, dict[str, Any] | None]:
    if not line.endswith(b"\n"):
        return "the line is incomplete (no end of line): the file was truncated", None
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "the line is not valid JSON (edited or truncated)", None
    if not isinstance(entry, dict):
        return "the line is not a JSON object", None
    digest, prev, seq = entry.get("hash"), entry.get("prev_hash"), entry.get("seq")
    if (
        not isinstance(digest, str)
        or not isinstance(prev, str)
        or not isinstance(seq, int)
        or isinstance(seq, bool)
    ):
        return "the entry lacks hash, prev_hash or seq", None
    if canonical_json(entry) + b"\n" != line:
        return "the line is not in canonical form (it was edited)", None
    if entry_hash(entry) != digest:
        return "the entry's hash does not match its content (it was edited)", None
    if key is not None and "mac" in entry and entry["mac"] != chain_mac(key, digest):
        return _MAC_MISMATCH, None
    if previous is None:
        if entry.get("type") != "genesis" or prev != GENESIS_PREV_HASH or seq != 0:
            return (
                "the first line is not the genesis entry (lines were removed from the start)",
                None,
            )
        device = entry.get("device")
        if key is not None and (
            not isinstance(device, dict) or device.get("key_check") != key_check(key)
        ):
            return "the file was started with a different HMAC key", None
        return None, entry
    if entry.get("type") == "genesis":
        return "a second genesis entry: another file was inserted or concatenated here", None
    if prev != previous["hash"]:
        return (
            f"prev_hash does not match the hash of line {number - 1}: "
            "a line was deleted, inserted or reordered here"
        ), None
    if seq != previous["seq"] + 1:
        return f"seq is {seq}, expected {previous['seq'] + 1}", None
    return None, entry


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def verify_file(
    path: str | os.PathLike[str],
    *,
    hmac_key: Sensitive[bytes] | None = None,
    expected_head: str | None = None,
    progress: Callable[[int], None] | None = None,
    upto: int | None = None,
) -> VerifyResult:
    """Verify the whole chain of an audit file, streaming it; never raises for bad content.

    ``progress`` is called with the number of bytes read so far. ``upto``
    stops after the line that reaches that many bytes (the file's size when
    its writer last finished a write: a file still being appended to is
    checked up to there). Raises :class:`OSError` only if the file cannot be
    read at all.
    """
    previous: dict[str, Any] | None = None
    device_id: str | None = None
    seen_expected = expected_head is None
    number = 0
    done = 0
    vouched = 0  # with the key: the last line whose mac checked out (it vouches for all before it)
    vouched_head: str | None = None
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            done += len(line)
            if progress is not None:
                progress(done)
            problem, entry = _problem(line, number, previous, hmac_key)
            if problem is not None or entry is None:
                if (
                    problem is _MAC_MISMATCH and vouched < number - 1
                ):  # the forgery may start after the last mac
                    return VerifyResult(
                        ok=False,
                        entries=vouched,
                        first_bad_line=vouched + 1,
                        reason=f"{_lines(vouched + 1, number - 1)} carry no mac that vouches for them, "
                        f"and line {number}: {problem}",
                        head=vouched_head,
                        device_id=device_id,
                    )
                return VerifyResult(
                    ok=False,
                    entries=number - 1,
                    first_bad_line=number,
                    reason=problem,
                    head=None if previous is None else previous["hash"],
                    device_id=device_id,
                )
            if previous is None:
                device = entry.get("device")
                device_id = str(device.get("id")) if isinstance(device, dict) else None
            if entry["hash"] == expected_head:
                seen_expected = True
            if "mac" in entry:
                vouched, vouched_head = number, entry["hash"]
            previous = entry
            if upto is not None and done >= upto:
                break
    if previous is None:
        return VerifyResult(
            ok=False, entries=0, first_bad_line=1, reason="the file is empty (no genesis entry)"
        )
    if hmac_key is not None and vouched < number:
        return VerifyResult(
            ok=False,
            entries=vouched,
            first_bad_line=vouched + 1,
            reason=f"{_lines(vouched + 1, number)} at the end of the file carry no mac that vouches for them (forged or appended)",
            head=vouched_head,
            device_id=device_id,
        )
    if not seen_expected:
        return VerifyResult(
            ok=False,
            entries=number,
            first_bad_line=number + 1,
            reason=f"the expected head {expected_head} is not in the file: entries were removed from the end",
            head=previous["hash"],
            device_id=device_id,
        )
    return VerifyResult(ok=True, entries=number, head=previous["hash"], device_id=device_id)
