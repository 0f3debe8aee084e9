"""Pipeline-definition expressions and conditions, evaluated the way SageMaker Pipelines does.

Supported: literals, `Get` (Parameters.*, Execution.*, Steps.<name>.<property path>,
Steps.<name>.PropertyFiles.<file>), `Std:Join`, `Std:JsonGet` (on a property file or an S3 URI),
and the condition types the SDK emits: Equals, GreaterThan, GreaterThanOrEqualTo, LessThan,
LessThanOrEqualTo, In, Not, Or. Anything else raises `UnsupportedExpression` naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROPERTY_TOKEN = re.compile(r"([A-Za-z0-9_]+)(?:\[(?:'([^']*)'|\"([^\"]*)\"|(\d+))\])?")


class UnsupportedExpression(ValueError):
    """An expression or condition the local runner does not implement (or a malformed one)."""


class UnresolvedReference(ValueError):
    """A `Get` that names a parameter, step or property that does not exist (yet)."""


@dataclass
class EvaluationContext:
    parameters: Mapping[str, Any]
    execution: Mapping[str, Any]
    step_properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    property_files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    read_s3_json: Callable[[str], Any] | None = None


def split_property_path(path: str) -> list[str | int]:
    """`ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri` -> ['ProcessingOutputConfig', 'Outputs', 'train', ...]."""
    parts: list[str | int] = []
    position = 0
    while position < len(path):
        match = PROPERTY_TOKEN.match(path, position)
        if not match:
            raise UnsupportedExpression(f"cannot parse property path {path!r} at {path[position:]!r}")
        parts.append(match.group(1))
        key = match.group(2) if match.group(2) is not None else match.group(3)
        if key is not None:
            parts.append(key)
        elif match.group(4) is not None:
            parts.append(int(match.group(4)))
        position = match.end()
        if position < len(path):
            if path[position] != ".":
                raise UnsupportedExpression(f"cannot parse property path {path!r} at {path[position:]!r}")
            position += 1
    return parts


def lookup(data: Any, parts: list[str | int], description: str) -> Any:
    current = data
    for part in parts:
        try:
            current = current[part]
        except (KeyError, IndexError, TypeError):
            raise UnresolvedReference(f"{description}: no {part!r}") from None
    return current


def json_path_get(document: Any, path: str) -> Any:
    """The subset of JSONPath that `JsonGet` uses: dotted keys and [index]."""
    return lookup(document, split_property_path(path), f"JsonGet path {path!r}")


def evaluate(expression: Any, context: EvaluationContext) -> Any:
    if isinstance(expression, (str, int, float, bool)) or expression is None:
        return expression
    if isinstance(expression, list):
        return [evaluate(item, context) for item in expression]
    if not isinstance(expression, dict):
        raise UnsupportedExpression(f"unexpected value {expression!r}")
    if len(expression) == 1:
        ((function, argument),) = expression.items()
        if function == "Get":
            return _get(argument, context)
        if function == "Std:Join":
            values = [evaluate(v, context) for v in argument["Values"]]
            return str(argument["On"]).join(_to_text(v) for v in values)
        if function == "Std:JsonGet":
            return _json_get(argument, context)
        if function.startswith(("Std:", "Fn::")) or function in ("Get",):
            raise UnsupportedExpression(f"expression {function!r} is not supported by the local runner")
    return {key: evaluate(value, context) for key, value in expression.items()}


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _get(reference: str, context: EvaluationContext) -> Any:
    if not isinstance(reference, str):
        raise UnsupportedExpression(f"Get of {reference!r}: expected a string reference")
    head, _, rest = reference.partition(".")
    if head == "Parameters":
        if rest not in context.parameters:
            raise UnresolvedReference(f"Get {reference}: no parameter {rest!r}")
        return context.parameters[rest]
    if head == "Execution":
        if rest not in context.execution:
            raise UnresolvedReference(f"Get {reference}: no execution variable {rest!r}")
        return context.execution[rest]
    if head == "Steps":
        step, _, path = rest.partition(".")
        if path.startswith("PropertyFiles."):
            name = path.split(".", 1)[1]
            files = context.property_files.get(step, {})
            if name not in files:
                raise UnresolvedReference(f"Get {reference}: step {step!r} has no property file {name!r} (has it run?)")
            return files[name]
        if step not in context.step_properties:
            raise UnresolvedReference(f"Get {reference}: step {step!r} has not run")
        return lookup(context.step_properties[step], split_property_path(path), f"Get {reference}")
    raise UnsupportedExpression(f"Get {reference}: unknown namespace {head!r}")


def _json_get(argument: Mapping[str, Any], context: EvaluationContext) -> Any:
    path = argument.get("Path")
    if not isinstance(path, str):
        raise UnsupportedExpression(f"Std:JsonGet needs a string Path, got {path!r}")
    if "PropertyFile" in argument:
        document = evaluate(argument["PropertyFile"], context)
    elif "S3Uri" in argument:
        if context.read_s3_json is None:
            raise UnsupportedExpression("Std:JsonGet on an S3Uri needs an S3 reader")
        document = context.read_s3_json(_to_text(evaluate(argument["S3Uri"], context)))
    else:
        raise UnsupportedExpression(f"Std:JsonGet needs PropertyFile or S3Uri, got keys {sorted(argument)}")
    return json_path_get(document, path)


# -- conditions ---------------------------------------------------------------------------------
def _compare(left: Any, right: Any, condition_type: str) -> bool:
    try:
        left_number, right_number = float(left), float(right)
    except (TypeError, ValueError):
        if condition_type == "Equals":
            return bool(left == right)
        raise UnsupportedExpression(f"condition {condition_type}: cannot compare {left!r} with {right!r} as numbers") from None
    return {
        "Equals": left_number == right_number,
        "GreaterThan": left_number > right_number,
        "GreaterThanOrEqualTo": left_number >= right_number,
        "LessThan": left_number < right_number,
        "LessThanOrEqualTo": left_number <= right_number,
    }[condition_type]


COMPARISONS = ("Equals", "GreaterThan", "GreaterThanOrEqualTo", "LessThan", "LessThanOrEqualTo")


def evaluate_condition(condition: Mapping[str, Any], context: EvaluationContext) -> bool:
    condition_type = condition.get("Type")
    if condition_type in COMPARISONS:
        left, right = evaluate(condition["LeftValue"], context), evaluate(condition["RightValue"], context)
        if condition_type == "Equals" and not isinstance(left, (int, float)) and not isinstance(right, (int, float)):
            return bool(left == right)
        return _compare(left, right, condition_type)
    if condition_type == "In":
        value = evaluate(condition["QueryValue"], context)
        return any(_equal(value, evaluate(candidate, context)) for candidate in condition["Values"])
    if condition_type == "Not":
        return not evaluate_condition(condition["Condition"], context)
    if condition_type == "Or":
        return any(evaluate_condition(inner, context) for inner in condition["Conditions"])
    raise UnsupportedExpression(f"condition type {condition_type!r} is not supported by the local runner")


def _equal(left: Any, right: Any) -> bool:
    try:
        return float(left) == float(right)
    except (TypeError, ValueError):
        return bool(left == right)


def load_json_file(path: Path) -> Any:
    return json.loads(Path(path).read_text())
