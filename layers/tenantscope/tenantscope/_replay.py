"""The optional replay guard: each envelope is accepted under one SQS message id only.

A valid message re-sent under a new message id within its lifetime is a replay. A DynamoDB
table keyed by envelope id records the message id that first carried the envelope (with a
TTL at the envelope's expiry). The same message id again is SQS redelivering after a failure
and is accepted; a different one is refused.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from ._envelope import Envelope

__all__ = ["DynamoDbReplayGuard", "InMemoryReplayGuard", "ReplayGuard"]


class ReplayGuard(Protocol):
    def admit(self, envelope: Envelope, message_id: str) -> bool:
        """True when ``message_id`` is the first (or the same) carrier of ``envelope``."""
        ...


class DynamoDbReplayGuard:
    """Replay records in a DynamoDB table (partition key ``envelope_id``, TTL attribute ``expires_at``).

    Written with the function's own role: the table holds envelope ids, not tenant data.
    """

    def __init__(self, table_name: str, *, region: str | None = None, client: Any = None) -> None:
        self.table_name = table_name
        self._region = region
        self._client = client

    def admit(self, envelope: Envelope, message_id: str) -> bool:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb", region_name=self._region)
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    "envelope_id": {"S": envelope.envelope_id},
                    "message_id": {"S": message_id},
                    "tenant_id": {"S": envelope.tenant_id},
                    "expires_at": {"N": str(envelope.expires_at)},
                },
                ConditionExpression="attribute_not_exists(envelope_id) OR message_id = :m",
                ExpressionAttributeValues={":m": {"S": message_id}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True


class InMemoryReplayGuard:
    """A fake replay guard for tests and local runs: one container's memory only."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self._lock = threading.Lock()

    def admit(self, envelope: Envelope, message_id: str) -> bool:
        with self._lock:
            return self.seen.setdefault(envelope.envelope_id, message_id) == message_id
