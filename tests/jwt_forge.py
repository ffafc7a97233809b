"""Hand-built JWT parts, for tests that need tokens PyJWT would not make (odd encodings, hostile
headers, duplicate claims)."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWS segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rs256(key: rsa.RSAPrivateKey, signing_input: str) -> str:
    """The RS256 signature segment of ``signing_input`` under ``key``."""
    return b64url(key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()))
