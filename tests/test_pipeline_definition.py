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

from pipeline_steps.evaluate import GATE_MESSAGE_PATH, GATE_PASSED_PATH
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
    "AutoML": ("CreateAutoMLJob", {}),
}
LOCAL_VALUES = {
    "ArtifactsBucket": "sagelab-dev-artifacts-abc",
    "DataBucket": "sagelab-dev-data-abc",
    "CodeVersion": "0123456789abcdef",
    "PipelineRoleName": "sagelab-dev-PipelineRole-ABC",
    "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    "ModelPackageGroupName": "sagelab-dev--models",
    "JobNamePrefix": "sagelab-dev--",
    "SklearnImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
    "XgboostImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
    "KmeansImageUri": "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1",
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


@pytest.fixture(scope="module")
def custom_definition() -> dict[str, Any]:
    return substituted(PipelineSettings(custom_script="examples/custom_train.py"))


def steps_by_name(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["Name"]: step for step in iter_steps(definition)}


def branch(definition: dict[str, Any], condition: str) -> list[dict[str, Any]]:
    return steps_by_name(definition)[condition]["Arguments"]["IfSteps"]


# Job steps per variant: Preprocess; XGBoost Train|Tune, Evaluate, Register; K-Means Train,
# Evaluate, Register; Autopilot AutoML, Model, Transform, Evaluate, Register; Custom Train,
# Evaluate, Register.
JOB_STEPS = {"definition": 12, "tuning_definition": 12, "custom_definition": 15}


@pytest.mark.parametrize("variant", sorted(JOB_STEPS))
def test_every_job_step_is_a_valid_sagemaker_request(variant: str, request: pytest.FixtureRequest) -> None:
    definition = request.getfixturevalue(variant)
    checked = []
    for step in iter_steps(definition):
        if step["Type"] in STEP_OPERATIONS:
            assert validate_step(step) == [], step["Name"]
            checked.append(step["Type"])
    assert len(checked) == JOB_STEPS[variant]
    assert {"Processing", "Training", "AutoML", "Model", "Transform", "RegisterModel"} <= set(checked)


def test_the_validator_rejects_a_bad_request(definition: dict[str, Any]) -> None:
    step = json.loads(json.dumps(next(s for s in iter_steps(definition) if s["Type"] == "Training")))
    step["Arguments"]["ResourceConfig"]["VolumeSizeInGB"] = "thirty"
    del step["Arguments"]["AlgorithmSpecification"]["TrainingInputMode"]
    step["Arguments"]["Unexpected"] = 1
    problems = "\n".join(validate_step(step))
    assert "VolumeSizeInGB" in problems and "TrainingInputMode" in problems and "Unexpected" in problems
    automl = json.loads(json.dumps(steps_by_name(definition)["Autopilot"]))
    del automl["Arguments"]["RoleArn"]
    automl["Arguments"]["AutoMLJobConfig"]["CompletionCriteria"]["MaxCandidates"] = "ten"
    problems = "\n".join(validate_step(automl))
    assert "RoleArn" in problems and "MaxCandidates" in problems


def test_expressions_only_stand_for_scalars(definition: dict[str, Any]) -> None:
    shape = SERVICE_MODEL.operation_model("CreateTrainingJob").input_shape
    with pytest.raises(AssertionError, match="expects a structure"):
        with_stand_ins({"ResourceConfig": {"Get": "Parameters.X"}}, shape)


def test_the_algorithm_is_a_parameter_that_picks_exactly_one_branch(definition: dict[str, Any], custom_definition: dict[str, Any]) -> None:
    parameters = {p["Name"]: p for p in definition["Parameters"]}
    assert parameters["Algorithm"]["DefaultValue"] == "xgboost"
    assert parameters["Algorithm"]["EnumValues"] == ["xgboost", "kmeans", "autopilot"]
    assert {p["Name"]: p for p in custom_definition["Parameters"]}["Algorithm"]["EnumValues"] == ["xgboost", "kmeans", "autopilot", "custom"]
    top = [(s["Name"], s["Type"]) for s in definition["Steps"]]
    assert top == [("Preprocess", "Processing"), ("IsXGBoost", "Condition"), ("IsKMeans", "Condition"), ("IsAutopilot", "Condition")]
    for condition, algorithm in (("IsXGBoost", "xgboost"), ("IsKMeans", "kmeans"), ("IsAutopilot", "autopilot")):
        arguments = steps_by_name(definition)[condition]["Arguments"]
        assert arguments["Conditions"] == [{"Type": "Equals", "LeftValue": {"Get": "Parameters.Algorithm"}, "RightValue": algorithm}]
        assert arguments["ElseSteps"] == []
    # Nothing outside a branch reads a step inside one (a step that did not run has no properties).
    inside = {s["Name"] for s in iter_steps(definition)} - {s["Name"] for s in definition["Steps"]}
    outside = json.dumps(
        [{k: v for k, v in s.items() if k != "Arguments"} | {"Arguments": s["Arguments"] if s["Type"] != "Condition" else {}} for s in definition["Steps"]]
    )
    assert not [name for name in inside if f"Steps.{name}." in outside]
    preprocess = definition["Steps"][0]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert preprocess[preprocess.index("--algorithm") + 1] == {"Get": "Parameters.Algorithm"}


def test_the_xgboost_chain_keeps_its_names_and_wiring(definition: dict[str, Any]) -> None:
    assert [s["Name"] for s in branch(definition, "IsXGBoost")] == ["Train", "Evaluate", "CheckMetric"]
    train, evaluate, _ = branch(definition, "IsXGBoost")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in train["Arguments"]["InputDataConfig"]}
    assert channels == {name: {"Get": f"Steps.Preprocess.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"} for name in ("train", "validation", "spec")}
    model_input = next(i for i in evaluate["Arguments"]["ProcessingInputs"] if i["InputName"] == "model")
    assert model_input["S3Input"]["S3Uri"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}


@pytest.mark.parametrize("algorithm", ["xgboost", "kmeans", "autopilot"])
def test_every_gate_reads_the_verdict_evaluate_writes(definition: dict[str, Any], algorithm: str) -> None:
    prefix = {"xgboost": "", "kmeans": "KMeans", "autopilot": "Autopilot"}[algorithm]
    check = steps_by_name(definition)[f"{prefix}CheckMetric"]["Arguments"]
    report = {"Get": f"Steps.{prefix}Evaluate.PropertyFiles.{prefix}{EVALUATION_PROPERTY_FILE}"}
    assert check["Conditions"] == [{"Type": "Equals", "LeftValue": {"Std:JsonGet": {"PropertyFile": report, "Path": GATE_PASSED_PATH}}, "RightValue": 1}]
    assert [s["Type"] for s in check["IfSteps"]] == ["RegisterModel"]
    (fail,) = check["ElseSteps"]
    assert fail["Type"] == "Fail" and fail["Arguments"]["ErrorMessage"] == {"Std:JsonGet": {"PropertyFile": report, "Path": GATE_MESSAGE_PATH}}
    evaluate = steps_by_name(definition)[f"{prefix}Evaluate"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert evaluate[evaluate.index("--algorithm") + 1] == algorithm
    for flag, parameter in (
        ("--metric-threshold", "MetricThreshold"),
        ("--rmse-threshold", "RmseThreshold"),
        ("--silhouette-threshold", "SilhouetteThreshold"),
    ):
        assert {"Get": f"Parameters.{parameter}"} in evaluate[evaluate.index(flag) + 1]["Std:Join"]["Values"]


def test_kmeans_uses_the_builtin_image_on_headerless_csv(definition: dict[str, Any]) -> None:
    train = steps_by_name(definition)["KMeansTrain"]["Arguments"]
    assert train["AlgorithmSpecification"]["TrainingImage"] == "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1"
    assert "sagemaker_program" not in train["HyperParameters"], "built-in algorithm, not script mode"
    assert train["HyperParameters"]["k"] == {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Clusters"}]}}
    feature_dim = train["HyperParameters"]["feature_dim"]["Std:Join"]["Values"][0]["Std:JsonGet"]
    assert feature_dim == {"PropertyFile": {"Get": "Steps.Preprocess.PropertyFiles.DataSummary"}, "Path": "feature_dim"}
    (channel,) = train["InputDataConfig"]
    assert channel["ContentType"] == "text/csv;label_size=0"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"]["Std:Join"]["Values"][1] == "train"
    assert train["EnableNetworkIsolation"] is True
    register = steps_by_name(definition)["KMeansRegisterModel-RegisterModel"]["Arguments"]
    assert register["InferenceSpecification"]["Containers"][0]["Image"] == train["AlgorithmSpecification"]["TrainingImage"]


def test_autopilot_runs_ensembling_and_is_evaluated_from_its_predictions(definition: dict[str, Any]) -> None:
    steps = steps_by_name(definition)
    assert [s["Name"] for s in branch(definition, "IsAutopilot")] == [
        "Autopilot", "AutopilotModel-CreateModel", "AutopilotPredict", "AutopilotEvaluate", "AutopilotCheckMetric",
    ]  # fmt: skip
    automl = steps["Autopilot"]["Arguments"]
    assert automl["AutoMLJobConfig"]["Mode"] == "ENSEMBLING"
    assert automl["AutoMLJobName"] == "sagelab-dev--a", "a prefix SageMaker extends; AutoML names are at most 32 characters"
    assert automl["InputDataConfig"][0]["TargetAttributeName"] == {"Get": "Parameters.TargetColumn"}
    assert automl["RoleArn"] == "arn:aws:iam::123456789012:role/sagelab-dev-PipelineRole-ABC"
    model = steps["AutopilotModel-CreateModel"]["Arguments"]
    assert model["PrimaryContainer"]["Image"] == {"Get": "Steps.Autopilot.BestCandidate.InferenceContainers[0].Image"}
    assert model["ModelName"] == "sagelab-dev--autopilot-model"
    transform = steps["AutopilotPredict"]["Arguments"]
    assert transform["ModelName"] == {"Get": "Steps.AutopilotModel-CreateModel.ModelName"}
    assert transform["TransformInput"]["SplitType"] == "Line"
    evaluate = steps["AutopilotEvaluate"]["Arguments"]
    sources = {i["InputName"]: i["S3Input"]["S3Uri"] for i in evaluate["ProcessingInputs"]}
    assert sources["predictions"] == {"Get": "Steps.AutopilotPredict.TransformOutput.S3OutputPath"}
    arguments = evaluate["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--automl-job-name") + 1] == {"Get": "Steps.Autopilot.AutoMLJobName"}
    register = steps["AutopilotRegisterModel-RegisterModel"]["Arguments"]
    assert register["InferenceSpecification"]["Containers"][0]["Image"] == model["PrimaryContainer"]["Image"]


def test_custom_script_runs_in_the_sklearn_image(custom_definition: dict[str, Any]) -> None:
    steps = steps_by_name(custom_definition)
    train = steps["CustomTrain"]["Arguments"]
    assert train["AlgorithmSpecification"]["TrainingImage"] == LOCAL_VALUES["SklearnImageUri"]
    assert json.loads(train["HyperParameters"]["sagemaker_program"]) == "train_custom.py"
    assert json.loads(train["HyperParameters"]["user_script"]) == "custom/custom_train.py"
    evaluate = steps["CustomEvaluate"]["Arguments"]
    assert evaluate["AppSpecification"]["ImageUri"] == LOCAL_VALUES["SklearnImageUri"], "joblib is not safe across scikit-learn versions"
    (container,) = steps["CustomRegisterModel-RegisterModel"]["Arguments"]["InferenceSpecification"]["Containers"]
    assert container["Image"] == LOCAL_VALUES["SklearnImageUri"] and container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"


def test_parameters_and_defaults(definition: dict[str, Any]) -> None:
    parameters = {p["Name"]: (p["Type"], p.get("DefaultValue")) for p in definition["Parameters"]}
    assert parameters == {
        "InputDataUri": ("String", "s3://sagelab-dev-data-abc/datasets/digits/"),
        "TargetColumn": ("String", "label"),
        "InputFormat": ("String", "auto"),
        "Algorithm": ("String", "xgboost"),
        "MetricThreshold": ("Float", 0.95),
        "RmseThreshold": ("Float", 0.0),
        "SilhouetteThreshold": ("Float", 0.1),
        "ModelApprovalStatus": ("String", "PendingManualApproval"),
        "ProcessingInstanceType": ("String", "ml.m5.large"),
        "TrainingInstanceType": ("String", "ml.m5.large"),
        "TrainingInstanceCount": ("Integer", 1),
        "MaxDepth": ("Integer", 5),
        "Eta": ("Float", 0.2),
        "NumRound": ("Integer", 300),
        "Clusters": ("Integer", 10),
    }


@pytest.mark.parametrize("algorithm", ["xgboost", "kmeans", "autopilot"])
def test_registration_attaches_metrics_and_what_serving_needs(definition: dict[str, Any], algorithm: str) -> None:
    prefix = {"xgboost": "", "kmeans": "KMeans", "autopilot": "Autopilot"}[algorithm]
    register = steps_by_name(definition)[f"{prefix}RegisterModel-RegisterModel"]["Arguments"]
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert register["ModelPackageGroupName"] == "sagelab-dev--models"
    statistics = register["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["S3Uri"]["Std:Join"]["Values"][-1] == "evaluation.json"
    metadata = register["CustomerMetadataProperties"]
    assert metadata["sagelab:algorithm"] == algorithm
    assert metadata["sagelab:model-description"]["Std:Join"]["Values"][-1] == "model_description.json"
    assert metadata["sagelab:problem-type"]["Std:JsonGet"]["Path"] == "sagelab_summary.problem_type"
    if algorithm == "xgboost":
        (container,) = register["InferenceSpecification"]["Containers"]
        assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
        assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code", "the code travels in the model: network isolation"


def test_retries_and_caching(definition: dict[str, Any]) -> None:
    for step in [definition["Steps"][0], *branch(definition, "IsXGBoost")[:1], *branch(definition, "IsKMeans")[:1], *branch(definition, "IsAutopilot")[:1]]:
        assert step["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}, step["Name"]
        exception_types = {exception_type for policy in step["RetryPolicies"] for exception_type in policy["ExceptionType"]}
        assert {"Step.THROTTLING", "Step.SERVICE_FAULT", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT"} <= exception_types


def test_tuning_replaces_training_and_feeds_the_best_model(tuning_definition: dict[str, Any]) -> None:
    tune, evaluate, _ = branch(tuning_definition, "IsXGBoost")
    assert tune["Type"] == "Tuning"
    config = tune["Arguments"]["HyperParameterTuningJobConfig"]
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    model_input = next(i for i in evaluate["Arguments"]["ProcessingInputs"] if i["InputName"] == "model")
    assert "Steps.Tune.TrainingJobSummaries[0].TrainingJobName" in json.dumps(model_input)


def test_cli_prints_the_definition_as_deployed() -> None:
    completed = subprocess.run([sys.executable, "-m", "sagelab", "definition"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)
    assert printed == build_definition(PipelineSettings())
    assert "${ArtifactsBucket}" in completed.stdout
