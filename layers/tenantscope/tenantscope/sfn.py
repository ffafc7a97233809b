"""The Step Functions adapter: ``@sfn_task`` runs a task as the tenant of its sealed input.

The state that flows through the state machine is::

    {"tenantscope": {<envelope with its sealed body>}, "results": {<task name>: <output>, ...}}

and each task state passes it with the execution from the ``$$`` context object::

    "Payload": {
      "tenantscope.$": "$.tenantscope",
      "results.$": "$.results",
      "execution": {"name.$": "$$.Execution.Name", "stateMachine.$": "$$.StateMachine.Id"}
    }
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, overload

from ._config import Settings
from ._context import TenantContext
from ._credentials import CredentialVendor
from ._envelope import SFN_KEY
from ._errors import InvalidEnvelope, LoggableError, Reason, TemporarilyUnavailable, TenantAuthError
from ._keyring import KeyRing
from ._pipeline import Failed, Misconfigured, Pipeline, Refused, Success, Unavailable, require_synchronous
from ._resolve import resolve_sfn_event

__all__ = ["sfn_task"]

TaskFunction = Callable[[dict[str, Any], Any], Any]
Task = Callable[[dict[str, Any], Any], dict[str, Any]]

# Step Functions' quota on a state's input and output and on a lambda:invoke result: 256 KiB of
# UTF-8, with room for the result's other fields (StatusCode, SdkHttpMetadata...). Over it, the
# execution fails with States.DataLimitExceeded, which Catch ["States.ALL"] does not take: no
# compensation would run after a task that already wrote.
MAX_OUTPUT_BYTES = 256 * 1024 - 8 * 1024


class TaskOutputTooLarge(LoggableError, ValueError):
    """A task's output (the envelope and every task's results) is over Step Functions' quota:
    raised by the task, so the state's Catch takes it, rather than a terminal States.DataLimitExceeded."""


def _json_size(document: object) -> int | None:
    try:
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # left to Lambda's own serialization to report
        return None
    return len(text.encode("utf-8", "surrogatepass"))


@overload
def sfn_task(fn: TaskFunction, /) -> Task: ...


@overload
def sfn_task(
    *,
    name: str | None = None,
    settings: Settings | None = None,
    ring: KeyRing | None = None,
    vendor: CredentialVendor | None = None,
) -> Callable[[TaskFunction], Task]: ...


def sfn_task(
    fn: TaskFunction | None = None,
    /,
    *,
    name: str | None = None,
    settings: Settings | None = None,
    ring: KeyRing | None = None,
    vendor: CredentialVendor | None = None,
) -> Task | Callable[[TaskFunction], Task]:
    """Run a Step Functions task function ``(payload, context)`` in the tenant's scope.

    ``payload`` is ``{"input": <the sealed execution input>, "results": <earlier tasks' outputs>}``.
    The task's return value is added to ``results`` under ``name`` (default: the function's
    name) and the envelope is carried forward in the output.

    Errors are raised with names a state machine can Catch or Retry: ``TenantAuthError`` (a
    missing, forged, expired or misaddressed envelope, a tenant other than Lambda's in tenant
    isolation mode, or a cross-tenant data call: catch it), ``TemporarilyUnavailable`` (STS or
    the key ring is out for a moment: retry it) and ``ConfigurationError``. Other exceptions
    propagate unchanged, and Lambda reports their message to Step Functions, which keeps it in
    the execution's history: keep tenant data out of a task's own exception messages.

    >>> from tenantscope import sfn_task
    >>> @sfn_task
    ... def reserve_inventory(payload, context):
    ...     return {"reserved": payload["input"]["quantity"]}
    """

    def decorate(task: TaskFunction) -> Task:
        require_synchronous(task, "@sfn_task")
        pipeline = Pipeline("sfn", settings, ring=ring, vendor=vendor)
        task_name: str | None = name or getattr(task, "__name__", None)
        if not task_name:
            raise TypeError(
                f"@sfn_task needs a name for {task!r}, which has no __name__ (a functools.partial, a "
                "callable object): use @sfn_task(name=...), the key of its output in results"
            )

        @functools.wraps(task)
        def wrapper(event: dict[str, Any], context: Any) -> dict[str, Any]:
            sealed: list[Any] = []

            def resolve() -> TenantContext:
                if not isinstance(event, Mapping):
                    raise InvalidEnvelope(Reason.MALFORMED_TASK_EVENT)
                tenant, _, body = resolve_sfn_event(
                    event,
                    pipeline.ring,
                    pipeline.settings,
                    now=time.time(),
                    lambda_tenant_id=getattr(context, "tenant_id", None),
                )
                try:
                    sealed.append(json.loads(body))
                except json.JSONDecodeError:
                    raise InvalidEnvelope(Reason.MALFORMED_BODY) from None
                return tenant

            given = event.get("results") if isinstance(event, Mapping) else None
            results = dict(given) if isinstance(given, Mapping) else {}
            outcome = pipeline.run(
                f"task {task_name}",
                resolve,
                lambda: task({"input": sealed[0], "results": results}, context),
                lambda_context=context,
                annotations={"task": task_name},
            )
            match outcome:
                case Success(value=output):
                    document = {SFN_KEY: event[SFN_KEY], "results": {**results, task_name: output}}
                    size = _json_size(document)
                    if size is not None and size > MAX_OUTPUT_BYTES:
                        raise TaskOutputTooLarge(
                            f"task {task_name}'s output is {size} bytes, over the {MAX_OUTPUT_BYTES} "
                            "that Step Functions takes: return a reference (an S3 key) instead"
                        )
                    return document
                case Refused():
                    # Exactly TenantAuthError, the name the state machine catches, and no more: which
                    # check refused is in the log, not in the execution's history.
                    raise TenantAuthError(Reason.TASK_REFUSED) from None
                case Unavailable(error=outage):  # exactly the name the state machine retries
                    raise TemporarilyUnavailable(outage.reason, outage.detail) from None
                case Misconfigured(error=error) | Failed(error=error):
                    raise error

        return wrapper

    return decorate(fn) if fn is not None else decorate
