"""AWS clients: the function's own role from one shared boto3 session; tenants' from sessions
that cannot find any credentials of their own.

Every client tenantscope makes on the function's role (STS, Secrets Manager, KMS, SQS, Step
Functions, DescribeTable, the replay table) comes from :func:`aws_client`, created once per
process and service.

A tenant's clients come from its own botocore session, which has one credential provider: the
tenant's vended credentials, asked for at every request signed (:class:`TenantCredentials`). A
request is signed with them or fails unsent, never with the environment's or the container's
(the function's role), and a client kept for hours, or a unit of work that outlives the
credentials it started with, signs with the ones the vendor holds now. Tenant sessions share the
function session's data loader, so service models are parsed once per process, and copy
botocore's built-in event handlers registered once per process, as botocore's clients do: a new
tenant costs a session of about a millisecond and its clients, not a new set of models and
handlers.

The clients tenantscope makes give up quickly, so that a slow dependency becomes a quick,
retried failure (a 503, a batch item failure, a retried task) rather than an invocation that
hangs until Lambda kills it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._cache import ProcessCache, ProcessValue
from ._config import ENV

if TYPE_CHECKING:
    from ._credentials import ScopedCredentials

__all__ = [
    "aws_client",
    "aws_error_code",
    "base_session",
    "tenant_boto3_session",
    "tenant_client",
    "tenant_resource",
]

# boto3 sessions are not safe to create clients from concurrently, and tenant sessions share the
# function session's data loader: every creation holds this lock.
_lock = threading.RLock()
_session: ProcessValue[Any] = ProcessValue(_lock)
_builtin_handlers: ProcessValue[Any] = ProcessValue(_lock)
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


class TenantCredentials:
    """botocore credentials that are, at every request signed, a tenant's current scoped
    credentials: ``current`` returns them (the vendor's cache, which replaces them a margin before
    they expire) or raises :class:`CredentialsUnavailable`, which fails the request rather than
    sign it with anything else. It is also its session's one credential provider (``load``).

    ``repr`` shows no secret; nothing here holds one beyond the call that signs.
    """

    METHOD = method = "tenantscope"  # where botocore's logs say the credentials came from
    account_id = None

    def __init__(self, current: Callable[[], ScopedCredentials]) -> None:
        self.current = current

    def load(self) -> TenantCredentials:
        return self

    def get_frozen_credentials(self) -> Any:
        from botocore.credentials import ReadOnlyCredentials

        scoped = self.current()
        return ReadOnlyCredentials(scoped.access_key_id, scoped.secret_access_key, scoped.session_token)

    @property
    def access_key(self) -> str:
        return str(self.get_frozen_credentials().access_key)

    @property
    def secret_key(self) -> str:
        return str(self.get_frozen_credentials().secret_key)

    @property
    def token(self) -> str:
        return str(self.get_frozen_credentials().token)

    def get_deferred_property(self, name: str) -> Callable[[], Any]:
        return lambda: getattr(self, name, None)


def _new_builtin_handlers() -> Any:
    from botocore.hooks import HierarchicalEmitter
    from botocore.session import Session as BotocoreSession

    handlers = HierarchicalEmitter()
    BotocoreSession(event_hooks=handlers)  # registers botocore's built-in handlers on it
    return handlers


def tenant_boto3_session(region: str | None, credentials: Callable[[], ScopedCredentials]) -> Any:
    """A new boto3 session whose one credential provider is ``credentials``: a tenant's current
    scoped credentials, asked for at every request signed."""
    import copy

    import boto3
    from botocore.credentials import CredentialResolver
    from botocore.session import Session as BotocoreSession

    shared_loader = base_session()._session.get_component("data_loader")
    # Registering botocore's ~130 built-in handlers costs ~7 ms a session; a copy of them, as
    # botocore makes for each of its clients, costs a twentieth of that.
    handlers = copy.copy(_builtin_handlers.get(_new_builtin_handlers))
    botocore_session = BotocoreSession(event_hooks=handlers, include_builtin_handlers=False)
    # No provider but the tenant's: not the environment, not a profile, not the container endpoint.
    providers: list[Any] = [TenantCredentials(credentials)]
    botocore_session.register_component("credential_provider", CredentialResolver(providers=providers))
    botocore_session.register_component("data_loader", shared_loader)
    with _lock:
        # boto3 appends its data path to the (shared) loader on every new Session: keep one copy.
        search_paths = list(shared_loader.search_paths)
        session = boto3.session.Session(botocore_session=botocore_session, region_name=region)
        shared_loader.search_paths[:] = search_paths
    return session


def tenant_resource(session: Any, service: str) -> Any:
    """A boto3 resource of a tenant session, whose client gives up quickly, as the function's do."""
    with _lock:
        return session.resource(service, config=_config(2))


def _configured_s3_endpoint() -> bool:
    if os.environ.get(ENV.IGNORE_CONFIGURED_ENDPOINT_URLS, "").strip().lower() == "true":
        return False
    return bool(os.environ.get(ENV.S3_ENDPOINT_URL) or os.environ.get(ENV.ENDPOINT_URL))


def tenant_client(session: Any, service: str) -> Any:
    """A client of a tenant session that gives up quickly, as the function's do; S3's presigned
    URLs are signed with SigV4, whatever the region, for the bucket's regional host."""
    from botocore.config import Config

    config = _config(2)
    if service == "s3":
        config = config.merge(Config(signature_version="s3v4"))
        # botocore presigns for the global s3.amazonaws.com unless told the addressing: that
        # host redirects (307) a bucket of another region for up to a day after it is made,
        # which breaks a signature over the host, and answers 400 for a bucket of a region
        # opened since March 2019. Virtual addressing presigns for the regional host (a bucket
        # with dots in its name still gets the path). A configured endpoint (a local AWS) keeps
        # botocore's addressing: a bucket's name before its host would not resolve there.
        if not _configured_s3_endpoint():
            config = config.merge(Config(s3={"addressing_style": "virtual"}))
    with _lock:
        return session.client(service, config=config)
