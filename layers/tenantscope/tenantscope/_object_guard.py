"""The object guard: the second lock on a pooled S3 bucket, in front of every tenant S3 request.

Like the leading-key guard, it runs after boto3 has built the request (the last
``before-parameter-build.s3`` handler, also for presigned URLs), so it sees what is sent. Every
object key, copy source, ``DeleteObjects`` entry and list prefix must lie under the current
tenant's prefix (``tenants/<id>/``, :func:`tenant_object_prefix`); the bucket must be one that
``TENANTSCOPE_BUCKETS`` names; ACLs, grants and object versions are refused (the tenant role is not
granted them); every operation it does not know is refused, bucket-level ones included.

A key must be unambiguous as well as inside the prefix: it is made of S3's documented safe
characters (letters, digits and ``! - _ . * ' ( ) /``), and has no empty, ``.`` or ``..``
segment. So ``..``, ``//``, percent-encoded and Unicode look-alike keys, which another layer (a
CDN, a sync tool, a browser) could read differently from S3, never reach the bucket.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

from ._config import Settings
from ._context import _scope_of
from ._errors import CrossTenantAccess, Reason
from ._policy import tenant_object_prefix

__all__ = ["MAX_KEY_BYTES", "ObjectGuard", "check_relative_key", "presigned_post_for"]

MAX_KEY_BYTES = 1024  # S3's limit on a whole key
_SAFE_KEY = re.compile(r"[A-Za-z0-9!_.*'()/-]+")
_VERSION_SUFFIX = re.compile(r"\?versionId=[^/]+$")
# Parameters a tenant client never sends: ACLs and grants change who can read (and the tenant
# role is not granted them); a version id reaches a version the role is not granted either.
_REFUSED_PARAMETERS = (
    "ACL",
    "GrantFullControl",
    "GrantRead",
    "GrantReadACP",
    "GrantWrite",
    "GrantWriteACP",
    "VersionId",
)

# Where the guard leaves, in a presigned request's botocore context, the HTTP method of the
# operation it checked: generate_presigned_url(HttpMethod=...) changes the method after the guard
# has run, and would make a checked ListObjectsV2 a DeleteBucket on the wire.
_CHECKED_METHOD = "tenantscope_checked_method"

# botocore signs a presigned POST as a CreateBucket request, whose key and conditions the guard
# cannot see: it lets one through only for the bucket TenantBucket.presign_upload has checked,
# in the same thread or task, so a POST policy made by hand on tenant_s3() is refused.
_approved_post: ContextVar[str | None] = ContextVar("tenantscope_approved_post", default=None)


@contextmanager
def presigned_post_for(bucket: str) -> Iterator[None]:
    """Lets the presigned POST of ``bucket`` (whose key and conditions the caller has checked) pass."""
    token = _approved_post.set(bucket)
    try:
        yield
    finally:
        _approved_post.reset(token)


def check_relative_key(key: object, *, prefix: bool = False) -> str:
    """``key`` when it is a well-formed key (or, with ``prefix``, a list prefix) below a tenant's prefix.

    >>> check_relative_key("receipts/2026/order-1.json")
    'receipts/2026/order-1.json'
    """
    if not isinstance(key, str) or _SAFE_KEY.fullmatch(key) is None:
        raise CrossTenantAccess(Reason.UNSAFE_OBJECT_KEY)
    segments = key.split("/")
    if prefix and segments[-1] == "":  # "invoices/" lists a folder
        segments.pop()
    if any(segment in ("", ".", "..") for segment in segments):
        raise CrossTenantAccess(Reason.UNSAFE_OBJECT_KEY)
    return key


class ObjectGuard:
    """Checks a built S3 request against one tenant's prefix; a botocore event handler."""

    def __init__(self, tenant_id: str, settings: Settings) -> None:
        self.tenant_id = tenant_id
        self.settings = settings
        self.prefix = tenant_object_prefix(tenant_id)
        key = self._key_request
        self._checks: dict[str, Callable[[Mapping[str, Any]], None]] = {
            "GetObject": key,
            "HeadObject": key,
            "PutObject": key,
            "DeleteObject": key,
            "CreateMultipartUpload": key,
            "UploadPart": key,
            "CompleteMultipartUpload": key,
            "AbortMultipartUpload": key,
            "ListParts": key,
            "CopyObject": self._copy,
            "UploadPartCopy": self._copy,
            "DeleteObjects": self._delete_objects,
            "ListObjectsV2": self._list,
        }

    def __call__(self, params: Mapping[str, Any], model: Any, context: Any = None, **_: Any) -> None:
        _scope_of(self.tenant_id)
        presigned = context is not None and bool(context.get("is_presign_request"))
        if model.name == "CreateBucket" and presigned:
            approved = _approved_post.get()
            if approved is None or params.get("Bucket") != approved:
                raise CrossTenantAccess(Reason.OPERATION_NOT_ALLOWED, "presigned POST")
            self.bucket(approved)
        else:
            check = self._checks.get(model.name)
            if check is None:
                raise CrossTenantAccess(Reason.OPERATION_NOT_ALLOWED, model.name)
            refused = [name for name in _REFUSED_PARAMETERS if params.get(name) is not None]
            if refused:
                raise CrossTenantAccess(Reason.REFUSED_PARAMETER, refused[0])
            self.bucket(params.get("Bucket"))
            check(params)
        if presigned:
            context[_CHECKED_METHOD] = model.http.get("method")

    @staticmethod
    def check_signed_method(request: Any, **_: Any) -> None:
        """A ``before-sign.s3`` handler: a presigned request keeps the method of the operation the
        guard checked; one it did not check (no method left in its context) is refused."""
        context = request.context
        if context.get("is_presign_request") and request.method != context.get(_CHECKED_METHOD):
            raise CrossTenantAccess(Reason.OPERATION_NOT_ALLOWED, f"presigned {request.method}")

    def bucket(self, name: object) -> str:
        """``name`` when it is a bucket ``TENANTSCOPE_BUCKETS`` names (never an ARN or an access point)."""
        if not isinstance(name, str) or name not in self.settings.buckets:
            raise CrossTenantAccess(Reason.UNCONFIGURED_BUCKET)
        return name

    def key(self, key: object) -> str:
        """``key`` when it is a well-formed key under this tenant's prefix."""
        if not isinstance(key, str) or not key.startswith(self.prefix):
            raise CrossTenantAccess(Reason.FOREIGN_OBJECT)
        check_relative_key(key.removeprefix(self.prefix))
        if len(key.encode()) > MAX_KEY_BYTES:
            raise CrossTenantAccess(Reason.UNSAFE_OBJECT_KEY)
        return key

    def _key_request(self, params: Mapping[str, Any]) -> None:
        self.key(params.get("Key"))

    def _copy(self, params: Mapping[str, Any]) -> None:
        self.key(params.get("Key"))
        source = params.get("CopySource")  # botocore has turned a dict into "bucket/key", percent-encoded
        if not isinstance(source, str) or _VERSION_SUFFIX.search(source):
            raise CrossTenantAccess(Reason.FOREIGN_OBJECT, "copy source")
        # The bucket is read before decoding, the key after it: a percent-encoded '/' never
        # moves the line between them.
        bucket, _, key = source.partition("/")
        self.bucket(bucket)
        self.key(unquote(key))

    def _delete_objects(self, params: Mapping[str, Any]) -> None:
        delete = params.get("Delete")
        objects = delete.get("Objects") if isinstance(delete, Mapping) else None
        if not isinstance(objects, list) or not objects:
            raise CrossTenantAccess(Reason.MALFORMED_REQUEST, "delete objects")
        for entry in objects:
            if not isinstance(entry, Mapping) or entry.get("VersionId") is not None:
                raise CrossTenantAccess(Reason.REFUSED_PARAMETER, "VersionId")
            self.key(entry.get("Key"))

    def _list(self, params: Mapping[str, Any]) -> None:
        prefix = params.get("Prefix")
        if not isinstance(prefix, str) or not prefix.startswith(self.prefix):
            raise CrossTenantAccess(Reason.FOREIGN_OBJECT, "list prefix")
        rest = prefix.removeprefix(self.prefix)
        if rest:
            check_relative_key(rest, prefix=True)
