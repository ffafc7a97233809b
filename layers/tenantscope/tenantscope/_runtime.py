"""What an adapter needs, built once per decorated handler on its first use.

Settings are resolved then (explicit arguments, environment, defaults), not at import, so
tests and ``sam local invoke`` can set the environment first. The expensive parts (JWKS,
key ring, replay guard) are built only when the adapter first needs them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import cached_property
from typing import Any

from ._config import Settings
from ._context import TenantContext, _enter_scope
from ._credentials import CredentialVendor, ScopedCredentials, default_vendor
from ._jwt import JwksCache, JwtVerifier, jwks_cache_for
from ._keys import KeyRing, key_ring_from_spec
from ._logging import install_log_filter
from ._metrics import with_metrics
from ._replay import DynamoDbReplayGuard, ReplayGuard
from ._tracing import Tracer, get_tracer

__all__ = ["Runtime", "default_key_ring", "lazy_runtime"]

_rings: dict[tuple[str, float], KeyRing] = {}
_rings_lock = threading.Lock()


def default_key_ring(settings: Settings) -> KeyRing:
    """The process-wide key ring named by ``TENANTSCOPE_SIGNING_KEYS``, shared by every handler."""
    if not settings.signing_keys:
        raise RuntimeError("TENANTSCOPE_SIGNING_KEYS is not configured")
    key = (settings.signing_keys, settings.signing_keys_max_age_seconds)
    ring = _rings.get(key)
    if ring is None:
        with _rings_lock:
            ring = _rings.get(key)
            if ring is None:
                ring = _rings[key] = key_ring_from_spec(
                    settings.signing_keys,
                    region=settings.region,
                    max_age=settings.signing_keys_max_age_seconds,
                )
    return ring


class Runtime:
    """Settings plus the collaborators of one adapter; any of them can be injected (tests, fakes)."""

    def __init__(
        self,
        explicit: dict[str, Any],
        *,
        jwks: JwksCache | None = None,
        vendor: CredentialVendor | None = None,
        ring: KeyRing | None = None,
        replay_guard: ReplayGuard | None = None,
    ) -> None:
        self.settings = Settings.load(**explicit)
        self._explicit = bool(explicit)
        self._jwks = jwks
        self._ring = ring
        self._replay_guard = replay_guard
        self.vendor = vendor or default_vendor()
        self._tracer_source: Tracer | None = None
        self._tracer: Tracer | None = None
        install_log_filter()

    @property
    def tracer(self) -> Tracer:
        """The process-wide tracer (with metrics when on), followed if it is replaced later."""
        source = get_tracer()
        if source is not self._tracer_source or self._tracer is None:
            self._tracer_source, self._tracer = source, with_metrics(source, self.settings)
        return self._tracer

    @cached_property
    def verifier(self) -> JwtVerifier:
        return JwtVerifier(self.settings, self._jwks or jwks_cache_for(self.settings))

    @cached_property
    def ring(self) -> KeyRing:
        return self._ring or default_key_ring(self.settings)

    @cached_property
    def replay_guard(self) -> ReplayGuard | None:
        if self._replay_guard is not None:
            return self._replay_guard
        if self.settings.replay_table:
            return DynamoDbReplayGuard(self.settings.replay_table, region=self.settings.region)
        return None

    def credentials(self, tenant: TenantContext) -> ScopedCredentials:
        return self.vendor.credentials_for(tenant.tenant_id, self.settings)

    def scope(
        self,
        tenant: TenantContext,
        credentials: ScopedCredentials,
        lambda_context: Any,
        trace_header: str | None = None,
    ) -> AbstractContextManager[None]:
        # Explicit arguments must also reach tenant_table()/tenant_session() inside the scope.
        return _enter_scope(
            tenant,
            credentials,
            self.settings if self._explicit else None,
            getattr(lambda_context, "aws_request_id", None),
            trace_header,
        )


def lazy_runtime(explicit: dict[str, Any], **collaborators: Any) -> Callable[[], Runtime]:
    """A function returning the adapter's :class:`Runtime`, built on first call."""
    built: list[Runtime] = []
    lock = threading.Lock()

    def get() -> Runtime:
        if not built:
            with lock:
                if not built:
                    built.append(Runtime(dict(explicit), **collaborators))
        return built[0]

    return get
