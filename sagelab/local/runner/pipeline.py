"""The run: a definition's steps in dependency order, each through its executor, and the run's
record (each step's status, the registered model, the gate's verdict)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagelab.bucket_layout import DATA_CAPTURE_PREFIX
from sagelab.local.expressions import EvaluationContext, UnresolvedReference, UnsupportedExpression, evaluate
from sagelab.local.registry import LocalRegistry
from sagelab.local.runner.cache import StepCache, reuse_log
from sagelab.local.runner.dag import branch_members, dependency_order, flatten_steps
from sagelab.local.runner.errors import FailStepReached, PipelineError, StepFailed
from sagelab.local.runner.local_s3 import LocalS3
from sagelab.local.runner.outcome import StepOutcome
from sagelab.local.runner.parameters import resolve_parameters
from sagelab.local.runner.processes import Processes
from sagelab.local.runner.services import RunServices
from sagelab.local.runner.steps import EXECUTORS
from sagelab.local.runner.steps.call import StepCall

SUPPORTED_STEP_TYPES = tuple(EXECUTORS)
DEFAULT_MAX_LOCAL_TUNING_JOBS = 4
# A local AutoML search stops starting candidates after this long (SageMaker's job runs for up
# to MaxAutoMLJobRuntimeInSeconds; locally the lab's run should take minutes, not an hour).
DEFAULT_LOCAL_AUTOML_BUDGET_S = 60.0


@dataclass
class StepRecord:
    name: str
    type: str
    status: str = "NotStarted"  # Executing | Succeeded | Failed | Skipped | Cached
    started: float | None = None
    duration_s: float | None = None
    failure_reason: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    execution_id: str
    status: str
    steps: list[StepRecord]
    failure_reason: str | None
    parameters: dict[str, Any]
    registered: dict[str, Any] | None
    metric: dict[str, Any] | None
    evaluation_dir: str | None
    execution_dir: str

    def to_json(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "status": self.status,
            "failure_reason": self.failure_reason,
            "parameters": self.parameters,
            "steps": [
                {
                    "name": s.name,
                    "type": s.type,
                    "status": s.status,
                    "duration_s": None if s.duration_s is None else round(s.duration_s, 3),
                    "failure_reason": s.failure_reason,
                    "outputs": s.outputs,
                }
                for s in self.steps
            ],
            "registered_model": self.registered,
            "metric": self.metric,
            "evaluation_dir": self.evaluation_dir,
            "execution_dir": self.execution_dir,
        }


class LocalPipelineRunner:
    """Runs one definition in a work directory. `log` receives every line meant for a person."""

    def __init__(
        self,
        definition: Mapping[str, Any],
        workdir: Path,
        *,
        pipeline_name: str = "sagelab",
        log: Callable[[str], None] = print,
        python: str = sys.executable,
        max_tuning_jobs: int = DEFAULT_MAX_LOCAL_TUNING_JOBS,
        automl_budget_s: float | None = None,
        fresh_processes: bool = False,
    ) -> None:
        self.definition = definition
        self.workdir = Path(workdir).resolve()
        self.pipeline_name = pipeline_name
        self.log = log
        # The jobs read as the pipeline's role does: never captured requests (stacks/execution_roles/construct.py).
        s3 = LocalS3(self.workdir / "s3", unreadable=(DATA_CAPTURE_PREFIX,))
        self.services = RunServices(
            s3=s3,
            registry=LocalRegistry(self.workdir),
            processes=Processes(log, python=python, fresh_processes=fresh_processes),
            log=log,
            max_tuning_jobs=max_tuning_jobs,
            # SAGELAB_AUTOML_BUDGET_S shortens the local search (the notebook's test run, a quick look).
            automl_budget_s=(
                automl_budget_s if automl_budget_s is not None else float(os.environ.get("SAGELAB_AUTOML_BUDGET_S", DEFAULT_LOCAL_AUTOML_BUDGET_S))
            ),
        )
        self.s3 = s3
        self.cache = StepCache(self.workdir / "cache", s3)
        self.steps = flatten_steps(definition)
        for name, step in self.steps.items():
            if step.get("Type") not in SUPPORTED_STEP_TYPES:
                raise UnsupportedExpression(
                    f"step {name}: step type {step.get('Type')!r} is not supported by the local runner (supported: {', '.join(SUPPORTED_STEP_TYPES)})"
                )
        self.order = dependency_order(self.steps)

    # -- running ------------------------------------------------------------------------------
    def run(self, overrides: Mapping[str, str] | None = None, resume: bool = False) -> RunResult:
        parameters = resolve_parameters(self.definition, overrides or {})
        started = dt.datetime.now(dt.UTC)
        # This run's state, read by later steps' expressions (through `context`) and by the summary.
        self._step_properties: dict[str, Mapping[str, Any]] = {}
        self._property_files: dict[str, Mapping[str, Any]] = {}
        self._property_file_dirs: dict[str, Mapping[str, str]] = {}  # where each property file's output is
        self._outcomes: dict[str, StepOutcome] = {}
        execution_id = f"local-{started.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        execution_dir = self.workdir / "executions" / execution_id
        execution_dir.mkdir(parents=True)
        self._log_dir = execution_dir / "logs"  # each step's log, for `sagelab pipeline logs --local`
        self._log_dir.mkdir()
        self.services.processes.log_dir = self._log_dir
        context = EvaluationContext(
            parameters=parameters,
            execution={
                "PipelineExecutionId": execution_id,
                "PipelineName": self.pipeline_name,
                "PipelineExecutionArn": f"arn:aws:sagemaker:local:000000000000:pipeline/{self.pipeline_name}/execution/{execution_id}",
                "PipelineArn": f"arn:aws:sagemaker:local:000000000000:pipeline/{self.pipeline_name}",
                "StartDateTime": started.isoformat(),
                "CurrentDateTime": started.isoformat(),
            },
            step_properties=self._step_properties,
            property_files=self._property_files,
            read_s3_json=self.s3.read_json,
        )
        records = {name: StepRecord(name=name, type=self.steps[name]["Type"]) for name in self.order}
        skipped: set[str] = set()
        failure: str | None = None
        registered: dict[str, Any] | None = None
        self.log(f"pipeline {self.pipeline_name}: execution {execution_id} ({len(self.order)} steps) in {self.workdir}")
        for name in self.order:
            step = self.steps[name]
            record = records[name]
            if name in skipped or failure is not None:
                record.status = "Skipped" if failure is None else "NotStarted"
                continue
            record.started = time.monotonic()
            record.status = "Executing"
            self.log(f"-> {name} ({step['Type']}) started")
            try:
                outcome = self._run_step(name, step, context, execution_dir, resume)
                self._outcomes[name] = outcome
                record.status = "Cached" if outcome.cached else "Succeeded"
                record.outputs = dict(outcome.outputs)
                if step["Type"] == "Condition":
                    holds = bool(outcome.properties["Outcome"])
                    chosen, dropped = ("IfSteps", "ElseSteps") if holds else ("ElseSteps", "IfSteps")
                    skipped |= branch_members(step["Arguments"].get(dropped, []))
                    self.log(f"   {name}: condition is {str(holds).lower()} -> {', '.join(s['Name'] for s in step['Arguments'].get(chosen, [])) or 'nothing'}")
                if outcome.package is not None:
                    registered = dict(outcome.package)
            except FailStepReached as reached:
                record.status = "Failed"
                record.failure_reason = reached.reason
                failure = reached.reason
                self.log(f"x  {name} (Fail): {reached.reason}")
            except StepFailed as failed:
                record.status = "Failed"
                record.failure_reason = failed.reason
                failure = f"{name}: {failed.reason}"
                for line in failed.log_tail:
                    self.log(f"   | {line}")
            except (PipelineError, UnsupportedExpression, UnresolvedReference) as error:
                record.status = "Failed"
                record.failure_reason = str(error)
                failure = f"{name}: {error}"
                self.log(f"x  {name}: {error}")
            finally:
                record.duration_s = time.monotonic() - record.started
            if record.status in ("Succeeded", "Cached"):
                note = " (reused from an earlier run)" if record.status == "Cached" else ""
                self.log(f"ok {name} {record.status.lower()} in {record.duration_s:.1f}s{note}")
            elif record.status == "Failed" and step["Type"] != "Fail":
                self.log(f"x  {name} failed after {record.duration_s:.1f}s: {record.failure_reason}")

        self.services.loopback.stop()
        status = "Failed" if failure else "Succeeded"
        metric, evaluation_dir = self._metric_summary(context)
        result = RunResult(
            execution_id=execution_id,
            status=status,
            steps=[records[n] for n in self.order],
            failure_reason=failure,
            parameters=parameters,
            registered=registered,
            metric=metric,
            evaluation_dir=evaluation_dir,
            execution_dir=str(execution_dir),
        )
        (execution_dir / "execution.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
        return result

    def _metric_summary(self, context: EvaluationContext) -> tuple[dict[str, Any] | None, str | None]:
        """The gate of the chain that ran: evaluate.py's verdict (metric, value, comparison,
        threshold) from the evaluation report the gate read, and where that report is."""
        for producer, files in context.property_files.items():
            for file_name, report in files.items():
                gate = report.get("sagelab_summary", {}).get("gate") if isinstance(report, dict) else None
                if gate:
                    directory = self._property_file_dirs.get(producer, {}).get(file_name)
                    summary = {key: gate.get(key) for key in ("metric", "value", "comparison", "threshold", "message")}
                    return {**summary, "result": bool(gate.get("passed")), "step": producer}, directory
        # A definition of another shape: the first condition that ran, in the same terms.
        for name in self.steps:
            outcome = self._outcomes.get(name)
            if outcome is not None and outcome.conditions:
                first = outcome.conditions[0]
                return {
                    "metric": None,
                    "value": first.left,
                    "comparison": first.condition_type,
                    "threshold": first.right,
                    "message": None,
                    "result": first.result,
                }, None
        return None, None

    # -- steps ----------------------------------------------------------------------------------
    def _run_step(self, name: str, step: Mapping[str, Any], context: EvaluationContext, execution_dir: Path, resume: bool) -> StepOutcome:
        executor = EXECUTORS[step["Type"]]  # every step's type was checked in __init__
        sandbox = execution_dir / "steps" / name
        if not executor.job:
            outcome = executor.execute(StepCall(name, step, step.get("Arguments", {}), context, sandbox, self.services))
            self._step_properties[name] = outcome.properties
            return outcome
        arguments = evaluate(dict(step["Arguments"].items()), context)
        caching = executor.cacheable and step.get("CacheConfig", {}).get("Enabled")
        cache_key = self.cache.key(name, step, arguments) if caching else None
        if resume and cache_key:
            cached = self.cache.lookup(cache_key, step["CacheConfig"].get("ExpireAfter"))
            if cached is not None:
                outcome, original_log = cached
                self._step_properties[name] = outcome.properties
                self._load_property_files(name, step, outcome.properties)
                reuse_log(self._log_dir, name, original_log)
                return outcome
        outcome = executor.execute(StepCall(name, step, arguments, context, sandbox, self.services))
        self._step_properties[name] = outcome.properties
        self._load_property_files(name, step, outcome.properties)
        if cache_key:
            self.cache.store(cache_key, outcome, log=self._log_dir / f"{name}.log")
        return outcome

    def _load_property_files(self, name: str, step: Mapping[str, Any], properties: Mapping[str, Any]) -> None:
        files: dict[str, Any] = {}
        dirs: dict[str, str] = {}
        for spec in step.get("PropertyFiles", []):
            output_uri = properties["ProcessingOutputConfig"]["Outputs"][spec["OutputName"]]["S3Output"]["S3Uri"]
            files[spec["PropertyFileName"]] = self.s3.read_json(f"{output_uri.rstrip('/')}/{spec['FilePath']}")
            dirs[spec["PropertyFileName"]] = str(self.s3.path(output_uri))
        if files:
            self._property_files[name] = files
            self._property_file_dirs[name] = dirs
