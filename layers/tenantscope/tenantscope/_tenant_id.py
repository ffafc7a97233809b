"""The tenant id grammar, applied once before an id reaches a policy, a tag, a key or a log."""

from __future__ import annotations

import re

from ._errors import InvalidTenantId, Reason

__all__ = ["TENANT_ID", "TENANT_ID_FORMAT", "TENANT_ID_PATTERN", "validate_tenant_id"]

# 2 to 64 characters of lowercase ASCII letters, digits and inner hyphens.
# - The minimum of 2 and maximum of 64 fit STS RoleSessionName and SourceIdentity,
#   which carry the id verbatim so that CloudTrail shows the tenant.
# - No '*' or '?': they are IAM StringLike wildcards. No '#': it is the key delimiter,
#   so "acme" can never claim the keys of "acme#x". No ':', '/', '\\', '.', whitespace,
#   control or non-ASCII characters: no path, ARN or look-alike tricks.
TENANT_ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}[a-z0-9]"
# The pattern in words, for the errors that refuse an id: they say what an id must be.
TENANT_ID_FORMAT = "2 to 64 lowercase letters, digits and inner hyphens"
# The compiled grammar: validate_tenant_id, and the envelope's check of the three fields it reads
# at once, which names the fault itself.
TENANT_ID = re.compile(TENANT_ID_PATTERN)


def validate_tenant_id(value: object) -> str:
    """Return ``value`` if it is a valid tenant id, else raise :class:`InvalidTenantId`.

    >>> validate_tenant_id("acme-corp")
    'acme-corp'
    >>> validate_tenant_id("Acme")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tenantscope.InvalidTenantId: tenant id does not match the grammar (2 to 64 lowercase letters, ...)
    """
    # fullmatch on str only: re's '$' would accept a trailing newline, and
    # str subclasses could override comparison.
    if type(value) is not str:
        raise InvalidTenantId(Reason.INVALID_TENANT_ID, f"not a string; {TENANT_ID_FORMAT}")
    if TENANT_ID.fullmatch(value) is None:
        raise InvalidTenantId(Reason.INVALID_TENANT_ID, TENANT_ID_FORMAT)
    return value
