"""Integration fixtures: an in-process moto account with the pooled table and bucket."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sts.models import sts_backends

from tenantscope._config import Settings
from tenantscope._credentials import Boto3Sts, CredentialVendor, set_default_vendor
from tenantscope._resolve import resolve_sqs_record
from tenantscope.testing import RING, LocalIssuer
from tests.conftest import BUCKET, REGION, TABLE

if TYPE_CHECKING:
    from tests.integration.tracing_support import OTelBackend, Secrets, TracingBackend, XRayBackend


def sent_headers(client: Any, call: Any) -> dict[str, str]:
    """The headers of the one request ``call`` sends through ``client`` (its answer ignored)."""
    sent: list[Any] = []

    def record(request: Any, **_: Any) -> None:
        sent.append(request)

    client.meta.events.register("before-send", record)
    try:
        call()
    finally:
        client.meta.events.unregister("before-send", record)
    (request,) = sent
    return {
        name: value.decode() if isinstance(value, bytes) else value for name, value in request.headers.items()
    }


def verified_tenant(record: dict[str, Any]) -> str:
    """The tenant an SQS record, as Lambda delivers it, verifies as (default settings, the test ring)."""
    tenant, _ = resolve_sqs_record(record, RING, Settings.load(environ={}), now=time.time())
    return tenant.tenant_id


def assumed_roles() -> list[Any]:
    """Every AssumeRole call moto has served in this account."""
    return list(sts_backends[DEFAULT_ACCOUNT_ID]["global"].assumed_roles)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def sts_vendor(aws: None) -> CredentialVendor:
    """The real STS backend (on moto) as the process-wide vendor."""
    vendor = CredentialVendor(Boto3Sts(REGION))
    set_default_vendor(vendor)
    return vendor


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def sfn(aws: None) -> Any:
    return boto3.client("stepfunctions", region_name=REGION)


@pytest.fixture
def machine_arn(sfn: Any) -> str:
    """A trivial state machine to start executions on (tests here do not need it to run)."""
    arn: str = sfn.create_state_machine(
        name="tenantscope-orders",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/tenantscope-sfn",
    )["stateMachineArn"]
    return arn


@pytest.fixture
def secrets(issuer: LocalIssuer) -> Secrets:
    """The secrets of a test that must never reach a trace (tokens are added as they are minted)."""
    from tests.integration.tracing_support import Secrets  # which reads assumed_roles, above

    return Secrets()


@pytest.fixture
def xray(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[XRayBackend]:
    """The X-Ray backend, as in Lambda with active tracing, emitting into a list.

    The global recorder is given Lambda's context (a facade segment built from a sampled
    ``_X_AMZN_TRACE_ID``), an emitter that keeps every serialized entity, and a streaming
    threshold of 0, so each finished subsegment is emitted as soon as it closes. botocore is
    patched by ``XRayTracer()`` once and for all in this process: afterwards the SDK is disabled,
    which turns the patched calls into no-ops for every later test.
    """
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.lambda_launcher import LambdaContext as XRayLambdaContext

    from tenantscope import XRayTracer, set_tracer
    from tests.integration.tracing_support import CapturingEmitter, XRayBackend
    from tests.trace_ids import LAMBDA_TRACE_HEADER

    monkeypatch.delenv("AWS_XRAY_SDK_ENABLED", raising=False)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", LAMBDA_TRACE_HEADER)
    saved = (
        xray_recorder.context,
        xray_recorder.emitter,
        xray_recorder.streaming_threshold,
        xray_recorder.sampling,
    )
    emitter = CapturingEmitter()
    global_sdk_config.set_sdk_enabled(True)
    xray_recorder.configure(
        context=XRayLambdaContext(), emitter=emitter, streaming_threshold=0, sampling=False
    )
    set_tracer(XRayTracer())  # patches botocore (once per process)
    try:
        yield XRayBackend(emitter)
    finally:
        set_tracer(None)
        (
            xray_recorder.context,
            xray_recorder.emitter,
            xray_recorder.streaming_threshold,
            xray_recorder.sampling,
        ) = saved
        global_sdk_config.set_sdk_enabled(False)  # the patched botocore does nothing from now on


@pytest.fixture
def otel(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[OTelBackend]:
    """The OpenTelemetry backend, as the ADOT layer would have it, exporting into a list.

    botocore is instrumented on the same provider for this test only, as the ADOT layer
    instruments it, so each AWS call is a span too.
    """
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    from tenantscope import set_tracer
    from tests.integration.tracing_support import OTelBackend
    from tests.otel_capture import Captured

    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)  # no trace header unless a test gives one
    captured = Captured()
    BotocoreInstrumentor().instrument(tracer_provider=captured.provider)
    set_tracer(captured.tracer)
    try:
        yield OTelBackend(captured)
    finally:
        set_tracer(None)
        BotocoreInstrumentor().uninstrument()


@pytest.fixture(params=["xray", "otel"])
def tracing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> TracingBackend:
    """Each backend in turn, in a Lambda invocation whose trace header is LAMBDA_TRACE_HEADER."""
    from tests.trace_ids import LAMBDA_TRACE_HEADER

    backend: TracingBackend = request.getfixturevalue(request.param)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", LAMBDA_TRACE_HEADER)
    return backend
