"""Kustos: secrets management for Kubernetes.

One package, several roles (see ``docs/architecture.md``): the server (the
encrypted, versioned source of truth behind a Vault-compatible API), the CLI,
the operator, and offline tools for sealing secrets and encrypting files.

Layers only import downward (checked by import-linter in ``make test``)::

    cli
    server | operator | agent | kmsplugin | csi
    client
    store | keys | audit | gitops
    policy | crypto
    errors | config | sensitive
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
