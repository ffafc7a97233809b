"""DynamoDB expressions read the way DynamoDB reads them, for the leading-key guard.

The guard must check exactly the values DynamoDB will use. A guard that reads an expression
more loosely than DynamoDB can be shown one value while the backend uses another (``pk = :g-1``
with both ``:g`` and ``:g-1`` supplied). So every expression of a request is tokenized with
DynamoDB's documented grammar, and anything that grammar does not produce exactly is refused:

- name placeholders are ``#`` then letters, digits or ``_``; value placeholders are ``:`` then
  letters or digits; any other character outside names, placeholders, list indexes, operators
  and whitespace is refused;
- every placeholder used is defined, and every one defined is used;
- a legacy parameter (``KeyConditions``, ``AttributeUpdates``, ...) is never mixed with the
  expression that replaces it;
- key conditions are one equality on the partition key and at most one sort key condition
  (``=``, ``<``, ``<=``, ``>``, ``>=``, ``BETWEEN``, ``begins_with``), joined by ``AND``,
  optionally in parentheses;
- update expressions are the ``SET``, ``REMOVE``, ``ADD`` and ``DELETE`` clauses, each at most
  once, with paths, values, ``+``/``-``, ``if_not_exists`` and ``list_append``.

>>> [c.attribute for c in key_conditions(read_expressions(
...     {"KeyConditionExpression": "(#n0 = :v0 AND begins_with(#n1, :v1))",
...      "ExpressionAttributeNames": {"#n0": "pk", "#n1": "sk"},
...      "ExpressionAttributeValues": {":v0": {"S": "x"}, ":v1": {"S": "y"}}})["KeyConditionExpression"],
...     {"#n0": "pk", "#n1": "sk"})]
['pk', 'sk']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._errors import CrossTenantAccess, Reason

__all__ = ["KeyCondition", "PathUse", "key_conditions", "read_expressions", "update_paths"]

Token = tuple[str, str]  # (kind, text): kind is name, value, word, index or op

_SCANNER = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<name>#[A-Za-z0-9_]+)"
    r"|(?P<value>:[A-Za-z0-9]+)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<index>\[[0-9]+\])"
    r"|(?P<op><>|<=|>=|[=<>(),.+-])"
)
_NAME_PLACEHOLDER = re.compile(r"#[A-Za-z0-9_]+")
_VALUE_PLACEHOLDER = re.compile(r":[A-Za-z0-9]+")
_EXPRESSIONS = (
    "KeyConditionExpression",
    "UpdateExpression",
    "ConditionExpression",
    "FilterExpression",
    "ProjectionExpression",
)
# Each legacy parameter and the expression that replaces it: DynamoDB refuses both together.
_LEGACY = (
    ("KeyConditions", "KeyConditionExpression"),
    ("AttributeUpdates", "UpdateExpression"),
    ("Expected", "ConditionExpression"),
    ("QueryFilter", "FilterExpression"),
    ("AttributesToGet", "ProjectionExpression"),
)
_KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"})
_COMPARATORS = frozenset({"=", "<", "<=", ">", ">="})
_MIRRORED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _refuse(detail: str) -> CrossTenantAccess:
    return CrossTenantAccess(Reason.UNREADABLE_EXPRESSION, detail)


def _tokens(expression: object) -> list[Token]:
    if not isinstance(expression, str):
        raise _refuse("not a string")
    tokens: list[Token] = []
    position = 0
    while position < len(expression):
        match = _SCANNER.match(expression, position)
        if match is None:
            raise _refuse("a character outside DynamoDB's expression grammar")
        if match.lastgroup != "space":
            tokens.append((str(match.lastgroup), match.group()))
        position = match.end()
    return tokens


def read_expressions(params: Mapping[str, Any]) -> dict[str, list[Token]]:
    """The tokens of each expression in one request (or transaction item), after checking that its
    placeholders are well-formed, all defined and all used, and that no legacy parameter is mixed in."""
    for legacy, expression in _LEGACY:
        if params.get(legacy) is not None and params.get(expression) is not None:
            raise _refuse(f"{legacy} mixed with {expression}")
    read = {field: _tokens(params[field]) for field in _EXPRESSIONS if params.get(field) is not None}
    names = params.get("ExpressionAttributeNames") or {}
    values = params.get("ExpressionAttributeValues") or {}
    if not isinstance(names, Mapping) or not isinstance(values, Mapping):
        raise _refuse("malformed placeholders")
    if not all(isinstance(k, str) and _NAME_PLACEHOLDER.fullmatch(k) for k in names):
        raise _refuse("a name placeholder outside the grammar")
    if not all(isinstance(k, str) and _VALUE_PLACEHOLDER.fullmatch(k) for k in values):
        raise _refuse("a value placeholder outside the grammar")
    used = {text for tokens in read.values() for kind, text in tokens if kind in ("name", "value")}
    if used - set(names) - set(values):
        raise _refuse("a placeholder that is not defined")
    if set(names) - used or set(values) - used:
        raise _refuse("a placeholder that is defined but not used")
    return read


class _Reader:
    def __init__(self, tokens: list[Token], names: Mapping[str, str]) -> None:
        self._tokens = tokens
        self._names = names
        self._at = 0

    def done(self) -> bool:
        return self._at == len(self._tokens)

    def peek(self, ahead: int = 0) -> Token | None:
        at = self._at + ahead
        return self._tokens[at] if at < len(self._tokens) else None

    def next_kind(self) -> str | None:
        token = self.peek()
        return token[0] if token is not None else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise _refuse("it ends too early")
        self._at += 1
        return token

    def op(self, text: str) -> bool:
        if self.peek() == ("op", text):
            self._at += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.op(text):
            raise _refuse(f"{text!r} expected")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].upper() == word:
            self._at += 1
            return True
        return False

    def function(self, name: str) -> bool:
        if self.peek() == ("word", name) and self.peek(1) == ("op", "("):
            self._at += 2
            return True
        return False

    def value(self) -> str:
        kind, text = self.take()
        if kind != "value":
            raise _refuse("a value placeholder expected")
        return text

    def attribute(self) -> str:
        """One path element: a name placeholder (resolved) or a plain attribute name."""
        kind, text = self.take()
        if kind == "name":
            return str(self._names[text])  # defined: read_expressions checked it
        if kind == "word" and text.upper() not in _KEYWORDS:
            return text
        raise _refuse("an attribute name expected")

    def path(self) -> tuple[str, bool]:
        """(top-level attribute, whether the path is that attribute alone)."""
        attribute, alone = self.attribute(), True
        while True:
            if self.op("."):
                self.attribute()
            elif self.next_kind() == "index":
                self.take()
            else:
                return attribute, alone
            alone = False


class KeyCondition(NamedTuple):
    """One condition of a key condition expression: ``attribute <operator> values``."""

    attribute: str
    operator: str  # =, <, <=, >, >=, BETWEEN or begins_with
    values: tuple[str, ...]  # value placeholders


def key_conditions(tokens: list[Token], names: Mapping[str, str]) -> list[KeyCondition]:
    """The conditions of a key condition expression, in order."""
    reader = _Reader(tokens, names)
    conditions: list[KeyCondition] = []
    _key_conjunction(reader, conditions)
    if not reader.done():
        raise _refuse("unexpected text after the key condition")
    return conditions


def _key_conjunction(reader: _Reader, conditions: list[KeyCondition]) -> None:
    _key_term(reader, conditions)
    while reader.keyword("AND"):
        _key_term(reader, conditions)


def _key_term(reader: _Reader, conditions: list[KeyCondition]) -> None:
    if reader.op("("):
        _key_conjunction(reader, conditions)
        reader.expect(")")
        return
    if reader.function("begins_with"):
        attribute = reader.attribute()
        reader.expect(",")
        value = reader.value()
        reader.expect(")")
        conditions.append(KeyCondition(attribute, "begins_with", (value,)))
        return
    if reader.next_kind() == "value":
        value = reader.value()  # :v <op> attribute, read as attribute <mirrored op> :v
        operator = _comparator(reader)
        conditions.append(KeyCondition(reader.attribute(), _MIRRORED[operator], (value,)))
        return
    attribute = reader.attribute()
    if reader.keyword("BETWEEN"):
        low = reader.value()
        if not reader.keyword("AND"):
            raise _refuse("BETWEEN without AND")
        conditions.append(KeyCondition(attribute, "BETWEEN", (low, reader.value())))
        return
    operator = _comparator(reader)
    conditions.append(KeyCondition(attribute, operator, (reader.value(),)))


def _comparator(reader: _Reader) -> str:
    kind, text = reader.take()
    if kind != "op" or text not in _COMPARATORS:
        raise _refuse("a comparison expected")
    return text


class PathUse(NamedTuple):
    """An attribute an update expression touches; ``assigned`` is set only for ``SET attr = :v``,
    the attribute alone set to a plain value."""

    attribute: str
    assigned: str | None = None


def update_paths(tokens: list[Token], names: Mapping[str, str]) -> list[PathUse]:
    """Every attribute an update expression touches, as the target or the operand of an action."""
    reader = _Reader(tokens, names)
    uses: list[PathUse] = []
    clauses: set[str] = set()
    if reader.done():
        raise _refuse("an empty update expression")
    while not reader.done():
        kind, text = reader.take()
        clause = text.upper() if kind == "word" else ""
        if clause not in ("SET", "REMOVE", "ADD", "DELETE") or clause in clauses:
            raise _refuse("SET, REMOVE, ADD or DELETE expected, each at most once")
        clauses.add(clause)
        while True:
            attribute, alone = reader.path()
            if clause == "SET":
                reader.expect("=")
                plain = _set_value(reader, uses)
                uses.append(PathUse(attribute, plain if alone else None))
            else:
                uses.append(PathUse(attribute))
                if clause != "REMOVE":
                    reader.value()
            if not reader.op(","):
                break
    return uses


def _set_value(reader: _Reader, uses: list[PathUse]) -> str | None:
    """Reads ``operand [(+|-) operand]``; the value placeholder when it is exactly one."""
    plain = _set_operand(reader, uses)
    if reader.op("+") or reader.op("-"):
        _set_operand(reader, uses)
        return None
    return plain


def _set_operand(reader: _Reader, uses: list[PathUse]) -> str | None:
    if reader.next_kind() == "value":
        return reader.value()
    if reader.function("if_not_exists") or reader.function("list_append"):
        _set_operand(reader, uses)
        reader.expect(",")
        _set_operand(reader, uses)
        reader.expect(")")
        return None
    uses.append(PathUse(reader.path()[0]))
    return None
