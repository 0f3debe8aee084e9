"""What a step leaves for the rest of the run, typed: the properties later steps read, the outputs
a person is shown, a training job's metrics, a condition's evaluation, a registered version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConditionResult:
    """One condition of a Condition step: its type (GreaterThanOrEqualTo, ...), its operands as
    evaluated (None where an operand could not be), and whether it held."""

    condition_type: str
    left: Any
    right: Any
    result: bool


@dataclass(frozen=True)
class StepOutcome:
    """`properties`: what `Steps.<name>.<path>` reads, shaped like SageMaker's Describe* answer for
    the step's job (`ProcessingOutputConfig`, `ModelArtifacts`, `Outcome`, ...); the resume cache
    keeps them. `outputs`: where a person finds the step's results (shown in the run's summary).
    `metrics`: a training job's metrics parsed from its log (a tuning job ranks its jobs by them).
    `conditions`: a Condition step's conditions. `package`: a RegisterModel step's version.
    `cached`: reused from an earlier run (`--resume`)."""

    properties: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    conditions: tuple[ConditionResult, ...] = ()
    package: Mapping[str, Any] | None = None
    cached: bool = False
