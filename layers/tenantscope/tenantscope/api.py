"""The API Gateway adapter: ``@api_handler`` for REST (v1) and HTTP API (v2) proxy events."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar, overload

from ._config import ENV, Settings
from ._credentials import CredentialVendor
from ._errors import Reason, Unauthorized
from ._jwt import JwksCache
from ._pipeline import (
    Outcome,
    Pipeline,
    Refused,
    Success,
    Unavailable,
    load_after_each_resume,
    require_synchronous,
)
from ._resolve import resolve_api_event
from ._tracing import take_cold_start

__all__ = ["api_handler"]

logger = logging.getLogger("tenantscope")

H = TypeVar("H", bound=Callable[[dict[str, Any], Any], Any])


def _response(status: int, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": _body(message),
    }


@functools.cache
def _body(message: str) -> str:
    """The JSON body of a refusal: a handful of constant messages, serialized once each."""
    return json.dumps({"message": message})


def _answer(outcome: Outcome[Any]) -> Any:
    """The handler's response, or a bounded answer with no internals in its body."""
    match outcome:
        case Success(value=value):
            return value
        case Refused(error=error) if isinstance(error, Unauthorized):
            # RFC 6750 3.1: a request with no credentials at all gets the challenge, no error code.
            challenge = "Bearer" if error.reason is Reason.MISSING_TOKEN else 'Bearer error="invalid_token"'
            return _response(401, "Unauthorized", {"WWW-Authenticate": challenge})
        case Refused():
            return _response(403, "Forbidden")
        case Unavailable():
            return _response(503, "Service Unavailable", {"Retry-After": "1"})
    return _response(500, "Internal Server Error")  # misconfigured, or the handler failed


def _preload(pipeline: Pipeline) -> None:
    try:
        pipeline.verifier.preload()
    except Exception:  # configuration errors surface on the first request instead
        logger.warning("tenantscope: could not preload at cold start", exc_info=True)


@overload
def api_handler(fn: H, /) -> H: ...


@overload
def api_handler(
    *,
    settings: Settings | None = None,
    jwks: JwksCache | None = None,
    vendor: CredentialVendor | None = None,
) -> Callable[[H], H]: ...


def api_handler(
    fn: H | None = None,
    /,
    *,
    settings: Settings | None = None,
    jwks: JwksCache | None = None,
    vendor: CredentialVendor | None = None,
) -> H | Callable[[H], H]:
    """Run a Lambda handler as the tenant of the request's verified JWT.

    The token is verified, scoped credentials are vended, and the handler runs inside the
    tenant's scope, which ends afterwards whatever happens. Failures are answered without
    internals: 401 (bad or missing token), 403 (tenant refused or mismatched, or a cross-tenant
    data call), 503 with ``Retry-After`` (a passing outage: STS, the issuer's keys), 500 (a
    configuration error, or the handler raised).

    ``settings`` replaces the settings read from the environment; ``jwks`` and ``vendor``
    replace the issuer's key cache and the credential vendor (tests, fakes).

    >>> from tenantscope import api_handler, current_tenant
    >>> @api_handler
    ... def handler(event, context):
    ...     return {"statusCode": 200, "body": current_tenant().tenant_id}
    """

    def decorate(handler: H) -> H:
        require_synchronous(handler, "@api_handler")
        pipeline = Pipeline("api", settings, jwks=jwks, vendor=vendor)

        # At cold start in Lambda, fetch the JWKS during init rather than on the first request,
        # and under SnapStart again as each snapshot resumes, once the one in it is forgotten.
        if os.environ.get(ENV.LAMBDA_FUNCTION_NAME) and pipeline.loads_at_init:
            _preload(pipeline)
            load_after_each_resume(functools.partial(_preload, pipeline))

        @functools.wraps(handler)
        def wrapper(event: dict[str, Any], context: Any) -> Any:
            return _answer(
                pipeline.run(
                    "API request",
                    lambda: resolve_api_event(
                        event,
                        pipeline.verifier,
                        pipeline.settings,
                        lambda_tenant_id=getattr(context, "tenant_id", None),
                    ),
                    lambda: handler(event, context),
                    lambda_context=context,
                    annotations={"cold_start": take_cold_start()},
                )
            )

        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate
