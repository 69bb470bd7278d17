"""A loopback OIDC issuer for the jwt auth method tests: signing keys, a JWKS endpoint, discovery.

:class:`Issuer` generates signing keys (RSA or EC), serves them as a JSON Web
Key Set at ``<url>/keys`` and an OpenID Connect discovery document at
``<url>/.well-known/openid-configuration`` from a thread on a free loopback
port, and mints tokens shaped like GitHub Actions' (``repository``, ``ref``,
``environment``, ...). :meth:`Issuer.rotate` publishes a new key (and, by
default, withdraws the old ones), as an issuer rotating its keys does;
:attr:`Issuer.jwks_hits` counts how often the key set was fetched.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = ["GITHUB_AUDIENCE", "Issuer", "SigningKey", "github_claims", "running_issuer"]

GITHUB_AUDIENCE = "https://github.com/octo-org"


@dataclass
class SigningKey:
    """One private signing key and its public JWK."""

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

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        raw = RSAAlgorithm.to_jwk(public) if self.kind == "RSA" else ECAlgorithm.to_jwk(public)
        return {**json.loads(raw), "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(
            claims,
            self.private,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )


def github_claims(
    issuer: str,
    *,
    now: float,
    lifetime: float = 300.0,
    audience: str | list[str] = GITHUB_AUDIENCE,
    repository: str = "octo-org/octo-repo",
    ref: str = "refs/heads/main",
    environment: str | None = "production",
    **extra: Any,
) -> dict[str, Any]:
    """Claims like a GitHub Actions OIDC token's (``token.actions.githubusercontent.com``)."""
    issued = int(now)
    subject = (
        f"repo:{repository}:environment:{environment}"
        if environment
        else f"repo:{repository}:ref:{ref}"
    )
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "exp": issued + int(lifetime),
        "iat": issued,
        "nbf": issued,
        "jti": uuid.uuid4().hex,
        "repository": repository,
        "repository_owner": repository.split("/")[0],
        "ref": ref,
        "ref_type": "branch",
        "actor": "octocat",
        "workflow": "deploy",
        "run_id": "6229371498",
        "event_name": "push",
    }
    if environment:
        claims["environment"] = environment
    claims.update(extra)
    return claims


class Issuer:
    """An OIDC issuer on ``http://127.0.0.1:<port>`` (keys at ``/keys``, discovery at the usual path)."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = [SigningKey()]
        self.published: list[SigningKey] = list(self.keys)
        self.jwks_hits = 0
        self.discovery_hits = 0
        self.discovery_issuer: str | None = None
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/keys":
                    issuer.jwks_hits += 1
                    body: dict[str, Any] = {"keys": [k.jwk() for k in issuer.published]}
                elif self.path == "/.well-known/openid-configuration":
                    issuer.discovery_hits += 1
                    body = {
                        "issuer": issuer.discovery_issuer or issuer.url,
                        "jwks_uri": f"{issuer.url}/keys",
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                        "response_types_supported": ["id_token"],
                        "subject_types_supported": ["public"],
                    }
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def key(self) -> SigningKey:
        """The newest key."""
        return self.keys[-1]

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/keys"

    def rotate(self, *, kind: str = "RSA", keep_old: bool = False) -> SigningKey:
        """Make a new key and publish it (alone, unless ``keep_old``)."""
        new = SigningKey(kind=kind)
        self.keys.append(new)
        self.published = [*self.published, new] if keep_old else [new]
        return new

    def token(
        self,
        *,
        key: SigningKey | None = None,
        now: float | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A GitHub-style token signed by ``key`` (default: the newest), claims overridable."""
        base = github_claims(self.url, now=time.time() if now is None else now)
        for name, value in claims.items():
            if value is None:
                base.pop(name, None)
            else:
                base[name] = value
        return (key or self.key).sign(base, headers=headers)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def running_issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    try:
        yield issuer
    finally:
        issuer.close()
