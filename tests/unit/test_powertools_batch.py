"""sqs_record_handler inside Powertools for AWS Lambda's batch processor: each record in its tenant's
scope, refused and failed records reported by Powertools as batch item failures."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from tenantscope import SqsRecord, current_tenant, sqs_record_handler
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope.testing import RING, LambdaContext, signed_sqs_record, sqs_event


def test_each_record_runs_in_its_tenant_scope_inside_a_powertools_batch(
    vendor: CredentialVendor, fake_sts: FakeSts
) -> None:
    # GIVEN a per-record function wrapped for Powertools, and a batch of three tenants' records
    seen: list[tuple[str, str, Any]] = []

    @sqs_record_handler(ring=RING, vendor=vendor)
    def record_handler(record: SqsRecord, context: Any) -> str:
        seen.append((record.message_id, current_tenant().tenant_id, context.aws_request_id))
        if record.json.get("fail"):
            raise RuntimeError("the application failed")
        return "done"

    tampered = signed_sqs_record(json.dumps({"n": 2}), tenant_id="globex", message_id="m-tampered")
    tampered["body"] = json.dumps({"n": 3})
    event = sqs_event(
        [
            signed_sqs_record(json.dumps({"n": 1}), tenant_id="acme", message_id="m-acme"),
            tampered,
            signed_sqs_record(json.dumps({"fail": True}), tenant_id="initech", message_id="m-initech"),
        ]
    )
    # WHEN Powertools drives the batch
    response = process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=LambdaContext(request_id="req-batch"),
    )
    # THEN the good record ran as its tenant, the tampered one never ran, the failing one failed
    assert response == {
        "batchItemFailures": [{"itemIdentifier": "m-tampered"}, {"itemIdentifier": "m-initech"}]
    }
    assert seen == [("m-acme", "acme", "req-batch"), ("m-initech", "initech", "req-batch")]
    assert sorted(r.tenant_id for r in fake_sts.requests) == ["acme", "initech"]
