"""Interpret a SageMaker Pipeline definition on this machine: no AWS, no Docker.

The runner takes the *deployed* definition (placeholders substituted with local values) and runs
each step under the container contract SageMaker gives it:

- Processing: inputs copied from local S3 into `/opt/ml/processing/...` mapped into a sandbox,
  `ContainerEntrypoint` + `ContainerArguments` run with this Python, outputs copied back.
- Training: channels in `/opt/ml/input/data/<channel>`, `SM_*` variables, hyperparameters as
  arguments, the entry point from `sagemaker_submit_directory`, `model.tar.gz` written to
  `<S3OutputPath>/<job>/output/` like SageMaker; metric definitions parsed from the log.
- Tuning: a bounded search (deterministic) over the definition's ranges, best job first.
- Built-in K-Means (a Training step with the K-Means image): `sagelab.local.builtin_kmeans`.
- AutoML: a bounded local search (`sagelab.local.automl`); its candidates are answered on a
  loopback SageMaker API (`sagelab.local.sagemaker_api`) that processing steps reach with boto3.
- Model / Transform: a local model and a batch transform through the local twin of its container
  (`sagelab.local.containers`).
- RegisterModel: a local model registry (`sagelab.local.registry`).
- Condition / Fail: evaluated with `sagelab.local.expressions`.

`s3://bucket/key` is `<workdir>/s3/bucket/key`.
"""

from __future__ import annotations

import datetime as dt
import functools
import graphlib
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagelab.bucket_layout import DATA_CAPTURE_PREFIX
from sagelab.local import prefork
from sagelab.local.expressions import EvaluationContext, UnresolvedReference, UnsupportedExpression, evaluate, evaluate_condition
from sagelab.local.registry import LocalRegistry
from sagelab.local.s3_paths import S3PathError, uri_path
from sagelab.package_files import package_dir

SUPPORTED_STEP_TYPES = ("Processing", "Training", "Tuning", "AutoML", "Model", "Transform", "RegisterModel", "Condition", "Fail")
CONTAINER_ROOT = "/opt/ml"
LOG_TAIL_LINES = 15
DEFAULT_MAX_LOCAL_TUNING_JOBS = 4
# A local AutoML search stops starting candidates after this long (SageMaker's job runs for up
# to MaxAutoMLJobRuntimeInSeconds; locally the lab's run should take minutes, not an hour).
DEFAULT_LOCAL_AUTOML_BUDGET_S = 60.0
# Batch transform sends at most this many lines per request (inference.py's MAX_ROWS).
TRANSFORM_RECORDS_PER_REQUEST = 1000


class PipelineError(RuntimeError):
    """The run cannot go on; the message names the step and what went wrong."""


class StepFailed(PipelineError):
    def __init__(self, step: str, message: str, log_tail: list[str] | None = None) -> None:
        super().__init__(f"step {step} failed: {message}")
        self.step = step
        self.reason = message
        self.log_tail = log_tail or []


class FailStepReached(PipelineError):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"Fail step {step}: {message}")
        self.step = step
        self.reason = message


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


# -- local S3 -------------------------------------------------------------------------------------
class AccessDenied(PipelineError):
    """A job read a key its role may not read (as S3 answers SageMaker with AccessDenied)."""


class LocalS3:
    """`s3://bucket/key` <-> `<root>/bucket/key`, with S3Prefix semantics for reads.

    `unreadable`: key prefixes no read may return, in any bucket (the pipeline role's explicit
    Deny of captured requests, so the twin refuses what AWS refuses)."""

    def __init__(self, root: Path, *, unreadable: tuple[str, ...] = ()) -> None:
        self.root = Path(root)
        self.unreadable = unreadable

    def path(self, uri: str) -> Path:
        try:
            return uri_path(self.root, uri)
        except S3PathError as error:
            raise PipelineError(str(error)) from None

    def objects(self, uri: str) -> list[tuple[Path, str]]:
        """(local file, path relative to the prefix) for every object under an S3 prefix."""
        found = self._objects(uri)
        bucket_root = self.root / uri[5:].partition("/")[0]
        for path, _ in found:
            key = path.relative_to(bucket_root).as_posix()
            denied = next((prefix for prefix in self.unreadable if key.startswith(prefix)), None)
            if denied:
                raise AccessDenied(
                    f"{uri}: AccessDenied on s3://{bucket_root.name}/{key}: the pipeline's role may not read {denied} "
                    "(captured requests are API callers' data); give InputDataUri a dataset in the data bucket"
                )
        return found

    def _objects(self, uri: str) -> list[tuple[Path, str]]:
        base = self.path(uri)
        if base.is_file():
            return [(base, base.name)]
        if base.is_dir():
            return [(p, p.relative_to(base).as_posix()) for p in sorted(base.rglob("*")) if p.is_file()]
        # A prefix that is part of a name (s3://b/data/part- matches part-0001.csv).
        parent = base.parent
        if parent.is_dir():
            return [(p, p.name) for p in sorted(parent.iterdir()) if p.is_file() and p.name.startswith(base.name)]
        return []

    def download(self, uri: str, destination: Path, link: bool = False) -> list[Path]:
        """Every object under `uri` into `destination`; the files placed. `link`: hard links to the
        objects (no bytes copied), for a reader that never writes into its inputs (see
        `READ_ONLY_INPUT_SCRIPTS`); a write into one would change the object itself."""
        destination.mkdir(parents=True, exist_ok=True)
        placed = []
        for source, relative in self.objects(uri):
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            _place(source, target, link)
            placed.append(target)
        return placed

    def upload(self, source: Path, uri: str, link: bool = False) -> None:
        """`source` (a file or folder) as the object(s) at `uri`. `link`: hard links to the source
        files, for files nobody writes afterwards (a finished step's outputs)."""
        target = self.path(uri)
        if source.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target, copy_function=lambda a, b: _place(Path(a), Path(b), link))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _place(source, target, link)

    def read_json(self, uri: str) -> Any:
        path = self.path(uri)
        if not path.is_file():
            raise PipelineError(f"{uri} does not exist (local path {path})")
        return json.loads(path.read_text())


# -- the DAG --------------------------------------------------------------------------------------
def _references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Get" and isinstance(inner, str) and inner.startswith("Steps."):
                found.add(inner.split(".")[1])
            else:
                found |= _references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _references(inner)
    return found


def flatten_steps(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step by name (condition branches included), with `_branch_of` set for branch steps."""
    steps: dict[str, dict[str, Any]] = {}

    def add(step: dict[str, Any], branch_of: tuple[str, str] | None) -> None:
        name = step.get("Name")
        if not name:
            raise PipelineError("a step without a Name in the definition")
        if name in steps:
            raise PipelineError(f"step name {name!r} appears twice in the definition")
        steps[name] = {**step, "_branch_of": branch_of}
        if step.get("Type") == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                for inner in step.get("Arguments", {}).get(branch, []):
                    add(inner, (name, branch))

    for step in definition.get("Steps", []):
        add(step, None)
    return steps


def dependency_order(steps: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Topological order over DependsOn, data references and condition branches (stable)."""
    dependencies: dict[str, set[str]] = {}
    for name, step in steps.items():
        arguments = {k: v for k, v in step.get("Arguments", {}).items() if k not in ("IfSteps", "ElseSteps")}
        needs = set(step.get("DependsOn", [])) | _references(arguments) | _references(step.get("PropertyFiles", []))
        if step.get("_branch_of"):
            needs.add(step["_branch_of"][0])
        unknown = needs - set(steps)
        if unknown:
            raise PipelineError(f"step {name} depends on unknown step(s) {sorted(unknown)}")
        dependencies[name] = needs - {name}
    return _stable_topological_order(dependencies, position={name: index for index, name in enumerate(steps)})


def _stable_topological_order(dependencies: Mapping[str, set[str]], position: Mapping[str, int]) -> list[str]:
    """graphlib's order, with the steps that become ready together in definition order (so a
    run's log reads the same every time)."""
    sorter = graphlib.TopologicalSorter(dependencies)
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        raise PipelineError(f"the definition has a dependency cycle among {sorted(set(error.args[1]))}") from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order


def coerce_parameter(declared: Mapping[str, Any], raw: str) -> Any:
    kind = declared.get("Type", "String")
    name = declared["Name"]
    try:
        if kind == "Integer":
            value: Any = int(raw)
        elif kind == "Float":
            value = float(raw)
        elif kind == "Boolean":
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            value = raw.lower() == "true"
        else:
            value = raw
    except ValueError:
        raise PipelineError(f"parameter {name} is {kind}; {raw!r} is not a valid {kind.lower()}") from None
    enum = declared.get("EnumValues")
    if enum and value not in enum:
        raise PipelineError(f"parameter {name} must be one of {', '.join(map(str, enum))}; got {raw!r}")
    return value


# -- the runner -----------------------------------------------------------------------------------
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
        # The jobs read as the pipeline's role does: never captured requests (stacks/execution_roles/construct.py).
        self.s3 = LocalS3(self.workdir / "s3", unreadable=(DATA_CAPTURE_PREFIX,))
        self.registry = LocalRegistry(self.workdir)
        self.pipeline_name = pipeline_name
        self.log = log
        self.python = python
        self.max_tuning_jobs = max_tuning_jobs
        # SAGELAB_AUTOML_BUDGET_S shortens the local search (the notebook's test run, a quick look).
        self.automl_budget_s = (
            automl_budget_s if automl_budget_s is not None else float(os.environ.get("SAGELAB_AUTOML_BUDGET_S", DEFAULT_LOCAL_AUTOML_BUDGET_S))
        )
        self._sagemaker_api: Any = None
        self._models: dict[str, dict[str, Any]] = {}  # Model steps of this run: name -> container
        # Python steps run in processes forked from a parent that imported numpy/pandas/xgboost
        # once (sagelab.local.prefork); fresh interpreters on request or where fork is missing.
        self.fresh_processes = fresh_processes
        self.steps = flatten_steps(definition)
        for name, step in self.steps.items():
            if step.get("Type") not in SUPPORTED_STEP_TYPES:
                raise UnsupportedExpression(
                    f"step {name}: step type {step.get('Type')!r} is not supported by the local runner (supported: {', '.join(SUPPORTED_STEP_TYPES)})"
                )
        self.order = dependency_order(self.steps)

    # -- parameters ---------------------------------------------------------------------------
    def resolve_parameters(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        declared = {p["Name"]: p for p in self.definition.get("Parameters", [])}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise PipelineError(f"unknown parameter(s) {unknown}; the definition declares {', '.join(declared)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                values[name] = coerce_parameter(spec, overrides[name])
            elif "DefaultValue" in spec:
                values[name] = spec["DefaultValue"]
            else:
                raise PipelineError(f"parameter {name} has no default; pass --param {name}=...")
        return values

    # -- running ------------------------------------------------------------------------------
    def run(self, overrides: Mapping[str, str] | None = None, resume: bool = False) -> RunResult:
        parameters = self.resolve_parameters(overrides or {})
        started = dt.datetime.now(dt.UTC)
        execution_id = f"local-{started.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        execution_dir = self.workdir / "executions" / execution_id
        execution_dir.mkdir(parents=True)
        self._log_dir = execution_dir / "logs"  # each step's log, for `sagelab pipeline logs --local`
        self._log_dir.mkdir()
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
            step_properties={},
            property_files={},
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
                record.status = "Cached" if outcome.get("cached") else "Succeeded"
                record.outputs = outcome.get("outputs", {})
                if step["Type"] == "Condition":
                    chosen, dropped = ("IfSteps", "ElseSteps") if outcome["result"] else ("ElseSteps", "IfSteps")
                    skipped |= _branch_members(step["Arguments"].get(dropped, []))
                    self.log(
                        f"   {name}: condition is {str(outcome['result']).lower()} -> {', '.join(s['Name'] for s in step['Arguments'].get(chosen, [])) or 'nothing'}"
                    )
                if step["Type"] == "RegisterModel":
                    registered = outcome["package"]
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

        if self._sagemaker_api is not None:
            self._sagemaker_api.stop()
            self._sagemaker_api = None
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
                    directory = context.step_properties[producer].get("_property_file_dirs", {}).get(file_name)
                    summary = {key: gate.get(key) for key in ("metric", "value", "comparison", "threshold", "message")}
                    return {**summary, "result": bool(gate.get("passed")), "step": producer}, directory
        # A definition of another shape: the first condition that ran, in the same terms.
        for name, step in self.steps.items():
            details = context.step_properties.get(name, {}).get("_conditions", []) if step["Type"] == "Condition" else []
            if details:
                first = details[0]
                return {
                    "metric": None,
                    "value": first["left"],
                    "comparison": first["type"],
                    "threshold": first["right"],
                    "message": None,
                    "result": first["result"],
                }, None
        return None, None

    # -- steps ----------------------------------------------------------------------------------
    def _run_step(self, name: str, step: Mapping[str, Any], context: EvaluationContext, execution_dir: Path, resume: bool) -> dict[str, Any]:
        kind = step["Type"]
        if kind == "Condition":
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
            value = all(r["result"] for r in results)
            context.step_properties[name] = {"Outcome": value, "_conditions": results}  # type: ignore[index]
            return {"result": value}
        if kind == "Fail":
            message = evaluate(step.get("Arguments", {}).get("ErrorMessage", ""), context)
            raise FailStepReached(name, str(message))
        arguments = evaluate(dict(step["Arguments"].items()), context)
        sandbox = execution_dir / "steps" / name
        cache_key = self._cache_key(name, step, arguments) if step.get("CacheConfig", {}).get("Enabled") else None
        if resume and cache_key:
            cached = self._cache_lookup(cache_key, step["CacheConfig"].get("ExpireAfter"))
            if cached is not None:
                context.step_properties[name] = cached["properties"]  # type: ignore[index]
                self._load_property_files(name, step, cached["properties"], context)
                self._reuse_log(name, cached.get("log"))
                return {"cached": True, "outputs": cached.get("outputs", {})}
        if kind == "Processing":
            properties = self._processing(name, arguments, sandbox)
        elif kind == "Training":
            properties = self._training(name, arguments, sandbox)
        elif kind == "Tuning":
            properties = self._tuning(name, arguments, sandbox)
        elif kind == "AutoML":
            properties = self._automl(name, arguments, sandbox)
        elif kind == "Model":
            properties = self._create_model(name, arguments)
        elif kind == "Transform":
            properties = self._transform(name, arguments, sandbox)
        elif kind == "RegisterModel":
            package = self._register(name, arguments, context)
            context.step_properties[name] = {"ModelPackageArn": package["arn"]}  # type: ignore[index]
            return {"package": package}
        else:  # pragma: no cover - rejected in __init__
            raise UnsupportedExpression(f"step {name}: type {kind}")
        context.step_properties[name] = properties  # type: ignore[index]
        self._load_property_files(name, step, properties, context)
        if cache_key:
            self._cache_store(cache_key, properties, log=self._log_dir / f"{name}.log")
        return {"outputs": properties.get("_outputs", {})}

    def _load_property_files(self, name: str, step: Mapping[str, Any], properties: Mapping[str, Any], context: EvaluationContext) -> None:
        files: dict[str, Any] = {}
        dirs: dict[str, str] = {}
        for spec in step.get("PropertyFiles", []):
            output_uri = properties["ProcessingOutputConfig"]["Outputs"][spec["OutputName"]]["S3Output"]["S3Uri"]
            files[spec["PropertyFileName"]] = self.s3.read_json(f"{output_uri.rstrip('/')}/{spec['FilePath']}")
            dirs[spec["PropertyFileName"]] = str(self.s3.path(output_uri))
        if files:
            context.property_files[name] = files  # type: ignore[index]
            properties.setdefault("_property_file_dirs", dirs)  # type: ignore[attr-defined]

    # -- caching (used with --resume) --------------------------------------------------------------
    def _cache_key(self, name: str, step: Mapping[str, Any], arguments: Mapping[str, Any]) -> str:
        # SageMaker keys its cache on the step's arguments (output locations excluded); locally we
        # also hash the content of every input, so a changed file under the same URI is not reused.
        relevant = {
            k: v
            for k, v in arguments.items()
            if k
            in (
                "AppSpecification",
                "Environment",
                "ProcessingInputs",
                "AlgorithmSpecification",
                "HyperParameters",
                "InputDataConfig",
                "HyperParameterTuningJobConfig",
                "TrainingJobDefinition",
            )
        }
        digest = hashlib.sha256(json.dumps({"type": step["Type"], "name": name, "arguments": relevant}, sort_keys=True, default=str).encode())
        for uri in sorted(_input_uris(arguments)):
            for path, relative in self.s3.objects(uri):
                digest.update(relative.encode() + b"\0")
                with path.open("rb") as handle:  # a chunk at a time: a 137 MB dataset is not read into memory (same digest)
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
        return digest.hexdigest()

    def _cache_lookup(self, key: str, expire_after: str | None) -> dict[str, Any] | None:
        path = self.workdir / "cache" / f"{key}.json"
        if not path.exists():
            return None
        entry = json.loads(path.read_text())
        if expire_after and time.time() - entry["stored_at"] > _iso_duration_seconds(expire_after):
            return None
        return dict(entry)

    def _cache_store(self, key: str, properties: Mapping[str, Any], log: Path) -> None:
        path = self.workdir / "cache" / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: v for k, v in properties.items() if k != "_property_file_dirs"}
        entry = {"stored_at": time.time(), "properties": clean, "outputs": properties.get("_outputs", {}), "log": str(log)}
        path.write_text(json.dumps(entry, default=str))

    def _reuse_log(self, name: str, original: str | None) -> None:
        """A reused step's log is the run's that computed it (as SageMaker shows a cached step's
        original job), so `pipeline logs` and the lab's training log still read it."""
        if original and Path(original).is_file():
            (self._log_dir / f"{name}.log").write_text(f"(reused from an earlier run: {original})\n{Path(original).read_text()}")

    # -- Processing ---------------------------------------------------------------------------------
    def _processing(self, name: str, arguments: Mapping[str, Any], sandbox: Path) -> dict[str, Any]:
        root = sandbox / "container"
        app = arguments.get("AppSpecification", {})
        entrypoint = list(app.get("ContainerEntrypoint") or [])
        if not entrypoint:
            raise StepFailed(name, "AppSpecification has no ContainerEntrypoint; the local runner runs script processors only")
        linked: list[Path] = []
        for processing_input in arguments.get("ProcessingInputs", []):
            s3_input = processing_input.get("S3Input")
            if s3_input is None:
                raise StepFailed(name, f"input {processing_input.get('InputName')!r} is not an S3Input")
            local = _container_path(root, s3_input["LocalPath"])
            compressed = s3_input.get("S3CompressionType") == "Gzip"  # extracting writes into the folder: copies
            placed = self.s3.download(s3_input["S3Uri"], local, link=not compressed)
            linked.extend([] if compressed else placed)
            if not placed:
                raise StepFailed(
                    name, f"input {processing_input.get('InputName')!r}: {s3_input['S3Uri']} has no objects (local {self.s3.path(s3_input['S3Uri'])})"
                )
            _maybe_extract(local, s3_input.get("S3CompressionType"))
        outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for output in outputs:
            _container_path(root, output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        command = [self._interpreter(part) for part in entrypoint[:1]] + [
            _map_container_arg(root, str(a)) for a in entrypoint[1:] + list(app.get("ContainerArguments") or [])
        ]
        if not (command[0] == self.python and len(command) > 1 and reads_inputs_only(root / command[1])):
            _unshare(linked)
        environment = {**arguments.get("Environment", {}), **self._sagemaker_api_environment()}
        self._execute(name, command, cwd=root, environment=environment)
        properties_outputs: dict[str, Any] = {}
        published = {}
        for output in outputs:
            local = _container_path(root, output["S3Output"]["LocalPath"])
            self.s3.upload(local, output["S3Output"]["S3Uri"], link=True)  # the finished step's files: nothing writes them again
            properties_outputs[output["OutputName"]] = {
                "OutputName": output["OutputName"],
                "S3Output": {"S3Uri": output["S3Output"]["S3Uri"], "LocalPath": output["S3Output"]["LocalPath"]},
            }
            published[output["OutputName"]] = str(self.s3.path(output["S3Output"]["S3Uri"]))
        return {
            "ProcessingJobName": _job_name(arguments.get("ProcessingJobName"), name),
            "ProcessingJobStatus": "Completed",
            "ProcessingOutputConfig": {"Outputs": properties_outputs},
            "_outputs": published,
        }

    # -- Training -----------------------------------------------------------------------------------
    def _training(self, name: str, arguments: Mapping[str, Any], sandbox: Path, job_name: str | None = None) -> dict[str, Any]:
        job_name = job_name or _job_name(arguments.get("TrainingJobName"), name)
        root = sandbox / "container"
        hyperparameters = {k: str(v) for k, v in (arguments.get("HyperParameters") or {}).items()}
        program = _json_or_text(hyperparameters.get("sagemaker_program"))
        submit = _json_or_text(hyperparameters.get("sagemaker_submit_directory"))
        image = str(arguments.get("AlgorithmSpecification", {}).get("TrainingImage", ""))
        if not program and _is_builtin_kmeans(image):
            return self._builtin_kmeans(name, arguments, root, job_name, hyperparameters)
        if not program or not submit:
            raise StepFailed(name, "training job has no sagemaker_program/sagemaker_submit_directory; the local runner runs script-mode training only")
        code_dir = root / "opt/ml/code"
        archive = self.s3.path(submit)
        if not archive.is_file():
            raise StepFailed(name, f"source archive {submit} not found (local {archive})")
        code_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(code_dir, filter="data")
        channels = self._download_channels(name, arguments, root, link=reads_inputs_only(code_dir / str(program)))
        model_dir = root / "opt/ml/model"
        output_data_dir = root / "opt/ml/output/data"
        for directory in (model_dir, output_data_dir, root / "opt/ml/input/config"):
            directory.mkdir(parents=True, exist_ok=True)
        user_hps = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
        resources = arguments.get("ResourceConfig") or arguments.get("HyperParameterTuningResourceConfig") or {}
        instance_count = int(resources.get("InstanceCount", 1))
        if instance_count > 1:
            self.log(f"   {name}: InstanceCount={instance_count}; locally all hosts' work runs in one process (algo-1)")
        (root / "opt/ml/input/config/hyperparameters.json").write_text(json.dumps(hyperparameters))
        (root / "opt/ml/input/config/resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        (root / "opt/ml/input/config/inputdataconfig.json").write_text(json.dumps({c: {"TrainingInputMode": "File"} for c in channels}))
        environment = {
            **(arguments.get("Environment") or {}),
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DATA_DIR": str(output_data_dir),
            "SM_OUTPUT_DIR": str(root / "opt/ml/output"),
            "SM_INPUT_DIR": str(root / "opt/ml/input"),
            "SM_INPUT_CONFIG_DIR": str(root / "opt/ml/input/config"),
            "SM_CHANNELS": json.dumps(channels),
            "SM_HPS": json.dumps({k: _json_or_text(v) for k, v in user_hps.items()}),
            "SM_HOSTS": json.dumps(["algo-1"]),
            "SM_CURRENT_HOST": "algo-1",
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_NUM_GPUS": "0",
            "SM_MODULE_NAME": Path(program).stem,
            "SM_USER_ENTRY_POINT": program,
            "SM_TRAINING_ENV": json.dumps(
                {"job_name": job_name, "hyperparameters": user_hps, "channel_input_dirs": {c: str(root / "opt/ml/input/data" / c) for c in channels}}
            ),
            **{f"SM_CHANNEL_{c.upper()}": str(root / "opt/ml/input/data" / c) for c in channels},
            **{f"SM_HP_{k.upper()}": v for k, v in user_hps.items()},
        }
        arguments_list = list(itertools.chain.from_iterable((f"--{k}", str(_json_or_text(v))) for k, v in user_hps.items()))
        log_lines = self._execute(name, [self.python, program, *arguments_list], cwd=code_dir, environment=environment)
        metrics = _parse_metrics(arguments.get("AlgorithmSpecification", {}).get("MetricDefinitions", []), log_lines)
        return self._publish_training(name, arguments, job_name, model_dir, output_data_dir, metrics)

    def _download_channels(self, name: str, arguments: Mapping[str, Any], root: Path, link: bool = False) -> list[str]:
        """Each channel into /opt/ml/input/data/<channel>; hard-linked only for a program that
        never writes its inputs (`reads_inputs_only`), so no write can reach local S3."""
        channels = []
        for channel in arguments.get("InputDataConfig", []):
            channel_name = channel["ChannelName"]
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            destination = root / "opt/ml/input/data" / channel_name
            if not self.s3.download(uri, destination, link=link and channel.get("CompressionType") != "Gzip"):
                raise StepFailed(name, f"channel {channel_name!r}: {uri} has no objects")
            _maybe_extract(destination, channel.get("CompressionType"))
            channels.append(channel_name)
        return channels

    def _publish_training(
        self, name: str, arguments: Mapping[str, Any], job_name: str, model_dir: Path, output_data_dir: Path, metrics: Mapping[str, float]
    ) -> dict[str, Any]:
        """model.tar.gz and output.tar.gz where SageMaker writes them, and the job's properties."""
        output_path = arguments.get("OutputDataConfig", {}).get("S3OutputPath")
        if not output_path:
            raise StepFailed(name, "OutputDataConfig.S3OutputPath is missing")
        model_uri = f"{output_path.rstrip('/')}/{job_name}/output/model.tar.gz"
        _write_tar_gz(model_dir, self.s3.path(model_uri))
        _write_tar_gz(output_data_dir, self.s3.path(f"{output_path.rstrip('/')}/{job_name}/output/output.tar.gz"))
        return {
            "TrainingJobName": job_name,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": model_uri},
            "FinalMetricDataList": [{"MetricName": k, "Value": v} for k, v in metrics.items()],
            "_metrics": dict(metrics),
            "_outputs": {"model": str(self.s3.path(model_uri))},
        }

    # -- Built-in K-Means ------------------------------------------------------------------------
    def _builtin_kmeans(self, name: str, arguments: Mapping[str, Any], root: Path, job_name: str, hyperparameters: Mapping[str, str]) -> dict[str, Any]:
        """A Training step with the built-in K-Means image: its local twin, same hyperparameters,
        same artifact format (decision 0011)."""
        from sagelab.local import builtin_kmeans

        self._download_channels(name, arguments, root)
        model_dir = root / "opt/ml/model"
        output_data_dir = root / "opt/ml/output/data"
        for directory in (model_dir, output_data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        channels = {path.name: path for path in sorted((root / "opt/ml/input/data").iterdir())}
        log = self._step_log(name)
        try:
            metrics = builtin_kmeans.train(channels, hyperparameters, model_dir, log)
        except ValueError as error:  # the built-in's own validation: bad hyperparameters or data
            raise StepFailed(name, str(error)) from None
        return self._publish_training(name, arguments, job_name, model_dir, output_data_dir, metrics)

    def _step_log(self, name: str) -> Callable[[str], None]:
        """A step's log lines, shown like a job's output and kept in its log file (as
        `_execute` does for the steps that run as processes)."""
        log_file = self._log_dir / f"{name}.log"

        def log(line: str) -> None:
            self.log(f"   [{name}] {line}")
            with log_file.open("a") as handle:
                handle.write(line + "\n")

        return log

    # -- AutoML ------------------------------------------------------------------------------------
    def _automl(self, name: str, arguments: Mapping[str, Any], sandbox: Path) -> dict[str, Any]:
        """An AutoML job: a bounded local search over the same input, with the outputs SageMaker's
        job gives (best candidate and its inference container, candidates for the leaderboard)."""
        from sagelab.local import automl

        job_name = _job_name(arguments.get("AutoMLJobName"), name)
        (source,) = arguments["InputDataConfig"][:1] or [None]
        if source is None:
            raise StepFailed(name, "InputDataConfig is empty")
        input_dir = sandbox / "input"
        uri = source["DataSource"]["S3DataSource"]["S3Uri"]
        if not self.s3.download(uri, input_dir):
            raise StepFailed(name, f"input {uri} has no objects")
        output_uri = f"{arguments['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job_name}"
        log = self._step_log(name)
        try:
            result = automl.run_automl_job(arguments, input_dir, self.s3.path(output_uri), job_name, log, time_budget_s=self.automl_budget_s)
        except ValueError as error:
            raise StepFailed(name, str(error)) from None
        for container in result["BestCandidate"]["InferenceContainers"]:
            model_path = Path(container.pop("ModelDataPath"))
            container["ModelDataUrl"] = f"{output_uri}/{model_path.relative_to(self.s3.path(output_uri)).as_posix()}"
        self._api().add_automl_job(result)
        return {**result, "_outputs": {"best_candidate": result["BestCandidate"]["CandidateName"], "output": str(self.s3.path(output_uri))}}

    def _api(self) -> Any:
        """The loopback SageMaker API (started on first use, stopped when the run ends)."""
        if self._sagemaker_api is None:
            from sagelab.local.sagemaker_api import LocalSageMakerApi

            self._sagemaker_api = LocalSageMakerApi().start()
        return self._sagemaker_api

    def _sagemaker_api_environment(self) -> dict[str, str]:
        """What a step's boto3 needs to reach the loopback SageMaker API (evaluate.py reads the
        AutoML leaderboard with ListCandidatesForAutoMLJob, as on AWS); nothing when none runs."""
        if self._sagemaker_api is None:
            return {}
        return {
            "AWS_ENDPOINT_URL_SAGEMAKER": self._sagemaker_api.url,
            # The loopback API's own random pair: it refuses requests signed with anything else.
            "AWS_ACCESS_KEY_ID": self._sagemaker_api.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self._sagemaker_api.credentials.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # -- Model / Transform -------------------------------------------------------------------------
    def _create_model(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        model_name = _job_name(arguments.get("ModelName"), name)
        container = arguments.get("PrimaryContainer") or (arguments.get("Containers") or [None])[0]
        if not container or not container.get("ModelDataUrl"):
            raise StepFailed(name, "the model has no PrimaryContainer with a ModelDataUrl")
        self._models[model_name] = dict(container)
        return {"ModelName": model_name, "_outputs": {"model": model_name}}

    def _transform(self, name: str, arguments: Mapping[str, Any], sandbox: Path) -> dict[str, Any]:
        """A batch transform: each input file, split into lines, through the local twin of the
        model's container; `<file>.out` with one answer line per input line (AssembleWith Line)."""
        from sagelab.local.containers import ErrorAnswer, open_container

        model_name = arguments["ModelName"]
        if model_name not in self._models:
            raise StepFailed(name, f"model {model_name!r} was not created in this run")
        container_spec = self._models[model_name]
        model_dir = sandbox / "model"
        archive = self.s3.path(container_spec["ModelDataUrl"])
        if not archive.is_file():
            raise StepFailed(name, f"model artifact {container_spec['ModelDataUrl']} does not exist")
        model_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(model_dir, filter="data")
        container = open_container(str(container_spec.get("Image", "")), model_dir, container_spec.get("Environment") or {})
        transform_input = arguments["TransformInput"]
        content_type = transform_input.get("ContentType", "text/csv")
        output = arguments["TransformOutput"]
        accept = output.get("Accept", "text/csv")
        output_uri = output["S3OutputPath"].rstrip("/")
        inputs = self.s3.objects(transform_input["DataSource"]["S3DataSource"]["S3Uri"])
        if not inputs:
            raise StepFailed(name, f"transform input {transform_input['DataSource']['S3DataSource']['S3Uri']} has no objects")
        rows = 0
        for path, relative in inputs:
            lines = [line for line in path.read_text().splitlines() if line.strip()] if transform_input.get("SplitType") == "Line" else [path.read_text()]
            answers = []
            for start in range(0, len(lines), TRANSFORM_RECORDS_PER_REQUEST):
                body = "\n".join(lines[start : start + TRANSFORM_RECORDS_PER_REQUEST]).encode()
                try:
                    answer, _ = container.invoke(body, content_type, accept)
                except ErrorAnswer as error:  # the container's error answer: SageMaker fails the job with it
                    raise StepFailed(name, f"{relative} records {start + 1}..: {error}") from None
                answers.append(answer.decode().rstrip("\n"))
            target = self.s3.path(f"{output_uri}/{relative}.out")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("\n".join(answers) + "\n")
            rows += len(lines)
        self.log(f"   {name}: {rows} record(s) through {model_name}")
        return {
            "TransformJobName": _job_name(arguments.get("TransformJobName"), name),
            "TransformJobStatus": "Completed",
            "TransformOutput": {"S3OutputPath": output_uri},
            "_outputs": {"predictions": str(self.s3.path(output_uri))},
        }

    # -- Tuning -------------------------------------------------------------------------------------
    def _tuning(self, name: str, arguments: Mapping[str, Any], sandbox: Path) -> dict[str, Any]:
        config = arguments["HyperParameterTuningJobConfig"]
        definition = arguments["TrainingJobDefinition"]
        objective = config["HyperParameterTuningJobObjective"]
        limit = int(config["ResourceLimits"]["MaxNumberOfTrainingJobs"])
        budget = max(1, min(limit, self.max_tuning_jobs))
        candidates = list(_tuning_candidates(config.get("ParameterRanges", {}), budget, seed=0))
        tuning_job_name = _job_name(arguments.get("HyperParameterTuningJobName"), name)
        self.log(f"   {name}: local search over {budget} of {limit} training jobs, objective {objective['Type']} {objective['MetricName']}")
        summaries: list[dict[str, Any]] = []
        for index, assignment in enumerate(candidates, start=1):
            job_name = f"{tuning_job_name}-{index:03d}-{uuid.uuid4().hex[:8]}"  # as SageMaker names a tuning job's training jobs
            training_arguments = {
                "HyperParameters": {**definition.get("StaticHyperParameters", {}), **assignment},
                "AlgorithmSpecification": definition["AlgorithmSpecification"],
                "InputDataConfig": definition["InputDataConfig"],
                "OutputDataConfig": definition["OutputDataConfig"],
                "ResourceConfig": definition.get("HyperParameterTuningResourceConfig") or definition.get("ResourceConfig", {}),
                "Environment": definition.get("Environment", {}),
            }
            properties = self._training(f"{name}/{index}", training_arguments, sandbox / f"job-{index:03d}", job_name=job_name)
            value = properties["_metrics"].get(objective["MetricName"])
            if value is None:
                raise StepFailed(name, f"training job {job_name} printed no {objective['MetricName']!r} (metric definitions did not match its log)")
            self.log(f"   {name}: job {index}/{budget} {assignment} -> {objective['MetricName']}={value:.6f}")
            summaries.append(
                {
                    "TrainingJobName": job_name,
                    "TunedHyperParameters": assignment,
                    "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": objective["MetricName"], "Value": value},
                    "TrainingJobStatus": "Completed",
                }
            )
        reverse = objective["Type"] == "Maximize"
        summaries.sort(key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], reverse=reverse)
        return {
            "HyperParameterTuningJobName": tuning_job_name,
            "TrainingJobSummaries": summaries,
            "BestTrainingJob": summaries[0],
            "_outputs": {"best_training_job": summaries[0]["TrainingJobName"]},
        }

    # -- RegisterModel --------------------------------------------------------------------------------
    def _register(self, name: str, arguments: Mapping[str, Any], context: EvaluationContext) -> dict[str, Any]:
        containers = arguments.get("InferenceSpecification", {}).get("Containers", [])
        if len(containers) != 1:
            raise StepFailed(name, f"expected one inference container, found {len(containers)}")
        container = containers[0]
        model_uri = container["ModelDataUrl"]
        model_path = self.s3.path(model_uri)
        if not model_path.is_file():
            raise StepFailed(name, f"model artifact {model_uri} does not exist")
        metrics_uri = arguments.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")
        metrics = self.s3.read_json(metrics_uri) if metrics_uri else {}
        package = self.registry.register(
            group=arguments["ModelPackageGroupName"],
            approval_status=arguments.get("ModelApprovalStatus", "PendingManualApproval"),
            model_data_url=model_uri,
            model_data_path=str(model_path),
            image=container.get("Image", ""),
            environment=container.get("Environment", {}),
            metrics_url=metrics_uri,
            metrics=metrics,
            execution_id=str(context.execution["PipelineExecutionId"]),
            description=arguments.get("ModelPackageDescription", ""),
            customer_metadata=arguments.get("CustomerMetadataProperties") or {},  # the registry stores them as strings
            drift_check_baselines={
                kind.lower(): str(source["S3Uri"])
                for kind, source in arguments.get("DriftCheckBaselines", {}).get("ModelDataQuality", {}).items()
                if isinstance(source, Mapping) and "S3Uri" in source
            },
        )
        self.log(f"   {name}: registered {package.group} version {package.version} ({package.approval_status})")
        return package.to_json()

    # -- processes --------------------------------------------------------------------------------------
    def _interpreter(self, command: str) -> str:
        return self.python if Path(command).name in ("python", "python3") else command

    def _execute(self, name: str, command: list[str], cwd: Path, environment: Mapping[str, str]) -> list[str]:
        env = {**os.environ, **{k: str(v) for k, v in environment.items()}, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)  # the script sees only its own folder, as in the container
        cwd.mkdir(parents=True, exist_ok=True)
        lines: list[str] = []

        log_file = (self._log_dir / f"{name.replace('/', '-')}.log").open("a") if getattr(self, "_log_dir", None) else None

        def on_line(line: str) -> None:
            lines.append(line)
            self.log(f"   [{name}] {line}")
            if log_file is not None:
                log_file.write(line + "\n")

        if not self.fresh_processes and prefork.available() and command[0] == self.python and len(command) > 1 and command[1].endswith(".py"):
            prefork.preload()
            script = command[1] if Path(command[1]).is_absolute() else str(cwd / command[1])
            code = prefork.run_script(script, command[2:], cwd, env, on_line)
        else:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            assert process.stdout is not None
            for line in process.stdout:
                on_line(line.rstrip("\n"))
            code = process.wait()
        if log_file is not None:
            log_file.close()
        if code != 0:
            raise StepFailed(name, f"{Path(command[1]).name if len(command) > 1 else command[0]} exited with code {code}", lines[-LOG_TAIL_LINES:])
        return lines


# -- helpers ----------------------------------------------------------------------------------------------
def _branch_members(steps: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every step of a condition branch, those of conditions nested in it included."""
    names: set[str] = set()
    for step in steps:
        names.add(step["Name"])
        if step.get("Type") == "Condition":
            names |= _branch_members([*step["Arguments"].get("IfSteps", []), *step["Arguments"].get("ElseSteps", [])])
    return names


def _is_builtin_kmeans(image: str) -> bool:
    """The built-in K-Means image (`<account>.dkr.ecr.<region>.amazonaws.com/kmeans:1`, or the
    local stand-in `local/sagemaker-kmeans:1`)."""
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return repository in ("kmeans", "sagemaker-kmeans")


def _job_name(prefix: Any, step_name: str) -> str:
    """A job name as SageMaker Pipelines gives it: the definition's name field (a prefix, with
    custom job prefixes on) plus a random part; `pipelines-<step>-...` without one."""
    base = prefix if isinstance(prefix, str) and prefix else f"pipelines-{step_name.lower()}"
    return f"{base}-{uuid.uuid4().hex[:10]}"


def _peek(expression: Any, context: EvaluationContext) -> Any:
    try:
        return evaluate(expression, context)
    except (UnsupportedExpression, UnresolvedReference):
        return None


def _container_path(root: Path, container_path: str) -> Path:
    if not container_path.startswith(CONTAINER_ROOT):
        raise PipelineError(f"container path {container_path!r} is outside {CONTAINER_ROOT}")
    return root / container_path.lstrip("/")


def _map_container_arg(root: Path, argument: str) -> str:
    return str(_container_path(root, argument)) if argument.startswith(CONTAINER_ROOT + "/") or argument == CONTAINER_ROOT else argument


# Our step scripts that read their inputs and never write into them
# (tests/test_local_staging.py::test_our_steps_leave_local_s3_as_they_found_it runs the pipeline and
# checks every object). A step running one of them, byte for byte and beside nothing but our step
# scripts, gets its inputs as hard links to local S3's files: staging MNIST's 137 MB in and 220 MB
# out costs no copying. Any other script (yours; a future step that runs yours) gets private copies:
# a container may write into its inputs, SageMaker never carries that back to S3, and a hard link
# would. A step's outputs are linked into local S3 for every script: the step has finished, and its
# folder is never written again.
READ_ONLY_INPUT_SCRIPTS = ("preprocess.py", "train.py", "evaluate.py")


def reads_inputs_only(script: Path) -> bool:
    """`script` is one of `READ_ONLY_INPUT_SCRIPTS` and every Python file beside it is one of our step scripts, unchanged."""
    read_only, ours = _step_script_digests()
    if not script.is_file() or _file_digest(script) not in read_only:
        return False
    return all(_file_digest(path) in ours for path in script.parent.glob("*.py"))


@functools.cache
def _step_script_digests() -> tuple[frozenset[str], frozenset[str]]:
    ours = {path.name: _file_digest(path) for path in package_dir("pipeline_steps").glob("*.py")}
    return frozenset(ours[name] for name in READ_ONLY_INPUT_SCRIPTS), frozenset(ours.values())


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _place(source: Path, target: Path, link: bool) -> None:
    """`target` with `source`'s content: a hard link (no bytes copied) when `link` and the
    filesystem allows one, a copy otherwise (another filesystem, or no hard links there)."""
    if target.is_symlink() or target.exists():
        target.unlink()  # never open an existing file for writing: it may be a link to an object
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)


def _unshare(paths: Iterable[Path]) -> None:
    """Give each hard-linked file a private copy, so writing into it leaves the object alone."""
    for path in paths:
        if path.stat().st_nlink > 1:
            private = path.with_name(f".{path.name}.private")
            shutil.copyfile(path, private)
            os.replace(private, path)


def _maybe_extract(directory: Path, compression: str | None) -> None:
    if compression != "Gzip":
        return
    for archive in list(directory.glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            tar.extractall(directory, filter="data")


def _write_tar_gz(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _input_uris(arguments: Mapping[str, Any]) -> Iterable[str]:
    for processing_input in arguments.get("ProcessingInputs", []):
        if "S3Input" in processing_input:
            yield processing_input["S3Input"]["S3Uri"]
    for channel in arguments.get("InputDataConfig", []) or arguments.get("TrainingJobDefinition", {}).get("InputDataConfig", []):
        yield channel["DataSource"]["S3DataSource"]["S3Uri"]
    hyperparameters = arguments.get("HyperParameters") or arguments.get("TrainingJobDefinition", {}).get("StaticHyperParameters") or {}
    submit = _json_or_text(hyperparameters.get("sagemaker_submit_directory"))
    if isinstance(submit, str) and submit.startswith("s3://"):
        yield submit


def _parse_metrics(definitions: list[Mapping[str, str]], lines: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for definition in definitions:
        pattern = re.compile(definition["Regex"])
        for line in lines:
            match = pattern.search(line)
            if match:
                try:
                    metrics[definition["Name"]] = float(match.group(1))
                except (IndexError, ValueError):
                    continue
    return metrics


def _iso_duration_seconds(value: str) -> float:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", value)
    if not match:
        raise PipelineError(f"CacheConfig ExpireAfter {value!r} is not an ISO 8601 duration like P30D or PT1H")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _draw(kind: str, spec: Mapping[str, Any], rng: random.Random, midpoint: bool) -> str:
    if kind == "IntegerParameterRanges":
        low, high = int(spec["MinValue"]), int(spec["MaxValue"])
        return str((low + high) // 2 if midpoint else rng.randint(low, high))
    if kind == "ContinuousParameterRanges":
        low_f, high_f = float(spec["MinValue"]), float(spec["MaxValue"])
        return f"{((low_f + high_f) / 2) if midpoint else rng.uniform(low_f, high_f):.6g}"
    values = list(spec["Values"])
    return str(values[0] if midpoint else rng.choice(values))


def _tuning_candidates(ranges: Mapping[str, Any], count: int, seed: int) -> Iterable[dict[str, str]]:
    """Deterministic candidates: the midpoint first, then seeded random draws within the ranges."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible search, not a secret
    specs = [(kind, spec) for kind in ("IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges") for spec in ranges.get(kind, [])]
    seen: set[tuple[tuple[str, str], ...]] = set()
    attempts = 0
    while len(seen) < count and attempts < count * 20:
        attempts += 1
        assignment = {spec["Name"]: _draw(kind, spec, rng, midpoint=not seen) for kind, spec in specs}
        key = tuple(sorted(assignment.items()))
        if key in seen:
            continue
        seen.add(key)
        yield assignment
