"""What each trigger's module loads at cold start: only what that trigger needs.

A function's cold start pays for every module it imports. ``import tenantscope`` loads a public
name's module on first use (PEP 562), and the pipeline imports each trigger's proof readers (the
token verifier, the replay guard) only when a handler of that trigger needs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# module imported -> tenantscope modules it must not load
NOT_LOADED = {
    "tenantscope": {"api", "sqs", "sfn", "_pipeline", "_jwt", "_envelope", "_data", "_producer"},
    "tenantscope.api": {"sqs", "sfn", "_replay", "_producer", "_data", "_files"},
    "tenantscope.sqs": {"api", "sfn", "_jwt", "_producer", "_data", "_files"},
    "tenantscope.sfn": {"api", "sqs", "_jwt", "_replay", "_producer", "_data", "_files"},
}


def loaded_by(module: str) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "names = [m.removeprefix('tenantscope.') for m in sys.modules if m.startswith('tenantscope.')]\n"
        "print(json.dumps(names))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "tenantscope")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", sorted(NOT_LOADED))
def test_a_trigger_module_loads_only_what_its_trigger_needs(module: str) -> None:
    # GIVEN a fresh interpreter WHEN the module is imported THEN no other trigger's modules load
    loaded = loaded_by(module)
    assert "_version" in loaded  # the probe sees the package's modules
    assert loaded & NOT_LOADED[module] == set()
