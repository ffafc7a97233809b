"""Lambda SnapStart: what init loaded into a snapshot is forgotten when the snapshot resumes.

Lambda runs a SnapStart function's init once, snapshots the process, and resumes copies of that
snapshot for days. The runtime's own hook library, ``snapshot_restore_py`` (installed here from
PyPI, as the runtime ships it), keeps the hooks registered during init; a test runs them as the
runtime does when a copy resumes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
import snapshot_restore_py

from tenantscope import _pipeline, api_handler, current_tenant
from tenantscope._cache import reset_process_state
from tenantscope._credentials import CredentialVendor
from tenantscope._jwt import JwksCache, StaticJwksSource
from tenantscope.testing import LocalIssuer
from tests.conftest import LambdaContext, http_api_event


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


def tenant_api(jwks: JwksCache, vendor: CredentialVendor) -> Callable[[dict[str, Any], Any], Any]:
    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": current_tenant().tenant_id}

    return handler


def test_a_key_the_issuer_withdrew_while_the_snapshot_was_kept_no_longer_verifies(
    after_restore_hooks: Callable[[], None],
    issuer: LocalIssuer,
    vendor: CredentialVendor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a function whose init, in Lambda, loads the issuer's keys into the snapshot
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    source = StaticJwksSource(issuer.jwks())
    handler = tenant_api(JwksCache(source), vendor)
    assert source.fetches == 1
    # WHEN, while the snapshot is kept, the issuer withdraws that key for a new one, and a copy resumes
    successor = LocalIssuer.generate(kid="dev-key-2")
    source.document = successor.jwks()
    after_restore_hooks()
    # THEN a token the withdrawn key signed is refused, and the new key's tokens are accepted
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 401
    assert handler(http_api_event(successor.token("acme")), LambdaContext())["body"] == "acme"
    assert source.fetches == 2


def test_the_state_is_registered_once_however_many_handlers_init_decorates(
    after_restore_hooks: Callable[[], None], jwks: JwksCache, vendor: CredentialVendor
) -> None:
    tenant_api(jwks, vendor)
    tenant_api(jwks, vendor)
    assert snapshot_restore_py.get_after_restore() == [(reset_process_state, (), {})]


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


def test_snapstart_without_the_hook_library_says_so_and_serves(
    after_restore_hooks: Callable[[], None],
    issuer: LocalIssuer,
    jwks: JwksCache,
    vendor: CredentialVendor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a SnapStart init where the library cannot be imported
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)
    with caplog.at_level(logging.ERROR, logger="tenantscope"):
        handler = tenant_api(jwks, vendor)
    # THEN the log says what is at stake, and requests are served
    assert [r.getMessage() for r in caplog.records] == [
        "tenantscope: SnapStart without snapshot_restore_py: keys loaded at init would be kept "
        "after a snapshot resumes; include the runtime's hook library"
    ]
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 200


def test_copies_of_one_process_draw_their_own_sts_retry_jitter() -> None:
    # GIVEN a process copied as SnapStart copies a snapshot (a fork shares the parent's memory)
    from tenantscope import _credentials

    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the copy)
        os.write(write, json.dumps([_credentials._JITTER.uniform(0, 1) for _ in range(4)]).encode())
        os._exit(0)
    os.close(write)
    mine = [_credentials._JITTER.uniform(0, 1) for _ in range(4)]
    with os.fdopen(read) as pipe:
        theirs = json.loads(pipe.read())
    os.waitpid(child, 0)
    # THEN each draws its own delays, so copies throttled together do not retry STS in step
    assert mine != theirs
