"""The sample events in events/ do what they say, run as `sam local invoke` runs them, without Docker.

`make local-aws`'s own code starts a local AWS (moto's server, in a subprocess) with the samples'
data and writes an env.local.json; SAM CLI's own code resolves each function's environment from
it (SAM passes only the variables the template declares); each function then takes its samples in
a fresh process with exactly that environment (devtools.local_invoke). An env file entry the
template does not declare cannot pass unnoticed: the samples need every one.

Fresh samples are generated for the run (signed events expire); the committed ones must be the
same set, in the same shape, signed by the development keys.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import jwt
import pytest
import requests

from devtools import events as samples
from devtools.issuer import dev_issuer
from devtools.local_aws import REGION, ROOT, load_template
from devtools.local_server import free_port
from devtools.sam import read_env_vars, resolved_environment
from tenantscope import StaticKeyRing
from tenantscope._config import Settings
from tenantscope.testing import signed_sqs_record, sqs_event
from tests.e2e.conftest import local_server

COMMITTED = ROOT / "events"
FUNCTIONS = sorted(
    name
    for name, resource in load_template()["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
)
# Written by `make local-aws` and `make env-from-stack`, not by `make events`, and not committed.
MACHINE_ENV_FILES = {samples.LOCAL_ENV, samples.DEPLOYED_ENV}


def shell(home: Path) -> dict[str, str]:
    """The shell `sam local invoke` runs in: no AWS configuration but stand-in credentials."""
    return {
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_CONFIG_FILE": str(home / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def load(directory: Path, name: str) -> Any:
    return json.loads((directory / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("events")
    samples.generate(out)
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`make local-aws` on a free port, its env file naming 127.0.0.1 (the functions run here)."""
    state = tmp_path_factory.mktemp("local-aws")
    env_file = state / samples.LOCAL_ENV
    started = local_server(
        "start",
        "--port",
        str(free_port()),
        "--dir",
        str(state),
        "--env-file",
        str(env_file),
        "--container-host",
        "127.0.0.1",
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield env_file
    finally:
        stopped = local_server("stop", "--dir", str(state))
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture(scope="module")
def environments(local_env: Path, home: Path) -> dict[str, dict[str, str]]:
    """Each function's environment as `sam local invoke --env-vars env.local.json` gives it."""
    env_vars = read_env_vars(local_env)
    return {name: resolved_environment(name, env_vars, shell=shell(home)) for name in FUNCTIONS}


@pytest.fixture(scope="module")
def responses(generated: Path, environments: dict[str, dict[str, str]], home: Path) -> dict[str, Any]:
    """Every sample's response; each function takes its samples in one fresh process, as one warm
    container would, in the order of their names."""
    by_function: dict[str, list[str]] = defaultdict(list)
    for name in sorted(samples.SAMPLES):
        by_function[samples.SAMPLES[name].function].append(name)
    answered: dict[str, Any] = {}
    for function, names in by_function.items():
        ran = subprocess.run(
            [
                sys.executable,
                "-m",
                "devtools.local_invoke",
                function,
                *(str(generated / f"{n}.json") for n in names),
            ],
            cwd=home,
            env={**environments[function], "HOME": str(home), "PYTHONPATH": str(ROOT)},  # devtools
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        lines = ran.stdout.splitlines()
        assert len(lines) == len(names), ran.stdout + ran.stderr[-3000:]
        answered.update(zip(names, map(json.loads, lines), strict=True))
    return answered


@pytest.mark.parametrize("name", sorted(samples.SAMPLES))
def test_each_sample_does_what_it_says(name: str, generated: Path, responses: dict[str, Any]) -> None:
    sample = samples.SAMPLES[name]
    response = responses[name]
    assert samples.outcome(response) == sample.outcome(), response
    kind, _, detail = sample.expect.partition(" ")
    if kind == "failures":
        expected = [] if detail == "none" else detail.split(",")
        assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == expected
    elif kind == "returns":
        assert detail.removeprefix("results.") in response["results"]
        assert response["tenantscope"] == load(generated, name)["tenantscope"]  # carried forward


def test_sam_passes_every_env_file_entry_to_the_functions_that_need_it(
    local_env: Path, environments: dict[str, dict[str, str]], home: Path
) -> None:
    entries = read_env_vars(local_env)["Parameters"]
    for variable, value in entries.items():
        reached = [name for name in FUNCTIONS if environments[name].get(variable) == value]
        assert reached, f"SAM passes {variable} to no function: template.yaml does not declare it"
    # Every function verifies tokens or envelopes and calls AWS: these reach each of them.
    everywhere = [*samples.identity(dev_issuer()), "AWS_ENDPOINT_URL", "TENANTSCOPE_ROLE_ARN"]
    for name in FUNCTIONS:
        missing = [v for v in everywhere if environments[name].get(v) != entries[v]]
        assert not missing, f"SAM does not pass {missing} to {name}"
    # What SAM does with a variable the template does not declare: it drops it, silently.
    undeclared = resolved_environment("ApiFunction", {"Parameters": {"NOT_DECLARED": "x"}}, shell=shell(home))
    assert "NOT_DECLARED" not in undeclared


def test_the_file_samples_reach_acmes_own_files_and_complete_order_writes_its_receipt(
    local_env: Path, responses: dict[str, Any]
) -> None:
    variables = read_env_vars(local_env)["Parameters"]
    prefix = "tenants/acme/"
    # The upload form is for acme's widget's attachment only
    form = json.loads(responses["api_attachment_upload_acme"]["body"])
    assert form["fields"]["key"] == f"{prefix}items/{samples.ITEM_ID}/attachment"
    assert form["fields"]["Content-Type"] == samples.ATTACHMENT_TYPE
    # The links download acme's files from the local AWS
    (attachment, receipt) = samples.seed_files()
    for name, key, file in (
        ("api_attachment_download_acme", f"items/{samples.ITEM_ID}/attachment", attachment),
        ("api_get_receipt_acme", f"receipts/{samples.COMPLETED_ORDER_ID}.json", receipt),
    ):
        url = json.loads(responses[name]["body"])["url"]
        assert url.startswith(variables["AWS_ENDPOINT_URL"] + "/"), url  # nowhere but the local AWS
        assert urlsplit(url).path.endswith(f"/{prefix}{key}"), url
        assert requests.get(url, timeout=10).content == file.body
    # CompleteOrder wrote the receipt of the order it completed, under acme's prefix
    key = f"receipts/{samples.ORDER_ID}.json"
    assert responses["sfn_complete_order"]["results"]["complete_order"] == {
        "status": "COMPLETED",
        "receipt": key,
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=variables["AWS_ENDPOINT_URL"],
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    stored = s3.get_object(Bucket=variables["FILES_BUCKET_NAME"], Key=prefix + key)
    assert stored["ContentType"] == "application/json"
    written = json.loads(stored["Body"].read())
    assert (written["order_id"], written["charge_reference"]) == (samples.ORDER_ID, f"sim-{samples.ORDER_ID}")


def run_worker(environment: dict[str, str], event: dict[str, Any], home: Path) -> tuple[Any, str]:
    path = home / "worker-event.json"
    path.write_text(json.dumps(event))
    ran = subprocess.run(
        [sys.executable, "-m", "devtools.local_invoke", "OrderWorkerFunction", str(path)],
        cwd=home,
        env={**environment, "HOME": str(home), "PYTHONPATH": str(ROOT)},  # devtools
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(ran.stdout), ran.stderr


def test_a_record_whose_order_is_missing_says_so_in_the_log_and_a_foreign_error_stays_redacted(
    environments: dict[str, dict[str, str]], home: Path
) -> None:
    # GIVEN a record, properly sealed for acme, naming an order nobody placed
    environment = environments["OrderWorkerFunction"]
    unknown = "f" * 32
    assert unknown not in {record.record_id for record in samples.seed()}

    def sealed(message_id: str) -> dict[str, Any]:
        return signed_sqs_record(
            json.dumps({"order_id": unknown}),
            tenant_id="acme",
            queue_arn=samples.QUEUE_ARN,
            message_id=message_id,
            ring=StaticKeyRing(samples.dev_ring_document()),
            settings=Settings.load(environ=environment),
        )

    # WHEN the worker takes it
    response, log = run_worker(environment, sqs_event([sealed("m-unknown")]), home)
    # THEN the record fails and the log says which order is missing
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-unknown"}]}
    assert f"SQS record m-unknown failed in its handler: order {unknown} not found for this tenant" in log
    # WHEN the table itself is missing, botocore's error (its message names the table) is logged by type only
    missing_table = "tenantscope-local-NoSuchTable"
    broken = {**environment, "APP_TABLE_NAME": missing_table, "TENANTSCOPE_TABLES": f"{missing_table}=pk"}
    response, log = run_worker(broken, sqs_event([sealed("m-no-table")]), home)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-no-table"}]}
    assert "SQS record m-no-table failed in its handler: ResourceNotFoundException" in log
    assert missing_table not in log


def test_committed_samples_are_the_generated_set_in_the_same_shape(generated: Path) -> None:
    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(v) for v in value]
        return type(value).__name__

    committed = sorted(p.name for p in COMMITTED.glob("*.json") if p.name not in MACHINE_ENV_FILES)
    assert committed == sorted(p.name for p in generated.glob("*.json")), "run `make events`"
    for name in committed:
        if name != "env.json":
            assert shape(json.loads((COMMITTED / name).read_text())) == shape(load(generated, name[:-5])), (
                name
            )
    assert load(COMMITTED, "env") == load(generated, "env")


def test_make_events_refreshes_the_identity_of_the_local_and_deployed_env_files(tmp_path: Path) -> None:
    # GIVEN env files written by make local-aws and make env-from-stack, with an outdated identity
    stale = {"TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS": "60", "APP_TABLE_NAME": "my-table"}
    for name in MACHINE_ENV_FILES:
        samples.write_env_file(tmp_path / name, stale)
    # WHEN the samples are made again
    samples.generate(tmp_path)
    # THEN each has the current identity and keeps its resources
    for name in MACHINE_ENV_FILES:
        variables = load(tmp_path, name.removesuffix(".json"))["Parameters"]
        assert variables == {**samples.identity(dev_issuer()), "APP_TABLE_NAME": "my-table"}


def test_every_sqs_record_carries_the_digest_sqs_gives_its_body() -> None:
    # SQS hashes the body it was sent, a changed one included: a sample that SQS could not deliver
    # would test a case that never happens.
    records = [
        record
        for path in sorted(COMMITTED.glob("sqs_*.json"))
        for record in json.loads(path.read_text())["Records"]
    ]
    assert len(records) >= 10
    for record in records:
        digest = hashlib.md5(record["body"].encode("utf-8"), usedforsecurity=False).hexdigest()
        assert record["md5OfBody"] == digest, record["messageId"]


def test_api_samples_are_requests_to_the_stage_the_template_deploys() -> None:
    # A named stage is served under its name, and API Gateway passes the path as requested: a
    # handler routing on rawPath would see /dev/items/widget, not /items/widget.
    stage = load_template(ROOT / "template.yaml")["Parameters"]["Stage"]["Default"]
    paths = []
    for path in sorted(COMMITTED.glob("api_*.json")):
        event = json.loads(path.read_text())
        assert event["requestContext"]["stage"] == stage, path.name
        assert event["rawPath"] == event["requestContext"]["http"]["path"], path.name
        assert event["rawPath"].startswith(f"/{stage}/"), path.name
        paths.append(event["rawPath"])
    assert "/dev/items/widget" in paths


def test_each_bad_record_names_an_order_its_tenant_has_finished() -> None:
    # Accepted, a bad record would then succeed (the worker has nothing to start), so its failure
    # in a sample shows that its envelope was refused, not that its order was missing.
    finished = {
        (r.tenant, r.record_id)
        for r in samples.seed()
        if r.kind == "ORDER" and r.attributes["status"] in ("COMPLETED", "FAILED")
    }
    for name in samples._BAD_RECORDS:
        records = json.loads((COMMITTED / f"sqs_{name}.json").read_text())["Records"]
        (bad,) = [r for r in records if r["messageId"] == "m-2"]
        named = bad["messageAttributes"].get("tenantscope-tenant", {}).get("stringValue")
        tenant = named if named in ("acme", "globex") else "acme"  # else the one it was sealed for
        assert (tenant, json.loads(bad["body"])["order_id"]) in finished, name


def test_committed_samples_are_named_source_scenario() -> None:
    for path in COMMITTED.glob("*.json"):
        source, _, scenario = path.stem.partition("_")
        assert path.name.startswith("env.") or (source in {"api", "sqs", "sfn"} and scenario), path.name


def test_committed_tokens_are_signed_by_the_development_issuer() -> None:
    issuer = dev_issuer()
    jwks = json.loads(load(COMMITTED, "env")["Parameters"]["TENANTSCOPE_JWKS_URL"].removeprefix("inline:"))
    assert jwks == issuer.jwks()
    for name in samples.SAMPLES:
        if not name.startswith("api_") or name in ("api_missing_token", "api_forged_token"):
            continue
        header = load(COMMITTED, name)["headers"]["authorization"]
        claims = jwt.decode(
            header.split()[1],
            issuer.public_key,
            algorithms=["RS256"],
            audience=issuer.audience,
            options={"verify_exp": False},
        )
        assert claims["iss"] == issuer.issuer


def test_api_samples_carry_the_authorizer_claims_unless_api_gateway_answers_them_itself(
    generated: Path,
) -> None:
    answered_by_the_gateway = set()
    for name in samples.SAMPLES:
        if not name.startswith("api_"):
            continue
        event = load(generated, name)
        authorizer = event["requestContext"].get("authorizer")
        if authorizer is None:
            answered_by_the_gateway.add(name)
            continue
        token = event["headers"]["authorization"].split()[1]
        claims = jwt.decode(token, options={"verify_signature": False})
        assert authorizer["jwt"]["claims"] == {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in claims.items()
        }
    assert answered_by_the_gateway == {"api_missing_token", "api_forged_token", "api_expired_token"}
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in answered_by_the_gateway)
