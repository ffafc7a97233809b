"""The errors tenantscope raises, and the reasons they carry.

Every error derives from :class:`TenantError` and carries a :class:`Reason`: a stable,
machine-readable name of what went wrong, which tests, logs, traces and metrics use instead of
message text. Adapters map errors to a bounded answer (an HTTP status, a batch item failure, or
a Step Functions error name) and never put ``str(error)`` into a response: messages are for logs
and carry no token or secret.

- :class:`TenantAuthError`: the caller's proof of tenant is refused (401, 403, a refused record).
- :class:`TemporarilyUnavailable`: a passing outage on our side, retried (503, a retried record).
- :class:`ConfigurationError`: the function is configured wrongly; nothing works until it is fixed.
- :class:`NoTenantContext`: tenant-scoped code ran outside a scope.

An application marks its own errors whose messages are safe to log with :class:`LoggableError`;
any other exception is logged and traced by its type only.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ConfigurationError",
    "CredentialsUnavailable",
    "CrossTenantAccess",
    "Forbidden",
    "InvalidEnvelope",
    "InvalidTenantId",
    "KeysUnavailable",
    "LoggableError",
    "NoTenantContext",
    "Reason",
    "StsRefused",
    "StsThrottled",
    "StsUnreachable",
    "TemporarilyUnavailable",
    "TenantAuthError",
    "TenantError",
    "Unauthorized",
    "log_reason",
    "without_message",
]


class Reason(StrEnum):
    """Why a unit of work was refused or failed. The value is a stable identifier; ``description``
    is the log message (it names a category, never a token, key, credential or item).

    >>> Reason.UNKNOWN_KID, Reason.UNKNOWN_KID.description
    (<Reason.UNKNOWN_KID: 'unknown-kid'>, 'unknown kid')
    """

    description: str

    def __new__(cls, value: str, description: str) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    # the bearer token (401)
    MISSING_TOKEN = ("missing-token", "missing Authorization header")
    AMBIGUOUS_TOKEN = ("ambiguous-token", "ambiguous Authorization header")
    MALFORMED_AUTHORIZATION = ("malformed-authorization", "malformed Authorization header")
    MALFORMED_TOKEN = ("malformed-token", "malformed token")
    TOKEN_TOO_LONG = ("token-too-long", "token too long")
    ALGORITHM_NOT_ALLOWED = ("algorithm-not-allowed", "algorithm not allowed")
    REFUSED_HEADER = ("refused-header", "refused header parameter")
    MALFORMED_KID = ("malformed-kid", "missing or malformed kid")
    UNKNOWN_KID = ("unknown-kid", "unknown kid")
    ALGORITHM_MISMATCH = ("algorithm-mismatch", "algorithm does not match the key")
    BAD_TOKEN_SIGNATURE = ("bad-token-signature", "invalid token (bad signature)")
    TOKEN_EXPIRED = ("token-expired", "invalid token (expired)")
    TOKEN_NOT_YET_VALID = ("token-not-yet-valid", "invalid token (not yet valid)")
    INVALID_TOKEN = ("invalid-token", "invalid token")
    WRONG_ISSUER = ("wrong-issuer", "wrong issuer")
    WRONG_AUDIENCE = ("wrong-audience", "wrong audience")
    WRONG_TOKEN_USE = ("wrong-token-use", "wrong token_use")
    # the tenant (403)
    INVALID_TENANT_ID = ("invalid-tenant-id", "tenant id does not match the grammar")
    INVALID_TENANT_CLAIM = ("invalid-tenant-claim", "token carries no valid tenant claim")
    LAMBDA_TENANT_MISMATCH = ("lambda-tenant-mismatch", "proven tenant differs from the Lambda tenant id")
    PRODUCER_TENANT_MISMATCH = (
        "producer-tenant-mismatch",
        "cannot produce for another tenant inside a tenant scope",
    )
    # signed envelopes (a refused record or task)
    MALFORMED_RECORD = ("malformed-record", "malformed record")
    MALFORMED_TASK_EVENT = ("malformed-task-event", "task event is not an object")
    MISSING_ENVELOPE = ("missing-envelope", "missing envelope")
    OVERSIZED_ENVELOPE = ("oversized-envelope", "oversized envelope")
    MALFORMED_ENVELOPE = ("malformed-envelope", "malformed envelope")
    UNSUPPORTED_ENVELOPE_VERSION = ("unsupported-envelope-version", "unsupported envelope version")
    ENVELOPE_LIFETIME = ("envelope-lifetime", "envelope lifetime out of bounds")
    ENVELOPE_FROM_THE_FUTURE = ("envelope-from-the-future", "envelope issued in the future")
    ENVELOPE_EXPIRED = ("envelope-expired", "envelope expired")
    MALFORMED_DESTINATION = ("malformed-destination", "malformed destination")
    MALFORMED_BODY = ("malformed-body", "malformed body")
    UNKNOWN_SIGNING_KEY = ("unknown-signing-key", "unknown signing key id")
    BAD_ENVELOPE_SIGNATURE = (
        "bad-envelope-signature",
        "bad signature (tampered, or sealed for another destination)",
    )
    REPLAYED_ENVELOPE = ("replayed-envelope", "replayed envelope")
    TASK_REFUSED = ("task-refused", "tenant refused")
    # the leading-key guard (403)
    UNCONFIGURED_TABLE = ("unconfigured-table", "table is not in TENANTSCOPE_TABLES")
    UNKNOWN_INDEX = ("unknown-index", "unknown index")
    FOREIGN_SCOPE = ("foreign-scope", "tenant session used outside its own tenant's scope")
    OPERATION_NOT_ALLOWED = ("operation-not-allowed", "operation not allowed on a tenant session")
    MISSING_TABLE = ("missing-table", "missing table name")
    FOREIGN_TABLE_ARN = ("foreign-table-arn", "table ARN outside this account and region")
    FOREIGN_KEY = ("foreign-key", "key outside the current tenant's partition")
    MISSING_KEY = ("missing-key", "missing key")
    NO_PARTITION_KEY = ("no-partition-key", "no partition key attribute in the request")
    UNCHECKABLE_INDEX_UPDATE = (
        "uncheckable-index-update",
        "index key updated by an expression the guard cannot check",
    )
    KEY_CONDITION = ("key-condition", "a key condition must be one equality on the partition key")
    UNREADABLE_EXPRESSION = ("unreadable-expression", "expression the guard cannot read exactly")
    MALFORMED_REQUEST = ("malformed-request", "malformed request")
    UNGUARDED_SERVICE = ("unguarded-service", "a tenant session makes no client for an unguarded service")
    # the object guard (403)
    UNCONFIGURED_BUCKET = ("unconfigured-bucket", "bucket is not in TENANTSCOPE_BUCKETS")
    FOREIGN_OBJECT = ("foreign-object", "object key outside the current tenant's prefix")
    UNSAFE_OBJECT_KEY = (
        "unsafe-object-key",
        "object key outside S3's safe characters, or with an empty, '.' or '..' segment",
    )
    REFUSED_PARAMETER = (
        "refused-parameter",
        "ACLs, grants and object versions are refused on a tenant client",
    )
    PRESIGN_BOUNDS = ("presign-bounds", "presigned URL expiry, size or type out of bounds")
    # scopes
    NO_SCOPE = ("no-scope", "no tenant scope is active")
    SCOPE_ENDED = ("scope-ended", "the tenant scope this work was started in has ended")
    NO_PRODUCER_TENANT = ("no-producer-tenant", "tenant_id is required outside a tenant scope")
    UNSCOPED_THREAD = (
        "unscoped-thread",
        "no tenant scope in this thread while the process acts for a tenant: start it with in_tenant_scope",
    )
    # passing outages (503, a retried record or task)
    STS_UNREACHABLE = ("sts-unreachable", "STS unreachable")
    STS_THROTTLED = ("sts-throttled", "STS throttled")
    STS_REFUSED = ("sts-refused", "STS refused AssumeRole")
    STS_UNUSABLE_CREDENTIALS = ("sts-unusable-credentials", "STS answered with unusable credentials")
    ISSUER_KEYS_UNAVAILABLE = ("issuer-keys-unavailable", "issuer keys unavailable")
    JWKS_REDIRECT = (
        "jwks-redirect",
        "JWKS URL answered with a redirect, which is refused: "
        "set TENANTSCOPE_JWKS_URL to the final https:// URL",
    )
    SIGNING_KEYS_UNAVAILABLE = ("signing-keys-unavailable", "signing key ring unavailable")
    KMS_FAILED = ("kms-failed", "KMS call failed")
    KMS_UNREACHABLE = ("kms-unreachable", "KMS unreachable")
    REPLAY_TABLE_FAILED = ("replay-table-failed", "replay table call failed")
    REPLAY_TABLE_UNREACHABLE = ("replay-table-unreachable", "replay table unreachable")
    # configuration (nothing works until it is fixed)
    INVALID_SETTING = ("invalid-setting", "invalid setting")
    MISSING_SETTING = ("missing-setting", "a required setting is not configured")
    LOCAL_ONLY_SETTING = ("local-only-setting", "a local development setting in a deployed function")
    SESSION_POLICY_TOO_LARGE = ("session-policy-too-large", "session policy over the STS limit")


class TenantError(Exception):
    """Base of every tenantscope error: a :class:`Reason`, and an optional safe detail.

    >>> str(StsThrottled(Reason.STS_THROTTLED, "Throttling"))
    'STS throttled (Throttling)'
    """

    def __init__(self, reason: Reason, detail: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.description} ({detail})" if detail else reason.description)


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


class InvalidEnvelope(TenantAuthError):
    """A missing, malformed, forged, expired, misaddressed or replayed envelope."""


class NoTenantContext(TenantError, LookupError):
    """Tenant-scoped code ran outside a tenant scope."""


class ConfigurationError(TenantError):
    """A setting is missing or wrong: a permanent error (HTTP 500), never answered as an outage."""


class TemporarilyUnavailable(TenantError):
    """A passing outage on our side, not a bad caller: answered with a retry (HTTP 503 with
    Retry-After, a retried SQS record, a Step Functions error the state machine retries)."""


class CredentialsUnavailable(TemporarilyUnavailable):
    """Scoped credentials could not be obtained; the work fails closed."""


class StsUnreachable(CredentialsUnavailable):
    """STS could not be reached or failed on its side (DNS, connection, timeout, a 5xx): retried
    with jitter, then answered like any missing credentials."""


class StsThrottled(CredentialsUnavailable):
    """STS throttled AssumeRole: retried with jitter, then answered like any missing credentials."""


class StsRefused(CredentialsUnavailable):
    """STS refused AssumeRole (AccessDenied, a bad policy or tag, a disabled region) or answered
    with unusable credentials: a configuration problem, never retried."""


class KeysUnavailable(TemporarilyUnavailable):
    """The keys needed to verify a caller (the issuer's JWKS, the signing key ring) could not be
    loaded: a passing outage on our side, not a bad caller."""


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
    """``error`` for a log or a trace, without what may hold data (a key, an item).

    Ours and :class:`LoggableError` keep their message, and are given as they are unless other
    exceptions are chained to them or notes added: a log's traceback would print those, and the
    cause's message is no safer than any other (``raise OrderInvalid("...") from ValueError(body)``).
    Then, and for any other exception, it is a stand-in of the same type name and traceback, with
    the message only when it is safe, and nothing chained.
    """
    safe = _message_is_safe(error)
    if safe and not _carries_more(error):
        return error
    stand_in: BaseException = type(
        type(error).__name__, (Exception,), {"__module__": type(error).__module__}
    )(*((str(error),) if safe else ()))
    return stand_in.with_traceback(error.__traceback__)


def _carries_more(error: BaseException) -> bool:
    """Whether printing ``error``'s traceback prints more than its own message: a chained
    exception (its cause, or the one it was raised while handling) or notes."""
    chained = error.__cause__ is not None or (
        error.__context__ is not None and not error.__suppress_context__
    )
    return chained or bool(getattr(error, "__notes__", None))


# Raised to the package's callers, whichever of its modules is loaded first: tracebacks and logs
# name them as the package exports them (tenantscope.InvalidTenantId), not by this module.
for _public in (value for name, value in list(globals().items()) if name in __all__):
    if isinstance(_public, type):
        _public.__module__ = "tenantscope"
del _public
