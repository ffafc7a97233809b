"""Moved to devtools.lambda_events; re-exported while callers migrate."""

from devtools.lambda_events import *  # noqa: F403
from devtools.lambda_events import __all__  # noqa: F401
