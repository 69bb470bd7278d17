"""ExternalSecret providers: one module per backend, one interface, one registry.

``default_registry()`` returns a registry with every built-in provider:
``fake``, ``kubernetes``, ``aws``, ``vault`` and ``kustos``. Tests and
embedders may register more with :meth:`ProviderRegistry.register`.
"""

from __future__ import annotations

from kustos.operator.providers import aws, fake, kubernetes, kustos, vault
from kustos.operator.providers.base import (
    FindSpec,
    Provider,
    ProviderContext,
    ProviderError,
    ProviderFactory,
    ProviderRegistry,
    Pusher,
    PushRef,
    RemoteRef,
)

__all__ = [
    "FindSpec",
    "Provider",
    "ProviderContext",
    "ProviderError",
    "ProviderFactory",
    "ProviderRegistry",
    "PushRef",
    "Pusher",
    "RemoteRef",
    "default_registry",
]


def default_registry() -> ProviderRegistry:
    """A registry holding every built-in provider."""
    return ProviderRegistry(
        {
            "fake": fake.create,
            "kubernetes": kubernetes.create,
            "aws": aws.create,
            "vault": vault.create,
            "kustos": kustos.create,
        }
    )
