"""A Model step: the model's container kept for this run's Transform steps."""

from __future__ import annotations

from sagelab.local.runner.errors import StepFailed
from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.steps.call import StepCall
from sagelab.local.runner.steps.contract import job_name


def execute(call: StepCall) -> StepOutcome:
    run, name, arguments = call.run, call.name, call.arguments
    model_name = job_name(arguments.get("ModelName"), name)
    container = arguments.get("PrimaryContainer") or (arguments.get("Containers") or [None])[0]
    if not container or not container.get("ModelDataUrl"):
        raise StepFailed(name, "the model has no PrimaryContainer with a ModelDataUrl")
    run.models[model_name] = dict(container)
    return StepOutcome(properties={"ModelName": model_name}, outputs={"model": model_name})
