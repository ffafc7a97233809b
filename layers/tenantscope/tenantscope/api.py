"""The API Gateway adapter: ``@api_handler`` for REST (v1) and HTTP API (v2) proxy events."""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from ._credentials import CredentialVendor
from ._errors import CredentialsUnavailable, Forbidden, TenantError, Unauthorized, without_message
from ._jwt import JwksCache
from ._resolve import resolve_api_event
from ._runtime import lazy_runtime
from ._tracing import Span, take_cold_start

__all__ = ["api_handler"]

logger = logging.getLogger("tenantscope")

Handler = Callable[[dict[str, Any], Any], Any]
H = TypeVar("H", bound=Handler)


def _response(status: int, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps({"message": message}),
    }


def unauthorized() -> dict[str, Any]:
    return _response(401, "Unauthorized", {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def forbidden() -> dict[str, Any]:
    return _response(403, "Forbidden")


def unavailable() -> dict[str, Any]:
    return _response(503, "Service Unavailable", {"Retry-After": "1"})


def internal_error() -> dict[str, Any]:
    return _response(500, "Internal Server Error")


def _refused(span: Span, error: TenantError, response: dict[str, Any]) -> dict[str, Any]:
    status = response["statusCode"]
    logger.log(logging.ERROR if status >= 500 else logging.WARNING, "tenantscope: %d %s", status, error)
    span.record_error(error, client_error=status < 500)
    return response


def api_handler(
    fn: H | None = None,
    *,
    jwks: JwksCache | None = None,
    vendor: CredentialVendor | None = None,
    **settings: Any,
) -> Any:
    """Run a Lambda handler as the tenant of the request's verified JWT.

    The token is verified, scoped credentials are vended, and the handler runs inside the
    tenant's scope, which is reset afterwards whatever happens. Failures are answered
    without internals: 401 (bad or missing token), 403 (tenant refused or mismatched, or a
    cross-tenant data call), 503 (no credentials), 500 (anything else).

    Keyword arguments override settings (``jwt_issuer``, ``jwt_audience``, ``role_arn``,
    ...); ``jwks`` and ``vendor`` replace the key cache and credential vendor (tests).

    >>> from tenantscope import api_handler, current_tenant
    >>> @api_handler
    ... def handler(event, context):
    ...     return {"statusCode": 200, "body": current_tenant().tenant_id}
    """

    def decorate(handler: H) -> H:
        runtime = lazy_runtime(settings, jwks=jwks, vendor=vendor)

        # At cold start in Lambda, fetch the JWKS during init rather than on the first request.
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            try:
                runtime().verifier.preload()
            except Exception:  # configuration errors surface on the first request instead
                logger.warning("tenantscope: could not preload at cold start", exc_info=True)

        @functools.wraps(handler)
        def wrapper(event: dict[str, Any], context: Any) -> Any:
            # A fresh copy of the context per invocation: nothing the handler leaves in it (a
            # suspended generator's scope, a task) can reach the next invocation.
            return contextvars.copy_context().run(invoke, event, context)

        def invoke(event: dict[str, Any], context: Any) -> Any:
            try:
                rt = runtime()
                verifier = rt.verifier
            except Exception:
                logger.exception("tenantscope: configuration error")
                return internal_error()
            with rt.tracer.span("tenantscope.api") as span:
                span.annotate("cold_start", take_cold_start())
                try:
                    tenant = resolve_api_event(
                        event, verifier, rt.settings, lambda_tenant_id=getattr(context, "tenant_id", None)
                    )
                except Unauthorized as error:
                    return _refused(span, error, unauthorized())
                except Forbidden as error:
                    return _refused(span, error, forbidden())
                except CredentialsUnavailable as error:  # the issuer's keys could not be loaded
                    return _refused(span, error, unavailable())
                span.annotate("tenant_id", tenant.tenant_id)
                span.annotate("tenant_source", tenant.source)
                try:
                    credentials = rt.credentials(tenant)
                except CredentialsUnavailable as error:
                    return _refused(span, error, unavailable())
                with rt.scope(tenant, credentials, context):
                    try:
                        return handler(event, context)
                    except Forbidden as error:
                        return _refused(span, error, forbidden())
                    except CredentialsUnavailable as error:
                        return _refused(span, error, unavailable())
                    except Exception as error:
                        logged = without_message(error)
                        logger.error("tenantscope: unhandled error in handler", exc_info=logged)
                        span.record_error(logged)
                        return internal_error()

        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate
