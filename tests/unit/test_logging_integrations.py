"""The tenant fields reach Powertools Logger and structlog lines with one call each, under the names
of Lambda's JSON log format (``tenantId``, ``requestId``, ``tenant_source``, ``message_id``,
``execution_name``), which docs/observability.md's queries use: inside a scope only, each line its
own unit's tenant."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aws_lambda_powertools import Logger

from tenantscope import (
    SqsRecord,
    TenantJsonFormatter,
    add_tenant_fields,
    api_handler,
    sqs_handler,
    tenant_fields_processor,
    tenant_log_fields,
    tenant_scope,
)
from tenantscope._credentials import CredentialVendor
from tenantscope._jwt import JwksCache
from tenantscope._logging import LOG_FIELD_NAMES, TenantLogFilter
from tenantscope.testing import RING, LambdaContext, LocalIssuer, http_api_event, signed_sqs_record, sqs_event

OBSERVABILITY = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def tenant_keys(line: dict[str, Any]) -> dict[str, Any]:
    return {key: line[key] for key in LOG_FIELD_NAMES.values() if key in line}


# --- Powertools -----------------------------------------------------------------------------------


@pytest.fixture
def powertools() -> Iterator[tuple[Logger, io.StringIO]]:
    stream = io.StringIO()
    service = f"notes-{uuid.uuid4().hex[:8]}"
    logger = add_tenant_fields(Logger(service=service, stream=stream))
    yield logger, stream
    logging.getLogger(service).handlers.clear()


def test_powertools_lines_carry_the_tenant_inside_a_scope_only(
    powertools: tuple[Logger, io.StringIO],
) -> None:
    logger, stream = powertools
    logger.info("before")
    with tenant_scope("acme"):
        logger.info("inside")
    logger.info("after")
    before, inside, after = lines(stream)
    assert tenant_keys(before) == {} and tenant_keys(after) == {}
    assert tenant_keys(inside) == {"tenantId": "acme", "tenant_source": "custom"}
    assert inside["service"] == logger.service and inside["message"] == "inside"


def test_powertools_child_loggers_carry_it_too(powertools: tuple[Logger, io.StringIO]) -> None:
    logger, stream = powertools
    child = Logger(service=logger.service, child=True)
    add_tenant_fields(child)  # a child shares its parent's handler: equipping it again is harmless
    with tenant_scope("globex"):
        child.info("from a child")
    (line,) = lines(stream)
    assert line["tenantId"] == "globex"


def test_add_tenant_fields_is_idempotent(powertools: tuple[Logger, io.StringIO]) -> None:
    logger, stream = powertools
    add_tenant_fields(logger)
    with tenant_scope("acme"):
        logger.info("once")
    filters = logger.registered_handler.filters
    assert len(filters) == len(set(map(id, filters)))
    assert lines(stream)[0]["tenantId"] == "acme"


def test_a_logger_without_handlers_is_refused() -> None:
    with pytest.raises(ValueError, match="no handler"):
        add_tenant_fields(logging.getLogger(f"bare-{uuid.uuid4().hex}"))


def test_an_object_that_is_no_logger_is_refused_as_having_no_handler() -> None:
    with pytest.raises(ValueError, match=r"^'notes' has no handler yet: create its parent logger first$"):
        add_tenant_fields("notes")


def test_powertools_lines_of_an_api_request_and_of_each_sqs_record(
    powertools: tuple[Logger, io.StringIO], issuer: LocalIssuer, jwks: JwksCache, vendor: CredentialVendor
) -> None:
    logger, stream = powertools

    @api_handler(jwks=jwks, vendor=vendor)
    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        logger.info("api")
        return {"statusCode": 200}

    @sqs_handler(ring=RING, vendor=vendor)
    def worker(record: SqsRecord, context: Any) -> None:
        logger.info("record")

    assert api(http_api_event(issuer.token("acme")), LambdaContext(request_id="req-1"))["statusCode"] == 200
    records = [
        signed_sqs_record("{}", tenant_id=tenant, message_id=f"m-{tenant}") for tenant in ("acme", "globex")
    ]
    assert worker(sqs_event(records), LambdaContext(request_id="req-2")) == {"batchItemFailures": []}
    api_line, *record_lines = lines(stream)
    assert tenant_keys(api_line) == {"tenantId": "acme", "tenant_source": "jwt", "requestId": "req-1"}
    assert [tenant_keys(line) for line in record_lines] == [
        {"tenantId": t, "tenant_source": "sqs", "requestId": "req-2", "message_id": f"m-{t}"}
        for t in ("acme", "globex")
    ]


# --- structlog ------------------------------------------------------------------------------------


@pytest.fixture
def structlog_json() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            tenant_fields_processor,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    yield stream
    structlog.reset_defaults()


def test_structlog_lines_carry_the_tenant_inside_a_scope_only(structlog_json: io.StringIO) -> None:
    log = structlog.get_logger()
    log.info("before")
    with tenant_scope("acme"):
        log.info("inside", note="n-1")
    log.info("after")
    before, inside, after = lines(structlog_json)
    assert tenant_keys(before) == {} and tenant_keys(after) == {}
    assert tenant_keys(inside) == {"tenantId": "acme", "tenant_source": "custom"}
    assert inside["note"] == "n-1"


def test_structlog_cannot_be_told_another_tenant_inside_a_scope(structlog_json: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(tenantId="mallory")
    try:
        with tenant_scope("acme"):
            structlog.get_logger().info("inside", tenantId="also-mallory")
    finally:
        structlog.contextvars.clear_contextvars()
    (line,) = lines(structlog_json)
    assert line["tenantId"] == "acme"


# --- one naming -------------------------------------------------------------------------------


def test_stdlib_json_lines_use_the_same_names() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TenantJsonFormatter())
    logger = logging.getLogger(f"stdlib-{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    add_tenant_fields(logger)
    handler.addFilter(TenantLogFilter())
    with tenant_scope("acme"):
        logger.info("inside")
        expected = tenant_log_fields()
    (line,) = lines(stream)
    assert tenant_keys(line) == expected == {"tenantId": "acme", "tenant_source": "custom"}


def test_the_docs_name_every_field_and_query_only_those() -> None:
    text = OBSERVABILITY.read_text(encoding="utf-8")
    logs = text.split("\n## Logs\n", 1)[1].split("\n## ", 1)[0]
    for name in LOG_FIELD_NAMES.values():
        assert f"`{name}`" in logs, name
    queries = "\n".join(re.findall(r"```text\n(.*?)```", logs, re.DOTALL))
    assert "tenantId" in queries and "tenant_id" not in queries.replace("coalesce(tenantId, tenant_id)", "")


def test_the_docs_query_for_records_that_did_not_succeed_finds_each_and_only_those(
    vendor: CredentialVendor,
) -> None:
    # GIVEN the documented Logs Insights filter, and tenantscope's lines printed as Lambda's JSON
    text = OBSERVABILITY.read_text(encoding="utf-8")
    (pattern,) = re.findall(r'logger = "tenantscope" and message like /(.+)/\n', text)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TenantJsonFormatter())
    handler.addFilter(TenantLogFilter())
    logging.getLogger("tenantscope").addHandler(handler)

    @sqs_handler(ring=RING, vendor=vendor)
    def worker(record: SqsRecord, context: Any) -> None:
        if record.body == '"fails"':
            raise LookupError("no such order")

    forged = signed_sqs_record('"ok"', tenant_id="globex", message_id="m-forged")
    forged["body"] = '"tampered"'
    records = [
        signed_sqs_record('"ok"', tenant_id="acme", message_id="m-ok"),
        forged,
        signed_sqs_record('"fails"', tenant_id="initech", message_id="m-fails"),
    ]
    # WHEN a batch with one success, one refusal and one failure in its handler runs
    try:
        response = worker(sqs_event(records), LambdaContext())
    finally:
        logging.getLogger("tenantscope").removeHandler(handler)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-forged"}, {"itemIdentifier": "m-fails"}]}
    # THEN the query finds a line for each record that did not succeed, with the tenant only where
    # the record reached its scope, and nothing for the one that succeeded
    found = [line for line in lines(stream) if re.search(pattern, line["message"])]
    assert [line["message"].split(":")[1].strip() for line in found] == [
        "SQS record m-forged refused",
        "SQS record m-fails failed in its handler",
    ]
    assert [line.get("tenantId") for line in found] == [None, "initech"]
