"""The order-fulfilment state machine's tasks. Each runs as the tenant of its sealed input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from app import files, items
from tenantscope import LoggableError, sfn_task, tenant_key


class InsufficientStock(LoggableError):
    """Not enough stock to reserve: the order fails and nothing is held."""


class PaymentDeclined(LoggableError):
    """The (simulated) payment was declined: the reservation is released."""


class InventoryBusy(LoggableError):
    """Another transaction on the item ran at the same moment, or DynamoDB throttled: nothing was
    reserved, and the state machine retries the reservation."""


class StorageBusy(LoggableError):
    """DynamoDB or S3 throttled, failed or could not be reached after botocore's own retries: the
    order is not completed yet, and the state machine retries the task rather than fail a paid
    order."""


# Why DynamoDB cancels a transaction's items when a later attempt may commit it (items.is_passing
# tells the refusals of the whole transaction).
PASSING_REASONS = ("TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded")
# The order's hold on the item's stock ends: what ReleaseInventory writes, once.
END_HOLD = "SET released = :q REMOVE reserved"
HOLDING = "attribute_exists(reserved)"


def cancellation_reasons(error: ClientError) -> list[str]:
    """The code of each item of a cancelled transaction, in order ("None" for one that passed)."""
    return [str(reason.get("Code")) for reason in error.response.get("CancellationReasons", [])]


def update_stock_and_order(
    order: dict[str, Any],
    *,
    stock: str,
    stock_if: str,
    hold: str,
    hold_if: str,
    stock_values: dict[str, Any] | None = None,
) -> None:
    """Change the item's stock and the order's hold on it in one transaction, ``:q`` being the
    order's quantity: both happen, or neither (TransactionCanceledException, with a reason per item)."""
    table = items.table()

    def update(
        key: dict[str, str], expression: str, condition: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": table.name,
                "Key": key,
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeValues": {":q": order["quantity"], **values},
            }
        }

    table.meta.client.transact_write_items(
        TransactItems=[
            update({"pk": tenant_key("ITEM"), "sk": order["item_id"]}, stock, stock_if, stock_values or {}),
            update({"pk": tenant_key("ORDER"), "sk": order["order_id"]}, hold, hold_if, {}),
        ]
    )


@sfn_task
def reserve_inventory(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    """Take the order's quantity from the item's stock and record it on the order (``reserved``),
    in one transaction. A retry of an attempt that committed but whose answer was lost (the state
    machine retries Lambda's service errors) finds the order holding its stock and takes none
    again; ReleaseInventory gives back what the order holds, whether or not this task returned."""
    order = payload["input"]
    try:
        update_stock_and_order(
            order,
            stock="SET stock = stock - :q",
            stock_if="attribute_exists(sk) AND stock >= :q",
            hold="SET reserved = :q",
            hold_if="attribute_exists(sk) AND attribute_not_exists(reserved)",
        )
    except (ClientError, BotoCoreError) as error:
        if items.is_passing(error):
            raise InventoryBusy(f"item {order['item_id']} busy ({items.failure_name(error)})") from None
        if not isinstance(error, ClientError) or items.error_code(error) != "TransactionCanceledException":
            raise
        stock, held = cancellation_reasons(error)
        if held == "ConditionalCheckFailed" and "reserved" in (
            items.get("ORDER", order["order_id"], consistent=True) or {}
        ):
            pass  # reserved by an earlier attempt of this task
        elif stock == "ConditionalCheckFailed":
            raise InsufficientStock(f"not enough stock of item {order['item_id']}") from None
        elif stock in PASSING_REASONS or held in PASSING_REASONS:
            raise InventoryBusy(f"item {order['item_id']} busy ({stock}, {held})") from None
        else:
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
    try:
        key = files.put_receipt(order["order_id"], receipt)
        items.update("ORDER", order["order_id"], status="COMPLETED")
    except (ClientError, BotoCoreError) as error:
        if not items.is_passing(error):
            raise
        raise StorageBusy(
            f"order {order['order_id']} not completed yet ({items.failure_name(error)})"
        ) from None
    return {"status": "COMPLETED", "receipt": key}


def end_hold(order: dict[str, Any]) -> None:
    """Record the order's hold as released without giving its stock back (once: a retry finds none)."""
    try:
        items.table().update_item(
            Key={"pk": tenant_key("ORDER"), "sk": order["order_id"]},
            UpdateExpression=END_HOLD,
            ConditionExpression=HOLDING,
            ExpressionAttributeValues={":q": order["quantity"]},
        )
    except ClientError as error:
        if items.error_code(error) != "ConditionalCheckFailedException":
            raise


@sfn_task
def release_inventory(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    """Compensation for any failure after the order started, from what the order records rather
    than from the results a failed task never returned: give back the stock the order holds (in
    one transaction that moves it from ``reserved`` to ``released``), take back the receipt
    CompleteOrder may have written before it failed, refund the payment when it was charged, and
    mark the order FAILED. Every step can run again: the state machine retries this task."""
    order = payload["input"]
    try:
        update_stock_and_order(
            order,
            stock="SET stock = stock + :q",
            stock_if="attribute_type(stock, :number)",
            stock_values={":number": "N"},
            hold=END_HOLD,
            hold_if=HOLDING,
        )
    except ClientError as error:
        if items.error_code(error) != "TransactionCanceledException":
            raise
        stock, held = cancellation_reasons(error)
        if held == "ConditionalCheckFailed":
            pass  # The order holds no stock: it never reserved any, or an earlier attempt released it.
        elif stock == "ConditionalCheckFailed":
            # The tenant deleted the item, or rewrote it without a stock, while the order held
            # some: there is nothing to give it back to, and the hold ends all the same.
            end_hold(order)
        else:
            raise
    files.delete(files.receipt_key(order["order_id"]))
    stored = items.get("ORDER", order["order_id"], consistent=True) or {}
    output: dict[str, Any] = {"released": "released" in stored}
    charge = payload["results"].get("charge_payment")
    if charge:
        # Simulated, as the charge is: a real provider refunds by the charge's reference, idempotently
        # (this task is retried).
        output.update(refunded=True, charge_reference=charge["reference"])
    items.update("ORDER", order["order_id"], status="FAILED")
    return output
