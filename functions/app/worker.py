"""OrderWorkerFunction: one verified order message in, one sealed fulfilment execution out."""

from __future__ import annotations

import logging
import os
from typing import Any

from app import items
from tenantscope import SqsRecord, current_tenant, sqs_handler, start_execution

logger = logging.getLogger(__name__)


@sqs_handler
def handler(record: SqsRecord, context: Any) -> None:
    order = record.json
    order_id = items.valid_id(order.get("order_id") if isinstance(order, dict) else None)
    if order_id is None:
        raise ValueError("order message without a valid order_id")
    stored = items.get("ORDER", order_id)
    if stored is None:
        raise LookupError("order not found for this tenant")
    if stored.get("status") != "PENDING":
        logger.info("order %s already %s; nothing to start", order_id, stored.get("status"))
        return
    payload = {"order_id": order_id, "item_id": stored["item_id"], "quantity": int(stored["quantity"])}
    if stored.get("simulate_payment_failure"):
        payload["simulate_payment_failure"] = True
    # The order id names the execution: a redelivered message cannot start a second one.
    try:
        start_execution(os.environ["ORDER_STATE_MACHINE_ARN"], payload, name=order_id)
    except Exception as error:
        if type(error).__name__ != "ExecutionAlreadyExists":
            raise
    items.update("ORDER", order_id, status="PROCESSING")
    logger.info("order %s started for tenant %s", order_id, current_tenant().tenant_id)
