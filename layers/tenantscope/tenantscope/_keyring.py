"""Signing key rings for tenant envelopes: sign with the active key, verify with any listed key.

``TENANTSCOPE_SIGNING_KEYS`` names where the ring comes from:

- ``secretsmanager:<secret id or ARN>``: a JSON ring in a secret.
  Cached in memory with a maximum age; an unknown key id refreshes it at a bounded rate.
- ``kms:<key>[,<key>...]``: AWS KMS HMAC keys (GenerateMac / VerifyMac), the deployed default.
  The first key signs.
  Producers need only kms:GenerateMac and consumers only kms:VerifyMac.
- ``inline:<JSON ring>``: local development and ``sam local invoke`` only; the secret then sits
  in the function's environment, readable by anyone who can read its configuration.

The JSON ring: ``{"active": "k2", "keys": {"k1": "<base64>", "k2": "<base64>"}}``, each key
at least 32 random bytes; or the flat form ``{"active": "k2", "k1": "<base64>", "k2": "<base64>"}``
that a generated Secrets Manager secret has (64 alphanumeric characters are valid base64 of
48 bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ._aws import aws_client, aws_error_code
from ._cache import ProcessCache, Refresher
from ._config import ENV, Settings, refuse_local_only_in_deployment
from ._errors import ConfigurationError, KeysUnavailable, Reason, TenantAuthError

__all__ = [
    "KEY_ID_PATTERN",
    "HmacKeyRing",
    "KeyRing",
    "KmsKeyRing",
    "SecretsManagerKeyRing",
    "StaticKeyRing",
    "default_key_ring",
    "key_ring_from_spec",
]

logger = logging.getLogger("tenantscope")

KEY_ID_PATTERN = r"[A-Za-z0-9._:/+=@-]{1,256}"
_KEY_ID = re.compile(KEY_ID_PATTERN)
MIN_KEY_BYTES = 32
# How long a loaded ring is used before it is loaded again, and how often at most an unknown key
# id makes it look again before that (TENANTSCOPE_SIGNING_KEYS_MAX_AGE_SECONDS sets the first).
DEFAULT_MAX_AGE_SECONDS = 300.0
DEFAULT_MIN_REFRESH_SECONDS = 30.0


class KeyRing(Protocol):
    """Signs with the active key and verifies with any listed key."""

    def active_key_id(self) -> str: ...

    def sign(self, key_id: str, message: bytes) -> bytes:
        """The MAC of ``message`` under ``key_id``; raises :class:`TenantAuthError` for an unknown key."""
        ...

    def verify(self, key_id: str, message: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is the MAC of ``message`` under ``key_id``, compared in constant time."""
        ...


def _parse_ring(document: Mapping[str, Any]) -> tuple[str, dict[str, bytes]]:
    if not isinstance(document, Mapping):
        raise ConfigurationError(Reason.INVALID_SETTING, "key ring is not a JSON object")
    active = document.get("active")
    # The flat form, {"active": "k1", "k1": "<base64>"}, is what CloudFormation's
    # GenerateSecretString produces (it cannot nest); both forms mean the same ring.
    entries = document.get("keys", {k: v for k, v in document.items() if k != "active"})
    if not isinstance(entries, dict) or not entries:
        raise ConfigurationError(Reason.INVALID_SETTING, "key ring has no keys")
    keys: dict[str, bytes] = {}
    for key_id, encoded in entries.items():
        if not isinstance(key_id, str) or _KEY_ID.fullmatch(key_id) is None:
            raise ConfigurationError(Reason.INVALID_SETTING, "key ring has an invalid key id")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ConfigurationError(
                Reason.INVALID_SETTING, "key ring has a key that is not base64"
            ) from None
        if len(secret) < MIN_KEY_BYTES:
            raise ConfigurationError(
                Reason.INVALID_SETTING, f"key ring keys must be at least {MIN_KEY_BYTES} bytes"
            )
        keys[key_id] = secret
    if not isinstance(active, str) or active not in keys:
        raise ConfigurationError(Reason.INVALID_SETTING, "key ring's active key is not listed")
    return active, keys


_HmacPads = tuple["hashlib._Hash", "hashlib._Hash"]
_SHA256_BLOCK = 64
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


def _hmac_sha256_pads(key: bytes) -> _HmacPads:
    """SHA-256 states already fed HMAC's inner and outer padded keys (RFC 2104, section 2).

    HMAC(key, m) = SHA-256(outer pad || SHA-256(inner pad || m)): from copies of these two
    states a MAC is six C calls with no keying; hmac.HMAC's copy, update and digest wrap the same
    work in Python methods, on every record. Held equal to hmac.new by tests/unit/test_keyring.py.
    """
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_INNER_PAD)), hashlib.sha256(key.translate(_OUTER_PAD))


class HmacKeyRing:
    """Local HMAC-SHA256 over a JSON ring loaded by ``load`` (cached; refreshed at a bounded rate)."""

    def __init__(
        self,
        load: Callable[[], Mapping[str, Any]],
        *,
        max_age: float = DEFAULT_MAX_AGE_SECONDS,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age
        self._ring = Refresher(
            lambda: _parse_ring(load()),
            what="signing key ring load",
            min_interval=min_refresh_interval,
            clock=clock,
        )
        self._keyed: tuple[object, dict[str, _HmacPads]] = (None, {})

    def _loaded(self) -> tuple[str, dict[str, bytes]]:
        # Read once, or as the refresh left it: a reset between two reads (reset_process_state in
        # another thread) would otherwise turn a loaded ring into an outage.
        ring = self._ring.value
        if ring is None or self._ring.age() > self._max_age:
            ring = self._ring.refresh()
        if ring is None:
            raise KeysUnavailable(Reason.SIGNING_KEYS_UNAVAILABLE)
        return ring

    def _key(self, key_id: str) -> bytes:
        key = self._loaded()[1].get(key_id)
        if key is None:  # a key added since the last load: look once more, at a bounded rate
            self._ring.refresh()
            key = self._loaded()[1].get(key_id)
        if key is None and self._ring.age() > self._max_age:
            # The ring is due a reload that failed: the id may be a key added since (a rotation),
            # which cannot be told from a made-up one until the source answers. An outage.
            raise KeysUnavailable(Reason.SIGNING_KEYS_UNAVAILABLE)
        if key is None:
            raise TenantAuthError(Reason.UNKNOWN_SIGNING_KEY)
        return key

    def active_key_id(self) -> str:
        return self._loaded()[0]

    def sign(self, key_id: str, message: bytes) -> bytes:
        ring = self._loaded()
        keyed = self._keyed
        if keyed[0] is not ring:  # a new load: forget what was keyed from the previous one
            keyed = self._keyed = (ring, {})
        pads = keyed[1].get(key_id)
        if pads is None:
            pads = keyed[1][key_id] = _hmac_sha256_pads(self._key(key_id))
        inner = pads[0].copy()
        inner.update(message)
        outer = pads[1].copy()
        outer.update(inner.digest())
        return outer.digest()

    def verify(self, key_id: str, message: bytes, mac: bytes) -> bool:
        return hmac.compare_digest(self.sign(key_id, message), mac)


class StaticKeyRing(HmacKeyRing):
    """A ring from a fixed JSON document: ``inline:`` configuration, tests and fakes.

    >>> import base64
    >>> ring = StaticKeyRing({"active": "k1", "keys": {"k1": base64.b64encode(bytes(32)).decode()}})
    >>> ring.active_key_id(), len(ring.sign("k1", b"x"))
    ('k1', 32)
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        _parse_ring(document)  # fail at configuration time, not on first message
        super().__init__(lambda: document, max_age=float("inf"))


class SecretsManagerKeyRing(HmacKeyRing):
    """A JSON ring in AWS Secrets Manager, read on the function's own role."""

    def __init__(
        self,
        secret_id: str,
        *,
        region: str | None = None,
        client: Any = None,
        max_age: float = DEFAULT_MAX_AGE_SECONDS,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secret_id = secret_id
        self._region = region
        self._client = client
        super().__init__(self._fetch, max_age=max_age, min_refresh_interval=min_refresh_interval, clock=clock)

    def _fetch(self) -> Mapping[str, Any]:
        client = self._client or aws_client("secretsmanager", self._region)
        document: Mapping[str, Any] = json.loads(
            client.get_secret_value(SecretId=self.secret_id)["SecretString"]
        )
        return document


class KmsKeyRing:
    """AWS KMS HMAC keys: the MAC never leaves KMS's keys, at the price of one KMS call per operation.

    Signing is ``kms:GenerateMac`` and verifying ``kms:VerifyMac``, separate permissions: a
    consumer granted only VerifyMac can check envelopes but never seal one. A KMS failure (throttled,
    unreachable, a key disabled or not granted) is :class:`KeysUnavailable`, retried like any key
    outage; only a MAC that KMS finds wrong is a refused envelope.
    """

    def __init__(self, key_ids: tuple[str, ...], *, region: str | None = None, client: Any = None) -> None:
        if not key_ids or any(_KEY_ID.fullmatch(k) is None for k in key_ids):
            raise ConfigurationError(
                Reason.INVALID_SETTING, "kms: needs one or more KMS key ids, ARNs or aliases"
            )
        self.key_ids = key_ids
        self._region = region
        self._client = client

    def active_key_id(self) -> str:
        return self.key_ids[0]

    def _listed(self, key_id: str) -> str:
        if key_id not in self.key_ids:
            raise TenantAuthError(Reason.UNKNOWN_SIGNING_KEY)
        return key_id

    def _call(self, operation: str, **params: Any) -> Mapping[str, Any] | None:
        """The KMS response, or None when KMS judged the MAC invalid."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response: Mapping[str, Any] = getattr(self._client or aws_client("kms", self._region), operation)(
                MacAlgorithm="HMAC_SHA_256", **params
            )
        except ClientError as error:
            code = aws_error_code(error)
            if operation == "verify_mac" and code == "KMSInvalidMacException":
                return None
            raise KeysUnavailable(Reason.KMS_FAILED, f"{operation}: {code}") from None
        except BotoCoreError as error:
            raise KeysUnavailable(Reason.KMS_UNREACHABLE, type(error).__name__) from None
        return response

    def sign(self, key_id: str, message: bytes) -> bytes:
        response = self._call("generate_mac", KeyId=self._listed(key_id), Message=message)
        assert response is not None  # only verify_mac answers None
        mac: bytes = response["Mac"]
        return mac

    def verify(self, key_id: str, message: bytes, mac: bytes) -> bool:
        response = self._call("verify_mac", KeyId=self._listed(key_id), Message=message, Mac=mac)
        return response is not None and bool(response.get("MacValid"))


# The forms of TENANTSCOPE_SIGNING_KEYS, named by every error about that setting.
_RING_FORMS = "kms:<key id>, secretsmanager:<secret id> or inline:<JSON ring> (local development)"


def key_ring_from_spec(
    spec: str, *, region: str | None = None, max_age: float = DEFAULT_MAX_AGE_SECONDS
) -> KeyRing:
    """Build the ring named by a ``TENANTSCOPE_SIGNING_KEYS`` value.

    ``max_age`` (``TENANTSCOPE_SIGNING_KEYS_MAX_AGE_SECONDS``) is how long a Secrets Manager ring is cached.
    """
    kind, sep, value = spec.partition(":")
    if not sep or not value:
        raise ConfigurationError(Reason.INVALID_SETTING, f"{ENV.SIGNING_KEYS} must be {_RING_FORMS}")
    if kind == "secretsmanager":
        return SecretsManagerKeyRing(value, region=region, max_age=max_age)
    if kind == "kms":
        return KmsKeyRing(tuple(k.strip() for k in value.split(",") if k.strip()), region=region)
    if kind == "inline":
        refuse_local_only_in_deployment(ENV.SIGNING_KEYS, "inline:")
        try:
            document = json.loads(value)
        except ValueError:
            raise ConfigurationError(Reason.INVALID_SETTING, f"{ENV.SIGNING_KEYS}=inline: not JSON") from None
        return StaticKeyRing(document)
    raise ConfigurationError(
        Reason.INVALID_SETTING, f"{ENV.SIGNING_KEYS}: unknown key ring kind {kind!r}, not {_RING_FORMS}"
    )


_rings: ProcessCache[tuple[str, float], KeyRing] = ProcessCache()


def default_key_ring(settings: Settings) -> KeyRing:
    """The process-wide key ring named by ``TENANTSCOPE_SIGNING_KEYS``, shared by every handler."""
    spec = settings.signing_keys
    if not spec:
        raise ConfigurationError(Reason.MISSING_SETTING, f"{ENV.SIGNING_KEYS}: set it to {_RING_FORMS}")
    max_age = settings.signing_keys_max_age_seconds
    return _rings.get(
        (spec, max_age), lambda: key_ring_from_spec(spec, region=settings.region, max_age=max_age)
    )
