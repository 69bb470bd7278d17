"""The audit trail: HMAC'd, hash-chained JSON lines, and the tools that check and search them.

* :mod:`kustos.audit.entries` - what an entry holds and which fields are HMAC'd.
* :mod:`kustos.audit.hashing` - value HMACs (``sys/audit-hash``) and the chain hashes.
* :mod:`kustos.audit.devices` - :class:`FileAuditDevice` and the fail-closed :class:`AuditBroker`.
* :mod:`kustos.audit.verifying` - :func:`verify_file` names the first tampered line.
* :mod:`kustos.audit.searching` - :func:`search` and :func:`access_map` for ``kustos audit``.

The server wraps every request::

    broker.log_request(auth=auth, request=req)          # AuditWriteError -> 503, do nothing
    ... handle ...
    broker.log_response(auth=auth, request=req, response=AuditResponse(status=200, data=body))
"""

from kustos.audit.devices import (
    AuditBroker,
    AuditDevice,
    AuditWriteError,
    FileAuditDevice,
    StagedBatch,
    generate_hmac_key,
)
from kustos.audit.entries import AuditAuth, AuditRequest, AuditResponse, format_entry
from kustos.audit.hashing import GENESIS_PREV_HASH, HMAC_PREFIX, hash_structure, hash_value
from kustos.audit.searching import (
    AccessRecord,
    AuditRecord,
    access_map,
    identity_of,
    iter_entries,
    search,
)
from kustos.audit.verifying import VerifyResult, verify_file

__all__ = [
    "GENESIS_PREV_HASH",
    "HMAC_PREFIX",
    "AccessRecord",
    "AuditAuth",
    "AuditBroker",
    "AuditDevice",
    "AuditRecord",
    "AuditRequest",
    "AuditResponse",
    "AuditWriteError",
    "FileAuditDevice",
    "StagedBatch",
    "VerifyResult",
    "access_map",
    "format_entry",
    "generate_hmac_key",
    "hash_structure",
    "hash_value",
    "identity_of",
    "iter_entries",
    "search",
    "verify_file",
]
