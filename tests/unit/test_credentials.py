"""CredentialVendor: caching, refresh, single flight, retries, brief failure memory; Boto3Sts errors.

Time is a fake clock and sleeping is recorded, never done: no assertion depends on elapsed time.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tenantscope import ConfigurationError, Reason, StsRefused, StsThrottled, StsUnreachable, _credentials
from tenantscope._aws import aws_client
from tenantscope._config import Settings, get_settings
from tenantscope._credentials import (
    Boto3Sts,
    CredentialVendor,
    FakeSts,
    ScopedCredentials,
    default_vendor,
    set_default_vendor,
)
from tenantscope._errors import CredentialsUnavailable, InvalidTenantId
from tenantscope._policy import AssumeRoleRequest, assume_role_request
from tests.conftest import ROLE_ARN, policy_settings
from tests.fakes import FakeClock

OTHER_ROLE_ARN = "arn:aws:iam::123456789012:role/tenantscope-other"
TENANTS = [f"tenant-{i:02d}" for i in range(10)]


class SleepRecorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def tag_settings(**overrides: Any) -> Settings:
    return Settings.load(environ={}, **{"role_arn": ROLE_ARN, **overrides})


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def sts(clock: FakeClock) -> FakeSts:
    return FakeSts(duration=3600.0, clock=clock)


@pytest.fixture
def make_vendor(sts: FakeSts, clock: FakeClock, sleeps: SleepRecorder) -> Any:
    def make(**options: Any) -> CredentialVendor:
        return CredentialVendor(sts, clock=clock, sleep=sleeps, **options)

    return make


# --- caching and refresh ---------------------------------------------------------------------


def test_a_thousand_calls_for_ten_tenants_make_ten_sts_calls(
    make_vendor: Any, sts: FakeSts, clock: FakeClock
) -> None:
    vendor = make_vendor()
    settings = tag_settings()
    first: dict[str, ScopedCredentials] = {}
    for i in range(1000):
        tenant = TENANTS[i % 10]
        credentials = vendor.credentials_for(tenant, settings)
        assert credentials.tenant_id == tenant
        assert first.setdefault(tenant, credentials) is credentials
        clock.advance(1.0)  # 1000 s in all: still well before the refresh margin
    assert len(sts.requests) == 10
    assert sorted(r.tenant_id for r in sts.requests) == TENANTS


def test_the_most_recently_used_tenants_are_kept_up_to_the_bound(make_vendor: Any, sts: FakeSts) -> None:
    vendor = make_vendor(max_tenants=2)
    settings = tag_settings()
    # GIVEN a and b cached, then a used again (b is now the least recently used)
    for tenant in ("tenant-a", "tenant-b", "tenant-a"):
        vendor.credentials_for(tenant, settings)
    assert [r.tenant_id for r in sts.requests] == ["tenant-a", "tenant-b"]
    # WHEN c is vended, the bound drops b
    vendor.credentials_for("tenant-c", settings)
    # THEN a is still cached and b is assumed again
    vendor.credentials_for("tenant-a", settings)
    vendor.credentials_for("tenant-b", settings)
    assert [r.tenant_id for r in sts.requests] == ["tenant-a", "tenant-b", "tenant-c", "tenant-b"]


def test_the_default_bound_keeps_more_tenants_than_the_data_clients_cache(make_vendor: Any) -> None:
    from tenantscope._config import MAX_KEPT_TENANTS
    from tenantscope._credentials import MAX_CACHED_CREDENTIALS

    assert MAX_CACHED_CREDENTIALS == 1024 >= MAX_KEPT_TENANTS


def test_an_evicted_tenant_gets_new_credentials_never_another_tenants(make_vendor: Any, sts: FakeSts) -> None:
    vendor = make_vendor(max_tenants=3)
    settings = tag_settings()
    for _ in range(3):
        for tenant in TENANTS:  # ten tenants through a bound of three: every call misses
            assert vendor.credentials_for(tenant, settings).tenant_id == tenant
    assert len(sts.requests) == 30


def test_refreshed_once_inside_the_margin_and_not_before(
    make_vendor: Any, sts: FakeSts, clock: FakeClock
) -> None:
    # GIVEN credentials valid for 3600 s and a refresh margin of 300 s
    vendor = make_vendor()
    settings = tag_settings(refresh_margin_seconds=300)
    first = vendor.credentials_for("acme", settings)
    assert first.expiration == clock.now + 3600
    # WHEN time reaches one second before the margin THEN the cached credentials are kept
    clock.advance(3600 - 300 - 1)
    assert vendor.credentials_for("acme", settings) is first
    assert len(sts.requests) == 1
    # WHEN time enters the margin THEN STS is called once, and the new credentials are cached
    clock.advance(1)
    second = vendor.credentials_for("acme", settings)
    assert second is not first
    assert second.session_token != first.session_token
    for _ in range(50):
        assert vendor.credentials_for("acme", settings) is second
    assert len(sts.requests) == 2


def test_expired_credentials_are_never_returned(make_vendor: Any, sts: FakeSts, clock: FakeClock) -> None:
    vendor = make_vendor()
    settings = tag_settings()
    first = vendor.credentials_for("acme", settings)
    clock.advance(10_000)
    assert vendor.credentials_for("acme", settings) is not first
    assert len(sts.requests) == 2


def test_a_request_is_signed_with_fresh_credentials_when_sts_answers(
    make_vendor: Any, sts: FakeSts, clock: FakeClock
) -> None:
    vendor = make_vendor()
    settings = tag_settings(refresh_margin_seconds=300)
    first = vendor.signing_credentials("acme", settings)
    assert vendor.signing_credentials("acme", settings) is first
    clock.advance(3600 - 300)  # inside the margin
    second = vendor.signing_credentials("acme", settings)
    assert second is not first and second is vendor.credentials_for("acme", settings)
    assert len(sts.requests) == 2


def cached_inside_the_margin(
    vendor: CredentialVendor, clock: FakeClock, left: float
) -> tuple[Settings, ScopedCredentials]:
    """acme's credentials cached for an hour with a 300 s refresh margin, then the clock moved on
    until they have ``left`` seconds to live; the settings and the credentials."""
    settings = tag_settings(refresh_margin_seconds=300)
    cached = vendor.credentials_for("acme", settings)
    clock.advance(3600 - left)
    return settings, cached


def test_a_request_inside_the_margin_goes_on_with_the_cached_credentials_while_sts_is_down(
    make_vendor: Any, sts: FakeSts, clock: FakeClock
) -> None:
    # GIVEN cached credentials inside the refresh margin, and STS down
    vendor = make_vendor()
    settings, first = cached_inside_the_margin(vendor, clock, left=200)
    sts.unreachable_next = 1_000
    # WHEN a request is signed THEN it gets them, while a unit of work starting now is refused
    assert vendor.signing_credentials("acme", settings) is first
    with pytest.raises(StsUnreachable):
        vendor.credentials_for("acme", settings)
    # AND once they have less than MIN_SIGNING_SECONDS left, the request is refused too
    clock.advance(200 - _credentials.MIN_SIGNING_SECONDS - 1)
    assert vendor.signing_credentials("acme", settings) is first
    clock.advance(1)
    with pytest.raises(StsUnreachable):
        vendor.signing_credentials("acme", settings)
    # AND credentials never cached, for another tenant or other settings, are never made up
    with pytest.raises(StsUnreachable):
        vendor.signing_credentials("globex", settings)
    with pytest.raises(StsUnreachable):
        vendor.signing_credentials(
            "acme", tag_settings(refresh_margin_seconds=300, session_duration_seconds=900)
        )


def test_while_requests_go_on_with_cached_credentials_sts_is_asked_again_only_every_15_seconds(
    make_vendor: Any, sts: FakeSts, clock: FakeClock
) -> None:
    # GIVEN cached credentials inside the margin, and STS down
    vendor = make_vendor(max_attempts=1)
    settings, first = cached_inside_the_margin(vendor, clock, left=250)
    sts.unreachable_next = 1_000
    # WHEN requests are signed every second for 15 s THEN STS is asked once, and each request goes on
    for _ in range(15):
        assert vendor.signing_credentials("acme", settings) is first
        clock.advance(1)
    assert len(sts.requests) == 2
    # AND once STS answers again, the attempt 15 s after the last replaces them, and the vendor
    # forgets it was going on without STS
    sts.unreachable_next = 0
    assert vendor.signing_credentials("acme", settings) is not first
    assert len(sts.requests) == 3
    assert vendor._signing_retry_at == {}


def test_a_refusal_inside_the_margin_stops_requests_at_once(
    make_vendor: Any, sts: FakeSts, clock: FakeClock
) -> None:
    # GIVEN cached credentials inside the margin, and STS refusing the role (its trust withdrawn)
    vendor = make_vendor()
    settings, _ = cached_inside_the_margin(vendor, clock, left=200)
    sts.refuse = True
    # WHEN a request is signed THEN it is refused: a refusal is no passing outage
    with pytest.raises(StsRefused):
        vendor.signing_credentials("acme", settings)
    # AND once the refusal is no longer remembered, an outage does not bring the credentials back
    clock.advance(2)
    sts.refuse, sts.throttle_next = False, 1_000
    with pytest.raises(StsThrottled):
        vendor.signing_credentials("acme", settings)


def test_roles_and_strategies_are_cached_separately(make_vendor: Any, sts: FakeSts) -> None:
    vendor = make_vendor()
    by_tags = vendor.credentials_for("acme", tag_settings())
    by_policy = vendor.credentials_for("acme", policy_settings())
    by_other_role = vendor.credentials_for("acme", tag_settings(role_arn=OTHER_ROLE_ARN))
    assert len({id(by_tags), id(by_policy), id(by_other_role)}) == 3
    assert [(r.role_arn, r.strategy) for r in sts.requests] == [
        (ROLE_ARN, "session-tags"),
        (ROLE_ARN, "session-policy"),
        (OTHER_ROLE_ARN, "session-tags"),
    ]
    assert sts.requests[0].policy is None
    assert sts.requests[1].policy is not None
    # and each is served from its own cache entry afterwards
    assert vendor.credentials_for("acme", tag_settings()) is by_tags
    assert vendor.credentials_for("acme", policy_settings()) is by_policy
    assert vendor.credentials_for("acme", tag_settings(role_arn=OTHER_ROLE_ARN)) is by_other_role
    assert len(sts.requests) == 3


def test_sts_receives_the_scoped_request(make_vendor: Any, sts: FakeSts) -> None:
    settings = policy_settings()
    make_vendor().credentials_for("acme", settings)
    assert sts.requests == [assume_role_request("acme", settings)]


def test_clear_forgets_cached_credentials(make_vendor: Any, sts: FakeSts) -> None:
    vendor = make_vendor()
    first = vendor.credentials_for("acme", tag_settings())
    vendor.clear()
    assert vendor.credentials_for("acme", tag_settings()) is not first
    assert len(sts.requests) == 2


def test_invalid_tenant_id_never_reaches_sts(make_vendor: Any, sts: FakeSts) -> None:
    vendor = make_vendor()
    for tenant in ["", "ACME", "acme#x", "acme*", "a"]:
        with pytest.raises(InvalidTenantId):
            vendor.credentials_for(tenant, tag_settings())
    assert sts.requests == []


# --- single flight ---------------------------------------------------------------------------


class BlockingSts(FakeSts):
    """A FakeSts whose calls wait until the test releases them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()

    def assume_role(self, request: AssumeRoleRequest) -> ScopedCredentials:
        self.entered.set()
        # a guard against a deadlock if the vendor is broken, not a timing assertion
        if not self.release.wait(timeout=30):
            raise CredentialsUnavailable(Reason.STS_UNREACHABLE, "test was never released")
        return super().assume_role(request)


def test_concurrent_misses_for_one_tenant_make_one_sts_call() -> None:
    # GIVEN 16 threads that ask for the same tenant at once, while STS is slow
    threads_count = 16
    clock = FakeClock()
    sts = BlockingSts(clock=clock)
    vendor = CredentialVendor(sts, clock=clock, sleep=SleepRecorder())
    settings = tag_settings()
    barrier = threading.Barrier(threads_count)
    results: list[ScopedCredentials] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait()
            credentials = vendor.credentials_for("acme", settings)
            with lock:
                results.append(credentials)
        except BaseException as error:  # pragma: no cover - reported below
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    # WHEN the leader is inside STS and every thread has checked the cache under the vendor's
    # lock (each miss reads the clock once there), so none of them can still find it filled
    assert sts.entered.wait(timeout=30)
    for _ in range(3000):
        if clock.calls >= threads_count:
            break
        threading.Event().wait(0.01)
    all_missed = clock.calls >= threads_count
    sts.release.set()
    for thread in threads:
        thread.join(timeout=30)
    # THEN one STS call served them all, with one credentials object
    assert errors == [], [repr(e) for e in errors]
    assert len(results) == threads_count
    assert len(sts.requests) == 1
    assert all(credentials is results[0] for credentials in results)
    assert all_missed, "not every thread missed the cache while STS was in flight"


def test_a_configuration_error_is_each_callers_own_never_a_wait_for_sts(
    monkeypatch: pytest.MonkeyPatch, make_vendor: Any, sts: FakeSts
) -> None:
    # GIVEN settings without a role, and a first caller slow to find it out
    vendor = make_vendor()
    settings = tag_settings(role_arn="")
    inside, release = threading.Event(), threading.Event()
    real_request = _credentials.assume_role_request

    def slow_request(tenant_id: str, settings: Settings) -> AssumeRoleRequest:
        if threading.current_thread().name == "first":
            inside.set()
            # a guard against a deadlock if the vendor is broken, not a timing assertion
            release.wait(timeout=30)
        return real_request(tenant_id, settings)

    monkeypatch.setattr(_credentials, "assume_role_request", slow_request)
    errors: dict[str, BaseException] = {}

    def call() -> None:
        try:
            vendor.credentials_for("acme", settings)
        except BaseException as error:
            errors[threading.current_thread().name] = error

    first = threading.Thread(target=call, name="first")
    first.start()
    assert inside.wait(timeout=30)
    # WHEN a second caller misses while the first is still at it
    call()
    release.set()
    first.join(timeout=30)
    # THEN each is told of the configuration, neither of an STS outage, and STS was never called
    for error in errors.values():
        assert isinstance(error, ConfigurationError) and error.reason is Reason.MISSING_SETTING
    assert sorted(errors) == ["MainThread", "first"]
    assert sts.requests == []


def test_a_caller_that_missed_while_another_vended_takes_its_credentials(
    make_vendor: Any, sts: FakeSts
) -> None:
    vendor = make_vendor()
    settings = tag_settings()
    # GIVEN a caller paused after its lock-free lookup missed, before it takes the lock
    lock, paused, resume = vendor._lock, threading.Event(), threading.Event()

    class PausingLock:
        def __enter__(self) -> None:
            if threading.current_thread().name == "late":
                paused.set()
                resume.wait(5)
            lock.acquire()

        def __exit__(self, *exc: object) -> None:
            lock.release()

    vendor._lock = PausingLock()
    late: list[ScopedCredentials] = []
    thread = threading.Thread(
        target=lambda: late.append(vendor.credentials_for("acme", settings)), name="late"
    )
    thread.start()
    assert paused.wait(5)
    # WHEN another caller vends acme's credentials meanwhile
    first = vendor.credentials_for("acme", settings)
    resume.set()
    thread.join(5)
    # THEN the paused caller takes them: STS was asked once
    assert late == [first]
    assert len(sts.requests) == 1


def test_a_caller_waits_for_a_stuck_sts_call_15_seconds_then_fails_closed(
    make_vendor: Any, sts: FakeSts
) -> None:
    vendor = make_vendor()
    settings = tag_settings()
    # GIVEN another caller's STS call for acme in flight, that never completes
    waits: list[float] = []

    def wait(timeout: float) -> bool:
        waits.append(timeout)
        return False

    vendor._flights[("acme", settings)] = SimpleNamespace(
        done=SimpleNamespace(wait=wait), credentials=None, failure=None
    )
    # WHEN acme's credentials are asked for THEN the caller waits 15 s, then fails as unreachable
    with pytest.raises(StsUnreachable) as caught:
        vendor.credentials_for("acme", settings)
    assert (caught.value.reason, caught.value.detail) == (Reason.STS_UNREACHABLE, "STS call failed")
    assert waits == [15]
    assert sts.requests == []


def test_a_failed_flight_fails_every_waiter_closed() -> None:
    clock = FakeClock()
    sts = BlockingSts(clock=clock)
    sts.refuse = True
    vendor = CredentialVendor(sts, clock=clock, sleep=SleepRecorder())
    outcomes: list[object] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            vendor.credentials_for("acme", tag_settings())
            outcome: object = "credentials"
        except CredentialsUnavailable as error:
            outcome = type(error)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert sts.entered.wait(timeout=30)
    sts.release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == [StsRefused] * 8  # every waiter fails as the leader did
    assert len(sts.requests) == 1


# --- throttling, refusal and the failure memory -----------------------------------------------


def test_throttling_is_retried_with_capped_jitter(
    make_vendor: Any, sts: FakeSts, sleeps: SleepRecorder
) -> None:
    # GIVEN STS throttles the next two calls
    vendor = make_vendor(max_attempts=3, backoff_base=0.05, backoff_cap=1.0)
    sts.throttle_next = 2
    # WHEN credentials are requested THEN the third attempt succeeds after two recorded sleeps
    credentials = vendor.credentials_for("acme", tag_settings())
    assert credentials.tenant_id == "acme"
    assert len(sts.requests) == 3
    assert len(sleeps.sleeps) == 2
    for attempt, slept in enumerate(sleeps.sleeps):
        assert 0 <= slept <= min(1.0, 0.05 * 2**attempt)


def test_backoff_never_exceeds_the_cap(make_vendor: Any, sts: FakeSts, sleeps: SleepRecorder) -> None:
    vendor = make_vendor(max_attempts=8, backoff_base=0.5, backoff_cap=1.0)
    sts.throttle_next = 7
    vendor.credentials_for("acme", tag_settings())
    assert len(sleeps.sleeps) == 7
    for attempt, slept in enumerate(sleeps.sleeps):
        assert 0 <= slept <= min(1.0, 0.5 * 2**attempt)


@pytest.fixture
def jitter_ranges(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """A jitter draw that records the range it is asked for and returns its top: the ranges."""
    ranges: list[tuple[float, float]] = []

    def top(low: float, high: float) -> float:
        ranges.append((low, high))
        return high

    monkeypatch.setattr(_credentials, "_JITTER", SimpleNamespace(uniform=top))
    return ranges


def test_the_jitter_is_drawn_up_to_the_capped_exponential_bound(
    make_vendor: Any, sts: FakeSts, sleeps: SleepRecorder, jitter_ranges: list[tuple[float, float]]
) -> None:
    # GIVEN a jitter draw that records its range and returns its top
    ranges = jitter_ranges
    vendor = make_vendor(max_attempts=5, backoff_base=0.25, backoff_cap=1.0)
    sts.throttle_next = 4
    # WHEN four throttled attempts precede the fifth
    vendor.credentials_for("acme", tag_settings())
    # THEN each wait is drawn from zero to the base doubled per attempt, capped
    assert ranges == [(0, 0.25), (0, 0.5), (0, 1.0), (0, 1.0)]
    assert sleeps.sleeps == [0.25, 0.5, 1.0, 1.0]


def test_a_vendor_allowed_no_attempt_fails_closed_without_calling_sts(make_vendor: Any, sts: FakeSts) -> None:
    with pytest.raises(StsUnreachable) as caught:
        make_vendor(max_attempts=0).credentials_for("acme", tag_settings())
    assert caught.value.reason is Reason.STS_UNREACHABLE
    assert sts.requests == []


def test_the_vendors_defaults(
    sts: FakeSts, clock: FakeClock, sleeps: SleepRecorder, jitter_ranges: list[tuple[float, float]]
) -> None:
    ranges = jitter_ranges
    # GIVEN STS throttling every call: three attempts, waits from 50 ms doubling
    vendor = CredentialVendor(sts, clock=clock, sleep=sleeps)
    sts.throttle_next = 10
    with pytest.raises(StsThrottled):
        vendor.credentials_for("acme", tag_settings())
    assert len(sts.requests) == 3
    assert ranges == [(0, 0.05), (0, 0.1)]
    # AND the failure is remembered for one second
    clock.advance(0.999)
    with pytest.raises(StsThrottled):
        vendor.credentials_for("acme", tag_settings())
    assert len(sts.requests) == 3
    clock.advance(0.001)
    sts.throttle_next = 0
    assert vendor.credentials_for("acme", tag_settings()).tenant_id == "acme"
    # AND a wait never exceeds one second
    ranges.clear()
    sts.throttle_next = 6
    CredentialVendor(sts, clock=clock, sleep=sleeps, max_attempts=7).credentials_for("globex", tag_settings())
    assert ranges == [(0, 0.05), (0, 0.1), (0, 0.2), (0, 0.4), (0, 0.8), (0, 1.0)]


def test_jitter_varies(sts: FakeSts, clock: FakeClock, sleeps: SleepRecorder) -> None:
    # full jitter: many throttled calls do not all sleep the same amount
    for i in range(20):
        vendor = CredentialVendor(sts, clock=clock, sleep=sleeps, max_attempts=2)
        sts.throttle_next = 1
        vendor.credentials_for(f"tenant-{i:02d}", tag_settings())
    assert len(sleeps.sleeps) == 20
    assert len(set(sleeps.sleeps)) > 1


def test_exhausted_retries_are_credentials_unavailable(
    make_vendor: Any, sts: FakeSts, sleeps: SleepRecorder
) -> None:
    vendor = make_vendor(max_attempts=3)
    sts.throttle_next = 5
    with pytest.raises(CredentialsUnavailable, match="retries exhausted"):
        vendor.credentials_for("acme", tag_settings())
    assert len(sts.requests) == 3
    assert len(sleeps.sleeps) == 2  # no sleep after the last attempt


def test_a_refusal_is_not_retried(make_vendor: Any, sts: FakeSts, sleeps: SleepRecorder) -> None:
    vendor = make_vendor()
    sts.refuse = True
    with pytest.raises(CredentialsUnavailable, match="refused"):
        vendor.credentials_for("acme", tag_settings())
    assert len(sts.requests) == 1
    assert sleeps.sleeps == []


def test_a_failure_is_remembered_only_briefly(make_vendor: Any, sts: FakeSts, clock: FakeClock) -> None:
    # GIVEN STS refused once
    vendor = make_vendor(failure_ttl=1.0)
    settings = tag_settings()
    sts.refuse = True
    with pytest.raises(CredentialsUnavailable):
        vendor.credentials_for("acme", settings)
    assert len(sts.requests) == 1
    sts.refuse = False
    # WHEN asked again at once THEN it fails the same way, without calling STS
    with pytest.raises(StsRefused) as remembered:
        vendor.credentials_for("acme", settings)
    assert (remembered.value.reason, remembered.value.detail) == (
        Reason.STS_REFUSED,
        "recent STS failure; backing off",
    )
    clock.advance(0.999)
    with pytest.raises(CredentialsUnavailable):
        vendor.credentials_for("acme", settings)
    assert len(sts.requests) == 1
    # AND other tenants are not affected
    assert vendor.credentials_for("globex", settings).tenant_id == "globex"
    assert len(sts.requests) == 2
    # WHEN failure_ttl has passed THEN STS is asked again and can succeed, and the memory is gone
    clock.advance(0.001)
    credentials = vendor.credentials_for("acme", settings)
    assert credentials.tenant_id == "acme"
    assert len(sts.requests) == 3
    assert vendor.credentials_for("acme", settings) is credentials
    assert vendor._failed_until == {}  # forgotten, not only expired: the memory does not grow


def test_the_failure_memory_holds_no_unit_of_works_frames_and_forgets_expired_entries(
    make_vendor: Any, sts: FakeSts, clock: FakeClock
) -> None:
    vendor = make_vendor(failure_ttl=1.0)
    settings = tag_settings()
    sts.refuse = True

    def unit_of_work(tenant: str) -> None:
        event = {"headers": {"authorization": "Bearer secret-token"}}  # what a handler's frame holds
        try:
            vendor.credentials_for(tenant, settings)
        finally:
            del event

    # GIVEN a failure met inside a unit of work
    with pytest.raises(StsRefused) as met:
        unit_of_work("acme")
    # THEN what the vendor keeps is of the same kind and reason, but raised nowhere: no traceback,
    # so no frame of the unit of work (its event, a token, a body) outlives it
    ((_, kept),) = vendor._failed_until.values()
    assert type(kept) is StsRefused and kept.reason is met.value.reason
    assert kept.__traceback__ is None and kept.__context__ is None and kept.__cause__ is None
    # AND once past its backoff, another tenant's failure drops it: the memory does not grow with
    # every tenant that ever failed
    clock.advance(1.0)
    with pytest.raises(StsRefused):
        unit_of_work("globex")
    assert [tenant for tenant, _ in vendor._failed_until] == ["globex"]


def test_exhausted_throttling_is_remembered_too(make_vendor: Any, sts: FakeSts, clock: FakeClock) -> None:
    vendor = make_vendor(max_attempts=2, failure_ttl=5.0)
    sts.throttle_next = 2
    with pytest.raises(CredentialsUnavailable):
        vendor.credentials_for("acme", tag_settings())
    with pytest.raises(CredentialsUnavailable):
        vendor.credentials_for("acme", tag_settings())
    assert len(sts.requests) == 2
    clock.advance(5.0)
    assert vendor.credentials_for("acme", tag_settings()).tenant_id == "acme"


# --- ScopedCredentials -----------------------------------------------------------------------


def test_repr_hides_every_secret(make_vendor: Any) -> None:
    credentials = make_vendor().credentials_for("acme", tag_settings())
    for text in (repr(credentials), str(credentials), f"{credentials}", f"{credentials!r}"):
        assert credentials.secret_access_key not in text
        assert credentials.session_token not in text
        assert credentials.access_key_id not in text
        assert "acme" in text
    hand_made = ScopedCredentials("acme", "ASIAEXAMPLEKEYID", "s3cr3t/key+value", "t0ken==", 1.0)
    assert "ASIAEXAMPLEKEYID" not in repr(hand_made)
    assert "s3cr3t" not in repr(hand_made)
    assert "t0ken" not in repr(hand_made)


# --- the fake STS ----------------------------------------------------------------------------------


def test_the_fake_sts_fails_as_told_then_serves(sts: FakeSts) -> None:
    # GIVEN a fake told to throttle once, then be unreachable twice
    sts.throttle_next, sts.unreachable_next = 1, 2
    failures = []
    for _ in range(3):
        with pytest.raises((StsThrottled, StsUnreachable)) as caught:
            sts.assume_role(a_request())
        failures.append((type(caught.value), caught.value.reason, caught.value.detail))
    # THEN it fails so, in that order, then answers for the request's tenant
    assert failures == [
        (StsThrottled, Reason.STS_THROTTLED, "Throttling"),
        (StsUnreachable, Reason.STS_UNREACHABLE, "EndpointConnectionError"),
        (StsUnreachable, Reason.STS_UNREACHABLE, "EndpointConnectionError"),
    ]
    assert sts.assume_role(a_request()).tenant_id == "acme"
    assert len(sts.requests) == 4
    # AND told to refuse, it refuses as STS refuses a role it may not assume
    sts.refuse = True
    with pytest.raises(StsRefused) as refused:
        sts.assume_role(a_request())
    assert (refused.value.reason, refused.value.detail) == (Reason.STS_REFUSED, "AccessDenied")


def test_the_fake_sts_serves_credentials_for_an_hour_by_default() -> None:
    assert FakeSts(clock=lambda: 1000.0).assume_role(a_request()).expiration == 1000.0 + 3600


# --- the process-wide vendor -----------------------------------------------------------------------


def test_the_default_vendor_is_on_the_real_sts_until_replaced() -> None:
    # GIVEN no vendor set: the default is made once, on Boto3Sts in the configured region
    real = default_vendor()
    assert default_vendor() is real
    assert isinstance(real.sts, Boto3Sts)
    assert real.sts._sts() is aws_client("sts", get_settings().region, attempts=1)
    # WHEN one is set THEN it is the default; None restores a real one
    mine = CredentialVendor(FakeSts())
    set_default_vendor(mine)
    assert default_vendor() is mine
    set_default_vendor(None)
    assert isinstance(default_vendor().sts, Boto3Sts)


# --- Boto3Sts ------------------------------------------------------------------------------------


class FakeStsClient:
    """The one method of a boto3 STS client that Boto3Sts calls."""

    def __init__(self, *, error: Exception | None = None, response: dict[str, Any] | None = None) -> None:
        self.error = error
        self.response = response
        self.calls: list[dict[str, Any]] = []

    def assume_role(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, "AssumeRole")


def a_request() -> AssumeRoleRequest:
    return assume_role_request("acme", policy_settings())


@pytest.mark.parametrize(
    "code", ["Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"]
)
def test_boto3_sts_maps_throttling_to_sts_throttled(code: str) -> None:
    client = FakeStsClient(error=client_error(code))
    with pytest.raises(StsThrottled, match=rf"^STS throttled \({code}\)$"):
        Boto3Sts(client=client).assume_role(a_request())
    assert len(client.calls) == 1


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://sts.us-east-1.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://sts.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://sts.us-east-1.amazonaws.com"),
        client_error("ServiceUnavailable"),
        client_error("InternalFailure"),
    ],
    ids=lambda error: (
        type(error).__name__ if not isinstance(error, ClientError) else error.response["Error"]["Code"]
    ),
)
def test_boto3_sts_maps_network_failures_and_sts_faults_to_sts_unreachable(error: Exception) -> None:
    # A DNS or connection failure is not throttling: an operator must be told which one it is.
    with pytest.raises(StsUnreachable, match=r"^STS unreachable \(\w+\)$") as caught:
        Boto3Sts(client=FakeStsClient(error=error)).assume_role(a_request())
    assert not isinstance(caught.value, StsThrottled)


@pytest.mark.parametrize(
    "code",
    [
        "AccessDenied",
        "ValidationError",
        "PackedPolicyTooLarge",
        "RegionDisabledException",
        "MalformedPolicyDocument",
        "",
    ],
)
def test_boto3_sts_maps_refusals_to_sts_refused(code: str) -> None:
    client = FakeStsClient(error=client_error(code))
    with pytest.raises(StsRefused, match=r"^STS refused AssumeRole \(") as caught:
        Boto3Sts(client=client).assume_role(a_request())
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_the_vendor_retries_an_unreachable_sts_then_says_so(sleeps: SleepRecorder, caplog: Any) -> None:
    client = FakeStsClient(error=EndpointConnectionError(endpoint_url="https://sts.amazonaws.com"))
    vendor = CredentialVendor(Boto3Sts(client=client), clock=FakeClock(), sleep=sleeps, max_attempts=3)
    with pytest.raises(StsUnreachable, match=r"STS unreachable .*retries exhausted"):
        vendor.credentials_for("acme", policy_settings())
    assert len(client.calls) == 3 and len(sleeps.sleeps) == 2
    reasons = [r.getMessage() for r in caplog.records if r.name == "tenantscope"]
    assert reasons == [
        f"tenantscope: STS unreachable (EndpointConnectionError), attempt {n}" for n in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    ("arrange", "failure"),
    [
        (lambda sts: setattr(sts, "throttle_next", 9), StsThrottled),
        (lambda sts: setattr(sts, "unreachable_next", 9), StsUnreachable),
        (lambda sts: setattr(sts, "refuse", True), StsRefused),
    ],
    ids=["throttled", "unreachable", "refused"],
)
def test_callers_waiting_and_the_failure_memory_keep_the_kind_of_failure(
    make_vendor: Any, sts: FakeSts, arrange: Any, failure: type[CredentialsUnavailable]
) -> None:
    vendor = make_vendor(max_attempts=2)
    arrange(sts)
    with pytest.raises(failure):
        vendor.credentials_for("acme", tag_settings())
    with pytest.raises(failure, match="recent STS failure"):
        vendor.credentials_for("acme", tag_settings())


# --- every vended credential is checked ------------------------------------------------------------


@pytest.mark.parametrize("empty", ["AccessKeyId", "SecretAccessKey", "SessionToken"])
def test_empty_credentials_from_sts_are_refused(empty: str) -> None:
    # boto3 would treat an empty key as no key and fall back to the function's own role.
    creds = {"AccessKeyId": "ASIA1", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": 4e9}
    client = FakeStsClient(response={"Credentials": {**creds, empty: ""}})
    vendor = CredentialVendor(Boto3Sts(client=client), clock=FakeClock(), sleep=SleepRecorder())
    with pytest.raises(StsRefused, match="unusable credentials"):
        vendor.credentials_for("acme", policy_settings())


@pytest.mark.parametrize("response", [{}, {"Credentials": None}, {"Credentials": {"AccessKeyId": "A"}}])
def test_a_malformed_sts_answer_is_refused(response: dict[str, Any]) -> None:
    with pytest.raises(StsRefused, match="unusable credentials"):
        Boto3Sts(client=FakeStsClient(response=response)).assume_role(a_request())


@pytest.mark.parametrize(
    "fields",
    [("", "s", "t"), ("a", "", "t"), ("a", "s", ""), (None, "s", "t")],
    ids=["key", "secret", "token", "None key"],
)
def test_scoped_credentials_cannot_be_made_empty(fields: tuple[Any, Any, Any]) -> None:
    with pytest.raises(
        ValueError, match=r"^scoped credentials need a non-empty key, secret and session token$"
    ):
        ScopedCredentials("acme", *fields, 4e9)


@pytest.mark.parametrize("expiration", [float("nan"), float("inf"), "4e9", None])
def test_scoped_credentials_need_a_finite_expiry(expiration: Any) -> None:
    with pytest.raises(ValueError, match=r"^scoped credentials need an expiry$"):
        ScopedCredentials("acme", "ASIA1", "s", "t", expiration)


class ScriptedSts:
    """An STS backend that answers with whatever credentials the test gives it."""

    def __init__(self, credentials: ScopedCredentials) -> None:
        self.credentials = credentials

    def assume_role(self, request: AssumeRoleRequest) -> ScopedCredentials:
        return self.credentials


@pytest.mark.parametrize(
    "credentials",
    [
        ScopedCredentials("acme", "ASIA1", "s", "t", 999.0),  # expired at the clock's 1000
        ScopedCredentials("acme", "ASIA1", "s", "t", 1000.0),
        ScopedCredentials("globex", "ASIA1", "s", "t", 5000.0),  # another tenant's
    ],
    ids=["expired", "expiring now", "another tenant"],
)
def test_expired_or_foreign_credentials_from_a_backend_are_refused(credentials: ScopedCredentials) -> None:
    vendor = CredentialVendor(ScriptedSts(credentials), clock=FakeClock(1000.0), sleep=SleepRecorder())
    with pytest.raises(StsRefused, match="unusable credentials"):
        vendor.credentials_for("acme", tag_settings())


def test_vendor_on_boto3_sts_retries_throttling_then_fails_closed(sleeps: SleepRecorder) -> None:
    client = FakeStsClient(error=client_error("Throttling"))
    vendor = CredentialVendor(Boto3Sts(client=client), clock=FakeClock(), sleep=sleeps, max_attempts=3)
    with pytest.raises(CredentialsUnavailable):
        vendor.credentials_for("acme", policy_settings())
    assert len(client.calls) == 3
    assert len(sleeps.sleeps) == 2


def test_vendor_on_boto3_sts_does_not_retry_access_denied(sleeps: SleepRecorder) -> None:
    client = FakeStsClient(error=client_error("AccessDenied"))
    vendor = CredentialVendor(Boto3Sts(client=client), clock=FakeClock(), sleep=sleeps)
    with pytest.raises(CredentialsUnavailable):
        vendor.credentials_for("acme", policy_settings())
    assert len(client.calls) == 1
    assert sleeps.sleeps == []


def test_boto3_sts_makes_one_client_on_the_function_role_that_tries_once() -> None:
    # The vendor retries with jitter itself: botocore must not retry underneath it.
    client = Boto3Sts("eu-west-1")._sts()
    assert client is aws_client("sts", "eu-west-1", attempts=1)
    assert (client.meta.service_model.service_name, client.meta.region_name) == ("sts", "eu-west-1")
    assert client.meta.config.retries["total_max_attempts"] == 1


@pytest.mark.parametrize(
    "response",
    [{"Error": {"Message": "no code"}}, {}],
    ids=["error without a code", "no error at all"],
)
def test_boto3_sts_reads_a_client_error_without_a_code_as_a_refusal(response: dict[str, Any]) -> None:
    client = FakeStsClient(error=ClientError(response, "AssumeRole"))  # type: ignore[arg-type]
    with pytest.raises(StsRefused) as refused:
        Boto3Sts(client=client).assume_role(a_request())
    assert (refused.value.reason, refused.value.detail) == (Reason.STS_REFUSED, "no error code")


def sts_answer(credentials: dict[str, Any], session: str = "acme", **more: Any) -> dict[str, Any]:
    """AssumeRole's answer, as STS gives it for a session named ``session`` with its source identity."""
    return {
        "Credentials": credentials,
        "AssumedRoleUser": {
            "AssumedRoleId": f"AROAEXAMPLE:{session}",
            "Arn": f"arn:aws:sts::123456789012:assumed-role/tenant-role/{session}",
        },
        "SourceIdentity": session,
        **more,
    }


def test_boto3_sts_reads_an_expiry_given_in_epoch_seconds() -> None:
    creds = {"AccessKeyId": "ASIA1", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": 4e9}
    credentials = Boto3Sts(client=FakeStsClient(response=sts_answer(creds))).assume_role(a_request())
    assert credentials.expiration == 4e9


CREDS = {"AccessKeyId": "ASIA1", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": 4e9}


@pytest.mark.parametrize(
    "answer",
    [
        sts_answer(CREDS, session="acme-corp"),
        sts_answer(CREDS, SourceIdentity="acme-corp"),
        {k: v for k, v in sts_answer(CREDS).items() if k != "AssumedRoleUser"},
    ],
    ids=["a session for another tenant", "another source identity", "no session named"],
)
def test_a_session_sts_did_not_make_for_the_tenant_is_refused(answer: dict[str, Any]) -> None:
    # GIVEN STS answering acme's request with a session it names for another tenant, or none
    vendor = CredentialVendor(
        Boto3Sts(client=FakeStsClient(response=answer)), clock=FakeClock(), sleep=SleepRecorder()
    )
    # THEN the credentials are refused as unusable, not cached, not retried
    with pytest.raises(StsRefused) as refused:
        vendor.credentials_for("acme", tag_settings())
    assert refused.value.reason is Reason.STS_UNUSABLE_CREDENTIALS


def test_a_session_without_a_source_identity_in_the_answer_is_named_by_its_arn() -> None:
    answer = {k: v for k, v in sts_answer(CREDS).items() if k != "SourceIdentity"}
    vendor = CredentialVendor(
        Boto3Sts(client=FakeStsClient(response=answer)), clock=FakeClock(), sleep=SleepRecorder()
    )
    assert vendor.credentials_for("acme", tag_settings()).tenant_id == "acme"


class EmptyKeySts:
    """A backend that builds its credentials from an answer with an empty key (ScopedCredentials refuses)."""

    def assume_role(self, request: AssumeRoleRequest) -> ScopedCredentials:
        return ScopedCredentials(request.tenant_id, "", "s", "t", 4e9)


def test_credentials_a_backend_cannot_build_are_unusable_not_a_crash() -> None:
    vendor = CredentialVendor(EmptyKeySts(), clock=FakeClock(), sleep=SleepRecorder())
    with pytest.raises(StsRefused) as refused:
        vendor.credentials_for("acme", tag_settings())
    assert refused.value.reason is Reason.STS_UNUSABLE_CREDENTIALS


def test_boto3_sts_sends_the_request_and_reads_the_credentials() -> None:
    expiration = datetime(2027, 1, 1, tzinfo=UTC)
    client = FakeStsClient(
        response=sts_answer(
            {
                "AccessKeyId": "ASIAREAL",
                "SecretAccessKey": "secret",
                "SessionToken": "token",
                "Expiration": expiration,
            }
        )
    )
    request = a_request()
    credentials = Boto3Sts(client=client).assume_role(request)
    assert client.calls == [request.to_boto3()]
    assert client.calls[0]["RoleSessionName"] == "acme"
    assert client.calls[0]["SourceIdentity"] == "acme"
    assert credentials == ScopedCredentials("acme", "ASIAREAL", "secret", "token", expiration.timestamp())
