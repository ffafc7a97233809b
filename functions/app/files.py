"""Tenant files in the pooled bucket: an item's attachment and an order's receipt.

Keys are relative to the current tenant's prefix (``tenants/<id>/``, added by the layer):
``items/<item id>/attachment`` and ``receipts/<order id>.json``. The bucket is FILES_BUCKET_NAME;
without it every call fails, as a missing table name does.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tenantscope import TenantBucket, tenant_bucket

# What an attachment may be: a browser uploads it straight to S3 with the form, so the form
# itself is the only place to bound it.
ATTACHMENT_TYPES = ("application/pdf", "image/jpeg", "image/png", "text/plain")
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
LINK_SECONDS = 300  # how long an upload form or a download link lasts


def bucket() -> TenantBucket:
    return tenant_bucket(os.environ["FILES_BUCKET_NAME"])


def attachment_key(item_id: str) -> str:
    return f"items/{item_id}/attachment"


def receipt_key(order_id: str) -> str:
    return f"receipts/{order_id}.json"


def exists(key: str) -> bool:
    """Whether the tenant has the object ``key``. A listing, not HeadObject: S3 answers HeadObject
    on a missing key 404 only to a caller it would let list the bucket without a prefix, and 403
    to the tenant role, which may list only its own prefix."""
    return key in bucket().list(key)


def upload_form(key: str, content_type: str) -> dict[str, Any]:
    """A presigned POST that uploads ``key`` of ``content_type``, at most MAX_ATTACHMENT_BYTES."""
    return bucket().presign_upload(
        key, content_type=content_type, max_bytes=MAX_ATTACHMENT_BYTES, expires_in=LINK_SECONDS
    )


def download_url(key: str) -> str:
    return bucket().presign_download(key, expires_in=LINK_SECONDS)


def delete(key: str) -> None:
    bucket().delete(key)


def put_receipt(order_id: str, receipt: dict[str, Any]) -> str:
    """Write the order's receipt; its key."""
    key = receipt_key(order_id)
    bucket().put(key, json.dumps(receipt, sort_keys=True), ContentType="application/json")
    return key
