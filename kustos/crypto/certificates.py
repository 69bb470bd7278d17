"""X.509 certificates given where a public key is expected.

Vault's kubernetes auth accepts ``pem_keys`` entries that are public keys
*or* certificates (hvac's ``auth.kubernetes.configure(pem_keys=[cert])``
sends certificates, as clusters publish their service-account signer that
way). :func:`public_key_pem` turns either into a SubjectPublicKeyInfo PEM, so
the verifier only ever sees keys. It checks nothing about the certificate
(validity dates, issuer): only its public key is used, as Vault does.
"""

from __future__ import annotations

from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kustos.errors import InvalidRequestError

__all__ = ["public_key_pem"]

_CERTIFICATE: Final = "-----BEGIN CERTIFICATE-----"


def public_key_pem(pem: str, *, what: str) -> str:
    """``pem`` unchanged when it is not a certificate; else the certificate's public key as PEM.

    Raises :class:`~kustos.errors.InvalidRequestError` naming ``what`` for a
    certificate that does not parse.
    """
    if _CERTIFICATE not in pem:
        return pem
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise InvalidRequestError(f"{what} is not a valid PEM certificate") from None
    return (
        certificate.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
