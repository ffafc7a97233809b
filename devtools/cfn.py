"""template.yaml as CloudFormation reads it: the YAML with its short-form tags, the names a value
refers to, and a resolver of intrinsic functions for one set of parameter values.

The resolver knows the intrinsics the template uses and raises on any other, rather than pass
it on unresolved (a resource would then be created from a dictionary instead of a value).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ACCOUNT", "REGION", "ROOT", "STACK", "TEMPLATE", "Stack", "load_template", "references"]

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "tenantscope-local"


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags: ``!Ref X`` -> ``{"Ref": "X"}``, ``!Sub`` -> ``Fn::Sub``."""


def _intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node).split(".", 1)}  # !GetAtt A.B -> [A, B]
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """A CloudFormation YAML file as plain JSON data (YAML anchors become independent copies)."""
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - a SafeLoader subclass
    result: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return result


def references(value: Any) -> set[str]:
    """The names ``value`` refers to through Ref, GetAtt and Sub (logical ids or parameters)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for function, argument in value.items():
            if function == "Ref" and isinstance(argument, str):
                found.add(argument)
            elif function == "Fn::GetAtt":
                found.add((argument if isinstance(argument, list) else argument.split("."))[0])
            elif function == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                names = (m.group(1) for m in _SUB_VARIABLE.finditer(text) if not m.group(1).startswith("!"))
                found.update(name.split(".", 1)[0] for name in names if name not in variables)
                found |= references(variables)
            else:
                found |= references(argument)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


class Stack:
    """The template with parameter values: its conditions, its Rules checked, and physical ids
    (``physical``: logical id to attribute values) as resources are created."""

    def __init__(self, parameters: Mapping[str, str] | None = None, template: dict[str, Any] | None = None):
        self.template = template or load_template()
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in self.template.get("Parameters", {}).items()
        }
        self.parameters.update(parameters or {})
        self.conditions = {
            name: bool(self.resolve(expr)) for name, expr in self.template.get("Conditions", {}).items()
        }
        # The template's Rules, as CloudFormation checks them before creating anything.
        for rule_name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" not in rule or self.resolve(rule["RuleCondition"]):
                for assertion in rule["Assertions"]:
                    if not self.resolve(assertion["Assert"]):
                        raise ValueError(f"rule {rule_name}: {assertion.get('AssertDescription', 'failed')}")
        self.physical: dict[str, dict[str, str]] = {}  # logical id -> {"Ref": ..., "Arn": ..., ...}

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by its value for this stack."""
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                return self.physical[arg[0]][arg[1]]
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: str(self._sub_var(m[1], variables)), text)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.conditions[name] else when_false)
            if key == "Fn::Equals":
                left, right = self.resolve(arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self.resolve(parts))
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Condition":
                return self.conditions[arg]
            if key.startswith("Fn::"):
                raise NotImplementedError(f"{key} is not modelled by devtools.cfn")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.physical[name]["Ref"]

    def _sub_var(self, name: str, variables: Mapping[str, Any]) -> Any:
        if name in variables:
            return variables[name]
        if "." in name:
            logical, attribute = name.split(".", 1)
            return self.physical[logical][attribute]
        return self._ref(name)
