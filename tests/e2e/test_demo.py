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
    # Every step of the story ran: orders completed, each tenant's files stayed its own, and each
    # attack was shown stopped (for the guard, with the reason it gave).
    for expected in (
        "worker took 5 records",
        "acme POST /orders again with the same Idempotency-Key -> 202",
        "is COMPLETED",
        "acme POST /items/widget/attachment -> 200, a form for tenants/acme/items/widget/attachment; "
        "the upload -> 204",
        "globex POST /items/widget/attachment -> 200, a form for tenants/globex/items/widget/attachment; "
        "the upload -> 204",
        "acme GET /items/widget/attachment -> 200, its link downloads: acme's widget manual",
        "globex GET /items/widget/attachment -> 200, its link downloads: globex's widget manual",
        "acme has 2 receipt(s), one per completed order",
        "globex has 1 receipt(s), one per completed order",
        "forged JWT",
        "expired JWT",
        "globex code reading acme's key directly is refused by the guard",
        "globex GET acme's receipt -> 404",
        "globex code reading acme's attachment by its key is refused by the guard  "
        "(object key outside the current tenant's prefix)",
        "globex code signing a link to acme's attachment is refused by the guard  "
        "(object key outside the current tenant's prefix)",
        "globex code reaching acme's attachment with ../ is refused by the guard  (object key outside",
        "globex code listing every tenant's files is refused by the guard  "
        "(object key outside the current tenant's prefix (list prefix))",
        "then the DLQ",
        "sealed for another execution -> FAILED with TenantAuthError",
    ):
        assert any(expected in line for line in lines), expected
    # Each tenant's receipt link answered 200
    assert sum("/receipt -> 200, a link to its receipt" in line for line in lines) == 2
