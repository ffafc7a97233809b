"""The library folder as a user takes it: ``layers/tenantscope``, copied alone, without what a
checkout of this repository may hold beside its sources."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "layers" / "tenantscope"
NOT_SOURCES = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".aws-sam", ".pytest_cache"
)


def copy_library(destination: Path) -> Path:
    """A copy of ``layers/tenantscope`` (its sources only) at ``destination``."""
    shutil.copytree(LIBRARY, destination, ignore=NOT_SOURCES)
    return destination
