"""The SageMaker Pipeline definition, built offline with the sagemaker SDK v2.

This is the only module that imports `sagemaker`: a move to SDK v3 touches this file alone.

    InputDataUri, Algorithm
         |
    [Preprocess]  SKLearn 1.4-2 processing: preprocess.py -> train/ validation/ test/ spec/ tabular/
         |
         +- [IsXGBoost]   Train|Tune (XGBoost 3.0-5 script mode) -> Evaluate -> CheckMetric
         |                  -> RegisterModel | MetricBelowThreshold
         +- [IsKMeans]    KMeansTrain (built-in K-Means image) -> KMeansEvaluate -> KMeansCheckMetric
         |                  -> KMeansRegisterModel | KMeansMetricBelowThreshold
         +- [IsAutopilot] Autopilot (AutoML job, ensembling) -> AutopilotModel -> AutopilotPredict
         |                  (batch transform of the test split) -> AutopilotEvaluate -> AutopilotCheckMetric
         |                  -> AutopilotRegisterModel | AutopilotMetricBelowThreshold
         +- [IsCustom]    (with pipeline.custom_script) CustomTrain (your script, SKLearn image)
                            -> CustomEvaluate -> CustomCheckMetric -> CustomRegisterModel | ...

`Algorithm` is a parameter with its allowed values declared, so one deployed pipeline trains any
of them per run and an unknown value is refused before anything runs (docs/decisions/0011). Every
gate reads the verdict evaluate.py writes for the model's problem type (`sagelab_summary.gate`).

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

from pipeline_steps import contract
from sagelab import algorithms as registry
from sagelab import step_contract
from sagelab.algorithms import AlgorithmSpec
from sagelab.config import PipelineConfig, TuningConfig
from sagelab.step_contract import EVALUATION_FILE_NAME, GATE_MESSAGE_PATH, GATE_PASSED_PATH, METRIC_LINE_FORMAT, MODEL_DESCRIPTION_FILE_NAME

# SDK settings that must hold before `sagemaker` is imported: no telemetry, no config files read
# from the user's machine or S3 (they would make the definition depend on who builds it).
os.environ.setdefault("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", os.devnull)
os.environ.setdefault("SAGEMAKER_USER_CONFIG_OVERRIDE", os.devnull)

# Built definitions and image URIs, keyed by everything they depend on: per user, not per checkout,
# so an installed `sagelab` caches too (SAGELAB_CACHE_DIR overrides).
DEFAULT_CACHE_DIR = Path(os.environ.get("SAGELAB_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sagelab")
SKLEARN_FRAMEWORK_VERSION = "1.4-2"
XGBOOST_FRAMEWORK_VERSION = "3.0-5"
PIPELINE_CODE_PREFIX = contract.PIPELINE_CODE_PREFIX
SOURCEDIR_ARCHIVE = "sourcedir.tar.gz"
MODEL_CODE_DIR = "/opt/ml/model/code"  # where the serving container finds the code train.py packed into the model
# Each processing job gets the contract module as an input of its own, beside its script's `code`
# input: the scripts import it from there; the Lambdas get it at their root (docs/decisions/0018).
CONTRACT_MODULE = "contract.py"
STEP_SCRIPTS = ("preprocess.py", "train.py", "evaluate.py", "inference.py", "model_contract.py", "train_custom.py", CONTRACT_MODULE)
CONTRACT_INPUT = "contract"
CONTRACT_INPUT_DIR = "/opt/ml/processing/input/contract"
# Built-in K-Means: the image version the SDK's table knows for every region.
KMEANS_IMAGE_VERSION = "1"
AUTOGLUON_IMAGE_VERSION = "1.1.1"  # only its repository matters (see _retrieve_image_uris)
AUTOPILOT_INFERENCE_IMAGE = "AutopilotInferenceImageUri"
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
    "KmeansImageUri",
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
DATA_SUMMARY_PROPERTY_FILE = "DataSummary"
DATA_SUMMARY_FILE_NAME = step_contract.DATA_SUMMARY_FILE_NAME  # preprocess.py writes it into its `spec` output
# The model each chain registers is tagged with these, for the approval deployer and the front
# door (decision 0011): which container speaks which format, and where its description is.
METADATA_ALGORITHM = contract.METADATA_ALGORITHM
METADATA_PROBLEM_TYPE = contract.METADATA_PROBLEM_TYPE
METADATA_DESCRIPTION = contract.METADATA_DESCRIPTION
_SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def placeholder(name: str) -> str:
    return "${" + name + "}"


def job_name(step: str) -> str:
    """The name SageMaker starts a step's jobs with: `sagelab-<id>--<step>` (`JobNamePrefix` is the
    environment's scope, `sagelab.naming`), so that each environment's roles can be scoped to its
    own jobs and their log streams (docs/decisions/0010, 0012)."""
    return f"{placeholder('JobNamePrefix')}{step}"


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
    key = f"{importlib.metadata.version('sagemaker')}-{region}-{SKLEARN_FRAMEWORK_VERSION}-{XGBOOST_FRAMEWORK_VERSION}-kmeans{KMEANS_IMAGE_VERSION}-autogluon{AUTOGLUON_IMAGE_VERSION}"
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
    kmeans = sdk_image_uris.retrieve("kmeans", region=region, version=KMEANS_IMAGE_VERSION)
    # Not a placeholder: Autopilot picks its candidates' inference image at run time. Ensembling
    # candidates are served by the AutoGluon inference image; the roles that create and run the
    # best candidate's model may pull from that repository (any tag).
    autogluon = sdk_image_uris.retrieve(
        "autogluon", region=region, version=AUTOGLUON_IMAGE_VERSION, image_scope="inference", instance_type="ml.m5.large", py_version="py311"
    )
    return (("SklearnImageUri", sklearn), ("XgboostImageUri", xgboost), ("KmeansImageUri", kmeans), (AUTOPILOT_INFERENCE_IMAGE, autogluon))


def _offline_session() -> Any:
    from sagemaker.workflow.pipeline_context import PipelineSession

    from sagelab.aws_session import new_session

    # Static dummy credentials keep botocore from probing the credential chain (and the
    # instance-metadata endpoint); nothing here sends a request, so they are never used. The SDK's
    # session makes five clients and an S3 resource of it: on the shared loader (sagelab/aws_session.py)
    # a second build in the process parses none of their models again.
    boto_session = new_session(region_name="us-east-1", aws_access_key_id="sagelab-offline", aws_secret_access_key="sagelab-offline")  # noqa: S106 - a dummy, never sent
    return PipelineSession(boto_session=boto_session, default_bucket=placeholder("ArtifactsBucket"), sagemaker_config=_SDK_CONFIG)


@dataclass(frozen=True)
class _Parameters:
    """The pipeline parameters (SDK objects), named; `in_order` is how the definition lists them."""

    input_data_uri: Any
    target_column: Any
    input_format: Any
    algorithm: Any
    metric_threshold: Any
    rmse_threshold: Any
    silhouette_threshold: Any
    approval_status: Any
    processing_instance_type: Any
    training_instance_type: Any
    training_instance_count: Any
    max_depth: Any
    eta: Any
    num_round: Any
    clusters: Any

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
        return Join(on="/", values=[f"s3://{placeholder('ArtifactsBucket')}/{contract.PIPELINE_RUNS_PREFIX}", ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    def evidence_uri(self, *parts: str) -> Any:
        """Where a run's evaluation goes: the registered model's metrics and its description live as
        long as the model (models/ is kept; pipeline-runs/ is scratch that expires)."""
        from sagemaker.workflow.execution_variables import ExecutionVariables
        from sagemaker.workflow.functions import Join

        return Join(on="/", values=[f"s3://{placeholder('ArtifactsBucket')}/{contract.EVALUATIONS_PREFIX}", ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    def script_estimator(
        self, image: str, entry_point: str, *, instance_count: Any, instance_type: Any, base_job_name: str, hyperparameters: dict[str, Any]
    ) -> Any:
        """A script-mode training job: our code bundle's `entry_point` in a framework image, with the
        metric lines train.py's contract prints parsed into validation:accuracy / validation:rmse."""
        from sagemaker.estimator import Estimator

        return Estimator(
            image_uri=placeholder(image),
            entry_point=entry_point,
            source_dir=code_uri(SOURCEDIR_ARCHIVE),
            role=self.role,
            instance_type=instance_type,
            instance_count=instance_count,
            volume_kms_key=self.kms_key,
            output_kms_key=self.kms_key,
            output_path=f"s3://{placeholder('ArtifactsBucket')}/{contract.MODELS_PREFIX}",
            code_location=f"s3://{placeholder('ArtifactsBucket')}/{PIPELINE_CODE_PREFIX}",
            base_job_name=base_job_name,
            hyperparameters=hyperparameters,
            metric_definitions=[{"Name": f"validation:{metric}", "Regex": metric_regex(metric)} for metric in ("accuracy", "rmse")],
            enable_network_isolation=False,
            disable_profiler=True,
            max_run=3600,
            sagemaker_session=self.session,
        )

    def script_processor(self, image: str, instance_type: Any, base_job_name: str) -> Any:
        from sagemaker.processing import ScriptProcessor

        return ScriptProcessor(
            image_uri=placeholder(image), command=["python3"], role=self.role, instance_type=instance_type, instance_count=1,
            volume_kms_key=self.kms_key, output_kms_key=self.kms_key, base_job_name=base_job_name, sagemaker_session=self.session,
            env={"PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


@dataclass(frozen=True)
class _Data:
    """What Preprocess gives every chain: its step, outputs by name and the data summary file."""

    step: Any
    summary: Any

    def output(self, name: str, *subfolder: str) -> Any:
        from sagemaker.workflow.functions import Join

        uri = self.step.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri
        return Join(on="/", values=[uri, *subfolder]) if subfolder else uri


@dataclass(frozen=True)
class _Model:
    """What a chain's training leaves for evaluation and registration."""

    steps: list[Any]  # the chain's steps up to the model (training, and for Autopilot model + transform)
    model: Any  # an SDK Model for registration
    predictions: Any = None  # the batch transform output (Autopilot)
    automl_job_name: Any = None


def algorithms(settings: PipelineSettings) -> tuple[str, ...]:
    """The values the `Algorithm` parameter accepts for these settings (sagelab/algorithms)."""
    return tuple(spec.name for spec in registry.offered(settings.custom_script is not None))


def step_name(algorithm: str, step: str) -> str:
    """A chain's step name: `KMeansEvaluate`; the XGBoost chain keeps the plain names."""
    return registry.spec(algorithm).step_name(step)


def build_pipeline(settings: PipelineSettings) -> Any:
    """The sagemaker `Pipeline` object (SDK type); most callers want `build_definition`.

    Preprocess, then one condition step per algorithm holding that algorithm's chain; each chain
    is built by its own function below from the parameters and the shared settings."""
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionEquals
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_definition_config import PipelineDefinitionConfig

    shared = _shared_settings()
    parameters = _parameters(settings)
    data = _preprocess_step(shared, parameters)
    branches = []
    for spec in registry.offered(settings.custom_script is not None):
        model = spec.chain_builder()(spec, settings, shared, parameters, data)
        evaluate, report = _evaluate_step(spec, settings, shared, parameters, data, model)
        gate = _gate_step(spec, settings, shared, parameters, evaluate, report, model)
        branches.append(
            ConditionStep(
                name=spec.condition,
                conditions=[ConditionEquals(left=parameters.algorithm, right=spec.name)],
                if_steps=[*model.steps, evaluate, gate],
                else_steps=[],
            )
        )
    return Pipeline(
        name=PIPELINE_NAME,
        parameters=parameters.in_order(),
        steps=[data.step, *branches],
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
        algorithm=ParameterString("Algorithm", default_value=settings.algorithm, enum_values=list(algorithms(settings))),
        metric_threshold=ParameterFloat("MetricThreshold", default_value=settings.metric_threshold),
        rmse_threshold=ParameterFloat("RmseThreshold", default_value=settings.rmse_threshold),
        silhouette_threshold=ParameterFloat("SilhouetteThreshold", default_value=settings.silhouette_threshold),
        approval_status=ParameterString(
            "ModelApprovalStatus", default_value=settings.approval_status, enum_values=["PendingManualApproval", "Approved", "Rejected"]
        ),
        processing_instance_type=ParameterString("ProcessingInstanceType", default_value=settings.processing_instance_type),
        training_instance_type=ParameterString("TrainingInstanceType", default_value=settings.training_instance_type),
        training_instance_count=ParameterInteger("TrainingInstanceCount", default_value=1),
        max_depth=ParameterInteger("MaxDepth", default_value=settings.max_depth),
        eta=ParameterFloat("Eta", default_value=settings.eta),
        num_round=ParameterInteger("NumRound", default_value=settings.num_round),
        clusters=ParameterInteger("Clusters", default_value=settings.kmeans_clusters),
    )


PREPROCESS_OUTPUTS = ("train", "validation", "test", "spec", step_contract.TABULAR_DIR)
# The tabular/ output's folders (preprocess.py writes train/train.csv and test/test.csv there).
TABULAR_TRAIN = str(Path(step_contract.TABULAR_TRAIN_FILE).parent)
TABULAR_TEST = str(Path(step_contract.TABULAR_TEST_FILE).parent)


def _preprocess_step(shared: _Shared, parameters: _Parameters) -> _Data:
    from sagemaker.processing import ProcessingInput, ProcessingOutput
    from sagemaker.workflow.properties import PropertyFile
    from sagemaker.workflow.steps import ProcessingStep

    processor = shared.script_processor("SklearnImageUri", parameters.processing_instance_type, job_name("preprocess"))
    arguments = ["--input-dir", "/opt/ml/processing/input/data", "--output-dir", "/opt/ml/processing/output"]
    arguments += ["--target-column", parameters.target_column, "--input-format", parameters.input_format, "--algorithm", parameters.algorithm]
    # The data summary (feature width, problem type) is what K-Means' feature_dim is read from.
    summary = PropertyFile(name=DATA_SUMMARY_PROPERTY_FILE, output_name="spec", path=DATA_SUMMARY_FILE_NAME)
    step = ProcessingStep(
        name=STEP_PREPROCESS,
        step_args=processor.run(
            code=code_uri("preprocess.py"),
            inputs=[
                ProcessingInput(source=parameters.input_data_uri, destination="/opt/ml/processing/input/data", input_name="data"),
                _contract_input(),
            ],
            outputs=[
                ProcessingOutput(output_name=name, source=f"/opt/ml/processing/output/{name}", destination=shared.run_uri("preprocess", name))
                for name in PREPROCESS_OUTPUTS
            ],
            arguments=arguments,
        ),
        property_files=[summary],
        cache_config=shared.cache,
        retry_policies=shared.retry_policies,
    )
    return _Data(step=step, summary=summary)


def _contract_input() -> Any:
    """The contract module (pipeline_steps/contract.py) from the code bundle, beside the script's `code`."""
    from sagemaker.processing import ProcessingInput

    return ProcessingInput(source=code_uri(CONTRACT_MODULE), destination=CONTRACT_INPUT_DIR, input_name=CONTRACT_INPUT)


def _splits(data: _Data, content_type: str) -> dict[str, Any]:
    from sagemaker.inputs import TrainingInput

    return {
        name: TrainingInput(s3_data=data.output(name), content_type=content_type if name != "spec" else "application/json")
        for name in ("train", "validation", "spec")
    }


def _serving_model(image: str, model_data: Any, shared: _Shared) -> Any:
    from sagemaker.model import Model

    return Model(
        image_uri=placeholder(image),
        model_data=model_data,
        role=shared.role,
        # train.py packs inference.py into the model (code/): the container imports it from there,
        # with no download at start, so the model runs with network isolation; no repack job.
        env={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": MODEL_CODE_DIR, "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"},
        sagemaker_session=shared.session,
    )


def xgboost_chain(spec: AlgorithmSpec, settings: PipelineSettings, shared: _Shared, parameters: _Parameters, data: _Data) -> _Model:
    """The training step (a tuning step when tuning is on) and the model it leaves."""
    from sagemaker.workflow.steps import TrainingStep

    estimator = shared.script_estimator(
        "XgboostImageUri",
        "train.py",
        instance_count=parameters.training_instance_count,
        instance_type=parameters.training_instance_type,
        base_job_name=job_name(spec.job_name("train")),
        hyperparameters={"max_depth": parameters.max_depth, "eta": parameters.eta, "num_round": parameters.num_round, "cv_folds": str(settings.cv_folds)},
    )
    metric_definitions = estimator.metric_definitions
    inputs = _splits(data, "text/csv")
    if settings.tuning.max_jobs > 0:
        step, model_data = _tuning_step(spec, settings, shared, estimator, inputs, metric_definitions)
    else:
        step = TrainingStep(
            name=spec.step_name(STEP_TRAIN), step_args=estimator.fit(inputs=inputs), cache_config=shared.cache, retry_policies=shared.retry_policies
        )
        model_data = step.properties.ModelArtifacts.S3ModelArtifacts
    return _Model(steps=[step], model=_serving_model("XgboostImageUri", model_data, shared))


def _tuning_step(
    spec: AlgorithmSpec, settings: PipelineSettings, shared: _Shared, estimator: Any, inputs: Mapping[str, Any], metric_definitions: list[dict[str, Any]]
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
    step = TuningStep(name=spec.step_name(STEP_TUNE), step_args=tuner.fit(inputs=inputs), cache_config=shared.cache, retry_policies=shared.retry_policies)
    return step, step.get_top_model_s3_uri(top_k=0, s3_bucket=placeholder("ArtifactsBucket"), prefix=contract.MODELS_PREFIX)


def kmeans_chain(spec: AlgorithmSpec, settings: PipelineSettings, shared: _Shared, parameters: _Parameters, data: _Data) -> _Model:
    """SageMaker's built-in K-Means on the encoded features Preprocess wrote as headerless CSV;
    `feature_dim` is read from Preprocess' data summary, so any dataset works unchanged."""
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.model import Model
    from sagemaker.workflow.functions import JsonGet
    from sagemaker.workflow.steps import TrainingStep

    estimator = Estimator(
        image_uri=placeholder("KmeansImageUri"),
        role=shared.role,
        instance_type=parameters.training_instance_type,
        instance_count=parameters.training_instance_count,
        volume_kms_key=shared.kms_key,
        output_kms_key=shared.kms_key,
        output_path=f"s3://{placeholder('ArtifactsBucket')}/{contract.MODELS_PREFIX}",
        base_job_name=job_name(spec.name),
        hyperparameters={
            "k": parameters.clusters,
            "feature_dim": JsonGet(step_name=data.step.name, property_file=data.summary, json_path=step_contract.FEATURE_DIM_KEY),
            "init_method": "kmeans++",
            "mini_batch_size": "500",
            "epochs": "5",
        },
        enable_network_isolation=True,  # a built-in algorithm needs no network
        disable_profiler=True,
        max_run=3600,
        sagemaker_session=shared.session,
    )
    train = TrainingInput(s3_data=data.output(step_contract.TABULAR_DIR, TABULAR_TRAIN), content_type="text/csv;label_size=0")
    step = TrainingStep(
        name=spec.step_name("Train"), step_args=estimator.fit(inputs={"train": train}), cache_config=shared.cache, retry_policies=shared.retry_policies
    )
    model = Model(
        image_uri=placeholder("KmeansImageUri"),
        model_data=step.properties.ModelArtifacts.S3ModelArtifacts,
        role=shared.role,
        sagemaker_session=shared.session,
    )
    return _Model(steps=[step], model=model)


def autopilot_chain(spec: AlgorithmSpec, settings: PipelineSettings, shared: _Shared, parameters: _Parameters, data: _Data) -> _Model:
    """An Autopilot job (ensembling mode) on the raw table, its best candidate as a model, and a
    batch transform of the test split: Autopilot's candidate is a container of its own, so it is
    evaluated from its predictions, like any model we cannot load."""
    from sagemaker.automl.automl import AutoML, AutoMLInput
    from sagemaker.transformer import Transformer
    from sagemaker.workflow.automl_step import AutoMLStep
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.steps import TransformStep

    automl = AutoML(
        role=shared.role,
        target_attribute_name=parameters.target_column,
        output_kms_key=shared.kms_key,
        volume_kms_key=shared.kms_key,
        output_path=f"s3://{placeholder('ArtifactsBucket')}/{contract.MODELS_PREFIX}/{spec.name}",
        # AutoML job names are at most 32 characters and SageMaker appends to the prefix.
        base_job_name=job_name("a"),
        max_candidates=settings.autopilot_max_candidates,
        total_job_runtime_in_seconds=settings.autopilot_max_runtime_minutes * 60,
        encrypt_inter_container_traffic=True,
        mode="ENSEMBLING",
        sagemaker_session=shared.session,
    )
    train = AutoMLInput(
        inputs=data.output(step_contract.TABULAR_DIR, TABULAR_TRAIN), target_attribute_name=parameters.target_column, content_type="text/csv;header=present"
    )
    search = AutoMLStep(name=spec.step_name(""), step_args=automl.fit(inputs=train), cache_config=shared.cache, retry_policies=shared.retry_policies)
    best = search.get_best_auto_ml_model(shared.role, sagemaker_session=shared.session)
    best.enable_network_isolation = lambda: True  # the candidate's container needs no network to serve
    best.name = job_name("autopilot-model")  # a prefix SageMaker extends per run, so roles can be scoped to it
    create = ModelStep(name=spec.step_name("Model"), step_args=best.create(instance_type=INFERENCE_INSTANCE_TYPES[0]))
    transformer = Transformer(
        model_name=create.properties.ModelName,
        instance_count=1,
        instance_type=INFERENCE_INSTANCE_TYPES[0],
        output_path=shared.run_uri("autopilot-predictions"),
        accept="text/csv",
        assemble_with="Line",
        output_kms_key=shared.kms_key,
        volume_kms_key=shared.kms_key,
        base_transform_job_name=job_name("autopilot-predict"),
        sagemaker_session=shared.session,
    )
    predict = TransformStep(
        name=spec.step_name("Predict"),
        step_args=transformer.transform(data=data.output(step_contract.TABULAR_DIR, TABULAR_TEST), content_type="text/csv", split_type="Line"),
        cache_config=shared.cache,
        retry_policies=shared.retry_policies,
    )
    return _Model(
        steps=[search, *create.steps, predict],
        model=best,
        predictions=predict.properties.TransformOutput.S3OutputPath,
        automl_job_name=search.properties.AutoMLJobName,
    )


def custom_chain(spec: AlgorithmSpec, settings: PipelineSettings, shared: _Shared, parameters: _Parameters, data: _Data) -> _Model:
    """Your own training script under the SageMaker training contract, in the SKLearn framework
    image (train_custom.py runs it and packs the serving code, like train.py does)."""
    from sagemaker.workflow.steps import TrainingStep

    estimator = shared.script_estimator(
        "SklearnImageUri",
        "train_custom.py",
        instance_count=1,
        instance_type=parameters.training_instance_type,
        base_job_name=job_name(spec.name),
        # Everything the definition holds must be the same on every machine: the script's place in
        # the bundle (custom/<file name>), never its path on the machine that built the app.
        hyperparameters={step_contract.USER_SCRIPT_HYPERPARAMETER: str(settings.custom_script_bundle_path)},
    )
    step = TrainingStep(
        name=spec.step_name("Train"),
        step_args=estimator.fit(inputs=_splits(data, "application/x-npy")),
        cache_config=shared.cache,
        retry_policies=shared.retry_policies,
    )
    return _Model(steps=[step], model=_serving_model("SklearnImageUri", step.properties.ModelArtifacts.S3ModelArtifacts, shared))


# Evaluate runs where the model can be loaded: the XGBoost image for XGBoost, K-Means (centroids
# parsed with NumPy) and Autopilot (its predictions); the SKLearn image for your own scikit-learn
# model (joblib is not safe across scikit-learn versions).
# (sagelab/algorithms: each spec's evaluate_image.)


def _evaluate_step(spec: AlgorithmSpec, settings: PipelineSettings, shared: _Shared, parameters: _Parameters, data: _Data, model: _Model) -> tuple[Any, Any]:
    """The evaluation step and the property file (evaluation.json) the gate reads."""
    from sagemaker.processing import ProcessingInput, ProcessingOutput
    from sagemaker.workflow.properties import PropertyFile
    from sagemaker.workflow.steps import ProcessingStep

    name = spec.step_name(STEP_EVALUATE)
    output = "evaluation"
    report = PropertyFile(name=spec.step_name(EVALUATION_PROPERTY_FILE), output_name=output, path=EVALUATION_FILE_NAME)
    # The XGBoost chain keeps its job and output names (`sagelab-<id>--evaluate`, `.../evaluation/`).
    processor = shared.script_processor(spec.evaluate_image, parameters.processing_instance_type, job_name(spec.job_name("evaluate")))
    inputs = [
        ProcessingInput(source=data.output("test"), destination="/opt/ml/processing/test", input_name="test"),
        ProcessingInput(source=data.output("spec"), destination="/opt/ml/processing/spec", input_name="spec"),
        # The training split: evaluate.py writes the drift check's baseline from it (decision 0013).
        ProcessingInput(source=data.output("train"), destination="/opt/ml/processing/train", input_name="train"),
    ]
    arguments = ["--algorithm", spec.evaluated_as, "--test-dir", "/opt/ml/processing/test", "--spec-dir", "/opt/ml/processing/spec"]
    arguments += ["--train-dir", "/opt/ml/processing/train"]
    arguments += ["--output-dir", "/opt/ml/processing/evaluation"]
    if model.predictions is not None:
        inputs.append(ProcessingInput(source=model.predictions, destination="/opt/ml/processing/predictions", input_name="predictions"))
        arguments += ["--predictions-dir", "/opt/ml/processing/predictions", "--automl-job-name", model.automl_job_name]
    else:
        inputs.append(ProcessingInput(source=model.model.model_data, destination="/opt/ml/processing/model", input_name="model"))
        arguments += ["--model-dir", "/opt/ml/processing/model"]
    inputs.append(_contract_input())
    arguments += ["--metric", settings.metric, "--metric-threshold", parameters.metric_threshold.to_string()]
    arguments += ["--rmse-threshold", parameters.rmse_threshold.to_string(), "--silhouette-threshold", parameters.silhouette_threshold.to_string()]
    step = ProcessingStep(
        name=name,
        step_args=processor.run(
            code=code_uri("evaluate.py"),
            inputs=inputs,
            outputs=[
                ProcessingOutput(
                    output_name=output,
                    source="/opt/ml/processing/evaluation",
                    destination=shared.evidence_uri(spec.job_name("evaluation")),
                )
            ],
            arguments=arguments,
        ),
        property_files=[report],
        retry_policies=shared.retry_policies,
    )
    return step, report


def _register_step(spec: AlgorithmSpec, shared: _Shared, parameters: _Parameters, evaluate: Any, report: Any, model: _Model) -> Any:
    from sagemaker.drift_check_baselines import DriftCheckBaselines
    from sagemaker.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.workflow.functions import Join, JsonGet
    from sagemaker.workflow.model_step import ModelStep

    evaluation_uri = evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri

    def evidence(file_name: str) -> Any:
        return MetricsSource(s3_uri=Join(on="/", values=[evaluation_uri, file_name]), content_type="application/json")

    # The version points at its own drift baseline (decision 0013): Model Monitor's statistics and
    # constraints of the training split, where Model Monitor and QualityCheckStep put them.
    statistics, constraints = evidence(step_contract.STATISTICS_FILE_NAME), evidence(step_contract.CONSTRAINTS_FILE_NAME)
    model_metrics = ModelMetrics(model_statistics=evidence(EVALUATION_FILE_NAME), model_data_statistics=statistics, model_data_constraints=constraints)
    drift_check_baselines = DriftCheckBaselines(model_data_statistics=statistics, model_data_constraints=constraints)
    return ModelStep(
        name=spec.step_name(STEP_REGISTER),
        step_args=model.model.register(
            content_types=list(spec.content_types),
            response_types=list(spec.response_types),
            inference_instances=list(INFERENCE_INSTANCE_TYPES),
            transform_instances=[INFERENCE_INSTANCE_TYPES[0]],
            model_package_group_name=placeholder("ModelPackageGroupName"),
            approval_status=parameters.approval_status,
            model_metrics=model_metrics,
            drift_check_baselines=drift_check_baselines,
            description=spec.description,
            domain="MACHINE_LEARNING",
            customer_metadata_properties={
                METADATA_ALGORITHM: spec.name,
                METADATA_PROBLEM_TYPE: JsonGet(step_name=evaluate.name, property_file=report, json_path="sagelab_summary.problem_type"),
                METADATA_DESCRIPTION: Join(on="/", values=[evaluation_uri, MODEL_DESCRIPTION_FILE_NAME]),
            },
        ),
        retry_policies=shared.retry_policies[:1],  # registration is an API call, not a job: no capacity errors
    )


def _gate_step(spec: AlgorithmSpec, settings: PipelineSettings, shared: _Shared, parameters: _Parameters, evaluate: Any, report: Any, model: _Model) -> Any:
    """The gate: register the model when evaluate.py's verdict for its problem type passed, else fail with
    evaluate.py's message (metric, value, comparison, threshold and what to change)."""
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionEquals
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import JsonGet

    passed: Any = JsonGet(
        step_name=evaluate.name, property_file=report, json_path=GATE_PASSED_PATH
    )  # a JsonGet is a valid condition operand; the SDK types it narrower
    fail = FailStep(name=spec.step_name(STEP_FAIL), error_message=JsonGet(step_name=evaluate.name, property_file=report, json_path=GATE_MESSAGE_PATH))
    return ConditionStep(
        name=spec.step_name(STEP_CHECK),
        conditions=[ConditionEquals(left=passed, right=1)],
        if_steps=[_register_step(spec, shared, parameters, evaluate, report, model)],
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
        if step["Type"] == "AutoML":
            # The SDK cuts the base name to leave room for a timestamp it then drops, leaving half a
            # placeholder; AutoML job names are at most 32 characters, hence the one-letter suffix.
            arguments["AutoMLJobName"] = job_name("a")
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


@functools.cache
def _validate_our_config() -> None:
    from sagemaker.config import validate_sagemaker_config

    validate_sagemaker_config(_SDK_CONFIG)


@contextlib.contextmanager
def _config_validated_once() -> Iterator[None]:
    """The SDK re-validates its defaults config against a large JSON schema on every lookup
    (about 60 times per build, 10 s of a 12 s build) and when each session starts (half of what
    was left of a build). Our config is a constant validated once per process here, so those
    repeats skip it; any other config is still validated, and the SDK's function is restored after."""
    import sagemaker.session as sdk_session
    import sagemaker.utils as sdk_utils

    _validate_our_config()
    original = sdk_utils.validate_sagemaker_config
    patched = (sdk_utils, sdk_session)  # each module calls the function by the name it imported

    def validate_unless_ours(config: Any = None) -> None:
        if config is not _SDK_CONFIG:
            original(config)

    for module in patched:
        module.validate_sagemaker_config = validate_unless_ours  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in patched:
            module.validate_sagemaker_config = original  # type: ignore[attr-defined]


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
    """Everything the definition depends on: SDK version, this builder, the algorithm registry, the step
    contract, the settings."""
    digest = hashlib.sha256()
    digest.update(importlib.metadata.version("sagemaker").encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(Path(registry.__file__).read_bytes())
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
