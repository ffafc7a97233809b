"""Lambda SnapStart: what init loaded into a snapshot is forgotten when the snapshot resumes.

Lambda runs a SnapStart function's init once, snapshots the process, and resumes copies of that
snapshot for days. The runtime's own hook library, ``snapshot_restore_py`` (installed here from
PyPI, as the runtime ships it), keeps the hooks registered during init; a test runs them as the
runtime does when a copy resumes.
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable
from typing import Any

import pytest
import snapshot_restore_py

from tenantscope import NoopTracer, Settings, _pipeline, api_handler, current_tenant, set_tracer
from tenantscope._cache import ProcessValue, reset_process_state
from tenantscope._credentials import CredentialVendor, FakeSts, default_vendor, set_default_vendor
from tenantscope._jwt import JwksCache, StaticJwksSource
from tenantscope._tracing import get_tracer
from tenantscope.testing import LocalIssuer
from tests.conftest import ROLE_ARN, LambdaContext, http_api_event
from tests.fakes import FakeClock


@pytest.fixture
def after_restore_hooks(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A SnapStart init (Lambda's variable, an empty registry of hooks); returns the resume."""
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    monkeypatch.setattr(snapshot_restore_py, "_after_restore_registry", [])
    monkeypatch.setattr(_pipeline, "_restore_hooked", [])

    def resume() -> None:
        for hook, args, kwargs in snapshot_restore_py.get_after_restore():
            hook(*args, **kwargs)

    return resume


@pytest.fixture
def in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    """An init in Lambda, where @api_handler loads the issuer's keys before the first request."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")


def tenant_api(jwks: JwksCache, vendor: CredentialVendor) -> Callable[[dict[str, Any], Any], Any]:
    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": current_tenant().tenant_id}

    return handler


def test_a_key_the_issuer_withdrew_while_the_snapshot_was_kept_no_longer_verifies(
    after_restore_hooks: Callable[[], None], in_lambda: None, issuer: LocalIssuer, vendor: CredentialVendor
) -> None:
    # GIVEN a function whose init, in Lambda, loads the issuer's keys into the snapshot
    source = StaticJwksSource(issuer.jwks())
    handler = tenant_api(JwksCache(source), vendor)
    assert source.fetches == 1
    # WHEN, while the snapshot is kept, the issuer withdraws that key for a new one, and a copy resumes
    successor = LocalIssuer.generate(kid="dev-key-2")
    source.document = successor.jwks()
    after_restore_hooks()
    # THEN the keys are fetched again as it resumes, before its first request
    assert source.fetches == 2
    # AND a token the withdrawn key signed is refused, and the new key's tokens are accepted
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 401
    assert handler(http_api_event(successor.token("acme")), LambdaContext())["body"] == "acme"
    assert source.fetches == 2


def test_an_issuer_unreachable_as_the_snapshot_resumes_is_asked_again_by_a_later_request(
    after_restore_hooks: Callable[[], None],
    in_lambda: None,
    issuer: LocalIssuer,
    vendor: CredentialVendor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a snapshot whose copy resumes while the issuer cannot be reached
    source, clock = StaticJwksSource(issuer.jwks()), FakeClock()
    handler = tenant_api(JwksCache(source, clock=clock), vendor)
    source.fail = True
    with caplog.at_level(logging.WARNING, logger="tenantscope"):
        after_restore_hooks()
    # THEN the resume completes, saying so, and holds no keys: a request at once is an outage (503)
    assert "tenantscope: JWKS fetch failed" in caplog.text
    source.fail = False
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 503
    # AND a request a second later, as for any fetch that failed, fetches them and is served
    clock.advance(1)
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["body"] == "acme"
    assert source.fetches == 3


def test_the_state_is_registered_once_however_many_handlers_init_decorates(
    after_restore_hooks: Callable[[], None], in_lambda: None, issuer: LocalIssuer, vendor: CredentialVendor
) -> None:
    # GIVEN an init in Lambda that decorates two handlers, each with its issuer's keys
    sources = [StaticJwksSource(issuer.jwks()), StaticJwksSource(issuer.jwks())]
    for source in sources:
        tenant_api(JwksCache(source), vendor)
    # THEN each handler loaded its keys at init
    assert [source.fetches for source in sources] == [1, 1]
    # AND the state is registered once, before each handler's load of its keys, which a resume runs
    hooks = snapshot_restore_py.get_after_restore()
    assert hooks[0] == (reset_process_state, (), {"keep_installed": True})
    assert [reset_process_state in (hook, *args) for hook, args, _ in hooks] == [True, False, False]
    after_restore_hooks()
    assert [source.fetches for source in sources] == [2, 2]


def test_without_snapstart_nothing_is_registered(
    after_restore_hooks: Callable[[], None],
    jwks: JwksCache,
    vendor: CredentialVendor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for init in ("on-demand", "provisioned-concurrency"):
        monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", init)
        tenant_api(jwks, vendor)
    assert snapshot_restore_py.get_after_restore() == []


def test_snapstart_without_the_hook_library_loads_no_keys_at_init_and_serves(
    after_restore_hooks: Callable[[], None],
    in_lambda: None,
    issuer: LocalIssuer,
    vendor: CredentialVendor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a SnapStart init in Lambda where the library cannot be imported
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)
    source = StaticJwksSource(issuer.jwks())
    with caplog.at_level(logging.ERROR, logger="tenantscope"):
        handler = tenant_api(JwksCache(source), vendor)
    # THEN the log says so, and init leaves the keys out of the snapshot, which nothing would forget
    assert [r.getMessage() for r in caplog.records] == [
        "tenantscope: SnapStart without snapshot_restore_py: the issuer's keys are not loaded "
        "at init, so that no snapshot keeps them; include the runtime's hook library"
    ]
    assert source.fetches == 0
    # AND requests are served, each resumed copy fetching the keys on its first
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200
    assert source.fetches == 1


def test_what_init_installed_itself_is_kept_when_the_snapshot_resumes(
    after_restore_hooks: Callable[[], None],
) -> None:
    # GIVEN an init that installs its own tracer and vendor (no later init would install them again)
    _pipeline.forget_state_on_restore()  # as decorating a handler does
    tracer, vendor = NoopTracer(), CredentialVendor(FakeSts())
    set_tracer(tracer)
    set_default_vendor(vendor)
    detected = ProcessValue[object]()
    detected.get(object)
    # WHEN the snapshot resumes THEN they are still the process's, and what was built is forgotten
    after_restore_hooks()
    assert get_tracer() is tracer and default_vendor() is vendor
    assert detected.peek() is None
    # AND a reset as a test makes one forgets them too
    reset_process_state()
    assert get_tracer() is not tracer and default_vendor() is not vendor


def test_copies_of_one_snapshot_wait_their_own_delays_before_retrying_sts() -> None:
    def retry_delays() -> list[float]:
        sts, delays = FakeSts(), []
        sts.throttle_next = 3
        CredentialVendor(sts, sleep=delays.append, max_attempts=4).credentials_for(
            "acme", Settings.load(role_arn=ROLE_ARN)
        )
        return delays

    # GIVEN two copies of one snapshot: the random module's state is the same in each
    snapshot = random.getstate()
    first = retry_delays()
    random.setstate(snapshot)
    second = retry_delays()
    # THEN each waits its own delays, so copies throttled together do not retry STS in step
    assert len(first) == len(second) == 3
    assert first != second
