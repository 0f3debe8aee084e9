"""A Tuning step: a bounded, deterministic search over the definition's ranges (the midpoint
first, then seeded draws), each candidate a local training job, the best job first."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sagelab.local.runner.errors import StepFailed
from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.steps.call import StepCall
from sagelab.local.runner.steps.contract import job_name
from sagelab.local.runner.steps.training import train


def execute(call: StepCall) -> StepOutcome:
    run, name, arguments, sandbox = call.run, call.name, call.arguments, call.sandbox
    config = arguments["HyperParameterTuningJobConfig"]
    definition = arguments["TrainingJobDefinition"]
    objective = config["HyperParameterTuningJobObjective"]
    limit = int(config["ResourceLimits"]["MaxNumberOfTrainingJobs"])
    budget = max(1, min(limit, run.max_tuning_jobs))
    candidates = list(_tuning_candidates(config.get("ParameterRanges", {}), budget, seed=0))
    tuning_job_name = job_name(arguments.get("HyperParameterTuningJobName"), name)
    run.log(f"   {name}: local search over {budget} of {limit} training jobs, objective {objective['Type']} {objective['MetricName']}")
    summaries: list[dict[str, Any]] = []
    for index, assignment in enumerate(candidates, start=1):
        training_job_name = f"{tuning_job_name}-{index:03d}-{uuid.uuid4().hex[:8]}"  # as SageMaker names a tuning job's training jobs
        training_arguments = {
            "HyperParameters": {**definition.get("StaticHyperParameters", {}), **assignment},
            "AlgorithmSpecification": definition["AlgorithmSpecification"],
            "InputDataConfig": definition["InputDataConfig"],
            "OutputDataConfig": definition["OutputDataConfig"],
            "ResourceConfig": definition.get("HyperParameterTuningResourceConfig") or definition.get("ResourceConfig", {}),
            "Environment": definition.get("Environment", {}),
        }
        training = train(run, f"{name}/{index}", training_arguments, sandbox / f"job-{index:03d}", job_name=training_job_name)
        value = training.metrics.get(objective["MetricName"])
        if value is None:
            raise StepFailed(name, f"training job {training_job_name} printed no {objective['MetricName']!r} (metric definitions did not match its log)")
        run.log(f"   {name}: job {index}/{budget} {assignment} -> {objective['MetricName']}={value:.6f}")
        summaries.append(
            {
                "TrainingJobName": training_job_name,
                "TunedHyperParameters": assignment,
                "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": objective["MetricName"], "Value": value},
                "TrainingJobStatus": "Completed",
            }
        )
    reverse = objective["Type"] == "Maximize"
    summaries.sort(key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], reverse=reverse)
    return StepOutcome(
        properties={"HyperParameterTuningJobName": tuning_job_name, "TrainingJobSummaries": summaries, "BestTrainingJob": summaries[0]},
        outputs={"best_training_job": summaries[0]["TrainingJobName"]},
    )


def _draw(range_type: str, spec: Mapping[str, Any], rng: random.Random, midpoint: bool) -> str:
    if range_type == "IntegerParameterRanges":
        low, high = int(spec["MinValue"]), int(spec["MaxValue"])
        return str((low + high) // 2 if midpoint else rng.randint(low, high))
    if range_type == "ContinuousParameterRanges":
        low_f, high_f = float(spec["MinValue"]), float(spec["MaxValue"])
        return f"{((low_f + high_f) / 2) if midpoint else rng.uniform(low_f, high_f):.6g}"
    values = list(spec["Values"])
    return str(values[0] if midpoint else rng.choice(values))


def _tuning_candidates(ranges: Mapping[str, Any], count: int, seed: int) -> Iterable[dict[str, str]]:
    """Deterministic candidates: the midpoint first, then seeded random draws within the ranges."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible search, not a secret
    specs = [
        (range_type, spec)
        for range_type in ("IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges")
        for spec in ranges.get(range_type, [])
    ]
    seen: set[tuple[tuple[str, str], ...]] = set()
    attempts = 0
    while len(seen) < count and attempts < count * 20:
        attempts += 1
        assignment = {spec["Name"]: _draw(range_type, spec, rng, midpoint=not seen) for range_type, spec in specs}
        key = tuple(sorted(assignment.items()))
        if key in seen:
            continue
        seen.add(key)
        yield assignment
