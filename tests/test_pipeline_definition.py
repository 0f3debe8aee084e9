"""The pipeline definition: valid SageMaker requests per botocore's service model, and the DAG,
parameters and condition wiring we rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.model import Shape
from botocore.validate import ParamValidator

from pipeline_steps.evaluate import CONDITION_METRIC_PATH
from sagelab.pipeline_definition import (
    EVALUATION_PROPERTY_FILE,
    PipelineSettings,
    TuningSettings,
    build_definition,
    iter_steps,
    substitute,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPRESSIONS = ("Get", "Std:Join", "Std:JsonGet")
# The request each step type sends, and the names SageMaker Pipelines fills in per execution.
STEP_OPERATIONS = {
    "Processing": ("CreateProcessingJob", {"ProcessingJobName": "pipelines-x-Preprocess"}),
    "Training": ("CreateTrainingJob", {"TrainingJobName": "pipelines-x-Train"}),
    "Tuning": ("CreateHyperParameterTuningJob", {"HyperParameterTuningJobName": "pipelines-x-Tune"}),
    "RegisterModel": ("CreateModelPackage", {}),
    "Model": ("CreateModel", {"ModelName": "pipelines-x-Model"}),
    "Transform": ("CreateTransformJob", {"TransformJobName": "pipelines-x-Transform"}),
}
LOCAL_VALUES = {
    "ArtifactsBucket": "sagelab-dev-artifacts-abc",
    "DataBucket": "sagelab-dev-data-abc",
    "CodeVersion": "0123456789abcdef",
    "PipelineRoleName": "sagelab-dev-PipelineRole-ABC",
    "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    "ModelPackageGroupName": "sagelab-dev-models",
    "JobNamePrefix": "sagelab-dev",
    "SklearnImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
    "XgboostImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
}
SERVICE_MODEL = botocore.session.get_session().get_service_model("sagemaker")


def stand_in(shape: Shape) -> Any:
    """A value of the shape's type where the definition has a pipeline expression."""
    if shape.type_name == "string":
        if shape.enum:
            return shape.enum[0]
        return "x" * max(1, shape.metadata.get("min", 1))
    if shape.type_name in ("integer", "long"):
        return max(1, int(shape.metadata.get("min", 1)))
    if shape.type_name in ("float", "double"):
        return float(shape.metadata.get("min", 1.0)) or 1.0
    if shape.type_name == "boolean":
        return True
    raise AssertionError(f"a pipeline expression stands where botocore expects a {shape.type_name} ({shape.name})")


def with_stand_ins(value: Any, shape: Shape) -> Any:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSIONS:
        return stand_in(shape)
    if shape.type_name == "structure" and isinstance(value, dict):
        return {key: with_stand_ins(inner, shape.members[key]) if key in shape.members else inner for key, inner in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [with_stand_ins(inner, shape.member) for inner in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {key: with_stand_ins(inner, shape.value) for key, inner in value.items()}
    return value


def validate_step(step: dict[str, Any]) -> list[str]:
    operation, service_filled = STEP_OPERATIONS[step["Type"]]
    shape = SERVICE_MODEL.operation_model(operation).input_shape
    request = {**service_filled, **with_stand_ins(step["Arguments"], shape)}
    report = ParamValidator().validate(request, shape)
    return report.generate_report().splitlines() if report.has_errors() else []


def substituted(settings: PipelineSettings) -> dict[str, Any]:
    from sagelab.pipeline_definition import definition_json

    return json.loads(substitute(definition_json(settings), LOCAL_VALUES))


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return substituted(PipelineSettings())


@pytest.fixture(scope="module")
def tuning_definition() -> dict[str, Any]:
    return substituted(PipelineSettings(tuning=TuningSettings(max_jobs=6, max_parallel_jobs=2)))


@pytest.mark.parametrize("variant", ["definition", "tuning_definition"])
def test_every_job_step_is_a_valid_sagemaker_request(variant: str, request: pytest.FixtureRequest) -> None:
    definition = request.getfixturevalue(variant)
    checked = 0
    for step in iter_steps(definition):
        if step["Type"] in STEP_OPERATIONS:
            assert validate_step(step) == [], step["Name"]
            checked += 1
    assert checked == 4


def test_the_validator_rejects_a_bad_request(definition: dict[str, Any]) -> None:
    step = json.loads(json.dumps(next(s for s in iter_steps(definition) if s["Type"] == "Training")))
    step["Arguments"]["ResourceConfig"]["VolumeSizeInGB"] = "thirty"
    del step["Arguments"]["AlgorithmSpecification"]["TrainingInputMode"]
    step["Arguments"]["Unexpected"] = 1
    problems = "\n".join(validate_step(step))
    assert "VolumeSizeInGB" in problems and "TrainingInputMode" in problems and "Unexpected" in problems


def test_expressions_only_stand_for_scalars(definition: dict[str, Any]) -> None:
    shape = SERVICE_MODEL.operation_model("CreateTrainingJob").input_shape
    with pytest.raises(AssertionError, match="expects a structure"):
        with_stand_ins({"ResourceConfig": {"Get": "Parameters.X"}}, shape)


def test_dag_runs_preprocess_train_evaluate_then_checks(definition: dict[str, Any]) -> None:
    top = [(s["Name"], s["Type"]) for s in definition["Steps"]]
    assert top == [("Preprocess", "Processing"), ("Train", "Training"), ("Evaluate", "Processing"), ("CheckMetric", "Condition")]
    train = definition["Steps"][1]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in train["Arguments"]["InputDataConfig"]}
    assert channels == {name: {"Get": f"Steps.Preprocess.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"} for name in ("train", "validation", "spec")}
    evaluate = definition["Steps"][2]
    model_input = next(i for i in evaluate["Arguments"]["ProcessingInputs"] if i["InputName"] == "model")
    assert model_input["S3Input"]["S3Uri"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}


def test_condition_reads_the_metric_evaluate_writes(definition: dict[str, Any]) -> None:
    check = definition["Steps"][3]["Arguments"]
    (condition,) = check["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo"
    assert condition["LeftValue"]["Std:JsonGet"] == {
        "PropertyFile": {"Get": f"Steps.Evaluate.PropertyFiles.{EVALUATION_PROPERTY_FILE}"},
        "Path": CONDITION_METRIC_PATH.format(metric="accuracy"),
    }
    assert condition["RightValue"] == {"Get": "Parameters.MetricThreshold"}
    assert [s["Type"] for s in check["IfSteps"]] == ["RegisterModel"]
    assert [s["Type"] for s in check["ElseSteps"]] == ["Fail"]
    message = check["ElseSteps"][0]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert condition["LeftValue"] in message and {"Get": "Parameters.MetricThreshold"} in message


def test_error_metrics_use_less_or_equal() -> None:
    definition = build_definition(PipelineSettings(metric="rmse", metric_threshold=2.0))
    (condition,) = definition["Steps"][3]["Arguments"]["Conditions"]
    assert condition["Type"] == "LessThanOrEqualTo"
    assert condition["LeftValue"]["Std:JsonGet"]["Path"] == CONDITION_METRIC_PATH.format(metric="rmse")


def test_parameters_and_defaults(definition: dict[str, Any]) -> None:
    parameters = {p["Name"]: (p["Type"], p.get("DefaultValue")) for p in definition["Parameters"]}
    assert parameters == {
        "InputDataUri": ("String", "s3://sagelab-dev-data-abc/datasets/digits/"),
        "TargetColumn": ("String", "label"),
        "InputFormat": ("String", "auto"),
        "MetricThreshold": ("Float", 0.95),
        "ModelApprovalStatus": ("String", "PendingManualApproval"),
        "ProcessingInstanceType": ("String", "ml.m5.large"),
        "TrainingInstanceType": ("String", "ml.m5.large"),
        "TrainingInstanceCount": ("Integer", 1),
        "MaxDepth": ("Integer", 5),
        "Eta": ("Float", 0.2),
        "NumRound": ("Integer", 300),
    }


def test_registration_attaches_inference_code_and_metrics(definition: dict[str, Any]) -> None:
    register = next(s for s in iter_steps(definition) if s["Type"] == "RegisterModel")["Arguments"]
    (container,) = register["InferenceSpecification"]["Containers"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code", "the code travels in the model: network isolation"
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert register["ModelPackageGroupName"] == "sagelab-dev-models"
    statistics = register["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["S3Uri"]["Std:Join"]["Values"][-1] == "evaluation.json"


def test_retries_and_caching(definition: dict[str, Any]) -> None:
    for step in definition["Steps"][:2]:
        assert step["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
        kinds = {kind for policy in step["RetryPolicies"] for kind in policy["ExceptionType"]}
        assert {"Step.THROTTLING", "Step.SERVICE_FAULT", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT"} <= kinds


def test_tuning_replaces_training_and_feeds_the_best_model(tuning_definition: dict[str, Any]) -> None:
    tune = tuning_definition["Steps"][1]
    assert tune["Type"] == "Tuning"
    config = tune["Arguments"]["HyperParameterTuningJobConfig"]
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    model_input = next(i for i in tuning_definition["Steps"][2]["Arguments"]["ProcessingInputs"] if i["InputName"] == "model")
    assert "Steps.Tune.TrainingJobSummaries[0].TrainingJobName" in json.dumps(model_input)


def test_cli_prints_the_definition_as_deployed() -> None:
    completed = subprocess.run([sys.executable, "-m", "sagelab", "definition"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)
    assert printed == build_definition(PipelineSettings())
    assert "${ArtifactsBucket}" in completed.stdout
