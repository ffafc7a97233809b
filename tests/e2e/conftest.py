"""End-to-end tests run with the environment the local AWS gives each function, not the unit one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenantscope.testing import reset_process_state


@pytest.fixture(autouse=True)
def tenantscope_env() -> Iterator[None]:
    reset_process_state()
    yield
    reset_process_state()
