"""The sample application's own behaviour on the local AWS: numbers in bodies, base64 bodies, an
order's status through the worker and the state machine, redelivered order messages, and the
compensation."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devtools import events as samples
from devtools.issuer import dev_issuer
from devtools.local_aws import LOCAL_PARAMETERS, LocalAws, local_aws
from tenantscope import tenant_key, tenant_scope, tenant_table
from tenantscope.testing import http_api_event, record_from_received, sqs_event

ISSUER = dev_issuer()
WORKER = "OrderWorkerFunction"


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    """A fresh local deployment, configured like test_sample_events (events/env.json): the handlers'
    runtimes live as long as the process, as in a Lambda sandbox, so every local deployment of one
    test process must give them the same issuer and key ring."""
    environment = samples.identity(ISSUER)
    with local_aws(LOCAL_PARAMETERS, environment=environment) as deployed:
        yield deployed


def body(response: dict[str, Any]) -> Any:
    return json.loads(response.get("body") or "null")


def place_order(aws: LocalAws, **order: Any) -> tuple[str, dict[str, Any]]:
    """Stock the item, place an order; (order id, the worker's SQS event for its message)."""
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": 5})["statusCode"] == 200
    placed = aws.http("POST", "/orders", token, {"item_id": "widget", "quantity": 2, **order})
    assert placed["statusCode"] == 202, placed
    queue = aws.physical["OrderQueue"]
    (message,) = boto3.client("sqs").receive_message(
        QueueUrl=queue["Ref"],
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
        AttributeNames=["All"],
    )["Messages"]
    return body(placed)["id"], sqs_event([record_from_received(message, queue_arn=queue["Arn"])])


def deliver(aws: LocalAws, event: dict[str, Any]) -> list[str]:
    """The worker takes the batch, as the event source mapping delivers it; its failures."""
    response = aws.invoke(WORKER, event)
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def order_status(aws: LocalAws, order_id: str) -> Any:
    return body(aws.http("GET", f"/orders/{order_id}", ISSUER.token("acme"))).get("status")


def set_order_status(aws: LocalAws, order_id: str, status: str) -> None:
    with tenant_scope("acme"):
        tenant_table(aws.physical["AppTable"]["Ref"]).update_item(
            Key={"pk": tenant_key("ORDER"), "sk": order_id},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": status},
        )


def test_a_body_with_fractional_numbers_is_stored_as_numbers_and_read_back(aws: LocalAws) -> None:
    token = ISSUER.token("acme")
    item = {"name": "widget", "price": 1.5, "weights": [0.25, 2], "stock": 3}
    put = aws.http("PUT", "/items/widget", token, item)
    assert put["statusCode"] == 200, put
    got = aws.http("GET", "/items/widget", token)
    assert got["statusCode"] == 200
    assert body(got) == {**item, "id": "widget"}
    with tenant_scope("acme"):
        stored = tenant_table(aws.physical["AppTable"]["Ref"]).get_item(
            Key={"pk": tenant_key("ITEM"), "sk": "widget"}
        )["Item"]
    assert type(stored["price"]).__name__ == "Decimal"  # a DynamoDB number, not a string
    # NaN and Infinity are not JSON: refused as a bad body, not a 500.
    event = http_api_event(
        token, method="PUT", path="/items/widget", route="/items/{id}", path_parameters={"id": "widget"}
    )
    event["body"] = '{"price": NaN}'
    assert aws.invoke("ApiFunction", event)["statusCode"] == 400


def test_an_order_completes_and_a_redelivered_message_changes_nothing(aws: LocalAws) -> None:
    order_id, event = place_order(aws)
    assert deliver(aws, event) == []
    executions = aws.wait_for_executions()
    assert list(executions) == [order_id]
    assert executions[order_id]["status"] == "SUCCEEDED"
    assert order_status(aws, order_id) == "COMPLETED"

    # The same message again (SQS delivers at least once): no second execution, COMPLETED stays.
    assert deliver(aws, event) == []
    assert list(aws.wait_for_executions()) == [order_id]
    assert order_status(aws, order_id) == "COMPLETED"

    # A delivery that finds the order PROCESSING and its execution already started succeeds.
    set_order_status(aws, order_id, "PROCESSING")
    assert deliver(aws, event) == []
    assert list(aws.wait_for_executions()) == [order_id]
    assert order_status(aws, order_id) == "PROCESSING"  # the worker wrote nothing


def test_an_order_whose_execution_could_not_start_is_retried_from_processing(aws: LocalAws) -> None:
    order_id, event = place_order(aws)
    missing = aws.physical["OrderStateMachine"]["Arn"] + "-missing"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORDER_STATE_MACHINE_ARN", missing)
        # StateMachineDoesNotExist is not a redelivery: the record fails, to be delivered again.
        assert deliver(aws, event) == [event["Records"][0]["messageId"]]
    assert order_status(aws, order_id) == "PROCESSING"
    assert aws.wait_for_executions() == {}
    assert deliver(aws, event) == []
    assert list(aws.wait_for_executions()) == [order_id]
    assert order_status(aws, order_id) == "COMPLETED"


def test_a_failure_after_the_charge_releases_the_stock_and_refunds(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.tasks  # importable once the local AWS put functions/ on sys.path

    def complete_order(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("CompleteOrder failed after the payment was charged")

    outputs: list[dict[str, Any]] = []
    release_inventory = app.tasks.release_inventory

    def recorded_release(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result: dict[str, Any] = release_inventory(event, context)
        outputs.append(result)
        return result

    monkeypatch.setattr(app.tasks, "complete_order", complete_order)
    monkeypatch.setattr(app.tasks, "release_inventory", recorded_release)
    order_id, event = place_order(aws)
    assert deliver(aws, event) == []
    execution = aws.wait_for_executions()[order_id]
    assert execution["status"] == "FAILED" and execution.get("error") == "OrderFailed"
    assert order_status(aws, order_id) == "FAILED"
    stock = body(aws.http("GET", "/items/widget", ISSUER.token("acme")))["stock"]
    assert stock == 5, "the reservation was not released"
    (output,) = outputs
    assert output["results"]["release_inventory"] == {
        "released": True,
        "refunded": True,
        "charge_reference": f"sim-{order_id}",
    }
    # The execution history carries no internal resource name.
    assert aws.physical["AppTable"]["Ref"] not in json.dumps(output)


def sam_generated_http_api_event() -> dict[str, Any]:
    """The HTTP API event `sam local generate-event apigateway http-api-proxy` prints."""
    sam = Path(sys.executable).with_name("sam")
    if not sam.exists():
        pytest.skip(f"aws-sam-cli is not installed: no {sam} (run `make install`)")
    generated = subprocess.run(
        [str(sam), "local", "generate-event", "apigateway", "http-api-proxy"],
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    event: dict[str, Any] = json.loads(generated.stdout)
    return event


def test_a_base64_encoded_body_from_sams_own_event_is_decoded(aws: LocalAws) -> None:
    # GIVEN SAM's sample HTTP API event, whose body is base64 ({"test":"body"}), sent to PUT /items/sam
    event = sam_generated_http_api_event()
    assert event["isBase64Encoded"] is True
    event.update(routeKey="PUT /items/{id}", pathParameters={"id": "sam"})
    event["headers"]["authorization"] = f"Bearer {ISSUER.token('acme')}"
    # WHEN the API takes it
    put = aws.invoke("ApiFunction", event)
    # THEN the decoded body is the item
    assert put["statusCode"] == 200, put
    assert body(aws.http("GET", "/items/sam", ISSUER.token("acme"))) == {"test": "body", "id": "sam"}
    # A body that claims base64 but is not is a bad request, not an error.
    for broken in ("not base64!", base64.b64encode(b"\xff\xfe").decode()):
        assert aws.invoke("ApiFunction", {**event, "body": broken})["statusCode"] == 400
