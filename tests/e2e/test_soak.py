"""`make soak`'s short variant keeps every promise under every kind of fault, replays from its seed,
and each of its checks can fail: a check fed a doctored record of the run reports the violation,
and the instruments see real violations made in the running world.

The short variant (200 orders) is the one `make test` runs; `make soak` runs 2,000
(docs/reliability.md)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
import pytest

from devtools.cfn import REGION
from devtools.soak import SoakConfig, SoakResult, World, report, run_soak
from devtools.soak_checks import (
    CHECKS,
    Delivery,
    Observations,
    StsAttempt,
    TaskAttempt,
    UnitSpan,
    run_checks,
)
from tenantscope import Settings, tenant_key, tenant_scope, tenant_table

SHORT = SoakConfig(seed=20261201, orders=200, tenants=10)


@pytest.fixture(scope="module")
def short_run() -> SoakResult:
    return run_soak(SHORT)


def test_the_short_soak_keeps_every_promise_under_every_kind_of_fault(short_run: SoakResult) -> None:
    assert short_run.ok, report(short_run)
    obs = short_run.observations
    assert len(obs.accepted()) == SHORT.orders
    # Every kind of fault was injected, not only planned.
    faults = obs.faults
    for kind in (
        "sts-throttling (on new containers): AssumeRole throttled",
        "sts-outage (on new containers): AssumeRole unreachable",
        "key-ring-outage: KMS GenerateMac failed",
        "jwks-outage (on new containers): API answered 503",
        "bad messages: tampered",
        "bad messages: foreign-queue",
        "bad messages: expired",
        "bad messages: replayed",
        "duplicate deliveries",
        "worker deaths after StartExecution",
        "handler failures: OrderWorkerFunction, before",
        "handler failures: OrderWorkerFunction, after",
        "handler failures: ReserveInventoryFunction, after",
        "handler failures: CompleteOrderFunction, after",
    ):
        assert any(name.startswith(kind) for name in faults), (kind, faults)
    # and the table says so
    table = report(short_run)
    assert f"replay: make soak SEED={SHORT.seed} ORDERS=200 TENANTS=10" in table
    assert "soak: all 9 checks passed" in table


def ran_twice(seed: int, tamper: Callable[[World], None]) -> tuple[SoakResult, SoakResult]:
    config = SoakConfig(seed=seed, orders=30, tenants=3)
    return run_soak(config), run_soak(config, tamper=tamper)


def story(result: SoakResult) -> Any:
    """What a run did, in simulated seconds from its start: it must not depend on anything but the seed."""
    obs = result.observations
    start = obs.span[0]
    return (
        obs.faults,
        obs.windows,
        [[(at - start, status) for at, status in order.attempts] for order in obs.orders],
        sorted(
            (
                obs.accepted()[name].index,
                run.visited,
                [(a.state, a.at - start, a.error) for a in run.attempts],
            )
            for name, run in obs.executions.items()
        ),
    )


def test_a_seed_replays_its_run_and_real_violations_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of one seed: the second, once settled, gets a cross-tenant write made with a tenant's
    own vended credentials (past the guard, as a bug in a raw client would), a completed order put
    back to PROCESSING and a message left in the queue. Up to that point the runs are the same."""

    def violate(world: World) -> None:
        acme, globex = world.tenants[:2]
        vendor = world.container.vendor if world.container else None
        assert vendor is not None
        credentials = vendor.credentials_for(acme, Settings.load())
        raw = boto3.session.Session().client(  # a new session: the soak's instruments see it
            "dynamodb",
            region_name=REGION,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
        )
        with tenant_scope(acme):
            raw.put_item(
                TableName=world.table_name,
                Item={"pk": {"S": f"TENANT#{globex}#ITEM"}, "sk": {"S": "planted"}, "stock": {"N": "1"}},
            )
        order = next(
            o
            for o in world.orders
            if o.tenant == acme and o.order_id and world.executions[o.order_id].status == "SUCCEEDED"
        )
        with tenant_scope(acme):
            tenant_table(world.table_name).update_item(
                Key={"pk": tenant_key("ORDER"), "sk": order.order_id},
                UpdateExpression="SET #s = :s",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": "PROCESSING"},
            )
        world.sqs.send_message(QueueUrl=world.queue_url, MessageBody=json.dumps({"order_id": order.order_id}))

    clean, violated = ran_twice(7, violate)
    assert clean.ok, report(clean)
    assert story(clean) == story(violated)
    failed = {check.name: check.problems for check in violated.checks if not check.ok}
    assert set(failed) == {
        "no request crossed tenants (recorded requests vs STS sessions)",
        "every item and file is under the tenant that made it",
        "none is stuck",
        "per-tenant stock adds up (initial - left = sold)",  # the order put back is no longer a sale
    }, failed
    acme, globex = clean.observations.tenants[:2]
    crossed = failed["no request crossed tenants (recorded requests vs STS sessions)"]
    assert any(f"with {acme}'s credentials named ['{globex}']" in p for p in crossed)
    assert any(
        p == f"item planted under {globex} was never created by {globex}"
        for p in failed["every item and file is under the tenant that made it"]
    )
    stuck = failed["none is stuck"]
    assert (
        any(p.endswith("is stuck PROCESSING") for p in stuck)
        and "1 message(s) still in the order queue" in stuck
    )


# ---------------------------------------------------------------------- doctored records of a run


def completed(obs: Observations) -> str:
    return next(o for o, order in obs.accepted().items() if _stored(obs, o).get("status") == "COMPLETED")


def failed_after_reserving(obs: Observations) -> str:
    return next(
        name
        for name, run in obs.executions.items()
        if run.status == "FAILED"
        and any(a.state == "ReserveInventory" and a.error is None for a in run.attempts)
        and any(a.state == "ReleaseInventory" and a.error is None for a in run.attempts)
    )


def _stored(obs: Observations, order_id: str) -> dict[str, Any]:
    order = obs.accepted()[order_id]
    return obs.stored_orders()[(order.tenant, order_id)]


def order_never_accepted(obs: Observations) -> None:
    obs.orders[0].order_id = None


def order_lost_from_the_table(obs: Observations) -> None:
    order_id = completed(obs)
    obs.table.remove(_stored(obs, order_id))


def completed_without_receipt(obs: Observations) -> None:
    order = obs.accepted()[completed(obs)]
    del obs.objects[f"tenants/{order.tenant}/receipts/{order.order_id}.json"]


def failed_still_holding_stock(obs: Observations) -> None:
    _stored(obs, failed_after_reserving(obs))["reserved"] = 2


def failed_not_refunded(obs: Observations) -> None:
    run = next(
        run
        for run in obs.executions.values()
        if run.status == "FAILED"
        and any(a.state == "ChargePayment" and a.error is None for a in run.attempts)
    )
    release = next(a for a in run.attempts if a.state == "ReleaseInventory" and a.error is None)
    del release.results["release_inventory"]["refunded"]


def completed_with_a_failed_execution(obs: Observations) -> None:
    run = obs.executions[completed(obs)]
    run.status, run.error = "FAILED", "OrderFailed"


def failed_on_an_uncaught_error(obs: Observations) -> None:
    run = obs.executions[failed_after_reserving(obs)]
    run.error = "TemporarilyUnavailable"


def failed_compensated_twice(obs: Observations) -> None:
    run = obs.executions[failed_after_reserving(obs)]
    run.attempts.append(next(a for a in run.attempts if a.state == "ReleaseInventory" and a.error is None))


def order_planted_in_the_table(obs: Observations) -> None:
    obs.table.append({"pk": f"TENANT#{obs.tenants[0]}#ORDER", "sk": "planted", "status": "COMPLETED"})


def item_of_an_unknown_kind(obs: Observations) -> None:
    obs.table.append({"pk": f"TENANT#{obs.tenants[0]}#SECRET", "sk": "planted"})


def completed_without_its_execution(obs: Observations) -> None:
    del obs.executions[completed(obs)]


def execution_of_no_order(obs: Observations) -> None:
    obs.executions["planted"] = copy.deepcopy(obs.executions[completed(obs)])


def execution_started_never_ran(obs: Observations) -> None:
    obs.moto_executions.append("planted")


def receipt_naming_another_order(obs: Observations) -> None:
    order = obs.accepted()[completed(obs)]
    obs.objects[f"tenants/{order.tenant}/receipts/{order.order_id}.json"] = {"order_id": "another"}


def reserved_twice(obs: Observations) -> None:
    run = obs.executions[completed(obs)]
    run.attempts.append(next(a for a in run.attempts if a.state == "ReserveInventory"))


def two_executions_of_one_order(obs: Observations) -> None:
    obs.moto_executions.append(completed(obs))


def completed_and_released(obs: Observations) -> None:
    run = obs.executions[completed(obs)]
    run.attempts.append(TaskAttempt("ReleaseInventory", 1, run.attempts[-1].at, None, {}))


def execution_as_another_tenant(obs: Observations) -> None:
    run = obs.executions[completed(obs)]
    run.tenant = next(t for t in obs.tenants if t != run.tenant)


def order_stuck_processing(obs: Observations) -> None:
    _stored(obs, completed(obs))["status"] = "PROCESSING"


def execution_never_ended(obs: Observations) -> None:
    obs.executions[completed(obs)].status = "RUNNING"


def message_left_in_queue(obs: Observations) -> None:
    obs.queue_left = 1


def bad_message_processed(obs: Observations) -> None:
    message_id = next(iter(obs.bad_messages))
    obs.deliveries[message_id].append(Delivery(obs.span[1], "ok"))


def bad_message_not_dead_lettered(obs: Observations) -> None:
    obs.dead_letters.remove(next(iter(obs.bad_messages)))


def bad_message_ran_as_a_tenant(obs: Observations) -> None:
    message_id, bad = next(iter(obs.bad_messages.items()))
    obs.spans.append(UnitSpan(bad.tenant, message_id))


def good_message_dead_lettered(obs: Observations) -> None:
    obs.dead_letters.append(next(iter(obs.good_messages)))


def cross_tenant_write(obs: Observations) -> None:
    request = obs.requests[-1]
    other = next(t for t in obs.tenants if t not in request.tenant_refs)
    obs.requests.append(replace(request, operation="PutItem", tenant_refs=(other,)))


def request_in_another_tenants_scope(obs: Observations) -> None:
    request = obs.requests[-1]
    other = next(t for t in obs.tenants if t != request.scope_tenant)
    obs.requests.append(replace(request, scope_tenant=other))


def request_on_the_functions_own_role(obs: Observations) -> None:
    obs.requests.append(replace(obs.requests[-1], access_key="local-function-role"))


def item_planted_in_another_partition(obs: Observations) -> None:
    obs.table.append({"pk": f"TENANT#{obs.tenants[1]}#ITEM", "sk": "planted", "stock": 1})


def receipt_under_another_tenant(obs: Observations) -> None:
    order = obs.accepted()[completed(obs)]
    other = next(t for t in obs.tenants if t != order.tenant)
    obs.objects[f"tenants/{other}/receipts/{order.order_id}.json"] = {"order_id": order.order_id}


def replay_record_of_another_tenant(obs: Observations) -> None:
    record = obs.replay_records[0]
    record["tenant_id"] = next(t for t in obs.tenants if t != record.get("tenant_id"))


def stock_off_by_one(obs: Observations) -> None:
    item = next(i for i in obs.table if i["pk"].endswith("#ITEM"))
    item["stock"] -= 1


def session_vended_again_too_soon(obs: Observations) -> None:
    session = obs.sts_sessions[-1]
    obs.sts_sessions.append(replace(session, at=session.at + 60, access_key="ASIA-AGAIN"))
    obs.moto_sessions.append((session.session_name, "ASIA-AGAIN"))


def session_tagged_for_another_tenant(obs: Observations) -> None:
    session = obs.sts_sessions[0]
    session.tags = {"TenantId": next(t for t in obs.tenants if t != session.session_name)}


def session_moto_served_unseen(obs: Observations) -> None:
    obs.moto_sessions.append((obs.tenants[0], "ASIA-UNSEEN"))


def sts_over_the_bound(obs: Observations) -> None:
    # The same sessions, in a run that had one container for an instant: one session per tenant at most.
    obs.containers[:] = [replace(obs.containers[0], end=obs.containers[0].start)]


def assume_role_retried_without_bound(obs: Observations) -> None:
    obs.sts_attempts += [StsAttempt(obs.span[1], obs.tenants[0], "throttled", 10**6)] * (
        obs.vendor_attempts + 1
    )


def task_retried_without_bound(obs: Observations) -> None:
    run = obs.executions[completed(obs)]
    attempt = run.attempts[0]
    run.attempts += [replace(attempt, error="TemporarilyUnavailable")] * obs.retry_limits[attempt.state]


def message_delivered_without_bound(obs: Observations) -> None:
    message_id = next(iter(obs.good_messages))
    obs.deliveries[message_id] += [Delivery(obs.span[1], "failed")] * obs.max_receives


def client_retried_without_bound(obs: Observations) -> None:
    order = obs.orders[0]
    order.attempts[:0] = [(order.attempts[0][0], 503)] * obs.client_attempts


# Each doctored record, and the problem its check must report (a part of the problem's text): a
# record that another problem of the same check happened to catch would not show that this one can.
DOCTORED: dict[str, dict[Callable[[Observations], None], str]] = {
    "every accepted order reached exactly one final state": {
        order_never_accepted: "was never accepted: [",
        order_lost_from_the_table: "accepted, but not in the table",
        completed_without_receipt: "is COMPLETED without its receipt",
        completed_with_a_failed_execution: "is COMPLETED, its execution FAILED OrderFailed",
        completed_without_its_execution: "is COMPLETED without a finished execution",
        failed_on_an_uncaught_error: "is FAILED, its execution FAILED TemporarilyUnavailable",
        failed_compensated_twice: "FAILED, compensated 2 times",
        order_planted_in_the_table: "order planted (COMPLETED) was never accepted by",
        failed_still_holding_stock: "FAILED with its stock still reserved",
        failed_not_refunded: "FAILED with its payment not refunded",
    },
    "no order was processed twice": {
        reserved_twice: "ReserveInventory succeeded 2 times",
        two_executions_of_one_order: "2 executions named",
        completed_and_released: "both completed and released",
        execution_as_another_tenant: "its order is",
        execution_of_no_order: "execution planted processes no accepted order",
    },
    "none is stuck": {
        order_stuck_processing: "is stuck PROCESSING",
        execution_never_ended: "never finished",
        execution_started_never_ran: "execution planted was started but never ran",
        message_left_in_queue: "1 message(s) still in the order queue",
    },
    "every bad message was refused and dead-lettered": {
        bad_message_processed: "was not refused",
        bad_message_not_dead_lettered: "is not in the dead-letter queue",
        bad_message_ran_as_a_tenant: "ran as tenant-",
        good_message_dead_lettered: "was dead-lettered",
    },
    "no request crossed tenants (recorded requests vs STS sessions)": {
        cross_tenant_write: "'s credentials named [",
        request_in_another_tenants_scope: "'s scope",
        request_on_the_functions_own_role: "not a tenant session",
    },
    "every item and file is under the tenant that made it": {
        item_planted_in_another_partition: "item planted under",
        item_of_an_unknown_kind: "unexpected item",
        receipt_under_another_tenant: "is not a receipt of an order of its tenant",
        receipt_naming_another_order: "is not of a completed order, or names another",
        replay_record_of_another_tenant: "replay record of",
    },
    "per-tenant stock adds up (initial - left = sold)": {stock_off_by_one: "left !="},
    "STS sessions within tenants x credential lifetimes": {
        session_vended_again_too_soon: "was vended again in container",
        session_tagged_for_another_tenant: "tags {'TenantId'",
        session_moto_served_unseen: "were seen",
        sts_over_the_bound: "over the bound",
    },
    "retries stayed bounded": {
        assume_role_retried_without_bound: "AssumeRole attempts for",
        task_retried_without_bound: "ReserveInventory invoked",
        message_delivered_without_bound: " delivered ",
        client_retried_without_bound: " placed ",
    },
}


def test_every_check_has_doctored_records_that_fail_it(short_run: SoakResult) -> None:
    assert set(DOCTORED) == {check.name for check in short_run.checks}
    assert len(CHECKS) == len(DOCTORED)


@pytest.mark.parametrize(
    ("check", "doctor"),
    [
        pytest.param(check, doctor, id=doctor.__name__)
        for check, doctors in DOCTORED.items()
        for doctor in doctors
    ],
)
def test_a_doctored_record_fails_its_check(
    short_run: SoakResult, check: str, doctor: Callable[[Observations], None]
) -> None:
    observations = copy.deepcopy(short_run.observations)
    assert {r.name: r for r in run_checks(observations)}[check].ok  # the run itself passes it
    doctor(observations)
    results = {result.name: result for result in run_checks(observations)}
    assert not results[check].ok, f"{doctor.__name__} passed {check}"
    expected = DOCTORED[check][doctor]
    assert [p for p in results[check].problems if expected in p], (expected, results[check].problems)
