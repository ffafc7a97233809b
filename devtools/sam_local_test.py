"""`make sam-local-test`: the README's local flow, run with the real SAM CLI and Docker.

1. The ```bash block of README.md's "Invoke locally", line by line and verbatim (with
   ``--skip-pull-image`` added to each ``sam local`` command when SAM_SKIP_PULL=1, for machines
   that cannot pull the Lambda image): every command must succeed, and the response each
   ``sam local invoke`` prints must be what its ``# expect:`` says (``sam`` exits 0 even when the
   function fails). Then the receipt CompleteOrder wrote must be in the local bucket.
2. ``sam local start-api`` on 127.0.0.1, with a bounded set of HTTP requests: put and get an item,
   list items as another tenant, place an order, no token and a forged token; an attachment
   uploaded with the form the API answers and downloaded with the link it answers, both on the
   local AWS (never any other address), and none for another tenant.

Exits non-zero on any mismatch. Stops what it started: start-api, the containers SAM left for
this checkout, and the local AWS unless it was already running. Prints how long each step took.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.events import EVENTS_DIR, LOCAL_ENV, ORDER_ID, outcome
from devtools.issuer import dev_issuer
from devtools.local_aws import REGION, ROOT
from devtools.local_server import STATE_DIR, free_port, read_state, stop
from tenantscope.testing import LocalIssuer

README = ROOT / "README.md"
SECTION = "### Invoke locally"
EXPECT = re.compile(r"\s+# expect: (statusCode \d{3}|batchItemFailures \d+|error \w+|ok)$")
SAM = ROOT / ".venv" / "bin" / "sam"
START_API_SECONDS = 120


@dataclass(frozen=True)
class Step:
    """A line of the README block: the command, and the outcome it must print (if any)."""

    command: str
    expect: str | None


def readme_steps(readme: Path = README) -> list[Step]:
    """The lines of the first ```bash block under "Invoke locally", in order."""
    section = readme.read_text(encoding="utf-8").split(SECTION, 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    steps = []
    for line in block.splitlines():
        if line.strip():
            match = EXPECT.search(line)
            if match is None and "# expect:" in line:
                raise ValueError(f"an expectation this test cannot check: {line}")
            steps.append(Step(line[: match.start()], match[1]) if match else Step(line, None))
    return steps


def with_skip_pull(command: str) -> str:
    """``command`` with --skip-pull-image when it is a ``sam local`` command and SAM_SKIP_PULL=1."""
    if os.environ.get("SAM_SKIP_PULL") == "1" and re.match(r"\S*sam local ", command):
        comment = command.find("  #")
        head, tail = (command, "") if comment < 0 else (command[:comment], command[comment:])
        return f"{head} --skip-pull-image{tail}"
    return command


def last_json_line(stdout: str) -> Any:
    """What the function answered: ``sam local invoke`` prints it as the last JSON line."""
    for line in reversed(stdout.splitlines()):
        with contextlib.suppress(ValueError):
            return json.loads(line)
    return None


class Report:
    def __init__(self) -> None:
        self.failures = 0
        self.checks = 0
        self.started = time.monotonic()

    def result(self, ok: bool, seconds: float, what: str, detail: str = "") -> None:
        self.checks += 1
        self.failures += not ok
        print(
            f"  [{'ok  ' if ok else 'FAIL'}] {seconds:5.1f}s  {what}{f'  ({detail})' if detail else ''}",
            flush=True,
        )


def _environment() -> dict[str, str]:
    # No telemetry; and SAM looks for credentials without asking an instance metadata service.
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_EC2_METADATA_DISABLED": "true"}


def run_readme_block(report: Report) -> None:
    print(f"README.md, {SECTION!r}, verbatim:")
    for step in readme_steps():
        command = with_skip_pull(step.command)
        began = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=900
        )
        seconds = time.monotonic() - began
        shown = step.command.split("  #")[0].replace(".venv/bin/", "")
        shown = re.sub(r" --env-vars \S+ --region \S+", "", shown)
        if step.expect is None:
            report.result(done.returncode == 0, seconds, shown, "" if not done.returncode else _tail(done))
            continue
        got = outcome(last_json_line(done.stdout))
        ok = done.returncode == 0 and got == step.expect
        report.result(
            ok, seconds, f"{shown}  -> {got}", "" if ok else f"expected {step.expect}; {_tail(done)}"
        )


def local_variables() -> dict[str, str]:
    """The variables `make local-aws` wrote for the functions (events/env.local.json)."""
    variables: dict[str, str] = json.loads((EVENTS_DIR / LOCAL_ENV).read_text())["Parameters"]
    return variables


def check_receipt(report: Report) -> None:
    """CompleteOrder's sample (in the block) wrote the receipt of its order under acme's prefix."""
    import boto3
    from botocore.exceptions import ClientError

    state = read_state(STATE_DIR)
    key = f"tenants/acme/receipts/{ORDER_ID}.json"
    began = time.monotonic()
    if state is None:
        report.result(False, 0.0, f"receipt {key}", "the local AWS is not running")
        return
    s3 = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=state.endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    try:
        receipt = json.loads(
            s3.get_object(Bucket=local_variables()["FILES_BUCKET_NAME"], Key=key)["Body"].read()
        )
    except ClientError as error:
        report.result(False, time.monotonic() - began, f"receipt {key}", str(error))
        return
    ok = receipt.get("order_id") == ORDER_ID
    report.result(ok, time.monotonic() - began, f"CompleteOrder wrote {key}", "" if ok else str(receipt))


def _tail(done: subprocess.CompletedProcess[str], lines: int = 6) -> str:
    return " | ".join((done.stdout + done.stderr).strip().splitlines()[-lines:])


# ---------------------------------------------------------------- sam local start-api
@contextlib.contextmanager
def start_api(log: Path) -> Iterator[str]:
    """``sam local start-api`` on 127.0.0.1 with the local env file, stopped on exit."""
    port = free_port()
    command = (
        f"{SAM} local start-api --env-vars events/env.local.json --region {REGION} "
        f"--host 127.0.0.1 --port {port}"
    )
    with log.open("w") as output:
        process = subprocess.Popen(
            shlex.split(with_skip_pull(command)),
            cwd=ROOT,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_API_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"sam local start-api did not start: {log.read_text()[-800:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def request(base: str, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    # The start-api URL: http on 127.0.0.1 only.
    sent = urllib.request.Request(f"{base}{path}", data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(sent, timeout=60) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def run_start_api(report: Report, log: Path) -> None:
    print("sam local start-api on 127.0.0.1:")
    issuer = dev_issuer()
    acme, globex = issuer.token("acme"), issuer.token("globex")
    forged = LocalIssuer.generate(kid=issuer.kid).token("acme")
    item = {"name": "start-api widget", "stock": 5}
    order = {"item_id": "api-widget", "quantity": 1}
    refused = {"message": "Unauthorized"}
    # (method, path, who, token, body, expected status, what the answer must satisfy)
    checks: list[tuple[str, str, str, str | None, Any, int, Callable[[Any], bool]]] = [
        ("PUT", "/items/api-widget", "acme", acme, item, 200, lambda b: b == {**item, "id": "api-widget"}),
        ("GET", "/items/api-widget", "acme", acme, None, 200, lambda b: b == {**item, "id": "api-widget"}),
        (
            "GET",
            "/items",
            "globex",
            globex,
            None,
            200,
            lambda b: "api-widget" not in {i["id"] for i in b["items"]},
        ),
        ("POST", "/orders", "acme", acme, order, 202, lambda b: b["status"] == "PENDING"),
        ("GET", "/items", "no token", None, None, 401, lambda b: b == refused),
        ("GET", "/items", "a forged token", forged, None, 401, lambda b: b == refused),
    ]
    began = time.monotonic()
    with start_api(log) as base:
        print(f"  listening at {base} after {time.monotonic() - began:.1f}s", flush=True)
        for method, path, who, token, body, status, check in checks:
            began = time.monotonic()
            got, answer = request(base, method, path, token, body)
            ok = got == status and isinstance(answer, dict) and check(answer)
            report.result(
                ok,
                time.monotonic() - began,
                f"{method} {path} as {who} -> {got}",
                "" if ok else str(answer)[:300],
            )
        began = time.monotonic()
        try:
            detail = attachment_round_trip(base, acme, globex)
        except (KeyError, TypeError, ValueError, OSError) as error:  # an answer without its form or link
            detail = f"{type(error).__name__}: {error}"
        report.result(
            not detail,
            time.monotonic() - began,
            "attachment of api-widget: form, upload, link, download as acme; none for globex",
            detail,
        )


def attachment_round_trip(base: str, acme: str, globex: str) -> str:
    """Upload acme's api-widget's attachment with the form the API answers and download it with the
    link it answers; '' when all went as it must, else what did not. The form and the link must
    name the local AWS (as the containers reach it, which this machine reaches too)."""
    import requests

    local = local_variables()["AWS_ENDPOINT_URL"] + "/"
    content = b"api-widget's notes"
    status, form = request(base, "POST", "/items/api-widget/attachment", acme, {"content_type": "text/plain"})
    if status != 200 or form["fields"]["key"] != "tenants/acme/items/api-widget/attachment":
        return f"form: {status} {str(form)[:300]}"
    if not form["url"].startswith(local):
        return f"the form posts to {form['url']}, not the local AWS {local}"
    uploaded = requests.post(
        form["url"], data=form["fields"], files={"file": ("notes.txt", content)}, timeout=30
    )
    if uploaded.status_code != 204:
        return f"upload: {uploaded.status_code} {uploaded.text[:300]}"
    status, link = request(base, "GET", "/items/api-widget/attachment", acme)
    if status != 200 or not link["url"].startswith(local):
        return f"link: {status} {str(link)[:300]}"
    downloaded = requests.get(link["url"], timeout=30)
    if downloaded.content != content:
        return f"download: {downloaded.status_code} {downloaded.content[:100]!r}"
    status, answer = request(base, "GET", "/items/api-widget/attachment", globex)
    if status != 404:
        return f"globex's link: {status} {str(answer)[:300]}"
    return ""


# ---------------------------------------------------------------- cleaning up
def _containers() -> set[str]:
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", "label=sam.cli.container.type=lambda"],
        capture_output=True,
        text=True,
        check=False,
    )
    return set(listed.stdout.split())


def remove_containers_of_this_checkout(before: set[str]) -> int:
    """Remove the Lambda containers SAM started for this checkout since ``before`` and left."""
    removed = 0
    for container in _containers() - before:
        mounts = subprocess.run(
            ["docker", "inspect", "-f", "{{range .Mounts}}{{.Source}} {{end}}", container],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if any(Path(source).is_relative_to(ROOT) for source in mounts):
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
            removed += 1
    return removed


def docker_problem() -> str | None:
    """Why Docker cannot run containers here, or None."""
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if info.returncode == 0 else (info.stderr.strip().splitlines() or ["docker info failed"])[-1]


def main() -> int:
    problem = docker_problem()
    if problem:
        print(f"sam-local-test needs Docker: {problem}", file=sys.stderr)
        return 2
    report = Report()
    owned_local_aws = read_state(STATE_DIR) is None
    containers = _containers()
    with tempfile.TemporaryDirectory(prefix="sam-local-test-") as scratch:
        try:
            run_readme_block(report)
            check_receipt(report)
            run_start_api(report, Path(scratch) / "start-api.log")
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            report.result(False, 0.0, "sam local", str(error)[-800:])
        finally:
            removed = remove_containers_of_this_checkout(containers)
            if removed:
                print(f"  removed {removed} container(s) SAM left")
            if owned_local_aws:
                print(f"  {stop(STATE_DIR)}")
    total = time.monotonic() - report.started
    verdict = "all passed" if not report.failures else f"{report.failures} FAILED"
    print(f"sam-local-test: {report.checks} checks, {verdict}, in {total:.0f}s")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
