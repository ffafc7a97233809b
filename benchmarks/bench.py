"""`make bench`: what tenantscope costs per invocation, side by side with the per-request design.

Everything is measured in one run, on moto in-process, and reported as ratios to reference
operations measured in the same run (one RS256 verification, one HMAC), because these machines
are noisy. Prints a table and writes benchmarks/results.md.

The per-request design is the one this project grew from: verify the token and call STS
AssumeRole (with a session policy) on every invocation, then build a boto3 resource on the
returned credentials. On moto, AssumeRole is an in-process call; on AWS it is a network round
trip (typically 10-50 ms), so the gap measured here is the smallest it can be.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/tenantscope-bench-tenant"
TABLE = "tenantscope-bench"
TARGETS = {
    "warm": 1.5,  # x one RS256 verification
    "record": 10.0,  # x one HMAC
    "layer_import_ms": 15.0,
    "layer_mib": 12.0,
}


def timings(fn: Callable[[], Any], *, iterations: int, warmup: int = 200) -> list[float]:
    """Per-call wall times in microseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        start = clock()
        fn()
        samples.append((clock() - start) / 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


class Bench:
    def __init__(self) -> None:
        self.sections: list[tuple[str, list[tuple[str, str, str]]]] = []
        self.checks: list[tuple[str, str, bool]] = []

    def section(self, title: str) -> None:
        self.sections.append((title, []))
        print(title)

    def row(self, what: str, value: str, note: str = "") -> None:
        self.sections[-1][1].append((what, value, note))
        print(f"  {what:<58} {value:>22}  {note}")

    def check(self, what: str, detail: str, ok: bool) -> None:
        self.checks.append((what, detail, ok))


# ---------------------------------------------------------------- 1. warm API invocation
def bench_api(bench: Bench) -> None:
    import boto3

    from tenantscope import XRayTracer, api_handler, set_tracer, tenant_table
    from tenantscope._config import Settings, TableSpec
    from tenantscope._credentials import Boto3Sts, CredentialVendor
    from tenantscope._jwt import JwksCache, StaticJwksSource
    from tenantscope._policy import session_policy
    from tenantscope.testing import LocalIssuer, http_api_event

    issuer = LocalIssuer.generate()
    token = issuer.token("acme", lifetime=3600)
    event = http_api_event(token)
    jwks = JwksCache(StaticJwksSource(issuer.jwks()))
    vendor = CredentialVendor(Boto3Sts(REGION))
    context = type("Ctx", (), {"aws_request_id": "bench"})()

    def bare(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": "ok"}

    def touch_table(event: dict[str, Any], context: Any) -> dict[str, Any]:
        tenant_table(TABLE)  # the scoped Table, as a handler gets it (cached)
        return {"statusCode": 200, "body": "ok"}

    ours = api_handler(jwks=jwks, vendor=vendor)(touch_table)
    assert ours(event, context)["statusCode"] == 200

    import jwt

    key = jwt.PyJWK(issuer.jwk())

    def rs256() -> None:
        jwt.decode(token, key, algorithms=["RS256"], audience=issuer.audience, issuer=issuer.issuer)

    settings = Settings.load(
        environ={},
        role_arn=ROLE_ARN,
        region=REGION,
        tables=(TableSpec(TABLE, "pk"),),
        isolation="session-policy",
    )
    sts = boto3.client("sts", region_name=REGION)

    def per_request(event: dict[str, Any], context: Any) -> dict[str, Any]:
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=issuer.audience, issuer=issuer.issuer)
        creds = sts.assume_role(
            RoleArn=ROLE_ARN,
            RoleSessionName=claims["tenant_id"],
            Policy=session_policy(claims["tenant_id"], settings),
        )["Credentials"]
        boto3.resource(
            "dynamodb",
            region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        ).Table(TABLE)
        return {"statusCode": 200}

    n = 3000
    bare_t = summary(timings(lambda: bare(event, context), iterations=n))
    rs256_t = summary(timings(rs256, iterations=n))
    off_t = summary(timings(lambda: ours(event, context), iterations=n))
    # Before X-Ray patches botocore, which would add its cost to the per-request design's STS calls.
    per_request_t = summary(timings(lambda: per_request(event, context), iterations=300, warmup=20))
    from aws_xray_sdk.core import xray_recorder

    emitter = xray_recorder.emitter
    set_tracer(XRayTracer())
    try:
        before = emitter.sent
        on_t = summary(timings(lambda: ours(event, context), iterations=n))
        emitted = emitter.sent - before
    finally:
        set_tracer(None)
    assert emitted >= n, f"tracing on emitted {emitted} subsegments for {n} calls"

    overhead_off = off_t[0] - bare_t[0]
    bench.section("1. Warm API invocation (us; median / p99)")
    bench.row("bare handler (the floor)", f"{bare_t[0]:.1f} / {bare_t[1]:.1f}")
    bench.row("one RS256 verification (PyJWT)", f"{rs256_t[0]:.1f} / {rs256_t[1]:.1f}")
    bench.row(
        "@api_handler, tracing off",
        f"{off_t[0]:.1f} / {off_t[1]:.1f}",
        f"overhead {overhead_off / rs256_t[0]:.2f}x RS256",
    )
    bench.row(
        "@api_handler, tracing on (X-Ray, captured)",
        f"{on_t[0]:.1f} / {on_t[1]:.1f}",
        f"overhead {(on_t[0] - bare_t[0]) / rs256_t[0]:.2f}x RS256",
    )
    bench.row(
        "per-request: verify + AssumeRole + resource",
        f"{per_request_t[0]:.1f} / {per_request_t[1]:.1f}",
        f"{per_request_t[0] / off_t[0]:.1f}x ours, on in-process moto",
    )
    bench.check(
        "Warm overhead, tracing off",
        f"{overhead_off / rs256_t[0]:.2f}x RS256 (target <= 1.5x)",
        overhead_off / rs256_t[0] <= TARGETS["warm"],
    )


# ---------------------------------------------------------------- 2. SQS batch
def bench_sqs(bench: Bench) -> None:
    from tenantscope import FakeSts, sqs_handler
    from tenantscope._config import Settings
    from tenantscope._credentials import CredentialVendor
    from tenantscope.testing import QUEUE_ARN, RING, signed_sqs_record, sqs_event

    settings = Settings.load(environ={})
    tenants = [f"tenant-{n}" for n in range(10)]
    body = json.dumps({"order_id": "0" * 32, "padding": "x" * 900})  # ~1 KB, as the HMAC reference
    event = sqs_event(
        signed_sqs_record(
            body, tenant_id=t, queue_arn=QUEUE_ARN, ring=RING, settings=settings, message_id=f"m-{i}"
        )
        for i, t in enumerate(tenants)
    )
    vendor = CredentialVendor(FakeSts())
    context = type("Ctx", (), {"aws_request_id": "bench"})()

    def work(record: Any, context: Any) -> None:
        return None

    handler = sqs_handler(ring=RING, vendor=vendor, settings=Settings.load(role_arn=ROLE_ARN))(work)
    assert handler(event, context) == {"batchItemFailures": []}

    def bare_loop() -> None:
        for record in event["Records"]:
            work(record, context)

    key = bytes(32)
    canonical = body.encode()

    def one_hmac() -> None:
        hmac.new(key, canonical, hashlib.sha256).digest()

    n = 2000
    hmac_t = summary(timings(one_hmac, iterations=n * 5))
    bare_t = summary(timings(bare_loop, iterations=n))
    ours_t = summary(timings(lambda: handler(event, context), iterations=n))
    per_record = (ours_t[0] - bare_t[0]) / len(tenants)
    bench.section("2. SQS batch of 10 records, 10 tenants, keys cached (us)")
    bench.row("one HMAC-SHA256 of 1 KB", f"{hmac_t[0]:.2f} / {hmac_t[1]:.2f}")
    bench.row("bare loop over the batch", f"{bare_t[0]:.1f} / {bare_t[1]:.1f}")
    bench.row("@sqs_handler over the batch", f"{ours_t[0]:.1f} / {ours_t[1]:.1f}")
    bench.row("per-record overhead", f"{per_record:.1f}", f"{per_record / hmac_t[0]:.1f}x one HMAC")
    bench.check(
        "Per SQS record overhead",
        f"{per_record / hmac_t[0]:.1f}x one HMAC (target <= 10x)",
        per_record / hmac_t[0] <= TARGETS["record"],
    )


# ---------------------------------------------------------------- 3. STS calls
def bench_sts(bench: Bench) -> None:
    from tenantscope import FakeSts
    from tenantscope._config import Settings
    from tenantscope._credentials import CredentialVendor

    settings = Settings.load(environ={}, role_arn=ROLE_ARN)
    invocations, tenants = 10_000, 100
    clock = [0.0]
    run_seconds = 4 * 3600  # the invocations spread over four hours of (simulated) time
    sts = FakeSts(duration=settings.session_seconds, clock=lambda: clock[0])
    vendor = CredentialVendor(sts, clock=lambda: clock[0])
    for n in range(invocations):
        clock[0] = n * run_seconds / invocations
        vendor.credentials_for(f"tenant-{n % tenants}", settings)
    ours = len(sts.requests)
    refresh = settings.session_seconds - settings.refresh_margin_seconds
    bound = tenants * math.ceil(run_seconds / refresh)
    bench.section("3. STS AssumeRole calls: 10,000 invocations, 100 tenants, over 4 h")
    bench.row("per-request design", f"{invocations:,}")
    bench.row("tenantscope", f"{ours:,}", f"bound: tenants x ceil(4 h / {refresh // 60} min) = {bound}")
    bench.check("STS calls", f"{ours} <= {bound}", ours <= bound)


# ---------------------------------------------------------------- 4. cold start
def import_ms(statement: str, env: dict[str, str], *, own: str | None = None) -> float:
    """Milliseconds spent importing in ``statement``, from -X importtime, median of 3.

    The total of the top-level entries (interpreter start-up included: callers compare
    differences); or, with ``own``, the self time of the modules named ``own`` or ``own.*``.
    """
    runs = []
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=ROOT,
        )
        total = 0
        for line in result.stderr.splitlines():
            columns = line.removeprefix("import time:").split("|")
            if len(columns) != 3 or not columns[1].strip().isdigit():
                continue
            name = columns[2].strip()
            if own is not None:
                total += int(columns[0]) if name == own or name.startswith(own + ".") else 0
            elif not columns[2].startswith("  "):  # top-level: one space; nested: two more per level
                total += int(columns[1])
        runs.append(total / 1000)
    return statistics.median(runs)


def bench_cold_start(bench: Bench) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "tenantscope"), str(ROOT / "functions")]),
    }
    start_up = import_ms("pass", env)
    floor = import_ms("import boto3, jwt", env) - start_up
    floor_xray = import_ms("import boto3, jwt, aws_xray_sdk.core", env) - start_up
    layer = import_ms("import boto3, jwt, tenantscope", env, own="tenantscope")
    bench.section(
        f"4. Cold start: python {platform.python_version()} -X importtime, median of 3 (ms beyond start-up)"
    )
    bench.row("floor: import boto3, jwt", f"{floor:.0f}")
    bench.row("floor with tracing: + aws_xray_sdk.core", f"{floor_xray:.0f}")
    for module in ("app.api", "app.worker", "app.tasks"):
        init = import_ms(f"import {module}", env) - start_up
        full = import_ms(f"import {module}, boto3, jwt", env) - start_up
        bench.row(
            f"{module}: at init / with what its first call loads",
            f"{init:.0f} / {full:.0f}",
            f"floor {floor:.0f}; boto3 and jwt load on first use",
        )
    bench.row("the layer's own modules (self time)", f"{layer:.1f}")
    bench.check(
        "Layer import",
        f"{layer:.1f} ms of its own modules (target <= 15 ms)",
        layer <= TARGETS["layer_import_ms"],
    )


# ---------------------------------------------------------------- 5. layer size
def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_layer_size(bench: Bench) -> None:
    bench.section("5. Built layer, unzipped (sam build)")
    sam = Path(sys.executable).with_name("sam")
    runtime_python = (
        subprocess.run(["python3.13", "-c", "pass"], capture_output=True, check=False)
        if shutil.which("python3.13")
        else None
    )
    if runtime_python is None or runtime_python.returncode != 0 or not sam.exists():
        bench.row("built layer", "not built", "sam build needs python3.13 on PATH and the SAM CLI")
        return
    build = Path(tempfile.mkdtemp(prefix="tenantscope-bench-build-"))
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    subprocess.run(
        [str(sam), "build", "TenantScopeLayer", "--build-dir", str(build)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    ours = tree_bytes(build / "TenantScopeLayer")
    with tempfile.TemporaryDirectory() as sdk:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                sdk,
                "--platform",
                "manylinux2014_aarch64",
                "--python-version",
                "3.13",
                "--only-binary=:all:",
                "boto3",
            ],
            check=True,
            capture_output=True,
        )
        sdk_bytes = tree_bytes(Path(sdk))
    mib = 1024 * 1024
    bench.row("tenantscope layer", f"{ours / mib:.2f} MiB", f"{ours:,} bytes")
    bench.row("the same layer bundling boto3 and botocore", f"{(ours + sdk_bytes) / mib:.2f} MiB")
    bench.check("Built layer", f"{ours / mib:.2f} MiB (target <= 12)", ours / mib <= TARGETS["layer_mib"])
    shutil.rmtree(build, ignore_errors=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def write_results(bench: Bench) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}",
        f"- Python: {platform.python_version()} (benchmarks), layer built for python3.13 arm64",
        "- Written by `make bench` (benchmarks/bench.py); all numbers from one run. Compare ratios:",
        "  absolute times on shared machines vary from run to run.",
        "",
        *(
            line
            for title, rows in bench.sections
            for line in (
                f"## {title}",
                "",
                "| Measurement | Value | Note |",
                "|---|---:|---|",
                *(f"| {what} | {value} | {note} |" for what, value, note in rows),
                "",
            )
        ),
        "## Targets",
        "",
        "| Target | Result | Met |",
        "|---|---|---|",
        *(f"| {what} | {detail} | {'yes' if ok else 'NO'} |" for what, detail, ok in bench.checks),
        "",
    ]
    RESULTS.write_text("\n".join(lines))


def main() -> int:
    sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "tenantscope"), str(ROOT / "functions")]
    from devtools.local_aws import use_local_credentials

    use_local_credentials()
    os.environ.update(
        TENANTSCOPE_TRACING="off",
        TENANTSCOPE_JWT_ISSUER="https://issuer.tenantscope.dev",
        TENANTSCOPE_JWT_AUDIENCE="tenantscope-dev-client",
        TENANTSCOPE_ROLE_ARN=ROLE_ARN,
        TENANTSCOPE_TABLES=f"{TABLE}=pk",
    )
    import logging

    logging.getLogger("tenantscope").setLevel(logging.CRITICAL)
    _capture_xray()
    from moto import mock_aws

    bench = Bench()
    with mock_aws():
        bench_api(bench)
        bench_sqs(bench)
    bench_sts(bench)
    bench_cold_start(bench)
    bench_layer_size(bench)
    write_results(bench)
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    for what, detail, ok in bench.checks:
        print(f"  [{'met ' if ok else 'MISS'}] {what}: {detail}")
    return 0


def _capture_xray() -> None:
    """X-Ray as in Lambda with active tracing, sending to an in-memory emitter instead of UDP."""
    os.environ["_X_AMZN_TRACE_ID"] = (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    )
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter
    from aws_xray_sdk.core.lambda_launcher import LambdaContext

    class Captured(UDPEmitter):
        def __init__(self) -> None:
            super().__init__()
            self.sent = 0

        def send_entity(self, entity: Any) -> None:
            entity.serialize()  # the work an emitter does, without the socket
            self.sent += 1

    xray_recorder.configure(
        context=LambdaContext(), emitter=Captured(), sampling=False, streaming_threshold=0
    )


if __name__ == "__main__":
    raise SystemExit(main())
