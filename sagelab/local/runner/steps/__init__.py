"""One executor per step type, looked up by the definition's step `Type`.

A step type the table does not have is refused when the runner reads the definition, naming the
ones it has. Adding a step type is a module here and a line in `EXECUTORS`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.steps import automl, condition, fail, model, processing, register, training, transform, tuning
from sagelab.local.runner.steps.call import StepCall


@dataclass(frozen=True)
class StepExecutor:
    """`job`: the step runs a job: its arguments are evaluated before it runs and its property
    files read after (Condition and Fail are not jobs: they evaluate their own expressions).
    `cacheable`: `CacheConfig` applies to it (`--resume`); SageMaker caches jobs, not RegisterModel."""

    execute: Callable[[StepCall], StepOutcome]
    job: bool = True
    cacheable: bool = True


EXECUTORS: Mapping[str, StepExecutor] = {
    "Processing": StepExecutor(processing.execute),
    "Training": StepExecutor(training.execute),
    "Tuning": StepExecutor(tuning.execute),
    "AutoML": StepExecutor(automl.execute),
    "Model": StepExecutor(model.execute),
    "Transform": StepExecutor(transform.execute),
    "RegisterModel": StepExecutor(register.execute, cacheable=False),
    "Condition": StepExecutor(condition.execute, job=False, cacheable=False),
    "Fail": StepExecutor(fail.execute, job=False, cacheable=False),
}
