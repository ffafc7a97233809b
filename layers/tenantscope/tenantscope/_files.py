"""Tenant files: a pooled S3 bucket on the tenant's credentials, behind the object guard.

A tenant's objects live under ``tenants/<id>/`` (:func:`tenant_object_prefix`). The tenant role
reaches only that prefix (IAM, the first lock); every request a tenant client builds also passes
the object guard (``_object_guard.py``, the second lock); and presigned URLs are signed with the
tenant's scoped credentials, for one key of the tenant's, with a bounded lifetime.

>>> from tenantscope import tenant_scope
>>> with tenant_scope("acme"):
...     tenant_bucket("files").key("receipts/order-1.json")
'tenants/acme/receipts/order-1.json'
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any, cast

from ._aws import tenant_client
from ._context import _current_scope_or_raise, in_tenant_scope
from ._data import _tenant_data
from ._errors import CrossTenantAccess, Reason
from ._object_guard import check_relative_key, presigned_post_for
from ._policy import tenant_object_prefix

if TYPE_CHECKING:  # type stubs only (mypy-boto3-s3): nothing at run time
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef
    from s3transfer.futures import TransferFuture
    from s3transfer.manager import TransferManager

__all__ = ["MAX_PRESIGN_SECONDS", "MAX_UPLOAD_BYTES", "TenantBucket", "tenant_bucket", "tenant_s3"]

MAX_PRESIGN_SECONDS = 3600  # a presigned URL never outlives this, nor the credentials that signed it
MAX_UPLOAD_BYTES = 5 * 1024**3  # S3's limit on a single upload
_CONTENT_TYPE = re.compile(r"[a-z]+/[a-z0-9][a-z0-9.+-]{0,126}")


def tenant_s3() -> S3Client:
    """An S3 client on the current tenant's scoped credentials, with the object guard.

    Every request on it must stay under the tenant's prefix of a bucket ``TENANTSCOPE_BUCKETS``
    names; it works only inside the scope of the tenant it was made for. Prefer
    :func:`tenant_bucket`, whose keys are relative to the tenant's prefix.
    """
    data = _tenant_data()
    if data.s3 is None:
        with data.lock:
            if data.s3 is None:
                data.s3 = tenant_client(data.session, "s3")
    return cast("S3Client", data.s3)


def _expiry(expires_in: int) -> int:
    """``expires_in`` if in bounds, cut to the signing credentials' remaining life: a URL never
    claims to live longer than S3 will honour it."""
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 1 <= expires_in <= MAX_PRESIGN_SECONDS
    ):
        raise CrossTenantAccess(Reason.PRESIGN_BOUNDS, f"expiry must be 1 to {MAX_PRESIGN_SECONDS} seconds")
    # The credentials that sign the URL: the ones the vendor holds now.
    remaining = int(_tenant_data().credentials().expiration - time.time())
    return max(1, min(expires_in, remaining))


class _ScopedThreadPool(ThreadPoolExecutor):
    """The thread pool of a managed transfer: each task runs in the scope of the thread that
    submitted it (threads do not inherit context variables), and is refused once that scope has
    ended (:func:`in_tenant_scope`)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(in_tenant_scope(fn), *args, **kwargs)


def _transfer(start: Callable[[TransferManager], TransferFuture]) -> None:
    """Run one managed transfer (s3transfer, as boto3's ``upload_file`` and ``download_file`` do:
    multipart and ranged, on worker threads) on the tenant's client, and wait for it."""
    from s3transfer.manager import TransferManager

    with TransferManager(tenant_s3(), executor_cls=_ScopedThreadPool) as manager:
        start(manager).result()


class TenantBucket:
    """One pooled bucket, seen from the current tenant: every key is relative to its prefix.

    It holds no tenant: each call acts for the tenant of the scope it runs in, so one object can
    live at module level. Keys must be made of S3's safe characters, without empty, ``.`` or
    ``..`` segments (see ``_object_guard.py``).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def key(self, relative_key: str) -> str:
        """The object key of ``relative_key`` for the current tenant."""
        tenant_id = _current_scope_or_raise().context.tenant_id
        return tenant_object_prefix(tenant_id) + check_relative_key(relative_key)

    def put(self, relative_key: str, body: bytes | str, **kwargs: Any) -> dict[str, Any]:
        """PutObject; other arguments (``ContentType``, ``Metadata``, ...) pass through."""
        response = tenant_s3().put_object(Bucket=self.name, Key=self.key(relative_key), Body=body, **kwargs)
        return cast("dict[str, Any]", response)

    def get(self, relative_key: str) -> bytes:
        """The object's bytes."""
        body: bytes = tenant_s3().get_object(Bucket=self.name, Key=self.key(relative_key))["Body"].read()
        return body

    def upload_file(
        self, relative_key: str, filename: str, *, extra_args: dict[str, Any] | None = None
    ) -> None:
        """Upload a local file, in parts on worker threads when it is large (over 8 MB), as
        boto3's ``upload_file`` does; ``extra_args`` (``ContentType``, ``Metadata``, ...) as
        boto3's ``ExtraArgs``."""
        key = self.key(relative_key)
        _transfer(lambda manager: manager.upload(filename, self.name, key, extra_args=extra_args))

    def upload_fileobj(
        self, relative_key: str, fileobj: IO[bytes], *, extra_args: dict[str, Any] | None = None
    ) -> None:
        """Upload a readable binary file object, as :meth:`upload_file` does a file."""
        key = self.key(relative_key)
        _transfer(lambda manager: manager.upload(fileobj, self.name, key, extra_args=extra_args))

    def download_file(self, relative_key: str, filename: str) -> None:
        """Download the object to a local file, in ranged parts on worker threads when it is large."""
        key = self.key(relative_key)
        _transfer(lambda manager: manager.download(self.name, key, filename))

    def download_fileobj(self, relative_key: str, fileobj: IO[bytes]) -> None:
        """Download the object into a writable binary file object."""
        key = self.key(relative_key)
        _transfer(lambda manager: manager.download(self.name, key, fileobj))

    def delete(self, relative_key: str) -> None:
        tenant_s3().delete_object(Bucket=self.name, Key=self.key(relative_key))

    def copy(self, source_key: str, destination_key: str) -> None:
        """Copy one of the tenant's objects to another of its keys."""
        source: CopySourceTypeDef = {"Bucket": self.name, "Key": self.key(source_key)}
        tenant_s3().copy_object(Bucket=self.name, Key=self.key(destination_key), CopySource=source)

    def list(self, relative_prefix: str = "") -> list[str]:
        """The tenant's keys under ``relative_prefix``, relative to the tenant's prefix, in order."""
        tenant_prefix = tenant_object_prefix(_current_scope_or_raise().context.tenant_id)
        if relative_prefix:
            check_relative_key(relative_prefix, prefix=True)
        pages = (
            tenant_s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.name, Prefix=tenant_prefix + relative_prefix)
        )
        return [
            item["Key"].removeprefix(tenant_prefix) for page in pages for item in page.get("Contents", [])
        ]

    def presign_download(self, relative_key: str, *, expires_in: int = 300) -> str:
        """A URL that GETs one of the tenant's objects for ``expires_in`` seconds (at most an hour,
        and no longer than the credentials that sign it: an hour at most, often less)."""
        return tenant_s3().generate_presigned_url(
            "get_object",
            Params={"Bucket": self.name, "Key": self.key(relative_key)},
            ExpiresIn=_expiry(expires_in),
        )

    def presign_upload(
        self, relative_key: str, *, content_type: str, max_bytes: int, expires_in: int = 300
    ) -> dict[str, Any]:
        """A presigned POST (``{"url": ..., "fields": {...}}``) that uploads exactly this key of the
        tenant's, of ``content_type``, of 1 to ``max_bytes`` bytes, within ``expires_in`` seconds.

        S3 checks the policy signed into the form: a browser holding it can write this one object
        and nothing else, and the tenant's scoped credentials are what signed it.
        """
        if not isinstance(content_type, str) or _CONTENT_TYPE.fullmatch(content_type) is None:
            raise CrossTenantAccess(Reason.PRESIGN_BOUNDS, "content type")
        if (
            isinstance(max_bytes, bool)
            or not isinstance(max_bytes, int)
            or not 1 <= max_bytes <= MAX_UPLOAD_BYTES
        ):
            raise CrossTenantAccess(Reason.PRESIGN_BOUNDS, f"size must be 1 to {MAX_UPLOAD_BYTES} bytes")
        key = self.key(relative_key)
        objects = _tenant_data().objects
        # botocore shows the guard a CreateBucket without the key: check the key here, then let
        # exactly this bucket's POST through.
        objects.bucket(self.name)
        objects.key(key)
        expires_in = _expiry(expires_in)
        with presigned_post_for(self.name):
            post = tenant_s3().generate_presigned_post(
                Bucket=self.name,
                Key=key,
                Fields={"Content-Type": content_type},
                # botocore adds the bucket's condition and the signature's own.
                Conditions=[
                    ["eq", "$key", key],
                    ["eq", "$Content-Type", content_type],
                    ["content-length-range", 1, max_bytes],
                ],
                ExpiresIn=expires_in,
            )
        return {**post, "expires_at": int(time.time()) + expires_in}


def tenant_bucket(name: str) -> TenantBucket:
    """The pooled bucket ``name`` with keys relative to the current tenant's prefix.

    >>> # with tenant_scope("acme"):
    >>> #     tenant_bucket("files").put("receipts/order-1.json", b"{}")   # tenants/acme/receipts/...
    """
    return TenantBucket(name)
