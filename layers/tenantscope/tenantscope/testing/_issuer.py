"""A local JWT issuer: mints RS256 tokens and publishes its JWKS, for tests and local runs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["LocalIssuer"]


class LocalIssuer:
    """Mints the tokens of an issuer that exists only in tests and local runs.

    Point a function at it with :attr:`settings` (or the environment of :meth:`environment`):
    its JWKS is passed inline, which tenantscope refuses inside a deployed function.

    >>> issuer = LocalIssuer.generate()
    >>> token = issuer.token("acme")
    >>> jwt.decode(token, issuer.public_key, algorithms=["RS256"], audience=issuer.audience)["tenant_id"]
    'acme'
    """

    DEFAULT_ISSUER = "https://issuer.tenantscope.dev"
    DEFAULT_AUDIENCE = "tenantscope-dev-client"

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        kid: str = "dev-key-1",
        tenant_claim: str = "tenant_id",
    ) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.issuer = issuer
        self.audience = audience
        self.kid = kid
        self.tenant_claim = tenant_claim

    @classmethod
    def generate(cls, **kwargs: Any) -> LocalIssuer:
        """An issuer with a new 2048-bit RSA key."""
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), **kwargs)

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.public_key))
        data.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return data

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}

    def environment(self) -> dict[str, str]:
        """The settings that make a function trust this issuer (its JWKS inline)."""
        return {
            "TENANTSCOPE_JWT_ISSUER": self.issuer,
            "TENANTSCOPE_JWT_AUDIENCE": self.audience,
            "TENANTSCOPE_JWKS_URL": "inline:" + json.dumps(self.jwks(), separators=(",", ":")),
            "TENANTSCOPE_TENANT_CLAIM": self.tenant_claim,
        }

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def claims(self, tenant_id: object, *, subject: str = "user-1", lifetime: int = 3600) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            self.tenant_claim: tenant_id,
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            "token_use": "access",
        }

    def token(
        self,
        tenant_id: object = "acme",
        *,
        claims: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        headers: dict[str, Any] | None = None,
        lifetime: int = 3600,
        subject: str = "user-1",
    ) -> str:
        """A signed token; ``claims`` overrides and ``drop`` removes claims, ``headers`` adds headers."""
        payload = {**self.claims(tenant_id, subject=subject, lifetime=lifetime), **(claims or {})}
        for name in drop:
            payload.pop(name, None)
        return jwt.encode(
            payload, self.private_key, algorithm="RS256", headers={"kid": self.kid, **(headers or {})}
        )
