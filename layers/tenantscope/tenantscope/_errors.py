"""The errors tenantscope raises.

Every error derives from :class:`TenantError`. Adapters map them to a bounded answer
(an HTTP status, a batch item failure, or a Step Functions error name) and never put
``str(error)`` into a response: messages are for logs and carry no token or secret.

An application marks its own errors whose messages are safe to log with :class:`LoggableError`;
any other exception is logged and traced by its type only.
"""

from __future__ import annotations

__all__ = [
    "CredentialsUnavailable",
    "CrossTenantAccess",
    "Forbidden",
    "InvalidTenantId",
    "KeysUnavailable",
    "LoggableError",
    "NoTenantContext",
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


class KeysUnavailable(CredentialsUnavailable):
    """The keys needed to verify a caller (the issuer's JWKS, the signing key ring) could not be
    loaded: a passing outage on our side, not a bad caller. Answered like missing credentials
    (HTTP 503, a retried SQS record or task), never as a refusal of the caller."""


class LoggableError(Exception):
    """Base of an application's errors whose messages are safe to log and trace.

    Subclass it for errors a reader of the logs can act on, and keep their messages free of
    secrets and tenant data other than ids (``order 42 not found for this tenant``)::

        class OrderNotFound(LoggableError, LookupError):
            pass

    tenantscope then logs and traces the message of such an error, as it does its own.
    """


def _message_is_safe(error: BaseException) -> bool:
    return isinstance(error, TenantError | LoggableError)


def log_reason(error: BaseException) -> str:
    """What may be logged about ``error``: our own errors and :class:`LoggableError` carry a safe
    message; anything else is named by its type only, since its message may hold data."""
    return str(error) if _message_is_safe(error) else type(error).__name__


def without_message(error: BaseException) -> BaseException:
    """``error`` for a log or a trace: ours and :class:`LoggableError` as they are; any other
    exception as a stand-in of the same type name and traceback, without its message, which may
    hold data (a key, an item)."""
    if _message_is_safe(error):
        return error
    stand_in: BaseException = type(
        type(error).__name__, (Exception,), {"__module__": type(error).__module__}
    )()
    return stand_in.with_traceback(error.__traceback__)
