"""Process-wide state, in three shapes, each safe to fill from many threads.

- :class:`ProcessValue`: one value built on first use (the settings, the boto3 session, the
  default credential vendor, the tracer).
- :class:`ProcessCache`: values built once per key, or results stored and looked up, optionally
  bounded, the least recently used dropped first (JWKS caches per issuer, key rings per spec, AWS
  clients per service, tenants' data clients, verified tokens).
- :class:`Refresher`: a value loaded from a source that can fail, reloaded at a bounded rate and
  kept when a reload fails (the issuer's JWKS, a signing key ring).

A warm Lambda container keeps all of it between invocations; :func:`reset_process_state`
forgets all of it at once (tests, and a SnapStart snapshot resuming: see _pipeline.py).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from ._errors import log_reason

__all__ = ["ProcessCache", "ProcessValue", "Refresher", "reset_process_state", "touch"]

logger = logging.getLogger("tenantscope")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Resettable(Protocol):
    def reset(self, *, keep_installed: bool = False) -> None: ...


_registry: weakref.WeakSet[_Resettable] = weakref.WeakSet()
# Taken to add to the registry and to copy it: a set iterated while another thread adds to it raises.
_registry_lock = threading.Lock()


def _register(state: _Resettable) -> None:
    with _registry_lock:
        _registry.add(state)


def reset_process_state(*, keep_installed: bool = False) -> None:
    """Forget every process-wide value and cache, as a new container would start (tests).

    ``keep_installed`` keeps what the code installed itself (:func:`set_tracer`,
    :func:`set_default_vendor`) and forgets only what was loaded, built or cached: a SnapStart
    snapshot resuming keeps its init's own choices, which no later init would make again.
    """
    with _registry_lock:
        states = list(_registry)
    for state in states:
        state.reset(keep_installed=keep_installed)


class ProcessValue(Generic[V]):
    """One value for the process, built on first use by the first caller that needs it.

    >>> value: ProcessValue[list[int]] = ProcessValue()
    >>> value.get(list) is value.get(list)
    True
    """

    def __init__(self, lock: threading.RLock | None = None) -> None:
        self._value: V | None = None
        self._installed = False
        self._lock = lock or threading.RLock()
        _register(self)

    def get(self, build: Callable[[], V]) -> V:
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
                    value = self._value = build()
        return value

    def peek(self) -> V | None:
        """The value if it has been built, else None."""
        return self._value

    def set(self, value: V | None, *, installed: bool = False) -> None:
        """Replace the value (None: build it again on next use); ``installed``: the code's own
        choice, kept by ``reset(keep_installed=True)``."""
        with self._lock:
            self._value = value
            self._installed = installed and value is not None

    def reset(self, *, keep_installed: bool = False) -> None:
        with self._lock:
            if not (keep_installed and self._installed):
                self.set(None)


def touch(values: OrderedDict[K, V], key: K) -> None:
    """Mark ``key`` the most recently used of ``values``, without a lock (readers do not take one)."""
    try:  # noqa: SIM105 (a try costs nothing here; contextlib.suppress would, on every hit)
        values.move_to_end(key)
    except KeyError:  # dropped by another thread since: the value read is still whole
        pass


class ProcessCache(Generic[K, V]):
    """Values built once per key (:meth:`get`) or stored (:meth:`store`), under one lock; with
    ``maxsize``, the least recently used go.

    >>> cache: ProcessCache[str, str] = ProcessCache(maxsize=1)
    >>> cache.get("a", lambda: "A"), cache.get("b", lambda: "B"), len(cache)
    ('A', 'B', 1)
    """

    def __init__(self, *, maxsize: int | None = None, lock: threading.RLock | None = None) -> None:
        self._values: OrderedDict[K, V] = OrderedDict()
        self._maxsize = maxsize
        self._lock = lock or threading.RLock()
        _register(self)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: K, build: Callable[[], V], *, valid: Callable[[V], bool] | None = None) -> V:
        """The value for ``key``, built when missing or when ``valid`` says the cached one is not."""
        value = self._values.get(key)
        if value is not None and (valid is None or valid(value)):
            if self._maxsize is not None:
                touch(self._values, key)
            return value  # the hot path: no lock
        with self._lock:
            value = self._values.get(key)
            if value is None or (valid is not None and not valid(value)):
                value = build()
                self._keep(key, value)
            return value

    def lookup(self, key: K) -> V | None:
        """The value stored for ``key``, now the most recently used; None when absent."""
        value = self._values.get(key)
        if value is not None:
            touch(self._values, key)
        return value

    def store(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key`` as the most recently used, dropping the least recently used."""
        with self._lock:
            self._keep(key, value)

    def _keep(self, key: K, value: V) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while self._maxsize is not None and len(self._values) > self._maxsize:
            self._values.popitem(last=False)

    def discard(self, key: K) -> None:
        """Forget ``key`` if present."""
        with self._lock:
            self._values.pop(key, None)

    def reset(self, *, keep_installed: bool = False) -> None:
        with self._lock:
            self._values.clear()


class Refresher(Generic[V]):
    """A value loaded from a source that can fail: reloaded at most once per ``min_interval``
    (every ``retry_interval`` until a first load succeeds), the last good value kept on failure.

    >>> loads = iter([1, 2])
    >>> value = Refresher(lambda: next(loads), what="a value", min_interval=30.0, clock=lambda: 0.0)
    >>> value.refresh(), value.refresh(), value.value
    (1, 1, 1)
    """

    def __init__(
        self,
        load: Callable[[], V],
        *,
        what: str,
        min_interval: float,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._what = what
        self._min_interval = min_interval
        self._retry_interval = retry_interval
        self._clock = clock
        self.value: V | None = None
        self.loaded_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = threading.Lock()
        _register(self)

    def reset(self, *, keep_installed: bool = False) -> None:
        """Forget the value: the next use loads it, as in a new container. Its age is measured on
        a monotonic clock, which does not count the time a SnapStart snapshot was kept."""
        with self._lock:
            self.value = None
            self.loaded_at = self._attempted_at = float("-inf")

    def refresh(self, *, force: bool = False) -> V | None:
        """Load again, unless the last attempt is more recent than the interval (``force``: load now).

        Returns the value as the refresh left it, read under the lock: read afterwards, it could
        already be forgotten by a reset in another thread (None, an outage).
        """
        with self._lock:
            now = self._clock()
            interval = self._min_interval if self.value is not None else self._retry_interval
            if not force and now - self._attempted_at < interval:
                return self.value
            self._attempted_at = now
            try:
                value = self._load()
            except Exception as error:  # any failure keeps the last good value
                logger.warning(
                    "tenantscope: %s failed (%s); keeping the last good one", self._what, log_reason(error)
                )
                return self.value
            self.value, self.loaded_at = value, now
            return value

    def age(self) -> float:
        """Seconds since the last successful load (infinite before the first)."""
        return self._clock() - self.loaded_at
