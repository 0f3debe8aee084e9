"""One step handed to its executor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagelab.local.expressions import EvaluationContext
from sagelab.local.runner.services import RunServices


@dataclass(frozen=True)
class StepCall:
    """`step`: the step as the definition has it. `arguments`: its Arguments, evaluated for a job
    step, as written for Condition and Fail (they evaluate their own expressions). `sandbox`: the
    step's folder in this execution (its `/opt/ml`). `run`: what it may use from the run."""

    name: str
    step: Mapping[str, Any]
    arguments: Mapping[str, Any]
    context: EvaluationContext
    sandbox: Path
    run: RunServices
