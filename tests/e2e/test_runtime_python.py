"""The layer and the functions load on the Lambda runtime's Python (3.13), not only on 3.11.

Runs where python3.13 is on PATH (with pyenv: PYENV_VERSION=3.11.7:3.12.1:3.13.0, as the
Makefile sets it); the compiled dependencies are not installed for it, and tenantscope does not
import them until they are first used, so this imports the package and compiles every module.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def runtime_python() -> str | None:
    python = shutil.which("python3.13")
    if python is None or subprocess.run([python, "-c", "pass"], capture_output=True, check=False).returncode:
        return None
    return python


def test_layer_and_functions_load_on_python_3_13() -> None:
    python = runtime_python()
    if python is None:
        pytest.skip("python3.13 is not on PATH (with pyenv, set PYENV_VERSION=3.11.7:3.12.1:3.13.0)")
    code = (
        "import sys, pathlib; sys.path[:0] = ['layers/tenantscope', 'functions'];"
        "import tenantscope; assert sys.version_info[:2] == (3, 13);"
        "files = [*pathlib.Path('layers/tenantscope/tenantscope').glob('*.py'),"
        " *pathlib.Path('functions/app').glob('*.py')];"
        "[compile(f.read_text(), str(f), 'exec') for f in files];"
        "print(len(tenantscope.__all__), len(files))"
    )
    result = subprocess.run([python, "-B", "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    exported, compiled = result.stdout.split()
    assert int(exported) > 30
    assert int(compiled) > 20
