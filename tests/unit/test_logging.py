"""Tenant fields on log records: inside a scope only, in stdlib and in Lambda's JSON log format.

The Lambda runtime (awslambdaric) puts one handler on the root logger at bootstrap. Its
first filter sets ``record.aws_request_id`` (and, with tenant isolation mode support,
``record.tenant_id``, None outside that mode); its JSON formatter prints ``tenant_id`` as
``tenantId`` and copies every other non-reserved record attribute verbatim. The stand-in
below reproduces that pipeline, with tenantscope's filter added after the runtime's.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from tenantscope import (
    SqsRecord,
    TenantJsonFormatter,
    TenantLogFilter,
    api_handler,
    configure_logging,
    current_tenant,
    sfn_task,
    sqs_handler,
    tenant_scope,
)
from tenantscope._credentials import CredentialVendor
from tenantscope._jwt import JwksCache
from tenantscope._logging import AWS_PAYLOAD_LOGGERS, drop_aws_payload_lines, install_log_filter
from tenantscope.testing import RING, LocalIssuer, sfn_task_event, signed_sqs_record, sqs_event
from tests.conftest import LambdaContext, http_api_event

app_log = logging.getLogger("tests.app")

TENANT_FIELDS = ("tenant_id", "tenant_source", "message_id", "execution_name")
_BARE = logging.LogRecord("x", logging.INFO, __file__, 1, "", None, None)


# --- a stand-in for Lambda's JSON log pipeline -------------------------------------------


class RuntimeRequestId:
    """The runtime's global request id, set before each invocation."""

    value: str | None = None


class LambdaRuntimeFilter(logging.Filter):
    """Mimics awslambdaric's LambdaLoggerFilter: request id always, tenant id None (no isolation mode)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = RuntimeRequestId.value or ""
        record.tenant_id = None
        return True


# Attributes the runtime's JSON formatter never copies: the standard LogRecord ones and its own.
_RESERVED = {*vars(_BARE), "message", "asctime", "aws_request_id", "tenant_id", "_frame_type"}


class LambdaJsonFormatter(logging.Formatter):
    """Mimics awslambdaric's JsonFormatter (``LoggingConfig: LogFormat: JSON``)."""

    def format(self, record: logging.LogRecord) -> str:
        result: dict[str, Any] = {
            "timestamp": self.formatTime(record),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", None),
            "tenantId": getattr(record, "tenant_id", None),
        }
        result.update((k, v) for k, v in vars(record).items() if k not in _RESERVED and k not in result)
        return json.dumps({k: v for k, v in result.items() if v is not None}, default=str)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self._lines_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._lines_lock:
            self.records.append(record)
            self.lines.append(line)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def lambda_json() -> Iterator[ListHandler]:
    """The root handler as the Lambda runtime sets it up, then tenantscope's filter on it."""
    handler = ListHandler()
    handler.addFilter(LambdaRuntimeFilter())
    handler.setFormatter(LambdaJsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    install_log_filter(root)
    assert [type(f).__name__ for f in handler.filters] == ["LambdaRuntimeFilter", "TenantLogFilter"]
    RuntimeRequestId.value = "lambda-req-1"
    yield handler
    RuntimeRequestId.value = None
    root.removeHandler(handler)


@pytest.fixture
def stdlib_json() -> Iterator[ListHandler]:
    """Plain stdlib logging: tenantscope's own JSON formatter and filter."""
    handler = ListHandler()
    handler.setFormatter(TenantJsonFormatter())
    handler.addFilter(TenantLogFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def logged(handler: ListHandler, prefix: str) -> list[dict[str, Any]]:
    return [line for line in handler.json_lines() if line["message"].startswith(prefix)]


# --- the handlers under test -------------------------------------------------------------


def api(jwks: JwksCache, vendor: CredentialVendor) -> Any:
    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        app_log.info("inside for %s", current_tenant().tenant_id)
        return {"statusCode": 200}

    return handler


def sqs(vendor: CredentialVendor) -> Any:
    @sqs_handler(ring=RING, vendor=vendor)
    def handler(record: SqsRecord, context: Any) -> None:
        app_log.info("inside for %s %s", current_tenant().tenant_id, record.message_id)
        if record.json.get("fail"):
            raise RuntimeError("record handler failed")

    return handler


def sfn(vendor: CredentialVendor) -> Any:
    @sfn_task(ring=RING, vendor=vendor, name="reserve")
    def task(payload: dict[str, Any], context: Any) -> None:
        app_log.info("inside for %s", current_tenant().tenant_id)

    return task


# --- fields inside and after a scope -----------------------------------------------------


def test_api_records_carry_tenant_source_and_the_lambda_request_id(
    stdlib_json: ListHandler, issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    api(jwks, vendor)(http_api_event(issuer.token("acme")), LambdaContext(request_id="req-acme"))
    (record,) = [r for r in stdlib_json.records if r.getMessage().startswith("inside")]
    assert record.tenant_id == "acme"  # type: ignore[attr-defined]
    assert record.tenant_source == "jwt"  # type: ignore[attr-defined]
    assert record.aws_request_id == "req-acme"  # type: ignore[attr-defined]
    assert not hasattr(record, "message_id") and not hasattr(record, "execution_name")


def test_sqs_records_carry_their_message_id(stdlib_json: ListHandler, vendor: CredentialVendor) -> None:
    batch = sqs_event(
        [
            signed_sqs_record('{"n":1}', tenant_id="acme", message_id="m-acme"),
            signed_sqs_record('{"n":2}', tenant_id="globex", message_id="m-globex"),
        ]
    )
    sqs(vendor)(batch, LambdaContext(request_id="req-batch"))
    lines = logged(stdlib_json, "inside")
    assert [(line["tenantId"], line["message_id"]) for line in lines] == [
        ("acme", "m-acme"),
        ("globex", "m-globex"),
    ]
    assert {line["tenant_source"] for line in lines} == {"sqs"}
    assert {line["requestId"] for line in lines} == {"req-batch"}


def test_step_functions_records_carry_the_execution_name(
    stdlib_json: ListHandler, vendor: CredentialVendor
) -> None:
    event = sfn_task_event({"sku": "x"}, tenant_id="acme", execution_name="acme-exec-7")
    sfn(vendor)(event, LambdaContext(request_id="req-task"))
    (line,) = logged(stdlib_json, "inside")
    assert line["tenantId"] == "acme"
    assert line["tenant_source"] == "sfn"
    assert line["execution_name"] == "acme-exec-7"
    assert line["requestId"] == "req-task"
    assert "message_id" not in line


def test_a_custom_scope_has_tenant_fields_but_no_request_id(stdlib_json: ListHandler) -> None:
    with tenant_scope("acme"):
        app_log.info("inside a job")
    (line,) = logged(stdlib_json, "inside")
    assert (line["tenantId"], line["tenant_source"]) == ("acme", "custom")
    assert "requestId" not in line


def test_no_tenant_field_after_the_scope_ends(
    stdlib_json: ListHandler, issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    app_log.info("before")
    api(jwks, vendor)(http_api_event(issuer.token("acme")), LambdaContext())
    sqs(vendor)(sqs_event([signed_sqs_record("{}", tenant_id="globex")]), LambdaContext())
    with tenant_scope("initech"):
        app_log.info("inside a job")
    app_log.info("after")
    for record in stdlib_json.records:
        if not record.getMessage().startswith("inside"):
            assert not any(hasattr(record, name) for name in TENANT_FIELDS), record.getMessage()
    lines = {line["message"]: line for line in stdlib_json.json_lines()}
    for message in ("before", "after"):
        assert set(lines[message]) == {"timestamp", "level", "message", "logger"}


def test_the_runtime_request_id_is_not_overwritten() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.aws_request_id = "from-the-runtime"
    with tenant_scope("acme"):
        assert TenantLogFilter().filter(record)
    assert record.aws_request_id == "from-the-runtime"
    assert record.tenant_id == "acme"  # type: ignore[attr-defined]


# --- the stdlib JSON shape ---------------------------------------------------------------

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_tenant_json_formatter_shape(stdlib_json: ListHandler, vendor: CredentialVendor) -> None:
    sqs(vendor)(sqs_event([signed_sqs_record("{}", tenant_id="acme", message_id="m-1")]), LambdaContext())
    try:
        raise ValueError("broken")
    except ValueError:
        app_log.exception("outside, failing")
    inside = logged(stdlib_json, "inside")[0]
    assert inside == {
        "timestamp": inside["timestamp"],
        "level": "INFO",
        "message": "inside for acme m-1",
        "logger": "tests.app",
        "requestId": "req-1",
        "tenantId": "acme",
        "tenant_source": "sqs",
        "message_id": "m-1",
    }
    assert _TIMESTAMP.fullmatch(inside["timestamp"])
    failing = logged(stdlib_json, "outside")[0]
    assert failing["level"] == "ERROR" and failing["errorType"] == "ValueError"
    assert failing["stackTrace"][0] == "Traceback (most recent call last):"
    assert "tenantId" not in failing and "requestId" not in failing
    for line in stdlib_json.lines:
        assert "\n" not in line  # one JSON object per line


def test_tenant_json_formatter_prints_the_time_the_record_was_made_in_utc() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created, record.msecs = 86400 * 365 + 3723.25, 250.0  # 1971-01-01 01:02:03.250 UTC
    assert json.loads(TenantJsonFormatter().format(record))["timestamp"] == "1971-01-01T01:02:03.250Z"


def test_tenant_json_formatter_prints_a_value_json_cannot_hold_as_its_text() -> None:
    # GIVEN a field logged as a value JSON has no type for (a number as boto3 reads it from DynamoDB)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.message_id = Decimal("3.50")
    # THEN the line is still printed, with the value's text
    assert json.loads(TenantJsonFormatter().format(record))["message_id"] == "3.50"


def test_configure_logging_outside_lambda_prints_json_with_tenant_fields(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    level = root.level
    try:
        configure_logging(logging.INFO)
        (handler,) = root.handlers
        assert isinstance(handler.formatter, TenantJsonFormatter)
        assert any(isinstance(f, TenantLogFilter) for f in handler.filters)
        configure_logging(logging.INFO)  # idempotent: still one handler, one filter
        assert len(root.handlers) == 1 and len(handler.filters) == 1
        with tenant_scope("acme"):
            app_log.info("inside a job")
        app_log.info("after")
    finally:
        root.setLevel(level)
    inside, after = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert inside["tenantId"] == "acme" and inside["message"] == "inside a job"
    assert "tenantId" not in after


# --- Lambda's JSON log format ------------------------------------------------------------


def test_lambda_json_lines_carry_tenant_fields_inside_and_none_outside(
    lambda_json: ListHandler, issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    app_log.info("before")
    api(jwks, vendor)(http_api_event(issuer.token("acme")), LambdaContext(request_id="lambda-req-1"))
    RuntimeRequestId.value = "lambda-req-2"
    batch = sqs_event(
        [
            signed_sqs_record("{}", tenant_id="globex", message_id="m-globex"),
            signed_sqs_record('{"fail":true}', tenant_id="initech", message_id="m-initech"),
        ]
    )
    sqs(vendor)(batch, LambdaContext(request_id="lambda-req-2"))
    RuntimeRequestId.value = "lambda-req-3"
    sfn(vendor)(sfn_task_event({}, tenant_id="umbrella", execution_name="umbrella-1"), LambdaContext())
    app_log.info("after")

    inside = logged(lambda_json, "inside")
    assert [(line["tenantId"], line["tenant_source"], line["requestId"]) for line in inside] == [
        ("acme", "jwt", "lambda-req-1"),
        ("globex", "sqs", "lambda-req-2"),
        ("initech", "sqs", "lambda-req-2"),
        ("umbrella", "sfn", "lambda-req-3"),
    ]
    assert [line.get("message_id") for line in inside] == [None, "m-globex", "m-initech", None]
    assert inside[3]["execution_name"] == "umbrella-1"
    # The runtime's name for it is tenantId; the raw attribute is never printed a second time.
    assert all("tenant_id" not in line for line in lambda_json.json_lines())
    # The adapter's own warning about the failed record is logged in that record's scope.
    (failure,) = [line for line in lambda_json.json_lines() if "failed in its handler" in line["message"]]
    assert (failure["tenantId"], failure["message_id"]) == ("initech", "m-initech")
    outside = [line for line in lambda_json.json_lines() if not line["message"].startswith("inside")]
    outside.remove(failure)
    assert {line["message"] for line in outside} >= {"before", "after"}
    for line in outside:
        assert not {"tenantId", "tenant_source", "message_id", "execution_name"} & set(line), line


# --- concurrency: each line carries only its own tenant ----------------------------------

TENANTS = [f"tenant-{i:02d}" for i in range(8)]
_INSIDE = re.compile(r"inside for (\S+)(?: (\S+))?")


def check_own_tenant(lines: list[dict[str, Any]]) -> None:
    for line in lines:
        match = _INSIDE.fullmatch(line["message"])
        assert match, line
        assert line["tenantId"] == match[1], line
        if match[2] is not None:
            assert line["message_id"] == match[2], line


def test_concurrent_api_invocations_log_only_their_own_tenant(
    lambda_json: ListHandler, issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    barrier = threading.Barrier(len(TENANTS), timeout=30)  # a guard against deadlock, not a timing

    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        tenant = current_tenant().tenant_id
        app_log.info("inside for %s", tenant)
        barrier.wait()  # every invocation is inside its scope at once
        for _ in range(20):
            app_log.info("inside for %s", tenant)
        return {"statusCode": 200}

    tokens = {t: issuer.token(t) for t in TENANTS}
    with ThreadPoolExecutor(len(TENANTS)) as pool:
        results = list(pool.map(lambda t: handler(http_api_event(tokens[t]), LambdaContext()), TENANTS))
    assert [r["statusCode"] for r in results] == [200] * len(TENANTS)
    inside = logged(lambda_json, "inside")
    assert len(inside) == 21 * len(TENANTS)
    check_own_tenant(inside)
    assert {line["tenantId"] for line in inside} == set(TENANTS)


def test_concurrent_mixed_tenant_sqs_batches_log_only_their_own_tenant(
    lambda_json: ListHandler, vendor: CredentialVendor
) -> None:
    workers = 4
    barrier = threading.Barrier(workers, timeout=30)

    @sqs_handler(ring=RING, vendor=vendor)
    def handler(record: SqsRecord, context: Any) -> None:
        tenant = current_tenant().tenant_id
        app_log.info("inside for %s %s", tenant, record.message_id)
        if record.json.get("first"):
            barrier.wait()  # every batch is inside a record's scope at once
        for _ in range(5):
            app_log.info("inside for %s %s", tenant, record.message_id)
        if record.json.get("fail"):
            raise RuntimeError("record handler failed")

    def batch(worker: int) -> dict[str, Any]:
        records = []
        for i in range(10):
            tenant = TENANTS[(worker + i) % len(TENANTS)]
            body = json.dumps({"first": i == 0, "fail": i == 7})
            records.append(signed_sqs_record(body, tenant_id=tenant, message_id=f"w{worker}-m{i}"))
        return sqs_event(records)

    batches = [batch(w) for w in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda b: handler(b, LambdaContext()), batches))
    assert [r["batchItemFailures"] for r in results] == [
        [{"itemIdentifier": f"w{w}-m7"}] for w in range(workers)
    ]
    inside = logged(lambda_json, "inside")
    assert len(inside) == workers * 10 * 6
    check_own_tenant(inside)


def test_a_worker_thread_in_the_scope_logs_the_same_tenant(stdlib_json: ListHandler) -> None:
    from tenantscope import in_tenant_scope

    with tenant_scope("acme"), ThreadPoolExecutor(1) as pool:
        pool.submit(in_tenant_scope(lambda: app_log.info("inside for acme"))).result()
    with ThreadPoolExecutor(1) as pool:  # a thread outside any scope: no tenant
        pool.submit(lambda: app_log.info("outside in a thread")).result()
    lines = {line["message"]: line for line in stdlib_json.json_lines()}
    assert lines["inside for acme"]["tenantId"] == "acme"
    assert "tenantId" not in lines["outside in a thread"]


# --- the filter never drops a record -----------------------------------------------------


def test_the_filter_never_drops_a_record(stdlib_json: ListHandler) -> None:
    log_filter = TenantLogFilter()
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "m", None, None)
    assert log_filter.filter(record) is True
    with tenant_scope("acme"):
        assert log_filter.filter(record) is True
    app_log.setLevel(logging.DEBUG)
    try:
        calls = 0
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
            app_log.log(level, "outside %d", level)
            with tenant_scope("acme"):
                app_log.log(level, "inside %d", level)
            calls += 2
    finally:
        app_log.setLevel(logging.NOTSET)
    assert len(stdlib_json.records) == calls


def test_a_handler_puts_the_tenant_filter_on_the_root_handlers_at_its_first_unit(
    issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    # GIVEN a root handler without the tenant filter (one set up after tenantscope was imported)
    handler = ListHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:

        @api_handler(jwks=jwks, vendor=vendor)
        def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
            return {"statusCode": 200}

        assert handler.filters == []  # building a handler changes no logging
        # WHEN its first unit of work runs THEN the filter is on the handler, once
        whoami(http_api_event(issuer.token("acme")), LambdaContext())
        whoami(http_api_event(issuer.token("acme")), LambdaContext())
        assert [type(f).__name__ for f in handler.filters] == ["TenantLogFilter"]
    finally:
        root.removeHandler(handler)


def test_the_aws_payload_loggers_drop_their_debug_records_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the loggers that print what boto3 and botocore send and receive at DEBUG, without the
    # filter an earlier test's tenant session put on them
    for name in AWS_PAYLOAD_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    monkeypatch.setattr(logging.getLogger(), "filters", [])
    assert AWS_PAYLOAD_LOGGERS == (
        "botocore.auth",
        "botocore.endpoint",
        "botocore.parsers",
        "boto3.resources.action",
        "boto3.resources.collection",
        "boto3.dynamodb.table",
    )
    # WHEN their DEBUG lines are dropped, twice (each tenant session's first client does it)
    drop_aws_payload_lines()
    drop_aws_payload_lines()
    for name in AWS_PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        # THEN each has one filter more, which drops a DEBUG record and keeps every other
        (payload_filter,) = logger.filters
        for level, kept in ((logging.DEBUG, False), (logging.DEBUG + 1, True), (logging.INFO, True)):
            record = logging.LogRecord(name, level, __file__, 1, "m", None, None)
            assert (bool(logger.filter(record)), payload_filter.filter(record)) == (kept, kept), (name, level)
    assert logging.getLogger().filters == []  # the root logger's records are not filtered
