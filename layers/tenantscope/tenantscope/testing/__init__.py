"""What you need to test your own handlers with tenantscope.

- :func:`local_tenants`: one call to run handlers against moto as deployed functions, with a
  local issuer, a signing key ring and tenants' credentials vended by moto's STS.
- :class:`LocalIssuer`: mints tokens of an issuer that exists only in tests.
- Event builders, in the shapes Lambda delivers: :func:`http_api_event`, :func:`rest_api_event`,
  :func:`signed_sqs_record` and :func:`sqs_event`, :func:`sfn_task_event`.
- :class:`LambdaContext`, :class:`RecordingTracer` and :func:`reset_process_state`.

>>> from tenantscope.testing import LambdaContext, reset_process_state
>>> reset_process_state()
>>> LambdaContext(tenant_id="acme").tenant_id
'acme'
"""

from .._cache import reset_process_state
from ._doubles import LambdaContext, RecordedSpan, RecordingTracer
from ._events import (
    ACCOUNT_ID,
    FIFO_QUEUE_ARN,
    KEY,
    KEY_ID,
    QUEUE_ARN,
    REGION,
    RING,
    RING_DOCUMENT,
    STATE_MACHINE_ARN,
    authorizer_claims,
    http_api_event,
    key_bytes,
    lambda_message_attributes,
    make_ring,
    record_from_received,
    rest_api_event,
    ring_document,
    ring_spec,
    sealed_input,
    sfn_task_event,
    sign_attributes,
    signed_sqs_record,
    sqs_event,
    sqs_record,
    task_event,
)
from ._issuer import LocalIssuer
from ._local import LocalTenants, local_tenants

__all__ = [
    "ACCOUNT_ID",
    "FIFO_QUEUE_ARN",
    "KEY",
    "KEY_ID",
    "QUEUE_ARN",
    "REGION",
    "RING",
    "RING_DOCUMENT",
    "STATE_MACHINE_ARN",
    "LambdaContext",
    "LocalIssuer",
    "LocalTenants",
    "RecordedSpan",
    "RecordingTracer",
    "authorizer_claims",
    "http_api_event",
    "key_bytes",
    "lambda_message_attributes",
    "local_tenants",
    "make_ring",
    "record_from_received",
    "reset_process_state",
    "rest_api_event",
    "ring_document",
    "ring_spec",
    "sealed_input",
    "sfn_task_event",
    "sign_attributes",
    "signed_sqs_record",
    "sqs_event",
    "sqs_record",
    "task_event",
]
