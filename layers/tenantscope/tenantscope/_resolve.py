"""Tenant resolution: from a trigger's event to a :class:`TenantContext`.

Every way a unit of work gets its tenant is here. The functions are pure: given the
event and a verifier they compute the context or raise, with no side effect beyond the
verifier's key cache. Adapters call them; handlers never parse tenants themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._config import ENV, Settings
from ._context import TenantContext, _context_of_valid_id
from ._envelope import (
    SFN_KEY,
    Envelope,
    sfn_destination,
    sqs_destination,
    sqs_record_fields,
)
from ._envelope import verify as verify_envelope
from ._errors import Forbidden, InvalidEnvelope, InvalidTenantId, Reason, Unauthorized
from ._tenant_id import TENANT_ID_FORMAT, validate_tenant_id

if TYPE_CHECKING:  # the verifier and the ring are handed in: an SQS function never loads _jwt
    from ._jwt import JwtVerifier
    from ._keyring import KeyRing

__all__ = [
    "bearer_token",
    "resolve_api_event",
    "resolve_sfn_event",
    "resolve_sqs_record",
    "tenant_from_claims",
]

# Compact JWS: three base64url segments. Checked before any parsing (_compact_jws).
_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_AUTHORIZATION_LENGTH = len("authorization")
# Claims copied into the context: identity facts, never the token or signature.
_SELECTED_CLAIMS = ("iss", "sub", "client_id", "token_use", "scope", "exp")


def bearer_token(event: Mapping[str, Any], max_bytes: int) -> str:
    """The bearer token of an API Gateway REST (v1) or HTTP API (v2) proxy event.

    Header names are case-insensitive and v1 ``multiValueHeaders`` count; more than one
    distinct Authorization value is refused as ambiguous.

    >>> bearer_token({"headers": {"authorization": "bearer a.b.c"}}, 100)
    'a.b.c'
    """
    values: set[str] = set()
    headers = event.get("headers")
    # type() first: isinstance against the Mapping ABC costs several times more, on every request.
    if type(headers) is dict or isinstance(headers, Mapping):
        for k, v in headers.items():
            # The length first: most headers are then passed over without a lowercased copy.
            if isinstance(k, str) and len(k) == _AUTHORIZATION_LENGTH and k.lower() == "authorization":
                if not isinstance(v, str):  # a list or dict value is unhashable: refuse, never crash
                    raise Unauthorized(Reason.MALFORMED_AUTHORIZATION)
                values.add(v)
    multi = event.get("multiValueHeaders")
    if multi is not None and (type(multi) is dict or isinstance(multi, Mapping)):
        for k, vs in multi.items():
            if (
                isinstance(k, str)
                and len(k) == _AUTHORIZATION_LENGTH
                and k.lower() == "authorization"
                and isinstance(vs, list)
            ):
                values.update(v for v in vs if isinstance(v, str))
    if not values:
        raise Unauthorized(Reason.MISSING_TOKEN)
    if len(values) > 1:
        raise Unauthorized(Reason.AMBIGUOUS_TOKEN)
    value = values.pop()
    if len(value) > max_bytes + 16:
        raise Unauthorized(Reason.MALFORMED_AUTHORIZATION)
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or len(token) > max_bytes or not _compact_jws(token):
        raise Unauthorized(Reason.MALFORMED_AUTHORIZATION)
    return token


def _compact_jws(token: str) -> bool:
    """Three base64url segments, the first two not empty (a compact JWS, and nothing else).

    What the regular expression ``[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*`` matches, checked
    with one C-level pass over the bytes instead of the expression's per-character steps.
    """
    if not token.isascii() or token.encode("ascii").translate(None, _BASE64URL) != b"..":
        return False
    first = token.find(".")
    return first > 0 and token.find(".", first + 1) > first + 1


def tenant_from_claims(claims: Mapping[str, Any], settings: Settings) -> TenantContext:
    """The tenant context of verified ``claims``; a bad tenant claim is :class:`Forbidden`."""
    return _tenant_from_claims(claims, settings.tenant_claim)


def _tenant_from_claims(claims: Mapping[str, Any], tenant_claim: str) -> TenantContext:
    try:
        tenant_id = validate_tenant_id(claims.get(tenant_claim))
    except InvalidTenantId:
        raise _refused_tenant_claim(claims, tenant_claim) from None
    subject = claims.get("sub")
    return _context_of_valid_id(
        tenant_id,
        "jwt",
        subject if isinstance(subject, str) else None,
        MappingProxyType({k: claims[k] for k in _SELECTED_CLAIMS if k in claims}),
    )


def _refused_tenant_claim(claims: Mapping[str, Any], tenant_claim: str) -> InvalidTenantId:
    """The refusal of a verified token's tenant claim. Its detail, for the log, names the claim and
    what a tenant id is; never the value, which whoever got the token issued chose."""
    if tenant_claim not in claims:
        detail = f"no claim {tenant_claim!r}: {ENV.TENANT_CLAIM} names the claim that holds the tenant id"
    else:
        detail = f"claim {tenant_claim!r} is not {TENANT_ID_FORMAT}"
    return InvalidTenantId(Reason.INVALID_TENANT_CLAIM, detail)


def resolve_api_event(
    event: Mapping[str, Any],
    verifier: JwtVerifier,
    settings: Settings,
    *,
    lambda_tenant_id: object = None,
) -> TenantContext:
    """Resolve an API Gateway proxy event to the tenant of its verified bearer token.

    ``lambda_tenant_id`` is ``context.tenant_id`` in Lambda tenant isolation mode; when
    set it must equal the token's tenant.
    """
    token = bearer_token(event, settings.max_token_bytes)
    return _same_as_lambda_tenant(
        verifier.verify_as(token, _tenant_of(settings.tenant_claim)), lambda_tenant_id
    )


@functools.cache
def _tenant_of(tenant_claim: str) -> Callable[[Mapping[str, Any]], TenantContext]:
    """tenant_from_claims for one tenant claim, the same function object each time: the verifier
    then derives a remembered token's tenant context once (the context is immutable)."""

    def tenant_of(claims: Mapping[str, Any]) -> TenantContext:
        return _tenant_from_claims(claims, tenant_claim)

    return tenant_of


def _same_as_lambda_tenant(context: TenantContext, lambda_tenant_id: object) -> TenantContext:
    """``context`` when Lambda's tenant isolation mode is off, or names the same tenant.

    In that mode (``context.tenant_id`` set) Lambda keeps one tenant per execution environment;
    a unit of work proven for another tenant must not run in it, whatever the trigger.
    """
    if lambda_tenant_id is not None and lambda_tenant_id != context.tenant_id:
        raise Forbidden(Reason.LAMBDA_TENANT_MISMATCH)
    return context


def resolve_sqs_record(
    record: Mapping[str, Any],
    ring: KeyRing,
    settings: Settings,
    *,
    now: float,
    lambda_tenant_id: object = None,
) -> tuple[TenantContext, Envelope]:
    """Resolve one Lambda SQS record to the tenant of its verified envelope.

    The destination is the record's ``eventSourceARN``, so an envelope sealed for another
    queue fails verification. ``lambda_tenant_id`` is ``context.tenant_id`` in Lambda tenant
    isolation mode; when set it must equal the envelope's tenant.
    """
    body = record.get("body")
    source_arn = record.get("eventSourceARN")
    attributes = record.get("messageAttributes")
    message_id = record.get("messageId")
    if (
        not isinstance(body, str)
        or not isinstance(source_arn, str)
        or not isinstance(message_id, str)
        or not (type(attributes) is dict or isinstance(attributes, Mapping))  # the ABC last: slower
    ):
        raise _malformed_record(record)
    tenant, header, signature = sqs_record_fields(attributes)
    envelope = verify_envelope(
        tenant=tenant,
        header=header,
        signature=signature,
        body=body,
        destination=sqs_destination(source_arn),
        ring=ring,
        now=now,
        max_lifetime=settings.sqs_envelope_ttl_seconds,
        clock_skew=settings.clock_skew_seconds,
    )
    claims = MappingProxyType({"envelope_id": envelope.envelope_id, "message_id": message_id})
    context = _context_of_valid_id(envelope.tenant_id, "sqs", None, claims)
    return _same_as_lambda_tenant(context, lambda_tenant_id), envelope


def _malformed_record(record: Mapping[str, Any]) -> InvalidEnvelope:
    """The refusal of a record that is not one of Lambda's SQS event. A message as ReceiveMessage
    answers it (``MessageId``, ``Body``: a test feeding a queue's answer to the handler) is named."""
    if "MessageId" in record and "messageId" not in record:
        return InvalidEnvelope(
            Reason.MALFORMED_RECORD,
            "a message as ReceiveMessage answers it, not a record of Lambda's SQS event: "
            "convert it with tenantscope.testing.record_from_received",
        )
    return InvalidEnvelope(Reason.MALFORMED_RECORD)


def resolve_sfn_event(
    event: Mapping[str, Any],
    ring: KeyRing,
    settings: Settings,
    *,
    now: float,
    lambda_tenant_id: object = None,
) -> tuple[TenantContext, Envelope, str]:
    """Resolve a Step Functions task event to the tenant of its sealed input.

    The event carries the envelope under ``"tenantscope"`` and, from the ``$$`` context
    object, ``"execution": {"name": ..., "stateMachine": ...}``. Returns the context, the
    envelope and the sealed body (a JSON string). ``lambda_tenant_id`` is as for SQS records.
    """
    sealed = event.get(SFN_KEY)
    execution = event.get("execution")
    if not isinstance(sealed, Mapping) or not isinstance(execution, Mapping):
        raise InvalidEnvelope(Reason.MISSING_ENVELOPE)
    name, machine, body = execution.get("name"), execution.get("stateMachine"), sealed.get("body")
    if not isinstance(name, str) or not isinstance(machine, str) or not isinstance(body, str):
        raise InvalidEnvelope(Reason.MALFORMED_ENVELOPE)
    envelope = verify_envelope(
        tenant=sealed.get("tenant"),
        header=sealed.get("envelope"),
        signature=sealed.get("signature"),
        body=body,
        destination=sfn_destination(machine, name),
        ring=ring,
        now=now,
        max_lifetime=settings.sfn_envelope_ttl_seconds,
        clock_skew=settings.clock_skew_seconds,
    )
    claims = MappingProxyType({"envelope_id": envelope.envelope_id, "execution_name": name})
    context = _context_of_valid_id(envelope.tenant_id, "sfn", name, claims)
    return _same_as_lambda_tenant(context, lambda_tenant_id), envelope, body
