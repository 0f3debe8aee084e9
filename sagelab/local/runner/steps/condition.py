"""A Condition step: its conditions evaluated with `sagelab.local.expressions`; the run takes the
branch the outcome names and skips the other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagelab.local.expressions import EvaluationContext, UnresolvedReference, UnsupportedExpression, evaluate, evaluate_condition


def evaluate_conditions(step: Mapping[str, Any], context: EvaluationContext) -> tuple[bool, list[dict[str, Any]]]:
    """The step's outcome (all its conditions hold) and each condition's operands and result."""
    results = []
    for condition in step["Arguments"].get("Conditions", []):
        outcome = evaluate_condition(condition, context)
        results.append(
            {
                "type": condition["Type"],
                "left": _peek(condition.get("LeftValue"), context),
                "right": _peek(condition.get("RightValue"), context),
                "result": outcome,
            }
        )
    return all(r["result"] for r in results), results


def _peek(expression: Any, context: EvaluationContext) -> Any:
    try:
        return evaluate(expression, context)
    except (UnsupportedExpression, UnresolvedReference):
        return None
