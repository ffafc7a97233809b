"""End-to-end tests run with the environment the local AWS gives each function, not the unit one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenantscope._config import reset_settings


@pytest.fixture(autouse=True)
def tenantscope_env() -> Iterator[None]:
    reset_settings()
    yield
    reset_settings()
