"""Per-tenant metrics in CloudWatch Embedded Metric Format: off by default, one line per unit of work."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tenantscope import (
    ConfigurationError,
    NoopTracer,
    SqsRecord,
    TemporarilyUnavailable,
    TenantAuthError,
    api_handler,
    current_tenant,
    sfn_task,
    sqs_handler,
)
from tenantscope._config import ENV, Settings
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope._jwt import JwksCache
from tenantscope._metrics import NAMESPACE, MetricsTracer, emf_line, with_metrics
from tenantscope.testing import (
    RING,
    LocalIssuer,
    RecordingTracer,
    sfn_task_event,
    signed_sqs_record,
    sqs_event,
)
from tests.conftest import LambdaContext, http_api_event

METRIC_UNITS = {"Units": "Count", "ClientErrors": "Count", "Faults": "Count", "Duration": "Milliseconds"}
STS_FAILURES = ("StsUnreachable", "StsThrottled", "StsRefused")
ALLOWED_KEYS = {"_aws", "Function", "Trigger", "TenantId", "Reason", *METRIC_UNITS, *STS_FAILURES}


def emf_lines(text: str) -> list[dict[str, Any]]:
    """The EMF documents among stdout lines, each checked against the EMF specification."""
    documents = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    for document in documents:
        assert set(document) <= ALLOWED_KEYS, document  # nothing but names and numbers
        meta = document["_aws"]
        assert isinstance(meta["Timestamp"], int)
        (directive,) = meta["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            assert all(isinstance(document[name], str) for name in dimension_set)
        declared = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
        sts = [name for name in STS_FAILURES if name in document]
        assert declared == {**METRIC_UNITS, **dict.fromkeys(sts, "Count")}
        assert len(sts) <= 1 and all(document[name] == 1 for name in sts)
        assert all(isinstance(document[name], int | float) for name in declared)
    return documents


def outcome(document: dict[str, Any]) -> tuple[str, str | None, int, int]:
    return document["Trigger"], document.get("TenantId"), document["ClientErrors"], document["Faults"]


def dimensions(document: dict[str, Any]) -> list[list[str]]:
    dimension_sets: list[list[str]] = document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    return dimension_sets


# --- the setting -------------------------------------------------------------------------


def test_metrics_are_off_by_default_and_the_tracer_is_left_alone() -> None:
    settings = Settings.load(environ={})
    assert settings.metrics == "off"
    tracer = NoopTracer()
    assert with_metrics(tracer, settings) is tracer


@pytest.mark.parametrize(("value", "per_tenant"), [("on", False), ("per-tenant", True)])
def test_the_environment_turns_metrics_on(value: str, per_tenant: bool) -> None:
    settings = Settings.load(environ={ENV.METRICS: value})
    wrapped = with_metrics(NoopTracer(), settings)
    assert isinstance(wrapped, MetricsTracer) and wrapped.per_tenant is per_tenant


@pytest.mark.parametrize("value", ["yes", "ON", "tenant", ""])
def test_an_unknown_mode_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match=ENV.METRICS):
        Settings.load(environ={ENV.METRICS: value})
    with pytest.raises(ConfigurationError, match=ENV.METRICS):  # an explicit argument is checked the same way
        Settings.load(environ={}, metrics=value or "bogus")


def test_with_metrics_off_an_adapter_writes_nothing(
    capsys: pytest.CaptureFixture[str], issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200}

    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
    assert emf_lines(capsys.readouterr().out) == []


# --- the lines ---------------------------------------------------------------------------


def test_emf_line_dimensions_with_and_without_the_tenant() -> None:
    common: dict[str, Any] = {"trigger": "api", "client_error": False, "fault": False, "duration_ms": 3.0}
    low = json.loads(emf_line(tenant_id="acme", per_tenant=False, function="fn", **common))
    high = json.loads(emf_line(tenant_id="acme", per_tenant=True, function="fn", **common))
    refused = json.loads(emf_line(tenant_id=None, per_tenant=True, function="fn", **common))
    assert dimensions(low) == [["Function", "Trigger"]] and low["TenantId"] == "acme"
    assert dimensions(high) == [["Function", "Trigger"], ["Function", "Trigger", "TenantId"]]
    assert dimensions(refused) == [["Function", "Trigger"]] and "TenantId" not in refused
    emf_lines("\n".join(json.dumps(d) for d in (low, high, refused)))


def test_an_emf_line_is_compact_json_stamped_when_written_with_a_duration_to_the_microsecond() -> None:
    before = int(time.time() * 1000)
    line = emf_line(
        trigger="api",
        tenant_id="acme",
        client_error=False,
        fault=False,
        duration_ms=12.34567,
        per_tenant=False,
    )
    after = int(time.time() * 1000)
    document = json.loads(line)
    assert before <= document["_aws"]["Timestamp"] <= after
    assert document["Duration"] == 12.346
    assert line == json.dumps(
        document, separators=(",", ":")
    )  # no blanks: log ingestion is billed by the byte


def test_a_metrics_tracer_names_its_spans_trigger_and_has_no_tenant_dimension_by_default() -> None:
    written: list[str] = []
    tracer = MetricsTracer(NoopTracer(), write=written.append)
    for name in ("tenantscope.api", "tenantscope.ddb.stream"):
        with tracer.span(name) as span:
            span.annotate("tenant_id", "acme")
            span.record_error(RuntimeError("x"))  # not said to be the caller's: a fault
    lines = [json.loads(line) for line in written]
    assert [line["Trigger"] for line in lines] == ["api", "ddb.stream"]
    assert [dimensions(line) for line in lines] == [[["Function", "Trigger"]]] * 2
    assert [(line["TenantId"], line["ClientErrors"], line["Faults"]) for line in lines] == [
        ("acme", 0, 1)
    ] * 2


def test_the_function_dimension_is_the_lambda_function_name(monkeypatch: pytest.MonkeyPatch) -> None:
    common: dict[str, Any] = {"trigger": "sqs", "tenant_id": "acme", "client_error": False, "fault": False}
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-worker")
    assert json.loads(emf_line(duration_ms=1.0, per_tenant=False, **common))["Function"] == "orders-worker"
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    assert json.loads(emf_line(duration_ms=1.0, per_tenant=False, **common))["Function"] == "local"


def test_api_invocations_one_line_each_with_outcome(
    capsys: pytest.CaptureFixture[str], issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    @api_handler(jwks=jwks, vendor=vendor, settings=Settings.load(metrics="per-tenant"))
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event.get("body") == '"boom"':
            raise RuntimeError("boom")
        return {"statusCode": 200}

    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
    assert handler(http_api_event(None), LambdaContext())["statusCode"] == 401
    assert handler(http_api_event(issuer.token("globex"), body="boom"), LambdaContext())["statusCode"] == 500
    lines = emf_lines(capsys.readouterr().out)
    assert [outcome(line) for line in lines] == [
        ("api", "acme", 0, 0),
        ("api", None, 1, 0),
        ("api", "globex", 0, 1),
    ]
    assert dimensions(lines[0])[-1] == ["Function", "Trigger", "TenantId"]
    assert dimensions(lines[1]) == [["Function", "Trigger"]]
    assert all(line["Units"] == 1 and line["Duration"] >= 0 for line in lines)


def test_an_sqs_batch_is_one_line_per_record(
    capsys: pytest.CaptureFixture[str], vendor: CredentialVendor
) -> None:
    @sqs_handler(ring=RING, vendor=vendor, settings=Settings.load(metrics="on"))
    def handler(record: SqsRecord, context: Any) -> None:
        if record.json.get("fail"):
            raise RuntimeError("failed")

    tampered = signed_sqs_record("{}", tenant_id="umbrella", message_id="m-3")
    tampered["body"] = '{"n":1}'
    batch = sqs_event(
        [
            signed_sqs_record("{}", tenant_id="acme", message_id="m-1"),
            signed_sqs_record('{"fail":true}', tenant_id="globex", message_id="m-2"),
            tampered,
            signed_sqs_record("{}", tenant_id="acme", message_id="m-4"),
        ]
    )
    assert len(handler(batch, LambdaContext())["batchItemFailures"]) == 2
    lines = emf_lines(capsys.readouterr().out)
    assert [outcome(line) for line in lines] == [
        ("sqs", "acme", 0, 0),
        ("sqs", "globex", 0, 1),
        ("sqs", None, 1, 0),
        ("sqs", "acme", 0, 0),
    ]
    assert all(dimensions(line) == [["Function", "Trigger"]] for line in lines)  # "on": no tenant dimension


def test_step_functions_tasks_count_refusals_as_client_errors(
    capsys: pytest.CaptureFixture[str], vendor: CredentialVendor
) -> None:
    @sfn_task(ring=RING, vendor=vendor, name="reserve", settings=Settings.load(metrics="on"))
    def task(payload: dict[str, Any], context: Any) -> str:
        if payload["input"].get("fail"):
            raise KeyError("sku")
        return current_tenant().tenant_id

    task(sfn_task_event({}, tenant_id="acme", execution_name="acme-1"), LambdaContext())
    refused = sfn_task_event({}, tenant_id="acme", execution_name="acme-1")
    refused["execution"]["name"] = "acme-2"
    with pytest.raises(TenantAuthError):
        task(refused, LambdaContext())
    with pytest.raises(KeyError):
        task(sfn_task_event({"fail": True}, tenant_id="globex", execution_name="globex-1"), LambdaContext())
    lines = emf_lines(capsys.readouterr().out)
    assert [outcome(line) for line in lines] == [
        ("sfn", "acme", 0, 0),
        ("sfn", None, 1, 0),
        ("sfn", "globex", 0, 1),
    ]


# --- the wrapper -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrange", "metric"),
    [
        (lambda sts: setattr(sts, "unreachable_next", 99), "StsUnreachable"),
        (lambda sts: setattr(sts, "throttle_next", 99), "StsThrottled"),
        (lambda sts: setattr(sts, "refuse", True), "StsRefused"),
    ],
    ids=STS_FAILURES,
)
def test_each_kind_of_sts_failure_is_its_own_metric_on_every_trigger(
    capsys: pytest.CaptureFixture[str], issuer: LocalIssuer, jwks: JwksCache, arrange: Any, metric: str
) -> None:
    # GIVEN STS failing in one way, behind each adapter
    sts = FakeSts()
    arrange(sts)
    vendor = CredentialVendor(sts, sleep=lambda _: None)
    api = api_handler(jwks=jwks, vendor=vendor, settings=Settings.load(metrics="on"))(
        lambda event, context: {"statusCode": 200}
    )
    sqs = sqs_handler(ring=RING, vendor=vendor, settings=Settings.load(metrics="on"))(
        lambda record, context: None
    )
    task = sfn_task(ring=RING, vendor=vendor, settings=Settings.load(metrics="on"), name="t")(
        lambda payload, context: {}
    )
    # WHEN each runs a unit of work
    assert api(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 503
    with pytest.raises(TemporarilyUnavailable):  # no record succeeded: the batch fails as a whole
        sqs(sqs_event([signed_sqs_record("{}", tenant_id="acme")]), LambdaContext())
    with pytest.raises(TemporarilyUnavailable):
        task(sfn_task_event({}, tenant_id="acme"), LambdaContext())
    # THEN each line counts a fault, names how STS failed, and carries the reason
    lines = emf_lines(capsys.readouterr().out)
    reason = {
        "StsUnreachable": "sts-unreachable",
        "StsThrottled": "sts-throttled",
        "StsRefused": "sts-refused",
    }
    assert [(line["Trigger"], line["Faults"], line.get(metric), line["Reason"]) for line in lines] == [
        ("api", 1, 1, reason[metric]),
        ("sqs", 1, 1, reason[metric]),
        ("sfn", 1, 1, reason[metric]),
    ]


def test_the_wrapped_tracer_still_gets_every_span_annotation_and_error() -> None:
    inner, written = RecordingTracer("Root=1-00000000-000000000000000000000000;Sampled=1"), []
    tracer = MetricsTracer(inner, write=written.append, clock=iter([1.0, 1.25]).__next__)

    def unit_of_work() -> None:
        with tracer.span("tenantscope.api") as span:
            span.annotate("tenant_id", "acme")
            span.record_error(KeyError("x"), client_error=True)
            raise ValueError("escapes")

    with pytest.raises(ValueError, match="escapes"):
        unit_of_work()
    (span,) = inner.spans
    assert (span.name, span.annotations) == ("tenantscope.api", {"tenant_id": "acme"})
    assert (span.errors, span.escaped) == ([(KeyError, True)], ValueError)
    (line,) = (json.loads(w) for w in written)
    assert (line["TenantId"], line["ClientErrors"], line["Faults"], line["Duration"]) == ("acme", 0, 1, 250.0)
    assert tracer.trace_header() == inner.trace_header()


def test_a_failing_writer_never_fails_the_unit_of_work() -> None:
    def broken(line: str) -> None:
        raise OSError("stdout closed")

    tracer = MetricsTracer(NoopTracer(), write=broken)
    with tracer.span("tenantscope.sqs") as span:
        span.annotate("tenant_id", "acme")
