"""README's "Use it in your own service", laid out as a user's own repository would hold it.

A user copies one folder of this repository, ``layers/tenantscope``, into their service, next to
their template and code (``examples/own-service``). :func:`lay_out` builds that directory from
those two folders and nothing else, so that whatever runs in it (``sam validate --lint``,
``sam build``, the service's tests in a clean venv) shows that nothing else is needed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-service"
LIBRARY = ROOT / "layers" / "tenantscope"
# Where the service keeps its copy of the folder (the example template's layer ContentUri).
LIBRARY_IN_SERVICE = Path("layers") / "tenantscope"
# What a checkout of this repository may hold beside the sources: never part of a copy.
NOT_SOURCES = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".aws-sam", ".pytest_cache"
)


def copy_library(destination: Path) -> Path:
    """A copy of ``layers/tenantscope`` (its sources only) at ``destination``."""
    shutil.copytree(LIBRARY, destination, ignore=NOT_SOURCES)
    return destination


def lay_out(directory: Path) -> Path:
    """The example service in ``directory``: its own files and its copy of the library folder."""
    shutil.copytree(EXAMPLE, directory, ignore=NOT_SOURCES)
    copy_library(directory / LIBRARY_IN_SERVICE)
    return directory
