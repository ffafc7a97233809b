"""`make demo` runs the whole application on the embedded local AWS and every expectation holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_every_expectation_holds() -> None:
    # A fresh interpreter: the demo owns the process (environment, moto, tracer), as under make demo.
    result = subprocess.run(
        [sys.executable, "-m", "devtools.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "demo: all expectations held"
    assert not [line for line in lines if "[FAIL]" in line]
    # Every step of the story ran: orders completed and each attack was shown stopped.
    for expected in (
        "worker took 4 records",
        "is COMPLETED",
        "forged JWT",
        "expired JWT",
        "refused by the guard",
        "then the DLQ",
        "sealed for another execution -> FAILED with TenantAuthError",
    ):
        assert any(expected in line for line in lines), expected
