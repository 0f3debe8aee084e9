"""One vocabulary of problem types end to end (#21): the values evaluate.py writes as
`sagelab_summary.problem_type` (what registration tags `sagelab:problem-type` with) are exactly the
ones the deployer, the front door, the serving stack's ModelProblemType and the release's
acceptance test take, and any other value is refused with an error that names it and the expected
ones. The values come from running preprocess.py, train.py and evaluate.py on small tables, not
from a list; the front door's answer shape follows the value exactly (no substring match)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from pipeline_steps import contract, evaluate, preprocess, train
from sagelab.local.builtin_kmeans import write_mxnet_ndarrays
from sagelab.local.serve import LambdaContextStandIn, configure_handler_environment

configure_handler_environment("http://127.0.0.1:9", "sagelab-dev--endpoint")
from stacks.approval_deployer.runtime import handler as deployer  # noqa: E402
from stacks.front_door.runtime import handler as front_door  # noqa: E402
from stacks.release.runtime import acceptance  # noqa: E402

# Values the pipeline never writes: the front door's and serving stack's old documented words,
# Autopilot's own ProblemType names, and near misses.
NEVER_WRITTEN = ("classification", "MulticlassClassification", "Regression", "regressor", "clusters")
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/sagelab-dev--models/2"


def table(problem_type: str, rows: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, 3))
    if problem_type == "regression":
        label: Any = 3 * x[:, 0] - x[:, 1] + rng.normal(scale=0.1, size=rows)
    elif problem_type == "binary":
        label = np.where(x[:, 0] > 0, "big", "small")
    else:
        label = np.select([x[:, 0] < -0.5, x[:, 0] > 0.5], ["low", "high"], "mid")
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": label})


def run_pipeline_steps(root: Path, frame: pd.DataFrame, algorithm: str) -> dict[str, Any]:
    """preprocess -> train (xgboost) or centroids (kmeans) -> evaluate: evaluation.json as the pipeline writes it."""
    (root / "in").mkdir(parents=True)
    frame.to_csv(root / "in" / "data.csv", index=False)
    splits = root / "splits"
    preprocess.preprocess(root / "in", splits, algorithm=algorithm)
    model = root / "model"
    if algorithm == "kmeans":
        model.mkdir()
        features, _ = preprocess.load_split(splits / "train", "train")
        write_mxnet_ndarrays(model / evaluate.KMEANS_MODEL_FILE_NAME, [features[:3].astype(np.float32)])
    else:
        train.train(splits / "train", splits / "validation", splits / "spec", model, train.Hyperparameters(num_round=5))
    evaluate.evaluate(model, splits / "test", root / "evaluation", algorithm=algorithm, spec_dir=splits / "spec")
    return dict(json.loads((root / "evaluation" / evaluate.EVALUATION_FILE_NAME).read_text()))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """problem type -> the evaluation.json that carries it, for every problem type the pipeline writes."""
    runs = [("binary", "xgboost"), ("multiclass", "xgboost"), ("regression", "xgboost"), ("binary", "kmeans")]
    reports: dict[str, dict[str, Any]] = {}
    for data, algorithm in runs:
        report = run_pipeline_steps(tmp_path_factory.mktemp(f"{data}-{algorithm}"), table(data), algorithm)
        reports[report["sagelab_summary"]["problem_type"]] = report
    return reports


def test_the_pipeline_writes_these_problem_types_and_each_consumer_takes_exactly_them(written: dict[str, dict[str, Any]]) -> None:
    assert set(written) == {"binary", "multiclass", "regression", "clustering"}
    assert set(written) == set(contract.PROBLEM_FAMILIES) == {*preprocess.PROBLEM_TYPES, "clustering"}
    # The deployer, the front door and the release's acceptance read the contract's PROBLEM_FAMILIES
    # (the tests below refuse what it does not hold, through each of them); so do the serving parameters.
    from stacks.approval_deployer.parameters import MODEL_PROBLEM_TYPES

    assert set(MODEL_PROBLEM_TYPES) == {"", *written}


# -- the deployer ----------------------------------------------------------------------------------
@pytest.fixture
def registry() -> Iterator[Stubber]:
    with Stubber(deployer.sagemaker()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def described(registry: Stubber, problem_type: str) -> None:
    metadata = {"sagelab:algorithm": "autopilot", "sagelab:problem-type": problem_type}
    registry.add_response(
        "describe_model_package",
        {
            "ModelPackageName": "sagelab-dev--models",
            "ModelPackageArn": PACKAGE,
            "CreationTime": "2026-01-01T00:00:00Z",
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            "CustomerMetadataProperties": metadata,
        },
        {"ModelPackageName": PACKAGE},
    )


def test_the_deployer_passes_every_written_problem_type_as_is(written: dict[str, dict[str, Any]], registry: Stubber) -> None:
    for problem_type, report in written.items():
        tag = report["sagelab_summary"]["problem_type"]  # what the RegisterModel step's JsonGet reads
        described(registry, tag)
        assert deployer.served_model_values(PACKAGE, "bucket")["problem_type"] == problem_type


@pytest.mark.parametrize("problem_type", NEVER_WRITTEN)
def test_the_deployer_refuses_a_problem_type_the_pipeline_never_writes(registry: Stubber, problem_type: str) -> None:
    described(registry, problem_type)
    with pytest.raises(deployer.UnservableModel, match=r"sagelab:problem-type is .*; the front door serves binary, multiclass, regression, clustering"):
        deployer.served_model_values(PACKAGE, "bucket")


# -- the front door --------------------------------------------------------------------------------
def predict_event() -> dict[str, Any]:
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": {"content-type": "application/json", "x-api-key": "k"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "requestContext": {"requestId": "req-1", "stage": "prod", "resourcePath": "/predict", "httpMethod": "POST", "identity": {"apiKey": "k"}},
        "body": json.dumps({"instances": [[0.5, 1.0, 2.0]]}),
        "isBase64Encoded": False,
    }


def predict_autopilot(monkeypatch: pytest.MonkeyPatch, problem_type: str, answer: bytes | None) -> tuple[int, dict[str, Any]]:
    """POST /predict to an Autopilot model of `problem_type` whose container answers `answer` (None: the endpoint must not be called)."""
    monkeypatch.setenv("MODEL_ALGORITHM", "autopilot")
    monkeypatch.setenv("MODEL_PROBLEM_TYPE", problem_type)
    monkeypatch.delenv("MODEL_DESCRIPTION_URI", raising=False)
    monkeypatch.setenv("DATA_CAPTURE_PERCENT", "0")
    with Stubber(front_door.runtime_client()) as stub:
        if answer is not None:
            stub.add_response(
                "invoke_endpoint",
                {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "text/csv"},
                {"EndpointName": "sagelab-dev--endpoint", "ContentType": "text/csv", "Accept": "text/csv", "Body": "0.5,1.0,2.0\n"},
            )
        response = front_door.lambda_handler(predict_event(), LambdaContextStandIn(aws_request_id="req-1"))
        stub.assert_no_pending_responses()
    return response["statusCode"], json.loads(response["body"])


def test_the_front_doors_answer_follows_each_written_problem_type(written: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    for problem_type in written:
        if problem_type == "clustering":
            continue  # a K-Means answer is a cluster whatever the problem type: tests/test_serving_algorithms.py
        status, body = predict_autopilot(monkeypatch, problem_type, b"1.5\n")
        expected = {"value": 1.5} if problem_type == "regression" else {"label": "1.5"}
        assert (status, body["predictions"]) == (200, [expected]), problem_type


@pytest.mark.parametrize("problem_type", NEVER_WRITTEN)
def test_the_front_door_refuses_a_problem_type_the_pipeline_never_writes(monkeypatch: pytest.MonkeyPatch, problem_type: str) -> None:
    # "Regression" once answered values through a substring match; now no unknown value is guessed at.
    status, body = predict_autopilot(monkeypatch, problem_type, None)  # refused before the endpoint is called
    assert status == 503 and body["error"] == "ModelMisconfigured"
    with pytest.raises(
        front_door.ModelConfigurationError, match=r"MODEL_PROBLEM_TYPE is .*; expected one of binary, multiclass, regression, clustering or unset"
    ):
        front_door.model_problem_type()


def test_the_openapi_answer_shape_follows_each_written_problem_type(written: dict[str, dict[str, Any]]) -> None:
    model_openapi = front_door._model_openapi()
    for problem_type in written:
        algorithm = "kmeans" if problem_type == "clustering" else "autopilot"
        answer = model_openapi.answer_schema(algorithm, problem_type, None)
        expected = {"clustering": ["cluster", "distance"], "regression": ["value"]}.get(problem_type, ["label"])
        assert answer["required"] == expected, problem_type


# -- the release's acceptance test -----------------------------------------------------------------
def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_acceptance_scores_classification_and_regression_and_passes_clustering_unscored(written: dict[str, dict[str, Any]]) -> None:
    spec = {"feature_columns": ["a"], "encoded_columns": ["a"], "labels": ["x", "y"]}
    rows, target = npy(np.zeros((2, 1), dtype=np.float32)), npy(np.array([0, 1], dtype=np.int64))
    metrics = {
        problem_type: acceptance.Evidence.from_files(evaluation=report, feature_spec=spec, features_npy=rows, target_npy=target).metric
        for problem_type, report in written.items()
    }
    assert metrics == {"binary": "accuracy", "multiclass": "accuracy", "regression": "rmse", "clustering": None}


@pytest.mark.parametrize("problem_type", NEVER_WRITTEN)
def test_acceptance_refuses_a_problem_type_the_pipeline_never_writes(written: dict[str, dict[str, Any]], problem_type: str) -> None:
    report = {**written["regression"], "sagelab_summary": {**written["regression"]["sagelab_summary"], "problem_type": problem_type}}
    spec = {"feature_columns": ["a"], "encoded_columns": ["a"], "labels": []}
    with pytest.raises(acceptance.EvidenceError, match=r"sagelab_summary.problem_type is .*; expected one of binary, multiclass, regression, clustering"):
        acceptance.Evidence.from_files(evaluation=report, feature_spec=spec, features_npy=npy(np.zeros((1, 1))), target_npy=npy(np.zeros(1)))


# -- evaluate itself -------------------------------------------------------------------------------
@pytest.mark.parametrize("problem_type", NEVER_WRITTEN)
def test_evaluate_refuses_to_gate_or_describe_a_problem_type_it_never_writes(problem_type: str) -> None:
    with pytest.raises(ValueError, match=r"problem type .* is not one of binary, multiclass, regression, clustering"):
        evaluate.decide_gate(problem_type, {"accuracy": 1.0}, evaluate.GateSettings())
    with pytest.raises(ValueError, match=r"is not one of binary, multiclass, regression, clustering"):
        evaluate.model_description("xgboost", problem_type, {"feature_columns": ["a"], "labels": ["x", "y"]})
