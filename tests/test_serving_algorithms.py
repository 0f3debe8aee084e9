"""Serving every algorithm (decision 0011), over real sockets: the local gateway -> the front door
handler (MODEL_ALGORITHM, MODEL_DESCRIPTION_URI read through S3 GetObject on the local endpoint) ->
the local endpoint -> the container twin `open_container` picks by image.

The models are real: K-Means serves a `model_algo-1` (MXNet NDArray file, float32 centroids) written
by `write_mxnet_ndarrays`; Autopilot serves the artifact a small `run_automl_job` search fits once per
module on tables generated here (a classification with a numeric, a text and a gappy column; a
regression). Expected answers come from the same artifact loaded directly (`AutopilotContainer`) or
from the centroids with NumPy, so each test checks the front door's encoding and mapping, not a
number copied from a run.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest
from botocore.exceptions import ClientError

from sagelab.local.automl import AutopilotContainer, run_automl_job
from sagelab.local.builtin_kmeans import MODEL_FILE_NAME, write_mxnet_ndarrays
from sagelab.local.containers import ErrorAnswer, container_type, open_container
from sagelab.local.registry import LocalRegistry
from sagelab.local.serve import serving

API_KEY = "algorithms-key"
BUCKET = "sagelab-dev--artifacts"
KMEANS_IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1"
# Three centroids, one of them off the diagonal, so a record whose columns were sent in the wrong
# order lands in another cluster: (0, 0, 9) read as (9, 0, 0) is nearest centroid 0, not 2.
CENTROIDS = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0], [0.0, 0.0, 9.0]], dtype=np.float32)
# The classification table's text column: one value holds the CSV delimiter, so it must travel quoted.
COLOURS = ("red", "blue, dark", "green")
GRADES = ("a", "b", "c")


# -- real model artifacts ----------------------------------------------------------------------------
def kmeans_archive(directory: Path, centroids: np.ndarray = CENTROIDS) -> Path:
    """A model.tar.gz as the built-in K-Means writes it: `model_algo-1` holding the centroids as array 0."""
    directory.mkdir(parents=True, exist_ok=True)
    write_mxnet_ndarrays(directory / MODEL_FILE_NAME, [centroids.astype(np.float32)])
    archive = directory / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory / MODEL_FILE_NAME, arcname=MODEL_FILE_NAME)
    return archive


def nearest_centroid(rows: list[list[float]]) -> list[tuple[int, float]]:
    distances = np.linalg.norm(np.asarray(rows, dtype=np.float64)[:, None, :] - CENTROIDS.astype(np.float64)[None, :, :], axis=2)
    return [(int(row.argmin()), float(row.min())) for row in distances]


def classification_table() -> str:
    """40 rows: `size` numeric with blanks, `colour` text with blanks, `weight` numeric and complete;
    `size_class` is 'big' exactly when weight is over 10, so both answers occur and are learnable."""
    rng = np.random.default_rng(7)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["size", "colour", "weight", "size_class"])
    for index in range(40):
        weight = round(float(index) / 2 + rng.uniform(-0.2, 0.2), 2)
        size = "" if index % 7 == 3 else round(float(rng.uniform(0, 5)), 2)
        colour = "" if index % 9 == 4 else COLOURS[index % len(COLOURS)]
        writer.writerow([size, colour, weight, "big" if weight > 10 else "small"])
    return out.getvalue()


def regression_table() -> str:
    """40 rows: `x` numeric with blanks, `grade` text; `y` = 3x + an offset per grade + noise."""
    rng = np.random.default_rng(11)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["x", "grade", "y"])
    for index in range(40):
        x = float(index % 13)
        grade = GRADES[index % len(GRADES)]
        y = 3 * x + 5 * GRADES.index(grade) + float(rng.normal(0, 0.5))
        writer.writerow(["" if index % 8 == 5 else x, grade, round(y, 3)])
    return out.getvalue()


@dataclass(frozen=True)
class AutopilotModel:
    """A best candidate as `run_automl_job` left it: its artifact and its inference container."""

    artifact: Path
    image: str
    environment: dict[str, str]
    spec: dict[str, Any]  # the artifact's candidate.json

    def container(self) -> AutopilotContainer:
        return AutopilotContainer(self.artifact.parent, self.environment)

    def answer(self, csv_body: str) -> list[str]:
        """The container's first field per row for `csv_body` (what the front door maps), read directly."""
        body, _ = self.container().invoke(csv_body.encode(), "text/csv", "text/csv")
        return [line[0] for line in csv.reader(io.StringIO(body.decode())) if line]


def fit_autopilot(workdir: Path, table: str, target: str) -> AutopilotModel:
    input_dir = workdir / "input"
    input_dir.mkdir(parents=True)
    (input_dir / "train.csv").write_text(table)
    request = {
        "AutoMLJobConfig": {"Mode": "ENSEMBLING", "CompletionCriteria": {"MaxCandidates": 2}},
        "InputDataConfig": [{"ContentType": "text/csv;header=present", "TargetAttributeName": target, "DataSource": {"S3DataSource": {"S3Uri": "s3://x/in"}}}],
        "OutputDataConfig": {"S3OutputPath": "s3://x/out"},
    }
    job = run_automl_job(request, input_dir, workdir / "output", f"algorithms-{target}", lambda _line: None, time_budget_s=20)
    (container,) = job["BestCandidate"]["InferenceContainers"]
    artifact = workdir / "output" / "best" / "model.tar.gz"
    assert Path(container["ModelDataPath"]) == artifact and artifact.is_file()
    with tarfile.open(artifact) as tar:
        member = tar.extractfile("candidate.json")
        assert member is not None
        spec = json.loads(member.read())
    return AutopilotModel(artifact, container["Image"], dict(container["Environment"]), spec)


@pytest.fixture(scope="module")
def autopilot_classifier(tmp_path_factory: pytest.TempPathFactory) -> AutopilotModel:
    model = fit_autopilot(tmp_path_factory.mktemp("automl-classification"), classification_table(), "size_class")
    assert model.spec["feature_columns"] == ["size", "colour", "weight"] and model.spec["labels"] == ["big", "small"]
    return model


@pytest.fixture(scope="module")
def autopilot_regressor(tmp_path_factory: pytest.TempPathFactory) -> AutopilotModel:
    model = fit_autopilot(tmp_path_factory.mktemp("automl-regression"), regression_table(), "y")
    assert model.spec["feature_columns"] == ["x", "grade"] and model.spec["problem_type"] == "Regression"
    return model


# -- registered models ------------------------------------------------------------------------------
def register(workdir: Path, *, image: str, archive: Path, metadata: dict[str, str], environment: dict[str, str] | None = None) -> None:
    """Put `archive` where the pipeline puts a model in the local S3 and register it, approved."""
    stored = workdir / "s3" / BUCKET / "models" / "exec-1" / "model.tar.gz"
    stored.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(archive, stored)
    package = LocalRegistry(workdir).register(
        group="sagelab-dev--models",
        approval_status="Approved",
        model_data_url=f"s3://{BUCKET}/models/exec-1/model.tar.gz",
        model_data_path=str(stored),
        image=image,
        environment=environment or {},
        metrics_url=None,
        metrics={},
        execution_id="exec-1",
        customer_metadata=metadata,
    )
    assert package.customer_metadata == metadata


DESCRIPTION_KEY = "models/evaluations/exec-1/evaluation/model_description.json"


def write_description(workdir: Path, description: dict[str, Any]) -> str:
    path = workdir / "s3" / BUCKET / DESCRIPTION_KEY
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(description))
    return f"s3://{BUCKET}/{DESCRIPTION_KEY}"


KMEANS_DESCRIPTION = {
    "algorithm": "kmeans",
    "problem_type": "clustering",
    "features": [{"name": name, "type": "number", "nullable": False} for name in ("a", "b", "c")],
    "row_width": 3,
    "answer": {"type": "object"},
}


def autopilot_description(model: AutopilotModel, problem_type: str, vocabulary: dict[str, tuple[str, ...]], gappy: set[str]) -> dict[str, Any]:
    """The description in the artifact's feature order; a column is nullable when its training data had blanks."""
    features = [
        {"name": name, "type": "category", "values": list(vocabulary[name]), "nullable": name in gappy}
        if name in vocabulary
        else {"name": name, "type": "number", "nullable": name in gappy}
        for name in model.spec["feature_columns"]
    ]
    description: dict[str, Any] = {"algorithm": "autopilot", "problem_type": problem_type, "features": features, "row_width": len(features)}
    if model.spec["labels"]:
        description["labels"] = list(model.spec["labels"])
    description["answer"] = {"type": "object"}
    return description


# One model per front door, as one Lambda function serves one model: the handler module is a
# process-wide singleton, so each test starts the servers of its own model (the fitting is shared).
@pytest.fixture
def kmeans_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("kmeans")
    uri = write_description(workdir, KMEANS_DESCRIPTION)
    metadata = {"sagelab:algorithm": "kmeans", "sagelab:problem-type": "clustering", "sagelab:model-description": uri}
    register(workdir, image=KMEANS_IMAGE, archive=kmeans_archive(workdir / "build"), metadata=metadata)
    with serving(workdir, API_KEY) as (gateway, _):
        yield gateway.url


@pytest.fixture
def autopilot_url(tmp_path_factory: pytest.TempPathFactory, autopilot_classifier: AutopilotModel) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("autopilot")
    description = autopilot_description(autopilot_classifier, "binary", {"colour": COLOURS}, gappy={"size", "colour"})
    uri = write_description(workdir, description)
    metadata = {"sagelab:algorithm": "autopilot", "sagelab:problem-type": "binary", "sagelab:model-description": uri}
    model = autopilot_classifier
    register(workdir, image=model.image, archive=model.artifact, metadata=metadata, environment=model.environment)
    with serving(workdir, API_KEY) as (gateway, _):
        yield gateway.url


@pytest.fixture
def autopilot_regression_url(tmp_path_factory: pytest.TempPathFactory, autopilot_regressor: AutopilotModel) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("autopilot-regression")
    uri = write_description(workdir, autopilot_description(autopilot_regressor, "regression", {"grade": GRADES}, gappy={"x"}))
    metadata = {"sagelab:algorithm": "autopilot", "sagelab:problem-type": "regression", "sagelab:model-description": uri}
    model = autopilot_regressor
    register(workdir, image=model.image, archive=model.artifact, metadata=metadata, environment=model.environment)
    with serving(workdir, API_KEY) as (gateway, _):
        yield gateway.url


def post(url: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, headers={"x-api-key": API_KEY}, timeout=30)


def assert_bad_request(response: httpx.Response, says: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "message", "requestId"} and body["error"] == "BadRequest", body
    assert says in body["message"], body["message"]


# -- choosing the container -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image", "served_by"),
    [
        ("382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1", "kmeans"),
        ("664544806723.dkr.ecr.eu-central-1.amazonaws.com/kmeans@sha256:" + "0" * 64, "kmeans"),
        ("local/sagemaker-kmeans:1", "kmeans"),
        ("local/sagemaker-autopilot:1", "autopilot"),
        ("local/sagemaker-autopilot:ensembling", "autopilot"),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/autogluon-inference:1.1-cpu-py311", "autopilot"),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-sklearn-automl:2.5-1-cpu-py3", "autopilot"),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5", "script"),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3", "script"),
        ("local/kmeans-but-not-really/sagemaker-xgboost:1", "script"),
    ],
)
def test_the_image_chooses_the_container(image: str, served_by: str) -> None:
    assert container_type(image) == served_by


def test_open_container_loads_the_kmeans_twin_from_the_model_dir(tmp_path: Path) -> None:
    kmeans_archive(tmp_path)  # leaves model_algo-1 beside the archive, as an extracted model dir holds it
    container = open_container("local/sagemaker-kmeans:1", tmp_path, {})
    answer, content_type = container.invoke(b"9,9,9\n0,1,8\n", "text/csv", "application/json")
    assert content_type == "application/json"
    predictions = json.loads(answer)["predictions"]
    expected = nearest_centroid([[9, 9, 9], [0, 1, 8]])
    assert [int(p["closest_cluster"]) for p in predictions] == [cluster for cluster, _ in expected] == [1, 2]
    assert [p["distance_to_cluster"] for p in predictions] == pytest.approx([distance for _, distance in expected], rel=1e-6)


def test_open_container_loads_the_autopilot_artifact_with_its_environment(autopilot_classifier: AutopilotModel, tmp_path: Path) -> None:
    with tarfile.open(autopilot_classifier.artifact) as tar:
        tar.extractall(tmp_path, filter="data")
    container = open_container(autopilot_classifier.image, tmp_path, autopilot_classifier.environment)
    answer, content_type = container.invoke(b',"blue, dark",20\n1,red,0.5\n', "text/csv", "text/csv")
    assert content_type == "text/csv"
    assert answer.decode() == "\n".join(autopilot_classifier.answer(',"blue, dark",20\n1,red,0.5\n')) + "\n"


# -- K-Means through the front door ----------------------------------------------------------------------
def test_kmeans_positional_rows_are_csv_and_the_answer_is_cluster_and_distance(kmeans_url: str) -> None:
    rows: list[list[float]] = [[1, 0, 0], [10, 10, 12.5], [0, 0, 8]]
    response = post(kmeans_url, {"instances": rows})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert all(set(p) == {"cluster", "distance"} and isinstance(p["cluster"], int) for p in predictions), predictions
    expected = nearest_centroid(rows)
    assert [p["cluster"] for p in predictions] == [cluster for cluster, _ in expected] == [0, 1, 2]
    # The container answers at float32 precision, as the built-in does.
    assert [p["distance"] for p in predictions] == pytest.approx([distance for _, distance in expected], rel=1e-6)


def test_kmeans_records_are_ordered_by_the_descriptions_features(kmeans_url: str) -> None:
    records = [{"c": 9, "b": 0, "a": 0}, {"c": 0, "b": 0, "a": 3}, {"a": 10, "c": 10, "b": 10}]
    response = post(kmeans_url, {"instances": records})
    assert response.status_code == 200, response.text
    expected = nearest_centroid([[record[name] for name in ("a", "b", "c")] for record in records])
    assert [(p["cluster"], p["distance"]) for p in response.json()["predictions"]] == [(c, pytest.approx(d, abs=1e-6)) for c, d in expected]
    assert [cluster for cluster, _ in expected] == [2, 0, 1]  # in the order sent, {"c": 9} would be (9, 0, 0): cluster 0


@pytest.mark.parametrize(
    ("instances", "says"),
    [
        ([[1, None, 3]], "instances[0][1] is missing (null); K-Means takes numbers only"),
        ([{"a": 1, "b": "x", "c": 3}], "instances[0].b is the string 'x'; K-Means takes numbers only"),
        ([{"a": 1, "c": 3}], "instances[0].b is missing (null); K-Means takes numbers only"),
        ([[1, 2]], "instances[0] has 2 values; this model takes 3 (a, b, c)"),
        ([[1, 2, 3], [1, 2, 3, 4]], "instances[1] has 4 values; this model takes 3"),
        ([{"a": 1, "b": 2, "c": 3, "d": 4}], "instances[0] has unknown column(s) 'd'; this model's columns are a, b, c"),
    ],
    ids=["null", "string", "missing-column", "short-row", "long-row", "unknown-column"],
)
def test_kmeans_bad_input_is_400_naming_the_row_and_column(kmeans_url: str, instances: list[Any], says: str) -> None:
    assert_bad_request(post(kmeans_url, {"instances": instances}), says)


# -- Autopilot through the front door ------------------------------------------------------------------------
def test_autopilot_records_become_quoted_csv_with_empty_cells_for_null(autopilot_url: str, autopilot_classifier: AutopilotModel) -> None:
    instances = [
        {"weight": 20, "colour": "blue, dark", "size": None},
        {"weight": 1.5, "colour": 'say "red"'},
        {"weight": 19, "colour": "green", "size": 2},
        {"weight": 3.25, "size": 1},
    ]
    response = post(autopilot_url, {"instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert all(set(p) == {"label"} for p in predictions), predictions
    # The CSV the front door must send: the description's feature order (size, colour, weight), text
    # quoted, null and absent as empty cells. The real container refuses a row of the wrong width or
    # text in a numeric column, so a comma left unquoted or a column out of order is a 400, not a label.
    expected_csv = ',"blue, dark",20\n,"say ""red""",1.5\n2,green,19\n1,,3.25\n'
    expected = autopilot_classifier.answer(expected_csv)
    assert [p["label"] for p in predictions] == expected
    assert set(expected) == {"big", "small"}  # both labels answered: rows swapped or shifted would show


def test_autopilot_positional_rows_pass_in_order_with_null_as_empty(autopilot_url: str, autopilot_classifier: AutopilotModel) -> None:
    response = post(autopilot_url, {"instances": [[5, None, 16], [None, None, 0.5]]})
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == autopilot_classifier.answer("5,,16\n,,0.5\n")


def test_autopilot_regression_answers_values(autopilot_regression_url: str, autopilot_regressor: AutopilotModel) -> None:
    response = post(autopilot_regression_url, {"instances": [{"x": 4, "grade": "c"}, {"grade": "a"}, {"x": 12, "grade": None}]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert all(set(p) == {"value"} and isinstance(p["value"], float) for p in predictions), predictions
    assert [p["value"] for p in predictions] == [float(value) for value in autopilot_regressor.answer("4,c\n,a\n12,\n")]


def test_autopilot_wrong_width_or_unknown_column_is_400(autopilot_url: str) -> None:
    assert_bad_request(post(autopilot_url, {"instances": [[1, 2]]}), "instances[0] has 2 values; this model takes 3 (size, colour, weight)")
    assert_bad_request(post(autopilot_url, {"instances": [{"shape": 1}]}), "instances[0] has unknown column(s) 'shape'")


def test_autopilot_text_in_a_numeric_column_is_a_400_from_the_front_door(autopilot_url: str) -> None:
    # Autopilot's container answers it with a 500 (a bare 502 here): the description's column types let
    # the front door name the row and column before the request reaches the container.
    response = post(autopilot_url, {"instances": [{"size": 1, "colour": "red", "weight": 2}, {"size": "huge", "colour": "red", "weight": 2}]})
    assert_bad_request(response, "instances[1].size is the string 'huge'; the column 'size' takes a number or null")


# -- what the built-in containers answer for a payload they cannot read (decision 0017) -----------------------
def test_the_kmeans_twin_answers_unreadable_payloads_as_the_builtin_does(tmp_path: Path) -> None:
    """A 400 with the built-in algorithms' own text, not the twin's precise message (which is the log's)."""
    kmeans_archive(tmp_path)
    container = open_container("local/sagemaker-kmeans:1", tmp_path, {})
    for body, content_type in ((b"1,2\n", "text/csv"), (b"1,x,3\n", "text/csv"), (b"1,2,3\n", "image/png")):
        with pytest.raises(ErrorAnswer) as refused:
            container.invoke(body, content_type, "application/json")
        assert (refused.value.status, refused.value.body) == (400, b"unable to evaluate payload provided"), refused.value.detail
    assert "has 2 values; expected 3" in str(ErrorAnswer(400, b"", "", "row 1 has 2 values; expected 3"))


def test_the_autopilot_twin_answers_bad_rows_with_a_500(autopilot_classifier: AutopilotModel, tmp_path: Path) -> None:
    with tarfile.open(autopilot_classifier.artifact) as tar:
        tar.extractall(tmp_path, filter="data")
    container = open_container(autopilot_classifier.image, tmp_path, autopilot_classifier.environment)
    for body in (b"1,2\n", b"huge,red,2\n"):
        with pytest.raises(ErrorAnswer) as refused:
            container.invoke(body, "text/csv", "text/csv")
        assert refused.value.status == 500 and refused.value.content_type == "text/html" and b"huge" not in refused.value.body


def test_a_kmeans_400_reaches_the_client_as_a_400_with_the_containers_text(tmp_path: Path) -> None:
    """Without a description the front door cannot check the width: the container refuses the row, the
    Runtime API wraps its 400 as ModelError, and the front door relays the container's plain text."""
    register(tmp_path, image=KMEANS_IMAGE, archive=kmeans_archive(tmp_path / "build"), metadata={"sagelab:algorithm": "kmeans"})
    with serving(tmp_path, API_KEY) as (gateway, endpoint):
        assert_bad_request(post(gateway.url, {"instances": [[1, 2]]}), "unable to evaluate payload provided")
        runtime = boto3.client(
            "sagemaker-runtime",
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id=endpoint.credentials.access_key,  # the endpoint answers only its own signature
            aws_secret_access_key=endpoint.credentials.secret_key,
        )
        with pytest.raises(ClientError) as raised:
            runtime.invoke_endpoint(EndpointName=endpoint.endpoint_name, ContentType="text/csv", Body=b"1,2\n")
    error = raised.value.response
    assert error["Error"]["Code"] == "ModelError" and error["OriginalStatusCode"] == 400
    assert error["OriginalMessage"] == "unable to evaluate payload provided"


# -- GET /openapi.json describes the served model --------------------------------------------------------------
def test_openapi_of_a_kmeans_model(kmeans_url: str) -> None:
    document = httpx.get(f"{kmeans_url}/openapi.json", headers={"x-api-key": API_KEY}, timeout=30).json()  # /predict's key
    assert "kmeans model (clustering)" in document["info"]["description"]
    assert document["info"]["x-sagelab-model"]["rowWidth"] == 3
    schemas = document["components"]["schemas"]
    positional, record = schemas["PredictRequest"]["properties"]["instances"]["items"]["anyOf"]
    assert positional["minItems"] == positional["maxItems"] == 3 and positional["items"] == {"type": "number"}
    assert list(record["properties"]) == ["a", "b", "c"] and record["required"] == ["a", "b", "c"] and record["additionalProperties"] is False
    answer = schemas["PredictResponse"]["properties"]["predictions"]["items"]
    assert answer["required"] == ["cluster", "distance"] and answer["properties"]["cluster"]["type"] == "integer"


def test_openapi_of_an_autopilot_model_names_categories_and_nullable_columns(autopilot_url: str) -> None:
    document = httpx.get(f"{autopilot_url}/openapi.json", headers={"x-api-key": API_KEY}, timeout=30).json()
    schemas = document["components"]["schemas"]
    (record,) = schemas["PredictRequest"]["properties"]["instances"]["items"]["anyOf"]  # a category: no positional rows
    assert list(record["properties"]) == ["size", "colour", "weight"]
    assert record["properties"]["colour"] == {"type": "string", "enum": ["red", "blue, dark", "green", None], "nullable": True}
    assert record["properties"]["size"] == {"type": "number", "nullable": True}
    assert record["properties"]["weight"] == {"type": "number"} and record["required"] == ["weight"]
    answer = schemas["PredictResponse"]["properties"]["predictions"]["items"]
    assert answer == {"type": "object", "required": ["label"], "properties": {"label": {"type": "string", "enum": ["big", "small"]}}}


def test_openapi_of_an_autopilot_regression_answers_a_value(autopilot_regression_url: str) -> None:
    schemas = httpx.get(f"{autopilot_regression_url}/openapi.json", headers={"x-api-key": API_KEY}, timeout=30).json()["components"]["schemas"]
    answer = schemas["PredictResponse"]["properties"]["predictions"]["items"]
    assert answer["required"] == ["value"] and answer["properties"]["value"]["type"] == "number"


def test_openapi_without_a_readable_description_is_the_base_with_a_note(tmp_path: Path) -> None:
    from stacks.front_door.build_openapi import build

    metadata = {
        "sagelab:algorithm": "kmeans",
        "sagelab:problem-type": "clustering",
        "sagelab:model-description": f"s3://{BUCKET}/models/evaluations/gone/model_description.json",
    }
    register(tmp_path, image="local/sagemaker-kmeans:1", archive=kmeans_archive(tmp_path / "build"), metadata=metadata)
    with serving(tmp_path, API_KEY) as (gateway, _):
        document = httpx.get(f"{gateway.url}/openapi.json", headers={"x-api-key": API_KEY}, timeout=30).json()
        records = post(gateway.url, {"instances": [{"a": 1, "b": 2, "c": 3}]})
        positional = post(gateway.url, {"instances": [[9, 9, 9]]})
    assert "could not be read" in document["info"]["description"] and BUCKET not in json.dumps(document["info"])
    assert document["components"]["schemas"]["PredictRequest"] == build()["components"]["schemas"]["PredictRequest"]
    assert document["paths"] == build()["paths"]
    # Records cannot be ordered without the description: a 400 that says to send positional rows.
    assert_bad_request(records, "send positional rows")
    # Positional rows still reach the model.
    assert positional.status_code == 200 and positional.json()["predictions"][0]["cluster"] == 1, positional.text


def test_the_local_s3_answers_only_model_descriptions_under_models_evaluations(tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from sagelab.local.serve import LocalEndpoint

    write_description(tmp_path, KMEANS_DESCRIPTION)
    archive = tmp_path / "s3" / BUCKET / "models" / "exec-1" / "model.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kmeans_archive(tmp_path / "build"), archive)
    # The old prefix: scratch that expires, which the front door's role may no longer read.
    old = tmp_path / "s3" / BUCKET / "pipeline-runs" / "exec-1" / "evaluation" / "model_description.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps(KMEANS_DESCRIPTION))

    endpoint = LocalEndpoint(None, s3_root=tmp_path / "s3").start()
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id=endpoint.credentials.access_key,
            aws_secret_access_key=endpoint.credentials.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        assert json.loads(client.get_object(Bucket=BUCKET, Key=DESCRIPTION_KEY)["Body"].read()) == KMEANS_DESCRIPTION
        for key in (
            "models/exec-1/model.tar.gz",
            "pipeline-runs/exec-1/evaluation/model_description.json",
            "models/evaluations/exec-1/../../exec-1/model.tar.gz",
        ):
            with pytest.raises(ClientError) as denied:
                client.get_object(Bucket=BUCKET, Key=key)
            assert denied.value.response["Error"]["Code"] == "AccessDenied", key
        with pytest.raises(ClientError) as missing:
            client.get_object(Bucket=BUCKET, Key="models/evaluations/exec-2/model_description.json")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    finally:
        endpoint.stop()
