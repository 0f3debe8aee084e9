"""A Condition step: its conditions evaluated with `sagelab.local.expressions`; the run takes the
branch the outcome names and skips the other."""

from __future__ import annotations

from typing import Any

from sagelab.local.expressions import EvaluationContext, UnresolvedReference, UnsupportedExpression, evaluate, evaluate_condition
from sagelab.local.runner.outcome import ConditionResult, StepOutcome
from sagelab.local.runner.steps.call import StepCall


def execute(call: StepCall) -> StepOutcome:
    """The step's `Outcome` (all its conditions hold) and each condition's operands and result."""
    context = call.context
    results = tuple(
        ConditionResult(
            condition_type=condition["Type"],
            left=_peek(condition.get("LeftValue"), context),
            right=_peek(condition.get("RightValue"), context),
            result=evaluate_condition(condition, context),
        )
        for condition in call.arguments.get("Conditions", [])
    )
    return StepOutcome(properties={"Outcome": all(r.result for r in results)}, conditions=results)


def _peek(expression: Any, context: EvaluationContext) -> Any:
    try:
        return evaluate(expression, context)
    except (UnsupportedExpression, UnresolvedReference):
        return None
