"""ProcessCache: values built once per key or stored, the least recently used dropped at the bound."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable

from tenantscope._cache import ProcessCache, ProcessValue, Refresher, reset_process_state


def test_a_value_is_built_once_and_the_least_recently_used_is_dropped() -> None:
    cache: ProcessCache[str, str] = ProcessCache(maxsize=2)
    built: list[str] = []

    def build(key: str) -> str:
        built.append(key)
        return key.upper()

    # GIVEN a and b built, then a used again: b is the least recently used
    for key in ("a", "b", "a"):
        assert cache.get(key, lambda key=key: build(key)) == key.upper()
    # WHEN c is built, b goes
    cache.get("c", lambda: build("c"))
    cache.get("a", lambda: build("a"))
    cache.get("b", lambda: build("b"))
    assert built == ["a", "b", "c", "b"]
    assert len(cache) == 2


def test_an_invalid_value_is_built_again() -> None:
    cache: ProcessCache[str, list[int]] = ProcessCache()
    first = cache.get("k", lambda: [1])
    assert cache.get("k", lambda: [2], valid=lambda value: value == [1]) is first
    assert cache.get("k", lambda: [2], valid=lambda value: value == [9]) == [2]


def test_stored_results_are_looked_up_discarded_and_bounded() -> None:
    cache: ProcessCache[str, int] = ProcessCache(maxsize=2)
    cache.store("a", 1)
    cache.store("b", 2)
    assert cache.lookup("a") == 1  # a is now the most recently used
    cache.store("c", 3)  # b goes
    assert (cache.lookup("a"), cache.lookup("b"), cache.lookup("c")) == (1, None, 3)
    cache.discard("a")
    cache.discard("a")  # absent: nothing happens
    assert cache.lookup("a") is None
    assert len(cache) == 1


def test_reset_process_state_empties_every_cache_and_value() -> None:
    cache: ProcessCache[str, int] = ProcessCache()
    cache.store("a", 1)
    cache.get("b", lambda: 2)
    value: ProcessValue[list[int]] = ProcessValue()
    first = value.get(lambda: [1])
    reset_process_state()
    assert len(cache) == 0
    assert value.peek() is None
    assert value.get(lambda: [2]) == [2] and value.peek() is not first  # built again, as in a new container


class ArrivesWhileWaiting:
    """A lock that, as it is taken, first runs ``arrive`` once: what another thread does while this
    caller waits for the lock (it builds the same value and stores it)."""

    def __init__(self) -> None:
        self.arrive: Callable[[], None] | None = None

    def __enter__(self) -> None:
        arrive, self.arrive = self.arrive, None
        if arrive is not None:
            arrive()

    def __exit__(self, *exc_info: object) -> None:
        return None


def test_a_value_another_caller_built_while_this_one_waited_is_used_not_built_again() -> None:
    lock = ArrivesWhileWaiting()
    cache: ProcessCache[str, str] = ProcessCache(lock=lock)  # type: ignore[arg-type]
    built: list[str] = []

    def build(value: str) -> Callable[[], str]:
        return lambda: built.append(value) or value

    # GIVEN a key missing when read, and built by another caller before the lock is had
    lock.arrive = lambda: cache.store("k", "theirs")
    # THEN that value is the answer
    assert cache.get("k", build("ours")) == "theirs"
    # AND with a validity check, a value that arrived valid is used, an invalid one built again
    lock.arrive = lambda: cache.store("v", "fresh")
    assert cache.get("v", build("ours"), valid=lambda value: value == "fresh") == "fresh"
    lock.arrive = lambda: cache.store("w", "stale")
    assert cache.get("w", build("ours"), valid=lambda value: value == "fresh") == "ours"
    assert built == ["ours"]


def test_a_process_value_built_while_this_caller_waited_is_used_not_built_again() -> None:
    lock = ArrivesWhileWaiting()
    value: ProcessValue[str] = ProcessValue(lock)  # type: ignore[arg-type]
    assert value.peek() is None  # nothing before its first use
    lock.arrive = lambda: value.set("theirs")
    assert value.get(lambda: "ours") == "theirs"
    assert ProcessValue().get(lambda: "built") == "built"


def test_a_refresher_that_never_loaded_is_infinitely_old() -> None:
    refresher = Refresher(lambda: 1, what="a value", min_interval=30.0, clock=lambda: 100.0)
    assert refresher.age() == math.inf
    refresher.refresh()
    assert refresher.age() == 0.0


def test_a_reset_while_another_thread_makes_process_state_forgets_all_of_it_without_failing() -> None:
    # GIVEN a process with much state, and a thread that keeps making more, as first uses do,
    # switching threads as often as the interpreter can
    kept = [ProcessValue[object]() for _ in range(2000)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    stop = threading.Event()

    def make_state() -> None:
        while not stop.is_set():
            ProcessCache[str, str]()

    maker = threading.Thread(target=make_state)
    maker.start()
    # WHEN the state is reset again and again meanwhile THEN no reset fails partway
    failures = []
    try:
        for _ in range(500):
            try:
                reset_process_state()
            except RuntimeError as error:  # a set changed size during iteration
                failures.append(error)
    finally:
        stop.set()
        maker.join()
        sys.setswitchinterval(interval)
    assert failures == []
    assert len(kept) == 2000


def test_a_value_the_code_installed_is_kept_only_by_a_reset_that_keeps_what_was_installed() -> None:
    # GIVEN a value built on first use, one set as a cache, and one the code installed
    built, cached, installed = ProcessValue[str](), ProcessValue[str](), ProcessValue[str]()
    built.get(lambda: "detected")
    cached.set("remembered")
    installed.set("chosen", installed=True)
    # WHEN a SnapStart resume resets the state THEN only the installed one stays
    for value in (built, cached, installed):
        value.reset(keep_installed=True)
    assert (built.peek(), cached.peek(), installed.peek()) == (None, None, "chosen")
    # AND a plain reset, as a test's, forgets it too
    installed.reset()
    assert installed.peek() is None
