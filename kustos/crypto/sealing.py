"""The sealing formats of GitOps secrets: Sealed Secrets' hybrid value and Kustos' native one.

Two formats seal Secret values to the public key of a cluster, so that the
ciphertext can live in Git and only the holder of the private key (the
Kustos server / operator) can read it. The manifest-level logic (scopes,
templates, merge) lives in :mod:`kustos.gitops.sealing`; this module holds
only the cryptography, and the key objects that carry it, so that no other
package imports ``cryptography``.

**Sealed Secrets value** (``bitnami.com/v1alpha1``, byte-compatible with
bitnami-labs/sealed-secrets ``HybridEncrypt``)::

    uint16 big-endian len(rsa_ct) || rsa_ct || aes_gcm_ct_with_tag

``rsa_ct`` is RSA-OAEP (SHA-256 for hash and MGF1) of a fresh 32-byte session
key, with the scope *label* as the OAEP label; the payload is AES-256-GCM
under that session key with an all-zero 12-byte nonce (safe: the key is used
once) and no associated data. :func:`hybrid_encrypt` returns the raw bytes;
callers base64 them (standard alphabet, padded). RSA-4096 ciphertexts are 512
bytes, so every value starts ``AgA``.

**Native value** (``kustos.io/v1``): one fresh 32-byte *data key* per object,
wrapped once per recipient; each value is AES-256-GCM under the data key
with a random 12-byte nonce and associated data naming its place
(:func:`native_aad`)::

    value = nonce (12) || ciphertext || tag (16)

The data key is wrapped ECIES-style when the recipient certificate carries
an X25519 *exchange key* (:func:`wrap_data_key_x25519`): a fresh ephemeral
X25519 key per object and recipient, ``kek = HKDF-SHA256(ECDH(eph, recipient),
salt = eph_pub || recipient_pub, info = "kustos.io/v1 data key")``, and
``wrapped = AES-256-GCM(kek, zero nonce, data key, aad = native_wrap_aad(...))``
(the kek is single-use). Unsealing then costs one X25519 operation per
object (~0.1 ms) instead of one RSA-4096 private operation (~8 ms). A plain
RSA certificate (e.g. a Sealed Secrets controller's ``cert.pem``) gets the
older RSA-OAEP-SHA-256 wrap (label = scope label) by :func:`wrap_data_key`.
Either way a value moved to another key, object, namespace or scope fails.

**Exchange keys**: every RSA sealing key has an X25519 companion *derived*
from it (HKDF-SHA256 over the RSA private exponent, info naming the key id),
so imported Sealed Secrets keys, keyring documents and backups need no new
field. Its public half is published in an X.509 certificate issued and
signed by the RSA key (:meth:`SealingPrivateKey.exchange_certificate_pem`),
so the RSA certificate stays the one trust root: :func:`load_certificates`
attaches an exchange certificate to the RSA certificate that signed it and
refuses one that no certificate in the bundle signed.

Guarantees: confidentiality and integrity of each value; every failure to
open (wrong key, wrong label, flipped byte, truncation, unknown key) raises
:class:`kustos.errors.DecryptionError` with the same message. Limits: value
lengths are visible. Misuse: reusing a native data key across objects would
break nothing cryptographically (nonces are random) but defeats per-object
revocation; :func:`generate_data_key` exists so callers don't.

Keys: :func:`generate_sealing_key` makes an RSA key and a self-signed X.509
certificate; :class:`SealingCertificate` (public) and :class:`SealingPrivateKey`
(private, masked ``repr``) are parsed from PEM. Both expose :attr:`key_id`,
the first 16 hex digits of SHA-256 over the DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from kustos.errors import DecryptionError, InvalidRequestError
from kustos.sensitive import Sensitive

__all__ = [
    "DATA_KEY_SIZE",
    "DEFAULT_KEY_BITS",
    "NONCE_SIZE",
    "X25519_KEY_SIZE",
    "SealingCertificate",
    "SealingKeyPair",
    "SealingPrivateKey",
    "generate_data_key",
    "generate_sealing_key",
    "hybrid_decrypt",
    "hybrid_encrypt",
    "key_id_of_public_pem",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "load_private_keys",
    "native_aad",
    "native_decrypt_value",
    "native_encrypt_value",
    "native_wrap_aad",
    "unwrap_data_key",
    "unwrap_data_key_x25519",
    "wrap_data_key",
    "wrap_data_key_x25519",
]

DATA_KEY_SIZE: Final = 32
"""Bytes in a session key (Sealed Secrets) or a data key (native)."""
NONCE_SIZE: Final = 12
"""Bytes in an AES-GCM nonce."""
DEFAULT_KEY_BITS: Final = 4096
"""Sealed Secrets' key size; its ciphertexts start ``AgA`` because of it."""
_TAG_SIZE: Final = 16
_ZERO_NONCE: Final = bytes(NONCE_SIZE)
_KEY_ID_HEX: Final = 16
_EXCHANGE_KEY_SALT: Final = b"kustos.io/v1 x25519 exchange key"
_WRAP_INFO: Final = b"kustos.io/v1 data key"
X25519_KEY_SIZE: Final = 32

RandBytes = Callable[[int], bytes]


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
    )


def _key_id(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:_KEY_ID_HEX]


@dataclass(frozen=True, eq=False)
class SealingCertificate:
    """A sealing certificate: the public half, safe to publish (``/v1/cert.pem``)."""

    _cert: x509.Certificate
    _public_key: rsa.RSAPublicKey
    _exchange_cert: x509.Certificate | None = field(default=None)

    @cached_property
    def key_id(self) -> str:
        """16 hex digits of SHA-256 over the DER SubjectPublicKeyInfo."""
        return _key_id(self._public_key)

    @property
    def has_exchange_key(self) -> bool:
        """True when an X25519 exchange certificate signed by this key came with it."""
        return self._exchange_cert is not None

    def _exchange_public(self) -> x25519.X25519PublicKey:
        cert = self._exchange_cert
        if cert is None:
            raise InvalidRequestError(f"certificate {self.key_id} has no X25519 exchange key")
        public = cert.public_key()
        if not isinstance(public, x25519.X25519PublicKey):  # checked on load; defensive
            raise InvalidRequestError(f"certificate {self.key_id}: exchange key is not X25519")
        return public

    def bundle_pem(self) -> bytes:
        """The RSA certificate, then the X25519 exchange certificate when there is one."""
        out = self.pem()
        if self._exchange_cert is not None:
            out += self._exchange_cert.public_bytes(serialization.Encoding.PEM)
        return out

    @property
    def not_before(self) -> datetime:
        return self._cert.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self._cert.not_valid_after_utc

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    @property
    def subject(self) -> str:
        return self._cert.subject.rfc4514_string()

    def pem(self) -> bytes:
        """The RSA certificate in PEM, as ``kubeseal --fetch-cert`` prints it."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def is_expired(self, *, now: datetime) -> bool:
        """True once ``now`` is past the certificate's NotAfter (kubeseal refuses to seal then)."""
        return now > self.not_after

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SealingCertificate):
            return NotImplemented
        return self.pem() == other.pem()

    def __hash__(self) -> int:
        return hash(self.pem())

    def __repr__(self) -> str:
        return (
            f"SealingCertificate(key_id={self.key_id!r}, not_after={self.not_after.isoformat()!r})"
        )


@dataclass(frozen=True, eq=False)
class SealingPrivateKey:
    """An RSA sealing private key. Its ``repr`` shows only the key id."""

    _key: rsa.RSAPrivateKey

    @cached_property
    def key_id(self) -> str:
        """Same id as the matching :attr:`SealingCertificate.key_id`."""
        return _key_id(self._key.public_key())

    @cached_property
    def _exchange_key(self) -> x25519.X25519PrivateKey:
        """The X25519 key derived from this RSA key (HKDF over the private exponent)."""
        d = self._key.private_numbers().d
        seed = HKDF(
            algorithm=hashes.SHA256(),
            length=X25519_KEY_SIZE,
            salt=_EXCHANGE_KEY_SALT,
            info=self.key_id.encode(),
        ).derive(d.to_bytes((d.bit_length() + 7) // 8, "big"))
        return x25519.X25519PrivateKey.from_private_bytes(seed)

    def exchange_public_bytes(self) -> bytes:
        """The raw 32-byte X25519 public key this key publishes."""
        return self._exchange_key.public_key().public_bytes_raw()

    def exchange_certificate_pem(self, certificate: SealingCertificate) -> bytes:
        """An X.509 certificate for the X25519 exchange key, issued and signed by this RSA key.

        Deterministic (serial derived from the keys, validity copied from
        ``certificate``), so every replica serves the same bytes.
        """
        if not self.matches(certificate):
            raise InvalidRequestError(
                f"sealing key {self.key_id}: certificate holds another public key"
            )
        public = self._exchange_key.public_key()
        serial = (
            int.from_bytes(
                hashlib.sha256(b"x25519" + certificate.pem() + public.public_bytes_raw()).digest()[
                    :16
                ]
            )
            >> 1
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, f"kustos-x25519-{self.key_id}"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealed-secret"),
                    ]
                )
            )
            .issuer_name(certificate._cert.subject)
            .public_key(public)
            .serial_number(serial or 1)
            .not_valid_before(certificate.not_before)
            .not_valid_after(certificate.not_after)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def with_exchange(self, certificate: SealingCertificate) -> SealingCertificate:
        """``certificate`` with this key's exchange certificate attached (the sealing bundle)."""
        return load_certificates(certificate.pem() + self.exchange_certificate_pem(certificate))[0]

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def pem(self) -> Sensitive[bytes]:
        """PKCS#1 PEM (``RSA PRIVATE KEY``), the form Sealed Secrets' ``tls.key`` holds."""
        return Sensitive(
            self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )

    def matches(self, certificate: SealingCertificate) -> bool:
        """True when ``certificate`` carries this key's public half."""
        return self.key_id == certificate.key_id

    def __repr__(self) -> str:
        return f"SealingPrivateKey(key_id={self.key_id!r})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SealingPrivateKey cannot be pickled")


@dataclass(frozen=True)
class SealingKeyPair:
    """A freshly generated private key with its self-signed certificate."""

    private_key: SealingPrivateKey
    certificate: SealingCertificate


def generate_sealing_key(
    *,
    now: datetime,
    bits: int = DEFAULT_KEY_BITS,
    validity: timedelta = timedelta(days=3650),
    common_name: str = "sealed-secret",
) -> SealingKeyPair:
    """Make an RSA key (4096 bits by default, ~0.5 s) and a self-signed certificate.

    The certificate is valid from ``now`` for ``validity`` (Sealed Secrets uses
    ten years) with subject and issuer ``CN=<common_name>, O=sealed-secret``
    like the Sealed Secrets controller's.
    """
    if bits < 2048:
        raise InvalidRequestError("sealing keys must have at least 2048 bits")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealed-secret"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now.astimezone(UTC) - timedelta(minutes=1))
        .not_valid_after(now.astimezone(UTC) + validity)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SealingKeyPair(
        private_key=SealingPrivateKey(key),
        certificate=SealingCertificate(cert, key.public_key()),
    )


def _pem_blocks(data: bytes, kinds: tuple[bytes, ...]) -> list[bytes]:
    blocks: list[bytes] = []
    for kind in kinds:
        begin, end = b"-----BEGIN " + kind + b"-----", b"-----END " + kind + b"-----"
        start = 0
        while (i := data.find(begin, start)) >= 0:
            j = data.find(end, i)
            if j < 0:
                break
            blocks.append(data[i : j + len(end)] + b"\n")
            start = j + len(end)
    return blocks


def load_certificates(data: bytes) -> list[SealingCertificate]:
    """Every RSA certificate in a PEM bundle, in file order, with its exchange certificate.

    An X25519 certificate is attached to the RSA certificate in the bundle
    that issued and signed it. Raises :class:`InvalidRequestError` when there
    is no RSA certificate, one does not parse, one holds another key type, or
    an X25519 certificate was signed by no RSA certificate of the bundle.
    """
    blocks = _pem_blocks(data, (b"CERTIFICATE",))
    if not blocks:
        raise InvalidRequestError("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")
    certs: list[SealingCertificate] = []
    exchange: list[x509.Certificate] = []
    for block in blocks:
        try:
            cert = x509.load_pem_x509_certificate(block)
        except ValueError as exc:
            raise InvalidRequestError(f"certificate does not parse: {exc}") from None
        public = cert.public_key()
        if isinstance(public, x25519.X25519PublicKey):
            exchange.append(cert)
            continue
        if not isinstance(public, rsa.RSAPublicKey):
            raise InvalidRequestError(
                f"expected an RSA public key in the certificate, found {type(public).__name__}"
            )
        certs.append(SealingCertificate(cert, public))
    if not certs:
        raise InvalidRequestError("no RSA sealing certificate found in the PEM bundle")
    for companion in exchange:
        for i, sealing in enumerate(certs):
            if companion.issuer != sealing._cert.subject:
                continue
            try:
                companion.verify_directly_issued_by(sealing._cert)
            except (ValueError, TypeError, InvalidSignature):
                continue
            certs[i] = SealingCertificate(sealing._cert, sealing._public_key, companion)
            break
        else:
            raise InvalidRequestError(
                "an X25519 exchange certificate in the bundle is not signed by any RSA certificate in it"
            )
    return certs


def load_certificate(data: bytes) -> SealingCertificate:
    """The first certificate of a PEM file (kubeseal uses the first, too)."""
    return load_certificates(data)[0]


def load_private_keys(data: bytes) -> list[SealingPrivateKey]:
    """Every RSA private key (PKCS#1 or unencrypted PKCS#8) in a PEM file."""
    blocks = _pem_blocks(data, (b"RSA PRIVATE KEY", b"PRIVATE KEY"))
    if not blocks:
        raise InvalidRequestError(
            "no PEM private key found (expected -----BEGIN RSA PRIVATE KEY----- or PRIVATE KEY)"
        )
    keys: list[SealingPrivateKey] = []
    for block in blocks:
        try:
            key = serialization.load_pem_private_key(block, password=None)
        except (ValueError, TypeError):
            raise InvalidRequestError(
                "private key does not parse (encrypted PEM keys are not supported)"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise InvalidRequestError(f"expected an RSA private key, found {type(key).__name__}")
        keys.append(SealingPrivateKey(key))
    return keys


def load_private_key(data: bytes) -> SealingPrivateKey:
    """The first private key of a PEM file."""
    return load_private_keys(data)[0]


def key_id_of_public_pem(data: bytes) -> str:
    """The key id of the first certificate in ``data`` (handy in tests and the CLI)."""
    return load_certificate(data).key_id


def generate_data_key(*, randbytes: RandBytes = secrets.token_bytes) -> Sensitive[bytes]:
    """A fresh 32-byte key for the native format (one per object)."""
    key = randbytes(DATA_KEY_SIZE)
    if len(key) != DATA_KEY_SIZE:
        raise ValueError("randbytes returned the wrong number of bytes")
    return Sensitive(key)


def hybrid_encrypt(
    certificate: SealingCertificate,
    plaintext: bytes,
    *,
    label: bytes,
    randbytes: RandBytes = secrets.token_bytes,
) -> bytes:
    """Seal one value in Sealed Secrets' format; returns raw bytes (base64 them)."""
    session_key = randbytes(DATA_KEY_SIZE)
    if len(session_key) != DATA_KEY_SIZE:
        raise ValueError("randbytes returned the wrong number of bytes")
    rsa_ct = certificate._public_key.encrypt(session_key, _oaep(label))
    return (
        struct.pack(">H", len(rsa_ct))
        + rsa_ct
        + AESGCM(session_key).encrypt(_ZERO_NONCE, plaintext, None)
    )


def hybrid_decrypt(
    private_key: SealingPrivateKey, blob: bytes, *, label: bytes
) -> Sensitive[bytes]:
    """Open a Sealed Secrets value; any failure raises :class:`DecryptionError`."""
    if len(blob) < 2:
        raise DecryptionError()
    (rsa_len,) = struct.unpack(">H", blob[:2])
    if len(blob) < 2 + rsa_len + _TAG_SIZE:
        raise DecryptionError()
    try:
        session_key = private_key._key.decrypt(blob[2 : 2 + rsa_len], _oaep(label))
        if len(session_key) != DATA_KEY_SIZE:
            raise DecryptionError()
        return Sensitive(AESGCM(session_key).decrypt(_ZERO_NONCE, blob[2 + rsa_len :], None))
    except (InvalidTag, ValueError, TypeError):
        raise DecryptionError() from None


def wrap_data_key(
    certificate: SealingCertificate, data_key: Sensitive[bytes], *, label: bytes
) -> bytes:
    """RSA-OAEP-SHA-256 of a native data key for one recipient, with the scope label."""
    key = data_key.reveal()
    if len(key) != DATA_KEY_SIZE:
        raise ValueError(f"data key must be {DATA_KEY_SIZE} bytes")
    return certificate._public_key.encrypt(key, _oaep(label))


def unwrap_data_key(
    private_key: SealingPrivateKey, wrapped: bytes, *, label: bytes
) -> Sensitive[bytes]:
    """Reverse :func:`wrap_data_key`; any failure raises :class:`DecryptionError`."""
    try:
        key = private_key._key.decrypt(wrapped, _oaep(label))
    except (ValueError, TypeError):
        raise DecryptionError() from None
    if len(key) != DATA_KEY_SIZE:
        raise DecryptionError()
    return Sensitive(key)


def native_aad(*, scope: str, namespace: str, name: str, key: str, data_key_id: str) -> bytes:
    """Associated data of one native value: where it belongs, unambiguously encoded.

    ``kustos.io/v1`` followed by each field as a 4-byte big-endian length and
    its UTF-8 bytes: scope, namespace, name, key, data key id. Callers pass an
    empty namespace/name where the scope does not pin them.
    """
    out = [b"kustos.io/v1"]
    for part in (scope, namespace, name, key, data_key_id):
        raw = part.encode()
        out.append(struct.pack(">I", len(raw)) + raw)
    return b"".join(out)


def native_encrypt_value(
    data_key: Sensitive[bytes],
    plaintext: bytes,
    *,
    aad: bytes,
    randbytes: RandBytes = secrets.token_bytes,
) -> bytes:
    """AES-256-GCM of one value under the object's data key: ``nonce || ct || tag``."""
    nonce = randbytes(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ValueError("randbytes returned the wrong number of bytes")
    return nonce + AESGCM(data_key.reveal()).encrypt(nonce, plaintext, aad)


def native_decrypt_value(
    data_key: Sensitive[bytes], blob: bytes, *, aad: bytes
) -> Sensitive[bytes]:
    """Reverse :func:`native_encrypt_value`; any failure raises :class:`DecryptionError`."""
    if len(blob) < NONCE_SIZE + _TAG_SIZE:
        raise DecryptionError()
    try:
        return Sensitive(
            AESGCM(data_key.reveal()).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], aad)
        )
    except (InvalidTag, ValueError, TypeError):
        raise DecryptionError() from None


def native_wrap_aad(
    *, scope: str, namespace: str, name: str, data_key_id: str, key_id: str
) -> bytes:
    """Associated data of one X25519-wrapped data key: where the object is and whom it is for.

    ``kustos.io/v1 wrap`` followed by each field as a 4-byte big-endian length
    and its UTF-8 bytes: scope, namespace, name (empty where the scope does
    not pin them), data key id, recipient key id.
    """
    out = [b"kustos.io/v1 wrap"]
    for part in (scope, namespace, name, data_key_id, key_id):
        raw = part.encode()
        out.append(struct.pack(">I", len(raw)) + raw)
    return b"".join(out)


def _kek(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    if not any(shared):
        raise DecryptionError()  # low-order point: refuse
    return HKDF(
        algorithm=hashes.SHA256(), length=DATA_KEY_SIZE, salt=ephemeral + recipient, info=_WRAP_INFO
    ).derive(shared)


def wrap_data_key_x25519(
    certificate: SealingCertificate,
    data_key: Sensitive[bytes],
    *,
    aad: bytes,
    randbytes: RandBytes = secrets.token_bytes,
) -> tuple[bytes, bytes]:
    """Wrap a native data key for one recipient's X25519 exchange key.

    Returns ``(ephemeral_public (32), wrapped (48))``. The ephemeral key is
    fresh per call (from ``randbytes``), so the derived key is single-use and
    the AES-GCM nonce is zero.
    """
    key = data_key.reveal()
    if len(key) != DATA_KEY_SIZE:
        raise ValueError(f"data key must be {DATA_KEY_SIZE} bytes")
    seed = randbytes(X25519_KEY_SIZE)
    if len(seed) != X25519_KEY_SIZE:
        raise ValueError("randbytes returned the wrong number of bytes")
    ephemeral = x25519.X25519PrivateKey.from_private_bytes(seed)
    recipient = certificate._exchange_public()
    eph_pub = ephemeral.public_key().public_bytes_raw()
    try:
        kek = _kek(ephemeral.exchange(recipient), eph_pub, recipient.public_bytes_raw())
    except (DecryptionError, ValueError):
        raise InvalidRequestError(
            f"certificate {certificate.key_id}: unusable X25519 exchange key"
        ) from None
    return eph_pub, AESGCM(kek).encrypt(_ZERO_NONCE, key, aad)


def unwrap_data_key_x25519(
    private_key: SealingPrivateKey, ephemeral: bytes, wrapped: bytes, *, aad: bytes
) -> Sensitive[bytes]:
    """Reverse :func:`wrap_data_key_x25519`; any failure raises :class:`DecryptionError`."""
    if len(ephemeral) != X25519_KEY_SIZE or len(wrapped) != DATA_KEY_SIZE + _TAG_SIZE:
        raise DecryptionError()
    own = private_key._exchange_key
    try:
        peer = x25519.X25519PublicKey.from_public_bytes(ephemeral)
        kek = _kek(own.exchange(peer), ephemeral, own.public_key().public_bytes_raw())
        return Sensitive(AESGCM(kek).decrypt(_ZERO_NONCE, wrapped, aad))
    except (InvalidTag, ValueError, TypeError):
        raise DecryptionError() from None
