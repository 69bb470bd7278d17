"""Audit devices: where entries are written, and the broker that refuses to go on without them.

:class:`FileAuditDevice` appends one JSON line per entry to a file and keeps
the hash chain going. The first line of a new file is a *genesis* entry with
a random device id and a fingerprint of the HMAC key; every later entry links
to the one before. Reopening a file (after a restart) reads the first line to
check the key and the last line to continue the chain, so the caller only has
to keep the key (:func:`generate_hmac_key`) somewhere safe.

:class:`AuditBroker` writes each entry to every enabled device and raises
:class:`AuditWriteError` when none of them could record it: the server must
then refuse the request (fail closed). With no device enabled it records
nothing and lets requests through, as Vault does.

One process per file: two writers appending to the same file would fork the
chain, and ``kustos audit verify`` would report it.

Cost: an API call writes two entries (request, response). The device keys
its HMACs once (:class:`kustos.audit.hashing.ValueHasher`) and builds each
line from canonical JSON pieces in sorted-key order, hashing the bytes
without ``hash`` and ``mac`` and splicing those two in (byte for byte what
:func:`kustos.audit.hashing.canonical_json` gives for the whole entry). A
call's ``auth`` and ``request`` parts are serialized once for both entries,
a caller's ``auth`` part is kept while the same :class:`AuditAuth` object
comes back, and HMAC'd response data is looked up by a keyed BLAKE2b of the
data's JSON (bounded caches holding only HMAC'd text and keyed hashes). Each
entry is one ``write(2)`` of one line with ``O_APPEND``, no user-space
buffer, so a crash loses at most the line being written; a call that changes
nothing (a read) has its two entries staged (:meth:`FileAuditDevice.stage_call`)
so that the reads of one event-loop turn share one ``write(2)``
(:meth:`FileAuditDevice.flush`), before their answers are sent; only the last
entry of such a write carries a ``mac``, which vouches for the ones before it
through the chain (:mod:`kustos.audit.verifying`). With
``fsync=True`` each write is also on disk before the call returns (about one
disk flush per write: milliseconds, not microseconds).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from kustos.audit.entries import (
    AuditAuth,
    AuditRequest,
    AuditResponse,
    EntryType,
    format_auth,
    format_request,
    format_response,
    format_time,
)
from kustos.audit.hashing import (
    CHAIN_PREFIX,
    GENESIS_PREV_HASH,
    ValueHasher,
    canonical_json,
    entry_hash,
    key_check,
)
from kustos.audit.verifying import VerifyResult, verify_file
from kustos.errors import KustosError
from kustos.sensitive import Sensitive

__all__ = [
    "AuditBroker",
    "AuditDevice",
    "AuditWriteError",
    "FileAuditDevice",
    "StagedBatch",
    "generate_hmac_key",
]

_TAIL_CHUNK: Final = 64 * 1024
_CHAIN_PREFIX_BYTES: Final = CHAIN_PREFIX.encode()
# The rest of an entry's canonical JSON around its serialized parts (see _entry_line).
_CHAIN_FIELDS: Final = b',"hash":"%s","mac":"%s",'
_HASH_FIELD: Final = b',"hash":"%s",'
_REQUEST_TAIL: Final = b'"prev_hash":"%s","request":%s,"seq":%d,"time":"%s","type":"request"}'
_RESPONSE_PART: Final = b'{"data":%s,"mount_type":%s,"status":%d,"warnings":%s}'
_KV_JSON: Final = b'"kv"'
_RESPONSE_TAIL: Final = (
    b'"prev_hash":"%s","request":%s,"response":%s,"seq":%d,"time":"%s","type":"response"}'
)
_PENDING_LIMIT: Final = 1024
HMAC_KEY_BYTES: Final = 32
# Serialize only what the walk would hash as the same text (others raise TypeError).
_PLAIN_JSON: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


class AuditWriteError(KustosError):
    """No audit record could be written; the request it was for must not proceed.

    The server maps it to 503. The message names the device and the OS error,
    never an entry's content.
    """


def generate_hmac_key(*, random: Callable[[int], bytes] = secrets.token_bytes) -> Sensitive[bytes]:
    """A new 256-bit device key. Store it (encrypted) with the device's configuration."""
    return Sensitive(random(HMAC_KEY_BYTES))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditDevice(Protocol):
    """What the broker needs from a device."""

    def hash_value(self, value: str) -> str: ...

    def log_request(self, *, auth: AuditAuth, request: AuditRequest, error: str = "") -> str: ...

    def log_response(
        self, *, auth: AuditAuth, request: AuditRequest, response: AuditResponse, error: str = ""
    ) -> str: ...

    def stage_call(
        self, *, auth: AuditAuth, request: AuditRequest, response: AuditResponse, error: str = ""
    ) -> StagedBatch: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def _read_first_line(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, _TAIL_CHUNK, offset)
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline != -1:
            chunks.append(chunk[: newline + 1])
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _read_last_line(fd: int, size: int) -> bytes:
    """Return the file's last line, with its newline if it has one, reading backwards in chunks."""
    end = size
    buffer = b""
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        buffer = os.pread(fd, end - start, start) + buffer
        end = start
        newline = buffer.rfind(b"\n", 0, len(buffer) - 1)
        if newline != -1:
            return buffer[newline + 1 :]
    return buffer


def _parse_chained(line: bytes) -> dict[str, Any] | None:
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("hash"), str)
        or not isinstance(entry.get("seq"), int)
    ):
        return None
    if canonical_json(entry) + b"\n" != line or entry_hash(entry) != entry["hash"]:
        return None
    return entry


# A caller as a device remembers it: its AuditAuth, auth part (JSON), token HMAC, entry head, hash state.
_Caller = tuple[AuditAuth, bytes, str, bytes, Any]


class StagedBatch:
    """Entries staged on a device (:meth:`FileAuditDevice.stage_call`) until its next flush.

    After the flush, ``written`` says whether they are in the file; if not,
    ``error`` says why (and none of them is).
    """

    __slots__ = ("entries", "error", "head", "pieces", "seq", "written")

    def __init__(self, head: bytes, seq: int) -> None:
        self.pieces: list[bytes] = []
        self.entries = 0
        self.head = head  # the chain tip after the staged entries (UTF-8)
        self.seq = seq
        self.written = False
        self.error: str | None = None


class FileAuditDevice:
    """Appends hash-chained, HMAC'd JSON lines to one file.

    ``FileAuditDevice(path, hmac_key=key)`` creates the file (mode 0600) with a
    genesis entry, or continues the chain of an existing one. Raises
    :class:`AuditWriteError` if the file cannot be opened or written, if its
    last line is damaged, or if it was started with another key. With
    ``fsync=True`` each entry is on disk before :meth:`log_request` returns.
    ``clear_request_keys``/``clear_response_keys`` name body keys whose values
    are written without HMAC (Vault's ``audit_non_hmac_*_keys``).
    ``epoch_clock`` (seconds since the epoch, e.g. ``time.time``), when given,
    dates the entries instead of ``clock``: no ``datetime`` per entry.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hmac_key: Sensitive[bytes],
        fsync: bool = False,
        mode: int = 0o600,
        clock: Callable[[], datetime] = _utcnow,
        epoch_clock: Callable[[], float] | None = None,
        random: Callable[[int], bytes] = secrets.token_bytes,
        clear_request_keys: Collection[str] = (),
        clear_response_keys: Collection[str] = (),
    ) -> None:
        self.path = Path(path)
        self._epoch_clock = epoch_clock
        self._key = hmac_key
        self._hasher = ValueHasher(hmac_key)
        self._fsync = fsync
        self._clock = clock
        self._clear_request = frozenset(clear_request_keys)
        self._clear_response = frozenset(clear_response_keys)
        self._lock = threading.Lock()
        self._broken: str | None = None
        self._second: float | None = (
            None  # the last entry's time in whole seconds (int with epoch_clock), and its text
        )
        self._second_text = ""
        self._second_bytes = b""
        # Calls between their request and response entry: the auth and request parts, serialized once.
        self._pending: dict[int, tuple[AuditRequest, AuditAuth, _Caller, bytes]] = {}
        # Recent callers (an AuditAuth is reused for a token's calls): the JSON of their auth part, their
        # token's HMAC, and the first bytes of their entries without an error ({"auth":<part>,"error":"")
        # with the SHA-256 state after them, so that each entry hashes only what follows.
        self._auths: dict[int, _Caller] = {}
        # HMAC'd response data (canonical JSON) by a keyed BLAKE2b of the data's JSON (see _response_part);
        # the key is random per device and never leaves memory, so the cache keys reveal nothing either.
        self._hashed_data: dict[bytes, bytes] = {}
        self._data_mac = hashlib.blake2b(key=secrets.token_bytes(32), digest_size=16)
        try:
            self._fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode
            )
        except OSError as exc:
            raise AuditWriteError(
                f"audit file {str(self.path)!r} cannot be opened: {exc.strerror}"
            ) from None
        self._batch = StagedBatch(b"", -1)  # empty; staging takes the chain tip from head and seq
        try:
            self._resume(random)
        except BaseException:
            self.close()
            raise

    # --- opening -----------------------------------------------------------------------------

    def _resume(self, random: Callable[[int], bytes]) -> None:
        try:
            with open(self.path, "rb") as reader:
                fd = reader.fileno()
                size = os.fstat(fd).st_size
                first = _read_first_line(fd, size) if size else b""
                last = _read_last_line(fd, size) if size else b""
        except OSError as exc:
            raise AuditWriteError(
                f"audit file {str(self.path)!r} cannot be read: {exc.strerror}"
            ) from None
        if size == 0:
            self.device_id = random(16).hex()
            genesis = {
                "type": "genesis",
                "time": format_time(self._clock()),
                "device": {"id": self.device_id, "key_check": key_check(self._key), "format": 1},
                "seq": 0,
                "prev_hash": GENESIS_PREV_HASH,
            }
            self.head = GENESIS_PREV_HASH
            self.seq = -1
            self._append(genesis)
            return
        where = f"audit file {str(self.path)!r}"
        if not last.endswith(b"\n"):
            raise AuditWriteError(
                f"{where} ends with an incomplete line; run `kustos audit verify` before reusing it"
            )
        head = _parse_chained(first)
        if (
            head is None
            or head.get("type") != "genesis"
            or not isinstance(head.get("device"), dict)
        ):
            raise AuditWriteError(
                f"{where} does not start with a valid genesis entry; run `kustos audit verify`"
            )
        if head["device"].get("key_check") != key_check(self._key):
            raise AuditWriteError(f"{where} was started with a different HMAC key")
        tail = _parse_chained(last)
        if tail is None:
            raise AuditWriteError(
                f"{where} ends with a damaged entry; run `kustos audit verify` before reusing it"
            )
        self.device_id = str(head["device"].get("id", ""))
        self.head = str(tail["hash"])
        self.seq = int(tail["seq"])

    # --- writing -----------------------------------------------------------------------------

    def _append(self, body: dict[str, Any]) -> str:
        self._flush_locked()
        if self._fd is None:
            raise AuditWriteError(f"audit file {str(self.path)!r} is closed")
        if self._broken is not None:
            raise AuditWriteError(self._broken)
        body["seq"] = self.seq + 1
        body["prev_hash"] = self.head
        before = {k: v for k, v in body.items() if k < "hash"}
        after = {k: v for k, v in body.items() if k > "mac"}
        if len(before) + len(after) == len(body):
            digest, line = self._chain_line(before, after)
        else:  # a key sorts between "hash" and "mac": the plain way
            digest = entry_hash(body)
            line = (
                canonical_json({**body, "hash": digest, "mac": self._hasher.chain_mac(digest)})
                + b"\n"
            )
        return self._write(digest, (line,))

    def _write(self, digest: str, pieces: Sequence[bytes], entries: int = 1) -> str:
        """Append ``pieces`` (whole lines, ``entries`` of them) with one ``writev(2)``."""
        if self._fd is None:
            raise AuditWriteError(f"audit file {str(self.path)!r} is closed")
        try:
            written = os.write(self._fd, b"".join(pieces))
        except OSError as exc:
            raise AuditWriteError(
                f"audit file {str(self.path)!r} cannot be written: {exc.strerror}"
            ) from None
        if written != sum(map(len, pieces)):
            self._remove_partial(self._fd, written)
            raise AuditWriteError(
                f"audit file {str(self.path)!r} cannot be written: short write (disk full?)"
            )
        if self._fsync:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._broken = f"audit file {str(self.path)!r} cannot be synced: {exc.strerror}"
                raise AuditWriteError(self._broken) from None
        self.head = digest
        self.seq += entries
        return digest

    def _chain_line(self, before: dict[str, Any], after: dict[str, Any]) -> tuple[str, bytes]:
        """The chain hash and line (canonical JSON with ``hash`` and ``mac``, newline) of the entry
        whose fields are ``before`` (keys sorting before "hash") and ``after`` (after "mac")."""
        head = canonical_json(before)[1:-1]
        tail = canonical_json(after)[1:-1]
        digest = (
            CHAIN_PREFIX
            + hashlib.sha256(b"{" + b",".join(p for p in (head, tail) if p) + b"}").hexdigest()
        )
        middle = (
            b'"hash":"'
            + digest.encode()
            + b'","mac":"'
            + self._hasher.chain_mac(digest).encode()
            + b'"'
        )
        return digest, b"{" + b",".join(p for p in (head, middle, tail) if p) + b"}\n"

    def _remove_partial(self, fd: int, written: int) -> None:
        # Cut the half-written line off so the chain stays valid and a later write can succeed.
        try:
            size = os.fstat(fd).st_size
            os.ftruncate(fd, size - written)
        except OSError as exc:
            self._broken = (
                f"audit file {str(self.path)!r} holds a partial entry that could not be removed"
                f" ({exc.strerror}); it needs an operator"
            )

    def _log(
        self,
        entry_type: EntryType,
        *,
        auth: AuditAuth,
        request: AuditRequest,
        response: AuditResponse | None,
        error: str,
    ) -> str:
        with self._lock:
            self._flush_locked()
            self._check_open()
            caller, request_part = self._call_parts(entry_type, auth, request)
            response_part = None
            if entry_type == "response":
                response_part = self._response_part(response or AuditResponse(status=0))
            digest, line = self._entry_line(
                caller,
                request_part,
                response_part,
                error,
                self._time_bytes(),
                self.seq + 1,
                self.head.encode(),
            )
            return self._write(digest.decode(), line)

    def _check_open(self) -> None:
        if self._fd is None:
            raise AuditWriteError(f"audit file {str(self.path)!r} is closed")
        if self._broken is not None:
            raise AuditWriteError(self._broken)

    def _entry_line(
        self,
        caller: _Caller,
        request_part: bytes,
        response_part: bytes | None,
        error: str,
        time_bytes: bytes,
        seq: int,
        prev_hash: bytes,
    ) -> tuple[bytes, tuple[bytes, bytes, bytes, bytes]]:
        """The chain hash and the line of one entry (in four pieces: head, chain fields, tail, newline),
        from its serialized parts: a request entry without ``response_part``, a response entry with it."""
        # The entry's canonical JSON, built from its pieces in sorted key order: "auth",
        # "error", ("hash", "mac"), "prev_hash", "request", "response", "seq", "time", "type".
        head, state = self._error_head(caller, error) if error else (caller[3], caller[4].copy())
        if response_part is None:
            tail = _REQUEST_TAIL % (prev_hash, request_part, seq, time_bytes)
        else:
            tail = _RESPONSE_TAIL % (prev_hash, request_part, response_part, seq, time_bytes)
        state.update(tail)
        digest = _CHAIN_PREFIX_BYTES + state.hexdigest().encode()
        return digest, (
            head,
            _CHAIN_FIELDS % (digest, self._hasher.chain_mac_bytes(digest)),
            tail,
            b"\n",
        )

    @staticmethod
    def _error_head(caller: _Caller, error: str) -> tuple[bytes, Any]:
        """The head of an entry with an ``error`` (``{"auth":<part>,"error":<text>``) and the SHA-256 state after it."""
        head = b'{"auth":' + caller[1] + b',"error":' + canonical_json(error)
        return head, hashlib.sha256(head + b",")

    def _time_bytes(self) -> bytes:
        """The ``time`` of an entry written now."""
        epoch_clock = self._epoch_clock
        if epoch_clock is None:
            return self._time_text().encode()
        # microseconds since the epoch; the text up to the second reused
        second, micros = divmod(round(epoch_clock() * 1_000_000), 1_000_000)
        if second != self._second:
            self._second_bytes = format_time(datetime.fromtimestamp(second, UTC))[
                : -len(".000000Z")
            ].encode()
            self._second = second
        return b"%s.%06dZ" % (self._second_bytes, micros)

    def _response_part(self, response: AuditResponse) -> bytes:
        """The ``response`` part as canonical JSON.

        Its ``data`` HMAC'd is looked up by a keyed BLAKE2b of the data's JSON
        (the same secret read again gives the same bytes): one short hash per
        response instead of one HMAC per value, plus a decode and a walk. The
        cache holds only HMAC'd text and keyed hashes, never a value.
        """
        data = response.data
        if data is None or response.auth is not None:
            return canonical_json(format_response(self._hasher, response, self._clear_response))
        try:
            raw = orjson.dumps(data, option=_PLAIN_JSON)
        except (
            TypeError
        ):  # not plain JSON (Sensitive, datetime, str subclass, ...): the walk handles it
            return canonical_json(format_response(self._hasher, response, self._clear_response))
        keyed = self._data_mac.copy()
        keyed.update(raw)
        mac = keyed.digest()
        hashed = self._hashed_data.get(mac)
        if hashed is None:
            hashed = canonical_json(self._hasher.structure(data, self._clear_response))
            if len(self._hashed_data) >= _PENDING_LIMIT:
                self._hashed_data.clear()
            self._hashed_data[mac] = hashed
        mount_type = response.mount_type
        return _RESPONSE_PART % (
            hashed,
            _KV_JSON if mount_type == "kv" else canonical_json(mount_type),
            response.status,
            canonical_json(list(response.warnings)) if response.warnings else b"[]",
        )

    def _time_text(self) -> str:
        """:func:`format_time` of ``clock`` (without ``epoch_clock``), the text up to the second reused."""
        moment = self._clock()
        if moment.tzinfo is None:
            return format_time(moment)  # raises: audit times must be timezone-aware
        utc = moment.astimezone(UTC)
        second = utc.timestamp() // 1  # whole seconds (float error is far below a microsecond)
        if second != self._second:
            self._second_text = format_time(utc.replace(microsecond=0))[: -len(".000000Z")]
            self._second = second
        return f"{self._second_text}.{utc.microsecond:06d}Z"

    def _caller(self, auth: AuditAuth) -> _Caller:
        """Serialize ``auth`` and remember it (see ``_auths``)."""
        auth_payload, token_mac = format_auth(self._hasher, auth)
        auth_part = canonical_json(auth_payload)
        head = b'{"auth":' + auth_part + b',"error":""'
        if len(self._auths) >= _PENDING_LIMIT:
            self._auths.clear()
        caller = self._auths[id(auth)] = (
            auth,
            auth_part,
            token_mac,
            head,
            hashlib.sha256(head + b","),
        )
        return caller

    def _call_parts(
        self, entry_type: EntryType | None, auth: AuditAuth, request: AuditRequest
    ) -> tuple[_Caller, bytes]:
        """The caller (its ``auth`` part) and the ``request`` part as canonical JSON; a response entry
        reuses its request entry's.

        ``entry_type`` ``None``: both entries of a call are written together (nothing kept).
        """
        pending = self._pending
        if entry_type == "response":
            known = pending.pop(id(request), None)
            if known is not None and known[0] is request and known[1] is auth:
                return known[2], known[3]
        caller = self._auths.get(id(auth))
        if caller is None or caller[0] is not auth:
            caller = self._caller(auth)
        request_part = self._request_part(request, auth, caller[2])
        if entry_type == "request":
            if len(pending) >= _PENDING_LIMIT:  # calls that never logged a response
                pending.clear()
            pending[id(request)] = (request, auth, caller, request_part)
        return caller, request_part

    def _request_part(self, request: AuditRequest, auth: AuditAuth, token_mac: str) -> bytes:
        """The ``request`` part as canonical JSON; ``token_mac`` is the HMAC of ``auth``'s token."""
        if request.client_token is not auth.client_token:
            token = request.client_token
            token_mac = (
                self._hasher.value(token.reveal()) if token is not None and token.reveal() else ""
            )
        return canonical_json(
            format_request(
                self._hasher, request, token_mac=token_mac, clear_request_keys=self._clear_request
            )
        )

    def log_request(self, *, auth: AuditAuth, request: AuditRequest, error: str = "") -> str:
        """Append the request entry; return its chain hash. Raises :class:`AuditWriteError`."""
        return self._log("request", auth=auth, request=request, response=None, error=error)

    def log_response(
        self, *, auth: AuditAuth, request: AuditRequest, response: AuditResponse, error: str = ""
    ) -> str:
        """Append the response entry; return its chain hash. Raises :class:`AuditWriteError`."""
        return self._log("response", auth=auth, request=request, response=response, error=error)

    def stage_call(
        self, *, auth: AuditAuth, request: AuditRequest, response: AuditResponse, error: str = ""
    ) -> StagedBatch:
        """Build the request and the response entry of a call that changed nothing (a read) and keep
        them for the next :meth:`flush`; ``error`` goes to the response entry.

        Calls staged together reach the file with one ``write(2)``. The caller
        must not answer before the flush, and then only if the returned
        batch's ``written`` is true. Raises :class:`AuditWriteError` if the
        device is closed or broken.
        """
        with self._lock:
            if self._fd is None or self._broken is not None:
                self._check_open()
            caller = self._auths.get(id(auth))
            if caller is None or caller[0] is not auth:
                caller = self._caller(auth)
            request_part = self._request_part(request, auth, caller[2])
            response_part = self._response_part(response)
            time_bytes = self._time_bytes()
            batch = self._batch
            if not batch.entries:  # entries written since the last flush moved the chain on
                batch.head, batch.seq = self.head.encode(), self.seq
            seq = batch.seq
            # Both entries as _entry_line builds them, without mac (the flush adds the last one's), inline:
            # this runs for every read.
            head, state = caller[3], caller[4].copy()
            first_tail = _REQUEST_TAIL % (batch.head, request_part, seq + 1, time_bytes)
            state.update(first_tail)
            first = _CHAIN_PREFIX_BYTES + state.hexdigest().encode()
            if error:
                second_head, state = self._error_head(caller, error)
            else:
                second_head, state = head, caller[4].copy()
            second_tail = _RESPONSE_TAIL % (first, request_part, response_part, seq + 2, time_bytes)
            state.update(second_tail)
            batch.head = _CHAIN_PREFIX_BYTES + state.hexdigest().encode()
            batch.pieces += (
                head,
                _HASH_FIELD % first,
                first_tail,
                b"\n",
                second_head,
                _HASH_FIELD % batch.head,
                second_tail,
                b"\n",
            )
            batch.entries += 2
            batch.seq = seq + 2
            return batch

    def flush(self) -> None:
        """Write every staged entry with one ``write(2)``; the batch records whether that worked."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        batch = self._batch
        if not batch.entries:
            return
        try:
            pieces = (
                batch.pieces
            )  # the last entry's chain fields get its mac, which vouches for the batch
            pieces[-3] = _CHAIN_FIELDS % (batch.head, self._hasher.chain_mac_bytes(batch.head))
            self._write(batch.head.decode(), pieces, entries=batch.entries)
            batch.written = True
        except (
            AuditWriteError
        ) as exc:  # none of them is in the file; the chain goes on from what is
            batch.error = str(exc)
        self._batch = StagedBatch(self.head.encode(), self.seq)

    def hash_value(self, value: str) -> str:
        """The HMAC this device writes for ``value`` (``sys/audit-hash``)."""
        return self._hasher.value(value)

    def verify(self) -> VerifyResult:
        """Check this device's file with its key, up to the entry it wrote last (reads the whole file).

        Staged entries are written first; the check stops at the file's size
        at that moment, so entries appended meanwhile do not make it fail,
        and it must find the chain head this device holds (entries removed
        from the end are caught). Blocking: run it in a worker thread.
        """
        with self._lock:
            self._flush_locked()
            head = self.head
            size = os.fstat(self._fd).st_size if self._fd is not None else None
        return verify_file(self.path, hmac_key=self._key, expected_head=head, upto=size)

    def close(self) -> None:
        """Close the file (staged entries are written first); later writes raise :class:`AuditWriteError`."""
        with self._lock:
            self._flush_locked()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> FileAuditDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FileAuditDevice(path={str(self.path)!r}, seq={self.seq})"


class AuditBroker:
    """Sends each entry to every enabled device; fails closed when none can record it."""

    def __init__(self, devices: Mapping[str, AuditDevice] | None = None) -> None:
        self._devices: dict[str, AuditDevice] = dict(devices or {})
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._devices)

    def enable(self, name: str, device: AuditDevice) -> None:
        """Add a device under ``name`` (the ``sys/audit/<name>`` path)."""
        with self._lock:
            if name in self._devices:
                raise KeyError(name)
            self._devices[name] = device

    def disable(self, name: str) -> None:
        """Remove and close the device called ``name``."""
        with self._lock:
            device = self._devices.pop(name)
        device.close()

    def hash_value(self, name: str, value: str) -> str:
        """``sys/audit-hash/<name>``: the HMAC device ``name`` writes for ``value``."""
        return self._devices[name].hash_value(value)

    def verify(self, name: str) -> VerifyResult | None:
        """Verify device ``name``'s file with its key (``None``: not a file device). Blocking."""
        device = self._devices.get(name)
        return device.verify() if isinstance(device, FileAuditDevice) else None

    def _each(self, write: Callable[[AuditDevice], str]) -> int:
        devices = list(self._devices.items())
        if not devices:
            return 0
        written = 0
        failures: list[str] = []
        for name, device in devices:
            try:
                write(device)
                written += 1
            except AuditWriteError as exc:
                failures.append(f"{name}: {exc}")
        if written == 0:
            raise self._refuse(failures)
        return written

    def _refuse(self, failures: list[str]) -> AuditWriteError:
        return AuditWriteError(
            "no audit device could record the request; refusing it (" + "; ".join(failures) + ")"
        )

    def log_request(self, *, auth: AuditAuth, request: AuditRequest, error: str = "") -> int:
        """Record the request on every device; return how many did. Raises if devices exist and none did."""
        devices = self._devices
        if len(devices) == 1:  # the usual setup: no closure, no list
            for name, device in devices.items():
                try:
                    device.log_request(auth=auth, request=request, error=error)
                except AuditWriteError as exc:
                    raise self._refuse([f"{name}: {exc}"]) from None
                return 1
        return self._each(lambda d: d.log_request(auth=auth, request=request, error=error))

    def log_response(
        self, *, auth: AuditAuth, request: AuditRequest, response: AuditResponse, error: str = ""
    ) -> int:
        """Record the response on every device; return how many did. Raises if devices exist and none did."""
        devices = self._devices
        if len(devices) == 1:
            for name, device in devices.items():
                try:
                    device.log_response(auth=auth, request=request, response=response, error=error)
                except AuditWriteError as exc:
                    raise self._refuse([f"{name}: {exc}"]) from None
                return 1
        return self._each(
            lambda d: d.log_response(auth=auth, request=request, response=response, error=error)
        )

    def stage_call(
        self, *, auth: AuditAuth, request: AuditRequest, response: AuditResponse, error: str = ""
    ) -> list[tuple[str, StagedBatch]]:
        """Stage a read's two entries on every device (see :meth:`FileAuditDevice.stage_call`).

        Raises :class:`AuditWriteError` if devices exist and none could stage
        them. After :meth:`flush`, :meth:`check_staged` says whether any
        device wrote them.
        """
        devices = self._devices
        if len(devices) == 1:  # the usual setup
            for name, device in devices.items():
                try:
                    return [
                        (
                            name,
                            device.stage_call(
                                auth=auth, request=request, response=response, error=error
                            ),
                        )
                    ]
                except AuditWriteError as exc:
                    raise self._refuse([f"{name}: {exc}"]) from None
        staged: list[tuple[str, StagedBatch]] = []
        failures: list[str] = []
        for name, device in list(devices.items()):
            try:
                staged.append(
                    (
                        name,
                        device.stage_call(
                            auth=auth, request=request, response=response, error=error
                        ),
                    )
                )
            except AuditWriteError as exc:
                failures.append(f"{name}: {exc}")
        if not staged and (failures or devices):
            raise self._refuse(failures)
        return staged

    def flush(self) -> None:
        """Write what every device has staged (each with one ``write(2)``)."""
        for device in list(self._devices.values()):
            device.flush()

    def check_staged(self, staged: list[tuple[str, StagedBatch]]) -> None:
        """Raise :class:`AuditWriteError` unless at least one device wrote its staged entries."""
        if staged and not any(batch.written for _, batch in staged):
            raise self._refuse(
                [f"{name}: {batch.error or 'not written'}" for name, batch in staged]
            )

    def close(self) -> None:
        with self._lock:
            devices = list(self._devices.values())
            self._devices.clear()
        for device in devices:
            device.close()
