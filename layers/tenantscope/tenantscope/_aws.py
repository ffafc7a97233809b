"""AWS clients: the function's own role from one shared boto3 session; tenants' from a session
that cannot find any credentials of its own.

Every client tenantscope makes on the function's role (STS, Secrets Manager, KMS, SQS, Step
Functions, DescribeTable, the replay table) comes from :func:`aws_client`, created once per
process and service.

Tenant clients come from botocore sessions with no credential providers: they have the tenant's
scoped credentials or none at all, never the environment's or the container's (the function's
role), whatever they are given. They share the function session's data loader, so service
models are parsed once per process: a new tenant costs a client, not a new set of models.

Timeouts are short so that a slow dependency becomes a quick, retried failure (a 503, a batch
item failure, a retried task) rather than an invocation that hangs until Lambda kills it.
"""

from __future__ import annotations

import threading
from typing import Any

from ._cache import ProcessCache, ProcessValue

__all__ = [
    "aws_client",
    "aws_error_code",
    "base_session",
    "tenant_boto3_session",
    "tenant_client",
    "tenant_resource",
]

# boto3 sessions are not safe to create clients from concurrently: every creation holds this lock.
_lock = threading.RLock()
_session: ProcessValue[Any] = ProcessValue(_lock)
_tenant_base: ProcessValue[Any] = ProcessValue(_lock)
_clients: ProcessCache[tuple[str, str | None, int], Any] = ProcessCache(lock=_lock)


def aws_error_code(error: Any) -> str:
    """The AWS error code of a botocore ``ClientError``, or ``"no error code"`` when its response
    names none: what a log line, an error message and a decision on the code all use."""
    return str(error.response.get("Error", {}).get("Code") or "no error code")


def _config(attempts: int) -> Any:
    from botocore.config import Config

    # total_max_attempts counts the first call; botocore's "max_attempts" would count retries only
    # (max_attempts=1 is two calls).
    return Config(
        connect_timeout=1, read_timeout=3, retries={"total_max_attempts": attempts, "mode": "standard"}
    )


def _new_session() -> Any:
    import boto3  # lazily: ~110 ms, paid only by code that calls AWS

    from ._logging import drop_aws_payload_lines

    drop_aws_payload_lines()  # before the first call: its DEBUG lines would hold credentials
    return boto3.session.Session()


def base_session() -> Any:
    """The process's boto3 session (default credentials: the function's own role)."""
    return _session.get(_new_session)


def aws_client(service: str, region: str | None, *, attempts: int = 2) -> Any:
    """A client for ``service`` on the function's own role, made once per process.

    ``attempts`` is botocore's total attempts per call (1: the caller retries itself).
    """
    return _clients.get(
        (service, region, attempts),
        lambda: base_session().client(service, region_name=region, config=_config(attempts)),
    )


def tenant_boto3_session(region: str | None, credentials: Any = None) -> Any:
    """A new boto3 session whose botocore session has no credential providers.

    With ``credentials`` (a tenant's :class:`ScopedCredentials`) they are its credentials;
    without, clients made from it get only what is passed to them explicitly.
    """
    import boto3
    from botocore.credentials import CredentialResolver
    from botocore.session import Session as BotocoreSession

    shared_loader = base_session()._session.get_component("data_loader")
    botocore_session = BotocoreSession()
    # No provider at all: not the environment, not a profile, not the container endpoint.
    botocore_session.register_component("credential_provider", CredentialResolver(providers=[]))
    botocore_session.register_component("data_loader", shared_loader)
    if credentials is not None:
        botocore_session.set_credentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        )
    with _lock:
        # boto3 appends its data path to the (shared) loader on every new Session: keep one copy.
        search_paths = list(shared_loader.search_paths)
        session = boto3.session.Session(botocore_session=botocore_session, region_name=region)
        shared_loader.search_paths[:] = search_paths
    return session


def tenant_resource(service: str, region: str | None, credentials: Any) -> Any:
    """A boto3 resource for ``service`` on a tenant's scoped credentials (never the function's)."""
    return _on_tenant_credentials("resource", service, region, credentials)


def tenant_client(service: str, region: str | None, credentials: Any) -> Any:
    """A boto3 client for ``service`` on a tenant's scoped credentials (never the function's)."""
    return _on_tenant_credentials("client", service, region, credentials)


def _on_tenant_credentials(kind: str, service: str, region: str | None, credentials: Any) -> Any:
    from botocore.config import Config

    config = _config(2)
    if service == "s3":  # presigned URLs are signed with SigV4, whatever the region
        config = config.merge(Config(signature_version="s3v4"))
    session = _tenant_base.get(lambda: tenant_boto3_session(None))
    with _lock:
        return getattr(session, kind)(
            service,
            region_name=region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=config,
        )
