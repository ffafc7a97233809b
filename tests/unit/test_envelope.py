"""The signed tenant envelope, version 1 (docs/envelope.md): vectors, round trips, and every refusal.

The vectors in tests/envelope_vectors.json are checked three ways: through ``seal`` (byte-exact
canonical string, signature, header and carriage), through an independent HMAC computed here
from the specification, and against docs/envelope.md, so that the document and the code cannot
drift. Every refusal case is otherwise valid and correctly signed unless the case is about the
signature, so each one is refused for its own rule and not by accident.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from tenantscope import ConfigurationError, Reason
from tenantscope._config import Settings
from tenantscope._envelope import (
    ATTR_ENVELOPE,
    ATTR_SIGNATURE,
    ATTR_TENANT,
    MAX_FIELD_CHARS,
    SFN_KEY,
    Envelope,
    InvalidEnvelope,
    seal,
    sfn_destination,
    sfn_envelope,
    sqs_destination,
    sqs_message_attributes,
    sqs_record_fields,
    verify,
)
from tenantscope._errors import InvalidTenantId, LoggableError, TenantAuthError, log_reason
from tenantscope._keyring import StaticKeyRing
from tenantscope._producer import queue_arn_from_url, seal_input, send_message, sign_message
from tenantscope._resolve import resolve_sfn_event, resolve_sqs_record
from tenantscope.testing import RING_DOCUMENT, ring_spec
from tests.fakes import RecordingSqs


def exactly(message: str) -> str:
    """A ``pytest.raises`` match for ``message`` whole."""
    return f"^{re.escape(message)}$"


ROOT = Path(__file__).resolve().parents[2]
VECTORS_FILE = ROOT / "tests" / "envelope_vectors.json"
SPEC_FILE = ROOT / "docs" / "envelope.md"

VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]

KEY1 = base64.b64encode(bytes(range(32))).decode()
KEY2 = base64.b64encode(hashlib.sha256(b"second test key").digest()).decode()
RING = StaticKeyRing({"active": "k1", "keys": {"k1": KEY1}})
NOW = 1_767_225_600
LIFETIME = 3600
MAX_LIFETIME = 86_400
SKEW = 60
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:orders"
DESTINATION = sqs_destination(QUEUE_ARN)
TENANT = "acme-corp"
BODY = '{"order_id":"o-1","quantity":3}'
ENVELOPE_ID = "0123456789abcdef0123456789abcdef"


def ring_of(active: str, **keys: str) -> StaticKeyRing:
    return StaticKeyRing({"active": active, "keys": keys})


def vector_destination(vector: dict[str, Any]) -> str:
    inputs = vector["inputs"]
    if vector["carriage"] == "sqs":
        return sqs_destination(inputs["queue_arn"])
    return sfn_destination(inputs["state_machine_arn"], inputs["execution_name"])


def vector_ring(vector: dict[str, Any]) -> StaticKeyRing:
    inputs = vector["inputs"]
    return ring_of(inputs["key_id"], **{inputs["key_id"]: inputs["key_base64"]})


def seal_vector(vector: dict[str, Any]) -> tuple[Envelope, str]:
    inputs = vector["inputs"]
    return seal(
        inputs["body"],
        tenant_id=inputs["tenant_id"],
        destination=vector_destination(vector),
        ring=vector_ring(vector),
        now=inputs["issued_at"],
        lifetime=inputs["expires_at"] - inputs["issued_at"],
        envelope_id=inputs["envelope_id"],
    )


# --- test vectors ------------------------------------------------------------------------------------


def test_the_vectors_cover_sqs_step_functions_and_a_non_ascii_body() -> None:
    carriages = {v["carriage"] for v in VECTORS}
    assert carriages == {"sqs", "sfn"}
    assert len(VECTORS) >= 3
    assert any(not v["inputs"]["body"].isascii() for v in VECTORS)
    assert len({v["name"] for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_seal_reproduces_each_vector_byte_for_byte(vector: dict[str, Any]) -> None:
    inputs, expected = vector["inputs"], vector["expected"]
    envelope, signature = seal_vector(vector)

    assert vector_destination(vector) == inputs["destination"]
    assert inputs["body"].encode("utf-8").hex() == inputs["body_utf8_hex"]
    assert envelope.canonical() == expected["canonical"].encode("ascii")
    assert envelope.body_sha256 == expected["body_sha256"]
    assert signature == expected["signature"]
    assert envelope.header() == expected["header"]
    if vector["carriage"] == "sqs":
        assert sqs_message_attributes(envelope, signature) == expected["sqs_message_attributes"]
        assert expected["message_group_id"] == inputs["tenant_id"]
    else:
        document = {SFN_KEY: sfn_envelope(envelope, signature, inputs["body"]), "results": {}}
        assert document == expected["sfn_input"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_each_vector_matches_an_independent_implementation_of_the_spec(vector: dict[str, Any]) -> None:
    """Rebuild every output from the specification alone: hashlib, hmac and base64, no tenantscope."""
    inputs, expected = vector["inputs"], vector["expected"]
    body_hash = hashlib.sha256(bytes.fromhex(inputs["body_utf8_hex"])).hexdigest()
    canonical = "\n".join(
        [
            "TENANTSCOPE-ENVELOPE",
            "1",
            inputs["key_id"],
            inputs["tenant_id"],
            str(inputs["issued_at"]),
            str(inputs["expires_at"]),
            inputs["envelope_id"],
            body_hash,
            inputs["destination"],
        ]
    )
    mac = hmac.new(base64.b64decode(inputs["key_base64"]), canonical.encode("ascii"), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(mac).decode().rstrip("=")
    header = " ".join(
        ["1", inputs["key_id"], str(inputs["issued_at"]), str(inputs["expires_at"]), inputs["envelope_id"]]
    )
    assert (body_hash, canonical, signature, header) == (
        expected["body_sha256"],
        expected["canonical"],
        expected["signature"],
        expected["header"],
    )
    assert len(signature) == 43


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_each_vector_verifies_through_its_carriage(vector: dict[str, Any]) -> None:
    inputs, expected = vector["inputs"], vector["expected"]
    settings = Settings.load(environ={})
    now = float(inputs["issued_at"])
    if vector["carriage"] == "sqs":
        record = {
            "messageId": "m-1",
            "body": inputs["body"],
            "eventSourceARN": inputs["queue_arn"],
            "messageAttributes": {
                name: {"stringValue": a["StringValue"], "dataType": a["DataType"]}
                for name, a in expected["sqs_message_attributes"].items()
            },
        }
        context, envelope = resolve_sqs_record(record, vector_ring(vector), settings, now=now)
    else:
        event = {
            **json.loads(json.dumps(expected["sfn_input"])),  # through JSON, as Step Functions does
            "execution": {"name": inputs["execution_name"], "stateMachine": inputs["state_machine_arn"]},
        }
        context, envelope, body = resolve_sfn_event(event, vector_ring(vector), settings, now=now)
        assert body == inputs["body"]
    assert context.tenant_id == inputs["tenant_id"]
    assert envelope.envelope_id == inputs["envelope_id"]


def test_the_sfn_vector_bodies_are_what_seal_input_writes() -> None:
    for vector in (v for v in VECTORS if v["carriage"] == "sfn"):
        inputs = vector["inputs"]
        document = seal_input(
            inputs["payload"],
            state_machine_arn=inputs["state_machine_arn"],
            execution_name=inputs["execution_name"],
            tenant_id=inputs["tenant_id"],
            ring=vector_ring(vector),
            settings=Settings.load(environ={}),
        )
        assert document[SFN_KEY]["body"] == inputs["body"]
        assert json.loads(inputs["body"]) == inputs["payload"]


def test_the_specification_shows_every_vector_verbatim() -> None:
    spec = SPEC_FILE.read_text(encoding="utf-8")
    for vector in VECTORS:
        inputs, expected = vector["inputs"], vector["expected"]
        for text in (
            expected["signature"],
            expected["body_sha256"],
            expected["header"],
            expected["canonical"].replace("\n", "\\n"),  # shown with \n in the document
            inputs["key_base64"],
            inputs["body"],
            inputs["body_utf8_hex"],
            inputs["destination"],
        ):
            assert text in spec, f"{vector['name']}: {text!r} is not in docs/envelope.md"


def test_the_specification_names_the_grammar_the_code_enforces() -> None:
    from tenantscope._keyring import KEY_ID_PATTERN
    from tenantscope._tenant_id import TENANT_ID_PATTERN

    spec = SPEC_FILE.read_text(encoding="utf-8")
    for text in (KEY_ID_PATTERN, TENANT_ID_PATTERN, "TENANTSCOPE-ENVELOPE", ATTR_TENANT, ATTR_ENVELOPE):
        assert text in spec
    assert ATTR_SIGNATURE in spec
    assert str(MAX_FIELD_CHARS) in spec


# --- round trips -------------------------------------------------------------------------------------


def sealed(
    body: str = BODY,
    *,
    tenant_id: str = TENANT,
    destination: str = DESTINATION,
    ring: StaticKeyRing = RING,
    now: int = NOW,
    lifetime: int = LIFETIME,
) -> dict[str, Any]:
    """The keyword arguments of a verify() call that succeeds."""
    envelope, signature = seal(
        body, tenant_id=tenant_id, destination=destination, ring=ring, now=now, lifetime=lifetime
    )
    return {
        "tenant": envelope.tenant_id,
        "header": envelope.header(),
        "signature": signature,
        "body": body,
        "destination": destination,
        "ring": ring,
        "now": float(now),
        "max_lifetime": MAX_LIFETIME,
        "clock_skew": SKEW,
    }


def forged(**fields: Any) -> dict[str, Any]:
    """verify() arguments for an envelope with the given fields, correctly signed with RING's k1.

    Lets a case break exactly one rule while its MAC stays valid.
    """
    values: dict[str, Any] = {
        "version": "1",
        "key_id": "k1",
        "tenant_id": TENANT,
        "issued_at": NOW,
        "expires_at": NOW + LIFETIME,
        "envelope_id": ENVELOPE_ID,
        "body_sha256": hashlib.sha256(BODY.encode()).hexdigest(),
        "destination": DESTINATION,
    }
    values.update(fields)
    envelope = Envelope(**values)
    mac = hmac.new(base64.b64decode(KEY1), envelope.canonical(), hashlib.sha256).digest()
    return {
        **sealed(),
        "tenant": envelope.tenant_id,
        "header": envelope.header(),
        "signature": base64.urlsafe_b64encode(mac).decode().rstrip("="),
    }


def test_a_sealed_message_verifies_and_returns_its_fields() -> None:
    arguments = sealed()
    envelope = verify(**arguments)
    assert envelope.tenant_id == TENANT
    assert (envelope.issued_at, envelope.expires_at) == (NOW, NOW + LIFETIME)
    assert envelope.key_id == "k1"
    assert envelope.destination == DESTINATION
    assert envelope.body_sha256 == hashlib.sha256(BODY.encode()).hexdigest()
    assert envelope.header() == arguments["header"]


def test_a_round_trip_through_sqs_attributes() -> None:
    envelope, signature = seal(
        BODY, tenant_id=TENANT, destination=DESTINATION, ring=RING, now=NOW, lifetime=LIFETIME
    )
    sent = sqs_message_attributes(envelope, signature)
    received = {name: {"stringValue": a["StringValue"], "dataType": "String"} for name, a in sent.items()}
    tenant, header, received_signature = sqs_record_fields(received)
    assert (tenant, header, received_signature) == (TENANT, envelope.header(), signature)
    assert verify(**{**sealed(), "tenant": tenant, "header": header, "signature": received_signature})


def test_sqs_attributes_read_from_any_mapping() -> None:
    # GIVEN each attribute as a read-only mapping, not a dict
    received = {
        ATTR_TENANT: MappingProxyType({"stringValue": TENANT, "dataType": "String"}),
        ATTR_ENVELOPE: MappingProxyType({"stringValue": "header", "dataType": "String"}),
        ATTR_SIGNATURE: MappingProxyType({"stringValue": "signature", "dataType": "String"}),
    }
    # THEN their values are read as a dict's are
    assert sqs_record_fields(received) == (TENANT, "header", "signature")


def test_sqs_attributes_of_another_data_type_count_as_missing() -> None:
    received = {
        ATTR_TENANT: {"stringValue": TENANT, "dataType": "String.tenant"},
        ATTR_ENVELOPE: {"binaryValue": "AA==", "dataType": "Binary"},
        ATTR_SIGNATURE: "not an attribute",
    }
    assert sqs_record_fields(received) == (None, None, None)


def test_a_round_trip_through_a_step_functions_input_re_serialized() -> None:
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"
    destination = sfn_destination(machine, "run-1")
    body = json.dumps({"b": 1.0, "a": [1, 2], "note": "Grüße"}, separators=(",", ":"))
    envelope, signature = seal(
        body, tenant_id=TENANT, destination=destination, ring=RING, now=NOW, lifetime=LIFETIME
    )
    document = {SFN_KEY: sfn_envelope(envelope, signature, body), "results": {}}
    # Step Functions may re-serialize the document any way it likes: the body string survives.
    relayed = json.loads(json.dumps(json.loads(json.dumps(document)), indent=3, ensure_ascii=True))
    assert relayed[SFN_KEY]["body"] == body
    verify(
        **{
            **sealed(),
            "tenant": relayed[SFN_KEY]["tenant"],
            "header": relayed[SFN_KEY]["envelope"],
            "signature": relayed[SFN_KEY]["signature"],
            "body": relayed[SFN_KEY]["body"],
            "destination": destination,
        }
    )


def test_each_seal_draws_a_fresh_lowercase_hex_envelope_id() -> None:
    ids = {verify(**sealed()).envelope_id for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 32 and i == i.lower() and int(i, 16) >= 0 for i in ids)


def test_an_older_listed_key_still_verifies_after_the_active_key_changed() -> None:
    old = ring_of("k1", k1=KEY1)
    rotated = ring_of("k2", k1=KEY1, k2=KEY2)
    arguments = sealed(ring=old)
    assert verify(**{**arguments, "ring": rotated}).key_id == "k1"
    assert verify(**sealed(ring=rotated)).key_id == "k2"


def test_bodies_with_newlines_and_any_unicode_are_sealed_by_their_hash() -> None:
    for body in ("", "line1\nline2\r\n", "\x00\x7f", "東京 🚀", " padded "):
        assert verify(**sealed(body)).body_sha256 == hashlib.sha256(body.encode("utf-8")).hexdigest()


def test_unicode_normalization_changes_the_body() -> None:
    composed, decomposed = "Z\u00fcrich", "Zu\u0308rich"
    refused({**sealed(composed), "body": decomposed}, Reason.BAD_ENVELOPE_SIGNATURE)


# --- refusals ----------------------------------------------------------------------------------------


def refused(arguments: dict[str, Any], reason: Reason, detail: str | None = None) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        verify(**arguments)
    assert (caught.value.reason, caught.value.detail) == (reason, detail)


def replace_field(header: str, index: int, value: str) -> str:
    fields = header.split(" ")
    fields[index] = value
    return " ".join(fields)


def test_the_forging_helper_builds_valid_envelopes() -> None:
    assert verify(**forged()).envelope_id == ENVELOPE_ID


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b[:-1] + chr(ord(b[-1]) ^ 1),
        lambda b: b + " ",
        lambda b: b[:-1],
        lambda b: " " + b,
        lambda b: b.replace("3", "4"),
    ],
    ids=["last byte flipped", "byte appended", "byte removed", "byte prepended", "digit changed"],
)
def test_a_body_changed_by_one_byte_is_refused(change: Callable[[str], str]) -> None:
    arguments = sealed()
    refused({**arguments, "body": change(BODY)}, Reason.BAD_ENVELOPE_SIGNATURE)


def test_a_swapped_tenant_is_refused() -> None:
    refused({**sealed(), "tenant": "globex"}, Reason.BAD_ENVELOPE_SIGNATURE)


def test_an_unknown_key_id_is_refused() -> None:
    arguments = sealed(ring=ring_of("k9", k9=KEY2))
    refused(arguments | {"ring": RING}, Reason.UNKNOWN_SIGNING_KEY)
    refused({**sealed(), "header": replace_field(sealed()["header"], 1, "k2")}, Reason.UNKNOWN_SIGNING_KEY)


def test_a_listed_key_id_with_the_wrong_key_is_refused() -> None:
    refused({**sealed(), "ring": ring_of("k1", k1=KEY2)}, Reason.BAD_ENVELOPE_SIGNATURE)


def test_expiry_is_enforced_beyond_the_clock_skew_only() -> None:
    arguments = sealed()
    expires_at = NOW + LIFETIME
    assert verify(**{**arguments, "now": float(expires_at)})
    assert verify(**{**arguments, "now": float(expires_at + SKEW)})
    refused({**arguments, "now": expires_at + SKEW + 0.001}, Reason.ENVELOPE_EXPIRED)
    refused({**arguments, "now": float(expires_at + SKEW + 1)}, Reason.ENVELOPE_EXPIRED)
    refused({**arguments, "now": float(expires_at + 10 * 86_400)}, Reason.ENVELOPE_EXPIRED)


def test_an_envelope_issued_in_the_future_is_refused_beyond_the_skew() -> None:
    arguments = sealed()
    assert verify(**{**arguments, "now": float(NOW - SKEW)})
    refused({**arguments, "now": NOW - SKEW - 0.001}, Reason.ENVELOPE_FROM_THE_FUTURE)
    refused({**arguments, "now": float(NOW - 3600)}, Reason.ENVELOPE_FROM_THE_FUTURE)


def test_a_lifetime_over_the_maximum_is_refused() -> None:
    assert verify(**sealed(lifetime=MAX_LIFETIME))
    refused(sealed(lifetime=MAX_LIFETIME + 1), Reason.ENVELOPE_LIFETIME)
    refused({**sealed(), "max_lifetime": LIFETIME - 1}, Reason.ENVELOPE_LIFETIME)


@pytest.mark.parametrize("expires_at", [NOW, NOW - 1, 0], ids=["exp == iat", "exp < iat", "exp zero"])
def test_an_expiry_not_after_the_issue_time_is_refused(expires_at: int) -> None:
    refused(forged(expires_at=expires_at), Reason.ENVELOPE_LIFETIME)


@pytest.mark.parametrize(
    "destination",
    [
        sqs_destination("arn:aws:sqs:us-east-1:123456789012:orders-dlq"),
        sqs_destination("arn:aws:sqs:us-east-2:123456789012:orders"),
        sqs_destination("arn:aws:sqs:us-east-1:210987654321:orders"),
        sqs_destination("arn:aws:sqs:us-east-1:123456789012:orders.fifo"),
        "sfn:" + QUEUE_ARN,
    ],
    ids=["another queue", "another region", "another account", "the FIFO twin", "sfn prefix"],
)
def test_a_message_sealed_for_one_queue_is_refused_at_another(destination: str) -> None:
    refused({**sealed(), "destination": destination}, Reason.BAD_ENVELOPE_SIGNATURE)


def test_an_input_sealed_for_one_execution_is_refused_for_another() -> None:
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"
    arguments = sealed(destination=sfn_destination(machine, "run-1"))
    assert verify(**arguments)
    for destination in (
        sfn_destination(machine, "run-2"),
        sfn_destination(machine, "run-10"),
        sfn_destination(machine.replace(":orders", ":billing"), "run-1"),
        sqs_destination(QUEUE_ARN),
    ):
        refused({**arguments, "destination": destination}, Reason.BAD_ENVELOPE_SIGNATURE)


@pytest.mark.parametrize(
    ("field", "name"), [("tenant", "tenant"), ("header", "envelope"), ("signature", "signature")]
)
@pytest.mark.parametrize("value", [None, 42, b"bytes", ["list"], {"stringValue": "x"}])
def test_each_missing_or_non_string_field_is_refused(field: str, name: str, value: object) -> None:
    refused({**sealed(), field: value}, Reason.MISSING_ENVELOPE, name)


@pytest.mark.parametrize(
    ("field", "reason"), [("tenant", "tenant"), ("header", "envelope"), ("signature", "signature")]
)
def test_oversized_values_are_refused_before_parsing(field: str, reason: str) -> None:
    arguments = sealed()
    refused({**arguments, field: "a" * (MAX_FIELD_CHARS + 1)}, Reason.OVERSIZED_ENVELOPE, reason)
    refused(
        {**arguments, field: arguments[field] + " " * (MAX_FIELD_CHARS + 1)},
        Reason.OVERSIZED_ENVELOPE,
        reason,
    )


@pytest.mark.parametrize(("field", "name"), [("tenant", "tenant"), ("signature", "signature")])
def test_a_full_header_beside_a_missing_field_names_the_missing_field(field: str, name: str) -> None:
    # GIVEN a header of exactly the limit, and a field that is not there
    arguments = {**sealed(), "header": "h" * MAX_FIELD_CHARS, field: None}
    # THEN the missing field is named: the header is not over the limit
    refused(arguments, Reason.MISSING_ENVELOPE, name)


def test_a_header_at_the_size_limit_is_parsed_not_refused_for_size() -> None:
    # A 256-character key id fills the header to just under the limit and is valid.
    key_id = "k" * 256
    arguments = sealed(ring=ring_of(key_id, **{key_id: KEY1}))
    assert len(arguments["header"]) <= MAX_FIELD_CHARS
    assert verify(**arguments).key_id == key_id


def non_canonical(signature: str) -> str:
    """The same 32 MAC bytes with one of the two unused low bits of the last character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return signature[:-1] + alphabet[alphabet.index(signature[-1]) | 1]


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s[:-1],
        lambda s: s + "A",
        lambda s: s + "=",
        lambda s: "",
        lambda s: s.replace(s[0], "+", 1),
        lambda s: s.replace(s[0], "/", 1),
        lambda s: s[:-1] + "!",
        lambda s: s[:20] + " " + s[21:],
        lambda s: s[:-1] + "é",
        lambda s: base64.b64encode(base64.urlsafe_b64decode(s + "=")).decode(),
        lambda s: base64.urlsafe_b64decode(s + "=").hex(),
        non_canonical,
    ],
    ids=[
        "42 chars",
        "44 chars",
        "padded",
        "empty",
        "standard alphabet +",
        "standard alphabet /",
        "invalid character",
        "inner space",
        "non-ASCII",
        "standard base64 with padding",
        "hex",
        "non-canonical last character",
    ],
)
def test_a_malformed_or_wrong_length_signature_is_refused(change: Callable[[str], str]) -> None:
    arguments = sealed()
    bad = change(arguments["signature"])
    assert bad != arguments["signature"]
    refused({**arguments, "signature": bad}, Reason.MALFORMED_ENVELOPE)


def test_the_non_canonical_signature_decodes_to_the_same_mac() -> None:
    signature = sealed()["signature"]
    assert base64.urlsafe_b64decode(non_canonical(signature) + "=") == base64.urlsafe_b64decode(
        signature + "="
    )


def test_a_well_formed_signature_of_other_bytes_is_refused() -> None:
    arguments = sealed()
    refused({**arguments, "signature": "A" * 43}, Reason.BAD_ENVELOPE_SIGNATURE)
    other = sealed(body="other")["signature"]
    refused({**arguments, "signature": other}, Reason.BAD_ENVELOPE_SIGNATURE)


@pytest.mark.parametrize("version", ["2", "0", "01", "1.0", "v1", "", "１"])
def test_an_unknown_version_is_refused(version: str) -> None:
    arguments = sealed()
    refused(
        {**arguments, "header": replace_field(arguments["header"], 0, version)},
        Reason.UNSUPPORTED_ENVELOPE_VERSION,
    )


def test_a_version_2_envelope_correctly_signed_is_still_refused() -> None:
    refused(forged(version="2"), Reason.UNSUPPORTED_ENVELOPE_VERSION)


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h + " extra",
        lambda h: h + " ",
        lambda h: " " + h,
        lambda h: h.replace(" ", "  ", 1),
        lambda h: h.rsplit(" ", 1)[0],
        lambda h: h.split(" ", 1)[1],
        lambda h: h.replace(" ", "\t"),
        lambda h: h.replace(" ", "\n"),
        lambda h: "",
    ],
    ids=[
        "extra field",
        "trailing space",
        "leading space",
        "double space",
        "envelope id missing",
        "version missing",
        "tabs",
        "newlines",
        "empty",
    ],
)
def test_extra_or_missing_header_fields_are_refused(change: Callable[[str], str]) -> None:
    arguments = sealed()
    refused({**arguments, "header": change(arguments["header"])}, Reason.MALFORMED_ENVELOPE)


@pytest.mark.parametrize("index", [2, 3], ids=["issued at", "expires at"])
@pytest.mark.parametrize(
    "value",
    [
        "-1",
        "+1767225600",
        "1e9",
        "1767225600.0",
        "0x10",
        "",
        "abc",
        "1_767_225_600",
        "１７６７２２５６００",
        "01767225600",
        "00",
        "1" * 13,
        " 1767225600",
    ],
)
def test_non_numeric_negative_or_non_canonical_times_are_refused(index: int, value: str) -> None:
    arguments = sealed()
    refused(
        {**arguments, "header": replace_field(arguments["header"], index, value)}, Reason.MALFORMED_ENVELOPE
    )


def test_a_leading_zero_time_is_refused_even_though_its_value_was_signed() -> None:
    """The transmitted text must be the signed text: "0…" would otherwise verify under a MAC of "…"."""
    arguments = sealed()
    header = replace_field(arguments["header"], 2, "0" + str(NOW))
    refused({**arguments, "header": header}, Reason.MALFORMED_ENVELOPE)


def test_a_twelve_digit_time_is_within_the_grammar() -> None:
    issued_at = 10**11
    arguments = forged(issued_at=issued_at, expires_at=issued_at + LIFETIME)
    assert verify(**{**arguments, "now": float(issued_at)}).issued_at == issued_at


@pytest.mark.parametrize(
    "envelope_id",
    [
        ENVELOPE_ID.upper(),
        ENVELOPE_ID[:31],
        ENVELOPE_ID + "0",
        "g" * 32,
        ENVELOPE_ID[:16],
        "",
        "-" * 32,
        "０" * 32,
    ],
    ids=["uppercase", "31 chars", "33 chars", "non-hex", "short", "empty", "dashes", "fullwidth digits"],
)
def test_uppercase_short_or_non_hex_envelope_ids_are_refused(envelope_id: str) -> None:
    arguments = sealed()
    header = replace_field(arguments["header"], 4, envelope_id)
    refused({**arguments, "header": header}, Reason.MALFORMED_ENVELOPE)


def test_an_uppercase_envelope_id_is_refused_even_when_correctly_signed() -> None:
    refused(forged(envelope_id=ENVELOPE_ID.upper()), Reason.MALFORMED_ENVELOPE)


@pytest.mark.parametrize("key_id", ["k\u00e9", "k\n1", "k#1", "k*", "k" * 257, "k,1", "k;1"], ids=repr)
def test_a_key_id_outside_the_grammar_is_refused(key_id: str) -> None:
    arguments = sealed()
    refused({**arguments, "header": replace_field(arguments["header"], 1, key_id)}, Reason.MALFORMED_ENVELOPE)


@pytest.mark.parametrize(
    "tenant",
    [
        "Acme",
        "acme#x",
        "a",
        "acme\n",
        "-acme",
        "acme-",
        "acme corp",
        "acme_corp",
        "a" * 65,
        "acme*",
        "",
        "ａcme",
        "acme.corp",
        "acme/corp",
    ],
    ids=repr,
)
def test_a_tenant_outside_the_grammar_is_refused(tenant: str) -> None:
    refused({**sealed(), "tenant": tenant}, Reason.MALFORMED_ENVELOPE)


def test_a_tenant_outside_the_grammar_is_refused_even_when_correctly_signed() -> None:
    refused(forged(tenant_id="Acme"), Reason.MALFORMED_ENVELOPE)


@pytest.mark.parametrize(
    "destination",
    ["sqs:arn:aws:sqs:us-east-1:1:ordérs", "sqs:a\nb", "sqs:", "queue:arn", "sqs: arn", ""],
    ids=repr,
)
def test_a_destination_outside_the_grammar_is_refused_not_crashed(destination: str) -> None:
    refused({**sealed(), "destination": destination}, Reason.MALFORMED_DESTINATION)


def test_a_body_that_is_not_valid_unicode_is_refused_not_crashed() -> None:
    body = json.loads('"\\ud800"')  # a lone surrogate, as a JSON escape can carry
    refused({**sealed(), "body": body}, Reason.MALFORMED_BODY)


def test_refusals_are_tenant_auth_errors_with_no_secret_in_the_message() -> None:
    arguments = sealed()
    with pytest.raises(TenantAuthError) as caught:
        verify(**{**arguments, "body": "x"})
    assert arguments["signature"] not in str(caught.value)
    assert KEY1 not in str(caught.value)


# --- seal refuses what no verifier would accept --------------------------------------------------------


def test_seal_refuses_a_tenant_outside_the_grammar() -> None:
    with pytest.raises(InvalidTenantId):
        seal(BODY, tenant_id="Acme", destination=DESTINATION, ring=RING, now=NOW, lifetime=LIFETIME)


@pytest.mark.parametrize("destination", ["arn:aws:sqs:us-east-1:1:q", "sqs:", "sqs:a b", "sqs:ü", "sqs:a\n"])
def test_seal_refuses_a_destination_outside_the_grammar(destination: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid destination$"):
        seal(BODY, tenant_id=TENANT, destination=destination, ring=RING, now=NOW, lifetime=LIFETIME)


@pytest.mark.parametrize(
    "envelope_id", [ENVELOPE_ID.upper(), "abc", ENVELOPE_ID + "\n", ENVELOPE_ID[:-1] + "g"]
)
def test_seal_refuses_an_envelope_id_outside_the_grammar(envelope_id: str) -> None:
    with pytest.raises(ValueError, match=r"^an envelope id is 32 lowercase hex characters$"):
        seal(
            BODY,
            tenant_id=TENANT,
            destination=DESTINATION,
            ring=RING,
            now=NOW,
            lifetime=LIFETIME,
            envelope_id=envelope_id,
        )


@pytest.mark.parametrize(("now", "lifetime"), [(-1, LIFETIME), (NOW, 0), (NOW, -5), (10**12 - 10, 10)])
def test_seal_refuses_times_no_verifier_would_accept(now: int, lifetime: int) -> None:
    with pytest.raises(ValueError, match=r"^issued-at and lifetime out of range$"):
        seal(BODY, tenant_id=TENANT, destination=DESTINATION, ring=RING, now=now, lifetime=lifetime)


@pytest.mark.parametrize(("now", "lifetime"), [(0, 1), (10**12 - 2, 1), (0, 10**12 - 1)])
def test_seal_accepts_the_edges_of_the_time_grammar(now: int, lifetime: int) -> None:
    # GIVEN an issue time from zero and a lifetime from one second, up to an expiry of twelve digits
    envelope, signature = seal(
        BODY, tenant_id=TENANT, destination=DESTINATION, ring=RING, now=now, lifetime=lifetime
    )
    # THEN the envelope carries them as given, and a verifier accepts it
    assert (envelope.issued_at, envelope.expires_at) == (now, now + lifetime)
    received = {"tenant": TENANT, "header": envelope.header(), "signature": signature, "body": BODY}
    assert (
        verify(
            **received, destination=DESTINATION, ring=RING, now=now, max_lifetime=lifetime, clock_skew=SKEW
        )
        == envelope
    )


# --- destinations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "name", "expected"),
    [
        (
            "arn:aws:states:us-east-1:123456789012:stateMachine:orders",
            "order-1",
            "sfn:arn:aws:states:us-east-1:123456789012:execution:orders:order-1",
        ),
        (
            "arn:aws-cn:states:cn-north-1:123456789012:stateMachine:orders",
            "x",
            "sfn:arn:aws-cn:states:cn-north-1:123456789012:execution:orders:x",
        ),
        (
            "arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine:o",
            "acme-3f9d2c1ab4e84f67a0c5d9e8b7f6a5c4",
            "sfn:arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:o:acme-3f9d2c1ab4e84f67a0c5d9e8b7f6a5c4",
        ),
        (  # a version's executions are the state machine's
            "arn:aws:states:us-east-1:123456789012:stateMachine:orders:3",
            "n",
            "sfn:arn:aws:states:us-east-1:123456789012:execution:orders:n",
        ),
        (  # and so are an alias's
            "arn:aws:states:us-east-1:123456789012:stateMachine:orders:PROD",
            "n",
            "sfn:arn:aws:states:us-east-1:123456789012:execution:orders:n",
        ),
    ],
)
def test_sfn_destination_derives_the_execution_arn(machine: str, name: str, expected: str) -> None:
    assert sfn_destination(machine, name) == expected


@pytest.mark.parametrize(
    ("machine", "name"),
    [
        ("arn:aws:states:us-east-1:123456789012:execution:orders:run-1", "run-1"),
        ("arn:aws:states:us-east-1:123456789012:statemachine:orders", "run-1"),
        ("arn:aws:states:us-east-1:123456789012:stateMachine:orders", ""),
        ("", "run-1"),
        ("stateMachine:orders", "run-1"),
        ("arn:aws:states:us-east-1:1:stateMachine:a:stateMachine:b", "run-1"),
        ("arn:aws:states:us-east-1:123456789012:stateMachine:orders/map-label", "run-1"),
        ("arn:aws:states:us-east-1:123456789012:stateMachine:orders:PROD/map-label", "run-1"),
        ("arn:aws:states:us-east-1:123456789012:stateMachine:orders:", "run-1"),
        ("arn:aws:states::123456789012:stateMachine:orders", "run-1"),
        ("arn:aws:sqs:us-east-1:123456789012:stateMachine:orders", "run-1"),
        ("urn:aws:states:us-east-1:123456789012:stateMachine:orders", "run-1"),
    ],
    ids=[
        "an execution ARN",
        "wrong case",
        "empty name",
        "empty ARN",
        "no colon before the marker",
        "two markers",
        "a Distributed Map label",
        "an alias's Distributed Map label",
        "an empty qualifier",
        "no region",
        "not states",
        "not an ARN",
    ],
)
def test_sfn_destination_refuses_what_is_not_a_state_machine_and_name(machine: str, name: str) -> None:
    with pytest.raises(InvalidEnvelope) as refusal:
        sfn_destination(machine, name)
    assert (refusal.value.reason, refusal.value.detail) == (
        Reason.MALFORMED_DESTINATION,
        "not a state machine ARN and execution name",
    )


def test_sqs_destination_prefixes_the_queue_arn() -> None:
    assert sqs_destination(QUEUE_ARN) == "sqs:arn:aws:sqs:us-east-1:123456789012:orders"


@pytest.mark.parametrize(
    ("url", "region", "expected"),
    [
        (
            "https://sqs.eu-west-1.amazonaws.com/123456789012/orders",
            None,
            "arn:aws:sqs:eu-west-1:123456789012:orders",
        ),
        (
            "https://sqs.eu-west-1.amazonaws.com/123456789012/orders",
            "us-east-1",
            "arn:aws:sqs:eu-west-1:123456789012:orders",
        ),
        (
            "https://sqs.us-east-1.amazonaws.com/123456789012/o.fifo",
            None,
            "arn:aws:sqs:us-east-1:123456789012:o.fifo",
        ),
        (
            "https://sqs.us-east-1.amazonaws.com/123456789012/orders/",
            None,
            "arn:aws:sqs:us-east-1:123456789012:orders",
        ),
        (
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
            None,
            "arn:aws-cn:sqs:cn-north-1:123456789012:q",
        ),
        (
            "https://sqs.us-gov-west-1.amazonaws.com/123456789012/q",
            None,
            "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:q",
        ),
        ("http://localhost:4566/000000000000/q", "us-east-1", "arn:aws:sqs:us-east-1:000000000000:q"),
        (
            "https://eu-west-1.queue.amazonaws.com/123456789012/q",
            "us-east-1",
            "arn:aws:sqs:eu-west-1:123456789012:q",
        ),
        ("sqs.ap-south-1.amazonaws.com/123456789012/q", None, "arn:aws:sqs:ap-south-1:123456789012:q"),
        (
            "https://sqs.us-iso-east-1.c2s.ic.gov/123456789012/q",
            "us-iso-east-1",
            "arn:aws-iso:sqs:us-iso-east-1:123456789012:q",
        ),
        (
            "https://sqs.us-isob-east-1.sc2s.sgov.gov/123456789012/q",
            "us-isob-east-1",
            "arn:aws-iso-b:sqs:us-isob-east-1:123456789012:q",
        ),
        (
            "https://sqs.eusc-de-east-1.amazonaws.eu/123456789012/q",
            "eusc-de-east-1",
            "arn:aws-eusc:sqs:eusc-de-east-1:123456789012:q",
        ),
        ("http://localhost:4566/000000000000/q", "local-1", "arn:aws:sqs:local-1:000000000000:q"),
    ],
)
def test_queue_arn_from_url(url: str, region: str | None, expected: str) -> None:
    assert queue_arn_from_url(url, region) == expected


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.us-east-1.amazonaws.com/orders", None),
        ("https://sqs.us-east-1.amazonaws.com/account/orders", None),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/a/b", None),
        ("https://sqs.us-east-1.amazonaws.com/", None),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/", None),
        ("", "us-east-1"),
        ("https://x://sqs.us-east-1.amazonaws.com/123456789012/orders", None),
    ],
    ids=[
        "no account",
        "non-numeric account",
        "extra path",
        "no path",
        "no queue name",
        "empty",
        "two schemes",
    ],
)
def test_queue_arn_from_url_refuses_what_is_not_a_queue_url(url: str, region: str | None) -> None:
    with pytest.raises(ValueError, match=exactly("not an SQS queue URL")):
        queue_arn_from_url(url, region)


def test_a_queue_url_without_a_region_needs_aws_region() -> None:
    with pytest.raises(ConfigurationError) as refused:
        queue_arn_from_url("http://localhost:4566/000000000000/q", None)
    assert (refused.value.reason, refused.value.detail) == (
        Reason.MISSING_SETTING,
        "AWS_REGION: the queue URL does not name a region",
    )
    assert queue_arn_from_url("http://localhost:4566/000000000000/q", "eu-west-1").startswith(
        "arn:aws:sqs:eu-west-1:"
    )


@pytest.mark.parametrize(
    "destination",
    [
        "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
        "orders",
        "arn:aws:sns:us-east-1:123456789012:orders",
        "arn:aws:sqs:us-east-1:account:orders",
        "arn:aws:sqs:us-east-1:123456789012:",
        "arn:aws:sqs:us-east-1:123456789012:orders:extra",
    ],
    ids=["a queue URL", "a name", "a topic ARN", "no account", "no name", "a seventh field"],
)
def test_sign_message_refuses_a_destination_that_is_not_a_queue_arn(destination: str) -> None:
    # A message sealed for it could never verify: the producer says so instead of sending it.
    with pytest.raises(
        ValueError, match=exactly("destination is a queue ARN: arn:<partition>:sqs:<region>:<account>:<name>")
    ) as refused:
        sign_message(BODY, destination=destination, tenant_id=TENANT, ring=RING)
    assert isinstance(refused.value, LoggableError)


@pytest.mark.parametrize(
    "state_machine_arn",
    [
        "arn:aws:states:us-east-1:123456789012:execution:orders:run-1",
        "arn:aws:states:us-east-1:123456789012:stateMachine:orders/map-label",
        "orders",
    ],
    ids=["an execution ARN", "a Distributed Map label", "a name"],
)
def test_seal_input_refuses_what_is_not_a_state_machine_arn(state_machine_arn: str) -> None:
    with pytest.raises(
        ValueError,
        match=exactly(
            "a state machine ARN (arn:<partition>:states:<region>:<account>:stateMachine:<name>, "
            "optionally :<version or alias>)"
        ),
    ) as refused:
        seal_input(
            {}, state_machine_arn=state_machine_arn, execution_name="run-1", tenant_id=TENANT, ring=RING
        )
    assert isinstance(refused.value, LoggableError) and not isinstance(refused.value, TenantAuthError)


def test_a_body_with_a_lone_surrogate_is_refused_without_quoting_it() -> None:
    with pytest.raises(
        ValueError, match=exactly("a message body is Unicode text: this one holds a lone surrogate")
    ) as refused:
        sign_message('{"secret": "\ud800"}', destination=QUEUE_ARN, tenant_id=TENANT, ring=RING)
    assert isinstance(refused.value, LoggableError)


STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"


@pytest.mark.parametrize(
    "name",
    ["", "a" * 81, "order 42", "order\t42", "ordér-1", "order\x7f", "a:b", "x/y", "run*", "{run}", 'r"1'],
    ids=[
        "empty",
        "81 characters",
        "a space",
        "a tab",
        "non-ASCII",
        "DEL",
        "a colon",
        "a slash",
        "a wildcard",
        "braces",
        "a quote",
    ],
)
def test_seal_input_refuses_an_execution_name_step_functions_refuses(name: str) -> None:
    # GIVEN a name StartExecution would refuse, or that no envelope's destination can carry
    # WHEN the input is sealed for it THEN the rule is named, before anything is sealed
    with pytest.raises(
        ValueError,
        match=exactly(
            "an execution name is 1 to 80 printable ASCII characters, without spaces or any of "
            "< > { } [ ] ? * \" # % \\ ^ | ~ ` $ & , ; : / (Step Functions' rule)"
        ),
    ) as refused:
        seal_input({}, state_machine_arn=STATE_MACHINE_ARN, execution_name=name, tenant_id=TENANT, ring=RING)
    assert isinstance(refused.value, LoggableError)


@pytest.mark.parametrize(
    "name", ["a", "a" * 80, "order.42_x-1@host=+!'()"], ids=["1 character", "80 characters", "punctuation"]
)
def test_seal_input_seals_for_any_name_step_functions_accepts(name: str) -> None:
    document = seal_input(
        {"n": 1}, state_machine_arn=STATE_MACHINE_ARN, execution_name=name, tenant_id=TENANT, ring=RING
    )
    # THEN the task of that execution verifies it
    event = {**document, "execution": {"name": name, "stateMachine": STATE_MACHINE_ARN}}
    context, _, body = resolve_sfn_event(event, RING, Settings.load(environ={}), now=time.time())
    assert (context.tenant_id, json.loads(body)) == (TENANT, {"n": 1})


@pytest.mark.parametrize(
    "payload",
    [float("nan"), {"total": float("inf")}, {1: "a", "b": 2}, {"when": object()}],
    ids=["NaN", "Infinity", "keys of mixed types", "an object"],
)
def test_seal_input_refuses_a_payload_that_is_not_json(payload: Any) -> None:
    # NaN and Infinity are Python's json, not JSON: a task in another language could not read them.
    with pytest.raises(ValueError, match="a payload is JSON") as refused:
        seal_input(
            payload, state_machine_arn=STATE_MACHINE_ARN, execution_name="run-1", tenant_id=TENANT, ring=RING
        )
    assert isinstance(refused.value, LoggableError)


def own_attributes(count: int) -> dict[str, dict[str, str]]:
    return {f"attribute-{n}": {"DataType": "String", "StringValue": str(n)} for n in range(count)}


def test_send_message_leaves_seven_message_attributes_to_the_caller() -> None:
    sqs = RecordingSqs()
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    send_message(
        queue_url, BODY, tenant_id=TENANT, ring=RING, client=sqs, MessageAttributes=own_attributes(7)
    )
    assert len(sqs.sent[0]["MessageAttributes"]) == 10

    # GIVEN an eighth: SQS would refuse eleven attributes WHEN sent THEN it is refused first, and why
    with pytest.raises(ValueError, match="at most 7 of your own") as refused:
        send_message(
            queue_url, BODY, tenant_id=TENANT, ring=RING, client=sqs, MessageAttributes=own_attributes(8)
        )
    assert isinstance(refused.value, LoggableError) and len(sqs.sent) == 1


class CountingRing:
    """The test ring, counting its seals (with a kms: ring each is a call to KMS)."""

    def __init__(self) -> None:
        self.seals = 0

    def active_key_id(self) -> str:
        return RING.active_key_id()

    def sign(self, key_id: str, message: bytes) -> bytes:
        self.seals += 1
        return RING.sign(key_id, message)


@pytest.mark.parametrize(
    ("arguments", "rule"),
    [
        ({"MessageAttributes": own_attributes(8)}, "SQS carries at most 10 message attributes"),
        (
            {"MessageAttributes": {"tenantscope-tenant": {"DataType": "String", "StringValue": "globex"}}},
            "tenantscope message attributes cannot be overridden",
        ),
        ({"MessageGroupId": "globex"}, "MessageGroupId is the tenant id"),
    ],
    ids=["an eighth attribute", "an envelope attribute", "another group"],
)
def test_a_message_sqs_could_not_carry_is_refused_before_sealing_and_says_why(
    arguments: dict[str, Any], rule: str
) -> None:
    ring, sqs = CountingRing(), RecordingSqs()
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    with pytest.raises(ValueError, match=f"^{rule}") as refused:
        send_message(queue_url, BODY, tenant_id=TENANT, ring=ring, client=sqs, **arguments)  # type: ignore[arg-type]
    # THEN nothing was sealed or sent, and the rule is what a log line shows
    assert (ring.seals, sqs.sent) == (0, [])
    assert log_reason(refused.value) == str(refused.value)


def test_seal_input_seals_with_the_settings_it_is_given() -> None:
    # GIVEN settings of the producer's own: its key ring and a ten-minute envelope, and no ring
    settings = Settings.load(
        environ={}, signing_keys=ring_spec(RING_DOCUMENT), sfn_envelope_ttl_seconds="600"
    )
    document = seal_input(
        {}, state_machine_arn=STATE_MACHINE_ARN, execution_name="run-1", tenant_id=TENANT, settings=settings
    )
    _, key_id, issued_at, expires_at, _ = document["tenantscope"]["envelope"].split(" ")
    assert (key_id, int(expires_at) - int(issued_at)) == (RING_DOCUMENT["active"], 600)


def test_a_callers_own_trace_header_is_sent_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a Lambda trace, and a caller that names the trace its message continues
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
    own = {
        "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-00000000-000000000000000000000001"}
    }
    sqs = RecordingSqs()
    send_message(
        "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
        BODY,
        tenant_id=TENANT,
        ring=RING,
        client=sqs,
        MessageSystemAttributes=own,
    )
    assert sqs.sent[0]["MessageSystemAttributes"] == own


def test_a_queue_named_by_its_url_keeps_every_character_of_its_name() -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/ordersX/"
    assert queue_arn_from_url(url) == "arn:aws:sqs:us-east-1:123456789012:ordersX"


def test_a_body_that_is_not_text_is_named_by_its_type() -> None:
    with pytest.raises(TypeError, match=r"a message body is a str, not dict: pass json.dumps\(body\)"):
        sign_message({"order": 1}, destination=QUEUE_ARN, tenant_id=TENANT, ring=RING)  # type: ignore[arg-type]
