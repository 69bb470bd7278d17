"""Service-account JWTs in Kubernetes' format, signed by throwaway test keys (shared by the auth tests).

A :class:`ClusterKeys` is what a cluster's service-account issuer has: a
private key (RSA or EC) and its public half as JWKS and PEM. :meth:`token`
mints a projected-style token (``iss``, ``aud``, ``exp``/``iat``/``nbf``,
``sub`` and the nested ``kubernetes.io`` claims); :meth:`legacy_token` the
secret-based form with the flat ``kubernetes.io/serviceaccount/*`` claims.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "kustos"


@dataclass
class ClusterKeys:
    kind: str = "RSA"
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    private: Any = None

    def __post_init__(self) -> None:
        if self.private is None:
            self.private = (
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
                if self.kind == "RSA"
                else ec.generate_private_key(ec.SECP256R1())
            )

    @property
    def algorithm(self) -> str:
        return "RS256" if self.kind == "RSA" else "ES256"

    def jwks(self) -> dict[str, Any]:
        public = self.private.public_key()
        jwk = json.loads(
            RSAAlgorithm.to_jwk(public) if self.kind == "RSA" else ECAlgorithm.to_jwk(public)
        )
        jwk.update({"kid": self.kid, "use": "sig", "alg": self.algorithm})
        return {"keys": [jwk]}

    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def certificate_pem(self) -> str:
        """A self-signed certificate for the signing key, as a cluster may publish its signer."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "service-accounts")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.private, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode()

    def token(
        self,
        *,
        namespace: str = "apps",
        name: str = "web",
        issuer: str = ISSUER,
        audience: str | list[str] = AUDIENCE,
        now: float | None = None,
        lifetime: float = 3600.0,
        pod: str | None = "web-7d4b9c-x2x9q",
        extra: dict[str, Any] | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience if isinstance(audience, list) else [audience],
            "exp": issued + int(lifetime),
            "iat": issued,
            "nbf": issued,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {
                    "name": name,
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}/{name}")),
                },
            },
        }
        if pod is not None:
            claims["kubernetes.io"]["pod"] = {
                "name": pod,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, pod)),
            }
        claims.update(extra or {})
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid})

    def legacy_token(self, *, namespace: str = "apps", name: str = "web") -> str:
        claims = {
            "iss": "kubernetes/serviceaccount",
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": f"{name}-token-abcde",
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": "5b1d3a46-0000-4000-8000-000000000001",
        }
        return jwt.encode(claims, self.private, algorithm=self.algorithm)
