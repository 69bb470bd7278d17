"""All cryptography of Kustos, and the only package that imports ``cryptography.hazmat``.

Safe recipes that make every choice for the caller (envelope encryption with a
versioned keyring, sealing formats, the sops value format, Shamir sharing);
primitives stay private. Every decryption failure raises
:class:`kustos.errors.DecryptionError` and reveals nothing else.
"""
