"""The signed tenant envelope, wire format version 1. Specified in docs/envelope.md.

An envelope proves which tenant a message or an execution input belongs to, that its body
is unchanged, and where it was sent. It is an HMAC-SHA256 over a canonical string:

    TENANTSCOPE-ENVELOPE\\n<version>\\n<key id>\\n<tenant id>\\n<issued at>\\n<expires at>\\n
    <envelope id>\\n<sha256 hex of the body bytes>\\n<destination>

No field can contain a newline (each has a strict grammar), so field boundaries cannot be
confused. The body hash and the destination are not transmitted: the consumer computes them
from what it received and where it received it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from ._errors import InvalidEnvelope, Reason, TenantAuthError
from ._keyring import KEY_ID_PATTERN, KeyRing
from ._tenant_id import TENANT_ID, validate_tenant_id

__all__ = [
    "ATTR_ENVELOPE",
    "ATTR_SIGNATURE",
    "ATTR_TENANT",
    "ENVELOPE_VERSION",
    "SFN_KEY",
    "Envelope",
    "InvalidEnvelope",
    "seal",
    "sfn_destination",
    "sfn_envelope",
    "sqs_destination",
    "sqs_message_attributes",
    "sqs_record_fields",
    "verify",
]

ENVELOPE_VERSION = "1"
_MAGIC = "TENANTSCOPE-ENVELOPE"
ATTR_TENANT = "tenantscope-tenant"
ATTR_ENVELOPE = "tenantscope-envelope"
ATTR_SIGNATURE = "tenantscope-signature"
SFN_KEY = "tenantscope"
MAX_FIELD_CHARS = 512

# Decimal without leading zeros, so that the transmitted text is the signed text.
_INT = r"0|[1-9][0-9]{0,11}"
_MAX_TIME = 10**12 - 1
_ENVELOPE_ID = re.compile(r"[0-9a-f]{32}")
# The canonical unpadded base64url of 32 bytes: the last character carries 4 bits and two zero bits,
# so exactly one string encodes each MAC.
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_DESTINATION = re.compile(r"(sqs|sfn):[\x21-\x7e]{1,500}")
# The transmitted header, ``<version> <key id> <iat> <exp> <envelope id>``, whole: no field can
# hold a space, so this is the five fields of its split on spaces, each in its own grammar.
_HEADER = re.compile(rf"{ENVELOPE_VERSION} ({KEY_ID_PATTERN}) ({_INT}) ({_INT}) ({_ENVELOPE_ID.pattern})")


def _canonical(
    version: str,
    key_id: str,
    tenant_id: str,
    issued_at: str,
    expires_at: str,
    envelope_id: str,
    body_sha256: str,
    destination: str,
) -> bytes:
    return "\n".join(
        (_MAGIC, version, key_id, tenant_id, issued_at, expires_at, envelope_id, body_sha256, destination)
    ).encode("ascii")


@dataclass(frozen=True, init=False)
class Envelope:
    """The signed fields of one envelope (the signature travels beside it)."""

    key_id: str
    tenant_id: str
    issued_at: int
    expires_at: int
    envelope_id: str
    body_sha256: str
    destination: str
    version: str = ENVELOPE_VERSION

    # Written out rather than generated (init=False), as TenantContext's: one write instead of
    # eight object.__setattr__ calls, on every record.
    def __init__(
        self,
        key_id: str,
        tenant_id: str,
        issued_at: int,
        expires_at: int,
        envelope_id: str,
        body_sha256: str,
        destination: str,
        version: str = ENVELOPE_VERSION,
    ) -> None:
        self.__dict__.update(
            key_id=key_id,
            tenant_id=tenant_id,
            issued_at=issued_at,
            expires_at=expires_at,
            envelope_id=envelope_id,
            body_sha256=body_sha256,
            destination=destination,
            version=version,
        )

    def canonical(self) -> bytes:
        """The exact bytes that are signed."""
        return _canonical(
            self.version,
            self.key_id,
            self.tenant_id,
            str(self.issued_at),
            str(self.expires_at),
            self.envelope_id,
            self.body_sha256,
            self.destination,
        )

    def header(self) -> str:
        """The transmitted fields other than the tenant: ``<version> <key id> <iat> <exp> <envelope id>``."""
        return f"{self.version} {self.key_id} {self.issued_at} {self.expires_at} {self.envelope_id}"


def sqs_destination(queue_arn: str) -> str:
    """The destination of a message sent to ``queue_arn`` (compared with a record's eventSourceARN)."""
    return f"sqs:{queue_arn}"


def sfn_destination(state_machine_arn: str, execution_name: str) -> str:
    """The destination of an execution: ``sfn:<execution ARN>``.

    A version or alias ARN (``...:stateMachine:orders:3``, ``...:stateMachine:orders:PROD``)
    has the destination of the state machine's own ARN: the executions of every version and
    alias share the state machine's one namespace of names, and their execution ARNs name the
    state machine only.

    >>> sfn_destination("arn:aws:states:us-east-1:123456789012:stateMachine:orders", "order-1")
    'sfn:arn:aws:states:us-east-1:123456789012:execution:orders:order-1'
    >>> sfn_destination("arn:aws:states:us-east-1:123456789012:stateMachine:orders:PROD", "order-1")
    'sfn:arn:aws:states:us-east-1:123456789012:execution:orders:order-1'
    """
    parts = state_machine_arn.split(":")
    if not (
        len(parts) in (7, 8)
        and all(parts)
        and (parts[0], parts[2], parts[5]) == ("arn", "states", "stateMachine")
        and "/" not in parts[-1]
        and execution_name
    ):
        raise InvalidEnvelope(Reason.MALFORMED_DESTINATION, "not a state machine ARN and execution name")
    return "sfn:" + ":".join(parts[:5]) + f":execution:{parts[6]}:{execution_name}"


def body_sha256(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def seal(
    body: str,
    *,
    tenant_id: str,
    destination: str,
    ring: KeyRing,
    now: int,
    lifetime: int,
    envelope_id: str | None = None,
) -> tuple[Envelope, str]:
    """Seal ``body`` for ``tenant_id`` and ``destination``; returns the envelope and its signature."""
    if _DESTINATION.fullmatch(destination) is None:
        raise ValueError("invalid destination")
    if envelope_id is not None and _ENVELOPE_ID.fullmatch(envelope_id) is None:
        raise ValueError("an envelope id is 32 lowercase hex characters")
    if now < 0 or lifetime < 1 or now + lifetime > _MAX_TIME:
        raise ValueError("issued-at and lifetime out of range")
    envelope = Envelope(
        key_id=ring.active_key_id(),
        tenant_id=validate_tenant_id(tenant_id),
        issued_at=int(now),
        expires_at=int(now + lifetime),
        envelope_id=envelope_id or secrets.token_hex(16),
        body_sha256=body_sha256(body),
        destination=destination,
    )
    return envelope, _b64url(ring.sign(envelope.key_id, envelope.canonical()))


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidEnvelope(Reason.MISSING_ENVELOPE, name)
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidEnvelope(Reason.OVERSIZED_ENVELOPE, name)
    return value


def _refuse_fields(tenant: object, header: object, signature: object) -> NoReturn:
    """Refuse received fields that are not three strings in their grammars, naming the first
    field missing or oversized (in this order), then an unsupported version, then the grammar."""
    header_text = _text(header, "envelope")
    _text(tenant, "tenant")
    _text(signature, "signature")
    if _HEADER.fullmatch(header_text) is None:
        parts = header_text.split(" ")
        if len(parts) == 5 and parts[0] != ENVELOPE_VERSION:
            raise InvalidEnvelope(Reason.UNSUPPORTED_ENVELOPE_VERSION)
    raise InvalidEnvelope(Reason.MALFORMED_ENVELOPE)  # the header, the signature or the tenant id


def verify(
    *,
    tenant: object,
    header: object,
    signature: object,
    body: str,
    destination: str,
    ring: KeyRing,
    now: float,
    max_lifetime: int,
    clock_skew: int,
) -> Envelope:
    """Verify a received envelope against the body and destination it arrived with.

    Raises :class:`InvalidEnvelope` with a reason category (never a secret) on any failure.
    """
    # Three strings, each in its grammar (which keeps it under MAX_FIELD_CHARS): the tenant id
    # is validated here, once. Anything else is refused by _refuse_fields, which names the fault.
    fields = _HEADER.fullmatch(header) if type(header) is str else None
    if (
        fields is None
        or type(signature) is not str
        or _SIGNATURE.fullmatch(signature) is None
        or type(tenant) is not str
        or TENANT_ID.fullmatch(tenant) is None
    ):
        _refuse_fields(tenant, header, signature)
    key_id, iat, exp, envelope_id = fields.groups()
    issued_at, expires_at = int(iat), int(exp)
    if expires_at <= issued_at or expires_at - issued_at > max_lifetime:
        raise InvalidEnvelope(Reason.ENVELOPE_LIFETIME)
    if issued_at > now + clock_skew:
        raise InvalidEnvelope(Reason.ENVELOPE_FROM_THE_FUTURE)
    if now > expires_at + clock_skew:
        raise InvalidEnvelope(Reason.ENVELOPE_EXPIRED)
    if not isinstance(destination, str) or _DESTINATION.fullmatch(destination) is None:
        raise InvalidEnvelope(Reason.MALFORMED_DESTINATION)
    try:
        digest = body_sha256(body)
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a "\\ud800" escape in JSON input
        raise InvalidEnvelope(Reason.MALFORMED_BODY) from None
    # The grammar checked above leaves one decoding of the signature (canonical base64url), and
    # makes the received time texts the signed ones: they are signed as they are.
    mac = binascii.a2b_base64(signature.replace("-", "+").replace("_", "/") + "=")
    canonical = _canonical(ENVELOPE_VERSION, key_id, tenant, iat, exp, envelope_id, digest, destination)
    try:
        valid = ring.verify(key_id, canonical, mac)
    except TenantAuthError:  # the ring does not list key_id
        raise InvalidEnvelope(Reason.UNKNOWN_SIGNING_KEY) from None
    if not valid:
        raise InvalidEnvelope(Reason.BAD_ENVELOPE_SIGNATURE)
    return Envelope(key_id, tenant, issued_at, expires_at, envelope_id, digest, destination)


def sqs_message_attributes(envelope: Envelope, signature: str) -> dict[str, dict[str, str]]:
    """The three SQS MessageAttributes (in SendMessage form) that carry an envelope."""
    return {
        ATTR_TENANT: {"DataType": "String", "StringValue": envelope.tenant_id},
        ATTR_ENVELOPE: {"DataType": "String", "StringValue": envelope.header()},
        ATTR_SIGNATURE: {"DataType": "String", "StringValue": signature},
    }


def sqs_record_fields(message_attributes: Mapping[str, Any]) -> tuple[object, object, object]:
    """(tenant, header, signature) from a Lambda SQS record's messageAttributes; None where absent."""
    get = message_attributes.get
    return _string(get(ATTR_TENANT)), _string(get(ATTR_ENVELOPE)), _string(get(ATTR_SIGNATURE))


def _string(attribute: object) -> object:
    """The value of a String message attribute; None for any other."""
    # type() first: isinstance against the Mapping ABC costs several times more, for every record.
    if (
        not (type(attribute) is dict or isinstance(attribute, Mapping))
        or attribute.get("dataType") != "String"
    ):
        return None
    return attribute.get("stringValue")


def sfn_envelope(envelope: Envelope, signature: str, body: str) -> dict[str, str]:
    """The envelope as carried in Step Functions input under :data:`SFN_KEY`, with its sealed body."""
    return {"tenant": envelope.tenant_id, "envelope": envelope.header(), "signature": signature, "body": body}
