"""A small, exact evaluator of the subset of IAM policy semantics tenantscope relies on.

moto ignores session policies, session tags and every condition operator but StringEquals
(see /work/shared/FACTS.md), so the tenant isolation policies are tested as data with this.

Modelled, following the IAM policy evaluation logic for ONE policy document:

- ``Effect`` Allow/Deny. An explicit Deny wins; with no matching Allow the answer is an implicit deny.
- ``Action`` / ``NotAction`` with ``*`` and ``?`` wildcards, case-insensitive (IAM action names are).
- ``Resource`` / ``NotResource`` with ``*`` and ``?`` wildcards, case-sensitive, ``*`` crossing ``:``
  and ``/``.
- ``Principal: "*"`` (a resource policy's statement for everyone); other principals are not modelled.
- ``Condition`` operators ``StringEquals``, ``StringLike``, ``Null``, ``Bool`` and the ARN operators
  ``ArnEquals``/``ArnLike`` (both take wildcards) and ``ArnNotEquals``/``ArnNotLike`` (TRUE also
  when the key is absent), and the set qualifiers ``ForAllValues:`` and ``ForAnyValue:`` on the two
  string operators:

  - ``StringLike`` is the IAM glob: ``*`` matches any run of characters (also none), ``?`` exactly one,
    every other character is literal; case-sensitive; the whole value must match.
  - Without a qualifier a key must be present with a single value; any policy value may match.
  - ``ForAllValues:`` is TRUE when every request value matches some policy value, and therefore
    vacuously TRUE when the key is absent or empty. This is why the tenant policies also carry
    ``"Null": {"dynamodb:LeadingKeys": "false"}``.
  - ``ForAnyValue:`` is TRUE when some request value matches some policy value (FALSE when absent).
  - ``Null`` ``"true"`` means the key is absent, ``"false"`` that it is present. An empty list in the
    request context counts as absent.
  - Several operators, and several keys under one operator, are ANDed; several values of one key are
    ORed. Condition key names are case-insensitive, values are not.

- Policy variables ``${aws:PrincipalTag/<key>}`` (from ``principal_tags``) and ``${<context key>}``
  (a single-valued key of ``context``) in ``Resource`` and condition values, plus the escapes
  ``${*}``, ``${?}`` and ``${$}``. Variables are only substituted under ``"Version": "2012-10-17"``;
  otherwise ``${...}`` is literal text, as in IAM. A value that names a missing variable matches
  nothing. Conservatively, a substituted value's own ``*`` and ``?`` act as wildcards in ``StringLike``
  (the worst case; tenant ids can contain neither).

NOT modelled (unsupported input raises :class:`NotModelled` rather than guessing): other condition
operators (StringNotEquals, IfExists, Numeric, Date, IpAddress...), default values in policy
variables, principals other than ``"*"`` and ``NotPrincipal``, cross-account resource policies,
permission boundaries, SCPs/RCPs, the combination of several policy types beyond
:func:`allowed_by_all`, multi-valued keys under an unqualified operator, case-insensitive tag keys,
and service-specific request validation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from tenantscope._policy import tenant_statements

__all__ = [
    "TENANT_TAG_VARIABLE",
    "Decision",
    "NotModelled",
    "abac_policy",
    "allowed_by_all",
    "decide",
    "glob_match",
    "is_allowed",
]

Decision = Literal["Allow", "ExplicitDeny", "ImplicitDeny"]
ContextValue = str | Sequence[str]

TENANT_TAG_VARIABLE = "${aws:PrincipalTag/TenantId}"
_VARIABLES_VERSION = "2012-10-17"
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}
_STRING_OPERATORS = ("StringEquals", "StringLike")
_ARN_OPERATORS = ("ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike")
_QUALIFIERS = ("ForAllValues", "ForAnyValue")


class NotModelled(ValueError):
    """The policy or request uses IAM semantics this evaluator does not model."""


def abac_policy(table_arns: Iterable[str], bucket_arns: Iterable[str] = ()) -> dict[str, Any]:
    """The tenant role's identity policy for the session-tags strategy (what the SAM template carries).

    The session policy's statements (``_policy.tenant_statements``) with the session tag
    ``TenantId`` in place of the tenant id: item actions on each table and its indexes, object
    actions on the tenant's prefix of each bucket, listings only under that prefix.
    """
    statements = tenant_statements(TENANT_TAG_VARIABLE, list(table_arns), list(bucket_arns))
    return {"Version": "2012-10-17", "Statement": statements}


# --- patterns ---------------------------------------------------------------------------------


def _glob_regex(text: str, *, wildcards: bool) -> str:
    if not wildcards:
        return re.escape(text)
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _compile(
    pattern: str,
    *,
    wildcards: bool,
    variables: bool,
    ignore_case: bool = False,
    tags: Mapping[str, str],
    context: Mapping[str, list[str]],
) -> re.Pattern[str] | None:
    """A regex for one policy value, or None when it names a missing policy variable."""
    parts: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(pattern) if variables else ():
        parts.append(_glob_regex(pattern[position : match.start()], wildcards=wildcards))
        position = match.end()
        name = match.group(1).strip()
        if name in _ESCAPES:
            parts.append(re.escape(_ESCAPES[name]))  # ${*} is a literal '*'
            continue
        if "," in name:
            raise NotModelled(f"policy variable default values are not modelled: {match.group(0)}")
        value = _variable(name, tags, context)
        if value is None:
            return None
        parts.append(_glob_regex(value, wildcards=wildcards))  # conservative: see module docstring
    parts.append(_glob_regex(pattern[position:], wildcards=wildcards))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def _variable(name: str, tags: Mapping[str, str], context: Mapping[str, list[str]]) -> str | None:
    prefix = "aws:principaltag/"
    if name.lower().startswith(prefix):
        return tags.get(name[len(prefix) :])
    values = context.get(name.lower(), [])
    if len(values) > 1:
        raise NotModelled(f"policy variable {name!r} has several values")
    return values[0] if values else None


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM StringLike: ``*`` any run, ``?`` one character, the rest literal; a full match.

    >>> glob_match("TENANT#acme#*", "TENANT#acme#ITEM#1"), glob_match("TENANT#acme#*", "TENANT#acme1")
    (True, False)
    """
    regex = _compile(pattern, wildcards=True, variables=False, ignore_case=ignore_case, tags={}, context={})
    assert regex is not None
    return regex.fullmatch(value) is not None


# --- evaluation -------------------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    """A policy element that may be one value or a list of them, as a list."""
    return list(value) if isinstance(value, list | tuple) else [value]


def _normalise_context(context: Mapping[str, ContextValue] | None) -> dict[str, list[str]]:
    # Condition key names are case-insensitive; an empty list counts as an absent key.
    normalised: dict[str, list[str]] = {}
    for key, value in (context or {}).items():
        values = [value] if isinstance(value, str) else list(value)
        if values:
            normalised[key.lower()] = values
    return normalised


class _Request:
    def __init__(
        self,
        action: str,
        resource: str,
        context: Mapping[str, ContextValue] | None,
        principal_tags: Mapping[str, str] | None,
    ) -> None:
        self.action = action
        self.resource = resource
        self.context = _normalise_context(context)
        self.tags = dict(principal_tags or {})
        for key, value in self.tags.items():  # principal tags are also context keys
            self.context.setdefault(f"aws:principaltag/{key}".lower(), [value])


def _matches_any(
    patterns: Any,
    value: str,
    request: _Request,
    *,
    wildcards: bool,
    variables: bool,
    ignore_case: bool = False,
) -> bool:
    for pattern in as_list(patterns):
        if not isinstance(pattern, str):
            raise NotModelled(f"policy value must be a string, not {pattern!r}")
        regex = _compile(
            pattern,
            wildcards=wildcards,
            variables=variables,
            ignore_case=ignore_case,
            tags=request.tags,
            context=request.context,
        )
        if regex is not None and regex.fullmatch(value) is not None:
            return True
    return False


def _element_matches(
    statement: Mapping[str, Any],
    name: str,
    value: str,
    request: _Request,
    *,
    variables: bool,
    ignore_case: bool,
) -> bool:
    # Action/NotAction and Resource/NotResource: exactly one of the pair must be present.
    positive, negative = name, f"Not{name}"
    if (positive in statement) == (negative in statement):
        raise NotModelled(f"a statement needs exactly one of {positive} and {negative}")
    element = positive if positive in statement else negative
    found = _matches_any(
        statement[element], value, request, wildcards=True, variables=variables, ignore_case=ignore_case
    )
    return found if element == positive else not found


def _condition_holds(
    operator: str, key: str, policy_values: Any, request: _Request, *, variables: bool
) -> bool:
    qualifier, _, base = operator.rpartition(":")
    request_values = request.context.get(key.lower())  # None when absent (or empty)
    if base == "Null":
        if qualifier:
            raise NotModelled(f"{operator} is not modelled")
        if not isinstance(policy_values, str | bool):
            raise NotModelled(f"Null takes 'true' or 'false', not {policy_values!r}")
        expected = {"true": True, "false": False}.get(str(policy_values).lower())
        if expected is None:
            raise NotModelled(f"Null takes 'true' or 'false', not {policy_values!r}")
        return (request_values is None) == expected
    if base in ("Bool", *_ARN_OPERATORS):
        if qualifier:
            raise NotModelled(f"{operator} is not modelled")
        negated = base in ("ArnNotEquals", "ArnNotLike")
        if request_values is None:
            return negated
        if len(request_values) != 1:
            raise NotModelled(f"{operator} on multi-valued key {key}")
        if base == "Bool":
            return any(str(v).lower() == request_values[0].lower() for v in as_list(policy_values))
        found = _matches_any(policy_values, request_values[0], request, wildcards=True, variables=variables)
        return found != negated
    if base not in _STRING_OPERATORS or (qualifier and qualifier not in _QUALIFIERS):
        raise NotModelled(f"condition operator {operator} is not modelled")
    wildcards = base == "StringLike"

    def matches(value: str) -> bool:  # values of one key are ORed
        return _matches_any(policy_values, value, request, wildcards=wildcards, variables=variables)

    if qualifier == "ForAllValues":
        return all(matches(v) for v in request_values or [])  # vacuously true when absent
    if qualifier == "ForAnyValue":
        return any(matches(v) for v in request_values or [])
    if request_values is None:
        return False
    if len(request_values) != 1:
        raise NotModelled(f"{operator} on multi-valued key {key}: use ForAllValues/ForAnyValue")
    return matches(request_values[0])


def _statement_matches(statement: Mapping[str, Any], request: _Request, *, variables: bool) -> bool:
    unknown = set(statement) - {
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
        "Principal",
    }
    if unknown:
        raise NotModelled(f"statement elements not modelled: {sorted(unknown)}")
    if "Principal" in statement and statement["Principal"] not in ("*", {"AWS": "*"}):
        raise NotModelled("only Principal '*' is modelled")
    if not _element_matches(statement, "Action", request.action, request, variables=False, ignore_case=True):
        return False
    if not _element_matches(
        statement, "Resource", request.resource, request, variables=variables, ignore_case=False
    ):
        return False
    # Every operator and every key under it must hold (AND).
    for operator, block in statement.get("Condition", {}).items():
        for key, policy_values in block.items():
            if not _condition_holds(operator, key, policy_values, request, variables=variables):
                return False
    return True


def _load(policy: Mapping[str, Any] | str) -> Mapping[str, Any]:
    document: Any = json.loads(policy) if isinstance(policy, str) else policy
    if not isinstance(document, Mapping) or "Statement" not in document:
        raise NotModelled("a policy document is an object with a Statement")
    return document


def decide(
    policy: Mapping[str, Any] | str,
    action: str,
    resource: str,
    context: Mapping[str, ContextValue] | None = None,
    principal_tags: Mapping[str, str] | None = None,
) -> Decision:
    """The decision of one policy document for one request.

    ``context`` maps condition keys to a value or a list of values, e.g.
    ``{"dynamodb:LeadingKeys": ["TENANT#acme#ITEM#1"]}``; leave the key out for a request without
    one (a Scan). ``principal_tags`` are the session tags, for ``${aws:PrincipalTag/...}``.
    """
    document = _load(policy)
    variables = document.get("Version") == _VARIABLES_VERSION
    request = _Request(action, resource, context, principal_tags)
    allowed = False
    for statement in as_list(document["Statement"]):
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise NotModelled(f"Effect must be Allow or Deny, not {effect!r}")
        if _statement_matches(statement, request, variables=variables):
            if effect == "Deny":
                return "ExplicitDeny"  # an explicit deny wins over every allow
            allowed = True
    return "Allow" if allowed else "ImplicitDeny"


def is_allowed(
    policy: Mapping[str, Any] | str,
    action: str,
    resource: str,
    context: Mapping[str, ContextValue] | None = None,
    principal_tags: Mapping[str, str] | None = None,
) -> bool:
    """True when ``policy`` alone allows the request."""
    return decide(policy, action, resource, context, principal_tags) == "Allow"


def allowed_by_all(
    policies: Iterable[Mapping[str, Any] | str],
    action: str,
    resource: str,
    context: Mapping[str, ContextValue] | None = None,
    principal_tags: Mapping[str, str] | None = None,
) -> bool:
    """True when every policy allows the request: e.g. a role's identity policy AND a session policy
    (the effective permissions of a session are their intersection)."""
    decisions = [decide(p, action, resource, context, principal_tags) for p in policies]
    return bool(decisions) and all(d == "Allow" for d in decisions)


# Never for a tenant role: Scan has no leading key (ForAllValues:StringLike is vacuously true for
# it) and PartiQL is not limited by dynamodb:LeadingKeys the way item calls are.
TABLE_WIDE_ACTIONS = (
    "dynamodb:Scan",
    "dynamodb:ExecuteStatement",
    "dynamodb:BatchExecuteStatement",
    "dynamodb:ExecuteTransaction",
    "dynamodb:PartiQLSelect",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)
