"""Key providers: what protects the server's keyring at rest.

The server's data keys are wrapped by versioned key-encryption keys (KEKs,
``kustos.crypto``); the KEKs themselves are stored wrapped by a
:class:`~kustos.keys.base.KeyProvider`: a local key file, a key rebuilt from
Shamir shares, or a key that never leaves a PKCS#11 HSM. Providers live in
``kustos.keys.providers.<name>``.
"""
