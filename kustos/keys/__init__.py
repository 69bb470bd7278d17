"""Key providers: what protects the server's keyring at rest.

The server's data keys are wrapped by versioned key-encryption keys (KEKs,
``kustos.crypto``); the KEKs themselves are stored wrapped by a
:class:`~kustos.keys.base.KeyProvider`: a local key file, a key rebuilt from
Shamir shares, or a key that never leaves a PKCS#11 HSM. Providers live in
``kustos.keys.providers.<name>``.
"""

from kustos.keys.base import KeyProvider
from kustos.keys.registry import PROVIDER_KINDS, open_provider

__all__ = ["PROVIDER_KINDS", "KeyProvider", "open_provider"]
