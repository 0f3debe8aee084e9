"""The SageMaker Pipeline definition, built offline with the sagemaker SDK v2.

This is the only module that imports `sagemaker`: a move to SDK v3 touches this file alone.

    InputDataUri
         |
    [Preprocess]  SKLearn 1.4-2 processing: preprocess.py -> train/ validation/ test/ spec/
         |
    [Train]       XGBoost 3.0-5 script mode: train.py        (or [Tune]: a tuning job over train.py)
         |
    [Evaluate]    XGBoost 3.0-5 processing: evaluate.py -> evaluation.json (PropertyFile), PNGs
         |
    [CheckMetric] metric >= MetricThreshold (scores) / <= (errors)
       /      \\
 [RegisterModel]  [MetricBelowThreshold] (Fail, message names metric, value, threshold)

The definition is built once per app with `${Name}` placeholders (see `PLACEHOLDERS`) where each
environment's values go; CDK fills them with `Fn::Sub`, `sagelab run` with local values. No AWS
call, no upload: every S3 location is an explicit URI and SDK telemetry is opted out.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagelab.config import PipelineConfig, TuningConfig
from sagelab.step_contract import CONDITION_METRIC_PATH, EVALUATION_FILE_NAME, METRIC_LINE_FORMAT

# SDK settings that must hold before `sagemaker` is imported: no telemetry, no config files read
# from the user's machine or S3 (they would make the definition depend on who builds it).
os.environ.setdefault("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", os.devnull)
os.environ.setdefault("SAGEMAKER_USER_CONFIG_OVERRIDE", os.devnull)

# Built definitions and image URIs, keyed by everything they depend on: per user, not per checkout,
# so an installed `sagelab` caches too (SAGELAB_CACHE_DIR overrides).
DEFAULT_CACHE_DIR = Path(os.environ.get("SAGELAB_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sagelab")
SKLEARN_FRAMEWORK_VERSION = "1.4-2"
XGBOOST_FRAMEWORK_VERSION = "3.0-5"
PIPELINE_CODE_PREFIX = "pipeline-code"
SOURCEDIR_ARCHIVE = "sourcedir.tar.gz"
MODEL_CODE_DIR = "/opt/ml/model/code"  # where the serving container finds the code train.py packed into the model
STEP_SCRIPTS = ("preprocess.py", "train.py", "evaluate.py", "inference.py", "model_contract.py", "train_custom.py")
# Placeholders substituted per environment (CDK: Fn::Sub; local runner: its own values), besides
# CloudFormation's own pseudo parameters (PSEUDO_PARAMETERS).
PLACEHOLDERS = (
    "ArtifactsBucket",
    "DataBucket",
    "CodeVersion",
    "PipelineRoleName",
    "KmsKeyArn",
    "ModelPackageGroupName",
    "JobNamePrefix",
    "SklearnImageUri",
    "XgboostImageUri",
)
PSEUDO_PARAMETERS = ("AWS::Partition", "AWS::AccountId", "AWS::Region")
STEP_PREPROCESS = "Preprocess"
STEP_TRAIN = "Train"
STEP_TUNE = "Tune"
STEP_EVALUATE = "Evaluate"
STEP_CHECK = "CheckMetric"
STEP_REGISTER = "RegisterModel"
STEP_FAIL = "MetricBelowThreshold"
EVALUATION_PROPERTY_FILE = "EvaluationReport"
_SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def placeholder(name: str) -> str:
    return "${" + name + "}"


def job_name(step: str) -> str:
    """The name SageMaker starts a step's jobs with: `<environment prefix>-<step>`, so that each
    environment's roles can be scoped to its own jobs and their log streams (docs/decisions/0010)."""
    return f"{placeholder('JobNamePrefix')}-{step}"


def code_uri(name: str = "") -> str:
    base = f"s3://{placeholder('ArtifactsBucket')}/{PIPELINE_CODE_PREFIX}/{placeholder('CodeVersion')}"
    return f"{base}/{name}" if name else base


def metric_regex(metric: str, split: str = "validation") -> str:
    sample = METRIC_LINE_FORMAT.format(split=split, metric=metric, value=0.0)
    return re.escape(sample.split("=")[0] + "=") + r"([0-9.eE+-]+)"


# What shapes the definition is the environment's `pipeline` config itself (one type, validated
# once in sagelab/config.py); per-environment values go through placeholders instead. The old
# names stay for callers that build a definition without a config.
PipelineSettings = PipelineConfig
TuningSettings = TuningConfig
PIPELINE_NAME = "sagelab"  # the SDK object's name; the deployed pipeline is named by CDK
INFERENCE_INSTANCE_TYPES = ("ml.m5.large", "ml.t2.medium")
CACHE_EXPIRE_AFTER = "P30D"


def image_uris(region: str, cache_dir: Path | None = DEFAULT_CACHE_DIR) -> dict[str, str]:
    """The framework images for a region, from the SDK's bundled table (no AWS call).

    Cached on disk per SDK version and region, like the definition: importing the SDK for a table
    lookup would cost every synth over a second."""
    return dict(_image_uris(region, cache_dir))


@functools.cache
def _image_uris(region: str, cache_dir: Path | None) -> tuple[tuple[str, str], ...]:
    key = f"{importlib.metadata.version('sagemaker')}-{region}-{SKLEARN_FRAMEWORK_VERSION}-{XGBOOST_FRAMEWORK_VERSION}"
    path = Path(cache_dir) / f"image-uris-{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        return tuple((name, uri) for name, uri in json.loads(path.read_text()))
    with _quiet_sdk():
        from sagemaker import image_uris as sdk_image_uris

        uris = _retrieve_image_uris(sdk_image_uris, region)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(uris))
    return uris


def _retrieve_image_uris(sdk_image_uris: Any, region: str) -> tuple[tuple[str, str], ...]:
    sklearn = sdk_image_uris.retrieve("sklearn", region=region, version=SKLEARN_FRAMEWORK_VERSION, instance_type="ml.m5.large")
    xgboost = sdk_image_uris.retrieve("xgboost", region=region, version=XGBOOST_FRAMEWORK_VERSION, instance_type="ml.m5.large")
    return (("SklearnImageUri", sklearn), ("XgboostImageUri", xgboost))


def _offline_session() -> Any:
    import boto3
    from sagemaker.workflow.pipeline_context import PipelineSession

    # Static dummy credentials keep botocore from probing the credential chain (and the
    # instance-metadata endpoint); nothing here sends a request, so they are never used.
    boto_session = boto3.Session(region_name="us-east-1", aws_access_key_id="sagelab-offline", aws_secret_access_key="sagelab-offline")  # noqa: S106 - a dummy, never sent
    return PipelineSession(boto_session=boto_session, default_bucket=placeholder("ArtifactsBucket"), sagemaker_config=_SDK_CONFIG)


@dataclass(frozen=True)
class _Parameters:
    """The pipeline parameters (SDK objects), named; `in_order` is how the definition lists them."""

    input_data_uri: Any
    target_column: Any
    input_format: Any
    metric_threshold: Any
    approval_status: Any
    processing_instance_type: Any
    training_instance_type: Any
    training_instance_count: Any
    max_depth: Any
    eta: Any
    num_round: Any

    def in_order(self) -> list[Any]:
        return [getattr(self, name) for name in self.__dataclass_fields__]


@dataclass(frozen=True)
class _Shared:
    """What every step is built with: the offline session, role, key, cache and retry policies."""

    session: Any
    role: str
    kms_key: str
    cache: Any
    retry_policies: list[Any]

    def run_uri(self, *parts: str) -> Any:
        from sagemaker.workflow.execution_variables import ExecutionVariables
        from sagemaker.workflow.functions import Join

        # Every run writes under its own execution id, so no run overwrites another's evidence.
        return Join(on="/", values=[f"s3://{placeholder('ArtifactsBucket')}/pipeline-runs", ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    def script_processor(self, image: str, instance_type: Any, base_job_name: str) -> Any:
        from sagemaker.processing import ScriptProcessor

        return ScriptProcessor(
            image_uri=placeholder(image), command=["python3"], role=self.role, instance_type=instance_type, instance_count=1,
            volume_kms_key=self.kms_key, output_kms_key=self.kms_key, base_job_name=base_job_name, sagemaker_session=self.session,
            env={"PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


def build_pipeline(settings: PipelineSettings) -> Any:
    """The sagemaker `Pipeline` object (SDK type); most callers want `build_definition`.

    Preprocess -> Train (or Tune) -> Evaluate -> CheckMetric (RegisterModel | MetricBelowThreshold),
    each built by its own function below from the parameters and the shared settings."""
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_definition_config import PipelineDefinitionConfig

    shared = _shared_settings()
    parameters = _parameters(settings)
    preprocess = _preprocess_step(shared, parameters)
    training, model_data = _training_step(settings, shared, parameters, preprocess)
    evaluate, evaluation_report = _evaluate_step(shared, parameters, preprocess, model_data)
    check = _check_metric_step(settings, shared, parameters, evaluate, evaluation_report, model_data)
    return Pipeline(
        name=PIPELINE_NAME,
        parameters=parameters.in_order(),
        steps=[preprocess, training, evaluate, check],
        # No experiment/trial tracking: it would need sagemaker:CreateExperiment/Trial/... on
        # every role for a feature the lab does not use; the registry keeps the lineage.
        pipeline_experiment_config=None,
        # Keep each job's name field as a prefix that SageMaker extends per run (instead of the
        # default `pipelines-<execution id>-...`), so a role can be scoped to its own jobs.
        pipeline_definition_config=PipelineDefinitionConfig(use_custom_job_prefix=True),
        sagemaker_session=shared.session,
    )


def _shared_settings() -> _Shared:
    from sagemaker.workflow.retry import SageMakerJobExceptionTypeEnum, SageMakerJobStepRetryPolicy, StepExceptionTypeEnum, StepRetryPolicy
    from sagemaker.workflow.steps import CacheConfig

    return _Shared(
        session=_offline_session(),
        # An ARN (with a "/") keeps the SDK from asking IAM to expand a bare role name.
        role=f"arn:{placeholder('AWS::Partition')}:iam::{placeholder('AWS::AccountId')}:role/{placeholder('PipelineRoleName')}",
        kms_key=placeholder("KmsKeyArn"),
        cache=CacheConfig(enable_caching=True, expire_after=CACHE_EXPIRE_AFTER),
        retry_policies=[
            StepRetryPolicy(
                exception_types=[StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING], backoff_rate=2.0, interval_seconds=10, max_attempts=5
            ),
            SageMakerJobStepRetryPolicy(
                exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR, SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT],
                backoff_rate=2.0,
                interval_seconds=60,
                max_attempts=5,
            ),
        ],
    )


def _parameters(settings: PipelineSettings) -> _Parameters:
    from sagemaker.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString

    return _Parameters(
        input_data_uri=ParameterString("InputDataUri", default_value=f"s3://{placeholder('DataBucket')}/datasets/digits/"),
        target_column=ParameterString("TargetColumn", default_value="label"),
        input_format=ParameterString("InputFormat", default_value="auto", enum_values=["auto", "csv", "csv-label-first", "parquet"]),
        metric_threshold=ParameterFloat("MetricThreshold", default_value=settings.metric_threshold),
        approval_status=ParameterString(
            "ModelApprovalStatus", default_value=settings.approval_status, enum_values=["PendingManualApproval", "Approved", "Rejected"]
        ),
        processing_instance_type=ParameterString("ProcessingInstanceType", default_value=settings.processing_instance_type),
        training_instance_type=ParameterString("TrainingInstanceType", default_value=settings.training_instance_type),
        training_instance_count=ParameterInteger("TrainingInstanceCount", default_value=1),
        max_depth=ParameterInteger("MaxDepth", default_value=settings.max_depth),
        eta=ParameterFloat("Eta", default_value=settings.eta),
        num_round=ParameterInteger("NumRound", default_value=settings.num_round),
    )


def _preprocess_step(shared: _Shared, parameters: _Parameters) -> Any:
    from sagemaker.processing import ProcessingInput, ProcessingOutput
    from sagemaker.workflow.steps import ProcessingStep

    processor = shared.script_processor("SklearnImageUri", parameters.processing_instance_type, job_name("preprocess"))
    arguments = ["--input-dir", "/opt/ml/processing/input/data", "--output-dir", "/opt/ml/processing/output"]
    arguments += ["--target-column", parameters.target_column, "--input-format", parameters.input_format]
    return ProcessingStep(
        name=STEP_PREPROCESS,
        step_args=processor.run(
            code=code_uri("preprocess.py"),
            inputs=[ProcessingInput(source=parameters.input_data_uri, destination="/opt/ml/processing/input/data", input_name="data")],
            outputs=[
                ProcessingOutput(output_name=name, source=f"/opt/ml/processing/output/{name}", destination=shared.run_uri("preprocess", name))
                for name in ("train", "validation", "test", "spec")
            ],
            arguments=arguments,
        ),
        cache_config=shared.cache,
        retry_policies=shared.retry_policies,
    )


def _preprocess_output(preprocess: Any, name: str) -> Any:
    return preprocess.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri


def _training_step(settings: PipelineSettings, shared: _Shared, parameters: _Parameters, preprocess: Any) -> tuple[Any, Any]:
    """The training step (a tuning step when tuning is on) and its model artifact's S3 URI."""
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.workflow.steps import TrainingStep

    metric_definitions: list[dict[str, Any]] = [{"Name": f"validation:{metric}", "Regex": metric_regex(metric)} for metric in ("accuracy", "rmse")]
    estimator = Estimator(
        image_uri=placeholder("XgboostImageUri"),
        entry_point="train.py",
        source_dir=code_uri(SOURCEDIR_ARCHIVE),
        role=shared.role,
        instance_type=parameters.training_instance_type,
        instance_count=parameters.training_instance_count,
        volume_kms_key=shared.kms_key,
        output_kms_key=shared.kms_key,
        output_path=f"s3://{placeholder('ArtifactsBucket')}/models",
        code_location=f"s3://{placeholder('ArtifactsBucket')}/{PIPELINE_CODE_PREFIX}",
        base_job_name=job_name("train"),
        hyperparameters={"max_depth": parameters.max_depth, "eta": parameters.eta, "num_round": parameters.num_round, "cv_folds": str(settings.cv_folds)},
        metric_definitions=metric_definitions,
        enable_network_isolation=False,
        disable_profiler=True,
        max_run=3600,
        sagemaker_session=shared.session,
    )
    inputs = {
        name: TrainingInput(s3_data=_preprocess_output(preprocess, name), content_type="text/csv" if name != "spec" else "application/json")
        for name in ("train", "validation", "spec")
    }
    if settings.tuning.max_jobs > 0:
        return _tuning_step(settings, shared, estimator, inputs, metric_definitions)
    step = TrainingStep(name=STEP_TRAIN, step_args=estimator.fit(inputs=inputs), cache_config=shared.cache, retry_policies=shared.retry_policies)
    return step, step.properties.ModelArtifacts.S3ModelArtifacts


def _tuning_step(
    settings: PipelineSettings, shared: _Shared, estimator: Any, inputs: Mapping[str, Any], metric_definitions: list[dict[str, Any]]
) -> tuple[Any, Any]:
    from sagemaker.tuner import ContinuousParameter, HyperparameterTuner, IntegerParameter
    from sagemaker.workflow.steps import TuningStep

    tuning = settings.tuning
    objective = f"validation:{settings.metric if settings.metric in ('accuracy', 'rmse') else ('rmse' if settings.metric_is_error else 'accuracy')}"
    tuner = HyperparameterTuner(
        estimator=estimator,
        objective_metric_name=objective,
        objective_type="Minimize" if objective.endswith("rmse") else "Maximize",
        hyperparameter_ranges={
            "max_depth": IntegerParameter(tuning.max_depth_min, tuning.max_depth_max),
            "eta": ContinuousParameter(tuning.eta_min, tuning.eta_max),
        },
        metric_definitions=metric_definitions,
        max_jobs=tuning.max_jobs,
        max_parallel_jobs=tuning.max_parallel_jobs,
        strategy=tuning.strategy,
        # Tuning job names are at most 32 characters and SageMaker appends to the prefix: the
        # shortest step suffix keeps the most room for the student id.
        base_tuning_job_name=job_name("t"),
    )
    step = TuningStep(name=STEP_TUNE, step_args=tuner.fit(inputs=inputs), cache_config=shared.cache, retry_policies=shared.retry_policies)
    return step, step.get_top_model_s3_uri(top_k=0, s3_bucket=placeholder("ArtifactsBucket"), prefix="models")


def _evaluate_step(shared: _Shared, parameters: _Parameters, preprocess: Any, model_data: Any) -> tuple[Any, Any]:
    """The evaluation step and the property file (evaluation.json) the metric gate reads."""
    from sagemaker.processing import ProcessingInput, ProcessingOutput
    from sagemaker.workflow.properties import PropertyFile
    from sagemaker.workflow.steps import ProcessingStep

    evaluation_report = PropertyFile(name=EVALUATION_PROPERTY_FILE, output_name="evaluation", path=EVALUATION_FILE_NAME)
    processor = shared.script_processor("XgboostImageUri", parameters.processing_instance_type, job_name("evaluate"))
    step = ProcessingStep(
        name=STEP_EVALUATE,
        step_args=processor.run(
            code=code_uri("evaluate.py"),
            inputs=[
                ProcessingInput(source=model_data, destination="/opt/ml/processing/model", input_name="model"),
                ProcessingInput(source=_preprocess_output(preprocess, "test"), destination="/opt/ml/processing/test", input_name="test"),
            ],
            outputs=[ProcessingOutput(output_name="evaluation", source="/opt/ml/processing/evaluation", destination=shared.run_uri("evaluation"))],
            arguments=["--model-dir", "/opt/ml/processing/model", "--test-dir", "/opt/ml/processing/test", "--output-dir", "/opt/ml/processing/evaluation"],
        ),
        property_files=[evaluation_report],
        retry_policies=shared.retry_policies,
    )
    return step, evaluation_report


def _register_step(settings: PipelineSettings, shared: _Shared, parameters: _Parameters, evaluate: Any, model_data: Any) -> Any:
    from sagemaker.model import Model
    from sagemaker.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.workflow.functions import Join
    from sagemaker.workflow.model_step import ModelStep

    model = Model(
        image_uri=placeholder("XgboostImageUri"),
        model_data=model_data,
        role=shared.role,
        # train.py packs inference.py into the model (code/): the container imports it from there,
        # with no download at start, so the model runs with network isolation; no repack job.
        env={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": MODEL_CODE_DIR, "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"},
        sagemaker_session=shared.session,
    )
    model_metrics = ModelMetrics(
        model_statistics=MetricsSource(
            s3_uri=Join(on="/", values=[evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, EVALUATION_FILE_NAME]),
            content_type="application/json",
        )
    )
    return ModelStep(
        name=STEP_REGISTER,
        step_args=model.register(
            content_types=["application/json", "text/csv"],
            response_types=["application/json"],
            inference_instances=list(INFERENCE_INSTANCE_TYPES),
            transform_instances=[INFERENCE_INSTANCE_TYPES[0]],
            model_package_group_name=placeholder("ModelPackageGroupName"),
            approval_status=parameters.approval_status,
            model_metrics=model_metrics,
            description="XGBoost model trained by the SageLab pipeline",
            domain="MACHINE_LEARNING",
            task="CLASSIFICATION" if not settings.metric_is_error else "REGRESSION",
        ),
        retry_policies=shared.retry_policies[:1],  # registration is an API call, not a job: no capacity errors
    )


def _check_metric_step(settings: PipelineSettings, shared: _Shared, parameters: _Parameters, evaluate: Any, evaluation_report: Any, model_data: Any) -> Any:
    """The metric gate: register the model when the metric meets the threshold, else fail with a
    message naming the metric, its value and the threshold."""
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionLessThanOrEqualTo
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import Join, JsonGet

    metric_value: Any = JsonGet(step_name=evaluate.name, property_file=evaluation_report, json_path=CONDITION_METRIC_PATH.format(metric=settings.metric))
    comparison = "at most" if settings.metric_is_error else "at least"
    fail = FailStep(
        name=STEP_FAIL,
        error_message=Join(
            on="",
            values=[f"Test {settings.metric} ", metric_value, f" does not meet the threshold: it must be {comparison} ", parameters.metric_threshold, "."],
        ),
    )
    condition_type = ConditionLessThanOrEqualTo if settings.metric_is_error else ConditionGreaterThanOrEqualTo
    return ConditionStep(
        name=STEP_CHECK,
        conditions=[condition_type(left=metric_value, right=parameters.metric_threshold)],
        if_steps=[_register_step(settings, shared, parameters, evaluate, model_data)],
        else_steps=[fail],
    )


@contextlib.contextmanager
def _no_instance_metadata() -> Iterator[None]:
    """Keep botocore off the instance-metadata endpoint while the SDK builds objects.

    Some SDK constructors create default boto3 clients, which resolve credentials; on a laptop
    without credentials that chain ends at 169.254.169.254. Scoped, not global: `sagelab`'s AWS
    commands on a notebook instance do need instance metadata for their credentials.
    """
    previous = os.environ.get("AWS_EC2_METADATA_DISABLED")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_EC2_METADATA_DISABLED", None)
        else:
            os.environ["AWS_EC2_METADATA_DISABLED"] = previous


def _iter_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        arguments = step.get("Arguments", {})
        yield from _iter_steps(arguments.get("IfSteps", []) if step["Type"] == "Condition" else [])
        yield from _iter_steps(arguments.get("ElseSteps", []) if step["Type"] == "Condition" else [])


def iter_steps(definition: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every step of a definition, condition branches included, in definition order."""
    return _iter_steps(list(definition["Steps"]))


def _make_portable(definition: dict[str, Any]) -> dict[str, Any]:
    """Remove what ties the SDK's output to the machine and moment that built it.

    The SDK bakes its session's region into the script-mode hyperparameters and, for tuning, a
    timestamped job name; both would make the definition differ per build and per region.
    """
    for step in iter_steps(definition):
        arguments = step.get("Arguments", {})
        for hyperparameters in (
            arguments.get("HyperParameters"),
            arguments.get("TrainingJobDefinition", {}).get("StaticHyperParameters"),
        ):
            if hyperparameters is None:
                continue
            hyperparameters.pop("sagemaker_job_name", None)
            if "sagemaker_region" in hyperparameters:
                hyperparameters["sagemaker_region"] = json.dumps(placeholder("AWS::Region"))
    return definition


@contextlib.contextmanager
def _config_validated_once() -> Iterator[None]:
    """The SDK re-validates its defaults config against a large JSON schema on every lookup
    (about 60 times per build, 10 s of a 12 s build). Our config is a constant validated once
    here, so lookups during the build skip the repeat; the SDK's own function is restored after."""
    import sagemaker.utils as sdk_utils
    from sagemaker.config import validate_sagemaker_config

    validate_sagemaker_config(_SDK_CONFIG)
    original = sdk_utils.validate_sagemaker_config

    def validate_unless_ours(config: Any = None) -> None:
        if config is not _SDK_CONFIG:
            original(config)

    sdk_utils.validate_sagemaker_config = validate_unless_ours  # type: ignore[assignment]
    try:
        yield
    finally:
        sdk_utils.validate_sagemaker_config = original


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """The SDK logs deprecation notices and "popping out job name" notes on every build; they say
    nothing about our definition and would bury synth output."""
    loggers = [logging.getLogger(name) for name in ("sagemaker", "sagemaker.config", "sagemaker.image_uris")]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # The SDK also prints a v2 deprecation banner to stdout on import.
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, previous, strict=False):
            logger.setLevel(level)


def build_definition_text(settings: PipelineSettings) -> str:
    """Build the definition with the SDK (no cache): canonical JSON with `${Name}` placeholders."""
    with _quiet_sdk(), _no_instance_metadata(), _config_validated_once():
        raw = build_pipeline(settings).definition()
    return json.dumps(_make_portable(json.loads(raw)), sort_keys=True, separators=(",", ":"))


def _cache_key(settings: PipelineSettings) -> str:
    """Everything the definition depends on: SDK version, this builder, the step contract, the settings."""
    from sagelab import step_contract

    digest = hashlib.sha256()
    digest.update(importlib.metadata.version("sagemaker").encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(Path(step_contract.__file__).read_bytes())
    for script in step_contract.CONTRACT_SCRIPTS:
        digest.update((step_contract.STEPS_DIR / script).read_bytes())
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def _definition_text(settings: PipelineSettings, cache_dir: Path | None) -> str:
    # Importing the SDK and building takes ~3 s; the result depends only on `_cache_key`, so it
    # is kept on disk and every later synth (and `sagelab run`) reuses it.
    if cache_dir is None:
        return build_definition_text(settings)
    path = Path(cache_dir) / f"definition-{_cache_key(settings)}.json"
    if path.is_file():
        return path.read_text()
    text = build_definition_text(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return text


def build_definition(settings: PipelineSettings, cache_dir: Path | None = DEFAULT_CACHE_DIR) -> dict[str, Any]:
    """The pipeline definition as a dict, placeholders left as `${Name}`. Cached per settings."""
    return json.loads(_definition_text(settings, cache_dir))


def definition_json(settings: PipelineSettings, cache_dir: Path | None = DEFAULT_CACHE_DIR) -> str:
    """Canonical JSON text of the definition (what CDK embeds in `Fn::Sub`)."""
    return _definition_text(settings, cache_dir)


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Local twin of `Fn::Sub`: replace `${Name}`; an unknown placeholder is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for placeholder ${{{name}}}; known: {', '.join(sorted(values))}")
        return values[name]

    return re.sub(r"\$\{([A-Za-z0-9_:]+)\}", replace, text)
