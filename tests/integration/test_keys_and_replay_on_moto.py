"""Key rings and the replay guard on moto: Secrets Manager rings and rotation, KMS HMAC keys, DynamoDB.

moto implements Secrets Manager, KMS GenerateMac / VerifyMac and DynamoDB conditional writes
(see /work/shared/FACTS.md). Time is a fake clock wherever a cache's age matters; API calls are
counted with botocore's event hooks, so the tests assert on traffic, never on elapsed time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from tenantscope import KeysUnavailable, Reason, Settings, TemporarilyUnavailable, sqs_handler
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope._envelope import Envelope, InvalidEnvelope, seal, sqs_destination, verify
from tenantscope._keyring import (
    KeyRing,
    KmsKeyRing,
    SecretsManagerKeyRing,
    default_key_ring,
    key_ring_from_spec,
)
from tenantscope._replay import DynamoDbReplayGuard, InMemoryReplayGuard, ReplayGuard
from tenantscope.testing import RING, signed_sqs_record, sqs_event
from tests.conftest import OTHER_REGION, REGION, LambdaContext
from tests.fakes import FakeClock

SECRET = "tenantscope/signing-keys"
REPLAY_TABLE = "tenantscope-replay"
MAX_AGE = 300.0
INTERVAL = 30.0
NOW = 1_767_225_600
LIFETIME = 3600
DESTINATION = sqs_destination(f"arn:aws:sqs:{REGION}:123456789012:orders")
BODY = '{"order_id":"o-1","quantity":3}'


def key(seed: str) -> str:
    return base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


def ring_json(active: str, *key_ids: str) -> str:
    return json.dumps({"active": active, "keys": {k: key(k) for k in key_ids}})


class CallCounter:
    """Counts the API calls a boto3 client makes, by operation name."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        client.meta.events.register("before-call", self._count)

    def _count(self, model: Any, **kwargs: Any) -> None:
        self.calls.append(model.name)

    def count(self, operation: str) -> int:
        return self.calls.count(operation)


def seal_body(ring: KeyRing, body: str = BODY, *, tenant_id: str = "acme-corp") -> dict[str, Any]:
    """verify() arguments for ``body`` sealed with ``ring`` (to be verified with another ring)."""
    envelope, signature = seal(
        body, tenant_id=tenant_id, destination=DESTINATION, ring=ring, now=NOW, lifetime=LIFETIME
    )
    return {
        "tenant": envelope.tenant_id,
        "header": envelope.header(),
        "signature": signature,
        "body": body,
        "destination": DESTINATION,
        "now": float(NOW),
        "max_lifetime": LIFETIME,
        "clock_skew": 60,
    }


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


# --- Secrets Manager ring ---------------------------------------------------------------------------


@pytest.fixture
def secrets(moto: None) -> Any:
    client = boto3.client("secretsmanager", region_name=REGION)
    client.create_secret(Name=SECRET, SecretString=ring_json("k1", "k1"))
    return client


def secrets_ring(clock: FakeClock) -> tuple[SecretsManagerKeyRing, CallCounter]:
    """A ring on its own client (one per function), driven by ``clock``."""
    client = boto3.client("secretsmanager", region_name=REGION)
    ring = SecretsManagerKeyRing(
        SECRET, client=client, max_age=MAX_AGE, min_refresh_interval=INTERVAL, clock=clock
    )
    return ring, CallCounter(client)


def test_a_secrets_manager_ring_reads_the_ring_secret(secrets: Any) -> None:
    ring = key_ring_from_spec(f"secretsmanager:{SECRET}", region=REGION)
    assert ring.active_key_id() == "k1"
    envelope = verify(**seal_body(ring), ring=ring)
    assert envelope.key_id == "k1"
    assert envelope.tenant_id == "acme-corp"


def test_a_generated_flat_form_secret_is_a_ring(moto: None) -> None:
    """The stack's secret: {"active": "k1", "k1": <64 letters and digits>}, as GenerateSecretString makes."""
    client = boto3.client("secretsmanager", region_name=REGION)
    generated = client.get_random_password(PasswordLength=64, ExcludePunctuation=True)["RandomPassword"]
    client.create_secret(Name="generated", SecretString=json.dumps({"active": "k1", "k1": generated}))
    ring = SecretsManagerKeyRing("generated", client=client)
    sealed = seal_body(ring)
    assert verify(**sealed, ring=ring).key_id == "k1"
    mac = hmac.new(base64.b64decode(generated), b"message", hashlib.sha256).digest()
    assert ring.verify("k1", b"message", mac)  # the key is the decoded bytes, not the characters


def test_a_secrets_manager_ring_by_arn_caches_the_secret(secrets: Any) -> None:
    arn = secrets.describe_secret(SecretId=SECRET)["ARN"]
    client = boto3.client("secretsmanager", region_name=REGION)
    counter = CallCounter(client)
    ring = SecretsManagerKeyRing(arn, client=client)
    for _ in range(20):
        verify(**seal_body(ring), ring=ring)
    assert counter.count("GetSecretValue") == 1


def test_a_rotation_switches_signers_after_max_age_and_old_envelopes_still_verify(secrets: Any) -> None:
    clock, consumer_clock = FakeClock(), FakeClock()  # two functions, two containers
    producer, producer_calls = secrets_ring(clock)
    consumer, consumer_calls = secrets_ring(consumer_clock)
    before = seal_body(producer)
    assert verify(**before, ring=consumer).key_id == "k1"

    # 1. add k2 (k1 still active); 3. switch active to k2 — stored as one new secret version here.
    secrets.put_secret_value(SecretId=SECRET, SecretString=ring_json("k2", "k1", "k2"))

    clock.advance(MAX_AGE)  # within max age: the producer's cached ring still signs with k1
    within = seal_body(producer)
    assert within["header"].split(" ")[1] == "k1"
    assert producer_calls.count("GetSecretValue") == 1

    clock.advance(1)  # past max age: the producer reloads and signs with k2
    after = seal_body(producer)
    assert after["header"].split(" ")[1] == "k2"
    assert producer_calls.count("GetSecretValue") == 2

    # The consumer's ring is within its max age and lacks k2: it learns k2 on first sight, with one
    # reload, and still verifies the envelopes sealed with k1.
    consumer_clock.advance(INTERVAL)
    assert verify(**after, ring=consumer).key_id == "k2"
    for sealed in (before, within):
        assert verify(**sealed, ring=consumer).key_id == "k1"
    assert consumer_calls.count("GetSecretValue") == 2

    # 4. retire k1: after the next reload its envelopes are refused.
    secrets.put_secret_value(SecretId=SECRET, SecretString=ring_json("k2", "k2"))
    consumer_clock.advance(MAX_AGE + 1)
    with pytest.raises(InvalidEnvelope, match="unknown signing key id"):
        verify(**before, ring=consumer)
    assert verify(**after, ring=consumer).key_id == "k2"


def test_a_bad_secret_version_keeps_the_last_good_ring(secrets: Any) -> None:
    clock = FakeClock()
    ring, calls = secrets_ring(clock)
    sealed = seal_body(ring)
    secrets.put_secret_value(SecretId=SECRET, SecretString='{"active": "k1", "keys": {"k1": "c2hvcnQ="}}')
    clock.advance(MAX_AGE + 1)
    assert verify(**sealed, ring=ring).key_id == "k1"
    assert ring.active_key_id() == "k1"
    assert calls.count("GetSecretValue") == 2


def test_a_missing_secret_leaves_the_ring_unavailable(moto: None) -> None:
    ring = SecretsManagerKeyRing("no-such-secret", region=REGION)
    with pytest.raises(KeysUnavailable, match="unavailable"):
        ring.active_key_id()


def test_a_flood_of_unknown_key_ids_reads_the_secret_at_most_once_per_interval(secrets: Any) -> None:
    clock = FakeClock()
    ring, calls = secrets_ring(clock)
    sealed = seal_body(ring)
    clock.advance(INTERVAL)
    for i in range(200):
        header = sealed["header"].replace(" k1 ", f" attacker-{i} ")
        with pytest.raises(InvalidEnvelope, match="unknown signing key id"):
            verify(**{**sealed, "header": header}, ring=ring)
    assert calls.count("GetSecretValue") == 2


# --- KMS HMAC ring -------------------------------------------------------------------------------------


@pytest.fixture
def kms(moto: None) -> Any:
    return boto3.client("kms", region_name=REGION)


def hmac_key(kms: Any) -> str:
    metadata = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    arn: str = metadata["Arn"]
    return arn


def test_a_kms_ring_seals_and_verifies(kms: Any) -> None:
    key_arn = hmac_key(kms)
    ring = KmsKeyRing((key_arn,), region=REGION)
    sealed = seal_body(ring)
    assert sealed["header"].split(" ")[1] == key_arn
    envelope = verify(**sealed, ring=ring)
    assert (envelope.key_id, envelope.tenant_id) == (key_arn, "acme-corp")
    assert len(base64.urlsafe_b64decode(sealed["signature"] + "=")) == 32


def test_the_process_ring_reaches_its_keys_in_the_settings_region(moto: None) -> None:
    # GIVEN a ring secret and a KMS key that exist only in a region other than the environment's
    assert OTHER_REGION != REGION
    boto3.client("secretsmanager", region_name=OTHER_REGION).create_secret(
        Name=SECRET, SecretString=ring_json("k1", "k1")
    )
    kms = boto3.client("kms", region_name=OTHER_REGION)
    key_id = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    for spec in (f"secretsmanager:{SECRET}", f"kms:{key_id}"):
        # WHEN the process's ring is built from settings that name that region
        ring = default_key_ring(Settings(signing_keys=spec, region=OTHER_REGION))
        # THEN it reads its keys there: what it seals, it verifies
        assert verify(**seal_body(ring), ring=ring).tenant_id == "acme-corp"


def test_a_kms_ring_from_a_spec_with_an_alias(kms: Any) -> None:
    key_arn = hmac_key(kms)
    kms.create_alias(AliasName="alias/tenantscope-envelope", TargetKeyId=key_arn)
    ring = key_ring_from_spec("kms:alias/tenantscope-envelope", region=REGION)
    assert verify(**seal_body(ring), ring=ring).key_id == "alias/tenantscope-envelope"


def test_a_tampered_body_fails_kms_verification(kms: Any) -> None:
    ring = KmsKeyRing((hmac_key(kms),), region=REGION)
    sealed = seal_body(ring)
    with pytest.raises(InvalidEnvelope, match="bad signature"):
        verify(**{**sealed, "body": BODY.replace("3", "4")}, ring=ring)
    with pytest.raises(InvalidEnvelope, match="bad signature"):
        verify(**{**sealed, "tenant": "globex"}, ring=ring)


def test_a_kms_key_not_listed_is_refused_without_calling_kms(kms: Any) -> None:
    listed, other = hmac_key(kms), hmac_key(kms)
    client = boto3.client("kms", region_name=REGION)
    counter = CallCounter(client)
    consumer = KmsKeyRing((listed,), client=client)
    sealed = seal_body(KmsKeyRing((other,), region=REGION))  # a real KMS key, but not this consumer's
    with pytest.raises(InvalidEnvelope, match="unknown signing key id"):
        verify(**sealed, ring=consumer)
    assert counter.count("VerifyMac") == 0


def test_a_mac_of_another_kms_key_presented_under_a_listed_id_is_refused(kms: Any) -> None:
    listed, other = hmac_key(kms), hmac_key(kms)
    forged = seal_body(KmsKeyRing((other,), region=REGION))
    forged["header"] = forged["header"].replace(other, listed)
    with pytest.raises(InvalidEnvelope, match="bad signature"):
        verify(**forged, ring=KmsKeyRing((listed,), region=REGION))


def test_a_kms_rotation_verifies_with_both_keys(kms: Any) -> None:
    old, new = hmac_key(kms), hmac_key(kms)
    before = seal_body(KmsKeyRing((old,), region=REGION))
    rotated = KmsKeyRing((new, old), region=REGION)
    after = seal_body(rotated)
    assert verify(**before, ring=rotated).key_id == old
    assert verify(**after, ring=rotated).key_id == new


# --- replay guard --------------------------------------------------------------------------------------


def envelope_for(envelope_id: str, *, expires_at: int = NOW + LIFETIME) -> Envelope:
    return Envelope(
        key_id="k1",
        tenant_id="acme-corp",
        issued_at=NOW,
        expires_at=expires_at,
        envelope_id=envelope_id,
        body_sha256=hashlib.sha256(BODY.encode()).hexdigest(),
        destination=DESTINATION,
    )


@pytest.fixture
def dynamodb(moto: None) -> Any:
    return replay_table(REGION)


def replay_table(region: str) -> Any:
    """A client of ``region`` in which the replay table now exists."""
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(
        TableName=REPLAY_TABLE,
        KeySchema=[{"AttributeName": "envelope_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "envelope_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=REPLAY_TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    return client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(NOW))


@pytest.fixture(params=["dynamodb", "in-memory"])
def guard(request: pytest.FixtureRequest, clock: FakeClock) -> ReplayGuard:
    if request.param == "dynamodb":
        request.getfixturevalue("dynamodb")
        return DynamoDbReplayGuard(REPLAY_TABLE, region=REGION, lease_seconds=900, clock=clock)
    return InMemoryReplayGuard(lease_seconds=900, clock=clock)


def test_the_first_carrier_holds_its_envelope_for_its_lease_against_any_other_delivery(
    guard: ReplayGuard, clock: FakeClock
) -> None:
    envelope = envelope_for("0123456789abcdef0123456789abcdef")
    assert guard.admit(envelope, "message-1", lease_seconds=30)  # first carrier, 30 s left to run
    assert not guard.admit(envelope, "message-1")  # SQS delivering the same message again meanwhile
    assert not guard.admit(envelope, "message-2")  # the envelope re-sent as a new message
    assert not guard.completed(envelope, "message-2")  # a replay, not work done
    assert guard.completed(envelope, "message-1") is False  # admitted, not completed
    clock.now += 30  # up to the end of the carrier's invocation, inclusive
    assert not guard.admit(envelope, "message-1")
    # WHEN the carrier's invocation is over without completing (it failed, or died)
    clock.now += 1
    # THEN SQS retrying the message is admitted, and holds the envelope in turn
    assert guard.admit(envelope, "message-1", lease_seconds=30)
    assert not guard.admit(envelope, "message-3")


def test_each_envelope_has_its_own_record(guard: ReplayGuard) -> None:
    first = envelope_for("0123456789abcdef0123456789abcdef")
    second = envelope_for("fedcba9876543210fedcba9876543210")
    assert guard.admit(first, "message-1")
    assert guard.admit(second, "message-2")
    assert not guard.admit(second, "message-1")
    assert not guard.admit(first, "message-2")
    never_seen = envelope_for("00000000000000000000000000000000")
    assert guard.completed(never_seen, "message-1") is False


def test_a_completed_envelope_is_never_admitted_under_another_id(
    guard: ReplayGuard, clock: FakeClock
) -> None:
    envelope = envelope_for("0123456789abcdef0123456789abcdef")
    assert guard.admit(envelope, "message-1")
    guard.complete(envelope, "message-1")
    clock.now += 10 * 900  # long after any lease
    assert not guard.admit(envelope, "message-2")
    assert not guard.completed(envelope, "message-2")  # a replay
    # A late redelivery of the carrier is work done: not admitted to run again, and told apart
    assert not guard.admit(envelope, "message-1")
    assert guard.completed(envelope, "message-1")
    assert not guard.admit(envelope, "message-2")  # and it did not reset the completion


def test_a_failed_carrier_can_be_redriven_under_a_new_id_after_its_lease(
    guard: ReplayGuard, clock: FakeClock
) -> None:
    # GIVEN a message whose processing failed (admitted, never completed)
    envelope = envelope_for("0123456789abcdef0123456789abcdef")
    assert guard.admit(envelope, "message-1")
    # WHEN the same envelope comes back with a new id while the first may still be running (up
    # to the end of its lease, inclusive)
    clock.now += 900
    # THEN it is refused
    assert not guard.admit(envelope, "dlq-redrive-1")
    # WHEN it comes back after the lease (a redrive from the dead-letter queue)
    clock.now += 1
    # THEN it is admitted once, and the old carrier and other copies are refused
    assert guard.admit(envelope, "dlq-redrive-1")
    assert not guard.admit(envelope, "message-1")
    assert not guard.admit(envelope, "dlq-redrive-2")
    guard.complete(envelope, "dlq-redrive-1")
    clock.now += 10 * 900
    assert not guard.admit(envelope, "dlq-redrive-2")


def test_completion_by_a_superseded_carrier_is_ignored(guard: ReplayGuard, clock: FakeClock) -> None:
    envelope = envelope_for("0123456789abcdef0123456789abcdef")
    assert guard.admit(envelope, "message-1")
    clock.now += 901
    assert guard.admit(envelope, "message-2")
    guard.complete(envelope, "message-1")  # the old carrier finishing late does not count
    assert not guard.completed(envelope, "message-1")
    clock.now += 901
    assert guard.admit(envelope, "message-3")  # message-2 never completed: still redrivable


def test_the_replay_record_outlives_the_envelope(dynamodb: Any) -> None:
    envelope = envelope_for("00112233445566778899aabbccddeeff", expires_at=NOW + 1234)
    guard = DynamoDbReplayGuard(
        REPLAY_TABLE, client=boto3.client("dynamodb", region_name=REGION), clock=lambda: float(NOW)
    )
    assert guard.admit(envelope, "message-1", lease_seconds=29.2)
    assert not guard.admit(envelope, "message-2")
    item = dynamodb.get_item(TableName=REPLAY_TABLE, Key={"envelope_id": {"S": envelope.envelope_id}})["Item"]
    assert item == {
        "envelope_id": {"S": envelope.envelope_id},
        "message_id": {"S": "message-1"},
        "tenant_id": {"S": "acme-corp"},
        # an hour past expiry, beyond any clock-skew allowance of verification
        "expires_at": {"N": str(NOW + 1234 + 3600)},
        "admitted_at": {"N": str(NOW)},
        "lease_until": {"N": str(NOW + 30)},  # whole seconds, rounded up
        "completed": {"BOOL": False},
    }
    ttl = dynamodb.describe_time_to_live(TableName=REPLAY_TABLE)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"


def test_a_record_an_earlier_version_wrote_keeps_its_rule(dynamodb: Any, clock: FakeClock) -> None:
    # GIVEN an admission recorded before carriers had their own lease (no lease_until)
    envelope = envelope_for("0123456789abcdef0123456789abcdef")
    dynamodb.put_item(
        TableName=REPLAY_TABLE,
        Item={
            "envelope_id": {"S": envelope.envelope_id},
            "message_id": {"S": "message-1"},
            "tenant_id": {"S": "acme-corp"},
            "expires_at": {"N": str(NOW + LIFETIME + 3600)},
            "admitted_at": {"N": str(NOW)},
            "completed": {"BOOL": False},
        },
    )
    guard = DynamoDbReplayGuard(REPLAY_TABLE, region=REGION, lease_seconds=900, clock=clock)
    # THEN another message id is refused for the fixed lease, and then admitted
    clock.now += 900
    assert not guard.admit(envelope, "message-2")
    clock.now += 1
    assert guard.admit(envelope, "message-2", lease_seconds=30)
    # AND its own message id was admitted again at any time, as that version did
    dynamodb.put_item(
        TableName=REPLAY_TABLE,
        Item={
            "envelope_id": {"S": "fedcba9876543210fedcba9876543210"},
            "message_id": {"S": "message-1"},
            "tenant_id": {"S": "acme-corp"},
            "expires_at": {"N": str(NOW + LIFETIME + 3600)},
            "admitted_at": {"N": str(int(clock.now))},
            "completed": {"BOOL": False},
        },
    )
    assert guard.admit(envelope_for("fedcba9876543210fedcba9876543210"), "message-1", lease_seconds=30)


def test_two_deliveries_of_one_message_at_once_run_it_once(
    guard: ReplayGuard, clock: FakeClock, vendor: CredentialVendor
) -> None:
    # GIVEN a slow record function, and the message it is running delivered again meanwhile (SQS
    # delivers at least once)
    record = signed_sqs_record('{"pay": 100}', tenant_id="acme", message_id="m-1")
    runs: list[str] = []
    responses: list[dict[str, Any]] = []

    @sqs_handler(ring=RING, vendor=vendor, replay_guard=guard)
    def pay(rec: Any, context: Any) -> None:
        runs.append(rec.message_id)
        if len(runs) == 1:
            responses.append(pay(sqs_event([record]), LambdaContext(timeout=30)))  # the duplicate

    first = pay(sqs_event([record]), LambdaContext(timeout=30))
    # THEN the message ran once: the duplicate failed, to be delivered again later
    assert runs == ["m-1"]
    assert first == {"batchItemFailures": []}
    assert responses == [{"batchItemFailures": [{"itemIdentifier": "m-1"}]}]
    # WHEN SQS delivers it again after its visibility timeout
    clock.now += 180
    # THEN it is acknowledged without running again
    assert pay(sqs_event([record]), LambdaContext(timeout=30)) == {"batchItemFailures": []}
    assert runs == ["m-1"]


class EventuallyConsistentReads:
    """A DynamoDB client whose eventually consistent reads have seen no write yet (DynamoDB may
    answer one from a replica a write has not reached): only a strongly consistent read sees the
    table. moto's reads are all consistent."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_item(self, **params: Any) -> dict[str, Any]:
        if params.get("ConsistentRead") is not True:
            return {}
        answer: dict[str, Any] = self._client.get_item(**params)
        return answer


def test_a_redelivery_right_after_completion_is_known_as_done(dynamodb: Any) -> None:
    # GIVEN a guard whose table answers eventually consistent reads from before any write
    guard = DynamoDbReplayGuard(
        REPLAY_TABLE, client=EventuallyConsistentReads(dynamodb), clock=lambda: float(NOW)
    )
    envelope = envelope_for("0123456789abcdef0123456789abcdef")
    assert guard.admit(envelope, "message-1")
    guard.complete(envelope, "message-1")
    # WHEN SQS redelivers the completed message at once THEN it is not run again, and it is
    # acknowledged as done rather than refused as a replay
    assert not guard.admit(envelope, "message-1")
    assert guard.completed(envelope, "message-1") is True


def test_a_replay_guard_uses_the_region_or_the_client_it_is_given(moto: None) -> None:
    # GIVEN the replay table only in a region other than the environment's
    client = replay_table(OTHER_REGION)
    envelope = envelope_for("0123456789abcdef0123456789abcdef")
    by_region = DynamoDbReplayGuard(REPLAY_TABLE, region=OTHER_REGION, clock=lambda: float(NOW))
    by_client = DynamoDbReplayGuard(REPLAY_TABLE, client=client, clock=lambda: float(NOW))
    # THEN both reach it: one admits, the other sees that admission
    assert by_region.admit(envelope, "message-1")
    assert not by_client.admit(envelope, "message-2")
    by_client.complete(envelope, "message-1")
    assert by_region.completed(envelope, "message-1")


def test_a_sealed_envelope_goes_through_verification_and_the_guard(dynamodb: Any) -> None:
    ring = key_ring_from_spec("inline:" + ring_json("k1", "k1"))
    guard = DynamoDbReplayGuard(REPLAY_TABLE, region=REGION)
    sealed = seal_body(ring)
    envelope = verify(**sealed, ring=ring)
    assert guard.admit(envelope, "message-1")
    replayed = verify(**sealed, ring=ring)  # the same sealed message, re-sent: it still verifies
    assert not guard.admit(replayed, "message-2")  # but the guard refuses it
    guard.complete(envelope, "message-1")
    assert guard.completed(replayed, "message-1")


def test_a_missing_replay_table_fails_closed_as_an_outage_naming_the_call(moto: None) -> None:
    # GIVEN a guard whose table does not exist (a typo, or a stack not deployed)
    guard = DynamoDbReplayGuard("no-such-table", region=REGION)
    envelope = envelope_for("0123456789abcdef0123456789abcdef")
    # THEN each of its calls fails, never admits: an outage (retried), with DynamoDB's error code
    for call, operation in (
        (guard.admit, "UpdateItem"),
        (guard.completed, "GetItem"),
        (guard.complete, "UpdateItem"),
    ):
        with pytest.raises(TemporarilyUnavailable) as failed:
            call(envelope, "message-1")
        assert failed.value.reason is Reason.REPLAY_TABLE_FAILED
        assert failed.value.detail == f"{operation}: ResourceNotFoundException"


def test_an_unreachable_replay_table_is_an_outage() -> None:
    # GIVEN a DynamoDB endpoint nothing listens on (refused at once, on this machine)
    client = boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    guard = DynamoDbReplayGuard(REPLAY_TABLE, client=client)
    with pytest.raises(TemporarilyUnavailable) as failed:
        guard.admit(envelope_for("0123456789abcdef0123456789abcdef"), "message-1")
    assert failed.value.reason is Reason.REPLAY_TABLE_UNREACHABLE
    assert failed.value.detail == "EndpointConnectionError"


def test_an_sqs_batch_whose_replay_table_is_missing_is_retried_whole(moto: None) -> None:
    # GIVEN a batch of two good records, and a handler whose replay table is missing
    ran: list[str] = []

    @sqs_handler(
        ring=RING,
        vendor=CredentialVendor(FakeSts()),
        replay_guard=DynamoDbReplayGuard("no-such-table", region=REGION),
    )
    def handler(record: Any, context: Any) -> None:
        ran.append(record.message_id)

    event = sqs_event(signed_sqs_record("{}", tenant_id=t, message_id=f"m-{t}") for t in ("acme", "globex"))
    # WHEN it runs, THEN nothing runs and the invocation fails as an outage: Lambda retries the batch
    with pytest.raises(TemporarilyUnavailable) as failed:
        handler(event, LambdaContext())
    assert failed.value.reason is Reason.REPLAY_TABLE_FAILED
    assert ran == []


def test_a_handler_configured_with_a_replay_table_guards_with_it_in_the_settings_region(moto: None) -> None:
    # GIVEN the replay table only in a region other than the environment's, named by the settings
    replay_table(OTHER_REGION)
    ran: list[str] = []

    @sqs_handler(
        settings=Settings.load(replay_table=REPLAY_TABLE, region=OTHER_REGION),
        ring=RING,
        vendor=CredentialVendor(FakeSts(), sleep=lambda _: None),
    )
    def handler(record: Any, context: Any) -> None:
        ran.append(record.message_id)

    record = signed_sqs_record("{}", tenant_id="acme", message_id="m-1")
    # WHEN a message runs, and its envelope is sent again as another message
    assert handler(sqs_event([record]), LambdaContext()) == {"batchItemFailures": []}
    copied = handler(sqs_event([{**record, "messageId": "m-2"}]), LambdaContext())
    # THEN the copy is refused: the handler's guard is on that table
    assert copied == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert ran == ["m-1"]
