"""Builds the configured key provider: the one place that maps a ``kind`` to a class.

The server calls :func:`open_provider` once at start with the
:class:`~kustos.config.KeyProviderConfig` built in ``main()``. Provider
modules are imported only when chosen, so a server with a local key never
loads a PKCS#11 library.
"""

from __future__ import annotations

from kustos.config import KeyProviderConfig
from kustos.errors import ConfigError
from kustos.keys.base import KeyProvider

__all__ = ["PROVIDER_KINDS", "open_provider"]

PROVIDER_KINDS = ("local", "shamir", "pkcs11")
"""Every ``kind`` :func:`open_provider` accepts."""


def open_provider(config: KeyProviderConfig) -> KeyProvider:
    """Return a ready provider for ``config`` (``shamir`` starts sealed).

    Raises :class:`ConfigError` naming the missing or invalid setting, and
    whatever the provider raises when its key file or HSM is unusable.
    """
    if config.kind == "local":
        if config.key_file is None:
            raise ConfigError("the local key provider needs a key file (key_file)")
        from kustos.keys.providers.local import LocalKeyProvider

        return LocalKeyProvider(config.key_file)
    if config.kind == "shamir":
        from kustos.keys.providers.shamir import ShamirKeyProvider

        return ShamirKeyProvider()
    if config.kind == "pkcs11":
        module, token, pin = config.pkcs11_module, config.pkcs11_token_label, config.pkcs11_pin
        if not module or not token or not pin:
            missing = [
                name
                for name, value in (
                    ("pkcs11_module", module),
                    ("pkcs11_token_label", token),
                    ("pkcs11_pin", pin),
                )
                if not value
            ]
            raise ConfigError(f"the pkcs11 key provider needs {', '.join(missing)}")
        from kustos.keys.providers.pkcs11 import Pkcs11KeyProvider
        from kustos.sensitive import Sensitive

        return Pkcs11KeyProvider(module, token, Sensitive(pin), config.pkcs11_key_label)
    raise ConfigError(
        f"unknown key provider {config.kind!r}; expected one of {', '.join(PROVIDER_KINDS)}"
    )
