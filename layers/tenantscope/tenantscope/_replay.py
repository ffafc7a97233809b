"""The optional replay guard: an envelope is processed successfully at most once.

A valid message re-sent under a new SQS message id within its lifetime is a replay, and SQS
itself delivers a message at least once: the same message may arrive twice, even at once. A
DynamoDB table keyed by envelope id records the message id that carries the envelope, until when
its carrier may still be running (its lease: the end of the invocation that admitted it), and
whether its processing completed:

- while the carrier's lease lasts, nothing else is admitted: another message id is a replay, and
  the same one is a second delivery of the message (refused; SQS delivers it again later);
- once it has completed, nothing is admitted again: the same message id is acknowledged without
  running again (SQS redelivers a message whose batch failed as a whole, after the record itself
  succeeded), and another is a replay;
- once the lease has passed without a completion (the carrier failed, or its invocation died),
  the next delivery is admitted and becomes the carrier: SQS retrying the same message, or a
  redrive from the dead-letter queue, which gives the message a new id.

The record lives until an hour after the envelope expires (TTL), so it outlasts the clock-skew
allowance of verification (at most ``MAX_CLOCK_SKEW_SECONDS``, a quarter of that hour).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ._aws import aws_client, aws_error_code
from ._envelope import Envelope
from ._errors import Reason, TemporarilyUnavailable

__all__ = ["DynamoDbReplayGuard", "InMemoryReplayGuard", "ReplayGuard"]

# A carrier's lease when the invocation's remaining time is not known: longer than any Lambda
# invocation (15 minutes), so a carrier younger than this may still be running.
DEFAULT_LEASE_SECONDS = 900
RETAIN_AFTER_EXPIRY_SECONDS = 3600


class ReplayGuard(Protocol):
    """Remembers the envelopes processed, so that a replayed one is refused (``replay_guard=``)."""

    def admit(self, envelope: Envelope, message_id: str, *, lease_seconds: float | None = None) -> bool:
        """True when ``message_id`` may process ``envelope`` now, holding it for ``lease_seconds``
        (the unit of work's remaining time; None: the guard's own lease), or until it completes."""
        ...

    def completed(self, envelope: Envelope, message_id: str) -> bool:
        """True when ``message_id`` has already processed ``envelope`` successfully.

        Asked when :meth:`admit` refuses: such a redelivery is acknowledged without running the
        work again, where any other refusal is a replay.
        """
        ...

    def complete(self, envelope: Envelope, message_id: str) -> None:
        """Record that ``message_id`` processed ``envelope`` successfully."""
        ...


class DynamoDbReplayGuard:
    """Replay records in a DynamoDB table (partition key ``envelope_id``, TTL attribute ``expires_at``).

    Written with the function's own role: the table holds envelope ids, not tenant data.
    """

    def __init__(
        self,
        table_name: str,
        *,
        region: str | None = None,
        client: Any = None,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self._region = region
        self._client = client
        self._lease = lease_seconds
        self._clock = clock

    def _dynamodb(self) -> Any:
        return self._client or aws_client("dynamodb", self._region)

    def admit(self, envelope: Envelope, message_id: str, *, lease_seconds: float | None = None) -> bool:
        dynamodb = self._dynamodb()
        now = int(self._clock())
        lease = self._lease if lease_seconds is None else math.ceil(lease_seconds)
        with (
            _table_call("UpdateItem"),
            contextlib.suppress(dynamodb.exceptions.ConditionalCheckFailedException),
        ):
            dynamodb.update_item(
                TableName=self.table_name,
                Key={"envelope_id": {"S": envelope.envelope_id}},
                UpdateExpression=(
                    "SET message_id = :m, tenant_id = :t, expires_at = :e, admitted_at = :now, "
                    "lease_until = :until, completed = :false"
                ),
                # A record without lease_until was written by an earlier version, whose rule it
                # keeps: its own message id again, or another once its fixed lease has passed.
                ConditionExpression=(
                    "attribute_not_exists(envelope_id) "
                    "OR (completed = :false AND (lease_until < :now OR (attribute_not_exists(lease_until) "
                    "AND (message_id = :m OR admitted_at < :stale))))"
                ),
                ExpressionAttributeValues={
                    ":m": {"S": message_id},
                    ":t": {"S": envelope.tenant_id},
                    ":e": {"N": str(envelope.expires_at + RETAIN_AFTER_EXPIRY_SECONDS)},
                    ":now": {"N": str(now)},
                    ":until": {"N": str(now + lease)},
                    ":stale": {"N": str(now - self._lease)},
                    ":false": {"BOOL": False},
                },
            )
            return True
        return False  # the condition failed: another carrier holds or completed the envelope

    def completed(self, envelope: Envelope, message_id: str) -> bool:
        # Stable once true: nothing admits a carrier again after a completion.
        dynamodb = self._dynamodb()
        with _table_call("GetItem"):
            response = dynamodb.get_item(
                TableName=self.table_name,
                Key={"envelope_id": {"S": envelope.envelope_id}},
                ConsistentRead=True,
                ProjectionExpression="message_id, completed",
            )
        item: dict[str, Any] = response.get("Item", {})
        return item.get("message_id") == {"S": message_id} and item.get("completed") == {"BOOL": True}

    def complete(self, envelope: Envelope, message_id: str) -> None:
        dynamodb = self._dynamodb()
        # When another carrier took the envelope over, only its own completion counts.
        with (
            _table_call("UpdateItem"),
            contextlib.suppress(dynamodb.exceptions.ConditionalCheckFailedException),
        ):
            dynamodb.update_item(
                TableName=self.table_name,
                Key={"envelope_id": {"S": envelope.envelope_id}},
                UpdateExpression="SET completed = :true",
                ConditionExpression="message_id = :m",
                ExpressionAttributeValues={":m": {"S": message_id}, ":true": {"BOOL": True}},
            )


@contextlib.contextmanager
def _table_call(operation: str) -> Iterator[None]:
    """A failed call to the replay table (throttled, unreachable, the table missing or not granted)
    is an outage on our side, as a key ring's is: the record is retried, a batch that met nothing
    else is retried whole, and the log names the call and DynamoDB's error code."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        raise TemporarilyUnavailable(
            Reason.REPLAY_TABLE_FAILED, f"{operation}: {aws_error_code(error)}"
        ) from None
    except BotoCoreError as error:
        raise TemporarilyUnavailable(Reason.REPLAY_TABLE_UNREACHABLE, type(error).__name__) from None


class _Record:
    """One envelope's admission (a plain class: a dataclass compiles its methods at every cold start)."""

    __slots__ = ("completed", "lease_until", "message_id")

    def __init__(self, message_id: str, lease_until: float) -> None:
        self.message_id = message_id
        self.lease_until = lease_until
        self.completed = False


class InMemoryReplayGuard:
    """A fake replay guard with the same rules, in one process's memory (tests, local runs)."""

    def __init__(
        self, *, lease_seconds: int = DEFAULT_LEASE_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self.records: dict[str, _Record] = {}
        self._lease = lease_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def admit(self, envelope: Envelope, message_id: str, *, lease_seconds: float | None = None) -> bool:
        now = self._clock()
        lease = self._lease if lease_seconds is None else lease_seconds
        with self._lock:
            record = self.records.get(envelope.envelope_id)
            if record is None or (not record.completed and record.lease_until < now):
                self.records[envelope.envelope_id] = _Record(message_id, now + lease)
                return True
            return False

    def completed(self, envelope: Envelope, message_id: str) -> bool:
        with self._lock:
            record = self.records.get(envelope.envelope_id)
            return record is not None and record.completed and record.message_id == message_id

    def complete(self, envelope: Envelope, message_id: str) -> None:
        with self._lock:
            record = self.records.get(envelope.envelope_id)
            if record is not None and record.message_id == message_id:
                record.completed = True
