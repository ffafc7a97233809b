"""The development issuer: the local issuer whose key is committed, for the sample events,
`sam local` and the demo. A deployment trusts a real issuer (Cognito or another IdP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tenantscope.testing import LocalIssuer

DEV_ISSUER = LocalIssuer.DEFAULT_ISSUER
DEV_AUDIENCE = LocalIssuer.DEFAULT_AUDIENCE
DEV_KEY_PATH = Path(__file__).with_name("dev_issuer_key.pem")


def dev_issuer(**kwargs: Any) -> LocalIssuer:
    """The issuer whose key is committed for local development (events/, sam local).

    >>> dev_issuer().issuer == DEV_ISSUER
    True
    """
    key = serialization.load_pem_private_key(DEV_KEY_PATH.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return LocalIssuer(key, **kwargs)
