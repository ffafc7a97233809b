"""Fakes shared by the tests. (The layer's own fakes, FakeSts, StaticJwksSource, StaticKeyRing and
InMemoryReplayGuard, ship with it.)"""

from __future__ import annotations

from typing import Any

import pytest

from tenantscope._cache import Refresher


class FakeClock:
    """A clock that moves only when told to; counts how often it is read."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSqs:
    """A fake SQS client: keeps each SendMessage request."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **request: Any) -> dict[str, Any]:
        self.sent.append(request)
        return {"MessageId": f"sent-{len(self.sent)}"}


def forgotten_after_each_load(refresher: Refresher[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a reset, as from another thread (a SnapStart resume, a test's reset), forget what
    ``refresher`` holds right after each of its loads, before the caller reads it."""
    load = refresher.refresh

    def load_then_forgotten(*, force: bool = False) -> Any:
        loaded = load(force=force)
        refresher.reset()
        return loaded

    monkeypatch.setattr(refresher, "refresh", load_then_forgotten)
