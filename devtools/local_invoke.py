"""Run a function of template.yaml on event files in this process, as one warm Lambda container would.

    python -m devtools.local_invoke <LogicalId> <event.json>...

Prints one JSON line per event: the handler's response, or, when it raises, the error document
the Lambda runtime prints (``errorType``, ``errorMessage``). The environment is the caller's:
the tests give it exactly what SAM CLI resolves for the function (devtools.sam), which makes this
``sam local invoke`` without Docker.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from devtools.local_aws import ROOT, LocalFunction, load_template
from tenantscope.testing import LambdaContext


def function_of(logical_id: str) -> LocalFunction:
    template = load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    properties = template["Resources"][logical_id]["Properties"]
    return LocalFunction(
        logical_id=logical_id,
        name=logical_id,  # what SAM names a local function
        handler=properties["Handler"],
        environment={},
        timeout=int(properties.get("Timeout", globals_.get("Timeout", 3))),
    )


def invoke(handler: Any, event: Any, context: LambdaContext) -> Any:
    try:
        return handler(event, context)
    except Exception as error:
        return {"errorType": type(error).__name__, "errorMessage": str(error)}


def main(argv: list[str] | None = None) -> int:
    logical_id, *events = sys.argv[1:] if argv is None else argv
    # Where Lambda puts them: the function's code (/var/task) and the layer (/opt/python).
    sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "layers" / "tenantscope")]
    function = function_of(logical_id)
    handler = function.load()
    for path in events:
        event = json.loads(Path(path).read_text())
        print(json.dumps(invoke(handler, event, function.context()), default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
