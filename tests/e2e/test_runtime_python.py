"""The layer and the functions load on the Lambda runtime's Python (3.13), not only on 3.11.

Runs where python3.13 runs (with pyenv, as selected by the environment or by the Makefile's
PYENV_VERSION); the compiled dependencies are not installed for it, and tenantscope does not
import them until they are first used, so this imports the package and compiles every module.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.runtime import MAKEFILE_PYENV_VERSION, RUNTIME_PYTHON, runtime_environment

ROOT = Path(__file__).resolve().parents[2]


def test_layer_and_functions_load_on_python_3_13() -> None:
    env = runtime_environment()
    if env is None:
        pytest.skip(
            f"{RUNTIME_PYTHON} does not run here, nor with PYENV_VERSION={MAKEFILE_PYENV_VERSION}: "
            "install it (e.g. `pyenv install 3.13`)"
        )
    python = shutil.which(RUNTIME_PYTHON, path=env.get("PATH"))
    assert python is not None
    code = (
        "import sys, pathlib; sys.path[:0] = ['layers/tenantscope', 'functions'];"
        "import tenantscope; assert sys.version_info[:2] == (3, 13);"
        "files = [*pathlib.Path('layers/tenantscope/tenantscope').glob('*.py'),"
        " *pathlib.Path('functions/app').glob('*.py')];"
        "[compile(f.read_text(), str(f), 'exec') for f in files];"
        "print(len(tenantscope.__all__), len(files))"
    )
    result = subprocess.run(
        [python, "-B", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    exported, compiled = result.stdout.split()
    assert int(exported) > 30
    assert int(compiled) > 20
