"""JWT verification with a hardened JWKS cache, and a cache of verified tokens.

Only the configured issuer's JWKS supplies keys, looked up by ``kid``. Key material or
key locations in the token header (``jwk``, ``jku``, ``x5u``, ``x5c``) are refused,
never used. Algorithms are pinned by configuration and bound to each key. PyJWT's algorithm
checks the signature; the token's segments and claims are read here, by ``jwt.decode``'s rules.

A token verified once is known by the SHA-256 of its text (never the text itself) until it
expires, its signing key leaves the JWKS, or a newer token pushes it out: see
:class:`JwtVerifier` and docs/performance.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._cache import ProcessCache, Refresher
from ._config import ENV, Settings, refuse_local_only_in_deployment
from ._errors import ConfigurationError, KeysUnavailable, Reason, Unauthorized

if TYPE_CHECKING:
    import ssl

    from jwt import PyJWK

__all__ = [
    "TOKEN_CACHE_SIZE",
    "JwksCache",
    "JwksSource",
    "JwtVerifier",
    "StaticJwksSource",
    "UrlJwksSource",
    "jwks_cache_for",
]

logger = logging.getLogger("tenantscope")

T = TypeVar("T")

_MAX_JWKS_BYTES = 256 * 1024
# Header parameters that name or carry key material chosen by the token's author.
_REFUSED_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit")
_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Required, as PyJWT's "require" option: present and not null.
_REQUIRED_CLAIMS = ("exp", "iat", "iss")
# A kid is only ever a dictionary key here; this bound keeps log lines and lookups small.
_KID = re.compile(r"[\x21-\x7e]{1,128}")
# Verified tokens each verifier remembers: more than the distinct users a warm container serves
# within a token's lifetime, and a few megabytes at most (an entry is its claims and a digest).
TOKEN_CACHE_SIZE = 1024


class JwksSource(Protocol):
    """Where a JWKS document comes from."""

    def fetch(self) -> Mapping[str, Any]:
        """Return the JWKS document (``{"keys": [...]}``); raise on failure."""
        ...


# The forms of TENANTSCOPE_JWKS_URL, named by every error about that setting.
_JWKS_FORMS = "the issuer's https:// URL, or file://<path> or inline:<JWKS JSON> for local development"


class UrlJwksSource:
    """Fetches a JWKS from an ``https://`` URL, or a ``file://`` URL for the local development issuer.

    Plain ``http://`` and every other scheme are refused: a JWKS fetched without TLS lets anyone
    on the path mint tokens. For the same reason every redirect is refused (the URL must be the
    final one), and ``file://`` is refused inside a deployed function, like ``inline:``.
    ``ssl_context`` replaces the default certificate checks (a private CA; tests).
    """

    def __init__(self, url: str, *, timeout: float = 2.0, ssl_context: ssl.SSLContext | None = None) -> None:
        scheme = url.partition("://")[0] if "://" in url else ""
        if scheme not in ("https", "file"):
            raise ConfigurationError(Reason.INVALID_SETTING, f"{ENV.JWKS_URL} must be {_JWKS_FORMS}")
        if scheme == "file":
            refuse_local_only_in_deployment(ENV.JWKS_URL, "file://")
        self.url = url
        self.timeout = timeout
        self._ssl_context = ssl_context

    def fetch(self) -> Mapping[str, Any]:
        import urllib.request  # lazily: ~15 ms of http/ssl/email imports, needed only on a fetch

        class RefuseRedirects(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                raise KeysUnavailable(Reason.JWKS_REDIRECT)

        opener = urllib.request.build_opener(
            RefuseRedirects, urllib.request.HTTPSHandler(context=self._ssl_context)
        )
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})  # noqa: S310
        with opener.open(request, timeout=self.timeout) as response:
            body = response.read(_MAX_JWKS_BYTES + 1)
        if len(body) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("JWKS document is not an object")
        return document


class StaticJwksSource:
    """A fake JWKS source for tests and local development: serves a fixed document, counts fetches.

    >>> source = StaticJwksSource({"keys": []})
    >>> source.fetch(), source.fetches
    ({'keys': []}, 1)
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.fetches = 0
        self.fail = False

    def fetch(self) -> Mapping[str, Any]:
        self.fetches += 1
        if self.fail:
            raise OSError("JWKS source unavailable")
        return self.document


def _for_verifying(entry: dict[str, Any]) -> bool:
    """Whether a JWKS entry is published for checking signatures: a key for encryption (``use``
    ``enc``, or ``key_ops`` without ``verify``, RFC 7517 4.2-4.3) is never used for both, since
    what its private key decrypts could be made to sign. A JWKS is public: a symmetric (``oct``)
    key in it is a secret anyone can read."""
    operations = entry.get("key_ops", ["verify"])
    return (
        entry.get("use", "sig") == "sig"
        and isinstance(operations, list)
        and "verify" in operations
        and entry.get("kty") != "oct"
    )


def _parse_keys(document: Mapping[str, Any]) -> dict[str, PyJWK]:
    import jwt  # lazily: PyJWT loads cryptography (~50 ms), which SQS-only functions never need

    keys: dict[str, PyJWK] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("JWKS has no keys list")
    for entry in entries:
        if not isinstance(entry, dict) or not _for_verifying(entry):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
            continue
        try:
            keys[kid] = jwt.PyJWK(entry)
        except Exception:  # PyJWK also raises KeyError, TypeError, NotImplementedError: skip only this key
            logger.warning("tenantscope: skipped an unusable JWKS key")
    return keys


class JwksCache:
    """Signing keys by ``kid``, cached with a lifespan and refetched at a bounded rate.

    - Keys live for ``ttl`` seconds, then are refreshed on next use.
    - An unknown kid triggers a refetch at most once per ``min_refetch_interval``, so a
      flood of random kids costs at most one fetch per interval.
    - A failed fetch keeps the last good key set.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        ttl: float = 600.0,
        min_refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._keys = Refresher(
            lambda: _parse_keys(source.fetch()),
            what="JWKS fetch",
            min_interval=min_refetch_interval,
            clock=clock,
        )

    def preload(self) -> None:
        """Fetch the keys now (at cold start); a failure is logged, not raised."""
        self._keys.refresh(force=True)

    def get(self, kid: str) -> PyJWK | None:
        """The key for ``kid``, or None when the issuer does not publish it.

        Raises :class:`KeysUnavailable` while no key set has ever loaded, and for a kid missing
        from a key set whose refetch is due and failed: the caller's token cannot be judged, which
        is an outage (503), not a bad token (401).
        """
        keys = self._keys.value
        key = keys.get(kid) if keys is not None else None
        if key is None or self._keys.age() > self._ttl:
            keys = self._keys.refresh()  # as the refresh left it: a reset since cannot void it
            key = keys.get(kid) if keys is not None else None
        if keys is None or (key is None and self._keys.age() > self._ttl):
            # No key set yet, or one due a refetch that failed: a kid it lacks may be a key the
            # issuer published since, which cannot be told from a made-up one. An outage.
            raise KeysUnavailable(Reason.ISSUER_KEYS_UNAVAILABLE)
        return key


def _jwks_source(settings: Settings) -> JwksSource:
    assert settings.jwks_url is not None
    if not settings.jwks_url.startswith("inline:"):
        return UrlJwksSource(settings.jwks_url, timeout=settings.jwks_timeout_seconds)
    refuse_local_only_in_deployment(ENV.JWKS_URL, "inline:")
    try:
        return StaticJwksSource(json.loads(settings.jwks_url.removeprefix("inline:")))
    except ValueError:
        raise ConfigurationError(Reason.INVALID_SETTING, f"{ENV.JWKS_URL}=inline: is not JSON") from None


_caches: ProcessCache[tuple[str, float, float, float], JwksCache] = ProcessCache()


def jwks_cache_for(settings: Settings) -> JwksCache:
    """The process-wide JWKS cache for the configured URL, shared by every handler."""
    if not settings.jwks_url:
        raise ConfigurationError(Reason.MISSING_SETTING, f"{ENV.JWKS_URL}: set it to {_JWKS_FORMS}")
    key = (
        settings.jwks_url,
        settings.jwks_ttl_seconds,
        settings.jwks_min_refetch_seconds,
        settings.jwks_timeout_seconds,
    )
    return _caches.get(
        key,
        lambda: JwksCache(
            _jwks_source(settings),
            ttl=settings.jwks_ttl_seconds,
            min_refetch_interval=settings.jwks_min_refetch_seconds,
        ),
    )


def _unverified_header(token: str) -> dict[str, Any]:
    """The token's header, read only to choose the key; :meth:`JwtVerifier._decode` reads it again,
    strictly, to verify."""
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise Unauthorized(Reason.MALFORMED_TOKEN) from None
    if not isinstance(header, dict):
        raise Unauthorized(Reason.MALFORMED_TOKEN)
    return header


def _segment(segment: bytes) -> bytes:
    """A base64url segment decoded, by PyJWT's rules: at most two "=" of padding, and then whole
    quads; the base64url alphabet only; and the canonical encoding of the bytes it decodes to."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if (
        padding > 2
        or (padding and len(segment) % 4)
        or len(stripped) % 4 == 1
        or stripped.translate(None, _BASE64URL_ALPHABET)
    ):
        raise Unauthorized(Reason.MALFORMED_TOKEN)
    try:
        decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise Unauthorized(Reason.MALFORMED_TOKEN) from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
        raise Unauthorized(Reason.MALFORMED_TOKEN)
    return decoded


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise Unauthorized(Reason.MALFORMED_TOKEN) from None
    if not isinstance(value, dict):
        raise Unauthorized(Reason.MALFORMED_TOKEN)
    return value


def _integer(value: Any) -> int | None:
    """A time claim as PyJWT reads it, with ``int()`` (numbers, numeric strings, booleans); else None."""
    try:
        return int(value)
    except (ValueError, TypeError, OverflowError):
        return None


class _Verified:
    """What one successful verification proved, kept under the SHA-256 of the token."""

    __slots__ = ("claims", "derived", "expires", "key", "kid", "not_before")

    def __init__(self, claims: dict[str, Any], key: PyJWK, kid: str, leeway: int) -> None:
        self.claims = claims
        self.key = key  # the very key object that checked the signature
        self.kid = kid
        # What JwtVerifier.verify_as derived from the claims, with the function that derived it.
        self.derived: tuple[Callable[..., Any], Any] | None = None
        # Just read as integers by JwtVerifier._decode, with the same leeway.
        iat = int(claims["iat"])
        self.not_before = (max(iat, int(claims["nbf"])) if "nbf" in claims else iat) - leeway
        self.expires = int(claims["exp"]) + leeway


class JwtVerifier:
    """Verifies a compact JWT against the configured issuer, audience and algorithms.

    Raises :class:`Unauthorized` for every kind of bad token; the message names the
    reason category for logs and never contains the token.

    A token that verifies is remembered by the SHA-256 of its text, for ``cache_size`` tokens
    (least recently used dropped first; 0 remembers none). Using a remembered token again
    re-checks what can change since: that the JWKS still serves, under its ``kid``, the very key
    object that checked its signature (a key withdrawn or replaced, even under the same kid,
    ends the entry), and ``iat``, ``nbf`` and ``exp`` against ``clock``, with the leeway.
    Everything else verification checks is a function of the token's text and this verifier's
    settings, which cannot change. A token that fails is never remembered.
    """

    def __init__(
        self,
        settings: Settings,
        keys: JwksCache,
        *,
        cache_size: int = TOKEN_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.jwt_issuer or not settings.jwt_audience:
            raise ConfigurationError(Reason.MISSING_SETTING, f"{ENV.JWT_ISSUER} and {ENV.JWT_AUDIENCE}")
        self._settings = settings
        self._keys = keys
        self._clock = clock
        self._verified: ProcessCache[bytes, _Verified] | None = (
            ProcessCache(maxsize=cache_size) if cache_size > 0 else None
        )

    def preload(self) -> None:
        """Fetch the issuer's keys now, during cold start."""
        self._keys.preload()

    def verify(self, token: str) -> dict[str, Any]:
        """Return the verified claims of ``token`` (a new dictionary on each call)."""
        return dict(self._verified_entry(token).claims)

    def verify_as(self, token: str, derive: Callable[[Mapping[str, Any]], T]) -> T:
        """``derive`` of the verified claims of ``token``, derived once per remembered token.

        ``derive`` must be a function of the claims alone that leaves them as they are, its value
        immutable: a token used again gets the value derived at its first use (if ``derive`` is
        the same object), once its time and key are checked again. A ``derive`` that raises is
        asked again at the next use: only what succeeds is remembered.
        """
        entry = self._verified_entry(token)
        derived = entry.derived
        if derived is not None and derived[0] is derive:
            return derived[1]  # type: ignore[no-any-return]
        value = derive(entry.claims)
        entry.derived = (derive, value)
        return value

    def _verified_entry(self, token: str) -> _Verified:
        if len(token) > self._settings.max_token_bytes:
            raise Unauthorized(Reason.TOKEN_TOO_LONG)
        verified = self._verified
        if verified is None:
            return _Verified(*self._verify(token), self._settings.jwt_leeway_seconds)
        digest = hashlib.sha256(token.encode()).digest()
        entry = verified.lookup(digest)
        if entry is not None:
            if self._keys.get(entry.kid) is entry.key:
                now = self._clock()
                # In PyJWT's order: iat and nbf, then exp.
                if now < entry.not_before:
                    verified.discard(digest)
                    raise Unauthorized(Reason.TOKEN_NOT_YET_VALID)
                if now >= entry.expires:
                    verified.discard(digest)
                    raise Unauthorized(Reason.TOKEN_EXPIRED)
                return entry
            verified.discard(digest)  # its key was withdrawn or replaced: judge the token afresh
        entry = _Verified(*self._verify(token), self._settings.jwt_leeway_seconds)
        verified.store(digest, entry)
        return entry

    def _verify(self, token: str) -> tuple[dict[str, Any], PyJWK, str]:
        """The claims of ``token``, fully verified, with the key and kid that verified them."""
        settings = self._settings
        header = _unverified_header(token)
        alg = header.get("alg")
        if alg not in settings.jwt_algorithms:
            raise Unauthorized(Reason.ALGORITHM_NOT_ALLOWED)
        if any(name in header for name in _REFUSED_HEADERS):
            raise Unauthorized(Reason.REFUSED_HEADER)
        kid = header.get("kid")
        if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
            raise Unauthorized(Reason.MALFORMED_KID)
        key = self._keys.get(kid)
        if key is None:
            raise Unauthorized(Reason.UNKNOWN_KID)
        if key.algorithm_name != alg:
            raise Unauthorized(Reason.ALGORITHM_MISMATCH)
        claims = self._decode(token, key)
        if settings.jwt_token_use is not None and claims.get("token_use") != settings.jwt_token_use:
            raise Unauthorized(Reason.WRONG_TOKEN_USE)
        return claims, key, kid

    def _decode(self, token: str, key: PyJWK) -> dict[str, Any]:
        """The payload of ``token`` once its signature verifies under ``key`` and its registered
        claims hold: what ``jwt.decode`` checks (PyJWT 2.15), in its order, with its outcomes, but
        for a token without ``aud``, whose ``client_id`` may name the audience (Cognito access tokens).

        PyJWT's own decode checks each base64url character in a Python loop (a fifth of a
        verification); here one C-level pass does, and PyJWT's algorithm checks the signature.
        """
        try:
            signing_input, signature_segment = token.encode("utf-8").rsplit(b".", 1)
            header_segment, payload_segment = signing_input.split(b".", 1)
        except (ValueError, UnicodeEncodeError):
            raise Unauthorized(Reason.MALFORMED_TOKEN) from None
        header = _json_object(_segment(header_segment))
        unencoded = header.get("b64", True) is False  # RFC 7797: only ever with "crit", refused
        if unencoded and payload_segment:
            raise Unauthorized(Reason.MALFORMED_TOKEN)
        payload = b"" if unencoded else _segment(payload_segment)
        signature = _segment(signature_segment)
        if unencoded:
            raise Unauthorized(Reason.INVALID_TOKEN, "InvalidTokenError")
        algorithm = key.Algorithm
        prepared = algorithm.prepare_key(key.key)
        if algorithm.check_key_length(prepared):
            raise Unauthorized(Reason.INVALID_TOKEN, "InvalidKeyError")
        if not algorithm.verify(signing_input, prepared, signature):
            raise Unauthorized(Reason.BAD_TOKEN_SIGNATURE)
        claims = _json_object(payload)
        if any(claims.get(name) is None for name in _REQUIRED_CLAIMS):
            raise Unauthorized(Reason.INVALID_TOKEN, "MissingRequiredClaimError")
        now = self._clock()
        leeway = self._settings.jwt_leeway_seconds
        iat = _integer(claims["iat"])
        if iat is None:
            raise Unauthorized(Reason.INVALID_TOKEN, "InvalidIssuedAtError")
        if iat > now + leeway:
            raise Unauthorized(Reason.TOKEN_NOT_YET_VALID)
        nbf = _integer(claims["nbf"]) if "nbf" in claims else iat
        if nbf is None:
            raise Unauthorized(Reason.MALFORMED_TOKEN)
        if nbf > now + leeway:
            raise Unauthorized(Reason.TOKEN_NOT_YET_VALID)
        exp = _integer(claims["exp"])
        if exp is None:
            raise Unauthorized(Reason.MALFORMED_TOKEN)
        if exp <= now - leeway:
            raise Unauthorized(Reason.TOKEN_EXPIRED)
        if not isinstance(claims["iss"], str) or claims["iss"] != self._settings.jwt_issuer:  # exact, typed
            raise Unauthorized(Reason.WRONG_ISSUER)
        self._check_audience(claims)
        if "sub" in claims and not isinstance(claims["sub"], str):
            raise Unauthorized(Reason.INVALID_TOKEN, "InvalidSubjectError")
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise Unauthorized(Reason.INVALID_TOKEN, "InvalidJTIError")
        return claims

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        allowed = self._settings.jwt_audience
        aud = claims.get("aud")
        if aud is not None:
            values = [aud] if isinstance(aud, str) else aud
            # A list with anything but strings in it is malformed, whatever else it holds (as PyJWT).
            if (
                isinstance(values, list)
                and all(isinstance(v, str) for v in values)
                and any(v in allowed for v in values)
            ):
                return
            raise Unauthorized(Reason.WRONG_AUDIENCE)
        # Cognito access tokens carry the app client in client_id and have no aud.
        client_id = claims.get("client_id")
        if isinstance(client_id, str) and client_id in allowed:
            return
        raise Unauthorized(Reason.WRONG_AUDIENCE)
