"""OrderWorkerFunction: one verified order message in, one sealed fulfilment execution out."""

from __future__ import annotations

import logging
import os
from typing import Any

from botocore.exceptions import ClientError

from app import items
from tenantscope import LoggableError, SqsRecord, current_tenant, sqs_handler, start_execution

logger = logging.getLogger(__name__)

FINAL_STATUSES = ("COMPLETED", "FAILED")


class InvalidOrderMessage(LoggableError, ValueError):
    """The message body names no valid order id."""


class OrderNotFound(LoggableError, LookupError):
    """The message names an order this tenant does not have: it is written before its message is
    sent, so this is another tenant's order id, a message sent by hand, or the message of an order
    the API took back when it could not tell whether the message was sent (read again, and
    dead-lettered once SQS has delivered it maxReceiveCount times)."""


@sqs_handler
def handler(record: SqsRecord, context: Any) -> None:
    order = record.json
    order_id = items.valid_id(order.get("order_id") if isinstance(order, dict) else None)
    if order_id is None:
        raise InvalidOrderMessage("order message without a valid order_id")
    stored = items.get("ORDER", order_id)
    if stored is None:
        raise OrderNotFound(f"order {order_id} not found for this tenant")
    status = stored.get("status")
    if status in FINAL_STATUSES:
        logger.info("order %s already %s; nothing to start", order_id, status)
        return
    if status == "PENDING":
        # Before the execution starts, and only from PENDING: the execution's own COMPLETED or
        # FAILED is never overwritten.
        try:
            items.update("ORDER", order_id, only_if={"status": "PENDING"}, status="PROCESSING")
        except ClientError as error:
            if items.error_code(error) != "ConditionalCheckFailedException":
                raise
            if items.get("ORDER", order_id, consistent=True) is None:
                # Taken back by the API, which could not tell whether this message was sent and
                # answered its client so: the client places the order again.
                logger.info("order %s was taken back before it started; nothing to start", order_id)
                return
            logger.info("order %s left PENDING in another delivery; going on", order_id)
    payload = {"order_id": order_id, "item_id": stored["item_id"], "quantity": int(stored["quantity"])}
    if stored.get("simulate_payment_failure"):
        payload["simulate_payment_failure"] = True
    # The order id names the execution: a redelivered message cannot start a second one.
    try:
        start_execution(os.environ["ORDER_STATE_MACHINE_ARN"], payload, name=order_id)
    except ClientError as error:
        if items.error_code(error) != "ExecutionAlreadyExists":
            raise
        logger.info("order %s: its execution was started by an earlier delivery", order_id)
        return
    logger.info("order %s started for tenant %s", order_id, current_tenant().tenant_id)
