"""The pkcs11 key provider against a real SoftHSM2 token: the same contract as local and shamir."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

from kustos.config import KeyProviderConfig
from kustos.errors import ConfigError, DecryptionError
from kustos.keys import open_provider
from kustos.keys.providers.pkcs11 import Pkcs11KeyProvider
from kustos.sensitive import Sensitive
from tests.support.softhsm import SoftHsmToken
from tests.unit.keys.provider_contract import AAD, KEYRING, KeyProviderContract

pytestmark = pytest.mark.softhsm


def new_label() -> str:
    return f"kustos-test-{secrets.token_hex(4)}"


def user_session(token: SoftHsmToken) -> pkcs11.Session:
    """A logged-in session opened with python-pkcs11 directly (private objects are visible only so)."""
    tok = pkcs11.lib(token.module).get_token(token_label=token.token_label)
    try:
        return tok.open(rw=True, user_pin=token.pin)
    except pkcs11.exceptions.UserAlreadyLoggedIn:
        return tok.open(rw=True)


def make(token: SoftHsmToken, key_label: str, **kwargs: object) -> Pkcs11KeyProvider:
    return Pkcs11KeyProvider(
        token.module, token.token_label, Sensitive(token.pin), key_label, **kwargs
    )  # type: ignore[arg-type]


class TestPkcs11Contract(KeyProviderContract):
    @pytest.fixture
    def provider(self, softhsm_token: SoftHsmToken) -> Iterator[Pkcs11KeyProvider]:
        p = make(softhsm_token, new_label())
        yield p
        p.close()

    @pytest.fixture
    def other_provider(self, softhsm_token: SoftHsmToken) -> Iterator[Pkcs11KeyProvider]:
        p = make(softhsm_token, new_label())
        yield p
        p.close()


def test_key_is_generated_in_the_token_non_extractable_and_reused(
    softhsm_token: SoftHsmToken,
) -> None:
    label = new_label()
    first = make(softhsm_token, label)
    blob = first.wrap(KEYRING, aad=AAD)
    first.close()
    # inspect the token with python-pkcs11 directly
    with user_session(softhsm_token) as session:
        keys = list(
            session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
        )
        assert len(keys) == 1
        key = keys[0]
        assert key[Attribute.KEY_TYPE] == KeyType.AES and key[Attribute.VALUE_LEN] == 32
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            key[Attribute.VALUE]  # the HSM refuses to reveal it
    # a restart (new provider, same label) finds the same key
    again = make(softhsm_token, label, create_key=False)
    assert again.unwrap(blob, aad=AAD) == KEYRING
    again.close()


def test_blob_layout(softhsm_token: SoftHsmToken) -> None:
    provider = make(softhsm_token, new_label(), randbytes=lambda n: bytes(range(n)))
    blob = provider.wrap(b"abc", aad=AAD)
    assert blob[:1] == b"\x01"
    assert blob[1:13] == bytes(range(12))
    assert len(blob) == 1 + 12 + 3 + 16
    assert provider.unwrap(blob, aad=AAD) == b"abc"
    with pytest.raises(DecryptionError):
        provider.unwrap(b"\x02" + blob[1:], aad=AAD)
    provider.close()


def test_missing_key_without_create_is_a_config_error(softhsm_token: SoftHsmToken) -> None:
    with pytest.raises(ConfigError, match=r"key 'absent' in token 'kustos-test' does not exist"):
        make(softhsm_token, "absent", create_key=False)


def test_extractable_key_is_refused(softhsm_token: SoftHsmToken) -> None:
    label = new_label()
    with user_session(softhsm_token) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label=label,
            store=True,
            template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
    with pytest.raises(ConfigError, match="extractable or not sensitive"):
        make(softhsm_token, label)


def test_unknown_token_and_module(softhsm_token: SoftHsmToken) -> None:
    with pytest.raises(ConfigError, match="no PKCS#11 token labelled 'nope'"):
        Pkcs11KeyProvider(softhsm_token.module, "nope", softhsm_token.pin, new_label())


def test_wrong_pin_is_a_config_error_and_pin_never_shown(softhsm_token: SoftHsmToken) -> None:
    # No other session is open here, so the token is logged out and checks the PIN.
    with pytest.raises(
        ConfigError, match="PIN for PKCS#11 token 'kustos-test' was rejected"
    ) as info:
        Pkcs11KeyProvider(softhsm_token.module, softhsm_token.token_label, "999999", new_label())
    assert "999999" not in str(info.value)
    provider = make(softhsm_token, new_label())
    assert softhsm_token.pin not in repr(provider)
    provider.close()


def test_open_provider_builds_a_pkcs11_provider(softhsm_token: SoftHsmToken) -> None:
    config = KeyProviderConfig(
        kind="pkcs11",
        pkcs11_module=softhsm_token.module,
        pkcs11_token_label=softhsm_token.token_label,
        pkcs11_pin=softhsm_token.pin,
        pkcs11_key_label=new_label(),
    )
    provider = open_provider(config)
    assert provider.name == "pkcs11"
    assert provider.unwrap(provider.wrap(KEYRING, aad=AAD), aad=AAD) == KEYRING
    provider.close()
