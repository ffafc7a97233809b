"""One pipeline for every unit of work: resolve the tenant, vend credentials, scope, run, classify.

An API invocation, an SQS record and a Step Functions task all go through :meth:`Pipeline.run`,
which returns an :data:`Outcome`; each adapter only maps the outcome to its trigger's answer (an
HTTP status, a batch item failure, a Step Functions error). Adding a trigger is a resolver and
a small mapper: see "Adding a trigger" in docs/architecture.md.

A :class:`Pipeline` also holds what a decorated handler needs (settings, the credential vendor,
the issuer's keys, the signing key ring, the replay guard, the tracer), built on first use, not
at import, so that tests and ``sam local invoke`` can set the environment first.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._cache import ProcessValue, reset_process_state
from ._config import ENV, Settings, get_settings
from ._context import TenantContext, _exit_scope, _open_scope
from ._credentials import CredentialVendor, default_vendor
from ._errors import (
    ConfigurationError,
    LoggableError,
    TemporarilyUnavailable,
    TenantAuthError,
    TenantError,
    log_reason,
    without_message,
)
from ._logging import install_log_filter
from ._metrics import with_metrics
from ._tracing import NOOP_SPAN, AnnotationValue, Span, Tracer, get_tracer

# Each trigger's proof is read by its own modules, imported when a pipeline first needs them: an
# API function does not load the envelope's replay guard, nor an SQS or Step Functions one the
# token verifier.
if TYPE_CHECKING:
    from ._jwt import JwksCache, JwtVerifier
    from ._keyring import KeyRing
    from ._replay import ReplayGuard

__all__ = [
    "Failed",
    "Misconfigured",
    "Outcome",
    "Pipeline",
    "Refused",
    "Success",
    "Unavailable",
    "require_synchronous",
]

logger = logging.getLogger("tenantscope")

T = TypeVar("T")


# Plain classes rather than dataclasses: they are made at import, in every cold start.
class Success(Generic[T]):
    """The handler ran in the tenant's scope and returned ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


class Refused:
    """The caller's proof of tenant was refused, or the handler touched what its tenant may not."""

    __slots__ = ("error",)

    def __init__(self, error: TenantAuthError) -> None:
        self.error = error


class Unavailable:
    """A passing outage on our side (STS, the issuer's keys, the key ring): retry."""

    __slots__ = ("error",)

    def __init__(self, error: TemporarilyUnavailable) -> None:
        self.error = error


class Misconfigured:
    """A setting is missing or wrong: nothing will work until it is fixed."""

    __slots__ = ("error",)

    def __init__(self, error: ConfigurationError) -> None:
        self.error = error


class Failed:
    """The handler raised something else (a bug, a downstream error): ``error`` as it was raised."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


Outcome = Success[T] | Refused | Unavailable | Misconfigured | Failed


def _classified(error: BaseException) -> Refused | Unavailable | Misconfigured | Failed:
    if isinstance(error, TenantAuthError):
        return Refused(error)
    if isinstance(error, TemporarilyUnavailable):
        return Unavailable(error)
    if isinstance(error, ConfigurationError):
        return Misconfigured(error)
    return Failed(error)


def require_synchronous(fn: Callable[..., Any], decorator: str) -> None:
    """Refuse an ``async def`` function: called, it only makes a coroutine, so the unit of work
    would succeed (an SQS record be deleted) without its body having run, and the body would run
    later in whatever scope awaited it."""
    import inspect

    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{decorator} takes a plain function: {getattr(fn, '__qualname__', fn)!r} is async, and Lambda's "
            "Python runtime calls handlers synchronously; run async code with asyncio.run() inside it"
        )


class _NeverRan(LoggableError, TypeError):
    """A handler returned an async function's coroutine or async generator: its body never ran.
    Loggable (its message names a type, no data), so the log line carries the fix."""


def _refuse_unrun(value: object) -> None:
    """Fail a unit whose handler's value is a coroutine or an async generator: an async function
    that :func:`require_synchronous` could not see (behind a plain wrapper, or an object whose
    ``__call__`` is async). Succeeding would delete an SQS record whose body never ran."""
    if not (hasattr(value, "__await__") or hasattr(value, "__anext__")):
        return
    close = getattr(value, "close", None)
    if callable(close):  # a coroutine: closed, so nothing warns later that it was never awaited
        close()
    raise _NeverRan(
        f"the handler returned a {type(value).__name__} without running it: it is async, and "
        "Lambda's Python runtime calls handlers synchronously; run async code with asyncio.run() inside it"
    )


# The runtime hook libraries the process state is registered with (one per process in Lambda).
_restore_hooked: list[object] = []
_restore_lock = threading.Lock()


def _snapstart_hooks() -> tuple[bool, Callable[..., Any] | None]:
    """Whether this init is taken as a SnapStart snapshot, and then the runtime's
    ``register_after_restore`` (None where its library cannot be imported)."""
    if os.environ.get(ENV.LAMBDA_INITIALIZATION_TYPE) != "snap-start":
        return False, None
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:
        return True, None
    return True, register_after_restore


def forget_state_on_restore() -> bool:
    """Under Lambda SnapStart, forget the process's state (:func:`reset_process_state`) each time
    a snapshot resumes, as a new container would start without it, but for the tracer and vendor
    the code installed at init (which no later init would install again). Returns whether init
    may load keys: always, but under SnapStart without the hook library.

    What init loaded into the snapshot (the issuer's keys, a signing key ring, table schemas, the
    AWS clients and their connections) would otherwise be taken as loaded moments ago in an
    environment resumed days later: their ages are measured on a monotonic clock, which does not
    count the time a snapshot was kept, so a key the issuer withdrew since would still verify.
    Lambda's Python runtime ships the hook library, ``snapshot_restore_py``; registered once.
    """
    snapstart, register_after_restore = _snapstart_hooks()
    if not snapstart:
        return True
    if register_after_restore is None:
        logger.error(
            "tenantscope: SnapStart without snapshot_restore_py: the issuer's keys are not loaded "
            "at init, so that no snapshot keeps them; include the runtime's hook library"
        )
        return False
    with _restore_lock:
        if register_after_restore in _restore_hooked:
            return True
        _restore_hooked.append(register_after_restore)
    register_after_restore(reset_process_state, keep_installed=True)
    return True


def load_after_each_resume(load: Callable[[], None]) -> None:
    """Under SnapStart, run ``load`` each time a snapshot resumes, after the state is forgotten
    (the runtime runs its hooks in the order they were registered, the state's first): what init
    loaded for the first request is loaded again for the first request after each resume."""
    register_after_restore = _snapstart_hooks()[1]
    if register_after_restore is not None:
        register_after_restore(load)


class Pipeline:
    """What one decorated handler needs, built on first use; any part can be injected (fakes).

    What is built from the environment is process state: :func:`reset_process_state` makes the
    next unit of work build it again (tests that change the environment between handlers' calls).
    """

    def __init__(
        self,
        trigger: str,
        settings: Settings | None = None,
        *,
        jwks: JwksCache | None = None,
        vendor: CredentialVendor | None = None,
        ring: KeyRing | None = None,
        replay_guard: ReplayGuard | None = None,
    ) -> None:
        self._span_name = f"tenantscope.{trigger}"
        self._explicit_settings = settings
        self._jwks = jwks
        self._vendor = vendor
        self._ring = ring
        self._replay_guard = replay_guard
        self._verifier: ProcessValue[JwtVerifier] = ProcessValue()
        self._replay: ProcessValue[tuple[ReplayGuard | None]] = ProcessValue()
        self._traced: ProcessValue[tuple[Tracer, Tracer]] = ProcessValue()  # (source, with metrics)
        self._lock = threading.Lock()
        self._ready = False
        # At import, in init: before the snapshot that SnapStart takes of it.
        self.loads_at_init = forget_state_on_restore()

    def _prepare(self) -> None:
        with self._lock:
            if not self._ready:
                install_log_filter()
                self._ready = True

    @property
    def settings(self) -> Settings:
        return self._explicit_settings or get_settings()

    @property
    def vendor(self) -> CredentialVendor:
        return self._vendor or default_vendor()

    @property
    def verifier(self) -> JwtVerifier:
        return self._verifier.peek() or self._verifier.get(self._build_verifier)

    def _build_verifier(self) -> JwtVerifier:
        from ._jwt import JwtVerifier, jwks_cache_for

        return JwtVerifier(self.settings, self._jwks or jwks_cache_for(self.settings))

    @property
    def ring(self) -> KeyRing:
        if self._ring is not None:
            return self._ring
        from ._keyring import default_key_ring

        return default_key_ring(self.settings)

    @property
    def replay_guard(self) -> ReplayGuard | None:
        return (self._replay.peek() or self._replay.get(self._build_replay_guard))[0]

    def _build_replay_guard(self) -> tuple[ReplayGuard | None]:
        if self._replay_guard is not None:
            return (self._replay_guard,)
        table = self.settings.replay_table
        if not table:
            return (None,)
        from ._replay import DynamoDbReplayGuard

        return (DynamoDbReplayGuard(table, region=self.settings.region),)

    @property
    def tracer(self) -> Tracer:
        """The process-wide tracer (with metrics when on), followed if it is replaced later."""
        source = get_tracer()
        traced = self._traced.peek()
        if traced is None or traced[0] is not source:
            traced = (source, with_metrics(source, self.settings))
            self._traced.set(traced)
        return traced[1]

    def bind(self) -> Bound:
        """The parts as they are now, read once for a batch of units rather than once per unit."""
        bound = Bound(self)
        try:
            if not self._ready:
                self._prepare()
            bound.settings, bound.vendor, bound.tracer = self.settings, self.vendor, self.tracer
        except Exception as error:  # settings that cannot even be read: every unit reports it
            bound.error = error
        return bound

    def run(
        self,
        unit: str,
        resolve: Callable[[], TenantContext],
        work: Callable[[], T],
        *,
        lambda_context: Any = None,
        trace_header: str | None = None,
        annotations: Mapping[str, AnnotationValue] | None = None,
        bound: Bound | None = None,
    ) -> Outcome[T]:
        """Run one unit of work (``unit`` names it in log lines, e.g. ``SQS record m-1``).

        It runs in a fresh copy of the context, so that nothing it leaves behind (a suspended
        generator's scope, a task) reaches the next one, inside one span annotated with its
        tenant; it never raises: every failure is an outcome, logged once with its reason.
        ``bound`` is :meth:`bind`'s answer for the batch the unit belongs to, if any.
        """
        return contextvars.copy_context().run(
            self._run, unit, resolve, work, lambda_context, trace_header, annotations, bound or self.bind()
        )

    def _run(
        self,
        unit: str,
        resolve: Callable[[], TenantContext],
        work: Callable[[], T],
        lambda_context: Any,
        trace_header: str | None,
        annotations: Mapping[str, AnnotationValue] | None,
        bound: Bound,
    ) -> Outcome[T]:
        tracer = bound.tracer
        if tracer is None:  # settings that cannot even be read
            return self._report(unit, None, bound.error)  # type: ignore[arg-type]
        with tracer.span(self._span_name, trace_header) as span:
            recording = span is not NOOP_SPAN  # tracing off or not sampled: nothing to annotate
            if recording and annotations:
                for key, value in annotations.items():
                    span.annotate(key, value)
            try:
                tenant = resolve()
                if recording:
                    span.annotate("tenant_id", tenant.tenant_id)
                    span.annotate("tenant_source", tenant.source)
                    execution = tenant.claims.get("execution_name")
                    if isinstance(execution, str):
                        span.annotate("execution_name", execution)
                # Vended before the work runs, so that a tenant whose credentials cannot be had is
                # answered before any of its code executes; the work's clients then ask the vendor
                # at each request (_data.py), and go on with these while STS cannot replace them.
                bound.vendor.credentials_for(tenant.tenant_id, bound.settings)
            except Exception as error:
                return self._report(unit, span, error)
            scope = _open_scope(
                tenant,
                self._explicit_settings,
                getattr(lambda_context, "aws_request_id", None),
                trace_header,
                bound.vendor,
            )
            try:
                result = work()
                if result is not None:
                    _refuse_unrun(result)
                return Success(result)
            except Exception as error:
                # Reported inside the scope, so the log line carries the unit's tenant.
                return self._report(unit, span, error)
            finally:
                _exit_scope(scope)

    def _report(
        self, unit: str, span: Span | None, error: Exception
    ) -> Refused | Unavailable | Misconfigured | Failed:
        outcome = _classified(error)
        if isinstance(outcome, Failed):
            logger.error(
                "tenantscope: %s failed in its handler: %s",
                unit,
                log_reason(error),
                exc_info=without_message(error),
            )
        else:
            assert isinstance(error, TenantError)
            logger.log(
                logging.WARNING if isinstance(outcome, Refused) else logging.ERROR,
                "tenantscope: %s %s: %s",
                unit,
                _VERBS[type(outcome)],
                error,
                extra={"reason": str(error.reason)},
            )
        if span is not None:
            span.record_error(error, client_error=isinstance(outcome, Refused))
        return outcome


class Bound:
    """A pipeline's parts read once: for one unit of work, or for every record of an SQS batch.

    Reading them is not free (the process-wide settings, vendor and tracer are each looked up,
    and may have been replaced since the last unit), and a batch needs them only once. Made by
    :meth:`Pipeline.bind`: parts that cannot be read (settings that do not load) leave ``tracer``
    None and their ``error``, which every unit run with it reports.
    """

    # Set by Pipeline.bind with the tracer, unless reading them failed.
    settings: Settings
    vendor: CredentialVendor

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.tracer: Tracer | None = None
        self.error: Exception | None = None

    # Read only by the triggers that carry envelopes, once per batch at most.
    @cached_property
    def ring(self) -> KeyRing:
        return self.pipeline.ring

    @cached_property
    def replay_guard(self) -> ReplayGuard | None:
        return self.pipeline.replay_guard


_VERBS: dict[type, str] = {
    Refused: "refused",
    Unavailable: "unavailable",
    Misconfigured: "misconfigured",
}
