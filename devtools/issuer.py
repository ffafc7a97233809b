"""A development JWT issuer: mints RS256 tokens and publishes its JWKS.

Its key is for local development, tests and ``sam local invoke`` only. A deployment
trusts a real issuer (Cognito or another IdP) through TENANTSCOPE_JWKS_URL.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEV_ISSUER = "https://issuer.tenantscope.dev"
DEV_AUDIENCE = "tenantscope-dev-client"
DEV_KEY_PATH = Path(__file__).with_name("dev_issuer_key.pem")


class DevIssuer:
    """Mints tokens for a development issuer.

    >>> issuer = DevIssuer.generate()
    >>> token = issuer.token("acme")
    >>> jwt.decode(token, issuer.public_key, algorithms=["RS256"], audience=DEV_AUDIENCE)["tenant_id"]
    'acme'
    """

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey,
        *,
        issuer: str = DEV_ISSUER,
        audience: str = DEV_AUDIENCE,
        kid: str = "dev-key-1",
    ) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.issuer = issuer
        self.audience = audience
        self.kid = kid

    @classmethod
    def generate(cls, **kwargs: Any) -> DevIssuer:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), **kwargs)

    @classmethod
    def from_dev_key(cls, **kwargs: Any) -> DevIssuer:
        """The issuer whose key is committed for local development (events/, sam local)."""
        key = serialization.load_pem_private_key(DEV_KEY_PATH.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cls(key, **kwargs)

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.public_key))
        data.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return data

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}

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
            "tenant_id": tenant_id,
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
