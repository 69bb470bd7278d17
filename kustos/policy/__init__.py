"""Vault-compatible ACL policies: parse documents, merge them, decide per path (pure, no I/O).

* :mod:`kustos.policy.documents` parses HCL/JSON into :class:`Policy` values
  and prints them back (``kustos policy fmt``).
* :mod:`kustos.policy.evaluating` holds :class:`ACL`, which answers "may this
  token do this on that path?" with Vault's merge and priority rules.
* :mod:`kustos.policy.builtins` supplies the ``root`` and ``default`` policies.

The server calls this from its one ``authorize()``::

    acl = ACL([default_policy(), Policy.parse("app", text)])
    decision = acl.check(operation_for("POST", exists=False), "secret/data/app/db", data=body)
    if not decision.allowed: raise PermissionDeniedError(decision.reason)
"""

from kustos.policy.builtins import (
    BUILTIN_POLICY_NAMES,
    DEFAULT_POLICY_TEXT,
    default_policy,
    root_policy,
)
from kustos.policy.documents import (
    CAPABILITIES,
    PathRule,
    Policy,
    PolicyError,
    normalize_policy_name,
)
from kustos.policy.evaluating import ACL, Decision, Operation, Permissions, operation_for

__all__ = [
    "ACL",
    "BUILTIN_POLICY_NAMES",
    "CAPABILITIES",
    "DEFAULT_POLICY_TEXT",
    "Decision",
    "Operation",
    "PathRule",
    "Permissions",
    "Policy",
    "PolicyError",
    "default_policy",
    "normalize_policy_name",
    "operation_for",
    "root_policy",
]
