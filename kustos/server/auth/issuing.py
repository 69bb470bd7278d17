"""What every auth method shares: Vault's ``token_*`` role fields and issuing the login token.

Roles and users of every method carry the same token settings under Vault's
names (``token_policies``, ``token_ttl``, ``token_max_ttl``, ...), with the
deprecated aliases (``policies``, ``ttl``, ``max_ttl``) accepted too.
:func:`issue_login_token` creates the token (an orphan, like Vault's
login tokens, with ``default`` added unless ``token_no_default_policy``)
and returns Vault's ``auth`` object for the login answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kustos.errors import InvalidRequestError
from kustos.server.auth.mounts import AuthMount
from kustos.server.calls import Reply
from kustos.server.committing import answer_at_commit
from kustos.server.params import bool_param, int_param, str_list_param
from kustos.server.times import parse_duration
from kustos.server.tokens import TokenStore
from kustos.store.base import StorageBackend, Transaction

__all__ = ["TokenSettings", "issue_login_token", "login_reply", "str_field"]


def str_field(body: Mapping[str, Any], name: str, *, default: str = "") -> str:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be a string")
    return value


@dataclass(frozen=True)
class TokenSettings:
    """The ``token_*`` fields of a role or user."""

    policies: tuple[str, ...] = ()
    ttl: float = 0.0
    max_ttl: float = 0.0
    explicit_max_ttl: float = 0.0
    no_default_policy: bool = False

    def describe(self) -> dict[str, Any]:
        """The fields as a role read shows them (Vault's names and the deprecated aliases)."""
        return {
            "token_policies": list(self.policies),
            "policies": list(self.policies),
            "token_ttl": int(self.ttl),
            "ttl": int(self.ttl),
            "token_max_ttl": int(self.max_ttl),
            "max_ttl": int(self.max_ttl),
            "token_explicit_max_ttl": int(self.explicit_max_ttl),
            "token_no_default_policy": self.no_default_policy,
            "token_num_uses": 0,
            "token_period": 0,
            "token_type": "default",
            "token_bound_cidrs": [],
        }

    def to_doc(self) -> dict[str, Any]:
        return {
            "policies": list(self.policies),
            "ttl": self.ttl,
            "max_ttl": self.max_ttl,
            "explicit_max_ttl": self.explicit_max_ttl,
            "no_default_policy": self.no_default_policy,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> TokenSettings:
        return cls(
            policies=tuple(str(p) for p in doc.get("policies", ())),
            ttl=float(doc.get("ttl", 0.0)),
            max_ttl=float(doc.get("max_ttl", 0.0)),
            explicit_max_ttl=float(doc.get("explicit_max_ttl", 0.0)),
            no_default_policy=bool(doc.get("no_default_policy", False)),
        )

    def updated(self, body: Mapping[str, Any]) -> TokenSettings:
        """These settings with the fields present in ``body`` applied (create or update)."""

        def duration(*names: str, current: float) -> float:
            for name in names:
                if body.get(name) not in (None, ""):
                    return parse_duration(body[name], field=name)
            return current

        policies = self.policies
        for name in ("token_policies", "policies"):
            if name in body:
                policies = tuple(dict.fromkeys(str_list_param(body[name], field=name)))
                break
        if body.get("token_num_uses") not in (None, 0, "0", ""):
            int_param(body["token_num_uses"], field="token_num_uses", maximum=2**31 - 1)
            raise InvalidRequestError(
                "token_num_uses is not supported; limited-use tokens are not available"
            )
        if body.get("token_type") not in (None, "", "default", "service", "default-service"):
            raise InvalidRequestError("token_type: only service tokens are supported")
        ttl = duration("token_ttl", "ttl", current=self.ttl)
        max_ttl = duration("token_max_ttl", "max_ttl", current=self.max_ttl)
        if max_ttl and ttl > max_ttl:
            raise InvalidRequestError("token_ttl cannot be greater than token_max_ttl")
        no_default = self.no_default_policy
        if body.get("token_no_default_policy") is not None:
            no_default = bool_param(
                body["token_no_default_policy"], field="token_no_default_policy"
            )
        return TokenSettings(
            policies=policies,
            ttl=ttl,
            max_ttl=max_ttl,
            explicit_max_ttl=duration("token_explicit_max_ttl", current=self.explicit_max_ttl),
            no_default_policy=no_default,
        )


async def issue_login_token(
    *,
    tokens: TokenStore,
    mount: AuthMount,
    settings: TokenSettings,
    display_name: str | None,
    metadata: Mapping[str, str],
    now: float,
    tx: Transaction | None = None,
) -> dict[str, Any]:
    """Create the login token and return Vault's ``auth`` object (the token shown once).

    ``tx``: create it in the caller's transaction (see :func:`login_reply`).
    """
    policies = list(settings.policies)
    if not settings.no_default_policy and "default" not in policies:
        policies.append("default")
    caps = [t for t in (settings.max_ttl, settings.explicit_max_ttl) if t > 0]
    explicit_max = min(caps) if caps else 0.0
    token, entry = await tokens.create(
        policies=policies,
        ttl=settings.ttl or None,
        explicit_max_ttl=explicit_max,
        display_name=display_name,
        display_prefix=mount.display_prefix,
        meta=dict(metadata),
        orphan=True,
        path=f"auth/{mount.path}login",
        tx=tx,
    )
    token_policies = list(entry.policies)
    return {
        "client_token": token.reveal(),
        "accessor": entry.accessor,
        "policies": token_policies,
        "token_policies": token_policies,
        "identity_policies": None,
        "metadata": dict(entry.meta),
        "lease_duration": entry.remaining(now),
        "renewable": entry.renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": True,
        "mfa_requirement": None,
        "num_uses": 0,
    }


async def login_reply(
    *,
    storage: StorageBackend,
    tokens: TokenStore,
    mount: AuthMount,
    settings: TokenSettings,
    display_name: str | None,
    metadata: Mapping[str, str],
    now: float,
) -> Reply:
    """A login's answer: the token is created in a transaction whose answer (the ``auth`` object)
    is audited before it commits (:mod:`kustos.server.committing`)."""
    async with storage.transaction() as tx:
        auth = await issue_login_token(
            tokens=tokens,
            mount=mount,
            settings=settings,
            display_name=display_name,
            metadata=metadata,
            now=now,
            tx=tx,
        )
        reply = answer_at_commit(Reply(auth=auth))
    return reply
