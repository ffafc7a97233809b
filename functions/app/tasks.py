"""The order-fulfilment state machine's tasks. Each runs as the tenant of its sealed input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from app import files, items
from tenantscope import LoggableError, sfn_task, tenant_key


class InsufficientStock(LoggableError):
    """Not enough stock to reserve: the order fails and nothing is held."""


class PaymentDeclined(LoggableError):
    """The (simulated) payment was declined: the reservation is released."""


@sfn_task
def reserve_inventory(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    order = payload["input"]
    try:
        items.table().update_item(
            Key={"pk": tenant_key("ITEM"), "sk": order["item_id"]},
            UpdateExpression="SET stock = stock - :q",
            ConditionExpression="attribute_exists(sk) AND stock >= :q",
            ExpressionAttributeValues={":q": order["quantity"]},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            raise InsufficientStock(f"not enough stock of item {order['item_id']}") from None
        raise
    return {"item_id": order["item_id"], "quantity": order["quantity"]}


@sfn_task
def charge_payment(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    order = payload["input"]
    if order.get("simulate_payment_failure"):
        raise PaymentDeclined(f"payment declined for order {order['order_id']}")
    return {"charged": True, "reference": f"sim-{order['order_id']}"}


@sfn_task
def complete_order(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    """Write the order's receipt under the tenant's prefix, then mark the order COMPLETED: a
    completed order always has its receipt (a retry writes it again)."""
    order = payload["input"]
    receipt = {
        "order_id": order["order_id"],
        "item_id": order["item_id"],
        "quantity": order["quantity"],
        "charge_reference": payload["results"]["charge_payment"]["reference"],
        "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    key = files.put_receipt(order["order_id"], receipt)
    items.update("ORDER", order["order_id"], status="COMPLETED")
    return {"status": "COMPLETED", "receipt": key}


@sfn_task
def release_inventory(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    """Compensation for any failure after the order started: give back the reserved stock, refund
    the payment when it was charged (CompleteOrder failed after ChargePayment), mark the order FAILED."""
    order = payload["input"]
    results = payload["results"]
    reservation = results.get("reserve_inventory")
    if reservation:
        items.table().update_item(
            Key={"pk": tenant_key("ITEM"), "sk": reservation["item_id"]},
            UpdateExpression="SET stock = stock + :q",
            ExpressionAttributeValues={":q": reservation["quantity"]},
        )
    output: dict[str, Any] = {"released": bool(reservation)}
    charge = results.get("charge_payment")
    if charge:
        # Simulated, as the charge is: a real provider refunds by the charge's reference, idempotently
        # (this task is retried).
        output.update(refunded=True, charge_reference=charge["reference"])
    items.update("ORDER", order["order_id"], status="FAILED")
    return output
