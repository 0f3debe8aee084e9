"""A Fail step: the run stops with the step's ErrorMessage."""

from __future__ import annotations

from typing import NoReturn

from sagelab.local.expressions import evaluate
from sagelab.local.runner.errors import FailStepReached
from sagelab.local.runner.steps.call import StepCall


def execute(call: StepCall) -> NoReturn:
    message = evaluate(call.arguments.get("ErrorMessage", ""), call.context)
    raise FailStepReached(call.name, str(message))
