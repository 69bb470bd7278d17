"""The two policies every Kustos server has: ``root`` and ``default``.

``root`` has no rules: an :class:`~kustos.policy.ACL` holding it grants every
capability everywhere (and it cannot be combined with other policies).
``default`` is attached to every non-root token unless asked otherwise. It
lets a token manage itself and nothing else: look itself up, renew or revoke
itself, ask what it may do on a path, use its cubbyhole, renew and look up
leases, and use the wrapping and hashing tools. Like Vault's, it can be
edited but not deleted; the server enforces that, this module only supplies
the starting text.
"""

from __future__ import annotations

from typing import Final

from kustos.policy.documents import Policy

__all__ = ["BUILTIN_POLICY_NAMES", "DEFAULT_POLICY_TEXT", "default_policy", "root_policy"]

BUILTIN_POLICY_NAMES: Final = frozenset({"root", "default"})

DEFAULT_POLICY_TEXT: Final = """\
# The default policy: a token may manage itself and nothing else.

# Read its own properties (TTL, policies, metadata).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# Extend or end its own life.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# Ask which capabilities it has on a path.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# See the combined ACL of its policies (used by UIs).
path "sys/internal/ui/resultant-acl" {
  capabilities = ["read"]
}

# Renew and look up leases it knows the id of.
path "sys/renew" {
  capabilities = ["update"]
}

path "sys/leases/renew" {
  capabilities = ["update"]
}

path "sys/leases/lookup" {
  capabilities = ["update"]
}

# Its private cubbyhole.
path "cubbyhole/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# Response wrapping.
path "sys/wrapping/wrap" {
  capabilities = ["update"]
}

path "sys/wrapping/lookup" {
  capabilities = ["update"]
}

path "sys/wrapping/unwrap" {
  capabilities = ["update"]
}

# General-purpose hashing tools.
path "sys/tools/hash" {
  capabilities = ["update"]
}

path "sys/tools/hash/*" {
  capabilities = ["update"]
}
"""


def root_policy() -> Policy:
    """The ``root`` policy: no rules, every capability (see :class:`~kustos.policy.ACL`)."""
    return Policy(name="root", rules=(), raw="")


def default_policy(text: str = DEFAULT_POLICY_TEXT) -> Policy:
    """The ``default`` policy, from its built-in text or an operator's edited version."""
    return Policy.parse("default", text)
