"""Offline verification of JWTs (pure: no I/O, time is a parameter), and Kubernetes' claims.

The kubernetes auth method verifies a service-account token against the
cluster's public keys (PEM keys or a JWKS document) instead of calling the
API server; the jwt auth method verifies CI and cloud identity tokens the
same way (:func:`verify_signature`, :func:`check_times`). This module holds
that verification and the reading of Kubernetes' claims, both
the projected-token form (``kubernetes.io: {namespace, serviceaccount:
{name, uid}, pod: {...}}``) and the legacy secret-based form
(``kubernetes.io/serviceaccount/namespace``, ...). Signature checks are
PyJWT's; algorithm, expiry, not-before, issuer and audience are checked
here against the injected ``now`` so each failure gets its own clear
message. Every rejection is a :class:`~kustos.errors.PermissionDeniedError`
(a malformed key set given by an operator is an ``InvalidRequestError``).

Limits: only asymmetric algorithms (RS*, PS*, ES*) are accepted; ``none``
and HMAC algorithms are refused, so a public key can never be used as an
HMAC secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from kustos.crypto.certificates import public_key_pem
from kustos.errors import InvalidRequestError, PermissionDeniedError

__all__ = [
    "ALLOWED_ALGORITHMS",
    "DEFAULT_LEEWAY",
    "Leeway",
    "ServiceAccount",
    "UnknownSigningKeyError",
    "VerificationKey",
    "check_claims",
    "check_times",
    "glob_match",
    "load_jwks",
    "load_pem_keys",
    "service_account_from_claims",
    "unverified_claims",
    "verify_jwt",
    "verify_signature",
]

DEFAULT_LEEWAY: Final = 60.0
"""Seconds of clock skew tolerated on ``exp`` and ``nbf``."""

_FAMILIES: Final = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
}
_ALLOWED: Final = frozenset(a for algs in _FAMILIES.values() for a in algs)
ALLOWED_ALGORITHMS: Final = tuple(a for algs in _FAMILIES.values() for a in algs)
"""Every signing algorithm a token may use: RSA and EC ones only (never ``none`` or HMAC)."""
_MAX_KID: Final = 64
_LEGACY: Final = "kubernetes.io/serviceaccount/"


class UnknownSigningKeyError(PermissionDeniedError):
    """No key at hand verifies the token: its ``kid`` is unknown, or its signature matches none.

    A caller whose keys come from a remote key set may fetch the set again
    (the issuer may have rotated its keys) and retry once.
    """


@dataclass(frozen=True)
class Leeway:
    """Seconds of tolerance when checking a token's times.

    ``clock_skew`` applies to ``exp``, ``nbf`` and ``iat``; ``expiration`` is
    added on top for ``exp`` and ``not_before`` for ``nbf`` (Vault's
    ``clock_skew_leeway``, ``expiration_leeway`` and ``not_before_leeway``).
    """

    clock_skew: float = DEFAULT_LEEWAY
    expiration: float = 0.0
    not_before: float = 0.0


@dataclass(frozen=True)
class VerificationKey:
    """One public key: its family (``RSA``/``EC``), optional key id, and the loaded key."""

    family: str
    kid: str | None
    key: Any


def load_pem_keys(pems: Sequence[str]) -> list[VerificationKey]:
    """Load PEM public keys or certificates (RSA or EC); raise naming the first one that is neither.

    A certificate stands for its public key, as in Vault (hvac sends certificates).
    """
    keys: list[VerificationKey] = []
    for index, given in enumerate(pems):
        pem = public_key_pem(given, what=f"pem_keys[{index}]")
        loaded = None
        for family, algorithm in (
            ("RSA", RSAAlgorithm(RSAAlgorithm.SHA256)),
            ("EC", ECAlgorithm(ECAlgorithm.SHA256)),
        ):
            try:
                key = algorithm.prepare_key(pem)
            except (jwt.InvalidKeyError, ValueError, TypeError):
                continue
            if hasattr(key, "sign"):  # a private key: refuse, the config is public material
                raise InvalidRequestError(
                    f"pem_keys[{index}] is a private key; give the public key"
                )
            loaded = VerificationKey(family=family, kid=None, key=key)
            break
        if loaded is None:
            raise InvalidRequestError(
                f"pem_keys[{index}] is not a PEM-encoded RSA or EC public key or certificate"
            )
        keys.append(loaded)
    return keys


def load_jwks(doc: Mapping[str, Any]) -> list[VerificationKey]:
    """Load the RSA and EC keys of a JWKS document (``{"keys": [...]}``)."""
    raw_keys = doc.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise InvalidRequestError(
            'jwks must be a JSON Web Key Set: {"keys": [...]} with at least one key'
        )
    keys: list[VerificationKey] = []
    for index, item in enumerate(raw_keys):
        if not isinstance(item, dict) or item.get("kty") not in _FAMILIES:
            continue  # other key types (oct, OKP) are not used for service-account tokens
        if "d" in item:
            raise InvalidRequestError(
                f"jwks key {index} is a private key; publish only public keys"
            )
        try:
            loaded = jwt.PyJWK.from_dict(item)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise InvalidRequestError(
                f"jwks key {index} is not a valid {item['kty']} key: {exc}"
            ) from None
        kid = item.get("kid")
        keys.append(
            VerificationKey(family=str(item["kty"]), kid=str(kid) if kid else None, key=loaded.key)
        )
    if not keys:
        raise InvalidRequestError("jwks holds no RSA or EC public key")
    return keys


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of ``token`` WITHOUT checking anything (TokenReview mode reads pod info this way)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise InvalidRequestError("invalid JWT: not a well-formed JSON Web Token") from None
    if not isinstance(claims, dict):
        raise InvalidRequestError("invalid JWT: its claims are not a JSON object")
    return claims


def verify_signature(
    token: str,
    *,
    keys: Sequence[VerificationKey],
    algorithms: Sequence[str] = ALLOWED_ALGORITHMS,
) -> dict[str, Any]:
    """Check ``token``'s signature with one of ``keys``; return its claims (nothing else checked).

    The header's ``alg`` must be one of ``algorithms`` (never more than
    :data:`ALLOWED_ALGORITHMS`: ``none`` and HMAC are always refused, so a
    public key is never used as an HMAC secret). A key is tried when its
    family fits the algorithm and its ``kid`` (if both have one) matches.
    Raises :class:`UnknownSigningKeyError` when no key verifies the token.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise PermissionDeniedError(
            "invalid JWT: not a well-formed signed JSON Web Token"
        ) from None
    algorithm = header.get("alg")
    allowed = [a for a in algorithms if a in _ALLOWED]
    if algorithm not in allowed:
        raise PermissionDeniedError(
            f"invalid JWT: signing algorithm {str(algorithm)[:16]!r} is not allowed "
            f"(allowed: {', '.join(allowed)})"
        )
    family = "RSA" if algorithm.startswith(("RS", "PS")) else "EC"
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > _MAX_KID):
        raise PermissionDeniedError("invalid JWT: the kid header is not a short string")
    candidates = [
        k for k in keys if k.family == family and (k.kid is None or kid is None or k.kid == kid)
    ]
    for candidate in candidates:
        try:
            claims = jwt.decode(
                token,
                key=candidate.key,
                algorithms=[algorithm],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise PermissionDeniedError(
                "invalid JWT: not a well-formed signed JSON Web Token"
            ) from None
        if not isinstance(claims, dict):
            raise PermissionDeniedError("invalid JWT: its claims are not a JSON object")
        return claims
    if kid is not None and not any(k.kid == kid for k in keys):
        raise UnknownSigningKeyError(
            f"invalid JWT signature: no configured key has the token's key id {kid!r}"
        )
    raise UnknownSigningKeyError("invalid JWT signature: no configured key verifies it")


def verify_jwt(
    token: str,
    *,
    keys: Sequence[VerificationKey],
    now: float,
    issuer: str | None = None,
    audience: str | None = None,
    leeway: float = DEFAULT_LEEWAY,
    what: str = "service account JWT",
) -> dict[str, Any]:
    """Verify ``token``'s signature with one of ``keys`` and its time, issuer and audience claims.

    ``issuer=None`` skips the issuer check; ``audience=None`` skips the
    audience check. Returns the claims.
    """
    return check_claims(
        verify_signature(token, keys=keys),
        now=now,
        issuer=issuer,
        audience=audience,
        leeway=leeway,
        what=what,
    )


def check_claims(
    claims: dict[str, Any],
    *,
    now: float,
    issuer: str | None = None,
    audience: str | None = None,
    leeway: float = DEFAULT_LEEWAY,
    what: str = "service account JWT",
) -> dict[str, Any]:
    """Check the time, issuer and audience claims of a token whose signature was verified."""
    check_times(claims, now=now, leeway=Leeway(clock_skew=leeway), what=what)
    if issuer is not None and claims.get("iss") != issuer:
        raise PermissionDeniedError(
            f"invalid issuer (iss) claim: expected {issuer!r}, got {str(claims.get('iss'))[:200]!r}"
        )
    if audience is not None:
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if audience not in audiences:
            raise PermissionDeniedError(
                f"invalid audience (aud) claim: the token is not for audience {audience!r}"
            )
    return claims


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermissionDeniedError(f"invalid JWT: the {name} claim is not a number")
    return float(value)


def check_times(
    claims: Mapping[str, Any],
    *,
    now: float,
    leeway: Leeway,
    what: str = "JWT",
    require_exp: bool = False,
    check_iat: bool = False,
) -> None:
    """Refuse a token that is expired, not valid yet or (with ``check_iat``) issued in the future."""
    exp = _number(claims, "exp")
    if exp is None and require_exp:
        raise PermissionDeniedError(f"invalid JWT: {what} has no expiry (exp) claim")
    if exp is not None and now > exp + leeway.expiration + leeway.clock_skew:
        raise PermissionDeniedError(f"{what} is expired (exp)")
    nbf = _number(claims, "nbf")
    if nbf is not None and now + leeway.not_before + leeway.clock_skew < nbf:
        raise PermissionDeniedError(f"{what} is not valid yet (nbf)")
    iat = _number(claims, "iat")
    if check_iat and iat is not None and now + leeway.clock_skew < iat:
        raise PermissionDeniedError(f"{what} was issued in the future (iat)")


@dataclass(frozen=True)
class ServiceAccount:
    """Who a service-account token names."""

    namespace: str
    name: str
    uid: str = ""
    secret_name: str = ""
    pod_name: str = ""
    pod_uid: str = ""

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def service_account_from_claims(claims: Mapping[str, Any]) -> ServiceAccount:
    """The service account a token's claims name (projected or legacy form); ``sub`` must agree."""
    nested = claims.get("kubernetes.io")
    if isinstance(nested, dict):
        sa = _object(nested.get("serviceaccount"))
        pod = _object(nested.get("pod"))
        secret = _object(nested.get("secret"))
        account = ServiceAccount(
            namespace=_text(nested.get("namespace")),
            name=_text(sa.get("name")),
            uid=_text(sa.get("uid")),
            secret_name=_text(secret.get("name")),
            pod_name=_text(pod.get("name")),
            pod_uid=_text(pod.get("uid")),
        )
    else:
        account = ServiceAccount(
            namespace=_text(claims.get(_LEGACY + "namespace")),
            name=_text(claims.get(_LEGACY + "service-account.name")),
            uid=_text(claims.get(_LEGACY + "service-account.uid")),
            secret_name=_text(claims.get(_LEGACY + "secret.name")),
        )
    if not account.namespace or not account.name:
        raise PermissionDeniedError(
            "invalid JWT: it does not name a service account (no kubernetes.io namespace and service account name claims)"
        )
    sub = claims.get("sub")
    if sub is not None and sub != account.username:
        raise PermissionDeniedError(
            "invalid JWT: the sub claim does not match the kubernetes.io claims"
        )
    return account


def glob_match(patterns: Sequence[str], value: str) -> bool:
    """True if ``value`` equals one of ``patterns`` or matches one with ``*`` wildcards (``*`` alone: anything)."""
    for pattern in patterns:
        if pattern == "*" or pattern == value:
            return True
        if "*" in pattern:
            compiled = re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
            if compiled.fullmatch(value):
                return True
    return False
