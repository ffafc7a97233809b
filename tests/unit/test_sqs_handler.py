"""@sqs_handler: each record is verified on its own, runs as its own tenant, and fails alone.

Every envelope is sealed by the real producer (tests/envelopes.py) and delivered in the
shape of a real Lambda SQS event.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import os
import time
from collections.abc import Callable
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest

from tenantscope import (
    ConfigurationError,
    InMemoryReplayGuard,
    NoTenantContext,
    Reason,
    SqsRecord,
    StsRefused,
    TemporarilyUnavailable,
    TenantAuthError,
    current_tenant,
    send_message,
    sqs_handler,
    sqs_record_handler,
)
from tenantscope import sqs as sqs_module
from tenantscope._config import Settings
from tenantscope._context import active_scope
from tenantscope._credentials import CredentialVendor, FakeSts, ScopedCredentials
from tenantscope._envelope import ATTR_ENVELOPE, ATTR_SIGNATURE, ATTR_TENANT
from tenantscope._policy import AssumeRoleRequest
from tenantscope._replay import ReplayGuard
from tenantscope._resolve import resolve_sqs_record
from tenantscope.sqs import _remaining_seconds
from tenantscope.testing import (
    ACCOUNT_ID,
    FIFO_QUEUE_ARN,
    KEY,
    KEY_ID,
    QUEUE_ARN,
    REGION,
    RING,
    RING_DOCUMENT,
    key_bytes,
    make_ring,
    ring_spec,
    sign_attributes,
    signed_sqs_record,
    sqs_event,
    sqs_record,
)
from tests.conftest import LambdaContext, signed_as
from tests.fakes import RecordingSqs

OTHER_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:tenantscope-other"
TTL = Settings.load(environ={}).sqs_envelope_ttl_seconds
SKEW = Settings.load(environ={}).clock_skew_seconds
BAD_ID = "bad-record"
BAD_TENANT = "globex"
GOOD = (("good-acme", "acme"), ("good-initech", "initech"))


pytestmark = pytest.mark.usefixtures("no_scope_leaks")


def make_handler(
    vendor: CredentialVendor, *, replay_guard: ReplayGuard | None = None, ring: Any = RING
) -> Any:
    """A record handler that notes what it saw; a body {"fail": ...} makes it raise after noting."""
    seen: list[tuple[str, str, str]] = []
    records: list[SqsRecord] = []

    @sqs_handler(ring=ring, vendor=vendor, replay_guard=replay_guard)
    def handler(record: SqsRecord, context: Any) -> None:
        seen.append((record.message_id, current_tenant().tenant_id, signed_as()[0]))
        records.append(record)
        body = record.json
        if isinstance(body, dict) and "fail" in body:
            raise RuntimeError(str(body["fail"]))

    handler.seen = seen  # type: ignore[attr-defined]
    handler.records = records  # type: ignore[attr-defined]
    return handler


def good_records(queue_arn: str = QUEUE_ARN) -> list[dict[str, Any]]:
    return [
        signed_sqs_record(json.dumps({"tenant": t, "n": i}), tenant_id=t, queue_arn=queue_arn, message_id=m)
        for i, (m, t) in enumerate(GOOD)
    ]


def bad(body: str = '{"order":1}', **kwargs: Any) -> dict[str, Any]:
    return signed_sqs_record(body, tenant_id=BAD_TENANT, message_id=BAD_ID, **kwargs)


def with_attribute(record: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    if value is None:
        del record["messageAttributes"][name]
    elif isinstance(value, dict):
        record["messageAttributes"][name] = value
    else:
        record["messageAttributes"][name]["stringValue"] = value
    return record


def attribute(record: dict[str, Any], name: str) -> str:
    value: str = record["messageAttributes"][name]["stringValue"]
    return value


def with_header_field(record: dict[str, Any], index: int, value: str) -> dict[str, Any]:
    fields = attribute(record, ATTR_ENVELOPE).split(" ")
    fields[index] = value
    return with_attribute(record, ATTR_ENVELOPE, " ".join(fields))


def body_changed_by_one_byte() -> dict[str, Any]:
    record = bad('{"order":1}')
    record["body"] = '{"order":2}'
    return record


def with_signature(text: str) -> Callable[[], dict[str, Any]]:
    return lambda: with_attribute(bad(), ATTR_SIGNATURE, text)


def binary(name: str) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        record = bad()
        value = attribute(record, name).encode()
        return with_attribute(
            record,
            name,
            {
                "binaryValue": base64.b64encode(value).decode(),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Binary",
            },
        )

    return build


def oversized(name: str) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        record = bad()
        return with_attribute(record, name, attribute(record, name) + "a" * 600)

    return build


def lifetime_beyond_maximum() -> dict[str, Any]:
    now = int(time.time())
    body = '{"order":1}'
    attributes = sign_attributes(body, tenant_id=BAD_TENANT, issued_at=now, lifetime=TTL * 10)
    return sqs_record(body, attributes, message_id=BAD_ID)


# Each builds one record (message id BAD_ID, sealed for BAD_TENANT) that must be refused.
BAD_RECORDS: dict[str, Callable[[], dict[str, Any]]] = {
    "body changed by one byte": body_changed_by_one_byte,
    "tenant swapped to another valid tenant": lambda: with_attribute(bad(), ATTR_TENANT, "umbrella"),
    "unknown key id": lambda: bad(ring=make_ring({"attacker-key": key_bytes("attacker")})),
    "retired key id": lambda: bad(ring=make_ring({"k0": key_bytes("k0"), "k1": KEY}, active="k0")),
    "listed key id with the wrong key": lambda: bad(ring=make_ring({"k1": key_bytes("not-k1")})),
    "expired": lambda: bad(issued_at=int(time.time()) - TTL - 3600),
    "issued in the future beyond the skew": lambda: bad(issued_at=int(time.time()) + SKEW + 600),
    "lifetime beyond the maximum": lifetime_beyond_maximum,
    "sealed for another queue": lambda: bad(sealed_for=OTHER_QUEUE_ARN),
    "tenant attribute missing": lambda: with_attribute(bad(), ATTR_TENANT, None),
    "envelope attribute missing": lambda: with_attribute(bad(), ATTR_ENVELOPE, None),
    "signature attribute missing": lambda: with_attribute(bad(), ATTR_SIGNATURE, None),
    "signature in the standard base64 alphabet": with_signature("+/" * 21 + "A"),
    "signature with padding": with_signature("A" * 43 + "="),
    "signature with invalid characters": with_signature("!" * 43),
    "signature truncated": with_signature("A" * 42),
    "signature empty": with_signature(""),
    "tenant attribute oversized": oversized(ATTR_TENANT),
    "envelope attribute oversized": oversized(ATTR_ENVELOPE),
    "signature attribute oversized": oversized(ATTR_SIGNATURE),
    "unknown version": lambda: with_header_field(bad(), 0, "2"),
    "key id in the header swapped": lambda: with_header_field(bad(), 1, "k0"),
    "expiry in the header extended": lambda: with_header_field(bad(), 3, str(int(time.time()) + 3600)),
    "tenant attribute binary": binary(ATTR_TENANT),
    "envelope attribute binary": binary(ATTR_ENVELOPE),
    "signature attribute binary": binary(ATTR_SIGNATURE),
    "no message attributes at all": lambda: {**bad(), "messageAttributes": {}},
    "message attributes null": lambda: {**bad(), "messageAttributes": None},
    "body not a string": lambda: {**bad(), "body": {"order": 1}},
    "no eventSourceARN": lambda: {k: v for k, v in bad().items() if k != "eventSourceARN"},
}


# The reason category each case is refused for (what the log says), so none passes by accident.
REASONS = {
    "body changed by one byte": (Reason.BAD_ENVELOPE_SIGNATURE, None),
    "tenant swapped to another valid tenant": (Reason.BAD_ENVELOPE_SIGNATURE, None),
    "unknown key id": (Reason.UNKNOWN_SIGNING_KEY, None),
    "retired key id": (Reason.UNKNOWN_SIGNING_KEY, None),
    "listed key id with the wrong key": (Reason.BAD_ENVELOPE_SIGNATURE, None),
    "expired": (Reason.ENVELOPE_EXPIRED, None),
    "issued in the future beyond the skew": (Reason.ENVELOPE_FROM_THE_FUTURE, None),
    "lifetime beyond the maximum": (Reason.ENVELOPE_LIFETIME, None),
    "sealed for another queue": (Reason.BAD_ENVELOPE_SIGNATURE, None),
    "tenant attribute missing": (Reason.MISSING_ENVELOPE, "tenant"),
    "envelope attribute missing": (Reason.MISSING_ENVELOPE, "envelope"),
    "signature attribute missing": (Reason.MISSING_ENVELOPE, "signature"),
    "signature in the standard base64 alphabet": (Reason.MALFORMED_ENVELOPE, None),
    "signature with padding": (Reason.MALFORMED_ENVELOPE, None),
    "signature with invalid characters": (Reason.MALFORMED_ENVELOPE, None),
    "signature truncated": (Reason.MALFORMED_ENVELOPE, None),
    "signature empty": (Reason.MALFORMED_ENVELOPE, None),
    "tenant attribute oversized": (Reason.OVERSIZED_ENVELOPE, "tenant"),
    "envelope attribute oversized": (Reason.OVERSIZED_ENVELOPE, "envelope"),
    "signature attribute oversized": (Reason.OVERSIZED_ENVELOPE, "signature"),
    "unknown version": (Reason.UNSUPPORTED_ENVELOPE_VERSION, None),
    "key id in the header swapped": (Reason.UNKNOWN_SIGNING_KEY, None),
    "expiry in the header extended": (Reason.BAD_ENVELOPE_SIGNATURE, None),
    "tenant attribute binary": (Reason.MISSING_ENVELOPE, "tenant"),
    "envelope attribute binary": (Reason.MISSING_ENVELOPE, "envelope"),
    "signature attribute binary": (Reason.MISSING_ENVELOPE, "signature"),
    "no message attributes at all": (Reason.MISSING_ENVELOPE, "envelope"),
    "message attributes null": (Reason.MALFORMED_RECORD, None),
    "body not a string": (Reason.MALFORMED_RECORD, None),
    "no eventSourceARN": (Reason.MALFORMED_RECORD, None),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_each_bad_record_is_refused_for_its_own_reason(case: str) -> None:
    with pytest.raises(TenantAuthError) as caught:
        resolve_sqs_record(BAD_RECORDS[case](), RING, Settings.load(environ={}), now=time.time())
    assert (caught.value.reason, caught.value.detail) == REASONS[case]


RECEIVED_DETAIL = (
    "a message as ReceiveMessage answers it, not a record of Lambda's SQS event: "
    "convert it with tenantscope.testing.record_from_received"
)


@pytest.mark.parametrize(
    ("record", "detail"),
    [
        ({"MessageId": "m-1", "Body": "{}", "MessageAttributes": {}}, RECEIVED_DETAIL),
        ({"body": "{}", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q"}, None),  # no id at all
        ({"MessageId": "m-1", "messageId": "m-1", "body": 1}, None),  # Lambda's record, malformed
    ],
    ids=["as ReceiveMessage answers it", "a record without messageId", "a record with both ids"],
)
def test_only_a_message_as_receive_message_answers_it_is_named_so(
    record: dict[str, Any], detail: str | None
) -> None:
    with pytest.raises(TenantAuthError) as caught:
        resolve_sqs_record(record, RING, Settings.load(environ={}), now=time.time())
    assert (caught.value.reason, caught.value.detail) == (Reason.MALFORMED_RECORD, detail)


def test_a_record_resolves_to_its_envelopes_tenant_with_the_ids_its_logs_carry() -> None:
    record = signed_sqs_record("{}", tenant_id="acme", message_id="m-1")
    record["messageAttributes"] = MappingProxyType(record["messageAttributes"])  # any mapping
    context, envelope = resolve_sqs_record(record, RING, Settings.load(environ={}), now=time.time())
    assert (context.tenant_id, context.source, context.subject) == ("acme", "sqs", None)
    assert dict(context.claims) == {"envelope_id": envelope.envelope_id, "message_id": "m-1"}


@pytest.mark.parametrize("position", [0, 1, 2], ids=["first", "middle", "last"])
@pytest.mark.parametrize("build_bad", list(BAD_RECORDS.values()), ids=list(BAD_RECORDS))
def test_a_bad_record_fails_alone_and_never_runs(
    vendor: CredentialVendor, fake_sts: FakeSts, build_bad: Callable[[], dict[str, Any]], position: int
) -> None:
    records = good_records()
    records.insert(position, build_bad())
    handler = make_handler(vendor)

    response = handler(sqs_event(records), LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": BAD_ID}]}
    assert handler.seen == [(m, t, t) for m, t in GOOD]
    assert sorted(r.tenant_id for r in fake_sts.requests) == ["acme", "initech"]


def test_an_envelope_within_the_clock_skew_is_accepted(vendor: CredentialVendor) -> None:
    handler = make_handler(vendor)
    record = signed_sqs_record("{}", tenant_id="acme", message_id="m-1", issued_at=int(time.time()) + 30)
    assert handler(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    assert handler.seen == [("m-1", "acme", "acme")]


def test_every_record_bad_reports_all_and_still_returns(vendor: CredentialVendor, fake_sts: FakeSts) -> None:
    records = []
    for n, build in enumerate(BAD_RECORDS.values()):
        record = build()
        record["messageId"] = f"bad-{n}"
        records.append(record)
    handler = make_handler(vendor)

    response = handler(sqs_event(records), LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": f"bad-{n}"} for n in range(len(records))]}
    assert handler.seen == []
    assert fake_sts.requests == []


def test_a_failing_handler_fails_only_its_record(vendor: CredentialVendor) -> None:
    records = good_records()
    records.insert(1, signed_sqs_record('{"fail":"boom"}', tenant_id=BAD_TENANT, message_id=BAD_ID))
    handler = make_handler(vendor)

    response = handler(sqs_event(records), LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": BAD_ID}]}
    assert [s[0] for s in handler.seen] == ["good-acme", BAD_ID, "good-initech"]
    assert all(tenant == creds for _, tenant, creds in handler.seen)


def test_lambda_tenant_isolation_mode_fails_the_records_of_other_tenants(
    vendor: CredentialVendor, fake_sts: FakeSts
) -> None:
    # GIVEN a batch of acme and initech records in an environment Lambda bound to acme
    handler = make_handler(vendor)
    response = handler(sqs_event(good_records()), LambdaContext(tenant_id="acme"))
    # THEN only acme's record runs; initech's is a batch item failure that never reached STS
    assert response == {"batchItemFailures": [{"itemIdentifier": "good-initech"}]}
    assert handler.seen == [("good-acme", "acme", "acme")]
    assert [r.tenant_id for r in fake_sts.requests] == ["acme"]


class RefusingSts(FakeSts):
    """STS that refuses the role for some tenants only."""

    def __init__(self, refused: set[str]) -> None:
        super().__init__()
        self.refused = refused

    def assume_role(self, request: AssumeRoleRequest) -> ScopedCredentials:
        if request.tenant_id in self.refused:
            self.requests.append(request)
            raise StsRefused(Reason.STS_REFUSED, "AccessDenied")
        return super().assume_role(request)


def test_sts_refusing_one_tenant_fails_only_its_records() -> None:
    sts = RefusingSts({BAD_TENANT})
    handler = make_handler(CredentialVendor(sts, sleep=lambda _: None))
    records = good_records()
    records.insert(1, signed_sqs_record("{}", tenant_id=BAD_TENANT, message_id=BAD_ID))

    response = handler(sqs_event(records), LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": BAD_ID}]}
    assert handler.seen == [(m, t, t) for m, t in GOOD]
    assert sorted(r.tenant_id for r in sts.requests) == ["acme", BAD_TENANT, "initech"]


def test_a_batch_where_nothing_succeeds_for_an_outage_fails_as_a_whole() -> None:
    # GIVEN STS refusing every tenant of the batch, and a forged record beside them
    sts = RefusingSts({"acme", "initech"})
    handler = make_handler(CredentialVendor(sts, sleep=lambda _: None))
    records = [*good_records(), with_signature("A" * 43)()]
    # WHEN the batch runs THEN the invocation fails with the outage, a typed error with a safe
    # message: Lambda retries every record (none was processed) even where ReportBatchItemFailures
    # is off, and slows its polling while STS is out
    with pytest.raises(StsRefused, match=r"^STS refused AssumeRole \(AccessDenied\)$"):
        handler(sqs_event(records), LambdaContext())
    assert handler.seen == []


def test_a_batch_that_is_only_refused_is_answered_record_by_record(vendor: CredentialVendor) -> None:
    # Refusals are the senders' faults, not an outage: reported, so that they reach the DLQ alone.
    handler = make_handler(vendor)
    forged = [with_signature("A" * 43)(), with_attribute(bad(), ATTR_TENANT, "initech")]
    assert handler(sqs_event(forged), LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": BAD_ID}, {"itemIdentifier": BAD_ID}]
    }


def test_an_outage_beside_a_record_that_succeeded_is_reported_for_its_record_alone() -> None:
    sts = RefusingSts({"initech"})
    handler = make_handler(CredentialVendor(sts, sleep=lambda _: None))
    assert handler(sqs_event(good_records()), LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": "good-initech"}]
    }
    assert handler.seen == [("good-acme", "acme", "acme")]


def test_replay_guard_refuses_an_envelope_under_a_new_message_id(vendor: CredentialVendor) -> None:
    handler = make_handler(vendor, replay_guard=InMemoryReplayGuard())
    original = signed_sqs_record('{"pay":100}', tenant_id="acme", message_id="m-1")
    replayed = {**copy.deepcopy(original), "messageId": "m-2", "receiptHandle": "AQEBreplayed"}
    other = signed_sqs_record('{"pay":5}', tenant_id="initech", message_id="m-3")

    first = handler(sqs_event([original, replayed, other]), LambdaContext())
    redelivered = handler(sqs_event([original]), LambdaContext())
    replayed_later = handler(sqs_event([replayed]), LambdaContext())

    assert first == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert redelivered == {"batchItemFailures": []}  # acknowledged: it was processed before
    assert replayed_later == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert [s[0] for s in handler.seen] == ["m-1", "m-3"]


def test_a_batch_redelivered_after_it_failed_as_a_whole_runs_only_what_did_not_complete(
    vendor: CredentialVendor, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a guard, and a batch whose invocation failed as a whole after its first record
    # succeeded (here the second record's handler escapes the batch, as a timeout would)
    done = signed_sqs_record('{"pay":100}', tenant_id="acme", message_id="m-1")
    interrupted = signed_sqs_record('{"interrupt":true}', tenant_id="initech", message_id="m-2")
    calls: list[str] = []
    now = [1_800_000_000.0]

    @sqs_handler(ring=RING, vendor=vendor, replay_guard=InMemoryReplayGuard(clock=lambda: now[0]))
    def interrupting(record: SqsRecord, context: Any) -> None:
        calls.append(record.message_id)
        if "interrupt" in record.json and calls.count(record.message_id) == 1:
            raise KeyboardInterrupt  # escapes the record, and so the batch

    with pytest.raises(KeyboardInterrupt):
        interrupting(sqs_event([done, interrupted]), LambdaContext(timeout=30))
    # WHEN SQS redelivers the whole batch, after its visibility timeout (longer than the function's)
    now[0] += 180
    with caplog.at_level(logging.INFO, logger="tenantscope"):
        response = interrupting(sqs_event([done, interrupted]), LambdaContext())
    # THEN the record that completed is acknowledged without running again; the other runs
    assert response == {"batchItemFailures": []}
    assert calls == ["m-1", "m-2", "m-2"]
    assert "tenantscope: SQS record m-1 was processed before: acknowledged, not run again" in caplog.messages


def test_a_failed_message_redriven_from_the_dlq_is_processed_once(vendor: CredentialVendor) -> None:
    # GIVEN a guard, and a message whose handler failed on every delivery
    now = [1_800_000_000.0]
    handler = make_handler(vendor, replay_guard=InMemoryReplayGuard(lease_seconds=900, clock=lambda: now[0]))
    failing = signed_sqs_record('{"fail": "downstream down"}', tenant_id="acme", message_id="m-1")
    assert handler(sqs_event([failing]), LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": "m-1"}]
    }
    # WHEN the dead-letter queue redrives it later, under a new message id
    redriven = {**copy.deepcopy(failing), "messageId": "m-dlq"}
    now[0] += 3600
    # THEN that one carrier is processed (and fails again here: the downstream is still down)
    assert handler(sqs_event([redriven]), LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": "m-dlq"}]
    }
    assert [s[0] for s in handler.seen] == ["m-1", "m-dlq"]


def test_a_completed_message_copied_under_a_new_id_is_refused_even_later(vendor: CredentialVendor) -> None:
    now = [1_800_000_000.0]
    handler = make_handler(vendor, replay_guard=InMemoryReplayGuard(lease_seconds=900, clock=lambda: now[0]))
    original = signed_sqs_record('{"pay":100}', tenant_id="acme", message_id="m-1")
    assert handler(sqs_event([original]), LambdaContext()) == {"batchItemFailures": []}
    now[0] += 3600
    replayed = {**copy.deepcopy(original), "messageId": "m-2"}
    assert handler(sqs_event([replayed]), LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": "m-2"}]
    }
    assert [s[0] for s in handler.seen] == ["m-1"]


def test_without_a_replay_guard_a_copied_envelope_is_accepted(vendor: CredentialVendor) -> None:
    """Documents the default: replay protection needs TENANTSCOPE_REPLAY_TABLE (or a guard)."""
    handler = make_handler(vendor)
    original = signed_sqs_record("{}", tenant_id="acme", message_id="m-1")
    replayed = {**copy.deepcopy(original), "messageId": "m-2"}
    assert handler(sqs_event([original, replayed]), LambdaContext()) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    "tenants",
    [[f"tenant-{n}" for n in range(10)], ["acme", "globex"] * 5],
    ids=["ten-tenants", "alternating"],
)
def test_mixed_tenant_batch_each_record_sees_only_its_tenant(
    vendor: CredentialVendor, fake_sts: FakeSts, tenants: list[str]
) -> None:
    observed: list[tuple[str, str, str, str]] = []

    @sqs_handler(ring=RING, vendor=vendor)
    def handler(record: SqsRecord, context: Any) -> None:
        signed_tenant, access_key = signed_as()
        observed.append((record.json["tenant"], current_tenant().tenant_id, signed_tenant, access_key))

    records = [
        signed_sqs_record(json.dumps({"tenant": t, "n": n}), tenant_id=t, message_id=f"m-{n}")
        for n, t in enumerate(tenants)
    ]
    assert handler(sqs_event(records), LambdaContext()) == {"batchItemFailures": []}

    assert [o[0] for o in observed] == tenants
    assert all(body == tenant == creds for body, tenant, creds, _ in observed)
    keys = {tenant: key for _, tenant, _, key in observed}
    assert len(set(keys.values())) == len(set(tenants))  # one credential set per tenant
    assert sorted(r.tenant_id for r in fake_sts.requests) == sorted(set(tenants))
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_a_message_sent_while_handling_a_record_continues_the_records_trace(vendor: CredentialVendor) -> None:
    # GIVEN a record that arrived with the trace of the request that sent it
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    record = signed_sqs_record("{}", tenant_id="acme")
    record["attributes"]["AWSTraceHeader"] = trace
    sqs = RecordingSqs()

    @sqs_handler(ring=RING, vendor=vendor)
    def handler(record: SqsRecord, context: Any) -> None:
        send_message(f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/next", "{}", ring=RING, client=sqs)

    # WHEN its handler sends a message
    assert handler(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    # THEN the message continues that trace: one request stays one trace across queues
    (sent,) = sqs.sent
    assert sent["MessageSystemAttributes"]["AWSTraceHeader"] == {"DataType": "String", "StringValue": trace}


def test_a_message_sent_while_handling_a_record_is_sealed_with_the_handlers_settings(
    vendor: CredentialVendor,
) -> None:
    # GIVEN an environment without signing keys, and a handler given its keys and lifetime in code
    assert "TENANTSCOPE_SIGNING_KEYS" not in os.environ
    settings = Settings.load(signing_keys=ring_spec(RING_DOCUMENT), sqs_envelope_ttl_seconds=TTL + 60)
    sqs = RecordingSqs()
    next_queue = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/next"

    @sqs_handler(vendor=vendor, settings=settings)
    def handler(record: SqsRecord, context: Any) -> None:
        send_message(next_queue, record.body, client=sqs)
        # an argument still wins over the handler's settings
        send_message(
            next_queue, record.body, client=sqs, settings=Settings.load(signing_keys=ring_spec(RING_DOCUMENT))
        )

    # WHEN its record function sends onward with neither a ring nor settings
    record = signed_sqs_record("{}", tenant_id="acme")
    assert handler(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    # THEN the handler's settings seal the message, as they reach its data access
    lifetimes = []
    for sent in sqs.sent:
        header = sent["MessageAttributes"][ATTR_ENVELOPE]["StringValue"]
        _, key_id, issued_at, expires_at, _ = header.split(" ")
        assert key_id == KEY_ID
        lifetimes.append(int(expires_at) - int(issued_at))
    assert lifetimes == [TTL + 60, TTL]
    # and outside a handler, the environment's (none here) is all a producer has
    with pytest.raises(ConfigurationError) as refused:
        send_message(next_queue, "{}", tenant_id="acme", client=sqs)
    assert refused.value.reason is Reason.MISSING_SETTING


def ordered_batch(queue_arn: str, failure: str) -> list[dict[str, Any]]:
    """acme-0 ok, acme-1 fails, then acme and globex records interleaved."""

    def record(tenant: str, n: int, body: str = "{}") -> dict[str, Any]:
        return signed_sqs_record(
            body, tenant_id=tenant, queue_arn=queue_arn, message_id=f"{tenant}-{n}", group_id=tenant
        )

    failing = record("acme", 1, '{"fail":"boom"}' if failure == "handler raises" else '{"n":1}')
    if failure == "tampered":
        failing["body"] = '{"n":2}'
    return [
        record("acme", 0),
        failing,
        record("globex", 1),
        record("acme", 2),
        record("globex", 2),
        record("acme", 3),
    ]


@pytest.mark.parametrize("failure", ["tampered", "handler raises"])
def test_fifo_a_failed_record_fails_the_rest_of_its_group(vendor: CredentialVendor, failure: str) -> None:
    handler = make_handler(vendor)
    response = handler(sqs_event(ordered_batch(FIFO_QUEUE_ARN, failure)), LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": f"acme-{n}"} for n in (1, 2, 3)]}
    ran = [s[0] for s in handler.seen]
    expected = ["acme-0", "acme-1", "globex-1", "globex-2"]
    assert ran == (expected if failure == "handler raises" else [m for m in expected if m != "acme-1"])


@pytest.mark.parametrize("failure", ["tampered", "handler raises"])
def test_standard_queue_does_not_hold_back_a_group(vendor: CredentialVendor, failure: str) -> None:
    handler = make_handler(vendor)
    response = handler(sqs_event(ordered_batch(QUEUE_ARN, failure)), LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "acme-1"}]}
    ran = [s[0] for s in handler.seen]
    expected = ["acme-0", "acme-1", "globex-1", "acme-2", "globex-2", "acme-3"]
    assert ran == (expected if failure == "handler raises" else [m for m in expected if m != "acme-1"])


def test_sqs_record_exposes_the_message(vendor: CredentialVendor, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []

    def counting_loads(text: str) -> Any:
        loads.append(text)
        return json.loads(text)

    monkeypatch.setattr(sqs_module, "json", SimpleNamespace(loads=counting_loads))
    handler = make_handler(vendor)
    record = signed_sqs_record('{"sku":"x","qty":2}', tenant_id="acme", queue_arn=FIFO_QUEUE_ARN)
    record["messageAttributes"]["trace-note"] = {
        "stringValue": "hello",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    record["attributes"]["ApproximateReceiveCount"] = "3"

    assert handler(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}

    (seen,) = handler.records
    assert seen.message_id == record["messageId"]
    assert seen.body == '{"sku":"x","qty":2}'
    assert seen.json == {"sku": "x", "qty": 2}
    assert seen.json is seen.json
    assert loads == ['{"sku":"x","qty":2}']  # parsed once (the test handler read it first)
    assert seen.message_attributes["trace-note"]["stringValue"] == "hello"
    assert set(seen.message_attributes) == {ATTR_TENANT, ATTR_ENVELOPE, ATTR_SIGNATURE, "trace-note"}
    assert seen.attributes["SenderId"] == record["attributes"]["SenderId"]
    assert seen.message_group_id == "acme"
    assert seen.receive_count == 3
    assert seen.event_source_arn == FIFO_QUEUE_ARN
    assert attribute(record, ATTR_SIGNATURE) not in repr(seen)


def test_sqs_record_on_a_standard_queue_has_no_group(vendor: CredentialVendor) -> None:
    handler = make_handler(vendor)
    handler(sqs_event([signed_sqs_record("[1]", tenant_id="acme")]), LambdaContext())
    (seen,) = handler.records
    assert seen.message_group_id is None
    assert seen.json == [1]


def test_an_empty_batch_is_an_empty_response(vendor: CredentialVendor) -> None:
    # An event without a Records list is an error instead (tests/integration/test_errors_name_the_fix.py).
    handler = make_handler(vendor)
    assert handler({"Records": []}, LambdaContext()) == {"batchItemFailures": []}
    assert handler.seen == []


@pytest.mark.parametrize("shape", ["no messageId", "not an object"])
def test_an_unnamed_record_fails_the_whole_batch(vendor: CredentialVendor, shape: str) -> None:
    record: Any = signed_sqs_record("{}", tenant_id="acme")
    if shape == "no messageId":
        del record["messageId"]
    else:
        record = "junk"
    handler = make_handler(vendor)
    response = handler({"Records": [record, *good_records()]}, LambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": ""}]}
    assert handler.seen == [(m, t, t) for m, t in GOOD]


def test_failure_logs_carry_no_signature_key_or_body(
    vendor: CredentialVendor, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    direct = logging.StreamHandler(stream)
    logger = logging.getLogger("tenantscope")
    logger.addHandler(direct)
    caplog.set_level(logging.DEBUG)
    secrets = {base64.b64encode(KEY).decode(), KEY.hex(), "4111111111111111"}
    records = []
    try:
        for n, build in enumerate(BAD_RECORDS.values()):
            record = build()
            record["messageId"] = f"bad-{n}"
            records.append(record)
        records.append(
            signed_sqs_record('{"fail":"card 4111111111111111"}', tenant_id="acme", message_id="bad-raises")
        )
        for record in records:
            attributes = record.get("messageAttributes") or {}
            for name in (ATTR_SIGNATURE, ATTR_ENVELOPE):
                value = (attributes.get(name) or {}).get("stringValue")
                if isinstance(value, str) and len(value) >= 20:
                    secrets.add(value)
            if isinstance(record.get("body"), str) and len(record["body"]) > 8:
                secrets.add(record["body"])

        response = make_handler(vendor)(sqs_event(records), LambdaContext())
    finally:
        logger.removeHandler(direct)

    assert len(response["batchItemFailures"]) == len(records)
    captured = capsys.readouterr()
    logged = "\n".join([caplog.text, stream.getvalue(), captured.out, captured.err])
    assert "bad-0" in logged and "bad-raises" in logged  # failures are logged, by message id
    leaked = sorted(s for s in secrets if s in logged)
    assert leaked == []


@pytest.mark.parametrize(
    "malformed",
    [
        {"messageId": "m-bad", "eventSourceARN": FIFO_QUEUE_ARN, "attributes": ["not", "a", "map"]},
        {"messageId": "m-bad", "eventSourceARN": FIFO_QUEUE_ARN, "attributes": {"MessageGroupId": ["x"]}},
        {"messageId": "m-bad", "eventSourceARN": QUEUE_ARN, "attributes": None, "messageAttributes": "x"},
        "not a record",
    ],
)
def test_a_malformed_record_fails_alone(vendor: CredentialVendor, malformed: Any) -> None:
    handler = make_handler(vendor)
    batch = sqs_event(good_records())
    batch["Records"].insert(1, malformed)
    expected = "m-bad" if isinstance(malformed, dict) else ""
    assert handler(batch, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": expected}]}
    assert [m for m, _, _ in handler.seen] == [m for m, _ in GOOD]


# --- @sqs_record_handler: the per-record step, as a batch processor calls it --------------------------


def test_a_record_step_runs_on_the_vendor_replay_guard_and_settings_it_is_given(
    vendor: CredentialVendor, fake_sts: FakeSts
) -> None:
    # GIVEN a process whose default vendor is on one STS, and a step given a vendor on another and
    # a replay guard of its own
    own_sts = FakeSts()
    guard = InMemoryReplayGuard()
    ran: list[str] = []

    def note(record: SqsRecord, context: Any) -> None:
        ran.append(current_tenant().tenant_id)

    step = sqs_record_handler(
        ring=RING, vendor=CredentialVendor(own_sts, sleep=lambda _: None), replay_guard=guard
    )
    # WHEN it runs a record THEN the credentials come from its vendor, and its guard records the
    # record's completion
    step(note)(signed_sqs_record("{}", tenant_id="acme", message_id="m-1"), LambdaContext())
    assert ran == ["acme"]
    assert [request.tenant_id for request in own_sts.requests] == ["acme"]
    assert fake_sts.requests == []
    assert [(record.message_id, record.completed) for record in guard.records.values()] == [("m-1", True)]
    # GIVEN a step given settings that allow an envelope an hour of life, not the default day
    strict = sqs_record_handler(
        ring=RING, vendor=vendor, settings=Settings.load(sqs_envelope_ttl_seconds=3600)
    )
    # WHEN a record sealed for a day reaches it THEN it is refused by those settings
    with pytest.raises(TenantAuthError) as refused:
        strict(note)(signed_sqs_record("{}", tenant_id="acme", message_id="m-2"), LambdaContext())
    assert refused.value.reason is Reason.ENVELOPE_LIFETIME
    assert ran == ["acme"]


def test_a_record_step_takes_the_lambda_record_or_an_object_carrying_it(vendor: CredentialVendor) -> None:
    step = sqs_record_handler(ring=RING, vendor=vendor)(lambda record, context: record.message_id)
    raw = signed_sqs_record("{}", tenant_id="acme", message_id="m-1")
    assert step(raw, LambdaContext()) == "m-1"
    # Powertools' SQSRecord carries the Lambda record as raw_event
    assert step(SimpleNamespace(raw_event=raw), LambdaContext()) == "m-1"


def test_a_record_step_refuses_what_is_not_a_record_and_a_replay_by_their_reasons(
    vendor: CredentialVendor,
) -> None:
    guard = InMemoryReplayGuard()
    step = sqs_record_handler(ring=RING, vendor=vendor, replay_guard=guard)(lambda record, context: None)
    with pytest.raises(TenantAuthError) as malformed:
        step("not a record", LambdaContext())
    assert malformed.value.reason is Reason.MALFORMED_RECORD
    record = signed_sqs_record("{}", tenant_id="acme", message_id="m-1")
    step(record, LambdaContext())
    with pytest.raises(TenantAuthError) as replayed:
        step({**record, "messageId": "m-2"}, LambdaContext())  # the same envelope, sent again
    assert replayed.value.reason is Reason.REPLAYED_ENVELOPE


def test_a_record_as_any_mapping_runs_with_its_trace_and_its_invocations_request_id(
    vendor: CredentialVendor,
) -> None:
    # GIVEN a record and its attributes as read-only mappings, not dicts, with a trace header, and
    # a context that carries a request id but no tenant id (not in tenant isolation mode)
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    raw = signed_sqs_record("{}", tenant_id="acme", message_id="m-1")
    raw["attributes"] = MappingProxyType({**raw["attributes"], "AWSTraceHeader": header})
    seen: list[tuple[str | None, str | None]] = []

    def note(record: SqsRecord, context: Any) -> None:
        scope = active_scope()
        assert scope is not None
        seen.append((scope.trace_header, scope.request_id))

    step = sqs_record_handler(ring=RING, vendor=vendor)(note)
    # WHEN it runs THEN it runs in a scope that continues its trace and names its invocation
    step(MappingProxyType(raw), SimpleNamespace(aws_request_id="request-1"))
    assert seen == [(header, "request-1")]


def test_a_completion_the_replay_guard_cannot_record_is_logged_and_the_record_succeeds(
    vendor: CredentialVendor, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a replay guard that admits but cannot record a completion (its table throttled)
    class CannotComplete(InMemoryReplayGuard):
        def complete(self, envelope: Any, message_id: str) -> None:
            raise TemporarilyUnavailable(
                Reason.REPLAY_TABLE_FAILED, "UpdateItem: ProvisionedThroughputExceededException"
            )

    handler = make_handler(vendor, replay_guard=CannotComplete())
    # WHEN a record is processed THEN it succeeds (failing it would process it twice)
    record = signed_sqs_record("{}", tenant_id="acme", message_id="m-1")
    assert handler(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    assert (
        "tenantscope: could not record completion of m-1: replay table call failed "
        "(UpdateItem: ProvisionedThroughputExceededException)"
    ) in caplog.messages


def test_settings_that_cannot_be_read_fail_the_batch_as_a_whole_naming_the_setting(
    vendor: CredentialVendor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a function whose environment holds a setting that cannot be read
    monkeypatch.setenv("TENANTSCOPE_CLOCK_SKEW_SECONDS", "soon")
    handler = make_handler(vendor)
    # WHEN a batch arrives THEN no record runs, and the invocation fails with the configuration
    # error (Lambda retries the batch; nothing is deleted) after logging it for each record
    with pytest.raises(ConfigurationError) as misconfigured:
        handler(sqs_event(good_records()), LambdaContext())
    assert misconfigured.value.detail == "TENANTSCOPE_CLOCK_SKEW_SECONDS is not a valid value"
    assert handler.seen == []
    assert [m for m in caplog.messages if "misconfigured" in m] == [
        f"tenantscope: SQS record {message_id} misconfigured: invalid setting "
        "(TENANTSCOPE_CLOCK_SKEW_SECONDS is not a valid value)"
        for message_id, _ in GOOD
    ]


def test_a_records_lease_is_its_invocations_remaining_time() -> None:
    assert _remaining_seconds(LambdaContext(timeout=30)) == pytest.approx(30, abs=1)
    assert _remaining_seconds(SimpleNamespace(get_remaining_time_in_millis=lambda: 1500)) == 1.5
    assert _remaining_seconds(SimpleNamespace(get_remaining_time_in_millis=lambda: 0)) == 0
    # Without a Lambda context, or with one that does not tell: the replay guard's own lease
    for unknown in (None, SimpleNamespace(), SimpleNamespace(get_remaining_time_in_millis=lambda: -1)):
        assert _remaining_seconds(unknown) is None
    assert _remaining_seconds(SimpleNamespace(get_remaining_time_in_millis=lambda: "1500")) is None
