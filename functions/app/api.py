"""ApiFunction: the items, attachments and orders routes of the HTTP API."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import uuid
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from app import files, items
from tenantscope import api_handler, current_tenant, send_message

logger = logging.getLogger(__name__)


def json_value(value: Any) -> Any:
    """DynamoDB numbers (Decimal) back as JSON numbers: integers exactly, others as the nearest
    double (what a JSON client reads them as anyway); anything else as its string."""
    if isinstance(value, Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, default=json_value),
    }


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


MAX_BODY_CHARS = 64 * 1024  # a record's JSON: far under DynamoDB's 400 KB item
# A page of items, written as the response's body: under Lambda's 6 MB response, with room for the
# rest of the response. One item always fits (at most 400 KB stored, 7 bytes a byte at worst).
MAX_PAGE_RESPONSE_BYTES = 5 * 1024 * 1024


def parse_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object of the request body, or None. API Gateway base64-encodes a body it takes
    for binary (``isBase64Encoded``). Non-integral numbers are parsed as Decimal (boto3's DynamoDB
    serializer refuses floats); NaN and Infinity, not JSON, are refused, as is a body over
    MAX_BODY_CHARS (base64 counted as sent)."""
    raw = event.get("body") or "{}"
    # Before decoding: base64 of the longest body's UTF-8 (at most 4 bytes a character).
    if not isinstance(raw, str) or len(raw) > MAX_BODY_CHARS * 4 * 4 // 3 + 4:
        return None
    try:
        if event.get("isBase64Encoded") is True:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        if len(raw) > MAX_BODY_CHARS:
            return None
        body = json.loads(raw, parse_float=Decimal, parse_constant=reject_constant)
    # binascii.Error and UnicodeDecodeError are ValueErrors; a body nested deep enough exhausts the
    # parser's recursion (a few thousand levels on Python 3.11, tens of thousands on 3.13)
    except (ValueError, TypeError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def route(event: dict[str, Any]) -> tuple[str, str | None]:
    """(METHOD /resource, id) for HTTP API v2 or REST v1 events."""
    route_key = event.get("routeKey") or f"{event.get('httpMethod')} {event.get('resource')}"
    record_id = (event.get("pathParameters") or {}).get("id")
    return route_key, record_id


def header(event: dict[str, Any], name: str) -> str | None:
    """A request header's value, whatever its case (HTTP API lowercases names, REST keeps them)."""
    headers = event.get("headers") or {}
    return next((value for key, value in headers.items() if key.lower() == name), None)


def place_order(event: dict[str, Any]) -> dict[str, Any]:
    """Write the order as PENDING, then hand it to the worker as a signed tenant message.

    With an ``Idempotency-Key`` header, placing the order again with the same key and the same
    order answers with the order already placed rather than placing a second one (a client
    retrying after a timeout), and the same key with another order is refused (422)."""
    body = parse_body(event) or {}
    item_id = items.valid_id(body.get("item_id"))
    quantity = body.get("quantity")
    if item_id is None or type(quantity) is not int or not 0 < quantity <= 1000:
        return respond(400, {"message": "an order needs item_id and a quantity from 1 to 1000"})
    raw_key = header(event, "idempotency-key")
    key = items.valid_id(raw_key)
    if raw_key is not None and key is None:
        return respond(400, {"message": "Idempotency-Key must be 1 to 64 letters, digits, '-' or '_'"})
    attributes: dict[str, Any] = {"status": "PENDING", "item_id": item_id, "quantity": quantity}
    if body.get("simulate_payment_failure") is True:
        attributes["simulate_payment_failure"] = True
    order_id = uuid.uuid4().hex if key is None else keyed_order_id(key)
    if items.get("ITEM", item_id, consistent=True) is None:  # an item put a moment ago counts
        # Its order placed before the item was deleted is still the answer to a retry.
        placed = items.get("ORDER", order_id, consistent=True) if key is not None else None
        if placed is not None:
            return replay_order(order_id, placed, attributes)
        return respond(404, {"message": "no such item"})
    if key is None:
        order = items.put("ORDER", order_id, attributes)
    else:
        order = items.put_new("ORDER", order_id, attributes)
        if order is None:  # placed before with this key
            return replay_order(order_id, items.get("ORDER", order_id, consistent=True), attributes)
    try:
        send_message(os.environ["ORDER_QUEUE_URL"], json.dumps({"order_id": order_id}))
    except Exception as error:
        # Not sent (the key ring or the queue is out), or not known to be (a timeout after the
        # queue took it). An order placed with a key stays, PENDING, and placing it again with the
        # key sends it. Any other is taken back while it is PENDING, since its client, answered
        # 503 or 500, places it again as a new order; one a worker has moved on was sent after
        # all, and is accepted.
        if key is None and not items.delete("ORDER", order_id, only_if={"status": "PENDING"}):
            started = items.get("ORDER", order_id, consistent=True)
            if started is not None:
                logger.warning("order %s was sent after all (%s)", order_id, type(error).__name__)
                return respond(202, started)
        raise
    return respond(202, order)


# What a client asks for in an order; the same key must come with the same.
ORDER_FIELDS = ("item_id", "quantity", "simulate_payment_failure")


def keyed_order_id(key: str) -> str:
    """The id of the order placed with Idempotency-Key ``key``. The tenant is in it: an order id
    also names the order's execution, whose names the state machine shares among all tenants."""
    tenant = current_tenant().tenant_id
    return hashlib.sha256(f"{tenant}\n{key}".encode()).hexdigest()[:32]


def replay_order(order_id: str, placed: dict[str, Any] | None, attributes: dict[str, Any]) -> dict[str, Any]:
    """The answer to an order placed again with its key: ``placed``, the order as it is now, its
    message sent again while it is still PENDING (the first placing may have failed to send it, and
    the worker starts an order once however many messages name it)."""
    if placed is None:  # deleted by hand since: nothing to answer with
        return respond(409, {"message": "this Idempotency-Key's order is gone"})
    if any(placed.get(name) != attributes.get(name) for name in ORDER_FIELDS):
        return respond(422, {"message": "this Idempotency-Key was used for another order"})
    if placed.get("status") == "PENDING":
        send_message(os.environ["ORDER_QUEUE_URL"], json.dumps({"order_id": order_id}))
    return respond(202, placed)


def upload_attachment(item_id: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """A form that uploads the item's attachment straight to the bucket (a presigned POST)."""
    content_type = (body or {}).get("content_type")
    if content_type not in files.ATTACHMENT_TYPES:
        return respond(400, {"message": f"content_type must be one of {', '.join(files.ATTACHMENT_TYPES)}"})
    # Strongly consistent, as an order's: an item put a moment ago has an attachment form.
    if items.get("ITEM", item_id, consistent=True) is None:
        return respond(404, {"message": "not found"})
    key = files.attachment_key(item_id)
    form = files.upload_form(key, content_type)
    return respond(200, {**form, "key": key, "max_bytes": files.MAX_ATTACHMENT_BYTES})


def download(key: str) -> dict[str, Any]:
    """A link that downloads the tenant's object ``key``, or 404 when there is none."""
    if not files.exists(key):
        return respond(404, {"message": "not found"})
    return respond(200, {"key": key, "url": files.download_url(key)})


def list_items(event: dict[str, Any]) -> dict[str, Any]:
    """A page of the tenant's items; ``next``, when there are more, is the ``after`` of the next page."""
    raw_after = (event.get("queryStringParameters") or {}).get("after")
    after = items.valid_id(raw_after)
    if raw_after is not None and after is None:
        return respond(400, {"message": "after must be an item id"})
    page, next_after = items.list_page("ITEM", after=after)
    answer = respond(200, page_body(page, next_after))
    # The body as Lambda writes it into its response: escaped once more.
    if len(json.dumps(answer["body"])) <= MAX_PAGE_RESPONSE_BYTES:
        return answer
    # A page of DynamoDB's 1 MB can grow past Lambda's 6 MB response once written as JSON (a
    # control character is 1 byte stored, 7 as "\\u0001" in the response's body string): it ends
    # at the last item that fits, and the next page goes on from there.
    size = 0
    for count, item in enumerate(page):
        size += len(json.dumps(json.dumps(item, default=json_value))) + 2
        if size > MAX_PAGE_RESPONSE_BYTES and count:
            return respond(200, page_body(page[:count], page[count - 1]["id"]))
    return answer


def page_body(page: list[dict[str, Any]], next_after: str | None) -> dict[str, Any]:
    """A page of items, and the ``after`` of the next when there are more."""
    return {"items": page, **({"next": next_after} if next_after else {})}


@api_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return serve(event)
    except (ClientError, BotoCoreError) as error:
        if not items.is_passing(error):
            raise
        # Throttled or unreachable storage passes: the client retries, as after the layer's own 503.
        logger.warning("request not served: %s", items.failure_name(error))
        return respond(503, {"message": "Service Unavailable"}, {"Retry-After": "1"})


def serve(event: dict[str, Any]) -> dict[str, Any]:
    """The answer of the route ``event`` asks for, in its tenant's scope."""
    route_key, raw_id = route(event)
    record_id = items.valid_id(raw_id)
    if raw_id is not None and record_id is None:
        return respond(400, {"message": "invalid id"})

    if route_key == "GET /items":
        return list_items(event)
    if route_key == "PUT /items/{id}" and record_id:
        # No body is not an empty item: a PUT replaces the whole item.
        body = parse_body(event) if event.get("body") else None
        if body is None:
            return respond(
                400, {"message": f"body must be a JSON object of at most {MAX_BODY_CHARS} characters"}
            )
        why = items.unstorable(body)
        if why is not None:
            return respond(400, {"message": why})
        return respond(200, items.put("ITEM", record_id, body))
    if route_key == "GET /items/{id}" and record_id:
        found = items.get("ITEM", record_id)
        return respond(200, found) if found else respond(404, {"message": "not found"})
    if route_key == "DELETE /items/{id}" and record_id:
        # The attachment first: if that fails, the item is still there to be deleted again.
        files.delete(files.attachment_key(record_id))
        if not items.delete("ITEM", record_id):
            return respond(404, {"message": "not found"})
        return {"statusCode": 204, "body": ""}
    if route_key == "POST /items/{id}/attachment" and record_id:
        return upload_attachment(record_id, parse_body(event))
    if route_key == "GET /items/{id}/attachment" and record_id:
        return download(files.attachment_key(record_id))
    if route_key == "POST /orders":
        return place_order(event)
    if route_key == "GET /orders/{id}" and record_id:
        found = items.get("ORDER", record_id)
        return respond(200, found) if found else respond(404, {"message": "not found"})
    if route_key == "GET /orders/{id}/receipt" and record_id:
        return download(files.receipt_key(record_id))
    return respond(404, {"message": "no such route"})
