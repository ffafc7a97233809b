"""tenantscope: secure pooled multi-tenancy for Python on AWS Lambda.

Every unit of work (an API invocation, an SQS record, a Step Functions task) runs as one
verified tenant, with AWS credentials that reach only that tenant's DynamoDB keys and S3 objects.

>>> from tenantscope import tenant_scope, current_tenant, tenant_key
>>> with tenant_scope("acme"):
...     current_tenant().tenant_id, tenant_key("ITEM", "1")
('acme', 'TENANT#acme#ITEM#1')
"""

from ._config import Settings, TableSpec
from ._context import TenantContext, current_tenant, in_tenant_scope, tenant_scope
from ._credentials import CredentialVendor, FakeSts, ScopedCredentials, StsBackend
from ._data import tenant_key, tenant_session, tenant_table
from ._errors import (
    ConfigurationError,
    CredentialsUnavailable,
    CrossTenantAccess,
    Forbidden,
    InvalidEnvelope,
    InvalidTenantId,
    KeysUnavailable,
    LoggableError,
    NoTenantContext,
    Reason,
    StsRefused,
    StsThrottled,
    StsUnreachable,
    TemporarilyUnavailable,
    TenantAuthError,
    TenantError,
    Unauthorized,
)
from ._files import TenantBucket, tenant_bucket, tenant_s3
from ._jwt import JwksCache, JwksSource, StaticJwksSource
from ._keyring import KeyRing, KmsKeyRing, SecretsManagerKeyRing, StaticKeyRing
from ._logging import TenantJsonFormatter, TenantLogFilter, configure_logging
from ._otel import OTelTracer
from ._producer import seal_input, send_message, sign_message, start_execution
from ._replay import DynamoDbReplayGuard, InMemoryReplayGuard, ReplayGuard
from ._tenant_id import validate_tenant_id
from ._tracing import NoopTracer, Span, Tracer, XRayTracer, set_tracer
from .api import api_handler
from .sfn import sfn_task
from .sqs import SqsRecord, SqsRecordHandler, sqs_handler, sqs_record_handler

__all__ = [
    "ConfigurationError",
    "CredentialVendor",
    "CredentialsUnavailable",
    "CrossTenantAccess",
    "DynamoDbReplayGuard",
    "FakeSts",
    "Forbidden",
    "InMemoryReplayGuard",
    "InvalidEnvelope",
    "InvalidTenantId",
    "JwksCache",
    "JwksSource",
    "KeyRing",
    "KeysUnavailable",
    "KmsKeyRing",
    "LoggableError",
    "NoTenantContext",
    "NoopTracer",
    "OTelTracer",
    "Reason",
    "ReplayGuard",
    "ScopedCredentials",
    "SecretsManagerKeyRing",
    "Settings",
    "Span",
    "SqsRecord",
    "SqsRecordHandler",
    "StaticJwksSource",
    "StaticKeyRing",
    "StsBackend",
    "StsRefused",
    "StsThrottled",
    "StsUnreachable",
    "TableSpec",
    "TemporarilyUnavailable",
    "TenantAuthError",
    "TenantBucket",
    "TenantContext",
    "TenantError",
    "TenantJsonFormatter",
    "TenantLogFilter",
    "Tracer",
    "Unauthorized",
    "XRayTracer",
    "api_handler",
    "configure_logging",
    "current_tenant",
    "in_tenant_scope",
    "seal_input",
    "send_message",
    "set_tracer",
    "sfn_task",
    "sign_message",
    "sqs_handler",
    "sqs_record_handler",
    "start_execution",
    "tenant_bucket",
    "tenant_key",
    "tenant_s3",
    "tenant_scope",
    "tenant_session",
    "tenant_table",
    "validate_tenant_id",
]

# Public names report the package as their module (as httpx does): tracebacks, reprs and docs
# show tenantscope.InvalidTenantId, not the private module it happens to live in.
for _name in __all__:
    _value = globals()[_name]
    if getattr(_value, "__module__", "").startswith(f"{__name__}."):
        _value.__module__ = __name__
del _name, _value
