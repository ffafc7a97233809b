"""`make local-aws` / `make local-aws-stop`: a background moto server with the stack and the samples'
data, started once, reset when started again, listening on 127.0.0.1 and the Docker bridge only."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from devtools import events as samples
from devtools.issuer import dev_issuer
from devtools.local_aws import REGION
from devtools.local_server import LOOPBACK, bridge_gateway, free_port
from tests.e2e.conftest import local_server

PROC_NET_TCP = Path("/proc/net/tcp")


def start(state_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    return local_server(
        "start", "--port", str(port), "--dir", str(state_dir), "--env-file", str(state_dir / "env.local.json")
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    local_server("stop", "--dir", str(tmp_path))  # whatever a failed test left running


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, str]]:
    """One local AWS for the module: (its state directory, its port, what start printed)."""
    state_dir, port = tmp_path_factory.mktemp("local-aws"), free_port()
    started = start(state_dir, port)
    try:
        assert started.returncode == 0, started.stderr
        yield state_dir, port, started.stdout
    finally:
        local_server("stop", "--dir", str(state_dir))


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a socket listening on ``port`` (Linux's /proc/net/tcp)."""
    found = set()
    for line in PROC_NET_TCP.read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def dynamodb(port: int) -> object:
    return boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=f"http://{LOOPBACK}:{port}",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_start_creates_the_stack_seeds_it_and_writes_the_env_file(running: tuple[Path, int, str]) -> None:
    state_dir, port, printed = running
    (line,) = printed.splitlines()
    assert line.startswith(f"local-aws: moto on port {port} of {LOOPBACK}")
    variables = json.loads((state_dir / "env.local.json").read_text())["Parameters"]
    gateway = bridge_gateway()
    assert variables["AWS_ENDPOINT_URL"] == f"http://{gateway or 'host.docker.internal'}:{port}"
    assert variables["ORDER_QUEUE_URL"].startswith(variables["AWS_ENDPOINT_URL"] + "/")
    assert variables.items() >= samples.identity(dev_issuer()).items()
    # The seed is in the table the env file names, under each record's tenant.
    table = variables["APP_TABLE_NAME"]
    stored = dynamodb(port).scan(TableName=table)["Items"]  # type: ignore[attr-defined]
    keys = {(item["pk"]["S"], item["sk"]["S"]) for item in stored}
    assert keys == {(f"TENANT#{r.tenant}#{r.kind}", r.record_id) for r in samples.seed()}
    # And the files in the bucket it names, under acme's prefix.
    s3 = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=f"http://{LOOPBACK}:{port}",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    listed = s3.list_objects_v2(Bucket=variables["FILES_BUCKET_NAME"])["Contents"]
    assert {o["Key"] for o in listed} == {
        f"tenants/acme/items/{samples.ITEM_ID}/attachment",
        f"tenants/acme/receipts/{samples.COMPLETED_ORDER_ID}.json",
    }
    if PROC_NET_TCP.exists():
        assert listening_addresses(port) == {LOOPBACK, *([gateway] if gateway else [])}


def test_starting_again_resets_the_same_server(running: tuple[Path, int, str]) -> None:
    state_dir, port, _ = running
    first = json.loads((state_dir / "state.json").read_text())
    table = json.loads((state_dir / "env.local.json").read_text())["Parameters"]["APP_TABLE_NAME"]
    client = dynamodb(port)
    client.put_item(TableName=table, Item={"pk": {"S": "TENANT#acme#ITEM"}, "sk": {"S": "left-over"}})  # type: ignore[attr-defined]
    again = start(state_dir, port)
    assert again.returncode == 0, again.stderr
    assert json.loads((state_dir / "state.json").read_text()) == first  # the same process
    stored = client.scan(TableName=table)["Items"]  # type: ignore[attr-defined]
    assert len(stored) == len(samples.seed())  # fresh data: the left-over item is gone


def test_a_port_in_use_by_another_program_is_a_one_line_error(state_dir: Path) -> None:
    with socket.socket() as other:
        other.bind((LOOPBACK, 0))
        other.listen()
        taken = other.getsockname()[1]
        refused = start(state_dir, taken)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"local-aws: port {taken} on {LOOPBACK} is already in use by another program: stop it, "
        "or choose another port with LOCAL_AWS_PORT=<port>"
    ]
    assert not (state_dir / "state.json").exists()


def test_stop_ends_the_server_and_is_idempotent(state_dir: Path) -> None:
    port = free_port()
    assert start(state_dir, port).returncode == 0
    pid = json.loads((state_dir / "state.json").read_text())["pid"]
    stopped = local_server("stop", "--dir", str(state_dir))
    assert stopped.stdout.strip() == f"local-aws: stopped (pid {pid})"
    assert not (state_dir / "state.json").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    assert local_server("stop", "--dir", str(state_dir)).stdout.strip() == "local-aws: not running"
