"""devtools.asl runs the order state machine as the States Language says: Parameters from the input
and the context object, ResultSelector, Retry (per retrier, backoff, MaxDelaySeconds, full jitter),
Catch with ResultPath, Succeed and Fail; and refuses what it does not model."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from devtools.asl import Execution, Scheduler, StateMachineRunner, TaskCall, TaskOutcome, retry_limits
from devtools.cfn import ROOT

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"
DEFINITION: dict[str, Any] = json.loads(
    re.sub(
        r"\$\{(\w+)\}",
        lambda m: f"arn:aws:lambda:us-east-1:123456789012:function:{m[1].removesuffix('Arn')}",
        (ROOT / "statemachine" / "order_fulfillment.asl.json").read_text(),
    )
)
INPUT = {"tenantscope": {"tenant": "acme", "body": "{}"}, "results": {}}


def function_name(call: TaskCall) -> str:
    return call.function.rsplit(":", 1)[-1].removesuffix("Function")


class Tasks:
    """Fake Lambda functions: each answers from a script of errors, then succeeds like the real tasks."""

    def __init__(self, **errors: list[str]) -> None:
        self.errors = {name: list(script) for name, script in errors.items()}
        self.calls: list[TaskCall] = []

    def __call__(self, call: TaskCall) -> TaskOutcome:
        self.calls.append(call)
        name = function_name(call)
        script = self.errors.get(name, [])
        if script:
            error = script.pop(0)
            return TaskOutcome(error=error, cause=json.dumps({"errorType": error, "errorMessage": "no"}))
        payload = call.payload
        results = {**payload["results"], name: {"done": True}}
        return TaskOutcome(output={"tenantscope": payload["tenantscope"], "results": results})


def run(
    tasks: Tasks, definition: dict[str, Any] | None = None, seed: int = 1, clock: Scheduler | None = None
) -> tuple[Execution, Scheduler]:
    clock = clock or Scheduler(1000.0)
    runner = StateMachineRunner(
        definition or DEFINITION,
        MACHINE,
        schedule=clock.after,
        now=clock.clock,
        rng=random.Random(seed),
        invoke=tasks,
    )
    execution = runner.start("order-1", json.dumps(INPUT))
    clock.run(until=10**9)
    return execution, clock


def test_an_order_runs_every_task_in_order_with_the_execution_from_the_context_object() -> None:
    tasks = Tasks()
    execution, _ = run(tasks)
    assert execution.status == "SUCCEEDED"
    assert execution.visited() == ["ReserveInventory", "ChargePayment", "CompleteOrder", "OrderCompleted"]
    first = tasks.calls[0]
    assert first.payload == {
        "tenantscope": INPUT["tenantscope"],
        "results": {},
        "execution": {"name": "order-1", "stateMachine": MACHINE},
    }
    # ResultSelector keeps the function's envelope and results: each task sees the earlier ones.
    assert tasks.calls[2].payload["results"] == {
        "ReserveInventory": {"done": True},
        "ChargePayment": {"done": True},
    }
    assert execution.output == {
        "tenantscope": INPUT["tenantscope"],
        "results": {
            "ReserveInventory": {"done": True},
            "ChargePayment": {"done": True},
            "CompleteOrder": {"done": True},
        },
    }


def test_a_passing_outage_is_retried_with_full_jitter_within_the_backoff() -> None:
    tasks = Tasks(ReserveInventory=["TemporarilyUnavailable", "TemporarilyUnavailable"])
    execution, _ = run(tasks)
    assert execution.status == "SUCCEEDED"
    retries = [e for e in execution.events if e.kind == "retry"]
    (retrier,) = [
        r
        for r in DEFINITION["States"]["ReserveInventory"]["Retry"]
        if "TemporarilyUnavailable" in r["ErrorEquals"]
    ]
    for n, retry in enumerate(retries):
        cap = min(
            retrier["IntervalSeconds"] * retrier["BackoffRate"] ** n, retrier.get("MaxDelaySeconds", 1e9)
        )
        assert 0 <= retry.delay <= cap
    # Each retry ran when its delay had passed, on the simulated clock.
    attempts = execution.attempts("ReserveInventory")
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert attempts[1].at == pytest.approx(attempts[0].at + retries[0].delay)


def test_retries_without_jitter_back_off_and_are_capped_by_max_delay() -> None:
    definition = json.loads(json.dumps(DEFINITION))
    definition["States"]["ChargePayment"]["Retry"] = [
        {
            "ErrorEquals": ["Boom"],
            "IntervalSeconds": 2,
            "MaxAttempts": 4,
            "BackoffRate": 3,
            "MaxDelaySeconds": 10,
        }
    ]
    execution, _ = run(Tasks(ChargePayment=["Boom"] * 4), definition)
    assert execution.status == "SUCCEEDED"
    assert [e.delay for e in execution.events if e.kind == "retry"] == [2, 6, 10, 10]


def test_exhausted_retries_go_to_catch_which_puts_the_error_in_the_input_of_the_compensation() -> None:
    (retrier,) = [
        r
        for r in DEFINITION["States"]["ChargePayment"]["Retry"]
        if "TemporarilyUnavailable" in r["ErrorEquals"]
    ]
    limit = 1 + retrier["MaxAttempts"]
    tasks = Tasks(ChargePayment=["TemporarilyUnavailable"] * limit)
    execution, _ = run(tasks)
    assert execution.visited() == ["ReserveInventory", "ChargePayment", "ReleaseInventory", "OrderFailed"]
    assert len(execution.attempts("ChargePayment")) == limit
    release = tasks.calls[-1]
    assert release.payload["results"] == {"ReserveInventory": {"done": True}}
    assert (execution.status, execution.error) == ("FAILED", "OrderFailed")


class Outage(Tasks):
    """Every task fails with TemporarilyUnavailable (the key ring in KMS or STS out: every task
    verifies its envelope and takes its tenant's credentials) for ``seconds`` from the first call
    of ``state``."""

    def __init__(self, clock: Scheduler, state: str, seconds: float) -> None:
        super().__init__()
        self.clock, self.state, self.seconds = clock, state, seconds
        self.started: float | None = None

    def __call__(self, call: TaskCall) -> TaskOutcome:
        if self.started is None and function_name(call) == self.state:
            self.started = self.clock.clock()
        if self.started is not None and self.clock.clock() < self.started + self.seconds:
            self.calls.append(call)
            return TaskOutcome(error="TemporarilyUnavailable", cause="{}")
        return super().__call__(call)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("state", ["ReserveInventory", "ChargePayment", "CompleteOrder"])
def test_an_outage_of_a_minute_delays_an_order_and_does_not_strand_it(state: str, seed: int) -> None:
    # GIVEN KMS or STS out for a minute from the first call of a task
    clock = Scheduler(1000.0)
    tasks = Outage(clock, state, 60.0)
    # WHEN an order runs through it
    execution, _ = run(tasks, seed=seed, clock=clock)
    # THEN it completes: the outage is retried, not caught as the order's failure, nor left to
    # fail the execution with its order PROCESSING and its stock held
    assert execution.status == "SUCCEEDED", execution.visited()
    assert execution.visited() == ["ReserveInventory", "ChargePayment", "CompleteOrder", "OrderCompleted"]
    assert len(execution.attempts(state)) > 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_compensation_outlasts_an_outage_of_a_quarter_of_an_hour(seed: int) -> None:
    # GIVEN ChargePayment failed, and the compensation meets KMS or STS out for 15 minutes
    clock = Scheduler(1000.0)
    tasks = Outage(clock, "ReleaseInventory", 900.0)
    tasks.errors["ChargePayment"] = ["PaymentDeclined"]
    execution, _ = run(tasks, seed=seed, clock=clock)
    # THEN the stock is still given back and the order written FAILED
    assert execution.visited() == ["ReserveInventory", "ChargePayment", "ReleaseInventory", "OrderFailed"]
    assert (execution.status, execution.error) == ("FAILED", "OrderFailed")


def longest_wait(retrier: dict[str, Any]) -> float:
    """The most a retrier waits in all, without jitter (full jitter draws each wait below this)."""
    interval, rate = retrier.get("IntervalSeconds", 1), retrier.get("BackoffRate", 2.0)
    cap = retrier.get("MaxDelaySeconds", float("inf"))
    return sum(min(interval * rate**n, cap) for n in range(retrier.get("MaxAttempts", 3)))


def test_the_retry_budgets_are_the_ones_architecture_md_gives() -> None:
    # docs/architecture.md: ten retries of an outage, six minutes at most; the compensation's
    # twenty, 68 minutes at most; three quick ones (1, 2, 4 s) for the rest
    for state in ("ReserveInventory", "ChargePayment", "CompleteOrder"):
        outage, quick = DEFINITION["States"][state]["Retry"]
        assert outage["ErrorEquals"] == ["TemporarilyUnavailable"]
        assert (outage["MaxAttempts"], longest_wait(outage), outage["JitterStrategy"]) == (10, 362, "FULL")
        assert (quick["MaxAttempts"], longest_wait(quick)) == (3, 1 + 2 + 4)
    refused, anything = DEFINITION["States"]["ReleaseInventory"]["Retry"]
    assert (refused["ErrorEquals"], refused["MaxAttempts"]) == (["TenantAuthError"], 0)
    assert (anything["ErrorEquals"], anything["MaxAttempts"], longest_wait(anything)) == (
        ["States.ALL"],
        20,
        4110,
    )


def test_an_error_no_retrier_names_is_caught_at_once() -> None:
    execution, _ = run(Tasks(CompleteOrder=["InjectedFault"]))
    assert len(execution.attempts("CompleteOrder")) == 1
    assert [e.error for e in execution.events if e.kind == "caught"] == ["InjectedFault"]
    assert execution.visited()[-2:] == ["ReleaseInventory", "OrderFailed"]


def test_a_refused_tenant_is_never_retried_and_ends_in_tenant_rejected() -> None:
    execution, _ = run(Tasks(ReserveInventory=["TenantAuthError"]))
    assert len(execution.attempts("ReserveInventory")) == 1
    assert (execution.status, execution.error) == ("FAILED", "TenantAuthError")
    assert execution.visited() == ["ReserveInventory", "TenantRejected"]
    # In the compensation too: its first retrier (MaxAttempts 0) takes TenantAuthError, never the catch-all.
    execution, _ = run(Tasks(CompleteOrder=["InjectedFault"], ReleaseInventory=["TenantAuthError"]))
    assert len(execution.attempts("ReleaseInventory")) == 1
    assert execution.visited()[-1] == "TenantRejected"


@pytest.mark.parametrize("task", ["ChargePayment", "CompleteOrder"])
def test_a_tenant_refused_after_stock_was_reserved_is_compensated(task: str) -> None:
    # GIVEN an input accepted by ReserveInventory, refused by a later task (an envelope that
    # expired during the execution, a key withdrawn, a call outside the tenant)
    tasks = Tasks(**{task: ["TenantAuthError"]})
    execution, _ = run(tasks)
    # THEN it is not retried, and the compensation gives the stock back
    assert len(execution.attempts(task)) == 1
    assert execution.visited()[-2:] == ["ReleaseInventory", "OrderFailed"]
    assert tasks.calls[-1].payload["results"]["ReserveInventory"] == {"done": True}
    # AND where the compensation is refused too, the execution ends in TenantRejected
    execution, _ = run(Tasks(**{task: ["TenantAuthError"]}, ReleaseInventory=["TenantAuthError"]))
    assert (execution.status, execution.error, execution.visited()[-1]) == (
        "FAILED",
        "TenantAuthError",
        "TenantRejected",
    )


def test_the_compensation_retries_any_other_error_up_to_its_limit_then_the_execution_fails() -> None:
    limit = retry_limits(DEFINITION)["ReleaseInventory"]
    execution, _ = run(Tasks(CompleteOrder=["InjectedFault"], ReleaseInventory=["Boom"] * limit))
    assert len(execution.attempts("ReleaseInventory")) == limit
    assert (execution.status, execution.error) == ("FAILED", "Boom")  # uncaught: no Catch takes it


def test_a_path_the_input_lacks_fails_the_execution_with_states_runtime_which_nothing_catches() -> None:
    definition = json.loads(json.dumps(DEFINITION))
    definition["States"]["ReserveInventory"]["Parameters"]["Payload"]["missing.$"] = "$.nowhere"
    execution, _ = run(Tasks(), definition)
    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")
    assert execution.visited() == ["ReserveInventory"]


@pytest.mark.parametrize(
    ("state", "change"),
    [
        ("ReserveInventory", {"Type": "Map"}),
        ("ReserveInventory", {"Resource": "arn:aws:states:::sqs:sendMessage"}),
        ("ReserveInventory", {"OutputPath": "$.x"}),
        ("ReserveInventory", {"TimeoutSeconds": 5}),
    ],
)
def test_what_it_does_not_model_is_refused(state: str, change: dict[str, Any]) -> None:
    definition = json.loads(json.dumps(DEFINITION))
    definition["States"][state].update(change)
    with pytest.raises(NotImplementedError):
        run(Tasks(), definition)


def test_the_same_seed_draws_the_same_waits() -> None:
    def waits(seed: int) -> list[float]:
        execution, _ = run(Tasks(ReserveInventory=["TemporarilyUnavailable"] * 2), seed=seed)
        return [e.delay for e in execution.events if e.kind == "retry"]

    assert waits(7) == waits(7) != waits(8)
