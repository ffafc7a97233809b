"""devtools.asl (the interpreter `make soak` runs executions in) and moto's interpreter run the
order state machine of template.yaml with the real tasks, on the same kinds of orders: each
execution visits the same states and ends the same way in both."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from devtools import events as samples
from devtools.asl import Scheduler, StateMachineRunner, TaskCall, TaskOutcome
from devtools.issuer import dev_issuer
from devtools.local_aws import LOCAL_PARAMETERS, LocalAws, local_aws
from tenantscope import seal_input, tenant_scope

ISSUER = dev_issuer()


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    """One deployment for the module: each run places orders of its own."""
    with local_aws(LOCAL_PARAMETERS, environment=samples.identity(ISSUER)) as deployed:
        yield deployed


def place(aws: LocalAws, stock: int, quantity: int, **order: Any) -> dict[str, Any]:
    """A PENDING order of acme's for ``quantity`` widgets, ``stock`` in stock; the execution's payload."""
    token = ISSUER.token("acme")
    assert aws.http("PUT", "/items/widget", token, {"stock": stock})["statusCode"] == 200
    placed = aws.http("POST", "/orders", token, {"item_id": "widget", "quantity": quantity, **order})
    assert placed["statusCode"] == 202, placed
    order_id = json.loads(placed["body"])["id"]
    return {"order_id": order_id, "item_id": "widget", "quantity": quantity, **order}


def sealed(aws: LocalAws, payload: dict[str, Any], name: str) -> str:
    with tenant_scope("acme"):
        document = seal_input(
            payload, state_machine_arn=aws.physical["OrderStateMachine"]["Arn"], execution_name=name
        )
    return json.dumps(document)


def in_moto(aws: LocalAws, name: str, document: str) -> tuple[list[str], str, str | None]:
    """(states entered, status, error) of an execution moto's interpreter ran."""
    sfn = boto3.client("stepfunctions")
    machine = aws.physical["OrderStateMachine"]["Arn"]
    arn = sfn.start_execution(stateMachineArn=machine, name=name, input=document)["executionArn"]
    execution = aws.wait_for_executions()[name]
    history = sfn.get_execution_history(executionArn=arn)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    return entered, execution["status"], execution.get("error")


def in_asl(aws: LocalAws, name: str, document: str) -> tuple[list[str], str, str | None]:
    """The same, run by devtools.asl on a simulated clock, with the same Lambda dispatch."""
    machine = aws.physical["OrderStateMachine"]["Arn"]
    definition = json.loads(
        boto3.client("stepfunctions").describe_state_machine(stateMachineArn=machine)["definition"]
    )
    clock = Scheduler(0.0)

    def invoke(call: TaskCall) -> TaskOutcome:
        return TaskOutcome.from_lambda(*aws.dispatch_lambda(call.function, json.dumps(call.payload)))

    runner = StateMachineRunner(
        definition, machine, schedule=clock.after, now=clock.clock, rng=random.Random(0), invoke=invoke
    )
    execution = runner.start(name, document)
    clock.run(until=3600)
    return execution.visited(), execution.status, execution.error


def failing_once(monkeypatch: pytest.MonkeyPatch, attribute: str) -> None:
    """The task ``app.tasks.<attribute>`` raises on its first invocation, then runs."""
    import app.tasks  # importable once the local AWS put functions/ on sys.path

    task: Callable[[Any, Any], Any] = getattr(app.tasks, attribute)
    calls: list[str] = []

    def flaky(event: Any, context: Any) -> Any:
        calls.append(attribute)
        if len(calls) == 1:
            raise RuntimeError(f"{attribute} failed once")
        return task(event, context)

    monkeypatch.setattr(app.tasks, attribute, flaky)


@pytest.mark.parametrize(
    ("scenario", "stock", "quantity", "order", "expected"),
    [
        ("completes", 5, 2, {}, ["ReserveInventory", "ChargePayment", "CompleteOrder", "OrderCompleted"]),
        (
            "payment declined",
            5,
            2,
            {"simulate_payment_failure": True},
            ["ReserveInventory", "ChargePayment", "ReleaseInventory", "OrderFailed"],
        ),
        ("out of stock", 1, 2, {}, ["ReserveInventory", "ReleaseInventory", "OrderFailed"]),
    ],
)
def test_an_order_visits_the_same_states_in_both(
    aws: LocalAws, scenario: str, stock: int, quantity: int, order: dict[str, Any], expected: list[str]
) -> None:
    runs = []
    for run in (in_moto, in_asl):
        payload = place(aws, stock, quantity, **order)
        runs.append(run(aws, payload["order_id"], sealed(aws, payload, payload["order_id"])))
    assert runs[0] == runs[1], scenario
    assert runs[0][0] == expected


def test_an_input_sealed_for_another_execution_is_rejected_in_both(aws: LocalAws) -> None:
    runs = []
    for run in (in_moto, in_asl):
        payload = place(aws, 5, 1)
        runs.append(run(aws, f"{payload['order_id']}-other", sealed(aws, payload, payload["order_id"])))
    assert runs[0] == runs[1] == (["ReserveInventory", "TenantRejected"], "FAILED", "TenantAuthError")


def test_the_compensation_is_retried_in_both(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = []
    for run in (in_moto, in_asl):
        failing_once(monkeypatch, "release_inventory")
        payload = place(aws, 5, 1, simulate_payment_failure=True)
        runs.append(run(aws, payload["order_id"], sealed(aws, payload, payload["order_id"])))
    # A retry does not enter the state again: the history shows one visit of ReleaseInventory.
    assert (
        runs[0]
        == runs[1]
        == (
            ["ReserveInventory", "ChargePayment", "ReleaseInventory", "OrderFailed"],
            "FAILED",
            "OrderFailed",
        )
    )
