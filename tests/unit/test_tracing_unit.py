"""Tracing without X-Ray: the backend choice, cold start, and the spans every adapter opens.

A fake :class:`Tracer` installed with ``set_tracer`` receives each adapter's spans; the
X-Ray backend is exercised with a fake recorder (given a recorder, ``XRayTracer`` never
imports aws_xray_sdk nor patches botocore). The real SDK is tested in
tests/integration/test_tracing.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tenantscope import (
    ConfigurationError,
    CredentialsUnavailable,
    CrossTenantAccess,
    InvalidEnvelope,
    LoggableError,
    NoopTracer,
    OTelTracer,
    Reason,
    SqsRecord,
    StsRefused,
    TenantAuthError,
    TenantError,
    Unauthorized,
    XRayTracer,
    _tracing,
    api_handler,
    current_tenant,
    set_tracer,
    sfn_task,
    sqs_handler,
    sqs_record_handler,
    start_execution,
)
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope._jwt import JwksCache
from tenantscope.testing import (
    RING,
    LocalIssuer,
    RecordingTracer,
    reset_process_state,
    sfn_task_event,
    signed_sqs_record,
    sqs_event,
)
from tests.conftest import LambdaContext, http_api_event

ROOT = Path(__file__).resolve().parents[2]


# --- a fake backend ----------------------------------------------------------------------


@pytest.fixture
def tracer() -> Iterator[RecordingTracer]:
    recording = RecordingTracer()
    set_tracer(recording)
    yield recording
    set_tracer(None)


@pytest.fixture
def fresh_tracer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No tracer chosen yet, and a clean environment for the choice."""
    for name in (
        "LAMBDA_TASK_ROOT",
        "AWS_XRAY_DAEMON_ADDRESS",
        "TENANTSCOPE_TRACING",
        "AWS_XRAY_SDK_ENABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    set_tracer(None)
    yield
    set_tracer(None)


# --- choosing the backend ----------------------------------------------------------------

IN_LAMBDA_WITH_TRACING = {"LAMBDA_TASK_ROOT": "/var/task", "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000"}


@pytest.fixture
def otel_sdk_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OpenTelemetry SDK tracer provider set up in the process, as the ADOT layer's wrapper does.

    It goes where the API keeps the global provider, for this test only: the API lets a process
    set its provider once (tests/unit/test_otel_tracing.py does it for real, in a subprocess).
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    monkeypatch.setattr(trace, "_TRACER_PROVIDER", TracerProvider())


@pytest.mark.parametrize(
    ("environ", "otel_sdk", "chosen"),
    [
        ({}, False, NoopTracer),
        ({"LAMBDA_TASK_ROOT": "/var/task"}, False, NoopTracer),  # in Lambda, active tracing off
        ({"AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000"}, False, NoopTracer),  # a daemon, but not Lambda
        (IN_LAMBDA_WITH_TRACING, False, XRayTracer),
        ({**IN_LAMBDA_WITH_TRACING, "TENANTSCOPE_TRACING": "auto"}, False, XRayTracer),
        ({**IN_LAMBDA_WITH_TRACING, "TENANTSCOPE_TRACING": ""}, False, XRayTracer),
        # auto: an OpenTelemetry SDK set up in the process (the ADOT layer) wins, in Lambda or not
        (IN_LAMBDA_WITH_TRACING, True, OTelTracer),
        ({}, True, OTelTracer),
        ({**IN_LAMBDA_WITH_TRACING, "AWS_XRAY_SDK_ENABLED": "false"}, True, OTelTracer),
        # chosen explicitly
        ({**IN_LAMBDA_WITH_TRACING, "TENANTSCOPE_TRACING": "xray"}, True, XRayTracer),
        ({"TENANTSCOPE_TRACING": "xray"}, False, NoopTracer),  # X-Ray where it is available only
        ({"TENANTSCOPE_TRACING": "otel"}, False, OTelTracer),  # on the provider set up later, if any
        ({**IN_LAMBDA_WITH_TRACING, "TENANTSCOPE_TRACING": " OTel "}, False, OTelTracer),
        ({**IN_LAMBDA_WITH_TRACING, "TENANTSCOPE_TRACING": "off"}, True, NoopTracer),
        ({**IN_LAMBDA_WITH_TRACING, "TENANTSCOPE_TRACING": "OFF"}, False, NoopTracer),
        # the X-Ray SDK's own switch
        ({**IN_LAMBDA_WITH_TRACING, "AWS_XRAY_SDK_ENABLED": "false"}, False, NoopTracer),
        ({**IN_LAMBDA_WITH_TRACING, "AWS_XRAY_SDK_ENABLED": "False"}, False, NoopTracer),
        ({**IN_LAMBDA_WITH_TRACING, "AWS_XRAY_SDK_ENABLED": "0"}, False, NoopTracer),
        ({**IN_LAMBDA_WITH_TRACING, "AWS_XRAY_SDK_ENABLED": "off"}, False, NoopTracer),
        ({**IN_LAMBDA_WITH_TRACING, "AWS_XRAY_SDK_ENABLED": "true"}, False, XRayTracer),
    ],
)
def test_the_backend_is_chosen_by_tenantscope_tracing_then_by_what_the_process_has(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    fresh_tracer: None,
    environ: dict[str, str],
    otel_sdk: bool,
    chosen: type,
) -> None:
    # GIVEN the function's environment, and an OpenTelemetry SDK set up or not
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    if otel_sdk:
        request.getfixturevalue("otel_sdk_configured")
    # WHEN the tracer is chosen THEN it is the expected backend (built, not yet used)
    assert type(_tracing.get_tracer()) is chosen


@pytest.mark.parametrize("value", ["on", "x-ray", "opentelemetry", "true"])
def test_an_unknown_tracing_backend_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, fresh_tracer: None, value: str
) -> None:
    monkeypatch.setenv("TENANTSCOPE_TRACING", value)
    with pytest.raises(ConfigurationError, match="TENANTSCOPE_TRACING must be one of auto, xray, otel, off"):
        _tracing.get_tracer()


def test_otel_chosen_without_opentelemetry_installed_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, fresh_tracer: None
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.propagators.aws.aws_xray_propagator", None)  # absent
    monkeypatch.setenv("TENANTSCOPE_TRACING", "otel")
    with pytest.raises(ConfigurationError, match="opentelemetry-propagator-aws-xray"):
        _tracing.get_tracer()


def test_an_sdk_without_the_xray_propagator_keeps_the_automatic_choice_on_xray(
    monkeypatch: pytest.MonkeyPatch,
    fresh_tracer: None,
    otel_sdk_configured: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN an SDK set up in Lambda, but no X-Ray propagator to read and write AWS trace headers
    monkeypatch.setitem(sys.modules, "opentelemetry.propagators.aws.aws_xray_propagator", None)
    for name, value in IN_LAMBDA_WITH_TRACING.items():
        monkeypatch.setenv(name, value)
    # WHEN chosen automatically THEN tracing stays as it was, and the log says why
    assert type(_tracing.get_tracer()) is XRayTracer
    (message,) = caplog.messages
    assert message.startswith("tenantscope: not tracing with OpenTelemetry: ")
    assert "opentelemetry-propagator-aws-xray" in message


def test_outside_lambda_the_tracer_is_the_noop(fresh_tracer: None) -> None:
    tracer = _tracing.get_tracer()
    assert isinstance(tracer, NoopTracer)
    assert _tracing.get_tracer() is tracer  # chosen once per process


@pytest.mark.parametrize("switch", [("TENANTSCOPE_TRACING", "off"), ("AWS_XRAY_SDK_ENABLED", "false")])
def test_switched_off_in_lambda_the_tracer_is_the_noop(
    monkeypatch: pytest.MonkeyPatch, fresh_tracer: None, switch: tuple[str, str]
) -> None:
    for name, value in {**IN_LAMBDA_WITH_TRACING, switch[0]: switch[1]}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(_tracing, "XRayTracer", _Forbidden)
    assert isinstance(_tracing.get_tracer(), NoopTracer)


class _Forbidden:
    def __init__(self) -> None:
        raise AssertionError("XRayTracer must not be built")


def test_in_lambda_with_active_tracing_the_tracer_is_xray(
    monkeypatch: pytest.MonkeyPatch, fresh_tracer: None
) -> None:
    built: list[object] = []

    class StubXRay(NoopTracer):  # stands in for XRayTracer, which would patch botocore
        def __init__(self) -> None:
            built.append(self)

    for name, value in IN_LAMBDA_WITH_TRACING.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(_tracing, "XRayTracer", StubXRay)
    assert _tracing.get_tracer() is _tracing.get_tracer() is built[0]
    assert len(built) == 1


def test_set_tracer_installs_a_backend_and_none_detects_again(fresh_tracer: None) -> None:
    fake = RecordingTracer()
    set_tracer(fake)
    assert _tracing.get_tracer() is fake
    set_tracer(None)
    assert isinstance(_tracing.get_tracer(), NoopTracer)


def test_cold_start_is_true_once_per_process() -> None:
    # GIVEN a new process (the fixtures reset its state)
    assert [_tracing.take_cold_start() for _ in range(3)] == [True, False, False]
    # WHEN its state is reset, as a new container's is, and the first units of work start on
    # several threads at once THEN exactly one of them is the cold start
    reset_process_state()
    barrier = threading.Barrier(8)

    def take() -> bool:
        barrier.wait()
        return _tracing.take_cold_start()

    with ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(lambda _: take(), range(8)))
    assert sorted(taken) == [False] * 7 + [True]


def test_importing_tenantscope_imports_neither_the_xray_sdk_nor_opentelemetry() -> None:
    code = (
        "import sys, tenantscope\n"
        "from tenantscope._tracing import get_tracer\n"
        "sdks = lambda: [name in sys.modules for name in ('aws_xray_sdk', 'opentelemetry')]\n"
        "before = sdks()\n"
        "tracer = type(get_tracer()).__name__\n"
        "print(*before, *sdks(), tracer)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LAMBDA_TASK_ROOT", "AWS_XRAY_DAEMON_ADDRESS")}
    env["PYTHONPATH"] = str(ROOT / "layers" / "tenantscope")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.split() == ["False", "False", "False", "False", "NoopTracer"]


# --- the no-op backend -------------------------------------------------------------------


def test_the_noop_tracer_records_nothing_and_lets_errors_through() -> None:
    tracer = NoopTracer()
    with tracer.span("tenantscope.api") as span:
        span.annotate("tenant_id", "acme")
        span.record_error(RuntimeError("x"), client_error=True)
    with pytest.raises(KeyError), tracer.span("tenantscope.sqs"):
        raise KeyError("x")
    assert tracer.trace_header() is None


# --- the X-Ray backend, on a fake recorder -----------------------------------------------


class FakeSubsegment:
    def __init__(self, name: str) -> None:
        self.name = name
        self.annotations: dict[str, Any] = {}
        self.exceptions: list[BaseException] = []
        self.stacks: list[Any] = []
        self.fault = False
        self.error = False
        self.ended = False

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        self.exceptions.append(exception)
        self.stacks.append(stack)
        self.fault = True  # what aws_xray_sdk's Entity.add_exception does

    def add_error_flag(self) -> None:
        self.error = True


class FakeRecorder:
    def __init__(self, *, segment: bool = True, sampled: bool = True) -> None:
        self.segment = segment
        self.sampled = sampled
        self.subsegments: list[FakeSubsegment] = []
        self.open: list[FakeSubsegment] = []

    def begin_subsegment(self, name: str) -> FakeSubsegment | None:
        if not self.segment:
            return None
        subsegment = FakeSubsegment(name)
        self.subsegments.append(subsegment)
        self.open.append(subsegment)
        return subsegment

    def end_subsegment(self) -> None:
        self.open.pop().ended = True

    def get_trace_entity(self) -> Any:
        if not self.segment:
            return None
        return type(
            "Entity",
            (),
            {
                "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
                "id": "53995c3f42cd8ad8",
                "sampled": self.sampled,
            },
        )()


def test_xray_spans_are_subsegments_annotated_and_ended() -> None:
    recorder = FakeRecorder()
    tracer = XRayTracer(recorder)
    with tracer.span("tenantscope.api") as span:
        span.annotate("tenant_id", "acme")
        span.annotate("cold_start", True)
    (subsegment,) = recorder.subsegments
    assert subsegment.name == "tenantscope.api"
    assert subsegment.annotations == {"tenant_id": "acme", "cold_start": True}
    assert subsegment.ended and not subsegment.fault and not subsegment.error


@pytest.mark.parametrize(
    ("error", "fault", "client"),
    [
        (RuntimeError("boom"), True, False),
        (CredentialsUnavailable(Reason.STS_UNREACHABLE), True, False),
        (TenantAuthError(Reason.BAD_ENVELOPE_SIGNATURE), False, True),  # what @sfn_task raises
        (InvalidEnvelope(Reason.BAD_ENVELOPE_SIGNATURE), False, True),
        (LoggableError("order 42 not found for this tenant"), True, False),
    ],
)
def test_an_escaping_error_is_recorded_with_its_kind_and_still_raised(
    error: Exception, fault: bool, client: bool
) -> None:
    recorder = FakeRecorder()
    with pytest.raises(type(error)), XRayTracer(recorder).span("tenantscope.sfn"):
        raise error
    (subsegment,) = recorder.subsegments
    (recorded,) = subsegment.exceptions
    (stack,) = subsegment.stacks  # where it was raised, for the trace's exception view
    assert stack[-1].line == "raise error"
    assert type(recorded).__name__ == type(error).__name__
    # Our errors and loggable ones carry a safe reason; anything else is recorded without its message.
    assert str(recorded) == (str(error) if isinstance(error, TenantError | LoggableError) else "")
    assert (subsegment.fault, subsegment.error) == (fault, client)
    # Searchable, since X-Ray's fault/error keywords only judge a trace by its response.
    reason = {"reason": str(error.reason)} if isinstance(error, TenantError) else {}
    assert subsegment.annotations == {
        "failure": "error" if client else "fault",
        "error_type": type(error).__name__,
        **reason,
    }
    assert subsegment.ended


def test_record_error_marks_a_client_error_as_error_not_fault() -> None:
    recorder = FakeRecorder()
    with XRayTracer(recorder).span("tenantscope.api") as span:
        span.record_error(Unauthorized(Reason.MISSING_TOKEN), client_error=True)
    with XRayTracer(recorder).span("tenantscope.api") as span:
        span.record_error(RuntimeError("x"))  # not said to be the caller's: a fault
    subsegment, fault = recorder.subsegments
    assert (fault.fault, fault.error) == (True, False)
    assert (subsegment.fault, subsegment.error) == (False, True)
    assert subsegment.annotations == {
        "failure": "error",
        "error_type": "Unauthorized",
        "reason": "missing-token",
    }


def test_tenantscope_annotation_keys_are_valid_x_ray_keys_and_others_are_checked_by_the_sdk() -> None:
    from aws_xray_sdk.core.models.entity import _valid_annotation_key_characters, annotation_value_types

    from tenantscope._tracing import ANNOTATION_KEYS, _XRaySpan

    # Ours are stored without the SDK's per-character check: each must pass it.
    assert all(set(key) <= set(_valid_annotation_key_characters) for key in ANNOTATION_KEYS)

    class Checking(FakeSubsegment):  # the SDK's checks: a key of letters, digits and "_", a scalar value
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.checked: list[str] = []

        def put_annotation(self, key: str, value: Any) -> None:
            self.checked.append(key)
            if set(key) <= set(_valid_annotation_key_characters) and isinstance(
                value, annotation_value_types
            ):
                super().put_annotation(key, value)

    subsegment = Checking("tenantscope.api")
    span = _XRaySpan(FakeRecorder(), subsegment)
    span.annotate("tenant_id", "acme")
    span.annotate("cold_start", False)
    span.annotate("other-key", "x")  # not ours: the SDK decides, and drops it
    span.annotate("order_total", 42)  # not ours: the SDK decides, and keeps it
    span.annotate("tenant_source", ["not", "a", "scalar"])  # type: ignore[arg-type]  # the SDK decides
    assert subsegment.annotations == {"tenant_id": "acme", "cold_start": False, "order_total": 42}
    # THEN only what is not ours, or not of a type X-Ray keeps, paid for the SDK's checks
    assert subsegment.checked == ["other-key", "order_total", "tenant_source"]


def test_an_error_the_adapter_recorded_itself_is_not_recorded_again_as_it_escapes() -> None:
    recorder = FakeRecorder()
    error = RuntimeError("a refusal the adapter knows to be the caller's")

    def unit_of_work() -> None:
        with XRayTracer(recorder).span("tenantscope.api") as span:
            span.record_error(error, client_error=True)
            raise error

    with pytest.raises(RuntimeError, match="the caller's"):
        unit_of_work()
    (subsegment,) = recorder.subsegments
    assert len(subsegment.exceptions) == 1
    assert (subsegment.fault, subsegment.error) == (False, True)


def test_without_a_segment_xray_spans_do_nothing() -> None:
    recorder = FakeRecorder(segment=False)
    tracer = XRayTracer(recorder)
    with tracer.span("tenantscope.api") as span:
        span.annotate("tenant_id", "acme")
        span.record_error(RuntimeError("x"))
    assert recorder.subsegments == []
    assert tracer.trace_header() is None


def test_the_xray_trace_header_continues_the_current_entity() -> None:
    header = XRayTracer(FakeRecorder()).trace_header()
    assert header == "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    unsampled = XRayTracer(FakeRecorder(sampled=False)).trace_header()
    assert unsampled == "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"


@pytest.mark.parametrize("lambda_header", [None, "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"])
def test_an_invocation_lambda_did_not_sample_opens_no_xray_span_and_loads_no_sdk(
    monkeypatch: pytest.MonkeyPatch, lambda_header: str | None
) -> None:
    if lambda_header is None:
        monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    else:
        monkeypatch.setenv("_X_AMZN_TRACE_ID", lambda_header)
    tracer = XRayTracer()
    assert tracer.span("tenantscope.api") is _tracing.NOOP_SPAN
    assert tracer._recorder is None  # the SDK is loaded by the first sampled invocation only


# --- the spans each adapter opens --------------------------------------------------------


def api(jwks: JwksCache, vendor: CredentialVendor, outcome: BaseException | None = None) -> Any:
    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if outcome is not None:
            raise outcome
        return {"statusCode": 200, "body": current_tenant().tenant_id}

    return handler


def test_an_api_invocation_is_one_span_with_tenant_source_and_cold_start(
    tracer: RecordingTracer, issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    # GIVEN a new process (the fixtures reset its state), WHEN two requests and then, in what
    # stands for a new container, a third arrive
    handler = api(jwks, vendor)
    for _ in range(2):
        assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
    reset_process_state()
    set_tracer(tracer)  # forgotten with the rest of the process's state
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
    # THEN each is one span with its tenant, and only the first of each process is a cold start
    first = tracer.spans[0]
    assert [span.name for span in tracer.spans] == ["tenantscope.api"] * 3
    assert first.annotations == {"tenant_id": "acme", "tenant_source": "jwt", "cold_start": True}
    assert [span.annotations["cold_start"] for span in tracer.spans] == [True, False, True]
    assert all(span.errors == [] and span.escaped is None for span in tracer.spans)


@pytest.mark.parametrize(
    ("token_tenant", "outcome", "status", "error", "client_error", "annotated"),
    [
        (None, None, 401, Unauthorized, True, False),  # no token: no tenant to annotate
        ("acme", CrossTenantAccess(Reason.FOREIGN_KEY), 403, CrossTenantAccess, True, True),
        ("acme", CredentialsUnavailable(Reason.STS_UNREACHABLE), 503, CredentialsUnavailable, False, True),
        ("acme", RuntimeError("boom"), 500, RuntimeError, False, True),
    ],
)
def test_api_failures_are_recorded_client_errors_for_4xx_faults_for_5xx(
    tracer: RecordingTracer,
    issuer: LocalIssuer,
    jwks: JwksCache,
    vendor: CredentialVendor,
    token_tenant: str | None,
    outcome: BaseException | None,
    status: int,
    error: type[BaseException],
    client_error: bool,
    annotated: bool,
) -> None:
    token = issuer.token(token_tenant) if token_tenant else None
    response = api(jwks, vendor, outcome)(http_api_event(token), LambdaContext())
    assert response["statusCode"] == status
    (span,) = tracer.spans
    assert [(e.__name__, c) for e, c in span.errors] == [(error.__name__, client_error)]
    assert span.escaped is None  # answered, not raised
    assert ("tenant_id" in span.annotations) is annotated
    assert "cold_start" in span.annotations


def test_an_api_token_for_another_lambda_tenant_is_a_403_client_error(
    tracer: RecordingTracer, issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    response = api(jwks, vendor)(http_api_event(issuer.token("acme")), LambdaContext(tenant_id="globex"))
    assert response["statusCode"] == 403
    (span,) = tracer.spans
    assert [(e.__name__, c) for e, c in span.errors] == [("Forbidden", True)]
    assert "tenant_id" not in span.annotations  # the refused token's tenant is not trusted


def test_credentials_unavailable_before_the_handler_is_a_fault(
    tracer: RecordingTracer, issuer: LocalIssuer, jwks: JwksCache
) -> None:
    sts = FakeSts()
    sts.refuse = True
    vendor = CredentialVendor(sts, sleep=lambda _: None)
    response = api(jwks, vendor)(http_api_event(issuer.token("acme")), LambdaContext())
    assert response["statusCode"] == 503
    (span,) = tracer.spans
    # the span names the kind of STS failure (X-Ray: annotation.error_type = "StsRefused")
    assert span.errors == [(StsRefused, False)]
    assert issubclass(StsRefused, CredentialsUnavailable)
    assert span.annotations["tenant_id"] == "acme"


def test_each_sqs_record_is_its_own_span_with_its_tenant_and_message_id(
    tracer: RecordingTracer, vendor: CredentialVendor
) -> None:
    @sqs_handler(ring=RING, vendor=vendor)
    def handler(record: SqsRecord, context: Any) -> None:
        if record.json.get("fail"):
            raise RuntimeError("handler failed")

    tampered = signed_sqs_record('{"n":2}', tenant_id="globex", message_id="m-tampered")
    tampered["body"] = '{"n":3}'
    records = [
        signed_sqs_record('{"n":0}', tenant_id="acme", message_id="m-acme"),
        signed_sqs_record('{"n":1}', tenant_id="initech", message_id="m-initech"),
        tampered,
        signed_sqs_record('{"fail":true}', tenant_id="umbrella", message_id="m-raises"),
    ]
    result = handler(sqs_event(records), LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-tampered"}, {"itemIdentifier": "m-raises"}]}
    assert [s.name for s in tracer.spans] == ["tenantscope.sqs"] * 4
    by_message = {s.annotations["message_id"]: s for s in tracer.spans}
    assert by_message["m-acme"].annotations == {
        "message_id": "m-acme",
        "tenant_id": "acme",
        "tenant_source": "sqs",
    }
    assert by_message["m-initech"].annotations["tenant_id"] == "initech"
    assert by_message["m-acme"].errors == by_message["m-initech"].errors == []
    # A forged record has no trusted tenant: only its message id.
    assert by_message["m-tampered"].annotations == {"message_id": "m-tampered"}
    assert by_message["m-tampered"].errors == [(InvalidEnvelope, True)]
    assert by_message["m-raises"].annotations["tenant_id"] == "umbrella"
    assert by_message["m-raises"].errors == [(RuntimeError, False)]
    assert all(s.escaped is None for s in tracer.spans)


def test_a_record_step_is_its_span_too_and_a_record_without_an_id_is_annotated_with_none(
    tracer: RecordingTracer, vendor: CredentialVendor
) -> None:
    step = sqs_record_handler(ring=RING, vendor=vendor)(lambda record, context: None)
    step(signed_sqs_record("{}", tenant_id="acme", message_id="m-acme"), LambdaContext())
    unnamed = {**signed_sqs_record("{}", tenant_id="acme", message_id="m-unnamed"), "messageId": 7}
    with pytest.raises(TenantAuthError):
        step(unnamed, LambdaContext())
    assert [(s.name, s.annotations["message_id"]) for s in tracer.spans] == [
        ("tenantscope.sqs", "m-acme"),
        ("tenantscope.sqs", ""),
    ]


PRODUCER_TRACE = "Root=1-5759e988-00000000000000000000cafe;Parent=00000000000000aa;Sampled=1"
MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"


class RecordingSfn:
    """A Step Functions client that keeps each StartExecution's parameters."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start_execution(self, **params: Any) -> dict[str, Any]:
        self.started.append(params)
        return {"executionArn": "arn:aws:states:us-east-1:123456789012:execution:orders:x"}


@pytest.mark.parametrize(
    ("current", "forwarded"),
    [
        # X-Ray: the record's subsegment belongs to the worker invocation's trace, or tracing is off
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", PRODUCER_TRACE),
        (None, PRODUCER_TRACE),
        # OpenTelemetry: the record's span continues the producer's trace, so it is the parent now
        (
            "Root=1-5759e988-00000000000000000000cafe;Parent=00000000000000bb;Sampled=1",
            "Root=1-5759e988-00000000000000000000cafe;Parent=00000000000000bb;Sampled=1",
        ),
    ],
)
def test_a_record_hands_its_trace_to_its_span_and_on_to_the_work_it_starts(
    vendor: CredentialVendor, current: str | None, forwarded: str
) -> None:
    # GIVEN a backend whose current span is in some trace, and a record sent from another request
    tracer = RecordingTracer(trace_header=current)
    set_tracer(tracer)
    sfn = RecordingSfn()

    @sqs_handler(ring=RING, vendor=vendor)
    def handler(record: SqsRecord, context: Any) -> None:
        start_execution(
            "arn:aws:states:us-east-1:123456789012:stateMachine:orders", {}, ring=RING, client=sfn
        )

    record = signed_sqs_record("{}", tenant_id="acme", message_id="m-1")
    record["attributes"]["AWSTraceHeader"] = PRODUCER_TRACE
    try:
        assert handler(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    finally:
        set_tracer(None)
    # THEN the backend was offered the record's trace, and the execution continues that trace
    (span,) = tracer.spans
    assert span.trace_header == PRODUCER_TRACE
    (started,) = sfn.started
    assert started["traceHeader"] == forwarded


def test_a_step_functions_task_span_has_tenant_execution_and_task(
    tracer: RecordingTracer, vendor: CredentialVendor
) -> None:
    @sfn_task(ring=RING, vendor=vendor)
    def reserve(payload: dict[str, Any], context: Any) -> str:
        return current_tenant().tenant_id

    event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-1")
    assert reserve(event, LambdaContext())["results"] == {"reserve": "acme"}
    (span,) = tracer.spans
    assert span.name == "tenantscope.sfn"
    assert span.annotations == {
        "task": "reserve",
        "tenant_id": "acme",
        "tenant_source": "sfn",
        "execution_name": "acme-exec-1",
    }
    assert span.errors == [] and span.escaped is None


def test_a_refused_step_functions_task_is_a_client_error_of_its_span(
    tracer: RecordingTracer, vendor: CredentialVendor
) -> None:
    @sfn_task(ring=RING, vendor=vendor, name="reserve")
    def task(payload: dict[str, Any], context: Any) -> None:
        raise AssertionError("must not run")

    event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-1")
    event["tenantscope"]["body"] = json.dumps({"sku": "y"})
    with pytest.raises(TenantAuthError):
        task(event, LambdaContext())
    (span,) = tracer.spans
    assert span.annotations == {"task": "reserve"}
    assert span.errors == [(InvalidEnvelope, True)]  # the refusal's own type, as a client error


def test_a_failing_step_functions_task_is_a_fault_of_its_span_with_its_own_type(
    tracer: RecordingTracer, vendor: CredentialVendor
) -> None:
    @sfn_task(ring=RING, vendor=vendor, name="reserve")
    def task(payload: dict[str, Any], context: Any) -> None:
        raise KeyError("sku")

    with pytest.raises(KeyError):
        task(sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-1"), LambdaContext())
    (span,) = tracer.spans
    assert span.annotations["tenant_id"] == "acme"
    assert span.errors == [(KeyError, False)]
