"""`make soak`: the sample application's whole flow under load and injected faults.

Orders of many tenants go through the application as deployed (the resources of template.yaml
on the embedded local AWS, the real handlers, the layer): HTTP API -> order queue -> worker ->
state machine -> tasks. Meanwhile STS throttles and goes away, the key ring (KMS) and the
issuer's JWKS go away, bad messages are mixed into the queue, good ones are delivered twice,
handlers fail part way and a worker dies after starting an execution. At the end the promises
are checked from what was observed (devtools/soak_checks.py) and printed as a table, with the
throughput and the latency of each stage. docs/reliability.md describes the faults and the
guarantees.

How it runs: one thread, one simulated clock (devtools.asl.Scheduler). Every step (a client's
request, a poll of the queue, a state of an execution, a message becoming visible again, a fault
window opening) is an action at a simulated time, run in time order; a handler runs when its
action comes and takes no simulated time. So hours of traffic, visibility timeouts of minutes
and Retry waits of seconds take only as long as the handlers' own work, and one seed decides
everything drawn at random: run again with the same seed, orders and tenants, and every fault
falls where it fell (the application draws its ids from the system, so ids differ).

What is simulated rather than real, and why:
- the functions' containers: all functions run in this one process, so they share the layer's
  process state (settings, JWKS, key rings, clients and the credential cache, the layer's
  CredentialVendor on the simulated clock, its backoff a simulated sleep) as if they shared one
  container; a cold start forgets all of it;
- the expiry STS puts on the credentials it answers (moto dates them on the machine's clock), so
  that simulated hours renew sessions as real ones would;
- the queue's visibility: messages are received with a long visibility and made visible again
  when the simulated visibility timeout (the template's) ends; moto keeps the receive counts and
  moves a message to the dead-letter queue after maxReceiveCount, as SQS does;
- the state machine runs in devtools.asl (the template's definition, Retry and Catch included)
  instead of moto's interpreter, which sleeps for real on every Retry.

Faults reach the functions where AWS's own failures would, through botocore: an event handler
answers AssumeRole with a throttling error or raises a connection error, answers KMS with an
internal error, raises in a handler before one of its requests to the pooled table or bucket or
once that request was answered, or ends the worker's invocation after StartExecution returned.
Every request to the pooled table and bucket is recorded as it leaves botocore, with the access
key that signed it and the tenant scope it was made in.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import random
import secrets
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devtools.asl import Execution, Scheduler, StateMachineRunner, TaskCall, TaskOutcome, retry_limits
from devtools.cfn import ACCOUNT, REGION
from devtools.issuer import dev_issuer
from devtools.local_aws import LOCAL_PARAMETERS, LocalAws, local_aws
from devtools.soak_checks import (
    BAD_KINDS,
    BadMessage,
    Check,
    ContainerLife,
    Delivery,
    ExecutionRun,
    Observations,
    PlacedOrder,
    Request,
    StsAttempt,
    StsSession,
    TaskAttempt,
    UnitSpan,
    percentile,
    run_checks,
    tenants_named,
)

__all__ = ["SoakConfig", "SoakResult", "World", "main", "plan_windows", "report", "run_soak"]

WORKER = "OrderWorkerFunction"
API = "ApiFunction"
HOLD_SECONDS = 43_200  # received messages stay invisible until the simulation makes them visible
CLIENT_ATTEMPTS = 10  # a client places an order at most this many times (it retries 503s)
VENDOR_ATTEMPTS = 3  # AssumeRole calls the credential vendor makes for one unit of work
TRAFFIC_SECONDS = 6480.0  # orders arrive over 1 h 48 min; then everything settles
SETTLE_SECONDS = 6 * 3600.0
ITEMS = ("widget", "gadget")
LISTED = 5  # problems printed per failed check
FAULT_BUDGET = {"ReleaseInventory": 2}  # faulty attempts per visit: the compensation retries, others catch


@dataclass(frozen=True)
class SoakConfig:
    """A soak's size and its fault rates. The fault windows are drawn from the seed (plan_windows)."""

    seed: int
    orders: int = 2000
    tenants: int = 50
    payment_failure_rate: float = 0.03  # orders placed with a payment that will be declined
    bad_message_rate: float = 0.04  # bad messages per order (tampered, foreign-queue, expired, replayed)
    duplicate_rate: float = 0.03  # good messages SQS delivers a second time
    handler_fault_rate: float = 0.03  # worker records and task invocations whose handler fails part way
    worker_death_rate: float = 0.03  # worker invocations that die after StartExecution
    throttle_rate: float = 0.5  # AssumeRole calls throttled during a throttling burst


@dataclass(frozen=True)
class Window:
    """A fault window: ``kind`` from ``start`` (simulated seconds after the first order) for ``seconds``."""

    kind: str  # sts-throttling, sts-outage, key-ring-outage, jwks-outage
    start: float
    seconds: float
    cold_start: bool  # every function starts cold when it opens (a deployment)

    @property
    def end(self) -> float:
        return self.start + self.seconds

    @property
    def label(self) -> str:
        return f"{self.kind}{' (on new containers)' if self.cold_start else ''}"


def plan_windows(
    rng: random.Random, *, orders: int, renewal_seconds: float, visibility_timeout: float
) -> list[Window]:
    """The fault windows of a run, in simulated seconds after the first order:

    - a throttling burst as the traffic starts, on new containers: every tenant's first sessions;
    - a key ring outage: no message can be sealed or verified;
    - a JWKS outage on new containers: the API has no keys until the issuer is back;
    - an STS outage on new containers: no tenant has a session;
    - a throttling burst when the sessions vended right after that outage come due for renewal.

    Each window lasts long enough for about eight orders to arrive (at least its base length,
    which the default 2,000 orders fill many times), and less than the queue's visibility
    timeout: a message fails at most once in a window. Windows are more than two visibility
    timeouts apart, so no message meets two. With the random faults (on first deliveries only) a
    good message fails at most twice and never reaches the dead-letter queue (maxReceiveCount 3).
    """

    def seconds(base: float) -> float:
        return min(max(base, 8 * TRAFFIC_SECONDS / orders), 0.8 * visibility_timeout)

    key_ring = Window("key-ring-outage", rng.uniform(600, 1000), seconds(40), False)
    jwks = Window("jwks-outage", rng.uniform(1600, 2000), seconds(60), True)
    outage = Window("sts-outage", jwks.end + rng.uniform(450, 700), seconds(45), True)
    windows = [
        Window("sts-throttling", 0.0, seconds(60), True),
        key_ring,
        jwks,
        outage,
        Window("sts-throttling", outage.end + renewal_seconds - 10, seconds(120), False),
    ]
    for before, after in itertools.pairwise(windows):
        assert after.start - before.end > 2 * visibility_timeout, (before, after)
    assert windows[-1].end < TRAFFIC_SECONDS, windows[-1]
    return windows


@dataclass(frozen=True)
class Fault:
    """A handler that fails part way: at its ``call``-th request to the pooled table or bucket,
    before sending it (nothing written), or ``after`` it was answered (written, and the handler
    dies before it returns, as on a timeout)."""

    call: int
    after: bool

    @property
    def label(self) -> str:
        return f"{'after' if self.after else 'before'} request {self.call}"


class WorkerDied(BaseException):
    """The worker's invocation died (a timeout, out of memory) right after StartExecution returned.

    A BaseException, as the end of a process is: no handler catches it, nothing is deleted."""


class InjectedFault(Exception):
    """A handler's failure, injected at one of its requests to the pooled table or bucket."""


@dataclass
class Container:
    """The functions' warm container (this process): its credential cache, until a cold start."""

    number: int
    started_at: float
    vendor: Any  # tenantscope.CredentialVendor

    @property
    def name(self) -> str:
        return f"container {self.number}"


@dataclass
class Invocation:
    """The function invocation under way, and the faults planned for it."""

    number: int
    function: str
    container: str
    task_fault: Fault | None = None  # a task: its handler fails part way
    record_faults: dict[str, Fault] = field(default_factory=dict)  # the worker: by order id
    die_after: str | None = None  # the worker: the order whose StartExecution ends the invocation
    calls: Counter[str] = field(default_factory=Counter)  # requests to the pooled data, by order id


@dataclass
class OrderPlan:
    index: int
    tenant: str
    item: str
    quantity: int
    payment_fails: bool
    arrival: float  # simulated seconds after the traffic starts


@dataclass
class SoakResult:
    config: SoakConfig
    observations: Observations
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints (or floats), recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _strings(value: Any) -> Iterator[str]:
    """Every string value in a request's parameters (typed DynamoDB values included), but not
    its expressions, which name placeholders rather than keys."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if not (isinstance(key, str) and key.endswith("Expression")):
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _tables(params: dict[str, Any]) -> set[str]:
    """The tables a DynamoDB request names: TableName, a transaction's items, a batch's tables."""
    tables = {params["TableName"]} if isinstance(params.get("TableName"), str) else set()
    for entry in params.get("TransactItems") or []:
        tables |= {op.get("TableName") for op in entry.values() if isinstance(op, dict)}
    tables |= set(params.get("RequestItems") or {})
    return tables


def _error_response(status: int, code: str) -> tuple[Any, dict[str, Any]]:
    """What botocore makes of an AWS error answer: a before-call handler returns it instead of sending."""
    from botocore.awsrequest import AWSResponse

    body = {
        "Error": {"Code": code, "Message": f"{code} (injected)"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return AWSResponse("https://localhost", status, {}, None), body


class World:
    """The application on the local AWS, its clients, its queue's event source, its executions and
    the faults, all on one simulated clock."""

    def __init__(self, config: SoakConfig, aws: LocalAws, jwks_file: Path) -> None:
        import boto3

        from tenantscope import Settings
        from tenantscope.testing import RecordingTracer

        self.config = config
        self.aws = aws
        self.jwks_file = jwks_file
        self.sim = Scheduler(float(int(time.time())))
        self.begin = self.sim.now  # the shop opens (items stocked) here; the traffic starts a minute later
        self.traffic = self.begin + 60.0
        self.tracer = RecordingTracer()

        def rng(stream: str) -> random.Random:
            return random.Random(f"{config.seed}:{stream}")

        self.plan_rng, self.fault_rng, self.client_rng = rng("plan"), rng("faults"), rng("clients")
        # The layer's own jitter (STS retries) draws from the operating system; a replay draws it
        # from the seed instead (install() puts it in place, uninstall() takes it out).
        self.jitter_rng = rng("jitter")

        physical = aws.physical
        self.table_name = physical["AppTable"]["Ref"]
        self.bucket_name = physical["FilesBucket"]["Ref"]
        self.queue_url, self.queue_arn = physical["OrderQueue"]["Ref"], physical["OrderQueue"]["Arn"]
        self.dlq_url, self.dlq_arn = (
            physical["OrderDeadLetterQueue"]["Ref"],
            physical["OrderDeadLetterQueue"]["Arn"],
        )
        queue = aws.resolve(aws.template["Resources"]["OrderQueue"]["Properties"])
        self.visibility_timeout = int(queue["VisibilityTimeout"])
        self.max_receives = int(queue["RedrivePolicy"]["maxReceiveCount"])
        self.sqs = boto3.client("sqs", region_name=REGION)
        machine_arn = physical["OrderStateMachine"]["Arn"]
        sfn = boto3.client("stepfunctions", region_name=REGION)
        self.definition = json.loads(sfn.describe_state_machine(stateMachineArn=machine_arn)["definition"])
        self.runner = StateMachineRunner(
            self.definition,
            machine_arn,
            schedule=self.sim.after,
            now=self.sim.clock,
            rng=rng("retry-jitter"),
            invoke=self.invoke_task,
        )
        self.function_by_arn = {f.arn: f.logical_id for f in aws.functions.values()}

        settings = Settings.load()
        self.session_seconds = settings.session_seconds
        self.refresh_margin = settings.refresh_margin_seconds
        self.windows = plan_windows(
            self.plan_rng,
            orders=config.orders,
            renewal_seconds=self.session_seconds - self.refresh_margin,
            visibility_timeout=self.visibility_timeout,
        )

        self.tenants = [f"tenant-{i:02d}" for i in range(config.tenants)]
        issuer = dev_issuer()
        self.tokens = {t: issuer.token(t, subject=f"{t}-user", lifetime=86_400) for t in self.tenants}
        self.plans = self._plan_orders()
        self.initial_stock = self._plan_stock()

        # What the run observes.
        self.orders = [
            PlacedOrder(p.index, p.tenant, p.item, p.quantity, p.payment_fails) for p in self.plans
        ]
        self.deliveries: dict[str, list[Delivery]] = defaultdict(list)
        self.good_messages: dict[str, str] = {}  # message id -> order id
        self.bad_messages: dict[str, BadMessage] = {}
        self.executions: dict[str, Execution] = {}
        self.sts_attempts: list[StsAttempt] = []
        self.sts_sessions: list[StsSession] = []
        self.requests: list[Request] = []
        self.faults: Counter[str] = Counter()
        self.wall: dict[str, list[float]] = defaultdict(list)  # function -> seconds per invocation
        self.work: dict[str, dict[str, float]] = defaultdict(
            lambda: defaultdict(float)
        )  # stage -> order -> s
        self.api_work: dict[int, float] = defaultdict(float)  # order index -> API seconds so far

        # The functions' container, the event source mapping and the live state of the run.
        self.container: Container | None = None
        self.container_lives: list[ContainerLife] = []
        self.invocation: Invocation | None = None
        self.invocations = 0
        self.poll_due: float | None = None
        self.duplicates: list[tuple[float, dict[str, Any]]] = []
        self.completed: list[dict[str, Any]] = []  # good messages deleted after success, for replays
        self.completed_ids: set[str] = set()
        self.recording = True
        self._handlers: list[tuple[Any, ...]] = []

    # ------------------------------------------------------------------ the scenario

    def _plan_orders(self) -> list[OrderPlan]:
        rng, config = self.plan_rng, self.config
        weights = [1 / (i + 1) ** 0.8 for i in range(config.tenants)]  # a few busy tenants, many quiet ones
        arrivals = sorted(rng.uniform(0, TRAFFIC_SECONDS) for _ in range(config.orders))
        return [
            OrderPlan(
                index=i,
                tenant=rng.choices(self.tenants, weights)[0],
                item=rng.choices(ITEMS, (0.7, 0.3))[0],
                quantity=rng.randint(1, 3),
                payment_fails=rng.random() < config.payment_failure_rate,
                arrival=arrival,
            )
            for i, arrival in enumerate(arrivals)
        ]

    def _plan_stock(self) -> dict[str, dict[str, int]]:
        """Enough widgets for every order; gadgets for about four orders in five, so some fail for stock."""
        demand: Counter[tuple[str, str]] = Counter()
        for plan in self.plans:
            demand[(plan.tenant, plan.item)] += plan.quantity
        return {
            t: {"widget": demand[(t, "widget")] + 5, "gadget": int(demand[(t, "gadget")] * 0.8)}
            for t in self.tenants
        }

    # ------------------------------------------------------------------ botocore instruments

    def install(self) -> None:
        """Register the instruments on every botocore session made from now on (the layer's too),
        draw the layer's jitter from the seed, and run the replay guard's leases on the simulated
        clock, as the queue's visibility timeouts are (a redelivery comes minutes later on it)."""
        from botocore import handlers

        from tenantscope import _credentials, _replay

        self._layer_jitter, _credentials._JITTER = _credentials._JITTER, self.jitter_rng
        defaults = _replay.DynamoDbReplayGuard.__init__.__kwdefaults__
        self._guard_clock, defaults["clock"] = defaults["clock"], self.sim.clock
        self._handlers = [
            ("before-parameter-build.sts.AssumeRole", self._stash),
            ("before-call.sts.AssumeRole", self._sts_before),
            ("after-call.sts.AssumeRole", self._sts_after),
            ("before-call.kms", self._kms_before),
            ("before-parameter-build.dynamodb", self._data_call),
            ("before-parameter-build.s3", self._data_call),
            ("after-call.dynamodb", self._data_answered),
            ("after-call.s3", self._data_answered),
            ("before-parameter-build.sfn.StartExecution", self._stash),
            ("after-call.sfn.StartExecution", self._started),
            ("before-parameter-build.sqs.SendMessage", self._stash),
            ("after-call.sqs.SendMessage", self._sent),
            ("before-send", self._record, handlers.REGISTER_FIRST),
        ]
        handlers.BUILTIN_HANDLERS.extend(self._handlers)

    def uninstall(self) -> None:
        from botocore import handlers

        from tenantscope import _credentials, _replay

        for spec in self._handlers:
            with contextlib.suppress(ValueError):
                handlers.BUILTIN_HANDLERS.remove(spec)
        _credentials._JITTER = self._layer_jitter
        _replay.DynamoDbReplayGuard.__init__.__kwdefaults__["clock"] = self._guard_clock

    def window(self, kind: str | None = None) -> Window | None:
        """The window (of ``kind``) open now, if any."""
        offset = self.sim.now - self.traffic
        return next((w for w in self.windows if kind in (None, w.kind) and w.start <= offset < w.end), None)

    def _stash(self, params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["soak_params"] = dict(params)

    def _sts_before(self, context: dict[str, Any], **kwargs: Any) -> Any:
        tenant = context.get("soak_params", {}).get("RoleSessionName", "?")
        number = self.invocation.number if self.invocation else -1
        outage, throttling = self.window("sts-outage"), self.window("sts-throttling")
        if outage is not None:
            from botocore.exceptions import EndpointConnectionError

            self.sts_attempts.append(StsAttempt(self.sim.now, tenant, "unreachable", number))
            self.faults[f"{outage.label}: AssumeRole unreachable"] += 1
            raise EndpointConnectionError(endpoint_url="https://sts.amazonaws.com")
        if throttling is not None and self.fault_rng.random() < self.config.throttle_rate:
            self.sts_attempts.append(StsAttempt(self.sim.now, tenant, "throttled", number))
            self.faults[f"{throttling.label}: AssumeRole throttled"] += 1
            return _error_response(400, "Throttling")
        self.sts_attempts.append(StsAttempt(self.sim.now, tenant, "served", number))
        return None

    def _sts_after(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any
    ) -> None:
        if http_response.status_code != 200:
            return
        params = context.get("soak_params", {})
        duration = int(params.get("DurationSeconds", 3600))
        # moto dates the credentials on the machine's clock; they last as long on the simulated one.
        parsed["Credentials"]["Expiration"] = datetime.fromtimestamp(self.sim.now + duration, UTC)
        self.sts_sessions.append(
            StsSession(
                at=self.sim.now,
                session_name=params.get("RoleSessionName", ""),
                source_identity=params.get("SourceIdentity"),
                tags={t["Key"]: t["Value"] for t in params.get("Tags", [])},
                access_key=parsed["Credentials"]["AccessKeyId"],
                container=self.invocation.container if self.invocation else "",
            )
        )

    def _kms_before(self, model: Any, **kwargs: Any) -> Any:
        outage = self.window("key-ring-outage")
        if self.invocation is not None and outage is not None:
            self.faults[f"{outage.label}: KMS {model.name} failed"] += 1
            return _error_response(500, "KMSInternalException")
        return None

    def _pooled(self, params: dict[str, Any]) -> bool:
        return self.table_name in _tables(params) or params.get("Bucket") == self.bucket_name

    def _data_call(self, params: dict[str, Any], model: Any, context: dict[str, Any], **kwargs: Any) -> None:
        """Count a handler's requests to the pooled table and bucket; fail it before one when planned."""
        invocation = self.invocation
        if invocation is None or not self._pooled(params):
            return
        if invocation.function == WORKER:  # a record's requests name its order
            key = params.get("Key", {}).get("sk")
            order = key.get("S") if isinstance(key, dict) else key
            fault = invocation.record_faults.get(order)
        else:
            order, fault = "", invocation.task_fault
        invocation.calls[order] += 1
        if fault is None or fault.call != invocation.calls[order]:
            return
        if fault.after:
            context["soak_fault"] = order
        else:
            self._fail(invocation, order, fault)

    def _data_answered(self, http_response: Any, context: dict[str, Any], **kwargs: Any) -> None:
        invocation, order = self.invocation, context.get("soak_fault")
        if invocation is None or order is None or http_response.status_code >= 300:
            return  # a request that failed on its own fails the handler already
        fault = invocation.record_faults.get(order) if order else invocation.task_fault
        if fault is not None:
            self._fail(invocation, order, fault)

    def _fail(self, invocation: Invocation, order: str, fault: Fault) -> None:
        if order:
            del invocation.record_faults[order]
        else:
            invocation.task_fault = None
        self.faults[f"handler failures: {invocation.function}, {fault.label}"] += 1
        raise InjectedFault(f"injected in {invocation.function}, {fault.label}")

    def _started(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any
    ) -> None:
        if http_response.status_code != 200:
            return
        params = context.get("soak_params", {})
        name = params["name"]
        if name not in self.executions:  # StartExecution is idempotent for a running execution
            self.executions[name] = self.runner.start(name, params["input"])
        if self.invocation is not None and self.invocation.die_after == name:
            self.faults["worker deaths after StartExecution"] += 1
            raise WorkerDied(name)

    def _sent(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any
    ) -> None:
        if (
            http_response.status_code == 200
            and self.invocation is not None
            and self.invocation.function == API
        ):
            body = json.loads(context.get("soak_params", {}).get("MessageBody", "{}"))
            self.good_messages[parsed["MessageId"]] = body.get("order_id", "")
            self.wake(1.0)  # the event source's batching window

    def _record(self, request: Any, **kwargs: Any) -> None:
        if not self.recording:
            return
        authorization = request.headers.get("Authorization", b"")
        if isinstance(authorization, bytes):
            authorization = authorization.decode()
        credential = authorization.partition("Credential=")[2].split(",", 1)[0].split("/")
        if len(credential) < 4 or credential[3] not in ("dynamodb", "s3"):
            return
        access_key, service = credential[0], credential[3]
        if service == "dynamodb":
            target = request.headers.get("X-Amz-Target", b"")
            operation = (target.decode() if isinstance(target, bytes) else target).rpartition(".")[2]
            body = json.loads(request.body or b"{}")
            if self.table_name not in _tables(body):
                return
            resource = self.table_name
            refs = tenants_named(_strings(body))
        else:
            url = urlsplit(request.url)
            path = unquote(url.path)
            if url.hostname and url.hostname.startswith(f"{self.bucket_name}."):
                resource, key = self.bucket_name, path.lstrip("/")
            else:
                resource, _, key = path.lstrip("/").partition("/")
            if resource != self.bucket_name:
                return
            prefix = parse_qs(url.query).get("prefix", [""])[0]
            operation = f"{request.method} {'list' if 'list-type' in url.query else 'object'}"
            refs = tenants_named([key, prefix])
        from tenantscope import NoTenantContext, current_tenant

        try:
            scope_tenant: str | None = current_tenant().tenant_id
        except NoTenantContext:
            scope_tenant = None
        self.requests.append(
            Request(
                at=self.sim.now,
                operation=operation,
                resource=resource,
                access_key=access_key,
                scope_tenant=scope_tenant,
                function=self.invocation.function if self.invocation else None,
                tenant_refs=tuple(sorted(refs)),
            )
        )

    # ------------------------------------------------------------------ functions, as Lambda runs them

    def cold_start(self) -> None:
        """Every function's container replaced (a deployment): nothing cached survives."""
        from tenantscope import CredentialVendor, set_tracer
        from tenantscope._credentials import Boto3Sts, set_default_vendor
        from tenantscope.testing import reset_process_state

        reset_process_state()
        set_tracer(self.tracer)
        old = self.container
        if old is not None:
            self.container_lives.append(ContainerLife(old.name, old.started_at, self.sim.now))
        vendor = CredentialVendor(
            Boto3Sts(REGION), clock=self.sim.clock, sleep=self.sim.sleep, max_attempts=VENDOR_ATTEMPTS
        )
        self.container = Container(old.number + 1 if old else 1, self.sim.now, vendor)
        set_default_vendor(vendor)

    @contextlib.contextmanager
    def invoking(self, function: str, **faults: Any) -> Iterator[Invocation]:
        assert self.container is not None
        self.invocations += 1
        self.invocation = Invocation(self.invocations, function, self.container.name, **faults)
        started = time.perf_counter()
        try:
            yield self.invocation
        finally:
            self.wall[function].append(time.perf_counter() - started)
            self.invocation = None

    def http(self, method: str, path: str, tenant: str, body: Any) -> tuple[dict[str, Any], float]:
        """An API request; (the response, the invocation's wall time)."""
        with self.invoking(API):
            response: dict[str, Any] = self.aws.http(method, path, self.tokens[tenant], body)
        return response, self.wall[API][-1]

    def invoke_task(self, call: TaskCall) -> TaskOutcome:
        function = self.function_by_arn[call.function]
        fault = None
        if (
            call.attempt <= FAULT_BUDGET.get(call.state, 1)
            and self.fault_rng.random() < self.config.handler_fault_rate
        ):
            fault = Fault(self.fault_rng.randint(1, 2), self.fault_rng.random() < 0.5)
        with self.invoking(function, task_fault=fault):
            outcome = TaskOutcome.from_lambda(
                *self.aws.dispatch_lambda(call.function, json.dumps(call.payload))
            )
        self.work["state machine"][call.execution] += self.wall[function][-1]
        return outcome

    # ------------------------------------------------------------------ clients

    def place(self, plan: OrderPlan, attempt: int = 1) -> None:
        order = self.orders[plan.index]
        body = {
            "item_id": plan.item,
            "quantity": plan.quantity,
            "simulate_payment_failure": plan.payment_fails,
        }
        response, wall = self.http("POST", "/orders", plan.tenant, body)
        self.api_work[plan.index] += wall
        status = response["statusCode"]
        order.attempts.append((self.sim.now, status))
        if status == 202:
            order.order_id = json.loads(response["body"])["id"]
            self.work["api"][order.order_id] = self.api_work[plan.index]
            return
        if status == 503:
            window = self.window()
            self.faults[
                f"{window.label}: API answered 503" if window else "API answered 503 outside a window"
            ] += 1
            if attempt < CLIENT_ATTEMPTS:
                retry_after = float(response.get("headers", {}).get("Retry-After", "1"))
                delay = max(retry_after, min(60.0, 2.0**attempt) * self.client_rng.uniform(0.5, 1.0))
                self.sim.after(delay, lambda: self.place(plan, attempt + 1))

    # ------------------------------------------------------------------ the queue's event source

    def wake(self, delay: float) -> None:
        """Have the event source poll in ``delay`` seconds, unless it polls sooner anyway."""
        when = self.sim.now + delay
        if self.poll_due is None or when < self.poll_due:
            self.poll_due = when
            self.sim.at(when, self.poll)

    def poll(self) -> None:
        """One poll of the worker's event source: a batch of messages (and due duplicates), one invocation."""
        from tenantscope import TenantError

        if self.poll_due is None or self.sim.now < self.poll_due:
            return  # superseded by a sooner poll
        self.poll_due = None
        messages = self.aws.receive(WORKER, visibility_timeout=HOLD_SECONDS)
        room = self.aws.functions[WORKER].batch_size - len(messages)
        due = [m for when, m in self.duplicates if when <= self.sim.now][: max(0, room)]
        self.duplicates = [(w, m) for w, m in self.duplicates if not any(m is d for d in due)]
        if not messages and not due:
            return
        batch = messages + due
        duplicate_ids = {id(m) for m in due}
        first = [m for m in messages if m["Attributes"].get("ApproximateReceiveCount") == "1"]
        good_first = [m for m in first if m["MessageId"] in self.good_messages]
        record_faults = {
            self.good_messages[m["MessageId"]]: Fault(
                self.fault_rng.randint(1, 2), self.fault_rng.random() < 0.5
            )
            for m in good_first
            if self.fault_rng.random() < self.config.handler_fault_rate
        }
        die_after = None
        if (
            good_first
            and len(first) == len(messages)
            and self.fault_rng.random() < self.config.worker_death_rate
        ):
            die_after = self.good_messages[good_first[0]["MessageId"]]
        event = self.aws.sqs_event_for(WORKER, batch)
        died = False
        with self.invoking(WORKER, record_faults=record_faults, die_after=die_after):
            try:
                response = self.aws.invoke(WORKER, event) or {}
            except WorkerDied:
                died, response = True, {}
            except TenantError:  # an outage met by every record: the invocation fails as a whole
                response = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in batch]}
        wall = self.wall[WORKER][-1]
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        for message in batch:
            message_id = message["MessageId"]
            if message_id in self.good_messages:
                self.work["queue"][self.good_messages[message_id]] += wall
            duplicate = id(message) in duplicate_ids
            outcome = "died" if died else "failed" if message_id in failed else "ok"
            self.deliveries[message_id].append(Delivery(self.sim.now, outcome, duplicate))
            if duplicate:
                continue
            if outcome != "ok":
                handle = message["ReceiptHandle"]
                self.sim.after(self.visibility_timeout, lambda handle=handle: self.make_visible(handle))
                continue
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            if message_id in self.good_messages and message_id not in self.completed_ids:
                self.completed.append(message)
                self.completed_ids.add(message_id)
                if self.fault_rng.random() < self.config.duplicate_rate:
                    when = self.sim.now + self.fault_rng.uniform(5, 300)
                    self.duplicates.append((when, message))
                    self.faults["duplicate deliveries"] += 1
                    self.sim.at(when, lambda: self.wake(0.0))
        self.wake(0.01)  # keep polling while there are messages

    def make_visible(self, receipt_handle: str) -> None:
        """The visibility timeout has passed: the message can be received again."""
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0
        )
        time.sleep(0.002)  # moto compares visibility in milliseconds of the machine's clock
        self.wake(0.0)

    # ------------------------------------------------------------------ bad messages

    def send_bad(self, kind: str) -> None:
        """A bad message in the queue, as a buggy or hostile producer would send one."""
        from tenantscope import KmsKeyRing
        from tenantscope.testing import sign_attributes

        accepted = [o for o in self.orders if o.order_id is not None]
        if not (self.completed if kind == "replayed" else accepted):
            self.sim.after(60, lambda: self.send_bad(kind))
            return
        if kind == "replayed":  # a processed message, sent again with its envelope
            message = self.fault_rng.choice(self.completed)
            body = message["Body"]
            attributes = message["MessageAttributes"]
            tenant = attributes["tenantscope-tenant"]["StringValue"]
        else:
            order = self.fault_rng.choice(accepted)
            tenant = order.tenant
            body = json.dumps({"order_id": order.order_id})
            ring = KmsKeyRing((self.aws.physical["SigningKey"]["Arn"],), region=REGION)
            if kind == "tampered":  # sealed for this tenant's order, then pointed at another's
                other = self.fault_rng.choice(accepted)
                attributes = sign_attributes(body, tenant_id=tenant, queue_arn=self.queue_arn, ring=ring)
                body = json.dumps({"order_id": other.order_id})
            elif kind == "foreign-queue":  # sealed for the dead-letter queue, sent to the order queue
                attributes = sign_attributes(body, tenant_id=tenant, queue_arn=self.dlq_arn, ring=ring)
            else:  # expired: sealed two days ago (messages live one)
                issued = int(time.time()) - 2 * 86_400
                attributes = sign_attributes(
                    body, tenant_id=tenant, queue_arn=self.queue_arn, ring=ring, issued_at=issued
                )
        sent = self.sqs.send_message(
            QueueUrl=self.queue_url, MessageBody=body, MessageAttributes=attributes, MessageGroupId=tenant
        )
        self.bad_messages[sent["MessageId"]] = BadMessage(sent["MessageId"], kind, tenant)
        self.faults[f"bad messages: {kind}"] += 1
        self.wake(1.0)

    # ------------------------------------------------------------------ the run

    def fault_window(self, window: Window, opening: bool) -> None:
        if opening and window.cold_start:
            self.cold_start()
        if window.kind == "jwks-outage":
            down = self.jwks_file.with_suffix(".down")
            if opening:
                self.jwks_file.rename(down)
            else:
                down.rename(self.jwks_file)
                # The layer retries a JWKS that never loaded once a second of the machine's clock,
                # which barely moves here: the API's next request after the issuer is back loads it.
                from tenantscope import Settings
                from tenantscope._jwt import jwks_cache_for

                jwks_cache_for(Settings.load()).preload()

    def run(self) -> None:
        self.cold_start()
        for tenant in self.tenants:
            for item, stock in self.initial_stock[tenant].items():
                response, _ = self.http("PUT", f"/items/{item}", tenant, {"name": item, "stock": stock})
                assert response["statusCode"] == 200, response
        for window in self.windows:
            self.sim.at(self.traffic + window.start, lambda w=window: self.fault_window(w, True))
            self.sim.at(self.traffic + window.end, lambda w=window: self.fault_window(w, False))
        for plan in self.plans:
            self.sim.at(self.traffic + plan.arrival, lambda p=plan: self.place(p))
        count = max(len(BAD_KINDS), round(self.config.orders * self.config.bad_message_rate))
        for kind in itertools.islice(itertools.cycle(BAD_KINDS), count):
            when = self.traffic + self.plan_rng.uniform(60, TRAFFIC_SECONDS)
            self.sim.at(when, lambda kind=kind: self.send_bad(kind))
        # Every order placed and settled: the last arrival, its retries and its redeliveries.
        self.sim.run(until=self.traffic + TRAFFIC_SECONDS + SETTLE_SECONDS)

    # ------------------------------------------------------------------ what is left

    def observe(self, wall_seconds: float) -> Observations:
        import boto3
        from moto.sts.models import sts_backends

        self.recording = False
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)

        def scan(table_name: str) -> list[dict[str, Any]]:
            table, items, start = dynamodb.Table(table_name), [], {}
            while True:
                page = table.scan(**start)
                items += [_plain(i) for i in page["Items"]]
                if "LastEvaluatedKey" not in page:
                    return items
                start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

        objects: dict[str, Any] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket_name):
            for entry in page.get("Contents", []):
                body = s3.get_object(Bucket=self.bucket_name, Key=entry["Key"])["Body"].read()
                try:
                    objects[entry["Key"]] = json.loads(body)
                except ValueError:
                    objects[entry["Key"]] = None
        dead: list[str] = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=HOLD_SECONDS
        ).get("Messages", []):
            dead += [m["MessageId"] for m in batch]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"])[
            "Attributes"
        ]
        left = sum(
            int(attributes.get(name, 0))
            for name in (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            )
        )
        machine = self.aws.physical["OrderStateMachine"]["Arn"]
        started = [
            e["name"]
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
            for e in page["executions"]
        ]
        served = sts_backends[ACCOUNT]["global"].assumed_roles
        spans = [
            UnitSpan(
                tenant=str(s.annotations["tenant_id"]) if "tenant_id" in s.annotations else None,
                message_id=str(s.annotations.get("message_id") or "") or None,
            )
            for s in self.tracer.spans
        ]
        assert self.container is not None
        lives = [
            *self.container_lives,
            ContainerLife(self.container.name, self.container.started_at, self.sim.now),
        ]
        return Observations(
            tenants=self.tenants,
            span=(self.begin, self.sim.now),
            initial_stock=self.initial_stock,
            orders=self.orders,
            deliveries=dict(self.deliveries),
            good_messages=self.good_messages,
            bad_messages=self.bad_messages,
            dead_letters=dead,
            queue_left=left,
            executions={name: self._run_of(e) for name, e in self.executions.items()},
            moto_executions=started,
            table=scan(self.table_name),
            objects=objects,
            replay_records=scan(self.aws.physical["ReplayTable"]["Ref"]),
            sts_attempts=self.sts_attempts,
            sts_sessions=self.sts_sessions,
            moto_sessions=[(r.session_name, r.access_key_id) for r in served],
            requests=self.requests,
            spans=spans,
            containers=lives,
            session_seconds=self.session_seconds,
            refresh_margin_seconds=self.refresh_margin,
            vendor_attempts=VENDOR_ATTEMPTS,
            max_receives=self.max_receives,
            client_attempts=CLIENT_ATTEMPTS,
            retry_limits=retry_limits(self.definition),
            faults=dict(self.faults),
            windows=[(w.label, w.start, w.seconds) for w in self.windows],
            wall_seconds=wall_seconds,
            wall={k: list(v) for k, v in self.wall.items()},
            work={stage: dict(orders) for stage, orders in self.work.items()},
        )

    def _run_of(self, execution: Execution) -> ExecutionRun:
        envelope = execution.input.get("tenantscope") if isinstance(execution.input, dict) else None
        return ExecutionRun(
            name=execution.name,
            tenant=envelope.get("tenant") if isinstance(envelope, dict) else None,
            status=execution.status,
            error=execution.error,
            started_at=execution.started_at,
            ended_at=execution.ended_at,
            visited=execution.visited(),
            attempts=[
                TaskAttempt(
                    e.state,
                    e.attempt,
                    e.at,
                    e.error,
                    (e.output or {}).get("results", {}) if isinstance(e.output, dict) else {},
                )
                for e in execution.events
                if e.kind == "attempt"
            ],
            caught=[e.error or "" for e in execution.events if e.kind == "caught"],
        )


def run_soak(config: SoakConfig, *, tamper: Callable[[World], None] | None = None) -> SoakResult:
    """Run the soak; ``tamper`` acts on the world after the flow has settled, before it is observed
    (a test makes real violations with it, to see the checks catch them)."""
    from tenantscope import set_tracer
    from tenantscope._credentials import set_default_vendor
    from tenantscope.testing import reset_process_state

    quiet = {name: logging.getLogger(name).level for name in ("tenantscope", "moto", "botocore", "app")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    directory = Path(tempfile.mkdtemp(prefix="tenantscope-soak-"))
    jwks_file = directory / "jwks.json"
    jwks_file.write_text(json.dumps(dev_issuer().jwks()))
    try:
        with local_aws(
            LOCAL_PARAMETERS,
            environment={"TENANTSCOPE_JWKS_URL": jwks_file.as_uri()},
            execute_state_machines=False,
        ) as aws:
            world = World(config, aws, jwks_file)
            world.install()
            try:
                started = time.perf_counter()
                world.run()
                wall = time.perf_counter() - started
                if tamper is not None:
                    tamper(world)
                observations = world.observe(wall)
            finally:
                world.uninstall()
                set_default_vendor(None)
                set_tracer(None)
                reset_process_state()
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    return SoakResult(config, observations, run_checks(observations))


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


STAGES = {
    "API: first attempt -> 202": "api",
    "queue: 202 -> execution started": "queue",
    "state machine: start -> end": "state machine",
}


def stage_latencies(obs: Observations) -> dict[str, list[float]]:
    """Each accepted order's time in each stage: the simulated waits (client backoff, the batching
    window, visibility timeouts, Retry intervals) plus the handlers' measured time in it."""
    stages: dict[str, list[float]] = {stage: [] for stage in [*STAGES, "end to end"]}
    for order_id, order in obs.accepted().items():
        run = obs.executions.get(order_id)
        if run is None or run.ended_at is None:
            continue
        first, accepted = order.attempts[0][0], order.attempts[-1][0]
        waits = {
            "api": accepted - first,
            "queue": run.started_at - accepted,
            "state machine": run.ended_at - run.started_at,
        }
        total = 0.0
        for stage, key in STAGES.items():
            seconds = waits[key] + obs.work.get(key, {}).get(order_id, 0.0)
            stages[stage].append(seconds)
            total += seconds
        stages["end to end"].append(total)
    return stages


def report(result: SoakResult) -> str:
    """The run's faults, checks and figures, as tables."""
    obs, config = result.observations, result.config
    replay = f"make soak SEED={config.seed} ORDERS={config.orders} TENANTS={config.tenants}"
    lines = [
        f"tenantscope soak: seed {config.seed}, {config.orders} orders over {config.tenants} tenants, "
        f"{TRAFFIC_SECONDS / 3600:.1f} simulated hours of traffic",
        f"replay: {replay}",
        "",
        f"  {'Fault windows (simulated time after the first order)':<62} {'at':>10} {'for':>7}",
    ]
    for label, start, seconds in obs.windows:
        lines.append(f"  {label:<62} {f'+{start / 60:.1f} min':>10} {seconds:>5.0f} s")
    lines += ["", f"  {'Faults injected':<62} {'count':>10}"]
    for name, count in sorted(obs.faults.items()):
        lines.append(f"  {name:<62} {count:>10}")
    lines += ["", "Checks"]
    for check in result.checks:
        lines.append(f"  [{'ok  ' if check.ok else 'FAIL'}] {check.name}")
        lines.append(f"         {check.summary}")
        lines += [f"         - {problem}" for problem in check.problems[:LISTED]]
        if len(check.problems) > LISTED:
            lines.append(f"         ... and {len(check.problems) - LISTED} more")
    accepted = obs.accepted()
    units = sum(len(v) for v in obs.wall.values())
    lines += [
        "",
        f"Throughput: {len(accepted)} orders in {obs.wall_seconds:.1f} s of wall time = "
        f"{len(accepted) / obs.wall_seconds:.1f} orders/s ({units / obs.wall_seconds:.0f} invocations/s; "
        "one process, moto in-process)",
        "",
        f"  {'Latency per stage (simulated waits + handler time)':<50} {'p50':>9} {'p99':>9} {'max':>9}",
    ]
    for stage, values in stage_latencies(obs).items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        worst = _seconds(max(values or [math.nan]))
        lines.append(f"  {stage:<50} {_seconds(p50):>9} {_seconds(p99):>9} {worst:>9}")
    lines += ["", f"  {'Wall time per invocation':<50} {'count':>9} {'p50':>9} {'p99':>9}"]
    for function, values in sorted(obs.wall.items()):
        p50, p99 = percentile(values, 50), percentile(values, 99)
        lines.append(f"  {function:<50} {len(values):>9} {_seconds(p50):>9} {_seconds(p99):>9}")
    passed = sum(c.ok for c in result.checks)
    lines += [
        "",
        f"soak: all {passed} checks passed"
        if result.ok
        else f"soak: {len(result.checks) - passed} of {len(result.checks)} checks FAILED (replay: {replay})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: a new random seed)")
    parser.add_argument("--orders", type=int, default=SoakConfig.orders)
    parser.add_argument("--tenants", type=int, default=SoakConfig.tenants)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    config = SoakConfig(seed=seed, orders=args.orders, tenants=args.tenants)
    print(f"soak: seed {seed}, {config.orders} orders over {config.tenants} tenants ...", flush=True)
    started = time.perf_counter()
    result = run_soak(config)
    print(report(result))
    print(f"(wall time {time.perf_counter() - started:.0f} s, setup and checks included)")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
