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

import contextvars
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._credentials import CredentialVendor
from ._envelope import SFN_KEY
from ._errors import CredentialsUnavailable, TenantAuthError, log_reason
from ._keys import KeyRing
from ._resolve import resolve_sfn_event
from ._runtime import lazy_runtime

__all__ = ["sfn_task"]

logger = logging.getLogger("tenantscope")

TaskFunction = Callable[[dict[str, Any], Any], Any]


def sfn_task(
    fn: TaskFunction | None = None,
    *,
    name: str | None = None,
    ring: KeyRing | None = None,
    vendor: CredentialVendor | None = None,
    **settings: Any,
) -> Any:
    """Run a Step Functions task function ``(payload, context)`` in the tenant's scope.

    ``payload`` is ``{"input": <the sealed execution input>, "results": <earlier tasks' outputs>}``.
    The task's return value is added to ``results`` under ``name`` (default: the function's
    name) and the envelope is carried forward in the output.

    Errors are raised with names a state machine can Catch: ``TenantAuthError`` (a missing,
    forged, expired or misaddressed envelope, a tenant other than Lambda's in tenant isolation
    mode, or a cross-tenant data call) and
    ``CredentialsUnavailable`` (retry it). Other exceptions propagate unchanged.

    >>> from tenantscope.sfn import sfn_task
    >>> @sfn_task
    ... def reserve_inventory(payload, context):
    ...     return {"reserved": payload["input"]["quantity"]}
    """

    def decorate(task: TaskFunction) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        runtime = lazy_runtime(settings, vendor=vendor, ring=ring)
        task_name = name or task.__name__

        @functools.wraps(task)
        def wrapper(event: dict[str, Any], context: Any) -> dict[str, Any]:
            return contextvars.copy_context().run(run_task, event, context)

        def run_task(event: dict[str, Any], context: Any) -> dict[str, Any]:
            rt = runtime()
            with rt.tracer.span("tenantscope.sfn") as span:
                span.annotate("task", task_name)
                try:
                    if not isinstance(event, Mapping):
                        raise TenantAuthError("task event is not an object")
                    tenant, _, body = resolve_sfn_event(
                        event,
                        rt.ring,
                        rt.settings,
                        now=time.time(),
                        lambda_tenant_id=getattr(context, "tenant_id", None),
                    )
                    sealed_input = json.loads(body)
                except CredentialsUnavailable as error:  # the key ring could not be loaded: retry
                    logger.error("tenantscope: task %s: %s", task_name, error)
                    span.record_error(error)
                    raise CredentialsUnavailable("credentials unavailable") from None
                except (TenantAuthError, json.JSONDecodeError) as error:
                    logger.warning("tenantscope: task %s refused: %s", task_name, log_reason(error))
                    span.record_error(error, client_error=True)
                    raise TenantAuthError("tenant envelope refused") from None
                span.annotate("tenant_id", tenant.tenant_id)
                span.annotate("tenant_source", tenant.source)
                span.annotate("execution_name", tenant.claims["execution_name"])
                try:
                    credentials = rt.credentials(tenant)
                except CredentialsUnavailable as error:
                    logger.error("tenantscope: task %s: %s", task_name, error)
                    span.record_error(error)  # names how STS failed; the state machine sees one name
                    raise CredentialsUnavailable("credentials unavailable") from None
                results = event.get("results")
                results = dict(results) if isinstance(results, Mapping) else {}
                with rt.scope(tenant, credentials, context):
                    try:
                        output = task({"input": sealed_input, "results": results}, context)
                    except TenantAuthError as error:
                        logger.warning("tenantscope: task %s refused: %s", task_name, error)
                        span.record_error(error, client_error=True)
                        raise TenantAuthError("tenant access refused") from None
                return {SFN_KEY: event[SFN_KEY], "results": {**results, task_name: output}}

        return wrapper

    return decorate(fn) if fn is not None else decorate
