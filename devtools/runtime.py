"""The Lambda runtime's python on this machine, for the tools and tests that run it.

A pyenv shim for every installed version is always on PATH: only running it tells whether the
version is selected. Where the environment does not select it, the Makefile's ``PYENV_VERSION``
(which lists every version this project uses) is tried.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

RUNTIME_PYTHON = "python3.13"  # the sample application's Lambda runtime
MAKEFILE_PYENV_VERSION = "3.11.7:3.12.1:3.13.0"  # what the Makefile exports


def runs(python: str, env: Mapping[str, str]) -> bool:
    """Whether ``python`` resolves on ``env``'s PATH and starts."""
    executable = shutil.which(python, path=env.get("PATH"))
    if executable is None:
        return False
    try:
        result = subprocess.run([executable, "-c", "pass"], env=dict(env), capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def runtime_environments(base: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """The environments tried, in order: ``base`` (the process's own by default) as it is, then
    with the Makefile's ``PYENV_VERSION``."""
    env = dict(os.environ if base is None else base)
    return [env, {**env, "PYENV_VERSION": MAKEFILE_PYENV_VERSION}]


def runtime_environment(base: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The first of :func:`runtime_environments` in which the runtime's python runs, or None."""
    return next((env for env in runtime_environments(base) if runs(RUNTIME_PYTHON, env)), None)
