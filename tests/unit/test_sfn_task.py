"""@sfn_task: a task runs as the tenant of its sealed execution input, or not at all.

Refusals raise exactly ``TenantAuthError`` (a state machine Catches it by that name) and
passing outages (STS, the key ring) exactly ``TemporarilyUnavailable`` (a state machine Retries it).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tenantscope import (
    CrossTenantAccess,
    Forbidden,
    NoTenantContext,
    Reason,
    TemporarilyUnavailable,
    TenantAuthError,
    current_tenant,
    sfn_task,
)
from tenantscope._config import Settings
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope._envelope import SFN_KEY, seal, sfn_destination, sfn_envelope
from tenantscope._keyring import HmacKeyRing
from tenantscope.sfn import MAX_OUTPUT_BYTES, TaskOutputTooLarge
from tenantscope.testing import (
    ACCOUNT_ID,
    REGION,
    RING,
    STATE_MACHINE_ARN,
    key_bytes,
    make_ring,
    sealed_input,
    sfn_task_event,
    task_event,
)
from tests.conftest import LambdaContext, signed_as

EXECUTION = "acme-3f1c"
OTHER_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:tenantscope-refunds"
PAYLOAD = {"order_id": "o-1", "quantity": 3, "note": "ünïcode ✓"}
SFN_TTL = Settings.load(environ={}).sfn_envelope_ttl_seconds


pytestmark = pytest.mark.usefixtures("no_scope_leaks")


def first_event(**kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"tenant_id": "acme", "execution_name": EXECUTION, **kwargs}
    return sfn_task_event(PAYLOAD, **options)


def recording_task(vendor: CredentialVendor, *, name: str | None = None, result: Any = None) -> Any:
    calls: list[dict[str, Any]] = []

    @sfn_task(name=name, ring=RING, vendor=vendor)
    def reserve_inventory(payload: dict[str, Any], context: Any) -> Any:
        calls.append(
            {
                "payload": copy.deepcopy(payload),
                "tenant": current_tenant(),
                "credentials_tenant": signed_as()[0],
            }
        )
        if isinstance(result, BaseException):
            raise result
        return result if result is not None else {"reserved": payload["input"]["quantity"]}

    reserve_inventory.calls = calls  # type: ignore[attr-defined]
    return reserve_inventory


def test_task_runs_as_the_sealed_tenant_and_accumulates_results(
    vendor: CredentialVendor, fake_sts: FakeSts
) -> None:
    task = recording_task(vendor)
    event = first_event()

    output = task(event, LambdaContext())

    ((call),) = task.calls
    assert call["payload"] == {"input": PAYLOAD, "results": {}}
    assert call["tenant"].tenant_id == "acme" and call["tenant"].source == "sfn"
    assert call["tenant"].subject == EXECUTION
    # what logs of the task carry: the envelope's id and the execution's name
    claims = dict(call["tenant"].claims)
    assert claims == {"envelope_id": claims.get("envelope_id"), "execution_name": EXECUTION}
    assert re.fullmatch("[0-9a-f]{32}", claims["envelope_id"])
    assert call["credentials_tenant"] == "acme"
    assert output == {SFN_KEY: event[SFN_KEY], "results": {"reserve_inventory": {"reserved": 3}}}
    assert [r.tenant_id for r in fake_sts.requests] == ["acme"]


def test_a_second_task_verifies_the_first_tasks_output(vendor: CredentialVendor) -> None:
    first = recording_task(vendor)
    calls: list[dict[str, Any]] = []

    @sfn_task(name="charge", ring=RING, vendor=vendor)
    def charge_payment(payload: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append({"payload": payload, "tenant": current_tenant().tenant_id})
        return {"charged": payload["results"]["reserve_inventory"]["reserved"] * 10}

    event = first_event()
    envelope_before = copy.deepcopy(event[SFN_KEY])
    state = first(event, LambdaContext())
    # The state machine passes the state on: JSON round trip plus the $$ context fields.
    second_output = charge_payment(task_event(state, execution_name=EXECUTION), LambdaContext())

    assert calls == [
        {"payload": {"input": PAYLOAD, "results": {"reserve_inventory": {"reserved": 3}}}, "tenant": "acme"}
    ]
    assert second_output == {
        SFN_KEY: envelope_before,
        "results": {"reserve_inventory": {"reserved": 3}, "charge": {"charged": 30}},
    }


def test_the_envelope_is_carried_forward_unchanged(vendor: CredentialVendor) -> None:
    event = first_event()
    original = json.dumps(event[SFN_KEY], sort_keys=True)
    output = recording_task(vendor, result={"x": 1})(event, LambdaContext())
    assert json.dumps(output[SFN_KEY], sort_keys=True) == original


@pytest.mark.parametrize(
    ("started_with", "task_sees"),
    [
        (f"{STATE_MACHINE_ARN}:PROD", STATE_MACHINE_ARN),
        (f"{STATE_MACHINE_ARN}:3", STATE_MACHINE_ARN),
        (STATE_MACHINE_ARN, f"{STATE_MACHINE_ARN}:PROD"),
    ],
    ids=["sealed for an alias", "sealed for a version", "run under an alias"],
)
def test_an_execution_of_a_version_or_alias_verifies_as_the_state_machines(
    vendor: CredentialVendor, started_with: str, task_sees: str
) -> None:
    # GIVEN input sealed for a version or alias ARN (its executions are the state machine's)
    state = sealed_input(PAYLOAD, tenant_id="acme", state_machine_arn=started_with, execution_name=EXECUTION)
    task = recording_task(vendor)

    # WHEN the task's context names the state machine either way, THEN it runs as the tenant
    task(task_event(state, execution_name=EXECUTION, state_machine_arn=task_sees), LambdaContext())
    assert [call["tenant"].tenant_id for call in task.calls] == ["acme"]

    # and an alias of another state machine is still another state machine
    with pytest.raises(TenantAuthError):
        task(
            task_event(state, execution_name=EXECUTION, state_machine_arn=f"{OTHER_MACHINE_ARN}:PROD"),
            LambdaContext(),
        )


def test_results_of_earlier_tasks_are_not_mutated(vendor: CredentialVendor) -> None:
    event = first_event()
    event["results"] = {"earlier": {"ok": True}}
    output = recording_task(vendor, name="later", result={"n": 1})(event, LambdaContext())
    assert event["results"] == {"earlier": {"ok": True}}
    assert output["results"] == {"earlier": {"ok": True}, "later": {"n": 1}}


def tampered_tenant() -> Any:
    event = first_event()
    event[SFN_KEY]["tenant"] = "globex"
    return event


def tampered_body() -> Any:
    event = first_event()
    event[SFN_KEY]["body"] = event[SFN_KEY]["body"].replace('"quantity":3', '"quantity":300')
    assert event[SFN_KEY]["body"] != first_event()[SFN_KEY]["body"]
    return event


def without(key: str) -> Callable[[], Any]:
    def build() -> Any:
        event = first_event()
        del event[key]
        return event

    return build


def with_execution(**changes: Any) -> Callable[[], Any]:
    def build() -> Any:
        event = first_event()
        event["execution"].update(changes)
        return event

    return build


def with_envelope(**changes: Any) -> Callable[[], Any]:
    def build() -> Any:
        event = first_event()
        event[SFN_KEY].update(changes)
        return event

    return build


def body_not_json() -> Any:
    """A forged envelope whose signed body is not JSON (sealed with the real key)."""
    body = "not json"
    envelope, signature = seal(
        body,
        tenant_id="acme",
        destination=sfn_destination(STATE_MACHINE_ARN, EXECUTION),
        ring=RING,
        now=int(time.time()),
        lifetime=60,
    )
    return task_event(
        {SFN_KEY: sfn_envelope(envelope, signature, body), "results": {}}, execution_name=EXECUTION
    )


# Each refusal, and the reason it is logged with: the task sees only TenantAuthError, the log says why.
REFUSED: dict[str, tuple[Callable[[], Any], Reason]] = {
    "an envelope from another execution": (
        lambda: task_event(
            sealed_input(PAYLOAD, tenant_id="acme", execution_name="acme-other"), execution_name=EXECUTION
        ),
        Reason.BAD_ENVELOPE_SIGNATURE,
    ),
    "another state machine": (
        lambda: task_event(
            sealed_input(PAYLOAD, tenant_id="acme", execution_name=EXECUTION),
            execution_name=EXECUTION,
            state_machine_arn=OTHER_MACHINE_ARN,
        ),
        Reason.BAD_ENVELOPE_SIGNATURE,
    ),
    "not a state machine ARN": (
        with_execution(stateMachine="arn:aws:sqs:us-east-1:123456789012:q"),
        Reason.MALFORMED_DESTINATION,
    ),
    "tampered tenant": (tampered_tenant, Reason.BAD_ENVELOPE_SIGNATURE),
    "tampered body": (tampered_body, Reason.BAD_ENVELOPE_SIGNATURE),
    "signed with another key": (
        lambda: first_event(ring=make_ring({"k1": key_bytes("not-k1")})),
        Reason.BAD_ENVELOPE_SIGNATURE,
    ),
    "signed with an unknown key id": (
        lambda: first_event(ring=make_ring({"k9": key_bytes("k9")})),
        Reason.UNKNOWN_SIGNING_KEY,
    ),
    "missing envelope": (without(SFN_KEY), Reason.MISSING_ENVELOPE),
    "missing execution block": (without("execution"), Reason.MISSING_ENVELOPE),
    "execution name missing": (with_execution(name=None), Reason.MALFORMED_ENVELOPE),
    "state machine not a string": (with_execution(stateMachine=1), Reason.MALFORMED_ENVELOPE),
    "sealed body not a string": (with_envelope(body=1), Reason.MALFORMED_ENVELOPE),
    "execution block not an object": (
        lambda: {**first_event(), "execution": "acme-3f1c"},
        Reason.MISSING_ENVELOPE,
    ),
    "envelope not an object": (
        lambda: {**first_event(), SFN_KEY: json.dumps(first_event()[SFN_KEY])},
        Reason.MISSING_ENVELOPE,
    ),
    "expired envelope": (
        lambda: first_event(issued_at=int(time.time()) - SFN_TTL - 3600),
        Reason.ENVELOPE_EXPIRED,
    ),
    "issued in the future": (
        lambda: first_event(issued_at=int(time.time()) + 3600),
        Reason.ENVELOPE_FROM_THE_FUTURE,
    ),
    "sealed body not JSON": (body_not_json, Reason.MALFORMED_BODY),
    "event is a list": (lambda: [first_event()], Reason.MALFORMED_TASK_EVENT),
    "event is a string": (lambda: json.dumps(first_event()), Reason.MALFORMED_TASK_EVENT),
    "event is None": (lambda: None, Reason.MALFORMED_TASK_EVENT),
}


@pytest.mark.parametrize(("build", "reason"), list(REFUSED.values()), ids=list(REFUSED))
def test_refusals_raise_exactly_tenant_auth_error_and_the_task_never_runs(
    vendor: CredentialVendor,
    fake_sts: FakeSts,
    caplog: pytest.LogCaptureFixture,
    build: Callable[[], Any],
    reason: Reason,
) -> None:
    task = recording_task(vendor)
    with pytest.raises(TenantAuthError) as caught:
        task(build(), LambdaContext())
    assert [r.reason for r in caplog.records if hasattr(r, "reason")] == [reason]
    assert type(caught.value) is TenantAuthError
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert task.calls == []
    assert fake_sts.requests == []


def test_lambda_tenant_isolation_mode_must_match_the_sealed_tenant(
    vendor: CredentialVendor, fake_sts: FakeSts
) -> None:
    # GIVEN a task function in Lambda tenant isolation mode, its environment bound to globex
    task = recording_task(vendor)
    # WHEN an input sealed for acme arrives THEN it is refused, the task never runs, no STS call
    with pytest.raises(TenantAuthError) as caught:
        task(first_event(), LambdaContext(tenant_id="globex"))
    assert type(caught.value) is TenantAuthError
    assert task.calls == [] and fake_sts.requests == []
    # AND an environment bound to acme runs it
    task(first_event(), LambdaContext(tenant_id="acme"))
    assert [call["tenant"].tenant_id for call in task.calls] == ["acme"]


@pytest.mark.parametrize(
    "raised",
    [CrossTenantAccess(Reason.FOREIGN_KEY), Forbidden(Reason.PRODUCER_TENANT_MISMATCH)],
    ids=["CrossTenantAccess", "Forbidden"],
)
def test_a_refused_data_access_inside_the_task_surfaces_as_tenant_auth_error(
    vendor: CredentialVendor, raised: Exception
) -> None:
    task = recording_task(vendor, result=raised)
    with pytest.raises(TenantAuthError) as caught:
        task(first_event(), LambdaContext())
    assert type(caught.value) is TenantAuthError
    assert "partition" not in str(caught.value)
    assert len(task.calls) == 1


def test_sts_failure_is_exactly_credentials_unavailable(fake_sts: FakeSts) -> None:
    fake_sts.refuse = True
    task = recording_task(CredentialVendor(fake_sts, sleep=lambda _: None))
    with pytest.raises(TemporarilyUnavailable) as caught:
        task(first_event(), LambdaContext())
    assert type(caught.value) is TemporarilyUnavailable
    assert task.calls == []


def test_sts_throttling_exhausted_is_credentials_unavailable(fake_sts: FakeSts) -> None:
    fake_sts.throttle_next = 10
    task = recording_task(CredentialVendor(fake_sts, sleep=lambda _: None))
    with pytest.raises(TemporarilyUnavailable) as caught:
        task(first_event(), LambdaContext())
    assert type(caught.value) is TemporarilyUnavailable
    assert task.calls == []


class PaymentDeclined(Exception):
    pass


@pytest.mark.parametrize(
    "raised",
    [
        PaymentDeclined("declined"),
        ValueError("bad quantity"),
        KeyError("sku"),
        NoTenantContext(Reason.NO_SCOPE),
    ],
    ids=["custom", "ValueError", "KeyError", "NoTenantContext"],
)
def test_other_exceptions_propagate_unchanged(vendor: CredentialVendor, raised: Exception) -> None:
    task = recording_task(vendor, result=raised)
    with pytest.raises(type(raised)) as caught:
        task(first_event(), LambdaContext())
    assert caught.value is raised


def test_an_output_over_the_step_functions_quota_is_an_error_the_state_can_catch(
    vendor: CredentialVendor,
) -> None:
    # GIVEN a task whose output passes Step Functions' 256 KiB (the state would then fail the
    # execution with States.DataLimitExceeded, which Catch ["States.ALL"] does not take, so no
    # compensation would run after a task that wrote)
    task = recording_task(vendor, result={"documents": ["x" * 1000] * 260})
    # WHEN it runs
    with pytest.raises(TaskOutputTooLarge, match=r"output is \d+ bytes, over the 253952") as caught:
        task(first_event(), LambdaContext())
    # THEN it fails with an error of its own name, which does not echo the output
    assert type(caught.value).__name__ == "TaskOutputTooLarge"
    assert "xxx" not in str(caught.value)
    assert len(task.calls) == 1


def test_an_output_of_numbers_from_dynamodb_is_measured_as_lambda_writes_them(
    vendor: CredentialVendor,
) -> None:
    # DynamoDB's numbers are Decimals, which json.dumps cannot write but Lambda's runtime can
    task = recording_task(vendor, result={"stock": [Decimal("12345678901234567890")] * 13000})
    with pytest.raises(TaskOutputTooLarge, match="over the"):
        task(first_event(), LambdaContext())


def test_an_output_just_within_the_quota_is_returned(vendor: CredentialVendor) -> None:
    # The envelope and the earlier results count too: measured as UTF-8 JSON, as Step Functions does.
    event = first_event()
    empty = {SFN_KEY: event[SFN_KEY], "results": {"reserve_inventory": ""}}
    room = MAX_OUTPUT_BYTES - len(json.dumps(empty, separators=(",", ":"), ensure_ascii=False).encode())
    exactly = "é" * (room // 2) + "x" * (room % 2)  # MAX_OUTPUT_BYTES to the byte
    fits = recording_task(vendor, result=exactly)
    assert fits(event, LambdaContext())["results"]["reserve_inventory"] == exactly
    over = recording_task(vendor, result=exactly + "x")
    with pytest.raises(TaskOutputTooLarge, match="over the"):
        over(event, LambdaContext())


class _CallableTask:
    def __call__(self, payload: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"tenant": current_tenant().tenant_id}


def _named(payload: dict[str, Any], context: Any, *, extra: int) -> dict[str, Any]:
    return {"tenant": current_tenant().tenant_id, "extra": extra}


@pytest.mark.parametrize(
    "task", [functools.partial(_named, extra=1), _CallableTask()], ids=["partial", "callable object"]
)
def test_a_callable_without_a_name_needs_one_and_runs_with_it(vendor: CredentialVendor, task: Any) -> None:
    message = (
        r"^@sfn_task needs a name for .+, which has no __name__ \(a functools.partial, a callable "
        r"object\): use @sfn_task\(name=\.\.\.\), the key of its output in results$"
    )
    with pytest.raises(TypeError, match=message):
        sfn_task(ring=RING, vendor=vendor)(task)
    wrapped = sfn_task(name="step", ring=RING, vendor=vendor)(task)
    assert wrapped(first_event(), LambdaContext())["results"]["step"]["tenant"] == "acme"


def test_scope_is_reset_after_every_task(vendor: CredentialVendor) -> None:
    ok = recording_task(vendor)
    failing = recording_task(vendor, result=PaymentDeclined("declined"))
    ok(first_event(), LambdaContext())
    with pytest.raises(NoTenantContext):
        current_tenant()
    with pytest.raises(PaymentDeclined):
        failing(first_event(), LambdaContext())
    with pytest.raises(NoTenantContext):
        current_tenant()
    with pytest.raises(TenantAuthError):
        ok(tampered_tenant(), LambdaContext())
    with pytest.raises(NoTenantContext):
        current_tenant()


def test_two_tenants_in_turn_each_see_only_their_own(vendor: CredentialVendor, fake_sts: FakeSts) -> None:
    task = recording_task(vendor)
    for tenant in ("acme", "globex", "acme"):
        name = f"{tenant}-run"
        task(first_event(tenant_id=tenant, execution_name=name), LambdaContext())
    assert [(c["tenant"].tenant_id, c["credentials_tenant"]) for c in task.calls] == [
        ("acme", "acme"),
        ("globex", "globex"),
        ("acme", "acme"),
    ]
    assert sorted(r.tenant_id for r in fake_sts.requests) == ["acme", "globex"]


def test_a_signing_key_outage_is_retryable_not_a_tenant_rejection(vendor: CredentialVendor) -> None:
    # GIVEN a key ring whose source is down since cold start (Secrets Manager unreachable)
    def unreachable() -> dict[str, Any]:
        raise ConnectionError("secrets manager unreachable")

    ran: list[bool] = []

    @sfn_task(ring=HmacKeyRing(unreachable), vendor=vendor)
    def reserve_inventory(payload: dict[str, Any], context: Any) -> None:
        ran.append(True)

    # THEN the state machine sees TemporarilyUnavailable, which it retries, not TenantAuthError
    with pytest.raises(TemporarilyUnavailable) as raised:
        reserve_inventory(sfn_task_event({"sku": "x"}, tenant_id="acme"), LambdaContext())
    assert type(raised.value) is TemporarilyUnavailable
    assert ran == []


def test_a_task_runs_on_the_vendor_and_the_settings_it_is_given(
    fake_sts: FakeSts, vendor: CredentialVendor, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a process whose default vendor is on one STS, and a task given a vendor on another
    own_sts = FakeSts()
    ran: list[str] = []

    @sfn_task(ring=RING, vendor=CredentialVendor(own_sts, sleep=lambda _: None))
    def charge(payload: dict[str, Any], context: Any) -> None:
        ran.append(current_tenant().tenant_id)

    # WHEN it runs THEN its tenant's credentials come from the vendor it was given
    charge(first_event(), LambdaContext())
    assert ran == ["acme"]
    assert [request.tenant_id for request in own_sts.requests] == ["acme"]
    assert fake_sts.requests == []

    # GIVEN a task given settings that allow an envelope an hour of life, not the default week
    @sfn_task(ring=RING, vendor=vendor, settings=Settings.load(sfn_envelope_ttl_seconds=3600))
    def refund(payload: dict[str, Any], context: Any) -> None:
        ran.append("refund")

    # WHEN an execution sealed for a week reaches it THEN it is refused by those settings
    with pytest.raises(TenantAuthError):
        refund(first_event(), LambdaContext())
    assert ran == ["acme"]
    assert "tenantscope: task refund refused: envelope lifetime out of bounds" in caplog.messages
