"""AWS clients on the function's own role: one shared boto3 session, short timeouts.

Every client tenantscope makes on the function's role (STS, Secrets Manager, KMS, SQS, Step
Functions, DescribeTable, the replay table) comes from here, created once per process and
service. Tenant resources are built from the same session with the tenant's credentials, so
they share its loaded service models: a new tenant costs a client, not a new botocore session.

Timeouts are short so that a slow dependency becomes a quick, retried failure (a 503, a batch
item failure, a retried task) rather than an invocation that hangs until Lambda kills it.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["aws_client", "base_session", "reset_clients", "tenant_resource"]

_lock = threading.Lock()
_session: Any = None
_clients: dict[tuple[str, str | None, int], Any] = {}


def _config(attempts: int) -> Any:
    from botocore.config import Config

    return Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": attempts, "mode": "standard"})


def base_session() -> Any:
    """The process's boto3 session (default credentials: the function's own role)."""
    global _session
    if _session is None:
        with _lock:
            if _session is None:
                import boto3  # lazily: ~110 ms, paid only by code that calls AWS

                _session = boto3.session.Session()
    return _session


def aws_client(service: str, region: str | None, *, attempts: int = 2) -> Any:
    """A client for ``service`` on the function's own role, made once per process.

    ``attempts`` is botocore's total attempts per call (1: the caller retries itself).
    """
    key = (service, region, attempts)
    client = _clients.get(key)
    if client is None:
        session = base_session()
        with _lock:  # boto3 sessions are not safe to create clients from concurrently
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = session.client(service, region_name=region, config=_config(attempts))
    return client


def tenant_resource(service: str, region: str | None, credentials: Any) -> Any:
    """A boto3 resource for ``service`` on a tenant's scoped credentials (never the function's)."""
    session = base_session()
    with _lock:
        return session.resource(
            service,
            region_name=region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=_config(2),
        )


def reset_clients() -> None:
    """Forget every client (tests that switch between mocked AWS endpoints)."""
    global _session
    with _lock:
        _session = None
        _clients.clear()
