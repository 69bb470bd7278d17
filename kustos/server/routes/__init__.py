"""Handlers of the non-engine API, one module per area, and the table that routes to them.

Each area is a :class:`PathApi` that owns a path prefix (``sys/``,
``auth/token/``, ``auth/kubernetes/``, ...). :func:`build_apis` lists them in
the order the dispatcher tries them (first matching prefix wins); adding an
area is one line here. Secrets engines mounted by users (kv, transit) are not
here: they are in ``Core.engines``, keyed by mount type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kustos.server.calls import Call, Reply
    from kustos.server.core import Core

__all__ = ["PathApi", "build_apis"]


class PathApi(Protocol):
    """One area of the API under a fixed path prefix."""

    prefix: str
    """The path prefix this area answers, e.g. ``"sys/"`` (no leading ``/v1/``).

    A prefix that does not end in ``/`` matches that one path exactly
    (the Sealed Secrets controller's ``cert.pem``, ``verify``, ``rotate``)."""

    def route(self, path: str) -> str:
        """Route template for metrics and logs (never a secret path)."""
        ...

    def needs_unsealed(self, path: str) -> bool:
        """False for paths that answer while sealed and without a token (health, seal-status)."""
        ...

    def needs_token(self, path: str) -> bool:
        """False for paths that may be called without a token (health, init, logins, ``cert.pem``).

        The dispatcher refuses a request that needs a token and sends none
        with 403 before it reads the body (nothing is parsed for an
        anonymous caller); the handler still checks the token's capabilities.
        Answering True for a path that needs none would lock callers out;
        answering False for one that needs a token only skips this early refusal.
        """
        ...

    async def handle(self, call: Call) -> Reply: ...


def build_apis(core: Core) -> list[PathApi]:
    """Every non-engine area, in the order the dispatcher tries their prefixes."""
    from kustos.server.routes.audit import AuditApi
    from kustos.server.routes.auth_methods import AuthMethodsApi
    from kustos.server.routes.bound import BoundApi
    from kustos.server.routes.events import EventsApi
    from kustos.server.routes.leases import LeasesApi
    from kustos.server.routes.passwords import PasswordPolicyApi
    from kustos.server.routes.policies import CapabilitiesApi, PolicyApi
    from kustos.server.routes.sealing import sealing_apis
    from kustos.server.routes.system import SystemApi
    from kustos.server.routes.tokens import TokenApi

    auth_methods = AuthMethodsApi(
        core
    )  # sys/auth (before sys/) and auth/<path>/ (after auth/token/)
    # the more specific sys/ areas come before SystemApi (first matching prefix wins)
    return [
        *auth_methods.sys_apis,
        PasswordPolicyApi(core, prefix="sys/policies/password"),
        PasswordPolicyApi(core, prefix="sys/policies/password/"),
        PolicyApi(core, legacy=False, prefix="sys/policies/"),
        PolicyApi(core, legacy=True, prefix="sys/policy"),
        PolicyApi(core, legacy=True, prefix="sys/policy/"),
        CapabilitiesApi(core, prefix="sys/capabilities"),
        CapabilitiesApi(core, prefix="sys/capabilities-self"),
        CapabilitiesApi(core, prefix="sys/capabilities-accessor"),
        AuditApi(core, prefix="sys/audit"),
        AuditApi(core, prefix="sys/audit/"),
        AuditApi(core, prefix="sys/audit-hash/"),
        EventsApi(core),
        BoundApi(core),
        LeasesApi(core, prefix="sys/leases/"),
        *(
            LeasesApi(core, prefix=p)
            for alias in ("sys/renew", "sys/revoke", "sys/revoke-prefix", "sys/revoke-force")
            for p in (alias, f"{alias}/")
        ),
        *sealing_apis(core),
        SystemApi(core),
        TokenApi(core),
        auth_methods,
    ]
