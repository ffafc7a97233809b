"""The sample application's own behaviour on the local AWS: numbers in bodies, base64 bodies, an
order's status through the worker and the state machine, redelivered order messages, the
compensation, and tenant files (an item's attachment, an order's receipt). moto's mock intercepts
the requests library too, so presigned forms and links are used as a client would use them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from devtools import events as samples
from devtools.issuer import dev_issuer
from devtools.local_aws import LOCAL_PARAMETERS, LocalAws, local_aws
from tenantscope import seal_input, tenant_bucket, tenant_key, tenant_scope, tenant_table
from tenantscope._replay import DynamoDbReplayGuard
from tenantscope.testing import (
    http_api_event,
    record_from_received,
    reset_process_state,
    sqs_event,
    task_event,
)

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


def place_order(aws: LocalAws, stock: int = 5, **order: Any) -> tuple[str, dict[str, Any]]:
    """Stock the item, place an order of 2; (order id, the worker's SQS event for its message)."""
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": stock})["statusCode"] == 200
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


def raw_put(aws: LocalAws, raw_body: str, item_id: str = "widget") -> dict[str, Any]:
    """PUT /items/<item_id> with ``raw_body`` as sent, not re-serialized."""
    event = http_api_event(
        ISSUER.token("acme"),
        method="PUT",
        path=f"/items/{item_id}",
        route="/items/{id}",
        path_parameters={"id": item_id},
    )
    event["body"] = raw_body
    response: dict[str, Any] = aws.invoke("ApiFunction", event)
    return response


def nested(depth: int) -> str:
    return '{"a": ' + "[" * depth + "]" * depth + "}"


def test_an_item_put_a_moment_ago_can_be_ordered_and_given_an_attachment(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import items

    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/fresh", token, {"stock": 5})["statusCode"] == 200
    # GIVEN reads answered by a replica that has not applied that PUT yet, unless strongly consistent
    read = items.get

    def from_a_stale_replica(kind: str, record_id: str, *, consistent: bool = False) -> Any:
        return read(kind, record_id, consistent=consistent) if consistent else None

    monkeypatch.setattr(items, "get", from_a_stale_replica)
    # THEN the routes that must find it read it strongly consistently, and find it
    assert aws.http("POST", "/orders", token, {"item_id": "fresh", "quantity": 1})["statusCode"] == 202
    form = aws.http("POST", "/items/fresh/attachment", token, {"content_type": "text/plain"})
    assert form["statusCode"] == 200, form


@pytest.mark.parametrize(
    ("raw_body", "why"),
    [
        (nested(32_000), "body must be a JSON object"),  # deeper than the parser recurses
        ('{"a": "' + "x" * 70_000 + '"}', "at most 65536 characters"),
        (nested(32), "nest at most 32 deep"),  # the item's object is the first level
        ('{"n": 1' + "0" * 50 + "}", "numbers must fit"),  # more than 38 digits
        ('{"n": 1e500}', "numbers must fit"),
        ('{"n": 1e-200}', "numbers must fit"),
        ('{"n": 1e-140}', "numbers must fit"),  # exact, but under DynamoDB's smallest magnitude
        ('{"n": 5e126}', "numbers must fit"),  # exact, but over its largest
        ('{"n": 1.00000000000000000000000000000000000000001}', "numbers must fit"),
        ('{"name": "\\ud800"}', "strings must be Unicode text"),
        ('{"": 1}', "attribute names must be non-empty Unicode text"),
        ('{"a": {"": 1}}', "attribute names must be non-empty Unicode text"),
        ('{"\\ud800": 1}', "attribute names must be non-empty Unicode text"),
        # 22,000 characters of body, 66,000 bytes of name: over DynamoDB's 64 KB
        ('{"' + "\u20ac" * 22_000 + '": 1}', "of at most 65535 UTF-8 bytes"),
        ('{"a": {"' + "\u20ac" * 22_000 + '": 1}}', "of at most 65535 UTF-8 bytes"),
    ],
    ids=[
        "nested 32000 deep",
        "over 64 Ki characters",
        "nested 33 deep",
        "51 digits",
        "too large",
        "too small",
        "under 1E-130",
        "over 1E+126",
        "41 digits of precision",
        "a lone surrogate",
        "an empty name",
        "an empty name inside",
        "a lone surrogate in a name",
        "a name over 64 KB",
        "a name over 64 KB inside",
    ],
)
def test_an_item_dynamodb_could_not_store_is_refused_with_the_reason(
    aws: LocalAws, raw_body: str, why: str
) -> None:
    answer = raw_put(aws, raw_body)
    assert answer["statusCode"] == 400, answer
    assert why in body(answer)["message"]
    assert aws.http("GET", "/items/widget", ISSUER.token("acme"))["statusCode"] == 404  # nothing stored


def test_an_item_at_each_bound_is_stored_as_sent(aws: LocalAws) -> None:
    # the deepest nesting, the most digits, the extreme magnitudes, and the longest body
    deepest, most_digits = "[" * 31 + "]" * 31, "1" * 38
    magnitudes = '"big": 9.9999999999999999999999999999999999999E+125, "small": 1E-130'
    at_bounds = f'{{"a": {deepest}, "n": {most_digits}, {magnitudes}'
    padding = 65_536 - len(at_bounds) - len(', "pad": ""}')
    raw_body = at_bounds + ', "pad": "' + "x" * padding + '"}'
    assert len(raw_body) == 65_536
    answer = raw_put(aws, raw_body)
    assert answer["statusCode"] == 200, answer
    stored = body(aws.http("GET", "/items/widget", ISSUER.token("acme")))
    assert stored["n"] == int("1" * 38) and len(stored["pad"]) == padding
    assert json.dumps(stored["a"]) == "[" * 31 + "]" * 31


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


def the_visibility_timeout_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQS delivers a failed record again once the queue's visibility timeout (186 s, longer than
    the worker's 30 s) has passed, and with it the replay guard's lease on the record's envelope:
    that time passes on the guard's clock (its guard is built again, on it)."""
    shifted = time.time() + 186 - time.monotonic()
    monkeypatch.setitem(
        DynamoDbReplayGuard.__init__.__kwdefaults__, "clock", lambda: shifted + time.monotonic()
    )
    reset_process_state(keep_installed=True)


def test_an_order_whose_execution_could_not_start_is_retried_from_processing(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id, event = place_order(aws)
    missing = aws.physical["OrderStateMachine"]["Arn"] + "-missing"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORDER_STATE_MACHINE_ARN", missing)
        # StateMachineDoesNotExist is not a redelivery: the record fails, to be delivered again.
        assert deliver(aws, event) == [event["Records"][0]["messageId"]]
    assert order_status(aws, order_id) == "PROCESSING"
    assert aws.wait_for_executions() == {}
    # Delivered again at once, while the failed delivery's invocation could still be running: held
    assert deliver(aws, event) == [event["Records"][0]["messageId"]]
    the_visibility_timeout_passes(monkeypatch)
    assert deliver(aws, event) == []
    assert list(aws.wait_for_executions()) == [order_id]
    assert order_status(aws, order_id) == "COMPLETED"


def test_an_order_whose_message_cannot_be_sent_is_taken_back(aws: LocalAws) -> None:
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": 5})["statusCode"] == 200
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORDER_QUEUE_URL", aws.physical["OrderQueue"]["Ref"] + "-missing")
        placed = aws.http("POST", "/orders", token, {"item_id": "widget", "quantity": 1})
    assert placed["statusCode"] == 500
    # No PENDING order is left for a worker that will never hear of it: the client places it again.
    with tenant_scope("acme"):
        orders = tenant_table(aws.physical["AppTable"]["Ref"]).query(
            KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": tenant_key("ORDER")}
        )["Items"]
    assert orders == []


def order_messages(aws: LocalAws) -> tuple[list[str], dict[str, Any]]:
    """The order ids of the messages waiting on the order queue, and the worker's event for them."""
    queue = aws.physical["OrderQueue"]
    messages = (
        boto3.client("sqs")
        .receive_message(
            QueueUrl=queue["Ref"],
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            AttributeNames=["All"],
        )
        .get("Messages", [])
    )
    event = sqs_event([record_from_received(message, queue_arn=queue["Arn"]) for message in messages])
    return [json.loads(message["Body"])["order_id"] for message in messages], event


def keyed_order(aws: LocalAws, tenant: str, key: str, **order: Any) -> dict[str, Any]:
    """POST /orders with an Idempotency-Key (as HTTP API delivers a header: its name lowercased)."""
    return aws.http(
        "POST", "/orders", ISSUER.token(tenant), {"item_id": "widget", **order}, {"idempotency-key": key}
    )


def stored_orders(aws: LocalAws, tenant: str) -> list[dict[str, Any]]:
    with tenant_scope(tenant):
        return list(
            tenant_table(aws.physical["AppTable"]["Ref"]).query(
                KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": tenant_key("ORDER")}
            )["Items"]
        )


def test_an_order_placed_again_with_its_idempotency_key_is_the_order_already_placed(aws: LocalAws) -> None:
    assert aws.http("PUT", "/items/widget", ISSUER.token("acme"), {"stock": 5})["statusCode"] == 200
    # GIVEN an order placed with a key WHEN a client retries it (a timeout hid the first answer)
    first = keyed_order(aws, "acme", "retry-7", quantity=2)
    again = keyed_order(aws, "acme", "retry-7", quantity=2)
    # THEN both answers are the one order, and the retry sent its message again while it was PENDING
    assert (first["statusCode"], again["statusCode"]) == (202, 202)
    order_id = body(first)["id"]
    assert body(again) == body(first) and len(stored_orders(aws, "acme")) == 1
    sent, event = order_messages(aws)
    assert sent == [order_id, order_id]
    # The worker starts the order once, whichever message comes first.
    assert deliver(aws, event) == []
    assert list(aws.wait_for_executions()) == [order_id]
    assert order_status(aws, order_id) == "COMPLETED"
    # Placed again once it is done: the order as it is now, and nothing sent.
    done = keyed_order(aws, "acme", "retry-7", quantity=2)
    assert (done["statusCode"], body(done)["id"], body(done)["status"]) == (202, order_id, "COMPLETED")
    assert order_messages(aws)[0] == []
    stock = body(aws.http("GET", "/items/widget", ISSUER.token("acme")))["stock"]
    assert stock == 3  # reserved once


def test_an_order_placed_again_with_its_key_after_its_item_was_deleted_is_still_that_order(
    aws: LocalAws,
) -> None:
    # GIVEN an order placed with a key whose message could not be sent, and its item deleted since
    assert aws.http("PUT", "/items/widget", ISSUER.token("acme"), {"stock": 5})["statusCode"] == 200
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORDER_QUEUE_URL", aws.physical["OrderQueue"]["Ref"] + "-missing")
        assert keyed_order(aws, "acme", "k-del", quantity=2)["statusCode"] == 500
    assert aws.http("DELETE", "/items/widget", ISSUER.token("acme"))["statusCode"] == 204
    # WHEN the client retries it THEN the answer is its order, and its message is sent at last
    again = keyed_order(aws, "acme", "k-del", quantity=2)
    (order,) = stored_orders(aws, "acme")
    assert (again["statusCode"], body(again)["id"]) == (202, order["sk"])
    assert order_messages(aws)[0] == [order["sk"]]
    # Another order with the key is still refused, and an order without one finds no item.
    assert keyed_order(aws, "acme", "k-del", quantity=3)["statusCode"] == 422
    assert (
        aws.http("POST", "/orders", ISSUER.token("acme"), {"item_id": "widget", "quantity": 2})["statusCode"]
        == 404
    )


def test_an_order_deleted_between_its_key_s_put_and_its_read_is_a_conflict(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.items  # importable once the local AWS put functions/ on sys.path

    assert aws.http("PUT", "/items/widget", ISSUER.token("acme"), {"stock": 5})["statusCode"] == 200
    assert keyed_order(aws, "acme", "k-gone", quantity=1)["statusCode"] == 202
    # GIVEN the order deleted (by an operator) after the retry's put found it and before its read
    put_new = app.items.put_new

    def put_then_lose(kind: str, record_id: str, attributes: dict[str, Any]) -> Any:
        placed = put_new(kind, record_id, attributes)
        app.items.delete(kind, record_id)
        return placed

    monkeypatch.setattr(app.items, "put_new", put_then_lose)
    # THEN the retry is told, not answered with an order that no longer exists
    gone = keyed_order(aws, "acme", "k-gone", quantity=1)
    assert (gone["statusCode"], body(gone)) == (409, {"message": "this Idempotency-Key's order is gone"})


def test_an_idempotency_key_is_refused_for_another_order_or_out_of_its_grammar(aws: LocalAws) -> None:
    assert aws.http("PUT", "/items/widget", ISSUER.token("acme"), {"stock": 5})["statusCode"] == 200
    assert keyed_order(aws, "acme", "k-1", quantity=2)["statusCode"] == 202
    for other in ({"quantity": 3}, {"quantity": 2, "simulate_payment_failure": True}):
        refused = keyed_order(aws, "acme", "k-1", **other)
        assert refused["statusCode"] == 422, refused
    for bad_key in ("a b", "x" * 65, ""):
        refused = keyed_order(aws, "acme", bad_key, quantity=2)
        assert refused["statusCode"] == 400, refused
    (order,) = stored_orders(aws, "acme")
    assert order["quantity"] == 2 and "simulate_payment_failure" not in order
    assert order_messages(aws)[0] == [order["sk"]]


def test_two_tenants_placing_orders_with_one_idempotency_key_place_two_orders(aws: LocalAws) -> None:
    # An order id names the order's execution, and a state machine's execution names are shared
    # by every tenant: one tenant's key must not take the name of another tenant's order.
    for tenant in ("acme", "globex"):
        assert aws.http("PUT", "/items/widget", ISSUER.token(tenant), {"stock": 5})["statusCode"] == 200
    acme, globex = (
        body(keyed_order(aws, tenant, "order-1", quantity=1))["id"] for tenant in ("acme", "globex")
    )
    assert acme != globex
    sent, event = order_messages(aws)
    assert sorted(sent) == sorted([acme, globex])
    assert deliver(aws, event) == []
    executions = aws.wait_for_executions()
    assert sorted(executions) == sorted([acme, globex])
    assert all(execution["status"] == "SUCCEEDED" for execution in executions.values())


def test_an_order_with_a_key_whose_message_cannot_be_sent_is_sent_when_placed_again(aws: LocalAws) -> None:
    assert aws.http("PUT", "/items/widget", ISSUER.token("acme"), {"stock": 5})["statusCode"] == 200
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORDER_QUEUE_URL", aws.physical["OrderQueue"]["Ref"] + "-missing")
        assert keyed_order(aws, "acme", "k-9", quantity=1)["statusCode"] == 500
    # Unlike an order without a key, it stays, PENDING, for the client's retry with the key.
    (order,) = stored_orders(aws, "acme")
    assert order["status"] == "PENDING"
    again = keyed_order(aws, "acme", "k-9", quantity=1)
    assert (again["statusCode"], body(again)["id"]) == (202, order["sk"])
    sent, event = order_messages(aws)
    assert sent == [order["sk"]]
    assert deliver(aws, event) == []
    assert list(aws.wait_for_executions()) == [order["sk"]]
    assert order_status(aws, order["sk"]) == "COMPLETED"


def time_out_after_sending(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> None:
    """POST /orders's send reaches the queue, ``meanwhile`` runs, then the send times out: the API
    cannot tell whether its message was sent."""
    from botocore.exceptions import ReadTimeoutError

    import app.api

    real_send = app.api.send_message

    def send_then_time_out(queue_url: str, message: str, **options: Any) -> Any:
        real_send(queue_url, message, **options)
        meanwhile()
        raise ReadTimeoutError(endpoint_url=queue_url)

    monkeypatch.setattr(app.api, "send_message", send_then_time_out)


def test_an_order_whose_send_timed_out_after_a_worker_started_it_is_accepted(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a send the queue took, whose answer timed out once a worker had started the order
    def worker_starts_it() -> None:
        assert deliver(aws, order_messages(aws)[1]) == []

    time_out_after_sending(monkeypatch, worker_starts_it)
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": 5})["statusCode"] == 200
    # WHEN the order is placed
    placed = aws.http("POST", "/orders", token, {"item_id": "widget", "quantity": 2})
    # THEN it is accepted, not taken back from under its execution, and completes once
    assert placed["statusCode"] == 202, placed
    order_id = body(placed)["id"]
    assert list(aws.wait_for_executions()) == [order_id]
    assert order_status(aws, order_id) == "COMPLETED"
    assert body(aws.http("GET", "/items/widget", token))["stock"] == 3


def test_an_order_taken_back_after_its_send_timed_out_is_not_started_by_its_message(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a send the queue took, whose answer timed out before any worker read it
    time_out_after_sending(monkeypatch, lambda: None)
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": 5})["statusCode"] == 200
    # WHEN the order is placed, THEN it is taken back, for its client to place again (503: a timeout
    # passes)
    assert aws.http("POST", "/orders", token, {"item_id": "widget", "quantity": 2})["statusCode"] == 503
    assert stored_orders(aws, "acme") == []
    # AND its message, delivered, starts nothing: it fails, to be dead-lettered in the end
    _, event = order_messages(aws)
    assert deliver(aws, event) == [event["Records"][0]["messageId"]]
    assert aws.wait_for_executions() == {}
    assert body(aws.http("GET", "/items/widget", token))["stock"] == 5


def test_an_order_taken_back_while_a_worker_read_it_is_not_started(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.items

    # GIVEN an order's message, and the API taking the order back between the worker's read of it
    # and the worker's move of it from PENDING
    _, event = place_order(aws)
    real_update = app.items.update

    def taken_back_first(kind: str, record_id: str, **change: Any) -> None:
        assert app.items.delete(kind, record_id, only_if={"status": "PENDING"})
        real_update(kind, record_id, **change)

    monkeypatch.setattr(app.items, "update", taken_back_first)
    # WHEN the worker takes the message, THEN it starts nothing, and acknowledges the message
    assert deliver(aws, event) == []
    assert aws.wait_for_executions() == {}
    assert stored_orders(aws, "acme") == []


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


@pytest.mark.parametrize(
    ("task", "order"),
    [
        ("reserve_inventory", {}),  # caught: the compensation runs without the reservation's result
        ("complete_order", {}),  # caught after the receipt and COMPLETED were written
        ("release_inventory", {"simulate_payment_failure": True}),  # the compensation itself, retried
    ],
)
def test_a_task_that_fails_after_it_wrote_leaves_the_order_failed_and_its_stock_whole(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, task: str, order: dict[str, Any]
) -> None:
    # GIVEN a task whose first invocation does its work, then fails before it returns (a timeout:
    # make soak's handler failures "after request n" found each of these)
    import app.tasks  # importable once the local AWS put functions/ on sys.path

    real = getattr(app.tasks, task)
    invocations: list[str] = []

    def fails_once_after_writing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result: dict[str, Any] = real(event, context)
        invocations.append(task)
        if len(invocations) == 1:
            raise RuntimeError(f"{task} timed out after it wrote")
        return result

    monkeypatch.setattr(app.tasks, task, fails_once_after_writing)
    # WHEN the order goes through the state machine
    order_id, event = place_order(aws, **order)
    assert deliver(aws, event) == []
    execution = aws.wait_for_executions()[order_id]
    # THEN it fails once, cleanly: its stock is back (given back once, taken once), it has no
    # receipt, and it is FAILED
    assert (execution["status"], execution.get("error")) == ("FAILED", "OrderFailed")
    acme = ISSUER.token("acme")
    assert body(aws.http("GET", "/items/widget", acme))["stock"] == 5
    assert aws.http("GET", f"/orders/{order_id}/receipt", acme)["statusCode"] == 404
    stored = body(aws.http("GET", f"/orders/{order_id}", acme))
    assert (stored["status"], stored["released"]) == ("FAILED", 2)
    assert "reserved" not in stored


def test_an_order_for_an_item_the_tenant_does_not_have_is_refused(aws: LocalAws) -> None:
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", ISSUER.token("globex"), {"stock": 5})["statusCode"] == 200
    answer = aws.http("POST", "/orders", token, {"item_id": "widget", "quantity": 1})  # globex's, not acme's
    assert (answer["statusCode"], body(answer)) == (404, {"message": "no such item"})
    assert aws.receive(WORKER) == []  # no order was sent


@pytest.mark.parametrize("change", ["deleted", "rewritten without a stock"])
def test_an_order_whose_item_changed_while_it_held_stock_still_fails_cleanly(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    # GIVEN an order that reserved 2 widgets, whose item the tenant then deletes or rewrites
    import app.tasks  # importable once the local AWS put functions/ on sys.path

    real_reserve = app.tasks.reserve_inventory
    acme = ISSUER.token("acme")

    def reserve_then_change_the_item(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result: dict[str, Any] = real_reserve(event, context)
        if change == "deleted":
            assert aws.http("DELETE", "/items/widget", acme)["statusCode"] == 204
        else:
            assert aws.http("PUT", "/items/widget", acme, {"name": "widget"})["statusCode"] == 200
        return result

    monkeypatch.setattr(app.tasks, "reserve_inventory", reserve_then_change_the_item)
    # WHEN its payment fails, so that the compensation gives back what the order holds
    order_id, event = place_order(aws, simulate_payment_failure=True)
    assert deliver(aws, event) == []
    execution = aws.wait_for_executions()[order_id]
    # THEN the order fails as any other, its hold ended, and the item is left as the tenant made it
    assert (execution["status"], execution.get("error")) == ("FAILED", "OrderFailed")
    stored = body(aws.http("GET", f"/orders/{order_id}", acme))
    assert (stored["status"], stored["released"]) == ("FAILED", 2) and "reserved" not in stored
    item = aws.http("GET", "/items/widget", acme)
    if change == "deleted":
        assert item["statusCode"] == 404  # not brought back by the stock it held
    else:
        assert body(item) == {"name": "widget", "id": "widget"}


PASSING_ANSWERS = {
    "a conflict with another transaction": {
        "Error": {"Code": "TransactionCanceledException"},
        "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
    },
    "throttling botocore's retries did not outlast": {"Error": {"Code": "ThrottlingException"}},
}


@pytest.mark.parametrize("answer", PASSING_ANSWERS.values(), ids=PASSING_ANSWERS.keys())
def test_a_reservation_that_met_a_passing_refusal_is_retried(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any]
) -> None:
    # GIVEN a reservation whose first transaction DynamoDB refuses for a reason a later attempt
    # would not meet (moto runs no transaction concurrently, nor throttles: the answer is made)
    from botocore.exceptions import ClientError

    import app.tasks  # importable once the local AWS put functions/ on sys.path

    real_update = app.tasks.update_stock_and_order
    attempts: list[str] = []

    def refused_once(order: dict[str, Any], **change: Any) -> None:
        attempts.append(change["stock"])
        if len(attempts) == 1:
            raise ClientError(answer, "TransactWriteItems")
        real_update(order, **change)

    monkeypatch.setattr(app.tasks, "update_stock_and_order", refused_once)
    # WHEN the order goes through the state machine
    order_id, event = place_order(aws)
    assert deliver(aws, event) == []
    execution = aws.wait_for_executions()[order_id]
    # THEN the reservation is retried (InventoryBusy) rather than the order failed
    assert execution["status"] == "SUCCEEDED", execution
    assert attempts == ["SET stock = stock - :q"] * 2
    assert body(aws.http("GET", "/items/widget", ISSUER.token("acme")))["stock"] == 3


@pytest.mark.parametrize("failure", ["S3 slows down", "DynamoDB cannot be reached"])
def test_a_passing_storage_failure_while_completing_an_order_is_retried(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    import app.tasks  # importable once the local AWS put functions/ on sys.path

    # GIVEN CompleteOrder's first write of a paid order meeting a failure a later attempt would not
    # (after botocore's own retries)
    attempts: list[str] = []
    if failure == "S3 slows down":
        real_put_receipt = app.tasks.files.put_receipt

        def put_receipt(order_id: str, receipt: dict[str, Any]) -> str:
            attempts.append(order_id)
            if len(attempts) == 1:
                raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your rate"}}, "PutObject")
            return real_put_receipt(order_id, receipt)

        monkeypatch.setattr(app.tasks.files, "put_receipt", put_receipt)
    else:
        real_update = app.tasks.items.update

        def update(kind: str, record_id: str, **change: Any) -> None:
            if change.get("status") == "COMPLETED":
                attempts.append(record_id)
                if len(attempts) == 1:
                    raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
            real_update(kind, record_id, **change)

        monkeypatch.setattr(app.tasks.items, "update", update)
    # WHEN the order goes through the state machine
    order_id, event = place_order(aws)
    assert deliver(aws, event) == []
    execution = aws.wait_for_executions()[order_id]
    # THEN CompleteOrder is retried (StorageBusy) rather than the order failed and refunded
    assert execution["status"] == "SUCCEEDED", execution
    assert attempts == [order_id] * 2
    assert order_status(aws, order_id) == "COMPLETED"
    assert body(aws.http("GET", "/items/widget", ISSUER.token("acme")))["stock"] == 3


def reserve_event(aws: LocalAws, order_id: str) -> dict[str, Any]:
    """The event ReserveInventory gets for acme's order of 2 widgets, in the execution named by it."""
    machine = aws.physical["OrderStateMachine"]["Arn"]
    order = {"order_id": order_id, "item_id": "widget", "quantity": 2}
    with tenant_scope("acme"):
        document = seal_input(order, state_machine_arn=machine, execution_name=order_id)
    return task_event(document, execution_name=order_id, state_machine_arn=machine)


def test_a_reservation_retried_after_it_committed_takes_the_stock_once(aws: LocalAws) -> None:
    # GIVEN ReserveInventory's event for an order of 2 widgets out of 5
    order_id, _ = place_order(aws)
    event = reserve_event(aws, order_id)
    # WHEN it runs twice (Step Functions retries a task whose answer was lost)
    first = aws.invoke("ReserveInventoryFunction", event)
    second = aws.invoke("ReserveInventoryFunction", event)
    # THEN both succeed and the stock went down once
    assert (
        first["results"] == second["results"] == {"reserve_inventory": {"item_id": "widget", "quantity": 2}}
    )
    acme = ISSUER.token("acme")
    assert body(aws.http("GET", "/items/widget", acme))["stock"] == 3
    assert body(aws.http("GET", f"/orders/{order_id}", acme))["reserved"] == 2
    # and an order the stock cannot cover is refused as such, holding nothing
    other, _ = place_order(aws, stock=1)
    with pytest.raises(Exception, match="not enough stock") as refused:
        aws.invoke("ReserveInventoryFunction", reserve_event(aws, other))
    assert type(refused.value).__name__ == "InsufficientStock"
    assert "reserved" not in body(aws.http("GET", f"/orders/{other}", acme))


def items_page(aws: LocalAws, after: str | None = None) -> dict[str, Any]:
    """GET /items?after=... as acme."""
    event = http_api_event(ISSUER.token("acme"), path="/items", route="/items")
    if after is not None:
        event["queryStringParameters"] = {"after": after}
    response: dict[str, Any] = aws.invoke("ApiFunction", event)
    return response


def test_items_are_listed_a_page_at_a_time(aws: LocalAws) -> None:
    # GIVEN 101 items, one more than a page
    with tenant_scope("acme"), tenant_table(aws.physical["AppTable"]["Ref"]).batch_writer() as batch:
        for n in range(101):
            batch.put_item(Item={"pk": tenant_key("ITEM"), "sk": f"item-{n:03}"})
    # WHEN the tenant lists them, THEN the first page ends with where the next begins
    first = body(items_page(aws))
    assert [i["id"] for i in first["items"]] == [f"item-{n:03}" for n in range(100)]
    assert first["next"] == "item-099"
    last = body(items_page(aws, first["next"]))
    assert last == {"items": [{"id": "item-100"}]}  # no next: the last page
    assert items_page(aws, "not an id!")["statusCode"] == 400
    # another tenant's list is its own, empty
    assert body(aws.http("GET", "/items", ISSUER.token("globex"))) == {"items": []}


def test_a_page_of_items_ends_before_lambdas_response_quota(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.api
    from devtools.local_lambda import ResponseSizeTooLarge

    # GIVEN 90 items under DynamoDB's 1 MB page, each of 11,000 control characters: 7 bytes each in
    # the response, 6.9 MB for the page
    with tenant_scope("acme"), tenant_table(aws.physical["AppTable"]["Ref"]).batch_writer() as batch:
        for n in range(90):
            batch.put_item(Item={"pk": tenant_key("ITEM"), "sk": f"item-{n:03}", "text": "\x01" * 11_000})
    # WHEN the tenant lists them, THEN each page is a response Lambda returns (the local Lambda
    # refuses one over 6 MB, as Lambda does), and the pages hold every item once
    listed: list[list[str]] = []
    after = None
    while after is not None or not listed:
        page = body(items_page(aws, after))
        listed.append([item["id"] for item in page["items"]])
        after = page.get("next")
    assert len(listed) == 2
    assert [item for page in listed for item in page] == [f"item-{n:03}" for n in range(90)]
    # AND without the bound, the one page would be over the quota: the request would fail
    monkeypatch.setattr(app.api, "MAX_PAGE_RESPONSE_BYTES", 8 * 1024 * 1024)
    with pytest.raises(ResponseSizeTooLarge, match="over 6291456"):
        items_page(aws)


def test_a_put_without_a_body_is_refused_and_the_item_kept(aws: LocalAws) -> None:
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": 5})["statusCode"] == 200
    # A PUT replaces the whole item: no body (none, or an empty one) is a mistake, not an empty item
    for raw_body in (None, ""):
        event = http_api_event(
            token, method="PUT", path="/items/widget", route="/items/{id}", path_parameters={"id": "widget"}
        )
        event["body"] = raw_body
        refused = aws.invoke("ApiFunction", event)
        assert refused["statusCode"] == 400, refused
    assert body(aws.http("GET", "/items/widget", token)) == {"id": "widget", "stock": 5}
    # an explicit empty object is an empty item
    assert aws.http("PUT", "/items/widget", token, {})["statusCode"] == 200


@pytest.mark.parametrize(
    ("code", "status"), [("ProvisionedThroughputExceededException", 503), ("AccessDeniedException", 500)]
)
def test_throttled_storage_is_answered_503_to_retry_and_other_failures_500(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, code: str, status: int
) -> None:
    from botocore.exceptions import ClientError

    import app.items

    # GIVEN DynamoDB answering the tenant's read with an error (after botocore's own retries)
    def refused(kind: str, record_id: str, **options: Any) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": "the table's own words"}}, "GetItem")

    monkeypatch.setattr(app.items, "get", refused)
    # WHEN the tenant reads an item
    answer = aws.http("GET", "/items/widget", ISSUER.token("acme"))
    # THEN a passing failure asks the client to retry, any other is the service's own; neither says more
    assert answer["statusCode"] == status, answer
    assert ("Retry-After" in answer.get("headers", {})) is (status == 503)
    assert "table" not in answer["body"] and code not in answer["body"]


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


def policy_of(form: dict[str, Any]) -> dict[str, Any]:
    """The POST policy a presigned form carries, which S3 checks the upload against."""
    document: dict[str, Any] = json.loads(base64.b64decode(form["fields"]["policy"]))
    return document


def test_an_attachment_is_uploaded_with_its_form_and_downloaded_with_its_link(aws: LocalAws) -> None:
    acme, globex = ISSUER.token("acme"), ISSUER.token("globex")
    for token in (acme, globex):
        assert aws.http("PUT", "/items/widget", token, {"stock": 1})["statusCode"] == 200
    # GIVEN acme's form for its widget's attachment
    before = int(time.time())
    answer = aws.http("POST", "/items/widget/attachment", acme, {"content_type": "text/plain"})
    after = int(time.time())
    assert answer["statusCode"] == 200, answer
    form = body(answer)
    key = "tenants/acme/items/widget/attachment"
    assert form["key"] == "items/widget/attachment"
    assert form["fields"]["key"] == key and form["fields"]["Content-Type"] == "text/plain"
    # S3 takes exactly this key, of this type, of at most 10 MiB, for 5 minutes
    conditions = policy_of(form)["conditions"]
    assert ["eq", "$key", key] in conditions and ["eq", "$Content-Type", "text/plain"] in conditions
    assert ["content-length-range", 1, 10 * 1024 * 1024] in conditions
    assert form["max_bytes"] == 10 * 1024 * 1024
    assert before + 300 <= form["expires_at"] <= after + 300  # 5 minutes from when it was made
    # WHEN a client posts the form to the bucket
    uploaded = requests.post(
        form["url"], data=form["fields"], files={"file": ("manual.txt", b"acme's manual")}
    )
    assert uploaded.status_code == 204, uploaded.text
    # THEN acme's link downloads it, and globex, whose widget has no attachment, gets none
    link = aws.http("GET", "/items/widget/attachment", acme)
    assert link["statusCode"] == 200, link
    assert body(link)["key"] == "items/widget/attachment" and f"/{key}?" in body(link)["url"]
    assert requests.get(body(link)["url"]).content == b"acme's manual"
    assert aws.http("GET", "/items/widget/attachment", globex)["statusCode"] == 404


@pytest.mark.parametrize(
    ("method", "path", "request_body", "status"),
    [
        ("POST", "/items/widget/attachment", {"content_type": "text/html"}, 400),
        ("POST", "/items/widget/attachment", {"content_type": ["text/plain"]}, 400),
        ("POST", "/items/widget/attachment", {}, 400),
        ("POST", "/items/widget/attachment", None, 400),
        ("POST", "/items/no-such-item/attachment", {"content_type": "text/plain"}, 404),
        ("POST", "/items/../attachment", {"content_type": "text/plain"}, 400),
        ("GET", "/items/widget/attachment", None, 404),  # nothing uploaded yet
        ("GET", "/items/..%2F..%2Fglobex/attachment", None, 400),
        ("GET", "/orders/no-such-order/receipt", None, 404),
    ],
)
def test_attachment_and_receipt_requests_that_are_refused(
    aws: LocalAws, method: str, path: str, request_body: Any, status: int
) -> None:
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": 1})["statusCode"] == 200
    answer = aws.http(method, path, token, request_body)
    assert answer["statusCode"] == status, answer
    assert "message" in body(answer) and aws.physical["FilesBucket"]["Ref"] not in answer["body"]
    assert aws.http(method, path, None, request_body)["statusCode"] == 401


def test_deleting_an_item_deletes_its_attachment(aws: LocalAws) -> None:
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": 1})["statusCode"] == 200
    form = body(aws.http("POST", "/items/widget/attachment", token, {"content_type": "image/png"}))
    assert requests.post(form["url"], data=form["fields"], files={"file": ("a.png", b"png")}).ok
    assert aws.http("GET", "/items/widget/attachment", token)["statusCode"] == 200
    deleted = aws.http("DELETE", "/items/widget", token)
    assert (deleted["statusCode"], deleted["body"]) == (204, "")  # no content, as 204 says
    assert aws.http("GET", "/items/widget/attachment", token)["statusCode"] == 404
    with tenant_scope("acme"):
        assert tenant_bucket(aws.physical["FilesBucket"]["Ref"]).list() == []


def test_a_completed_order_has_its_receipt_which_only_its_tenant_reaches(aws: LocalAws) -> None:
    order_id, event = place_order(aws)
    acme = ISSUER.token("acme")
    assert aws.http("GET", f"/orders/{order_id}/receipt", acme)["statusCode"] == 404  # not completed yet
    assert deliver(aws, event) == []
    assert aws.wait_for_executions()[order_id]["status"] == "SUCCEEDED"
    link = aws.http("GET", f"/orders/{order_id}/receipt", acme)
    assert link["statusCode"] == 200, link
    receipt = requests.get(body(link)["url"]).json()
    assert {k: v for k, v in receipt.items() if k != "completed_at"} == {
        "order_id": order_id,
        "item_id": "widget",
        "quantity": 2,
        "charge_reference": f"sim-{order_id}",
    }
    assert receipt["completed_at"].endswith("+00:00")
    assert aws.http("GET", f"/orders/{order_id}/receipt", ISSUER.token("globex"))["statusCode"] == 404
    with tenant_scope("acme"):
        assert tenant_bucket(aws.physical["FilesBucket"]["Ref"]).list("receipts/") == [
            f"receipts/{order_id}.json"
        ]


def test_without_the_bucket_name_the_file_routes_fail_closed(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": 1})["statusCode"] == 200
    with monkeypatch.context() as patch:  # undone before the local AWS puts the environment back
        patch.delenv("FILES_BUCKET_NAME")
        for method, path, request_body in (
            ("POST", "/items/widget/attachment", {"content_type": "text/plain"}),
            ("GET", "/items/widget/attachment", None),
            ("DELETE", "/items/widget", None),
        ):
            answer = aws.http(method, path, token, request_body)
            assert (answer["statusCode"], body(answer)) == (500, {"message": "Internal Server Error"}), path
    assert aws.http("GET", "/items/widget", token)["statusCode"] == 200  # not deleted
