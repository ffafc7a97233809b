"""tenantscope: secure pooled multi-tenancy for Python on AWS Lambda.

Every unit of work (an API invocation, an SQS record, a Step Functions task) runs as one
verified tenant, with AWS credentials that reach only that tenant's DynamoDB keys.

>>> from tenantscope import tenant_scope, current_tenant, tenant_key
>>> with tenant_scope("acme"):
...     current_tenant().tenant_id, tenant_key("ITEM", "1")
('acme', 'TENANT#acme#ITEM#1')
"""

from ._context import TenantContext, current_tenant, in_tenant_scope, tenant_scope
from ._credentials import CredentialVendor, FakeSts, ScopedCredentials
from ._data import tenant_key, tenant_session, tenant_table
from ._envelope import InvalidEnvelope
from ._errors import (
    CredentialsUnavailable,
    CrossTenantAccess,
    Forbidden,
    InvalidTenantId,
    KeysUnavailable,
    LoggableError,
    NoTenantContext,
    TenantAuthError,
    TenantError,
    Unauthorized,
)
from ._jwt import JwksCache, StaticJwksSource
from ._keys import KmsKeyRing, SecretsManagerKeyRing, StaticKeyRing
from ._logging import TenantJsonFormatter, TenantLogFilter, configure_logging
from ._producer import seal_input, send_message, sign_message, start_execution
from ._replay import DynamoDbReplayGuard, InMemoryReplayGuard
from ._tenant_id import validate_tenant_id
from ._tracing import NoopTracer, Span, Tracer, XRayTracer, set_tracer
from .api import api_handler
from .sfn import sfn_task
from .sqs import SqsRecord, sqs_handler

__all__ = [
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
    "KeysUnavailable",
    "KmsKeyRing",
    "LoggableError",
    "NoTenantContext",
    "NoopTracer",
    "ScopedCredentials",
    "SecretsManagerKeyRing",
    "Span",
    "SqsRecord",
    "StaticJwksSource",
    "StaticKeyRing",
    "TenantAuthError",
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
    "start_execution",
    "tenant_key",
    "tenant_scope",
    "tenant_session",
    "tenant_table",
    "validate_tenant_id",
]
