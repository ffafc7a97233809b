"""`make local-aws` / `make local-aws-stop`: the stack of template.yaml on a local AWS, for `sam local`.

    python -m devtools.local_server start [--port PORT]
    python -m devtools.local_server stop

``start`` runs moto's server in the background (state and log in .local-aws/), listening on
127.0.0.1 and on the Docker bridge gateway, where the containers of ``sam local invoke`` reach the
host, and on no other address. It then creates the template's resources in it with the same
template reader as the in-process local AWS (devtools/local_aws.py), writes the data and files
the sample events assume (devtools.events.seed and seed_files, through the sample application's
own code) and writes events/env.local.json: the development identity, the local stack's
resources (named by its outputs, as ``make env-from-stack`` does for a deployed stack) and the
endpoint. Run again, it resets the same server and does all of it again. Without Docker it
listens on 127.0.0.1 only.

The port is LOCAL_AWS_PORT (default 5089); the address the containers use to reach it is the
bridge gateway, or LOCAL_AWS_CONTAINER_HOST when set.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from devtools.events import EVENTS_DIR, LOCAL_ENV, identity, seed, seed_files, write_env_file
from devtools.issuer import dev_issuer
from devtools.local_aws import LOCAL_PARAMETERS, ROOT, LocalAws, use_local_credentials
from devtools.stack_env import stack_environment

STATE_DIR = ROOT / ".local-aws"
DEFAULT_PORT = 5089
LOOPBACK = "127.0.0.1"
# Docker Desktop's name for the host; Linux containers reach it at the bridge gateway instead.
DOCKER_DESKTOP_HOST = "host.docker.internal"
STARTUP_SECONDS = 30
SIOCGIFADDR = 0x8915


class LocalAwsError(Exception):
    """A one-line reason why the local AWS could not be started or stopped."""


@dataclass(frozen=True)
class State:
    pid: int
    port: int
    hosts: list[str]

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


# ---------------------------------------------------------------- addresses
def _docker0_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", b"docker0"))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def bridge_gateway() -> str | None:
    """The host's address on Docker's default bridge, where containers reach the host; None
    without one. Docker reports it on most versions; otherwise it is docker0's address."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        inspected = subprocess.run(
            ["docker", "network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if inspected.returncode == 0 and inspected.stdout.strip():
            return inspected.stdout.strip()
    return _docker0_address()


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will bind it
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _answers(state: State) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, state.port), timeout=1):
        return True
    return False


# ---------------------------------------------------------------- the background server
def serve(port: int, hosts: list[str]) -> None:
    """moto's server on ``port`` of each of ``hosts`` (one shared state) until SIGTERM."""
    from moto.server import ThreadedMotoServer

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    servers = [ThreadedMotoServer(ip_address=host, port=port, verbose=False) for host in hosts]
    for server in servers:
        server.start()
    print(f"serving on port {port} of {', '.join(hosts)}", flush=True)
    stop.wait()
    for server in servers:
        server.stop()


def _state_path(state_dir: Path) -> Path:
    return state_dir / "state.json"


def read_state(state_dir: Path) -> State | None:
    """The server this checkout started, if it is still running."""
    try:
        state = State(**json.loads(_state_path(state_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    listed = subprocess.run(["ps", "-o", "command=", "-p", str(state.pid)], capture_output=True, text=True)
    return state if "devtools.local_server serve" in listed.stdout else None


def _spawn(state_dir: Path, port: int, hosts: list[str]) -> State:
    for host in hosts:
        if not _port_free(host, port):
            raise LocalAwsError(
                f"port {port} on {host} is already in use by another program: stop it, "
                "or choose another port with LOCAL_AWS_PORT=<port>"
            )
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "server.log").open("w")
    command = [sys.executable, "-m", "devtools.local_server", "serve", "--port", str(port)]
    for host in hosts:
        command += ["--host", host]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state = State(process.pid, port, hosts)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not _answers(state):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise LocalAwsError(f"the server did not start (see {state_dir / 'server.log'})")
        time.sleep(0.1)
    _state_path(state_dir).write_text(json.dumps(asdict(state)))
    return state


def _reset(state: State) -> None:
    request = urllib.request.Request(f"{state.endpoint}/moto-api/reset", method="POST")  # noqa: S310 - local http
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def stop(state_dir: Path = STATE_DIR) -> str:
    """Stop the server this checkout started; a line saying what was done."""
    state = read_state(state_dir)
    _state_path(state_dir).unlink(missing_ok=True)
    if state is None:
        return "local-aws: not running"
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)
    return f"local-aws: stopped (pid {state.pid})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------- the stack and its data
def _create_stack(endpoint: str) -> LocalAws:
    use_local_credentials()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    return LocalAws(LOCAL_PARAMETERS).create()


def _outputs(aws: LocalAws) -> dict[str, str]:
    return {
        name: str(aws.resolve(output["Value"]))
        for name, output in aws.template.get("Outputs", {}).items()
        if "Condition" not in output or aws.conditions[output["Condition"]]
    }


def _seed(variables: dict[str, str]) -> tuple[int, int]:
    """Write the samples' data as the sample application writes it, each record and file as its
    tenant; (records, files) written."""
    from tenantscope import tenant_scope
    from tenantscope.testing import reset_process_state

    os.environ.update(variables)
    reset_process_state()
    functions = str(ROOT / "functions")
    if functions not in sys.path:
        sys.path.insert(0, functions)
    from app import files, items

    records = seed()
    for record in records:
        with tenant_scope(record.tenant):
            items.put(record.kind, record.record_id, record.attributes)
    seeded = seed_files()
    for file in seeded:
        key = (
            files.attachment_key(file.record_id) if file.kind == "ITEM" else files.receipt_key(file.record_id)
        )
        with tenant_scope(file.tenant):
            files.bucket().put(key, file.body, ContentType=file.content_type)
    return len(records), len(seeded)


def start(
    port: int = DEFAULT_PORT,
    *,
    state_dir: Path = STATE_DIR,
    env_file: Path = EVENTS_DIR / LOCAL_ENV,
    container_host: str | None = None,
) -> str:
    """Start (or reset) the local AWS, create the stack, seed it, write ``env_file``; a summary."""
    gateway = bridge_gateway()
    hosts = [LOOPBACK, *([gateway] if gateway else [])]
    state = read_state(state_dir)
    if state is not None and (state.port, state.hosts) == (port, hosts):
        _reset(state)
    else:
        if state is not None:
            stop(state_dir)
        state = _spawn(state_dir, port, hosts)
    aws = _create_stack(state.endpoint)
    resources = stack_environment(_outputs(aws))
    dev_identity = identity(dev_issuer())
    records, seeded = _seed({**dev_identity, **resources})
    # The functions run in containers: every address of the local AWS becomes the one they reach.
    container_endpoint = f"http://{container_host or gateway or DOCKER_DESKTOP_HOST}:{port}"
    reachable = {name: value.replace(state.endpoint, container_endpoint) for name, value in resources.items()}
    write_env_file(env_file, {**dev_identity, **reachable, "AWS_ENDPOINT_URL": container_endpoint})
    created = [name for name in aws.physical if name not in aws.skipped]
    return (
        f"local-aws: moto on port {port} of {', '.join(hosts)} (pid {state.pid}): {len(created)} resources "
        f"from template.yaml, {records} sample records and {seeded} files; wrote {env_file} "
        f"(endpoint {container_endpoint})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="start or reset the local AWS and write env.local.json")
    begin.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_AWS_PORT", DEFAULT_PORT)))
    begin.add_argument("--dir", type=Path, default=STATE_DIR, help="where its state and log are kept")
    begin.add_argument("--env-file", type=Path, default=EVENTS_DIR / LOCAL_ENV)
    begin.add_argument("--container-host", default=os.environ.get("LOCAL_AWS_CONTAINER_HOST"))
    end = commands.add_parser("stop", help="stop it")
    end.add_argument("--dir", type=Path, default=STATE_DIR)
    run = commands.add_parser("serve", help="the server itself (run by start)")
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--host", action="append", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            serve(args.port, args.host)
        elif args.command == "stop":
            print(stop(args.dir))
        else:
            print(
                start(
                    args.port, state_dir=args.dir, env_file=args.env_file, container_host=args.container_host
                )
            )
    except LocalAwsError as error:
        print(f"local-aws: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
