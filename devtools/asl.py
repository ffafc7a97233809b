"""A Step Functions interpreter on a simulated clock, for the subset of the Amazon States Language
the order state machine uses; anything else in a definition is refused, not guessed.

moto executes state machines for real, but on background threads and with real sleeps for every
Retry interval: a soak of thousands of executions, with retries of seconds to minutes, could be
neither fast nor replayable. This interpreter runs each state when a scheduler says its time has
come, draws the Retry jitter from a seeded random generator, and calls the Lambda functions
through the caller's ``invoke`` (a :class:`TaskCall`). What it models, as the States Language specifies it:

- ``Task`` states on ``arn:aws:states:::lambda:invoke``: ``Parameters`` (paths ending in ``.$``,
  on the state's input or the context object ``$$``), the integration's result
  (``{"ExecutedVersion", "Payload", "StatusCode"}``), ``ResultSelector``, ``ResultPath`` and
  ``Next`` or ``End``. A function that raised fails the task with its ``errorType`` as the error
  name and its payload as the cause, as Step Functions reports a Lambda function error.
- ``Retry``: the first retrier whose ``ErrorEquals`` names the error (or ``States.ALL``) decides;
  each retrier counts its own attempts within one visit of the state; the wait before retry n
  (from 0) is ``IntervalSeconds * BackoffRate ** n``, capped at ``MaxDelaySeconds``, and with
  ``JitterStrategy`` ``FULL`` a uniform draw between 0 and that. An exhausted retrier hands the
  error to ``Catch``.
- ``Catch``: the first catcher whose ``ErrorEquals`` names the error; ``ResultPath`` places
  ``{"Error", "Cause"}`` in the state's input; execution goes on at ``Next``. Uncaught, the
  execution fails with the error.
- ``Succeed`` and ``Fail`` (``Error``, ``Cause``).
- ``States.ALL`` matches every error but ``States.Runtime`` (a path the input does not have),
  which fails the execution at once.

State inputs and outputs go through JSON between states, as Step Functions re-serializes them.
:class:`Scheduler` is the simulated clock that drives it (and the rest of ``make soak``).
tests/unit/test_asl.py holds it to the States Language's rules; tests/e2e/test_asl_vs_moto.py
runs the order state machine with the real tasks here and in moto's interpreter and compares the
states each execution visited.
"""

from __future__ import annotations

import heapq
import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Execution",
    "Scheduler",
    "StateEvent",
    "StateMachineRunner",
    "TaskCall",
    "TaskOutcome",
    "retry_limits",
]

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
_PATH = re.compile(r"\$\$?(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_STATE_FIELDS = {
    "Task": {"Type", "Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch", "Next",
             "End", "Comment"},
    "Succeed": {"Type", "Comment"},
    "Fail": {"Type", "Error", "Cause", "Comment"},
}  # fmt: skip
_RETRIER_FIELDS = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds",
                   "JitterStrategy", "Comment"}  # fmt: skip
_CATCHER_FIELDS = {"ErrorEquals", "ResultPath", "Next", "Comment"}
RUNTIME_ERROR = "States.Runtime"


class Scheduler:
    """Actions on a simulated clock, run one at a time in time order (first scheduled first on a tie)."""

    def __init__(self, start: float) -> None:
        self.now = start
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = 0

    def after(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (self.now + max(0.0, delay), self._sequence, action))
        self._sequence += 1

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.after(when - self.now, action)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Time passing inside an action (a backoff between retries in a handler)."""
        self.now += max(0.0, seconds)

    def run(self, until: float) -> None:
        """Run every action due by ``until`` (and those they schedule by then)."""
        while self._events and self._events[0][0] <= until:
            when, _, action = heapq.heappop(self._events)
            self.now = max(self.now, when)
            action()


class _RuntimeError(Exception):
    """States.Runtime: the definition asked for what the document does not have."""


@dataclass(frozen=True)
class TaskCall:
    """One Lambda invocation a task state makes: ``attempt`` counts from 1 within the state's visit."""

    execution: str
    state: str
    attempt: int
    function: str
    payload: Any


@dataclass(frozen=True)
class TaskOutcome:
    """What one Lambda invocation of a task answered: its output, or an error name and cause."""

    output: Any = None
    error: str | None = None
    cause: str = ""

    @classmethod
    def from_lambda(cls, payload: bytes, failed: bool) -> TaskOutcome:
        """What Step Functions makes of a Lambda response: a function error's ``errorType`` is the error."""
        answer = json.loads(payload)
        if failed:
            return cls(error=answer.get("errorType", "Lambda.Unknown"), cause=json.dumps(answer))
        return cls(output=answer)


@dataclass(frozen=True)
class StateEvent:
    """One step of an execution, at simulated time ``at``.

    ``kind`` is ``entered``, ``attempt`` (a task invocation: ``attempt`` counts from 1 within the
    visit, ``error`` is its error or None), ``retry`` (``delay`` seconds later), ``caught``,
    ``succeeded`` or ``failed`` (the execution's end).
    """

    at: float
    state: str
    kind: str
    attempt: int = 0
    error: str | None = None
    delay: float = 0.0
    output: Any = None


@dataclass
class Execution:
    name: str
    arn: str
    input: Any
    started_at: float
    status: str = "RUNNING"
    error: str | None = None
    cause: str | None = None
    output: Any = None
    ended_at: float | None = None
    events: list[StateEvent] = field(default_factory=list)

    def visited(self) -> list[str]:
        """The states entered, in order."""
        return [e.state for e in self.events if e.kind == "entered"]

    def attempts(self, state: str) -> list[StateEvent]:
        return [e for e in self.events if e.kind == "attempt" and e.state == state]


def _check_definition(definition: Mapping[str, Any]) -> None:
    unknown = set(definition) - {"Comment", "StartAt", "States"}
    if unknown:
        raise NotImplementedError(f"state machine fields not modelled: {sorted(unknown)}")
    for name, state in definition["States"].items():
        kind = state.get("Type")
        if kind not in _STATE_FIELDS:
            raise NotImplementedError(f"{name}: state type {kind} not modelled")
        extra = set(state) - _STATE_FIELDS[kind]
        if extra:
            raise NotImplementedError(f"{name}: fields not modelled: {sorted(extra)}")
        if kind == "Task":
            if state["Resource"] != LAMBDA_INVOKE:
                raise NotImplementedError(f"{name}: only {LAMBDA_INVOKE} tasks are modelled")
            if ("Next" in state) == bool(state.get("End")):
                raise ValueError(f"{name}: a task needs exactly one of Next and End")
            for retrier in state.get("Retry", []):
                if set(retrier) - _RETRIER_FIELDS:
                    raise NotImplementedError(
                        f"{name}: retrier fields {sorted(set(retrier) - _RETRIER_FIELDS)}"
                    )
                if retrier.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
                    raise ValueError(f"{name}: JitterStrategy {retrier['JitterStrategy']}")
            for catcher in state.get("Catch", []):
                if set(catcher) - _CATCHER_FIELDS:
                    raise NotImplementedError(
                        f"{name}: catcher fields {sorted(set(catcher) - _CATCHER_FIELDS)}"
                    )


def retry_limits(definition: Mapping[str, Any]) -> dict[str, int]:
    """The most invocations one visit of each task state can make: 1 + its retriers' MaxAttempts."""
    return {
        name: 1 + sum(int(r.get("MaxAttempts", 3)) for r in state.get("Retry", []))
        for name, state in definition["States"].items()
        if state["Type"] == "Task"
    }


def _matches(names: list[str], error: str) -> bool:
    return error in names or ("States.ALL" in names and error != RUNTIME_ERROR)


def _get(document: Any, path: str) -> Any:
    if _PATH.fullmatch(path) is None:
        raise NotImplementedError(f"path {path!r} is not modelled (only $ and $.a.b)")
    value = document
    for part in path.lstrip("$").split(".")[1:]:
        if not isinstance(value, Mapping) or part not in value:
            raise _RuntimeError(f"the path {path!r} does not exist in the document")
        value = value[part]
    return value


def _set(document: Any, path: str | None, value: Any) -> Any:
    """``document`` with ``value`` at ``path`` (ResultPath): ``$`` replaces it, None discards ``value``."""
    if path is None:
        return document
    if path == "$":
        return value
    if _PATH.fullmatch(path) is None or path.startswith("$$"):
        raise NotImplementedError(f"ResultPath {path!r} is not modelled")
    if not isinstance(document, dict):
        raise _RuntimeError(f"cannot set {path!r} in a non-object input")
    result = json.loads(json.dumps(document))
    target = result
    parts = path.split(".")[1:]
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise _RuntimeError(f"cannot set {path!r}: {part} is not an object")
    target[parts[-1]] = value
    return result


def _render(template: Any, document: Any, context: Any) -> Any:
    """A Parameters or ResultSelector template with every ``"key.$": path`` resolved."""
    if isinstance(template, dict):
        rendered = {}
        for key, value in template.items():
            if key.endswith(".$"):
                if not isinstance(value, str) or not value.startswith("$"):
                    raise NotImplementedError(f"{key}: intrinsic functions are not modelled")
                rendered[key[:-2]] = (
                    _get(context, value[1:]) if value.startswith("$$") else _get(document, value)
                )
            else:
                rendered[key] = _render(value, document, context)
        return rendered
    if isinstance(template, list):
        return [_render(item, document, context) for item in template]
    return template


class StateMachineRunner:
    """Runs executions of one definition; each step is scheduled with ``schedule(delay, action)``."""

    def __init__(
        self,
        definition: Mapping[str, Any],
        arn: str,
        *,
        schedule: Callable[[float, Callable[[], None]], None],
        now: Callable[[], float],
        rng: random.Random,
        invoke: Callable[[TaskCall], TaskOutcome],
    ) -> None:
        _check_definition(definition)
        self.definition = definition
        self.arn = arn
        self._schedule = schedule
        self._now = now
        self._rng = rng
        self._invoke = invoke

    def start(
        self, name: str, input_document: str, on_end: Callable[[Execution], None] | None = None
    ) -> Execution:
        """Start an execution now; ``on_end`` is called when it succeeds or fails."""
        arn = f"{self.arn.replace(':stateMachine:', ':execution:')}:{name}"
        execution = Execution(name, arn, json.loads(input_document), self._now())
        self._schedule(
            0.0, lambda: self._enter(execution, self.definition["StartAt"], execution.input, on_end)
        )
        return execution

    def _context(self, execution: Execution, state: str, retry_count: int) -> dict[str, Any]:
        return {
            "Execution": {"Id": execution.arn, "Name": execution.name, "Input": execution.input},
            "StateMachine": {"Id": self.arn, "Name": self.arn.rsplit(":", 1)[-1]},
            "State": {"Name": state, "RetryCount": retry_count},
            "Task": {},
        }

    def _event(self, execution: Execution, state: str, kind: str, **details: Any) -> None:
        execution.events.append(StateEvent(self._now(), state, kind, **details))

    def _end(
        self,
        execution: Execution,
        state: str,
        on_end: Callable[[Execution], None] | None,
        *,
        output: Any = None,
        error: str | None = None,
        cause: str | None = None,
    ) -> None:
        execution.status = "FAILED" if error else "SUCCEEDED"
        execution.output, execution.error, execution.cause = output, error, cause
        execution.ended_at = self._now()
        self._event(execution, state, "failed" if error else "succeeded", error=error)
        if on_end is not None:
            on_end(execution)

    def _enter(
        self, execution: Execution, name: str, state_input: Any, on_end: Callable[[Execution], None] | None
    ) -> None:
        state = self.definition["States"][name]
        state_input = json.loads(json.dumps(state_input))  # as Step Functions passes it on
        self._event(execution, name, "entered")
        if state["Type"] == "Succeed":
            self._end(execution, name, on_end, output=state_input)
        elif state["Type"] == "Fail":
            self._end(
                execution, name, on_end, error=state.get("Error", "States.Fail"), cause=state.get("Cause")
            )
        else:
            self._attempt(execution, name, state_input, {}, on_end)

    def _attempt(
        self,
        execution: Execution,
        name: str,
        state_input: Any,
        retried: dict[int, int],
        on_end: Callable[[Execution], None] | None,
    ) -> None:
        state = self.definition["States"][name]
        attempt = 1 + sum(retried.values())
        try:
            parameters = _render(
                state.get("Parameters", {}), state_input, self._context(execution, name, attempt - 1)
            )
            outcome = self._invoke(
                TaskCall(execution.name, name, attempt, parameters["FunctionName"], parameters.get("Payload"))
            )
            if outcome.error is None:
                result = {"ExecutedVersion": "$LATEST", "Payload": outcome.output, "StatusCode": 200}
                if "ResultSelector" in state:
                    result = _render(
                        state["ResultSelector"], result, self._context(execution, name, attempt - 1)
                    )
                output = _set(state_input, state.get("ResultPath", "$"), json.loads(json.dumps(result)))
        except _RuntimeError as error:
            self._event(execution, name, "attempt", attempt=attempt, error=RUNTIME_ERROR)
            self._end(execution, name, on_end, error=RUNTIME_ERROR, cause=str(error))
            return
        self._event(execution, name, "attempt", attempt=attempt, error=outcome.error, output=outcome.output)
        if outcome.error is None:
            if state.get("End"):
                self._end(execution, name, on_end, output=output)
            else:
                next_state = state["Next"]
                self._schedule(0.0, lambda: self._enter(execution, next_state, output, on_end))
            return
        error, cause = outcome.error, outcome.cause
        for index, retrier in enumerate(state.get("Retry", [])):
            if not _matches(retrier["ErrorEquals"], error):
                continue
            count = retried.get(index, 0)
            if count < int(retrier.get("MaxAttempts", 3)):
                interval = (
                    float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** count
                )
                interval = min(interval, float(retrier.get("MaxDelaySeconds", interval)))
                delay = (
                    self._rng.uniform(0, interval) if retrier.get("JitterStrategy") == "FULL" else interval
                )
                self._event(execution, name, "retry", attempt=attempt, error=error, delay=delay)
                again = {**retried, index: count + 1}
                self._schedule(
                    delay, lambda again=again: self._attempt(execution, name, state_input, again, on_end)
                )
                return
            break  # the first matching retrier decides; exhausted, the error goes to Catch
        for catcher in state.get("Catch", []):
            if _matches(catcher["ErrorEquals"], error):
                self._event(execution, name, "caught", error=error)
                caught = _set(state_input, catcher.get("ResultPath", "$"), {"Error": error, "Cause": cause})
                next_state = catcher["Next"]
                self._schedule(
                    0.0, lambda state=next_state, caught=caught: self._enter(execution, state, caught, on_end)
                )
                return
        self._end(execution, name, on_end, error=error, cause=cause)
