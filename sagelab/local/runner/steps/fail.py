"""A Fail step: the run stops with the step's ErrorMessage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from sagelab.local.expressions import EvaluationContext, evaluate
from sagelab.local.runner.errors import FailStepReached


def fail(name: str, step: Mapping[str, Any], context: EvaluationContext) -> NoReturn:
    message = evaluate(step.get("Arguments", {}).get("ErrorMessage", ""), context)
    raise FailStepReached(name, str(message))
