"""The local Autopilot twin: search quality and budget, the container's CSV contract, and the leaderboard
read with a real boto3 client from the loopback SageMaker API."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from sagelab.local.automl import (
    FAMILIES,
    AutoMLRequestError,
    AutopilotContainer,
    AutopilotInputError,
    run_automl_job,
)
from sagelab.local.sagemaker_api import LocalSageMakerApi

REPO_ROOT = Path(__file__).resolve().parent.parent
DIGITS = REPO_ROOT / "sagelab" / "data" / "digits.csv"
DIGITS_BUDGET_S = 4.0  # the cheapest families; the full budget's time and accuracy are bench/algorithms.py's
# The digits search's candidates: the two cheapest families and their ensemble, whatever the machine's load.
# Under the 4 s budget alone a quiet machine went on to the 300-tree forests (5 s of CPU more, 0.98 for
# 0.97); the claims here (0.95 held out, the description, the leaderboard's wire shapes) hold with any
# candidates, and the forests' fits and refit are the regression search's.
DIGITS_MAX_CANDIDATES = 3
# What get_best_auto_ml_model copies from the best candidate's container environment.
SDK_ENVIRONMENT_KEYS = {
    "MODEL_NAME",
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",
    "SAGEMAKER_SUBMIT_DIRECTORY",
    "SAGEMAKER_INFERENCE_SUPPORTED",
    "SAGEMAKER_INFERENCE_OUTPUT",
    "SAGEMAKER_PROGRAM",
}


def automl_request(target: str, max_candidates: int = 10, **extra: Any) -> dict[str, Any]:
    """A CreateAutoMLJob request shaped as `AutoML(...).fit()` under a PipelineSession writes it."""
    return {
        "InputDataConfig": [
            {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/autopilot/train/"}},
                "TargetAttributeName": target,
                "ContentType": "text/csv;header=present",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/autopilot/output"},
        "AutoMLJobConfig": {
            "CompletionCriteria": {"MaxCandidates": max_candidates, "MaxRuntimePerTrainingJobInSeconds": 600, "MaxAutoMLJobRuntimeInSeconds": 3600},
            "SecurityConfig": {"EnableInterContainerTrafficEncryption": False},
            "Mode": "ENSEMBLING",
        },
        "RoleArn": "arn:aws:iam::111122223333:role/pipeline",
        **extra,
    }


@pytest.fixture(scope="module")
def digits_split() -> tuple[pd.DataFrame, pd.DataFrame]:
    table = pd.read_csv(DIGITS)
    train, test = train_test_split(table, test_size=0.2, random_state=7, stratify=table["label"])
    return train, test


@pytest.fixture(scope="module")
def digits_job(digits_split: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    train, _ = digits_split
    root = tmp_path_factory.mktemp("digits-automl")
    (root / "input").mkdir()
    train.to_csv(root / "input" / "train.csv", index=False)
    lines: list[str] = []
    request = automl_request("label", DIGITS_MAX_CANDIDATES)
    result = run_automl_job(request, root / "input", root / "output", "digits-autopilot", lines.append, time_budget_s=DIGITS_BUDGET_S)
    return {"result": result, "output": root / "output", "log": lines}


def regression_table() -> pd.DataFrame:
    """scikit-learn's diabetes data with raw units, `sex` as text and a few blank cells, so the search's
    one-hot encoding and imputation are on the path."""
    data = load_diabetes(as_frame=True, scaled=False)
    table = data.frame.rename(columns={"target": "progression"})
    table["sex"] = table["sex"].map({1.0: "female", 2.0: "male"})
    rng = np.random.default_rng(3)
    for column in ("bmi", "bp", "sex"):
        table.loc[rng.choice(len(table), size=15, replace=False), column] = None
    return table


def run_regression(root: Path, max_candidates: int = 4, budget: float = 60.0) -> dict[str, Any]:
    table = regression_table()
    train, test = train_test_split(table, test_size=0.2, random_state=5)
    (root / "input").mkdir(parents=True)
    train.to_csv(root / "input" / "part-1.csv", index=False)
    result = run_automl_job(
        automl_request("progression", max_candidates), root / "input", root / "output", "diabetes-autopilot", lambda line: None, time_budget_s=budget
    )
    return {"result": result, "test": test}


@pytest.fixture(scope="module")
def regression_search(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One four-candidate search on the diabetes table, read by the regression, determinism and
    container tests (each searched on its own before: the same search, three times over)."""
    return run_regression(tmp_path_factory.mktemp("regression-search"))


def csv_rows(features: pd.DataFrame) -> bytes:
    return features.to_csv(header=False, index=False).encode()


# ---------------------------------------------------------------------------------------------------
# The search


@pytest.mark.slow  # a real local Autopilot search on digits
def test_digits_search_reaches_095_on_held_out_rows(digits_job: dict[str, Any], digits_split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    result = digits_job["result"]
    _, test = digits_split
    assert result["ResolvedAttributes"] == {
        "AutoMLJobObjective": {"MetricName": "Accuracy"},  # Autopilot's default for multiclass
        "ProblemType": "MulticlassClassification",
        "CompletionCriteria": {"MaxCandidates": DIGITS_MAX_CANDIDATES, "MaxRuntimePerTrainingJobInSeconds": 600, "MaxAutoMLJobRuntimeInSeconds": 3600},
    }

    container = result["BestCandidate"]["InferenceContainers"][0]
    assert Path(container["ModelDataPath"]) == digits_job["output"] / "best" / "model.tar.gz"
    served = AutopilotContainer(digits_job["output"] / "best", container["Environment"])
    answer, content_type = served.invoke(csv_rows(test.drop(columns="label")), "text/csv", "text/csv")
    predicted = [int(line) for line in answer.decode().splitlines()]
    accuracy = float(np.mean(np.array(predicted) == test["label"].to_numpy()))
    assert content_type == "text/csv"
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.3f}; log: {digits_job['log']}"


@pytest.mark.slow  # the real digits search's description
def test_digits_job_describes_like_describe_automl_job(digits_job: dict[str, Any]) -> None:
    result = digits_job["result"]
    candidates = result["_candidates"]
    completed = [candidate for candidate in candidates if candidate["CandidateStatus"] == "Completed"]
    best_value = max(candidate["FinalAutoMLJobObjectiveMetric"]["Value"] for candidate in completed)
    best = result["BestCandidate"]
    assert best["FinalAutoMLJobObjectiveMetric"]["Value"] == best_value
    assert best["FinalAutoMLJobObjectiveMetric"]["Type"] == "Maximize"
    assert best["CandidateName"] in {candidate["CandidateName"] for candidate in candidates}
    assert len(candidates) <= DIGITS_MAX_CANDIDATES
    assert result["AutoMLJobStatus"] == "Completed"
    container = best["InferenceContainers"][0]
    assert set(container["Environment"]) >= SDK_ENVIRONMENT_KEYS
    assert container["Environment"]["SAGEMAKER_INFERENCE_OUTPUT"] == "predicted_label"
    assert "ModelDataUrl" not in container  # the runner fills it with the S3 URI of ModelDataPath
    json.dumps(result)  # the runner caches step properties as JSON

    with tarfile.open(container["ModelDataPath"]) as archive:
        assert sorted(archive.getnames()) == ["candidate.json", "model.joblib"]
        spec = json.loads(archive.extractfile("candidate.json").read())  # type: ignore[union-attr]
    assert spec["feature_columns"] == [f"pixel_{index}" for index in range(64)]
    assert spec["labels"] == [str(digit) for digit in range(10)]


def test_regression_csv_gives_regression_with_sane_r2(regression_search: dict[str, Any]) -> None:
    result, test = regression_search["result"], regression_search["test"]
    assert result["ResolvedAttributes"]["ProblemType"] == "Regression"
    assert result["ResolvedAttributes"]["AutoMLJobObjective"] == {"MetricName": "MSE"}  # Autopilot's regression default
    best = result["BestCandidate"]
    assert best["FinalAutoMLJobObjectiveMetric"]["Type"] == "Minimize"
    values = [candidate["FinalAutoMLJobObjectiveMetric"]["Value"] for candidate in result["_candidates"] if candidate["CandidateStatus"] == "Completed"]
    assert best["FinalAutoMLJobObjectiveMetric"]["Value"] == min(values)
    assert len(result["_candidates"]) <= 4

    container = best["InferenceContainers"][0]
    served = AutopilotContainer(Path(container["ModelDataPath"]).parent, container["Environment"])
    answer, _ = served.invoke(csv_rows(test.drop(columns="progression")), "text/csv", "text/csv")
    predicted = [float(line) for line in answer.decode().splitlines()]
    # A constant prediction scores 0; the diabetes benchmarks sit around 0.4-0.5.
    assert r2_score(test["progression"], predicted) > 0.3


def test_binary_target_gets_f1_and_probabilities_in_autopilot_order(tmp_path: Path) -> None:
    data = load_breast_cancer(as_frame=True)
    table = data.frame.iloc[:, [0, 1, 2, 3, 20, 21, 22, 27, 30]].copy()
    table["target"] = table["target"].map({0: "malignant", 1: "benign"})
    train, test = train_test_split(table, test_size=0.25, random_state=2, stratify=table["target"])
    (tmp_path / "input").mkdir()
    train.to_csv(tmp_path / "input" / "train.csv", index=False)
    result = run_automl_job(automl_request("target", 3), tmp_path / "input", tmp_path / "output", "cancer", lambda line: None)
    assert result["ResolvedAttributes"]["ProblemType"] == "BinaryClassification"
    assert result["ResolvedAttributes"]["AutoMLJobObjective"] == {"MetricName": "F1"}  # Autopilot's binary default
    assert len(result["_candidates"]) == 3  # two families and their ensemble: MaxCandidates counts the ensemble

    environment = {
        **result["BestCandidate"]["InferenceContainers"][0]["Environment"],
        "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probability,probabilities,labels",
    }
    served = AutopilotContainer(tmp_path / "output" / "best", environment)
    answer, _ = served.invoke(csv_rows(test.drop(columns="target").head(5)), "text/csv", "text/csv")
    for row in csv.reader(io.StringIO(answer.decode())):
        label, probability, probabilities, labels = row
        listed = json.loads(probabilities)
        assert labels == "['benign', 'malignant']"  # labels in sorted order, as Python's list repr
        assert label == ["benign", "malignant"][int(np.argmax(listed))]
        assert float(probability) == max(listed)  # ensembling mode: the predicted label's probability
        assert abs(sum(listed) - 1) < 1e-6


def test_search_is_deterministic(regression_search: dict[str, Any], tmp_path: Path) -> None:
    first = regression_search  # the module's search, in another directory; the second starts from scratch
    second = run_regression(tmp_path / "second", max_candidates=4)

    def leaderboard(run: dict[str, Any]) -> list[tuple[str, float]]:
        # Same job name in both runs, so names compare directly; values exactly, not approximately.
        return [(c["CandidateName"], c["FinalAutoMLJobObjectiveMetric"]["Value"]) for c in run["result"]["_candidates"]]

    assert leaderboard(first) == leaderboard(second)
    rows = csv_rows(first["test"].drop(columns="progression"))
    answers = []
    for run in (first, second):
        container = run["result"]["BestCandidate"]["InferenceContainers"][0]
        answers.append(AutopilotContainer(Path(container["ModelDataPath"]).parent, container["Environment"]).invoke(rows, "text/csv", "text/csv")[0])
    assert answers[0] == answers[1]


def test_budget_stops_starting_candidates(tmp_path: Path) -> None:
    budget = 0.3
    run = run_regression(tmp_path, max_candidates=10, budget=budget)
    result = run["result"]
    job_started = dt.datetime.fromisoformat(result["CreationTime"])
    base = [candidate for candidate in result["_candidates"] if not candidate["CandidateName"].endswith("weighted-ensemble")]
    assert 1 <= len(base) < len(FAMILIES), "the budget should have cut the search short"
    assert result["AutoMLJobSecondaryStatus"] == "MaxAutoMLJobRuntimeReached"
    # Every candidate but the first starts before the budget is spent: the overrun is one candidate at most.
    for candidate in base[1:]:
        assert (dt.datetime.fromisoformat(candidate["CreationTime"]) - job_started).total_seconds() < budget + 0.05


def test_request_errors_name_what_to_change(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    regression_table().to_csv(tmp_path / "input" / "train.csv", index=False)
    with pytest.raises(AutoMLRequestError, match=r"TargetAttributeName 'price' is not a column.*'progression'"):
        run_automl_job(automl_request("price"), tmp_path / "input", tmp_path / "output", "bad", lambda line: None)
    with pytest.raises(AutoMLRequestError, match=r"'Accuracy' does not apply to Regression; expected one of \['MSE'"):
        run_automl_job(
            automl_request("progression", AutoMLJobObjective={"MetricName": "Accuracy"}), tmp_path / "input", tmp_path / "output", "bad", lambda line: None
        )
    too_short = automl_request("progression", 2)
    too_short["AutoMLJobConfig"]["CompletionCriteria"]["MaxRuntimePerTrainingJobInSeconds"] = 1e-6
    with pytest.raises(
        AutoMLRequestError, match=r"no candidate completed \(k-nearest-neighbors: a fold took .* more than MaxRuntimePerTrainingJobInSeconds=1e-06"
    ):
        run_automl_job(too_short, tmp_path / "input", tmp_path / "output", "bad", lambda line: None)
    with pytest.raises(AutoMLRequestError, match="no input files"):
        run_automl_job(automl_request("progression"), tmp_path / "empty", tmp_path / "output", "bad", lambda line: None)


# ---------------------------------------------------------------------------------------------------
# The container


@pytest.fixture(scope="module")
def regression_container(regression_search: dict[str, Any]) -> tuple[AutopilotContainer, pd.DataFrame]:
    container = regression_search["result"]["BestCandidate"]["InferenceContainers"][0]
    return AutopilotContainer(Path(container["ModelDataPath"]).parent, container["Environment"]), regression_search["test"].drop(columns="progression")


def test_container_answers_csv_with_blank_cells_as_missing(regression_container: tuple[AutopilotContainer, pd.DataFrame]) -> None:
    container, features = regression_container
    first = features.iloc[0].tolist()
    with_blanks = ",".join("" if name in ("bmi", "sex") else str(value) for name, value in zip(features.columns, first, strict=True))
    body = f"{with_blanks}\n{csv_rows(features.iloc[:2]).decode()}".encode()
    answer, content_type = container.invoke(body, "text/csv; charset=utf-8", "*/*")
    lines = answer.decode().splitlines()
    assert content_type == "text/csv"
    assert len(lines) == 3
    assert all(np.isfinite(float(line)) for line in lines)


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "message"),
    [
        (b"", "text/csv", "text/csv", r"the body is empty: send one or more text/csv rows of 10 feature values"),
        (b"1,2,3\n", "text/csv", "text/csv", r"row 1 has 3 values; expected 10 \(age, sex, bmi, \.\.\., s6\)"),
        (b'{"instances": [[1]]}', "application/json", "text/csv", r"Content-Type 'application/json' is not supported: send text/csv"),
        (b"1,2,3\n", "text/csv", "application/json", r"Accept 'application/json' is not supported"),
        (b"50,male,x,90,200,100,40,4,4.5,90\n", "text/csv", "text/csv", r"row 1, column 'bmi': expected a number \(or an empty cell\), got 'x'"),
        (b"\xff\xfe", "text/csv", "text/csv", r"not UTF-8"),
    ],
)
def test_container_rejects_bad_input(
    regression_container: tuple[AutopilotContainer, pd.DataFrame], body: bytes, content_type: str, accept: str, message: str
) -> None:
    container, _ = regression_container
    with pytest.raises(AutopilotInputError, match=message):
        container.invoke(body, content_type, accept)


def test_container_reads_the_tarball_and_refuses_keys_the_problem_type_lacks(regression_search: dict[str, Any]) -> None:
    container = regression_search["result"]["BestCandidate"]["InferenceContainers"][0]
    artifact_dir = Path(container["ModelDataPath"]).parent
    assert AutopilotContainer(artifact_dir, container["Environment"]).spec["problem_type"] == "Regression"
    with pytest.raises(ValueError, match=r"\['probabilities'\] not supported for Regression"):
        AutopilotContainer(artifact_dir, {**container["Environment"], "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probabilities"})


# ---------------------------------------------------------------------------------------------------
# The loopback SageMaker API, read with boto3


def synthetic_job(name: str, values: list[float | None]) -> dict[str, Any]:
    """A job result with one candidate per value (None = a failed candidate), created a second apart."""
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    candidates = []
    for index, value in enumerate(values):
        created = (start + dt.timedelta(seconds=index)).isoformat()
        candidate: dict[str, Any] = {
            "CandidateName": f"{name}-t{index + 1:02d}",
            "ObjectiveStatus": "Succeeded" if value is not None else "Failed",
            "CandidateSteps": [],
            "CandidateStatus": "Completed" if value is not None else "Failed",
            "CreationTime": created,
            "LastModifiedTime": created,
        }
        if value is not None:
            candidate["FinalAutoMLJobObjectiveMetric"] = {"Type": "Maximize", "MetricName": "Accuracy", "Value": value}
        candidates.append(candidate)
    best = max((c for c in candidates if "FinalAutoMLJobObjectiveMetric" in c), key=lambda c: c["FinalAutoMLJobObjectiveMetric"]["Value"])
    return {
        "AutoMLJobName": name,
        "AutoMLJobArn": f"arn:aws:sagemaker:local:000000000000:automl-job/{name}",
        "InputDataConfig": automl_request("label")["InputDataConfig"],
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "RoleArn": "arn:aws:iam::111122223333:role/pipeline",
        "CreationTime": start.isoformat(),
        "LastModifiedTime": start.isoformat(),
        "AutoMLJobStatus": "Completed",
        "AutoMLJobSecondaryStatus": "Completed",
        "BestCandidate": {
            **best,
            "InferenceContainers": [
                {"Image": "local/x", "ModelDataPath": "/tmp/model.tar.gz", "ModelDataUrl": "s3://bucket/out/best/model.tar.gz", "Environment": {}}
            ],
        },
        "_candidates": candidates,
    }


@pytest.fixture(scope="module")
def sagemaker() -> Iterator[Any]:
    with LocalSageMakerApi() as api:
        api.add_automl_job(synthetic_job("leaderboard", [0.91, 0.97, None, 0.95, 0.89, 0.97, 0.93]))
        yield boto3.client(
            "sagemaker",
            endpoint_url=api.url,
            region_name="us-east-1",
            aws_access_key_id=api.credentials.access_key,
            aws_secret_access_key=api.credentials.secret_key,
        )


def test_list_candidates_sorted_by_objective(sagemaker: Any) -> None:
    response = sagemaker.list_candidates_for_auto_ml_job(
        AutoMLJobName="leaderboard", SortBy="FinalObjectiveMetricValue", SortOrder="Descending", MaxResults=100
    )
    names = [candidate["CandidateName"] for candidate in response["Candidates"]]
    # Ties (t02, t06 at 0.97) keep creation order; the failed candidate has no value and comes last.
    assert names == ["leaderboard-t02", "leaderboard-t06", "leaderboard-t04", "leaderboard-t07", "leaderboard-t01", "leaderboard-t05", "leaderboard-t03"]
    assert "NextToken" not in response
    assert isinstance(response["Candidates"][0]["CreationTime"], dt.datetime)

    ascending = sagemaker.list_candidates_for_auto_ml_job(
        AutoMLJobName="leaderboard", SortBy="FinalObjectiveMetricValue", SortOrder="Ascending", MaxResults=100
    )
    assert [c["CandidateName"] for c in ascending["Candidates"]][:2] == ["leaderboard-t05", "leaderboard-t01"]


def test_list_candidates_pages_with_next_token(sagemaker: Any) -> None:
    pages = []
    kwargs: dict[str, Any] = {"AutoMLJobName": "leaderboard", "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 3}
    while True:
        response = sagemaker.list_candidates_for_auto_ml_job(**kwargs)
        pages.append([candidate["CandidateName"] for candidate in response["Candidates"]])
        if "NextToken" not in response:
            break
        kwargs["NextToken"] = response["NextToken"]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [name for page in pages for name in page] == [f"leaderboard-t{index:02d}" for index in range(7, 0, -1)]

    paginated = sagemaker.get_paginator("list_candidates_for_auto_ml_job").paginate(AutoMLJobName="leaderboard", PaginationConfig={"PageSize": 2})
    assert [c["CandidateName"] for page in paginated for c in page["Candidates"]] == [f"leaderboard-t{index:02d}" for index in range(1, 8)]

    by_creation = sagemaker.list_candidates_for_auto_ml_job(AutoMLJobName="leaderboard", MaxResults=3)["NextToken"]
    with pytest.raises(ClientError, match="NextToken belongs to a different query") as raised:
        sagemaker.list_candidates_for_auto_ml_job(AutoMLJobName="leaderboard", SortBy="Status", MaxResults=3, NextToken=by_creation)
    assert raised.value.response["Error"]["Code"] == "ValidationException"


def test_list_candidates_filters_by_status_and_name(sagemaker: Any) -> None:
    failed = sagemaker.list_candidates_for_auto_ml_job(AutoMLJobName="leaderboard", StatusEquals="Failed")
    assert [c["CandidateName"] for c in failed["Candidates"]] == ["leaderboard-t03"]
    named = sagemaker.list_candidates_for_auto_ml_job(AutoMLJobName="leaderboard", CandidateNameEquals="leaderboard-t04")
    assert [c["FinalAutoMLJobObjectiveMetric"]["Value"] for c in named["Candidates"]] == [0.95]


def test_describe_automl_job_drops_local_keys(sagemaker: Any) -> None:
    response = sagemaker.describe_auto_ml_job(AutoMLJobName="leaderboard")
    assert response["AutoMLJobStatus"] == "Completed"
    assert response["BestCandidate"]["CandidateName"] == "leaderboard-t02"
    assert response["BestCandidate"]["InferenceContainers"] == [{"Image": "local/x", "ModelDataUrl": "s3://bucket/out/best/model.tar.gz", "Environment": {}}]
    assert response["CreationTime"] == dt.datetime(2025, 1, 1, tzinfo=response["CreationTime"].tzinfo)
    assert "_candidates" not in response


@pytest.mark.parametrize("operation", ["describe_auto_ml_job", "list_candidates_for_auto_ml_job"])
def test_unknown_job_is_resource_not_found(sagemaker: Any, operation: str) -> None:
    with pytest.raises(ClientError) as raised:
        getattr(sagemaker, operation)(AutoMLJobName="no-such-job")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFound"
    assert "no-such-job" in raised.value.response["Error"]["Message"]
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_out_of_range_page_size_is_a_validation_error(sagemaker: Any) -> None:
    with pytest.raises(ClientError, match="between 1 and 300") as raised:
        sagemaker.list_candidates_for_auto_ml_job(AutoMLJobName="leaderboard", MaxResults=301)
    assert raised.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.slow  # the real digits search's leaderboard over boto3
def test_real_job_leaderboard_through_boto3(digits_job: dict[str, Any]) -> None:
    result = digits_job["result"]
    with LocalSageMakerApi() as api:
        api.add_automl_job(result)
        client = boto3.client(
            "sagemaker",
            endpoint_url=api.url,
            region_name="us-east-1",
            aws_access_key_id=api.credentials.access_key,
            aws_secret_access_key=api.credentials.secret_key,
        )
        board = client.list_candidates_for_auto_ml_job(AutoMLJobName=result["AutoMLJobName"], SortBy="FinalObjectiveMetricValue", SortOrder="Descending")
        described = client.describe_auto_ml_job(AutoMLJobName=result["AutoMLJobName"])
    assert board["Candidates"][0]["FinalAutoMLJobObjectiveMetric"] == described["BestCandidate"]["FinalAutoMLJobObjectiveMetric"]
    assert set(described["BestCandidate"]["InferenceContainers"][0]["Environment"]) >= SDK_ENVIRONMENT_KEYS
    assert "ModelDataPath" not in described["BestCandidate"]["InferenceContainers"][0]


def assert_matches_shape(value: Any, shape: Any, path: str) -> None:
    """`value` is what SageMaker could send for botocore's `shape`: known member names, the right types, enum values."""
    type_name = shape.type_name
    if type_name == "structure":
        assert isinstance(value, dict), path
        for name, item in value.items():
            assert name in shape.members, f"{path}.{name} is not a member of {shape.name}"
            assert_matches_shape(item, shape.members[name], f"{path}.{name}")
        missing = set(shape.required_members) - set(value)
        assert not missing, f"{path} lacks required {sorted(missing)}"
    elif type_name == "list":
        assert isinstance(value, list), path
        for index, item in enumerate(value):
            assert_matches_shape(item, shape.member, f"{path}[{index}]")
    elif type_name == "map":
        assert isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()), path
    elif type_name == "timestamp":
        assert isinstance(value, int | float), f"{path}: JSON 1.1 timestamps are epoch seconds, got {value!r}"
    elif type_name == "string":
        assert isinstance(value, str), path
        assert not shape.enum or value in shape.enum, f"{path}={value!r} not in {shape.enum}"
    elif type_name in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), path
    elif type_name in ("float", "double"):
        assert isinstance(value, int | float) and not isinstance(value, bool), path
    elif type_name == "boolean":
        assert isinstance(value, bool), path


@pytest.mark.slow  # the real digits search's wire responses
def test_real_job_wire_responses_match_botocore_shapes(digits_job: dict[str, Any]) -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    api = LocalSageMakerApi()
    result = {**digits_job["result"]}
    result["BestCandidate"] = {**result["BestCandidate"]}
    result["BestCandidate"]["InferenceContainers"] = [
        {**result["BestCandidate"]["InferenceContainers"][0], "ModelDataUrl": "s3://bucket/out/best/model.tar.gz"}
    ]
    api.add_automl_job(result)
    name = result["AutoMLJobName"]
    assert_matches_shape(api.describe_automl_job({"AutoMLJobName": name}), model.shape_for("DescribeAutoMLJobResponse"), "DescribeAutoMLJob")
    listed = api.list_candidates({"AutoMLJobName": name, "MaxResults": 300})
    assert_matches_shape(listed, model.shape_for("ListCandidatesForAutoMLJobResponse"), "ListCandidatesForAutoMLJob")
    assert len(listed["Candidates"]) == len(result["_candidates"])
    best = next(candidate for candidate in listed["Candidates"] if candidate["CandidateName"] == result["BestCandidate"]["CandidateName"])
    assert best["InferenceContainers"][0]["ModelDataUrl"] == "s3://bucket/out/best/model.tar.gz"
    assert all("InferenceContainers" not in candidate for candidate in listed["Candidates"] if candidate is not best)
