"""Credential vending: STS AssumeRole per tenant, cached in the warm container.

- Cached per (role, strategy, tenant) and refreshed a margin before ``Expiration``.
- Concurrent misses for one tenant make a single STS call (single flight).
- Failures are told apart: STS unreachable and STS throttled are retried with full jitter,
  then the work fails closed; STS refusing the role is not retried. Each is its own
  :class:`CredentialsUnavailable` subclass, log reason and metric. A failure is remembered
  only briefly.
- Every vended credential is checked (non-empty key, secret and token, the right tenant as
  STS's answer names the session, a future expiry), and there is no path that returns the
  function's own credentials.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ._aws import aws_client, aws_error_code
from ._cache import ProcessValue, touch
from ._config import MAX_CACHED_CREDENTIALS, Settings
from ._errors import CredentialsUnavailable, Reason, StsRefused, StsThrottled, StsUnreachable
from ._policy import AssumeRoleRequest, assume_role_request

__all__ = [
    "Boto3Sts",
    "CredentialVendor",
    "FakeSts",
    "ScopedCredentials",
    "StsBackend",
    "default_vendor",
    "set_default_vendor",
]

logger = logging.getLogger("tenantscope")

_THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
)
# STS failing on its side: as good as unreachable for this call.
_UNAVAILABLE_CODES = frozenset({"ServiceUnavailable", "InternalFailure", "IDPCommunicationError"})
_RETRIED = (StsThrottled, StsUnreachable)
# The retries' jitter, drawn from the operating system: the random module's state is copied into
# every environment a SnapStart snapshot resumes, which would then all retry STS in step.
_JITTER = random.SystemRandom()


@dataclass(frozen=True)
class ScopedCredentials:
    """Temporary credentials that reach only one tenant's data. ``repr`` hides the secrets."""

    tenant_id: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: float  # epoch seconds

    def __post_init__(self) -> None:
        _refuse_unusable(self)


def _refuse_unusable(credentials: ScopedCredentials) -> None:
    """ScopedCredentials' checks, outside the dataclass: mutmut leaves decorated classes unmutated."""
    # boto3 treats an empty key as no key and falls back to the default chain (the
    # function's own role): an empty credential must never get as far as a client.
    secrets = (credentials.access_key_id, credentials.secret_access_key, credentials.session_token)
    if not all(isinstance(value, str) and value for value in secrets):
        raise ValueError("scoped credentials need a non-empty key, secret and session token")
    if not isinstance(credentials.expiration, int | float) or not math.isfinite(credentials.expiration):
        raise ValueError("scoped credentials need an expiry")


class StsBackend(Protocol):
    """The one STS call tenantscope makes."""

    def assume_role(self, request: AssumeRoleRequest) -> ScopedCredentials: ...


class Boto3Sts:
    """The real STS backend, on the function's execution role. The client is made on first use."""

    def __init__(self, region: str | None = None, *, client: Any = None) -> None:
        self._region = region
        self._client = client

    def _sts(self) -> Any:
        # One attempt per call: the vendor retries throttling itself, with jitter.
        return self._client or aws_client("sts", self._region, attempts=1)

    def assume_role(self, request: AssumeRoleRequest) -> ScopedCredentials:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._sts().assume_role(**request.to_boto3())
        except ClientError as error:
            code = aws_error_code(error)
            if code in _THROTTLING_CODES:
                raise StsThrottled(Reason.STS_THROTTLED, code) from None
            if code in _UNAVAILABLE_CODES:
                raise StsUnreachable(Reason.STS_UNREACHABLE, code) from None
            raise StsRefused(Reason.STS_REFUSED, code) from None
        except BotoCoreError as error:  # DNS, connection, timeouts: nothing came back from STS
            raise StsUnreachable(Reason.STS_UNREACHABLE, type(error).__name__) from None
        try:
            creds = response["Credentials"]
            expiration = creds["Expiration"]
            return ScopedCredentials(
                tenant_id=_session_tenant(response),
                access_key_id=creds["AccessKeyId"],
                secret_access_key=creds["SecretAccessKey"],
                session_token=creds["SessionToken"],
                expiration=expiration.timestamp() if isinstance(expiration, datetime) else float(expiration),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise StsRefused(Reason.STS_UNUSABLE_CREDENTIALS) from None


def _session_tenant(response: dict[str, Any]) -> str:
    """The tenant STS says it made the session for: the session's name, the end of its ARN
    (``arn:aws:sts::<account>:assumed-role/<role>/<session>``), which must also be its source
    identity when STS answers one. The vendor then checks it is the tenant it asked for."""
    session = response["AssumedRoleUser"]["Arn"].rpartition("/")[2]
    source_identity = response.get("SourceIdentity", session)
    if source_identity != session:
        raise ValueError("the session's name and source identity differ")
    return str(session)


class FakeSts:
    """A fake STS backend: records every request and can throttle, be unreachable or refuse on demand.

    >>> from tenantscope._policy import AssumeRoleRequest
    >>> sts = FakeSts()
    >>> request = AssumeRoleRequest("acme", "arn:aws:iam::1:role/r", "session-tags", 900, (), None)
    >>> creds = sts.assume_role(request)
    >>> creds.tenant_id, len(sts.requests)
    ('acme', 1)
    """

    def __init__(self, *, duration: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        self.duration = duration
        self.clock = clock
        self.requests: list[AssumeRoleRequest] = []
        self.throttle_next = 0
        self.unreachable_next = 0
        self.refuse = False
        self._lock = threading.Lock()

    def assume_role(self, request: AssumeRoleRequest) -> ScopedCredentials:
        with self._lock:
            self.requests.append(request)
            n = len(self.requests)
            if self.throttle_next > 0:
                self.throttle_next -= 1
                raise StsThrottled(Reason.STS_THROTTLED, "Throttling")
            if self.unreachable_next > 0:
                self.unreachable_next -= 1
                raise StsUnreachable(Reason.STS_UNREACHABLE, "EndpointConnectionError")
        if self.refuse:
            raise StsRefused(Reason.STS_REFUSED, "AccessDenied")
        return ScopedCredentials(
            tenant_id=request.tenant_id,
            access_key_id=f"ASIAFAKE{n:012d}",
            secret_access_key=f"fake-secret-{request.tenant_id}-{n}",
            session_token=f"fake-token-{request.tenant_id}-{n}",
            expiration=self.clock() + self.duration,
        )


class _Flight:
    """One AssumeRole call in flight, which concurrent callers for the same tenant wait on."""

    __slots__ = ("credentials", "done", "failure")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.credentials: ScopedCredentials | None = None
        # How the leader's call failed, so that the callers waiting on it fail the same way.
        self.failure: CredentialsUnavailable | None = None


# What a request needs of the credentials it is signed with: time to reach AWS, with a retry.
MIN_SIGNING_SECONDS = 60
# While requests go on with cached credentials STS could not replace, how often it is asked again.
SIGNING_RETRY_SECONDS = 15


class CredentialVendor:
    """Vends and caches :class:`ScopedCredentials` per tenant and settings (role, strategy, ...),
    for the ``max_tenants`` most recently used.

    >>> from tenantscope._config import Settings
    >>> vendor = CredentialVendor(FakeSts())
    >>> settings = Settings.load(environ={}, role_arn="arn:aws:iam::123456789012:role/tenant")
    >>> a = vendor.credentials_for("acme", settings)
    >>> b = vendor.credentials_for("acme", settings)
    >>> a is b
    True
    """

    def __init__(
        self,
        sts: StsBackend,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
        backoff_base: float = 0.05,
        backoff_cap: float = 1.0,
        failure_ttl: float = 1.0,
        max_tenants: int = MAX_CACHED_CREDENTIALS,
    ) -> None:
        self.sts = sts
        self._clock = clock
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._failure_ttl = failure_ttl
        self._max_tenants = max_tenants
        self._cache: OrderedDict[tuple[str, Settings], ScopedCredentials] = OrderedDict()
        self._failed_until: dict[tuple[str, Settings], tuple[float, CredentialsUnavailable]] = {}
        self._flights: dict[tuple[str, Settings], _Flight] = {}
        # When requests going on with cached credentials STS could not replace next ask it again.
        self._signing_retry_at: dict[tuple[str, Settings], float] = {}
        self._lock = threading.Lock()

    def credentials_for(self, tenant_id: str, settings: Settings) -> ScopedCredentials:
        """Cached credentials for ``tenant_id``, fetched from STS when missing or near expiry."""
        # Everything that shapes the AssumeRole request (role, strategy, tables, region, tag key,
        # duration) is in the settings, so two handlers configured differently never share.
        key = (tenant_id, settings)
        margin = settings.refresh_margin_seconds
        cached = self._cache.get(key)
        if cached is not None and cached.expiration - margin > self._clock():
            touch(self._cache, key)
            return cached
        # Built by every caller that missed, not by the flight's leader alone: a configuration
        # error (no role, a policy too large) is then each caller's own, never a wait for STS.
        request = assume_role_request(tenant_id, settings)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached.expiration - margin > self._clock():
                return cached
            until, failure = self._failed_until.get(key, (0.0, None))
            if until > self._clock() and failure is not None:
                raise _again(failure, "recent STS failure; backing off")
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            # Bounded: the leader's STS calls have short timeouts, so this is a backstop.
            flight.done.wait(timeout=15)
            if flight.credentials is None:
                raise _again(flight.failure or StsUnreachable(Reason.STS_UNREACHABLE), "STS call failed")
            return flight.credentials
        try:
            credentials = self._assume(request)
            flight.credentials = credentials
            with self._lock:
                self._cache[key] = credentials
                self._cache.move_to_end(key)
                while len(self._cache) > self._max_tenants:
                    self._cache.popitem(last=False)
                self._failed_until.pop(key, None)
            return credentials
        except CredentialsUnavailable as error:
            flight.failure = error
            with self._lock:
                now = self._clock()
                # A stand-in of its kind and reason is kept, never the error: its traceback holds
                # the frames of the unit of work that met it (its event, a token, a body). Entries
                # past their backoff go, so that tenants that once failed do not pile up.
                for failed in [k for k, (until, _) in self._failed_until.items() if until <= now]:
                    del self._failed_until[failed]
                self._failed_until[key] = (now + self._failure_ttl, _again(error, None))
                if isinstance(error, StsRefused):
                    # The role or its trust withdrawn: the cached credentials go too, so that no
                    # outage later serves them to the requests of a unit already under way.
                    self._cache.pop(key, None)
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def signing_credentials(self, tenant_id: str, settings: Settings) -> ScopedCredentials:
        """What a request of ``tenant_id``'s is signed with now: :meth:`credentials_for`'s, or,
        while STS is unreachable or throttling and cannot replace cached credentials that are
        within the refresh margin, those, as long as they have :data:`MIN_SIGNING_SECONDS` left.
        A unit of work that crosses the margin during an outage goes on while its credentials
        last, rather than fail midway; a unit that starts then is still refused, since it may need
        longer. A refusal (StsRefused: the role or its trust withdrawn) is never covered.

        A refresh that fails so is not tried again for :data:`SIGNING_RETRY_SECONDS`: requests
        meanwhile use the cached credentials at once, rather than each wait for STS."""
        key = (tenant_id, settings)
        if self._signing_retry_at.get(key, 0.0) > self._clock():
            cached = self._signable(key)
            if cached is not None:
                return cached
        try:
            credentials = self.credentials_for(tenant_id, settings)
        except _RETRIED:
            with self._lock:
                now = self._clock()
                for done in [k for k, at in self._signing_retry_at.items() if at <= now]:
                    del self._signing_retry_at[done]
                cached = self._signable(key)
                if cached is None:
                    raise
                self._signing_retry_at[key] = now + SIGNING_RETRY_SECONDS
            return cached
        self._signing_retry_at.pop(key, None)
        return credentials

    def _signable(self, key: tuple[str, Settings]) -> ScopedCredentials | None:
        """The cached credentials of ``key`` while a request can still be signed with them."""
        cached = self._cache.get(key)
        if cached is None or cached.expiration - MIN_SIGNING_SECONDS <= self._clock():
            return None
        return cached

    def _assume(self, request: AssumeRoleRequest) -> ScopedCredentials:
        last: CredentialsUnavailable = StsUnreachable(Reason.STS_UNREACHABLE)
        for attempt in range(self._max_attempts):
            try:
                credentials = self.sts.assume_role(request)
            except _RETRIED as error:
                logger.warning("tenantscope: %s, attempt %d", error, attempt + 1)
                last = error
                if attempt + 1 < self._max_attempts:
                    self._sleep(_JITTER.uniform(0, min(self._backoff_cap, self._backoff_base * 2**attempt)))
                continue
            except ValueError:  # a backend built ScopedCredentials from an unusable answer
                raise StsRefused(Reason.STS_UNUSABLE_CREDENTIALS) from None
            if credentials.tenant_id != request.tenant_id or not credentials.expiration > self._clock():
                raise StsRefused(Reason.STS_UNUSABLE_CREDENTIALS)
            return credentials
        raise _again(last, f"{last.detail}; retries exhausted")

    def clear(self) -> None:
        """Forget every cached credential (tests, or after a role change)."""
        with self._lock:
            self._cache.clear()
            self._failed_until.clear()
            self._signing_retry_at.clear()


def _again(error: CredentialsUnavailable, detail: str | None) -> CredentialsUnavailable:
    """A new error of the same kind and reason as ``error``, with ``detail``."""
    return type(error)(error.reason, detail)


_default_vendor: ProcessValue[CredentialVendor] = ProcessValue()


def default_vendor() -> CredentialVendor:
    """The process-wide vendor on the real STS backend, made on first use."""
    from ._config import get_settings

    return _default_vendor.get(lambda: CredentialVendor(Boto3Sts(get_settings().region)))


def set_default_vendor(vendor: CredentialVendor | None) -> None:
    """Replace the process-wide vendor (e.g. with one on :class:`FakeSts`); None restores the real one."""
    _default_vendor.set(vendor, installed=True)
