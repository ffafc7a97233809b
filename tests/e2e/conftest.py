"""End-to-end tests run with the environment the local AWS gives each function, not the unit one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from devtools.local_aws import ROOT
from tenantscope.testing import reset_process_state


@pytest.fixture(autouse=True)
def tenantscope_env() -> Iterator[None]:
    reset_process_state()
    yield
    reset_process_state()


def local_server(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`python -m devtools.local_server ...`, as `make local-aws` runs it."""
    return subprocess.run(
        [sys.executable, "-m", "devtools.local_server", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
