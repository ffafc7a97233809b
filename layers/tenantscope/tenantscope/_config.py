"""Configuration: every environment variable name, and how a setting is resolved.

A setting is resolved as: explicit argument, then environment variable, then default.
The environment is read when a setting is first needed, never at import, so that tests
and ``sam local invoke`` can set it first; the result is cached per process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ._cache import ProcessValue
from ._errors import ConfigurationError, Reason

__all__ = [
    "ENV",
    "Settings",
    "TableSpec",
    "get_settings",
    "kept_tenants_bound",
    "refuse_local_only_in_deployment",
]


class ENV:
    """Every environment variable tenantscope reads. Documented in docs/configuration.md."""

    JWT_ISSUER = "TENANTSCOPE_JWT_ISSUER"
    JWT_AUDIENCE = "TENANTSCOPE_JWT_AUDIENCE"
    JWKS_URL = "TENANTSCOPE_JWKS_URL"
    TENANT_CLAIM = "TENANTSCOPE_TENANT_CLAIM"
    JWT_ALGORITHMS = "TENANTSCOPE_JWT_ALGORITHMS"
    JWT_TOKEN_USE = "TENANTSCOPE_JWT_TOKEN_USE"
    JWT_LEEWAY = "TENANTSCOPE_JWT_LEEWAY_SECONDS"
    MAX_TOKEN_BYTES = "TENANTSCOPE_MAX_TOKEN_BYTES"
    JWKS_TTL = "TENANTSCOPE_JWKS_TTL_SECONDS"
    JWKS_MIN_REFETCH = "TENANTSCOPE_JWKS_MIN_REFETCH_SECONDS"
    JWKS_TIMEOUT = "TENANTSCOPE_JWKS_TIMEOUT_SECONDS"
    ROLE_ARN = "TENANTSCOPE_ROLE_ARN"
    ISOLATION = "TENANTSCOPE_ISOLATION"
    TABLES = "TENANTSCOPE_TABLES"
    BUCKETS = "TENANTSCOPE_BUCKETS"
    TENANT_TAG_KEY = "TENANTSCOPE_TENANT_TAG_KEY"
    UNGUARDED_SERVICES = "TENANTSCOPE_UNGUARDED_SERVICES"
    SESSION_DURATION = "TENANTSCOPE_SESSION_DURATION_SECONDS"
    REFRESH_MARGIN = "TENANTSCOPE_REFRESH_MARGIN_SECONDS"
    SIGNING_KEYS = "TENANTSCOPE_SIGNING_KEYS"
    SIGNING_KEYS_MAX_AGE = "TENANTSCOPE_SIGNING_KEYS_MAX_AGE_SECONDS"
    SQS_ENVELOPE_TTL = "TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS"
    SFN_ENVELOPE_TTL = "TENANTSCOPE_SFN_ENVELOPE_TTL_SECONDS"
    CLOCK_SKEW = "TENANTSCOPE_CLOCK_SKEW_SECONDS"
    REPLAY_TABLE = "TENANTSCOPE_REPLAY_TABLE"
    METRICS = "TENANTSCOPE_METRICS"
    TRACING = "TENANTSCOPE_TRACING"  # read by _tracing when the tracer is chosen
    MAX_KEPT_TENANTS = "TENANTSCOPE_MAX_KEPT_TENANTS"  # read when the kept tenants are first bounded
    REGION = "AWS_REGION"
    # Set by Lambda for each invocation: its X-Ray trace header (Root, Parent, Sampled).
    LAMBDA_TRACE_HEADER = "_X_AMZN_TRACE_ID"
    # Set by Lambda (and sam local): the function's name, and its memory in MB.
    LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
    LAMBDA_MEMORY = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
    # Set by Lambda at init: "snap-start" where the init is taken as a SnapStart snapshot.
    LAMBDA_INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"
    # Set by Lambda where X-Ray is available; read by _tracing to tell whether it is.
    LAMBDA_TASK_ROOT = "LAMBDA_TASK_ROOT"
    XRAY_DAEMON_ADDRESS = "AWS_XRAY_DAEMON_ADDRESS"
    # The X-Ray SDK's own switch, honoured as the SDK honours it.
    XRAY_SDK_ENABLED = "AWS_XRAY_SDK_ENABLED"
    # Set by sam local invoke / start-api, where local-only settings are allowed.
    SAM_LOCAL = "AWS_SAM_LOCAL"
    # botocore's endpoints (a local AWS), read to tell whether S3 is AWS's own.
    ENDPOINT_URL = "AWS_ENDPOINT_URL"
    S3_ENDPOINT_URL = "AWS_ENDPOINT_URL_S3"
    IGNORE_CONFIGURED_ENDPOINT_URLS = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"


ISOLATION_SESSION_TAGS = "session-tags"
ISOLATION_SESSION_POLICY = "session-policy"
ISOLATION_STRATEGIES = (ISOLATION_SESSION_TAGS, ISOLATION_SESSION_POLICY)
MIN_SESSION_SECONDS = 900  # the DurationSeconds minimum of AssumeRole
MAX_CHAINED_SESSION_SECONDS = 3600  # role chaining (AssumeRole from a Lambda role) caps sessions here
# The replay guard keeps an envelope's record an hour past its expiry: an allowance for clocks
# beyond that would accept an envelope whose record is already gone, that is, a replay.
MAX_CLOCK_SKEW_SECONDS = 900
A_DAY_SECONDS = 86400
# API Gateway refuses a request whose headers pass 10 KB; a limit far above that bounds nothing.
MAX_TOKEN_BYTES_LIMIT = 65536


@dataclass(frozen=True)
class TableSpec:
    """A pooled table and, when configured, the partition key attribute of it or its indexes.

    ``TENANTSCOPE_TABLES`` is a comma-separated list of ``name``, ``name=pk`` or
    ``name/index=pk`` entries, e.g. ``orders=pk,orders/gsi1=gsi1pk``.
    """

    name: str
    partition_key: str | None = None
    # (index, partition key) pairs; a mapping is accepted and stored as sorted pairs, so that a
    # spec, and the Settings holding it, are hashable.
    index_partition_keys: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        pairs = self.index_partition_keys
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        object.__setattr__(self, "index_partition_keys", tuple(sorted((str(i), str(k)) for i, k in items)))

    def index_key(self, index: str) -> str | None:
        """The configured partition key attribute of ``index``, if any."""
        return dict(self.index_partition_keys).get(index)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _parse_tables(value: str) -> tuple[TableSpec, ...]:
    tables: dict[str, TableSpec] = {}
    for entry in _csv(value):
        target, _, key = entry.partition("=")
        name, _, index = (part.strip() for part in target.partition("/"))
        spec = tables.get(name, TableSpec(name))
        if index:
            if not key:
                raise ConfigurationError(
                    Reason.INVALID_SETTING, f"{ENV.TABLES}: index entry {entry!r} needs '=<partition key>'"
                )
            spec = replace(spec, index_partition_keys=(*spec.index_partition_keys, (index, key.strip())))
        elif key:
            spec = replace(spec, partition_key=key.strip())
        tables[name] = spec
    return tuple(tables.values())


# The names S3 and DynamoDB accept. A name goes into the session policy's resource ARNs, where a
# '*' or '?' from a typo would be a wildcard reaching other buckets or tables.
_BUCKET_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_TABLE_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


# The settings that are collections, and the kind of their items.
_COLLECTIONS: dict[str, type] = {
    "jwt_audience": str,
    "jwt_algorithms": str,
    "tables": TableSpec,
    "buckets": str,
    "unguarded_services": str,
}


def _check_collections(settings: Settings) -> None:
    for name, kind in _COLLECTIONS.items():
        value = getattr(settings, name)
        if not (isinstance(value, tuple) and all(isinstance(item, kind) for item in value)):
            raise ConfigurationError(Reason.INVALID_SETTING, f"{name} must be a tuple of {kind.__name__}")


def _check_names(tables: tuple[TableSpec, ...], buckets: tuple[str, ...]) -> None:
    for spec in tables:
        for name in (spec.name, *(index for index, _ in spec.index_partition_keys)):
            if not (isinstance(name, str) and 3 <= len(name) <= 255 and set(name) <= _TABLE_CHARACTERS):
                raise ConfigurationError(
                    Reason.INVALID_SETTING, f"{ENV.TABLES}: {name!r} is not a table or index name"
                )
    for name in buckets:
        if not (
            3 <= len(name) <= 63
            and set(name) <= _BUCKET_CHARACTERS
            and name[0] not in ".-"
            and name[-1] not in ".-"
        ):
            raise ConfigurationError(Reason.INVALID_SETTING, f"{ENV.BUCKETS}: {name!r} is not a bucket name")


def _check_windows(settings: Settings) -> None:
    # Each number's range, checked so that a value cannot quietly switch a protection off:
    # float() reads "nan" and "inf", and a key ring or JWKS whose age limit is NaN or infinite is
    # never read again (a withdrawn key verifies for the container's life), a refetch interval of
    # 0 or NaN lets every unknown kid fetch the JWKS, and a token's leeway beyond the largest
    # envelope allowance would accept a token long expired.
    for name, value, lowest, highest in (
        (ENV.CLOCK_SKEW, settings.clock_skew_seconds, 0, MAX_CLOCK_SKEW_SECONDS),
        (ENV.JWT_LEEWAY, settings.jwt_leeway_seconds, 0, MAX_CLOCK_SKEW_SECONDS),
        (ENV.MAX_TOKEN_BYTES, settings.max_token_bytes, 1, MAX_TOKEN_BYTES_LIMIT),
        (ENV.JWKS_TTL, settings.jwks_ttl_seconds, 1, A_DAY_SECONDS),
        (ENV.JWKS_MIN_REFETCH, settings.jwks_min_refetch_seconds, 1, 3600),
        (ENV.JWKS_TIMEOUT, settings.jwks_timeout_seconds, 0.1, 60),
        (ENV.SIGNING_KEYS_MAX_AGE, settings.signing_keys_max_age_seconds, 1, A_DAY_SECONDS),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not lowest <= value <= highest:
            raise ConfigurationError(Reason.INVALID_SETTING, f"{name} must be between {lowest} and {highest}")
    for name, lifetime in (
        (ENV.SQS_ENVELOPE_TTL, settings.sqs_envelope_ttl_seconds),
        (ENV.SFN_ENVELOPE_TTL, settings.sfn_envelope_ttl_seconds),
    ):
        if lifetime < 1:
            raise ConfigurationError(Reason.INVALID_SETTING, f"{name} must be at least 1")
    # A negative margin would serve cached credentials after they expire.
    if settings.refresh_margin_seconds < 0:
        raise ConfigurationError(Reason.INVALID_SETTING, f"{ENV.REFRESH_MARGIN} must be at least 0")
    if settings.refresh_margin_seconds >= settings.session_seconds:
        raise ConfigurationError(
            Reason.INVALID_SETTING, f"{ENV.REFRESH_MARGIN} must be shorter than the session duration"
        )


def _isolation(value: str) -> str:
    if value not in ISOLATION_STRATEGIES:
        raise ConfigurationError(
            Reason.INVALID_SETTING, f"{ENV.ISOLATION} must be one of {', '.join(ISOLATION_STRATEGIES)}"
        )
    return value


def _parsed(name: str, parse: Callable[[str], Any], text: str) -> Any:
    try:
        return parse(text)
    except ConfigurationError:
        raise
    except ValueError:  # int() or float() of a bad number: name the setting, not its value
        raise ConfigurationError(Reason.INVALID_SETTING, f"{name} is not a valid value") from None


def _optional(value: str) -> str | None:
    return value or None


def _metrics(value: str) -> str:
    if value not in ("off", "on", "per-tenant"):
        raise ConfigurationError(Reason.INVALID_SETTING, f"{ENV.METRICS} must be one of off, on, per-tenant")
    return value


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`get_settings` or :meth:`Settings.load`.

    >>> s = Settings.load(environ={}, jwt_issuer="https://issuer.example")
    >>> s.jwt_issuer, s.isolation, s.jwt_algorithms
    ('https://issuer.example', 'session-tags', ('RS256',))
    """

    jwt_issuer: str | None = field(default=None, metadata={"env": ENV.JWT_ISSUER, "parse": _optional})
    jwt_audience: tuple[str, ...] = field(default=(), metadata={"env": ENV.JWT_AUDIENCE, "parse": _csv})
    jwks_url: str | None = field(default=None, metadata={"env": ENV.JWKS_URL, "parse": _optional})
    tenant_claim: str = field(default="tenant_id", metadata={"env": ENV.TENANT_CLAIM})
    jwt_algorithms: tuple[str, ...] = field(
        default=("RS256",), metadata={"env": ENV.JWT_ALGORITHMS, "parse": _csv}
    )
    jwt_token_use: str | None = field(default=None, metadata={"env": ENV.JWT_TOKEN_USE, "parse": _optional})
    jwt_leeway_seconds: int = field(default=30, metadata={"env": ENV.JWT_LEEWAY, "parse": int})
    max_token_bytes: int = field(default=8192, metadata={"env": ENV.MAX_TOKEN_BYTES, "parse": int})
    jwks_ttl_seconds: float = field(default=600.0, metadata={"env": ENV.JWKS_TTL, "parse": float})
    jwks_min_refetch_seconds: float = field(
        default=30.0, metadata={"env": ENV.JWKS_MIN_REFETCH, "parse": float}
    )
    jwks_timeout_seconds: float = field(default=2.0, metadata={"env": ENV.JWKS_TIMEOUT, "parse": float})
    role_arn: str | None = field(default=None, metadata={"env": ENV.ROLE_ARN, "parse": _optional})
    isolation: str = field(
        default=ISOLATION_SESSION_TAGS, metadata={"env": ENV.ISOLATION, "parse": _isolation}
    )
    tables: tuple[TableSpec, ...] = field(default=(), metadata={"env": ENV.TABLES, "parse": _parse_tables})
    buckets: tuple[str, ...] = field(default=(), metadata={"env": ENV.BUCKETS, "parse": _csv})
    tenant_tag_key: str = field(default="TenantId", metadata={"env": ENV.TENANT_TAG_KEY})
    unguarded_services: tuple[str, ...] = field(
        default=(), metadata={"env": ENV.UNGUARDED_SERVICES, "parse": _csv}
    )
    session_duration_seconds: int = field(default=3600, metadata={"env": ENV.SESSION_DURATION, "parse": int})
    refresh_margin_seconds: int = field(default=300, metadata={"env": ENV.REFRESH_MARGIN, "parse": int})
    # Out of the repr: an inline: ring is key material.
    signing_keys: str | None = field(
        default=None, repr=False, metadata={"env": ENV.SIGNING_KEYS, "parse": _optional}
    )
    signing_keys_max_age_seconds: float = field(
        default=300.0, metadata={"env": ENV.SIGNING_KEYS_MAX_AGE, "parse": float}
    )
    sqs_envelope_ttl_seconds: int = field(default=86400, metadata={"env": ENV.SQS_ENVELOPE_TTL, "parse": int})
    sfn_envelope_ttl_seconds: int = field(
        default=7 * 86400, metadata={"env": ENV.SFN_ENVELOPE_TTL, "parse": int}
    )
    clock_skew_seconds: int = field(default=60, metadata={"env": ENV.CLOCK_SKEW, "parse": int})
    replay_table: str | None = field(default=None, metadata={"env": ENV.REPLAY_TABLE, "parse": _optional})
    metrics: str = field(default="off", metadata={"env": ENV.METRICS, "parse": _metrics})
    region: str | None = field(default=None, metadata={"env": ENV.REGION, "parse": _optional})

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
        """Resolve every setting: explicit argument (when not None), then environment, then default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            parse: Callable[[str], Any] = f.metadata.get("parse", str)
            value = explicit.pop(f.name, None)
            if value is None:
                value = env.get(f.metadata["env"])
            if isinstance(value, str):
                # Arguments get the environment's parsing and checks: jwt_audience="app" is a
                # one-element tuple, not a string that `in` would search for substrings.
                values[f.name] = _parsed(f.metadata["env"], parse, value.strip())
            elif isinstance(value, list):
                values[f.name] = tuple(value)
            elif value is not None:
                values[f.name] = value
        if explicit:
            raise ConfigurationError(
                Reason.INVALID_SETTING, f"unknown settings: {', '.join(sorted(explicit))}"
            )
        settings = cls(**values)
        _isolation(settings.isolation)
        return settings

    def __post_init__(self) -> None:
        # Here rather than in load(), so that settings made directly or by dataclasses.replace()
        # cannot carry a string where a tuple belongs (`in` would match its substrings: an audience
        # "api.example.com/orders" would accept "api.example.com"), a wildcard into a policy, or a
        # window the replay guard does not cover, either.
        _check_collections(self)
        _check_names(self.tables, self.buckets)
        _check_windows(self)

    def __hash__(self) -> int:
        # Settings key the credential and session caches on every invocation: hash once.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", cached)
        return cached

    @property
    def session_seconds(self) -> int:
        """The session length actually requested: within STS's minimum and the role-chaining cap."""
        return max(MIN_SESSION_SECONDS, min(self.session_duration_seconds, MAX_CHAINED_SESSION_SECONDS))

    def table(self, name: str) -> TableSpec | None:
        """The configured spec of table ``name``, if any."""
        for spec in self.tables:
            if spec.name == name:
                return spec
        return None


def refuse_local_only_in_deployment(setting: str, form: str) -> None:
    """Refuse a local-development form of a setting (``inline:``, ``file://``) in a deployed function.

    Inline key material sits in the function's configuration, readable by anyone who can read
    it; a JWKS file never came over TLS from the issuer. Both are for tests, local runs and
    ``sam local invoke`` (which sets AWS_SAM_LOCAL).
    """
    if os.environ.get(ENV.LAMBDA_FUNCTION_NAME) and os.environ.get(ENV.SAM_LOCAL) != "true":
        raise ConfigurationError(
            Reason.LOCAL_ONLY_SETTING, f"{setting}={form}... is not for a deployed function"
        )


# A kept tenant (_data.py) holds a botocore session and the clients its code used, up to about
# 0.8 MiB: one is kept per 4 MB of the function's memory (a fifth of it at most), and 256 at most,
# so that a small function serving many tenants drops the least recently used rather than run out.
MAX_KEPT_TENANTS = 256
MB_PER_KEPT_TENANT = 4
# Credentials kept per vendor (_credentials.py), a few hundred bytes each: at least as many tenants
# as keep sessions, whose every request asks for them, so a kept session never costs an STS call.
MAX_CACHED_CREDENTIALS = 1024


def kept_tenants_bound(environ: Mapping[str, str] | None = None) -> int:
    """How many tenants' sessions and clients the process keeps: ``TENANTSCOPE_MAX_KEPT_TENANTS``,
    else one per 4 MB of the function's memory (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``) up to 256,
    else (outside Lambda) 256.

    >>> kept_tenants_bound({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}), kept_tenants_bound({})
    (32, 256)
    """
    environ = os.environ if environ is None else environ
    explicit = environ.get(ENV.MAX_KEPT_TENANTS, "").strip()
    if explicit:
        bound: int = _parsed(ENV.MAX_KEPT_TENANTS, int, explicit)
        if not 1 <= bound <= MAX_CACHED_CREDENTIALS:
            raise ConfigurationError(
                Reason.INVALID_SETTING,
                f"{ENV.MAX_KEPT_TENANTS} must be between 1 and {MAX_CACHED_CREDENTIALS}, "
                "the tenants whose credentials are kept",
            )
        return bound
    memory = environ.get(ENV.LAMBDA_MEMORY, "")
    if memory.isascii() and memory.isdigit():
        return max(1, min(MAX_KEPT_TENANTS, int(memory) // MB_PER_KEPT_TENANT))
    return MAX_KEPT_TENANTS


_settings: ProcessValue[Settings] = ProcessValue()


def get_settings() -> Settings:
    """The process-wide settings from the environment, read on first use and then cached."""
    return _settings.get(Settings.load)
