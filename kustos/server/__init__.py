"""The Kustos server: Vault's wire protocol over an encrypted, versioned store.

Layout: :mod:`.app` (ASGI app and dispatcher), :mod:`.running` (uvicorn,
TLS, ``serve``), :mod:`.core` (state opened once), :mod:`.barrier` (keyring,
seal/unseal, rotation, rewrap), :mod:`.tokens` (token store),
:mod:`.access` (the one authorization hook), :mod:`.mounts` (mount table),
:mod:`.engines.kv` (KV v2), :mod:`.routes` (``sys/*``, ``auth/token/*``),
:mod:`.errors` (error → HTTP status), :mod:`.observability` (metrics, logs).
See docs/server.md and docs/api.md.
"""

from kustos.server.app import create_app
from kustos.server.core import Core
from kustos.server.running import serve

__all__ = ["Core", "create_app", "serve"]
