"""The Lambda side of the local AWS: the template's functions, called as Lambda calls them.

Requests are routed to the function that serves them; SQS queues are polled as an event source
mapping does; Step Functions tasks reach the real handlers through moto's Lambda backend.
"""

from __future__ import annotations

import importlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from devtools.cfn import ACCOUNT, REGION
from tenantscope.testing import LambdaContext, http_api_event, record_from_received, sqs_event

__all__ = ["LocalFunction", "LocalLambda"]


# Lambda's quota for the payload of a synchronous invocation's response (6 MB).
MAX_RESPONSE_BYTES = 6 * 1024 * 1024


class ResponseSizeTooLarge(Exception):
    """Lambda's Function.ResponseSizeTooLarge: the invocation fails, and API Gateway answers 5xx."""


def _decimal_as_float(value: object) -> float:
    """What the Lambda runtime's JSON encoder makes of a Decimal; it refuses other types alike."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"Unable to marshal response: {type(value).__name__} is not JSON serializable")


@dataclass
class LocalFunction:
    """A function of the template, as the local runtime calls it."""

    logical_id: str
    name: str
    handler: str
    environment: dict[str, str]
    timeout: int
    routes: list[tuple[str, str]] = field(default_factory=list)
    queue_arn: str | None = None
    batch_size: int = 10

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}"

    def context(self) -> LambdaContext:
        """The context object of one invocation of this function."""
        return LambdaContext(self.name, request_id=str(uuid.uuid4()), timeout=self.timeout)

    def load(self) -> Callable[[Any, Any], Any]:
        module, _, attribute = self.handler.rpartition(".")
        handler: Callable[[Any, Any], Any] = getattr(importlib.import_module(module), attribute)
        return handler


class LocalLambda:
    """Runs registered functions; needs ``template``, ``physical`` and ``_client`` from its stack."""

    template: dict[str, Any]
    physical: dict[str, dict[str, str]]

    def __init__(self) -> None:
        self.functions: dict[str, LocalFunction] = {}
        self._invoke_lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._queue_urls: dict[str, str] = {}

    def _client(self, service: str) -> Any:
        """A client of the local AWS, made once per service (a client costs milliseconds)."""
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service, region_name=REGION)
        return self._clients[service]

    def environment(self) -> dict[str, str]:
        """Every function's environment, merged: they share one process here."""
        merged: dict[str, str] = {}
        for function in self.functions.values():
            merged.update(function.environment)
        return merged

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Call a function's handler as Lambda would (one invocation at a time), refusing a response
        over Lambda's quota for a synchronous invocation as Lambda does."""
        function = self.functions[logical_id]
        response = function.load()(event, function.context())
        size = len(json.dumps(response, default=_decimal_as_float).encode())
        if size > MAX_RESPONSE_BYTES:
            raise ResponseSizeTooLarge(f"{logical_id}'s response is {size} bytes, over {MAX_RESPONSE_BYTES}")
        return response

    def route(self, method: str, path: str) -> tuple[LocalFunction, str, dict[str, str]]:
        """The function, route key and path parameters for an HTTP request."""
        for function in self.functions.values():
            for route_method, pattern in function.routes:
                regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
                match = re.match(regex, path)
                if route_method == method and match:
                    return function, f"{method} {pattern}", match.groupdict()
        raise LookupError(f"no route for {method} {path}")

    def http(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """An HTTP API (payload v2) request to the function that serves the route."""
        function, route_key, parameters = self.route(method, path)
        event = http_api_event(
            token,
            method=method,
            path=path,
            route=route_key.split(" ", 1)[1],
            body=body,
            path_parameters=parameters,
            headers=headers,
        )
        response: dict[str, Any] = self.invoke(function.logical_id, event)
        return response

    def queue_url(self, logical_id: str) -> str:
        """The URL of the queue a function's SQS event source reads."""
        if logical_id not in self._queue_urls:
            function = self.functions[logical_id]
            assert function.queue_arn is not None
            name = function.queue_arn.rsplit(":", 1)[1]
            self._queue_urls[logical_id] = self._client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        return self._queue_urls[logical_id]

    def receive(self, logical_id: str, *, visibility_timeout: int | None = None) -> list[dict[str, Any]]:
        """One ReceiveMessage of a function's SQS event source: up to its batch size, every attribute."""
        extra = {} if visibility_timeout is None else {"VisibilityTimeout": visibility_timeout}
        messages: list[dict[str, Any]] = (
            self._client("sqs")
            .receive_message(
                QueueUrl=self.queue_url(logical_id),
                MaxNumberOfMessages=self.functions[logical_id].batch_size,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                AttributeNames=["All"],
                **extra,
            )
            .get("Messages", [])
        )
        return messages

    def sqs_event_for(self, logical_id: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The event Lambda's event source mapping builds from received messages."""
        queue_arn = self.functions[logical_id].queue_arn
        assert queue_arn is not None
        return sqs_event(record_from_received(m, queue_arn=queue_arn) for m in messages)

    def poll_queue(self, logical_id: str) -> tuple[int, list[str]]:
        """One poll of a function's SQS event source, as Lambda's event source mapping does it.

        Returns (records delivered, message ids reported as failures). Failed records are made
        visible again at once, so a retry (and, after maxReceiveCount, the DLQ) follows quickly.
        """
        messages = self.receive(logical_id)
        if not messages:
            return 0, []
        try:
            response = self.invoke(logical_id, self.sqs_event_for(logical_id, messages)) or {}
        except Exception:  # a failed invocation: Lambda returns the whole batch to the queue
            response = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages]}
        failed = [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]
        sqs, url = self._client("sqs"), self.queue_url(logical_id)
        for message in messages:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages), failed

    def wait_for_executions(self, timeout: float = 120.0) -> dict[str, dict[str, Any]]:
        """Every execution of the template's state machines, once none is still running.

        moto runs executions on background threads; they must not outlive the local AWS.
        """
        sfn = self._client("stepfunctions")
        machines = [
            p["Arn"]
            for n, p in self.physical.items()
            if self.template["Resources"].get(n, {}).get("Type") == "AWS::Serverless::StateMachine"
        ]
        deadline = time.monotonic() + timeout
        while True:
            executions = [
                e for arn in machines for e in sfn.list_executions(stateMachineArn=arn)["executions"]
            ]
            if all(e["status"] != "RUNNING" for e in executions) or time.monotonic() > deadline:
                return {e["name"]: sfn.describe_execution(executionArn=e["executionArn"]) for e in executions}
            time.sleep(0.05)

    def dispatch_lambda(self, function_name: str, payload: bytes | str | None) -> tuple[bytes, bool]:
        """Step Functions' Lambda invoke: run the named function; (response body, failed)."""
        name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        function = next(f for f in self.functions.values() if name in (f.name, f.logical_id))
        event = json.loads(payload or "{}")
        with self._invoke_lock:  # one invocation at a time per process, as in a Lambda sandbox
            try:
                result = self.invoke(function.logical_id, event)
            except Exception as error:
                body = {"errorType": type(error).__name__, "errorMessage": str(error)}
                return json.dumps(body).encode(), True
        return json.dumps(result).encode(), False
