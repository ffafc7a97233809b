"""What `make soak` checks, as functions of what it observed: the promises of the whole flow.

:class:`Observations` is plain data gathered after a run: from moto (the pooled table, the files
bucket, the replay table, the queues, the STS sessions it served), from the AWS requests the
functions sent (recorded as they left botocore, with the credentials that signed them), from
the layer's spans, and from the run itself (what each client was answered, each delivery of
each message, each step of each execution). Every check reads only these, so a test can hand a
check observations with one violation in them and see it fail (tests/e2e/test_soak.py).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tenantscope._policy import tenant_object_prefix, tenant_prefix

__all__ = [
    "BAD_KINDS",
    "CHECKS",
    "BadMessage",
    "Check",
    "ContainerLife",
    "Delivery",
    "ExecutionRun",
    "Observations",
    "PlacedOrder",
    "Request",
    "StsAttempt",
    "StsSession",
    "TaskAttempt",
    "UnitSpan",
    "percentile",
    "run_checks",
    "tenants_named",
]

FINAL = ("COMPLETED", "FAILED")
BAD_KINDS = ("tampered", "foreign-queue", "expired", "replayed")


@dataclass
class PlacedOrder:
    """One order a client placed: every attempt's answer, and the order id once accepted (202)."""

    index: int
    tenant: str
    item: str
    quantity: int
    payment_fails: bool
    attempts: list[tuple[float, int]] = field(default_factory=list)  # (simulated time, HTTP status)
    order_id: str | None = None


@dataclass
class Delivery:
    """One delivery of a message to the worker: ``ok`` (deleted), ``failed`` (a batch item
    failure) or ``died`` (the invocation died: nothing deleted); ``duplicate`` when SQS delivered
    a message again that was already deleted."""

    at: float
    outcome: str
    duplicate: bool = False


@dataclass
class BadMessage:
    message_id: str
    kind: str
    tenant: str


@dataclass
class TaskAttempt:
    state: str
    attempt: int
    at: float
    error: str | None
    results: dict[str, Any]  # the task's output "results" (each finished task's output)


@dataclass
class ExecutionRun:
    name: str
    tenant: str | None  # the tenant its input was sealed for
    status: str
    error: str | None
    started_at: float
    ended_at: float | None
    visited: list[str]
    attempts: list[TaskAttempt]
    caught: list[str]  # the errors Catch took, in order


@dataclass
class StsAttempt:
    at: float
    tenant: str
    outcome: str  # served, throttled, unreachable
    invocation: int  # which function invocation asked


@dataclass
class StsSession:
    at: float
    session_name: str
    source_identity: str | None
    tags: dict[str, str]
    access_key: str
    container: str  # the function container whose credential cache asked for it


@dataclass
class ContainerLife:
    """A function's container, from its start to its replacement (or the end of the run)."""

    name: str
    start: float
    end: float


@dataclass
class Request:
    """A DynamoDB or S3 request to the pooled table or bucket, as it was sent."""

    at: float
    operation: str
    resource: str  # the table or bucket
    access_key: str
    scope_tenant: str | None  # the tenant scope it was made in
    function: str | None
    tenant_refs: tuple[str, ...]  # tenants named by its keys, items, values and object keys


@dataclass
class UnitSpan:
    """One unit of work the layer traced: the tenant it ran as (None: refused before it ran)."""

    tenant: str | None
    message_id: str | None  # an SQS record's


@dataclass
class Observations:
    tenants: list[str]
    span: tuple[float, float]  # simulated start and end
    initial_stock: dict[str, dict[str, int]]
    orders: list[PlacedOrder]
    deliveries: dict[str, list[Delivery]]  # by message id, good and bad
    good_messages: dict[str, str]  # message id -> order id
    bad_messages: dict[str, BadMessage]
    dead_letters: list[str]
    queue_left: int
    executions: dict[str, ExecutionRun]
    moto_executions: list[str]
    table: list[dict[str, Any]]  # the pooled table's items
    objects: dict[str, Any]  # the files bucket: key -> JSON body
    replay_records: list[dict[str, Any]]
    sts_attempts: list[StsAttempt]
    sts_sessions: list[StsSession]
    moto_sessions: list[tuple[str, str]]  # (session name, access key) moto's STS served
    requests: list[Request]
    spans: list[UnitSpan]
    containers: list[ContainerLife]
    session_seconds: int
    refresh_margin_seconds: int
    vendor_attempts: int
    max_receives: int
    client_attempts: int
    retry_limits: dict[str, int]
    faults: dict[str, int] = field(default_factory=dict)
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    wall_seconds: float = 0.0
    wall: dict[str, list[float]] = field(default_factory=dict)  # function -> seconds per invocation
    work: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> order id -> handler seconds

    def accepted(self) -> dict[str, PlacedOrder]:
        return {o.order_id: o for o in self.orders if o.order_id is not None}

    def stored_orders(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(tenant, order id) -> the order's item in the table."""
        found = {}
        for item in self.table:
            tenant, kind = _key_tenant(item["pk"])
            if kind == "ORDER":
                found[(tenant, item["sk"])] = item
        return found


@dataclass
class Check:
    name: str
    ok: bool
    summary: str
    problems: list[str] = field(default_factory=list)


def _key_tenant(pk: str) -> tuple[str, str]:
    """(tenant, kind) of a pooled-table partition key ``TENANT#<id>#<kind>``."""
    prefix = tenant_prefix("")
    if not pk.startswith(prefix):
        return "", ""
    tenant, _, kind = pk[len(prefix) :].partition("#")
    return tenant, kind


def tenants_named(values: Iterable[Any]) -> set[str]:
    """Every tenant a value names: partition keys ``TENANT#<id>...`` and object keys ``tenants/<id>/...``."""
    found: set[str] = set()
    key_prefix, object_prefix = tenant_prefix(""), tenant_object_prefix("-").removesuffix("-/")
    for value in values:
        if isinstance(value, str):
            if value.startswith(key_prefix):
                found.add(value[len(key_prefix) :].split("#", 1)[0])
            elif value.startswith(object_prefix):
                found.add(value[len(object_prefix) :].split("/", 1)[0])
    return found


def _check(name: str, problems: list[str], summary: str) -> Check:
    return Check(name, not problems, summary, problems)


def _succeeded(run: ExecutionRun, state: str) -> list[TaskAttempt]:
    return [a for a in run.attempts if a.state == state and a.error is None]


def why_failed(run: ExecutionRun) -> str:
    """Why an order's execution failed: the first error Catch took."""
    return run.caught[0] if run.caught else (run.error or "?")


def check_orders_final(obs: Observations) -> Check:
    problems = []
    accepted = obs.accepted()
    stored = obs.stored_orders()
    for order in obs.orders:
        if order.order_id is None:
            problems.append(f"order #{order.index} of {order.tenant} was never accepted: {order.attempts}")
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for order_id, order in accepted.items():
        item = stored.get((order.tenant, order_id))
        status = item.get("status") if item else None
        statuses[str(status)] += 1
        run = obs.executions.get(order_id)
        if item is None:
            problems.append(f"{order.tenant} order {order_id}: accepted, but not in the table")
            continue
        if status not in FINAL:
            continue  # reported by "none is stuck"
        if run is None or run.status not in ("SUCCEEDED", "FAILED"):
            problems.append(f"{order.tenant} order {order_id} is {status} without a finished execution")
            continue
        if (status == "COMPLETED") != (run.status == "SUCCEEDED") or (
            run.status == "FAILED" and run.error != "OrderFailed"
        ):
            problems.append(
                f"{order.tenant} order {order_id} is {status}, its execution {run.status} {run.error}"
            )
        if status == "COMPLETED":
            receipt = obs.objects.get(f"{tenant_object_prefix(order.tenant)}receipts/{order_id}.json")
            if not isinstance(receipt, dict) or receipt.get("order_id") != order_id:
                problems.append(f"{order.tenant} order {order_id} is COMPLETED without its receipt")
        if status == "FAILED":
            reasons[why_failed(run)] += 1
            releases = _succeeded(run, "ReleaseInventory")
            if len(releases) != 1:
                problems.append(f"{order.tenant} order {order_id} FAILED, compensated {len(releases)} times")
                continue
            output = releases[0].results.get("release_inventory", {})
            # The order records what it holds: a reservation whose task failed after it committed
            # is on the order too, though the execution has no result for it.
            if "reserved" in item or (
                _succeeded(run, "ReserveInventory") and output.get("released") is not True
            ):
                problems.append(f"{order.tenant} order {order_id} FAILED with its stock still reserved")
            if _succeeded(run, "ChargePayment") and output.get("refunded") is not True:
                problems.append(f"{order.tenant} order {order_id} FAILED with its payment not refunded")
    for (tenant, order_id), item in stored.items():
        if order_id not in accepted or accepted[order_id].tenant != tenant:
            problems.append(
                f"{tenant} order {order_id} ({item.get('status')}) was never accepted by {tenant}"
            )
    failed = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
    summary = (
        f"{len(accepted)} of {len(obs.orders)} orders accepted: {statuses['COMPLETED']} COMPLETED, "
        f"{statuses['FAILED']} FAILED ({failed or 'none'})"
    )
    return _check("every accepted order reached exactly one final state", problems, summary)


def check_processed_once(obs: Observations) -> Check:
    problems = []
    accepted = obs.accepted()
    moto = Counter(obs.moto_executions)
    for name, count in moto.items():
        if count > 1:
            problems.append(f"{count} executions named {name}")
    for name, run in obs.executions.items():
        order = accepted.get(name)
        if order is None:
            problems.append(f"execution {name} processes no accepted order")
            continue
        if run.tenant != order.tenant:
            problems.append(f"execution {name} runs as {run.tenant}, its order is {order.tenant}'s")
        for state in ("ReserveInventory", "ChargePayment", "CompleteOrder", "ReleaseInventory"):
            if len(_succeeded(run, state)) > 1:
                problems.append(
                    f"{order.tenant} order {name}: {state} succeeded {len(_succeeded(run, state))} times"
                )
        if _succeeded(run, "CompleteOrder") and _succeeded(run, "ReleaseInventory"):
            problems.append(f"{order.tenant} order {name} both completed and released")
    summary = f"{len(obs.executions)} executions, one per order; no task succeeded twice for one order"
    return _check("no order was processed twice", problems, summary)


def check_stock(obs: Observations) -> Check:
    problems = []
    sold: dict[tuple[str, str], int] = defaultdict(int)
    stored = obs.stored_orders()
    for order_id, order in obs.accepted().items():
        if (stored.get((order.tenant, order_id)) or {}).get("status") == "COMPLETED":
            sold[(order.tenant, order.item)] += order.quantity
    final = {}
    for item in obs.table:
        tenant, kind = _key_tenant(item["pk"])
        if kind == "ITEM":
            final[(tenant, item["sk"])] = int(item.get("stock", -1))
    for tenant, items in obs.initial_stock.items():
        for item_id, initial in items.items():
            left = final.get((tenant, item_id))
            if left is None or initial - left != sold[(tenant, item_id)]:
                problems.append(
                    f"{tenant} {item_id}: {initial} - {left} left != {sold[(tenant, item_id)]} sold"
                )
    total = sum(sold.values())
    return _check(
        "per-tenant stock adds up (initial - left = sold)",
        problems,
        f"{len(final)} items of {len(obs.tenants)} tenants; {total} units sold",
    )


def check_none_stuck(obs: Observations) -> Check:
    problems = []
    for (tenant, order_id), item in obs.stored_orders().items():
        if item.get("status") not in FINAL:
            problems.append(f"{tenant} order {order_id} is stuck {item.get('status')}")
    for name, run in obs.executions.items():
        if run.status == "RUNNING":
            problems.append(f"execution {name} never finished (last state {run.visited[-1:]})")
    missed = sorted(set(obs.moto_executions) - set(obs.executions))
    problems += [f"execution {name} was started but never ran" for name in missed]
    if obs.queue_left:
        problems.append(f"{obs.queue_left} message(s) still in the order queue")
    return _check(
        "none is stuck",
        problems,
        f"no order PENDING or PROCESSING, every execution ended, order queue empty ({obs.queue_left} left)",
    )


def check_bad_messages(obs: Observations) -> Check:
    problems = []
    dead = set(obs.dead_letters)
    spans_by_message: dict[str, list[UnitSpan]] = defaultdict(list)
    for span in obs.spans:
        if span.message_id:
            spans_by_message[span.message_id].append(span)
    for message_id, bad in obs.bad_messages.items():
        outcomes = [d.outcome for d in obs.deliveries.get(message_id, [])]
        if message_id not in dead:
            problems.append(f"{bad.kind} message {message_id} is not in the dead-letter queue")
        # Refused is a batch item failure; a delivery in a batch whose invocation died was not judged.
        if "ok" in outcomes or "failed" not in outcomes:
            problems.append(f"{bad.kind} message {message_id} was not refused: {outcomes}")
        ran = [s.tenant for s in spans_by_message[message_id] if s.tenant is not None]
        if ran:
            problems.append(f"{bad.kind} message {message_id} ran as {ran[0]}")
    for message_id in dead - set(obs.bad_messages):
        problems.append(
            f"good message {message_id} (order {obs.good_messages.get(message_id)}) was dead-lettered"
        )
    kinds = Counter(b.kind for b in obs.bad_messages.values())
    refusals = sum(d.outcome == "failed" for m in obs.bad_messages for d in obs.deliveries.get(m, []))
    summary = (
        f"{len(obs.bad_messages)} bad ({', '.join(f'{kinds[k]} {k}' for k in BAD_KINDS)}): "
        f"{refusals} deliveries refused, {len(dead & set(obs.bad_messages))} dead-lettered, "
        f"{sum(bool(spans_by_message[m]) for m in obs.bad_messages)} reached the handler's pipeline and "
        "none ran as a tenant; no good message dead-lettered"
    )
    return _check("every bad message was refused and dead-lettered", problems, summary)


def _session_tenants(obs: Observations) -> dict[str, str]:
    return {s.access_key: s.session_name for s in obs.sts_sessions}


def check_requests_isolated(obs: Observations) -> Check:
    problems = []
    tenant_of_key = _session_tenants(obs)
    for request in obs.requests:
        where = f"{request.operation} on {request.resource} ({request.function})"
        tenant = tenant_of_key.get(request.access_key)
        if tenant is None:
            problems.append(f"{where} signed by {request.access_key[:8]}..., not a tenant session")
            continue
        if request.scope_tenant != tenant:
            problems.append(f"{where} with {tenant}'s credentials in {request.scope_tenant}'s scope")
        others = sorted(set(request.tenant_refs) - {tenant})
        if others or not request.tenant_refs:
            problems.append(f"{where} with {tenant}'s credentials named {others or 'no tenant key'}")
    sessions = len({r.access_key for r in obs.requests})
    return _check(
        "no request crossed tenants (recorded requests vs STS sessions)",
        problems,
        f"{len(obs.requests)} requests to the pooled table and bucket, by {sessions} tenant sessions, "
        "each in its own tenant's scope and keys",
    )


def check_data_isolated(obs: Observations) -> Check:
    problems = []
    accepted = obs.accepted()
    for item in obs.table:
        tenant, kind = _key_tenant(item["pk"])
        if kind == "ITEM" and item["sk"] not in obs.initial_stock.get(tenant, {}):
            problems.append(f"item {item['sk']} under {tenant} was never created by {tenant}")
        elif kind not in ("ITEM", "ORDER"):
            problems.append(f"unexpected item {item['pk']}")
    stored = obs.stored_orders()
    for key, body in obs.objects.items():
        tenant = next(iter(tenants_named([key])), None)
        order_id = key.rsplit("/", 1)[-1].removesuffix(".json")
        order = accepted.get(order_id)
        if tenant is None or order is None or order.tenant != tenant or "/receipts/" not in key:
            problems.append(f"object {key} is not a receipt of an order of its tenant")
        elif (stored.get((tenant, order_id)) or {}).get("status") != "COMPLETED" or (body or {}).get(
            "order_id"
        ) != order_id:
            problems.append(f"receipt {key} is not of a completed order, or names another")
    message_tenants = {m: accepted[o].tenant for m, o in obs.good_messages.items() if o in accepted}
    message_tenants.update({m: b.tenant for m, b in obs.bad_messages.items()})
    for record in obs.replay_records:
        tenant = message_tenants.get(record.get("message_id"))
        if tenant is not None and record.get("tenant_id") != tenant:
            problems.append(
                f"replay record of {record.get('message_id')}: {record.get('tenant_id')} != {tenant}"
            )
    return _check(
        "every item and file is under the tenant that made it",
        problems,
        f"{len(obs.table)} items, {len(obs.objects)} receipts, {len(obs.replay_records)} replay records",
    )


def sts_bound(obs: Observations) -> int:
    """At most one session per tenant per credential lifetime in each container: tenants x the
    credential lifetimes each container lived (at least one), summed over the containers."""
    refresh = obs.session_seconds - obs.refresh_margin_seconds
    lifetimes = sum(max(1, math.ceil((c.end - c.start) / refresh)) for c in obs.containers)
    return len(obs.tenants) * lifetimes


def check_sts_sessions(obs: Observations) -> Check:
    problems = []
    mine = sorted((s.session_name, s.access_key) for s in obs.sts_sessions)
    if mine != sorted(obs.moto_sessions):
        problems.append(f"moto's STS served {len(obs.moto_sessions)} sessions, {len(mine)} were seen")
    refresh = obs.session_seconds - obs.refresh_margin_seconds
    last: dict[tuple[str, str], float] = {}
    for session in sorted(obs.sts_sessions, key=lambda s: s.at):
        name = session.session_name
        if name not in obs.tenants or session.source_identity != name or session.tags != {"TenantId": name}:
            problems.append(f"session {name}: source identity {session.source_identity}, tags {session.tags}")
        key = (name, session.container)
        if key in last and session.at - last[key] < refresh:
            problems.append(
                f"{name} was vended again in {session.container} {session.at - last[key]:.0f} s after its "
                f"last session (cached for {refresh} s)"
            )
        last[key] = session.at
    bound = sts_bound(obs)
    if len(obs.sts_sessions) > bound:
        problems.append(f"{len(obs.sts_sessions)} sessions, over the bound {bound}")
    return _check(
        "STS sessions within tenants x credential lifetimes",
        problems,
        f"{len(obs.sts_sessions)} sessions for {len(obs.tenants)} tenants, {len(obs.containers)} containers "
        f"one after another (bound {bound}); none renewed within {refresh} s in one; each names its tenant "
        "in its session name, source identity and tag",
    )


def check_retries_bounded(obs: Observations) -> Check:
    problems = []
    per_unit = Counter((a.invocation, a.tenant) for a in obs.sts_attempts)
    for (invocation, tenant), count in per_unit.items():
        if count > obs.vendor_attempts:
            problems.append(f"{count} AssumeRole attempts for {tenant} in invocation {invocation}")
    for name, run in obs.executions.items():
        for state, count in Counter(a.state for a in run.attempts).items():
            if count > obs.retry_limits.get(state, 1):
                problems.append(f"execution {name}: {state} invoked {count} times")
    for message_id, deliveries in obs.deliveries.items():
        first = [d for d in deliveries if not d.duplicate]
        if len(first) > obs.max_receives:
            problems.append(f"message {message_id} delivered {len(first)} times")
    for order in obs.orders:
        if len(order.attempts) > obs.client_attempts:
            problems.append(f"order #{order.index} placed {len(order.attempts)} times")
    sts = Counter(a.outcome for a in obs.sts_attempts)
    task_attempts = sum(len(r.attempts) for r in obs.executions.values())
    redeliveries = sum(max(0, len([d for d in ds if not d.duplicate]) - 1) for ds in obs.deliveries.values())
    client_retries = sum(len(o.attempts) - 1 for o in obs.orders if o.attempts)
    summary = (
        f"AssumeRole: {sum(sts.values())} attempts ({sts['served']} served, {sts['throttled']} throttled, "
        f"{sts['unreachable']} unreachable), <= {obs.vendor_attempts} per unit and tenant; "
        f"{task_attempts} task invocations; {redeliveries} redeliveries; {client_retries} client retries"
    )
    return _check("retries stayed bounded", problems, summary)


CHECKS: tuple[Callable[[Observations], Check], ...] = (
    check_orders_final,
    check_processed_once,
    check_none_stuck,
    check_bad_messages,
    check_requests_isolated,
    check_data_isolated,
    check_stock,
    check_sts_sessions,
    check_retries_bounded,
)


def run_checks(obs: Observations) -> list[Check]:
    return [check(obs) for check in CHECKS]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]
