"""Key rings: ring validation, static rings, the cached ring's refresh rules, and ring specs.

A fake clock and an injectable loader drive every time-dependent case: nothing sleeps, nothing
asserts on elapsed time, and nothing touches the network (KMS and Secrets Manager are faked here;
they run on moto in tests/integration/test_keys_and_replay_on_moto.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantscope import ConfigurationError, KeysUnavailable, Reason, Settings
from tenantscope._errors import TenantAuthError
from tenantscope._keyring import (
    DEFAULT_MAX_AGE_SECONDS,
    DEFAULT_MIN_REFRESH_SECONDS,
    MIN_KEY_BYTES,
    HmacKeyRing,
    KmsKeyRing,
    SecretsManagerKeyRing,
    StaticKeyRing,
    _hmac_sha256_pads,
    _parse_ring,
    default_key_ring,
    key_ring_from_spec,
)
from tests.fakes import FakeClock, forgotten_after_each_load

MAX_AGE = 300.0
INTERVAL = 30.0
MESSAGE = b"TENANTSCOPE-ENVELOPE\n1\nk1\nacme"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


K1 = bytes(range(32))
K2 = hashlib.sha256(b"k2").digest()
K3 = hashlib.sha256(b"k3").digest() + b"longer keys are fine"


def ring_document(active: str = "k1", **keys: bytes) -> dict[str, Any]:
    return {"active": active, "keys": {kid: b64(key) for kid, key in (keys or {"k1": K1}).items()}}


@contextlib.contextmanager
def refused_as(detail: str, reason: Reason = Reason.INVALID_SETTING) -> Iterator[None]:
    """Expect a ConfigurationError of ``reason`` whose detail is ``detail``, word for word: the
    detail is what tells the operator which setting to fix."""
    with pytest.raises(ConfigurationError) as refused:
        yield
    assert (refused.value.reason, refused.value.detail) == (reason, detail)


def mac(key: bytes, message: bytes = MESSAGE) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


class Loader:
    """A ring source that counts its loads and can change or fail."""

    def __init__(self, document: Any) -> None:
        self.document = document
        self.loads = 0
        self.failure: Exception | None = None

    def __call__(self) -> Mapping[str, Any]:
        self.loads += 1
        if self.failure is not None:
            raise self.failure
        loaded: Mapping[str, Any] = self.document
        return loaded


@pytest.fixture
def loader() -> Loader:
    return Loader(ring_document())


@pytest.fixture
def ring(loader: Loader, clock: FakeClock) -> HmacKeyRing:
    return HmacKeyRing(loader, max_age=MAX_AGE, min_refresh_interval=INTERVAL, clock=clock)


# --- _parse_ring ---------------------------------------------------------------------------------------


def test_a_valid_ring_parses_to_its_active_id_and_key_bytes() -> None:
    active, keys = _parse_ring(ring_document("k2", k1=K1, k2=K2, k3=K3))
    assert active == "k2"
    assert keys == {"k1": K1, "k2": K2, "k3": K3}


def test_key_ids_of_the_whole_grammar_are_accepted() -> None:
    key_id = "arn:aws:kms:us-east-1:123456789012:alias/Tenant.Scope_v2+x=y@z-1"
    assert _parse_ring(ring_document(key_id, **{key_id: K1}))[0] == key_id
    assert _parse_ring(ring_document("k" * 256, **{"k" * 256: K1}))[0] == "k" * 256


@pytest.mark.parametrize(
    "document",
    [
        {"active": "k1"},
        {"active": "k1", "keys": {}},
        {"active": "k1", "keys": None},
        {"active": "k1", "keys": [["k1", b64(K1)]]},
        {"active": "k1", "keys": b64(K1)},
        {},
    ],
    ids=["no keys member", "empty keys", "null keys", "keys as a list", "keys as a string", "empty object"],
)
def test_a_ring_without_keys_is_refused(document: dict[str, Any]) -> None:
    with refused_as("key ring has no keys"):
        _parse_ring(document)


@pytest.mark.parametrize("size", [0, 1, 16, MIN_KEY_BYTES - 1])
def test_a_key_shorter_than_32_bytes_is_refused(size: int) -> None:
    with refused_as("key ring keys must be at least 32 bytes"):
        _parse_ring(ring_document(k1=bytes(size)))


def test_a_short_key_spoils_the_whole_ring() -> None:
    with refused_as("key ring keys must be at least 32 bytes"):
        _parse_ring(ring_document("k1", k1=K1, k2=bytes(31)))


@pytest.mark.parametrize(
    "encoded",
    [
        "not base64!",
        b64(K1).rstrip("="),  # missing padding
        base64.urlsafe_b64encode(bytes([0xFB, 0xFF, 0xBF] * 11)).decode(),  # "-_-_..."
        b64(K1)[:20] + "\n" + b64(K1)[20:],
        " " + b64(K1),
        42,
        None,
        [b64(K1)],
    ],
    ids=[
        "punctuation",
        "unpadded",
        "base64url",
        "line break",
        "leading space",
        "number",
        "null",
        "list",
    ],
)
def test_a_key_that_is_not_standard_base64_is_refused(encoded: Any) -> None:
    with refused_as("key ring has a key that is not base64"):
        _parse_ring({"active": "k1", "keys": {"k1": encoded}})


def test_hex_happens_to_be_base64_but_is_read_as_base64() -> None:
    """A 64-character hex string is valid base64 of 48 bytes: it is accepted, but as other bytes."""
    _, keys = _parse_ring({"active": "k1", "keys": {"k1": K1.hex()}})
    assert len(keys["k1"]) == 48
    assert keys["k1"] != K1


GENERATED = "Ab3dEf6hIj9lMn2pQr5tUv8xYz1bCd4fGh7jKl0nOp3rSt6vWx9zAa2cEe5gIi8k"  # GenerateSecretString-like


def test_the_flat_form_is_the_same_ring() -> None:
    flat = {"active": "k2", "k1": b64(K1), "k2": b64(K2)}
    assert _parse_ring(flat) == _parse_ring(ring_document("k2", k1=K1, k2=K2))


def test_a_generated_alphanumeric_secret_is_read_as_base64_of_48_bytes() -> None:
    assert len(GENERATED) == 64 and GENERATED.isalnum()
    active, keys = _parse_ring({"active": "k1", "k1": GENERATED})
    assert active == "k1"
    assert keys["k1"] == base64.b64decode(GENERATED)
    assert len(keys["k1"]) == 48


def test_with_a_keys_member_the_nested_form_wins_and_flat_members_are_ignored() -> None:
    active, keys = _parse_ring({"active": "k1", "keys": {"k1": b64(K1)}, "k2": b64(K2)})
    assert (active, keys) == ("k1", {"k1": K1})


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        ({"active": "k1"}, "key ring has no keys"),
        ({"active": "k1", "k1": b64(bytes(31))}, "key ring keys must be at least 32 bytes"),
        ({"active": "k1", "k1": "not base64!"}, "key ring has a key that is not base64"),
        ({"active": "k2", "k1": b64(K1)}, "key ring's active key is not listed"),
        ({"active": "k1", "k1": b64(K1), "bad id": b64(K2)}, "key ring has an invalid key id"),
    ],
    ids=["no keys", "short key", "not base64", "active not listed", "bad key id"],
)
def test_the_flat_form_is_validated_like_the_nested_form(document: dict[str, Any], detail: str) -> None:
    with refused_as(detail):
        _parse_ring(document)


@pytest.mark.parametrize("key_id", ["", "k 1", "k\n1", "k#1", "ключ", "k*", "k" * 257, "k,1"], ids=repr)
def test_a_bad_key_id_is_refused(key_id: str) -> None:
    with refused_as("key ring has an invalid key id"):
        _parse_ring({"active": key_id, "keys": {key_id: b64(K1)}})


@pytest.mark.parametrize(
    "active",
    [None, "k9", "", "K1", ["k1"], {"k1": 1}, 1],
    ids=["missing", "unknown", "empty", "other case", "list", "object", "number"],
)
def test_an_active_key_that_is_not_listed_is_refused(active: Any) -> None:
    document: dict[str, Any] = {"keys": {"k1": b64(K1)}}
    if active is not None:
        document["active"] = active
    with refused_as("key ring's active key is not listed"):
        _parse_ring(document)


@pytest.mark.parametrize("document", [[], "ring", None, 42], ids=["list", "string", "null", "number"])
def test_a_ring_that_is_not_an_object_is_refused(document: Any) -> None:
    with refused_as("key ring is not a JSON object"):
        _parse_ring(document)


# --- StaticKeyRing ----------------------------------------------------------------------------------


def test_a_static_ring_signs_with_hmac_sha256_and_verifies() -> None:
    ring = StaticKeyRing(ring_document())
    assert ring.active_key_id() == "k1"
    signature = ring.sign("k1", MESSAGE)
    assert signature == mac(K1)
    assert ring.verify("k1", MESSAGE, signature)
    assert not ring.verify("k1", MESSAGE + b"x", signature)
    assert not ring.verify("k1", MESSAGE, signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not ring.verify("k1", MESSAGE, signature[:16])
    assert not ring.verify("k1", MESSAGE, b"")


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=200), message=st.binary(max_size=300))
def test_the_precomputed_pads_make_the_mac_hmac_new_makes(key: bytes, message: bytes) -> None:
    """Every key length (shorter than a SHA-256 block, one block, longer: hashed first) and message."""
    inner, outer = _hmac_sha256_pads(key)
    inner.update(message)
    outer.update(inner.digest())
    assert outer.digest() == hmac.new(key, message, hashlib.sha256).digest()


@pytest.mark.parametrize("size", [MIN_KEY_BYTES, 63, 64, 65, 128])
def test_a_ring_signs_as_hmac_new_at_every_key_length_around_the_block(size: int) -> None:
    key = bytes(range(size))
    ring = StaticKeyRing(ring_document(k1=key))
    for message in (b"", MESSAGE, MESSAGE * 40):
        assert ring.sign("k1", message) == hmac.new(key, message, hashlib.sha256).digest()
        assert ring.sign("k1", message) == ring.sign("k1", message)  # the pads are copied, never fed


def test_a_static_ring_verifies_with_any_listed_key_and_signs_with_the_active_one() -> None:
    ring = StaticKeyRing(ring_document("k2", k1=K1, k2=K2, k3=K3))
    assert ring.active_key_id() == "k2"
    for key_id, key in (("k1", K1), ("k2", K2), ("k3", K3)):
        assert ring.verify(key_id, MESSAGE, mac(key))
        assert ring.sign(key_id, MESSAGE) == mac(key)
    assert not ring.verify("k1", MESSAGE, mac(K2))  # a MAC under k2 presented as k1


def test_a_static_ring_refuses_an_unknown_key_id() -> None:
    ring = StaticKeyRing(ring_document())
    with pytest.raises(TenantAuthError, match="unknown signing key id"):
        ring.sign("k9", MESSAGE)
    with pytest.raises(TenantAuthError, match="unknown signing key id"):
        ring.verify("k9", MESSAGE, mac(K1))


def test_a_static_ring_refuses_a_bad_document_when_built() -> None:
    with refused_as("key ring keys must be at least 32 bytes"):
        StaticKeyRing(ring_document(k1=bytes(8)))


# --- HmacKeyRing: caching, bounded refresh, last good ring -------------------------------------------


def test_the_ring_is_loaded_once_on_first_use(ring: HmacKeyRing, loader: Loader) -> None:
    assert loader.loads == 0  # nothing is loaded when the ring is built
    assert ring.active_key_id() == "k1"
    for _ in range(50):
        assert ring.verify("k1", MESSAGE, mac(K1))
    assert loader.loads == 1


def test_the_ring_is_cached_up_to_its_max_age(ring: HmacKeyRing, loader: Loader, clock: FakeClock) -> None:
    ring.active_key_id()
    loader.document = ring_document("k2", k1=K1, k2=K2)
    clock.advance(MAX_AGE)
    assert ring.active_key_id() == "k1"  # still within max age: the cached ring
    assert ring.sign("k1", MESSAGE) == mac(K1)
    assert loader.loads == 1
    clock.advance(1)
    assert ring.active_key_id() == "k2"  # past max age: reloaded
    assert loader.loads == 2
    assert ring.sign("k2", MESSAGE) == mac(K2)
    assert ring.verify("k1", MESSAGE, mac(K1))
    assert loader.loads == 2


def test_signing_past_max_age_reloads_too(ring: HmacKeyRing, loader: Loader, clock: FakeClock) -> None:
    ring.sign("k1", MESSAGE)
    loader.document = ring_document("k1", k1=K2)  # the same id, new material
    clock.advance(MAX_AGE + 1)
    assert ring.sign("k1", MESSAGE) == mac(K2)
    assert loader.loads == 2


def test_an_unknown_key_id_refreshes_the_ring_once(
    ring: HmacKeyRing, loader: Loader, clock: FakeClock
) -> None:
    ring.active_key_id()
    clock.advance(INTERVAL)
    loader.document = ring_document("k1", k1=K1, k2=K2)  # a key added by a rotation
    assert ring.verify("k2", MESSAGE, mac(K2))  # learned on first sight
    assert loader.loads == 2


def test_a_flood_of_unknown_key_ids_loads_at_most_once_per_interval(
    ring: HmacKeyRing, loader: Loader, clock: FakeClock
) -> None:
    ring.active_key_id()
    clock.advance(INTERVAL)
    for i in range(1000):
        with pytest.raises(TenantAuthError, match="unknown signing key id"):
            ring.verify(f"attacker-{i}", MESSAGE, bytes(32))
    assert loader.loads == 2
    clock.advance(INTERVAL - 1)
    for i in range(1000):
        with pytest.raises(TenantAuthError):
            ring.sign(f"attacker-{i}", MESSAGE)
    assert loader.loads == 2
    clock.advance(1)
    with pytest.raises(TenantAuthError):
        ring.verify("attacker-x", MESSAGE, bytes(32))
    assert loader.loads == 3
    assert ring.verify("k1", MESSAGE, mac(K1))  # the real key is unaffected
    assert loader.loads == 3


def test_an_unknown_key_id_right_after_the_first_load_does_not_load_again(
    ring: HmacKeyRing, loader: Loader
) -> None:
    with pytest.raises(TenantAuthError):
        ring.verify("k9", MESSAGE, bytes(32))
    assert loader.loads == 1


def test_a_failed_load_keeps_the_last_good_ring(
    ring: HmacKeyRing, loader: Loader, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    ring.active_key_id()
    loader.failure = ConnectionError("secret store down: s3cr3t-detail")
    clock.advance(MAX_AGE + 1)
    with caplog.at_level(logging.WARNING, logger="tenantscope"):
        assert ring.active_key_id() == "k1"
        assert ring.verify("k1", MESSAGE, mac(K1))
    assert loader.loads == 2
    assert caplog.messages == [
        "tenantscope: signing key ring load failed (ConnectionError); keeping the last good one"
    ]
    assert "s3cr3t-detail" not in caplog.text  # the error's message may hold data: its type only


def test_failed_reloads_of_a_stale_ring_are_rate_limited(
    ring: HmacKeyRing, loader: Loader, clock: FakeClock
) -> None:
    ring.active_key_id()
    loader.failure = TimeoutError()
    clock.advance(MAX_AGE + 1)
    for _ in range(100):
        assert ring.sign("k1", MESSAGE) == mac(K1)
    assert loader.loads == 2
    clock.advance(INTERVAL)
    loader.failure = None
    loader.document = ring_document("k2", k1=K1, k2=K2)
    assert ring.active_key_id() == "k2"
    assert loader.loads == 3


@pytest.mark.parametrize(
    "bad_document",
    [{"active": "k1", "keys": {"k1": b64(bytes(8))}}, {"keys": {}}, [], "garbage"],
    ids=["short key", "no keys", "list", "string"],
)
def test_an_invalid_new_ring_is_ignored_and_the_last_good_one_kept(
    ring: HmacKeyRing, loader: Loader, clock: FakeClock, bad_document: Any
) -> None:
    ring.active_key_id()
    loader.document = bad_document
    clock.advance(MAX_AGE + 1)
    assert ring.active_key_id() == "k1"
    assert ring.sign("k1", MESSAGE) == mac(K1)


def test_a_ring_that_never_loaded_is_unavailable(ring: HmacKeyRing, loader: Loader, clock: FakeClock) -> None:
    loader.failure = ConnectionError()
    # An outage on our side is retried (KeysUnavailable), never a refusal of the sender.
    with pytest.raises(KeysUnavailable, match="signing key ring unavailable"):
        ring.active_key_id()
    with pytest.raises(KeysUnavailable):
        ring.verify("k1", MESSAGE, mac(K1))
    assert not issubclass(KeysUnavailable, TenantAuthError)
    loader.failure = None
    clock.advance(1.0)  # until a first load, retried every second
    assert ring.active_key_id() == "k1"  # recovers once the source does


def test_an_unknown_key_id_while_a_due_reload_fails_is_an_outage_not_a_refusal(
    ring: HmacKeyRing, loader: Loader, clock: FakeClock
) -> None:
    # GIVEN a ring loaded before a rotation added k2, and a source down when the ring is due again
    ring.active_key_id()
    loader.document = ring_document("k2", k1=K1, k2=K2)
    loader.failure = ConnectionError()
    clock.advance(MAX_AGE + 1)
    # WHEN an envelope signed with the new key arrives THEN it is retried (an outage), not refused
    with pytest.raises(KeysUnavailable) as outage:
        ring.verify("k2", MESSAGE, mac(K2))
    assert outage.value.reason is Reason.SIGNING_KEYS_UNAVAILABLE
    assert ring.verify("k1", MESSAGE, mac(K1))  # known keys still verify on the last good ring
    # AND once the source answers, the new key verifies
    loader.failure = None
    clock.advance(INTERVAL)
    assert ring.verify("k2", MESSAGE, mac(K2))


def test_an_unknown_key_id_on_a_ring_within_its_max_age_is_refused_though_the_reload_fails(
    ring: HmacKeyRing, loader: Loader, clock: FakeClock
) -> None:
    # A key is added, and every consumer has learnt it, before any producer signs with it (the
    # documented rotation): an id a ring still within its max age lacks is no key of ours.
    ring.active_key_id()
    loader.failure = ConnectionError()
    clock.advance(MAX_AGE)  # up to its max age, inclusive: not yet due
    with pytest.raises(TenantAuthError) as refusal:
        ring.verify("k9", MESSAGE, bytes(32))
    assert refusal.value.reason is Reason.UNKNOWN_SIGNING_KEY
    assert loader.loads == 2  # the unknown id did try the source once


def test_a_removed_key_stops_verifying_after_the_reload(
    ring: HmacKeyRing, loader: Loader, clock: FakeClock
) -> None:
    loader.document = ring_document("k2", k1=K1, k2=K2)
    assert ring.verify("k1", MESSAGE, mac(K1))
    loader.document = ring_document("k2", k2=K2)  # k1 retired
    clock.advance(MAX_AGE + 1)
    with pytest.raises(TenantAuthError):
        ring.verify("k1", MESSAGE, mac(K1))


def test_a_key_replaced_under_the_same_id_signs_with_the_new_key_after_the_reload(
    ring: HmacKeyRing, loader: Loader, clock: FakeClock
) -> None:
    # GIVEN k1 used (and keyed for HMAC) before the ring changed k1's key
    assert ring.sign("k1", MESSAGE) == mac(K1)
    loader.document = ring_document("k1", k1=K2)
    # WHEN the ring reloads
    clock.advance(MAX_AGE + 1)
    # THEN k1 signs and verifies with its new key only
    assert ring.sign("k1", MESSAGE) == mac(K2)
    assert ring.verify("k1", MESSAGE, mac(K2))
    assert not ring.verify("k1", MESSAGE, mac(K1))


def test_each_message_gets_its_own_mac_from_a_keyed_hmac(ring: HmacKeyRing) -> None:
    messages = [MESSAGE, b"", MESSAGE + b"x", b"y" * 5000]
    assert [ring.sign("k1", message) for message in messages] == [mac(K1, m) for m in messages]


class SecretsFromLoader:
    """Secrets Manager whose one secret is, as JSON, what ``loader`` answers."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        return {"SecretString": json.dumps(self.loader())}


def hmac_ring(loader: Loader, clock: FakeClock, **timing: float) -> HmacKeyRing:
    return HmacKeyRing(loader, clock=clock, **timing)


def secrets_manager_ring(loader: Loader, clock: FakeClock, **timing: float) -> HmacKeyRing:
    return SecretsManagerKeyRing("s", client=SecretsFromLoader(loader), clock=clock, **timing)


@pytest.mark.parametrize("build", [hmac_ring, secrets_manager_ring])
@pytest.mark.parametrize(
    ("timing", "max_age", "interval"),
    [
        ({}, DEFAULT_MAX_AGE_SECONDS, DEFAULT_MIN_REFRESH_SECONDS),
        ({"max_age": 60.0, "min_refresh_interval": 10.0}, 60.0, 10.0),
    ],
    ids=["defaults", "given"],
)
def test_a_ring_looks_again_for_an_unknown_key_once_per_interval_and_reloads_past_its_max_age(
    build: Any, timing: dict[str, float], max_age: float, interval: float, loader: Loader, clock: FakeClock
) -> None:
    assert (DEFAULT_MAX_AGE_SECONDS, DEFAULT_MIN_REFRESH_SECONDS) == (300.0, 30.0)
    # GIVEN a ring loaded once, and a key k2 added to its source since
    ring = build(loader, clock, **timing)
    assert ring.active_key_id() == "k1"
    loader.document = ring_document("k2", k1=K1, k2=K2)
    # THEN k2 is looked for again only once the interval has passed since the load
    clock.advance(interval - 1)
    with pytest.raises(TenantAuthError):
        ring.verify("k2", MESSAGE, mac(K2))
    assert loader.loads == 1
    clock.advance(1)
    assert ring.verify("k2", MESSAGE, mac(K2))
    assert loader.loads == 2
    # AND the ring loaded then is used up to its max age, inclusive, and loaded again after it
    loader.document = ring_document("k3", k3=K3)
    clock.advance(max_age)
    assert ring.active_key_id() == "k2"
    clock.advance(1)
    assert ring.active_key_id() == "k3"
    assert loader.loads == 3


# --- SecretsManagerKeyRing and KmsKeyRing with fake clients (moto covers the real APIs) ---------------


class FakeSecretsManager:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.calls: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        self.calls.append(SecretId)
        return {"SecretString": self.secret}


def test_a_secrets_manager_ring_reads_its_json_secret_lazily() -> None:
    client = FakeSecretsManager(json.dumps(ring_document("k2", k1=K1, k2=K2)))
    ring = SecretsManagerKeyRing("tenantscope/signing", client=client)
    assert client.calls == []
    assert ring.active_key_id() == "k2"
    assert ring.verify("k1", MESSAGE, mac(K1))
    assert client.calls == ["tenantscope/signing"]


def test_a_secrets_manager_ring_with_a_malformed_secret_is_unavailable() -> None:
    ring = SecretsManagerKeyRing("s", client=FakeSecretsManager("{not json"))
    with pytest.raises(KeysUnavailable, match="unavailable"):
        ring.active_key_id()


class FakeKms:
    """GenerateMac / VerifyMac over local HMAC keys, with KMS's error for a wrong MAC."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = keys
        self.calls: list[tuple[str, str]] = []

    def generate_mac(self, *, KeyId: str, Message: bytes, MacAlgorithm: str) -> dict[str, Any]:
        self.calls.append(("GenerateMac", KeyId))
        assert MacAlgorithm == "HMAC_SHA_256"
        return {"Mac": mac(self.keys[KeyId], Message), "KeyId": KeyId}

    def verify_mac(self, *, KeyId: str, Message: bytes, Mac: bytes, MacAlgorithm: str) -> dict[str, Any]:
        self.calls.append(("VerifyMac", KeyId))
        if not hmac.compare_digest(mac(self.keys[KeyId], Message), Mac):
            raise ClientError({"Error": {"Code": "KMSInvalidMacException", "Message": ""}}, "VerifyMac")
        return {"MacValid": True, "KeyId": KeyId}


def test_a_kms_ring_signs_with_the_first_key_and_verifies_with_any_listed_key() -> None:
    kms = FakeKms({"alias/new": K2, "alias/old": K1, "alias/other": K3})
    ring = KmsKeyRing(("alias/new", "alias/old"), client=kms)
    assert ring.active_key_id() == "alias/new"
    assert ring.sign("alias/new", MESSAGE) == mac(K2)
    assert ring.verify("alias/old", MESSAGE, mac(K1))
    assert not ring.verify("alias/old", MESSAGE, mac(K2))  # KMSInvalidMacException is a plain "no"
    with pytest.raises(TenantAuthError, match="unknown signing key id"):
        ring.verify("alias/other", MESSAGE, mac(K3))  # exists in KMS, but not listed
    with pytest.raises(TenantAuthError, match="unknown signing key id"):
        ring.sign("alias/other", MESSAGE)
    assert ("VerifyMac", "alias/other") not in kms.calls
    assert ("GenerateMac", "alias/other") not in kms.calls


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ClientError({"Error": {"Code": "ThrottlingException"}}, "VerifyMac"), "ThrottlingException"),
        (ClientError({"Error": {"Code": "AccessDeniedException"}}, "GenerateMac"), "AccessDeniedException"),
        (ClientError({"Error": {"Code": "DisabledException"}}, "VerifyMac"), "DisabledException"),
        (
            EndpointConnectionError(endpoint_url="https://kms.us-east-1.amazonaws.com"),
            "EndpointConnectionError",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_kms_failure_is_a_key_outage_not_a_refusal(error: Exception, reason: str) -> None:
    # GIVEN KMS failing for a reason other than judging a MAC wrong
    class Failing(FakeKms):
        def generate_mac(self, **kwargs: Any) -> dict[str, Any]:
            raise error

        def verify_mac(self, **kwargs: Any) -> dict[str, Any]:
            raise error

    ring = KmsKeyRing(("k",), client=Failing({"k": K1}))
    # THEN signing and verifying say so as KeysUnavailable (a retried outage), never as a bad MAC
    with pytest.raises(KeysUnavailable, match=reason):
        ring.verify("k", MESSAGE, mac(K1))
    with pytest.raises(KeysUnavailable, match=reason):
        ring.sign("k", MESSAGE)


@pytest.mark.parametrize("key_ids", [(), ("",), ("a b",), ("k", "k\n")], ids=repr)
def test_a_kms_ring_refuses_bad_key_ids(key_ids: tuple[str, ...]) -> None:
    with refused_as("kms: needs one or more KMS key ids, ARNs or aliases"):
        KmsKeyRing(key_ids)


# --- key_ring_from_spec ---------------------------------------------------------------------------------


def test_a_secretsmanager_spec_names_the_secret_and_reads_nothing_yet() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tenantscope/signing-AbCdEf"
    ring = key_ring_from_spec(f"secretsmanager:{arn}", region="us-east-1")
    assert isinstance(ring, SecretsManagerKeyRing)
    assert ring.secret_id == arn
    by_name = key_ring_from_spec("secretsmanager:tenantscope/signing")
    assert isinstance(by_name, SecretsManagerKeyRing)
    assert by_name.secret_id == "tenantscope/signing"


def test_a_secretsmanager_spec_takes_the_cache_max_age() -> None:
    ring = key_ring_from_spec("secretsmanager:s", max_age=60.0)
    assert isinstance(ring, SecretsManagerKeyRing)
    assert ring._max_age == 60.0
    by_default = key_ring_from_spec("secretsmanager:s")
    assert isinstance(by_default, SecretsManagerKeyRing)
    assert by_default._max_age == DEFAULT_MAX_AGE_SECONDS


def test_a_kms_spec_lists_its_keys_in_order() -> None:
    ring = key_ring_from_spec("kms:alias/new, arn:aws:kms:us-east-1:123456789012:key/1234abcd ,,alias/old")
    assert isinstance(ring, KmsKeyRing)
    assert ring.key_ids == ("alias/new", "arn:aws:kms:us-east-1:123456789012:key/1234abcd", "alias/old")
    assert ring.active_key_id() == "alias/new"


def test_an_inline_spec_is_a_static_ring() -> None:
    ring = key_ring_from_spec("inline:" + json.dumps(ring_document("k2", k1=K1, k2=K2)))
    assert isinstance(ring, StaticKeyRing)
    assert ring.active_key_id() == "k2"
    assert ring.verify("k1", MESSAGE, mac(K1))


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "secretsmanager",
        "secretsmanager:",
        "kms:",
        "kms:,",
        "kms: , ",
        "kms:bad key",
        "inline:",
        "inline:not json",
        "inline:[]",
        'inline:{"active": "k1", "keys": {"k1": "c2hvcnQ="}}',
        'inline:{"active": ["k1"], "keys": {"k1": "' + b64(K1) + '"}}',
        "vault:secret/signing",
        "SecretsManager:tenantscope/signing",
        " secretsmanager:tenantscope/signing",
        "tenantscope/signing",
        b64(K1),
    ],
    ids=repr,
)
def test_bad_specs_are_refused_at_configuration_time(spec: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        key_ring_from_spec(spec)
    assert refused.value.reason is Reason.INVALID_SETTING


RING_FORMS = "kms:<key id>, secretsmanager:<secret id> or inline:<JSON ring> (local development)"


@pytest.mark.parametrize(
    ("spec", "detail"),
    [
        ("", f"TENANTSCOPE_SIGNING_KEYS must be {RING_FORMS}"),
        ("kms:", f"TENANTSCOPE_SIGNING_KEYS must be {RING_FORMS}"),
        ("inline:not json", "TENANTSCOPE_SIGNING_KEYS=inline: not JSON"),
        ("vault:x", f"TENANTSCOPE_SIGNING_KEYS: unknown key ring kind 'vault', not {RING_FORMS}"),
    ],
    ids=["empty", "no value", "inline not JSON", "unknown kind"],
)
def test_a_bad_spec_is_refused_naming_the_setting_and_its_forms(spec: str, detail: str) -> None:
    with refused_as(detail):
        key_ring_from_spec(spec)


def test_an_inline_ring_is_refused_in_a_deployed_function_and_accepted_under_sam_local(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inline = "inline:" + json.dumps(ring_document())
    # GIVEN a deployed function: its keys would sit in its configuration, readable by many
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-worker")
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)
    with refused_as(
        "TENANTSCOPE_SIGNING_KEYS=inline:... is not for a deployed function", Reason.LOCAL_ONLY_SETTING
    ):
        key_ring_from_spec(inline)
    # WHEN it is sam local invoke THEN the inline ring is a ring
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")
    assert key_ring_from_spec(inline).active_key_id() == "k1"


def test_the_process_ring_needs_the_setting() -> None:
    with refused_as(f"TENANTSCOPE_SIGNING_KEYS: set it to {RING_FORMS}", Reason.MISSING_SETTING):
        default_key_ring(Settings(signing_keys=None))


def test_the_process_ring_is_built_once_per_spec_and_max_age() -> None:
    ring = default_key_ring(Settings(signing_keys="secretsmanager:a"))
    assert default_key_ring(Settings(signing_keys="secretsmanager:a")) is ring
    other_secret = default_key_ring(Settings(signing_keys="secretsmanager:b"))
    assert isinstance(other_secret, SecretsManagerKeyRing)
    assert other_secret.secret_id == "b"
    shorter = default_key_ring(Settings(signing_keys="secretsmanager:a", signing_keys_max_age_seconds=60.0))
    assert isinstance(shorter, SecretsManagerKeyRing)
    assert shorter is not ring
    assert shorter._max_age == 60.0


def test_a_ring_forgotten_right_after_a_load_still_serves_the_signature_that_loaded_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a ring that another thread forgets (a SnapStart resume, a test's reset) just as a load
    # has stored it
    ring = StaticKeyRing(ring_document())
    forgotten_after_each_load(ring._ring, monkeypatch)
    # WHEN the signature that loaded it goes on THEN it signs with what it loaded, not an outage
    assert len(ring.sign("k1", b"m")) == 32
