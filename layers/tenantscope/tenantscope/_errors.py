"""The errors tenantscope raises.

Every error derives from :class:`TenantError`. Adapters map them to a bounded answer
(an HTTP status, a batch item failure, or a Step Functions error name) and never put
``str(error)`` into a response: messages are for logs and carry no token or secret.
"""

from __future__ import annotations

__all__ = [
    "CredentialsUnavailable",
    "CrossTenantAccess",
    "Forbidden",
    "InvalidTenantId",
    "KeysUnavailable",
    "NoTenantContext",
    "StsRefused",
    "StsThrottled",
    "StsUnreachable",
    "TenantAuthError",
    "TenantError",
    "Unauthorized",
]


class TenantError(Exception):
    """Base of every tenantscope error."""


class TenantAuthError(TenantError):
    """The caller's proof of tenant could not be accepted (token or envelope)."""


class Unauthorized(TenantAuthError):
    """No valid proof of identity: a missing, malformed, forged or expired token (HTTP 401)."""


class Forbidden(TenantAuthError):
    """The identity is valid but its tenant is refused or mismatched (HTTP 403)."""


class InvalidTenantId(Forbidden, ValueError):
    """A tenant id that does not match the tenant id grammar."""


class CrossTenantAccess(Forbidden):
    """A data call touched a key outside the current tenant, or a table-wide operation."""


class NoTenantContext(TenantError, LookupError):
    """Tenant-scoped code ran outside a tenant scope."""


class CredentialsUnavailable(TenantError):
    """Scoped credentials could not be obtained; the work fails closed (HTTP 503)."""


class StsUnreachable(CredentialsUnavailable):
    """STS could not be reached or failed on its side (DNS, connection, timeout, a 5xx): retried
    with jitter, then answered like any missing credentials."""


class StsThrottled(CredentialsUnavailable):
    """STS throttled AssumeRole: retried with jitter, then answered like any missing credentials."""


class StsRefused(CredentialsUnavailable):
    """STS refused AssumeRole (AccessDenied, a bad policy or tag, a disabled region) or answered
    with unusable credentials: a configuration problem, never retried."""


class KeysUnavailable(CredentialsUnavailable):
    """The keys needed to verify a caller (the issuer's JWKS, the signing key ring) could not be
    loaded: a passing outage on our side, not a bad caller. Answered like missing credentials
    (HTTP 503, a retried SQS record or task), never as a refusal of the caller."""


def log_reason(error: BaseException) -> str:
    """What may be logged about ``error``: our own errors carry a safe reason category;
    anything else is named by its type only, since its message may hold data."""
    return str(error) if isinstance(error, TenantError) else type(error).__name__


def without_message(error: BaseException) -> BaseException:
    """``error`` for a log or a trace: ours as they are; any other exception as a stand-in of the
    same type name and traceback, without its message, which may hold data (a key, an item)."""
    if isinstance(error, TenantError):
        return error
    stand_in: BaseException = type(
        type(error).__name__, (Exception,), {"__module__": type(error).__module__}
    )()
    return stand_in.with_traceback(error.__traceback__)
