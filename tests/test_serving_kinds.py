"""Serving every kind of model (decision 0011), over real sockets: the local gateway -> the front door
handler (MODEL_ALGORITHM, MODEL_DESCRIPTION_URI read through S3 GetObject on the local endpoint) ->
the local endpoint -> the container twin `open_container` picks by image.

The built-in K-Means and Autopilot twins (sagelab.local.builtin_kmeans / sagelab.local.automl) are
built on other branches: until they are merged, the modules below stand in for them with the same
interface and wire formats (text/csv in; K-Means answers JSON `closest_cluster`/`distance_to_cluster`,
Autopilot answers one label per CSV line), computed for real from the model directory. Once the real
modules exist, the stand-ins are not installed and these tests run against them.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys
import tarfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sagelab.local.containers import container_kind, open_container
from sagelab.local.registry import LocalRegistry
from sagelab.local.serve import serving

API_KEY = "kinds-key"
BUCKET = "sagelab-dev-artifacts"
CENTROIDS = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]])


# -- stand-ins for the twins not yet merged --------------------------------------------------------
class StandInBadInput(ValueError):
    pass


class StandInKMeans:
    def __init__(self, model_dir: Path) -> None:
        self.centroids = np.load(Path(model_dir) / "centroids.npy")

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        if content_type.split(";")[0] != "text/csv":
            raise StandInBadInput(f"content type {content_type} is not text/csv")
        try:
            rows = np.array([[float(cell) for cell in line] for line in csv.reader(io.StringIO(body.decode()))])
        except ValueError as error:
            raise StandInBadInput(f"not numeric CSV: {error}") from None
        distances = np.linalg.norm(rows[:, None, :] - self.centroids[None, :, :], axis=2)
        closest = distances.argmin(axis=1)
        predictions = [{"closest_cluster": float(c), "distance_to_cluster": float(distances[i, c])} for i, c in enumerate(closest)]
        return json.dumps({"predictions": predictions}).encode(), "application/json"


class StandInAutopilot:
    """Predicts 'big' when the sum of the numeric cells is over a threshold stored in the model, else
    'small'; a category 'force-big' in any cell says 'big'. Keeps what it was sent for the tests."""

    received: list[list[str]] = []

    def __init__(self, model_dir: Path, environment: dict[str, str]) -> None:
        self.threshold = float((Path(model_dir) / "threshold.txt").read_text())
        self.regression = environment.get("STAND_IN_REGRESSION") == "1"

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        rows = list(csv.reader(io.StringIO(body.decode())))
        StandInAutopilot.received = rows
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for row in rows:
            total = sum(float(cell) for cell in row if _is_number(cell))
            if self.regression:
                writer.writerow([total])
            else:
                writer.writerow(["big" if total > self.threshold or "force-big" in row else "small"])
        return out.getvalue().encode(), "text/csv"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _install_stand_in(name: str, attribute: str, cls: type) -> bool:
    """Install a stand-in module unless the real one exists; True if the stand-in is in use."""
    if name in sys.modules:
        return getattr(sys.modules[name], "__file__", None) is None
    if importlib.util.find_spec(name) is not None:
        return False  # the real twin is merged: test against it
    module = types.ModuleType(name)
    setattr(module, attribute, cls)
    sys.modules[name] = module
    return True


USING_STAND_INS = _install_stand_in("sagelab.local.builtin_kmeans", "KMeansContainer", StandInKMeans) & _install_stand_in(
    "sagelab.local.automl", "AutopilotContainer", StandInAutopilot
)
needs_stand_ins = pytest.mark.skipif(not USING_STAND_INS, reason="the real twins are merged: these answers are the stand-ins' own")


# -- registered models ------------------------------------------------------------------------------
def register(workdir: Path, *, image: str, files: dict[str, bytes], metadata: dict[str, str], environment: dict[str, str] | None = None) -> None:
    model_dir = workdir / "build"
    model_dir.mkdir(parents=True, exist_ok=True)
    archive = workdir / "s3" / BUCKET / "models" / "exec-1" / "model.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name, content in files.items():
            (model_dir / name).write_bytes(content)
            tar.add(model_dir / name, arcname=name)
    registry = LocalRegistry(workdir)
    package = registry.register(
        group="sagelab-dev-models",
        approval_status="Approved",
        model_data_url=f"s3://{BUCKET}/models/exec-1/model.tar.gz",
        model_data_path=str(archive),
        image=image,
        environment=environment or {},
        metrics_url=None,
        metrics={},
        execution_id="exec-1",
        customer_metadata=metadata,
    )
    assert package.customer_metadata == metadata


def write_description(workdir: Path, description: dict[str, Any]) -> str:
    key = "models/evaluations/exec-1/evaluation/model_description.json"
    path = workdir / "s3" / BUCKET / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(description))
    return f"s3://{BUCKET}/{key}"


KMEANS_DESCRIPTION = {
    "algorithm": "kmeans",
    "problem_type": "clustering",
    "features": [{"name": name, "type": "number", "nullable": False} for name in ("a", "b", "c")],
    "row_width": 3,
    "answer": {"type": "object"},
}
AUTOPILOT_DESCRIPTION = {
    "algorithm": "autopilot",
    "problem_type": "classification",
    "features": [
        {"name": "size", "type": "number", "nullable": True},
        {"name": "colour", "type": "category", "values": ["red", "blue, dark", "force-big"], "nullable": True},
        {"name": "weight", "type": "number", "nullable": False},
    ],
    "row_width": 3,
    "labels": ["big", "small"],
    "answer": {"type": "object"},
}


# One model per front door, as one Lambda function serves one model: the handler module is a
# process-wide singleton, so each test starts (cheaply: no training) the servers of its own model.
@pytest.fixture
def kmeans_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("kmeans")
    buffer = io.BytesIO()
    np.save(buffer, CENTROIDS)
    uri = write_description(workdir, KMEANS_DESCRIPTION)
    metadata = {"sagelab:algorithm": "kmeans", "sagelab:problem-type": "clustering", "sagelab:model-description": uri}
    register(workdir, image="382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1", files={"centroids.npy": buffer.getvalue()}, metadata=metadata)
    with serving(workdir, API_KEY) as (gateway, _):
        yield gateway.url


@pytest.fixture
def autopilot_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("autopilot")
    uri = write_description(workdir, AUTOPILOT_DESCRIPTION)
    metadata = {"sagelab:algorithm": "autopilot", "sagelab:problem-type": "classification", "sagelab:model-description": uri}
    register(workdir, image="local/sagemaker-autopilot:1", files={"threshold.txt": b"10"}, metadata=metadata)
    with serving(workdir, API_KEY) as (gateway, _):
        yield gateway.url


def post(url: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, headers={"x-api-key": API_KEY}, timeout=30)


# -- choosing the container -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1", "kmeans"),
        ("664544806723.dkr.ecr.eu-central-1.amazonaws.com/kmeans@sha256:" + "0" * 64, "kmeans"),
        ("local/sagemaker-kmeans:1", "kmeans"),
        ("local/sagemaker-autopilot:1", "autopilot"),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/autogluon-inference:1.1-cpu-py311", "autopilot"),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-sklearn-automl:2.5-1-cpu-py3", "autopilot"),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5", "script"),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3", "script"),
        ("local/kmeans-but-not-really/sagemaker-xgboost:1", "script"),
    ],
)
def test_the_image_chooses_the_container(image: str, kind: str) -> None:
    assert container_kind(image) == kind


def test_open_container_loads_the_kmeans_twin_from_the_model_dir(tmp_path: Path) -> None:
    np.save(tmp_path / "centroids.npy", CENTROIDS)
    if not USING_STAND_INS:
        pytest.skip("the real K-Means twin reads its own artifact format")
    container = open_container("local/sagemaker-kmeans:1", tmp_path, {})
    answer, content_type = container.invoke(b"9,9,9\n", "text/csv", "application/json")
    assert content_type == "application/json" and json.loads(answer)["predictions"][0]["closest_cluster"] == 1.0


# -- K-Means through the front door ----------------------------------------------------------------------
@needs_stand_ins
def test_kmeans_positional_rows_are_csv_and_the_answer_is_cluster_and_distance(kmeans_url: str) -> None:
    response = post(kmeans_url, {"instances": [[1, 0, 0], [10, 10, 12.5]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [{"cluster": 0, "distance": 1.0}, {"cluster": 1, "distance": 2.5}]}


@needs_stand_ins
def test_kmeans_records_are_ordered_by_the_descriptions_features(kmeans_url: str) -> None:
    response = post(kmeans_url, {"instances": [{"c": 0, "b": 0, "a": 3}, {"a": 10, "c": 10, "b": 10}]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [{"cluster": 0, "distance": 3.0}, {"cluster": 1, "distance": 0.0}]


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
    response = post(kmeans_url, {"instances": instances})
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "message", "requestId"} and body["error"] == "BadRequest"
    assert says in body["message"], body["message"]


# -- Autopilot through the front door ------------------------------------------------------------------------
@needs_stand_ins
def test_autopilot_records_become_quoted_csv_with_empty_cells_for_null(autopilot_url: str) -> None:
    instances = [
        {"weight": 20, "colour": "blue, dark", "size": None},
        {"weight": 1.5, "colour": 'say "red"'},
        {"weight": 1, "colour": "force-big", "size": 2},
        {"weight": 3.25, "size": 1},
    ]
    response = post(autopilot_url, {"instances": instances})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [{"label": "big"}, {"label": "small"}, {"label": "big"}, {"label": "small"}]}
    # What the container read: feature order, CSV quoting undone, null and absent as empty cells.
    assert StandInAutopilot.received == [["", "blue, dark", "20"], ["", 'say "red"', "1.5"], ["2", "force-big", "1"], ["1", "", "3.25"]]


@needs_stand_ins
def test_autopilot_positional_rows_pass_in_order_with_null_as_empty(autopilot_url: str) -> None:
    response = post(autopilot_url, {"instances": [[5, None, 6]]})
    assert response.status_code == 200 and response.json() == {"predictions": [{"label": "big"}]}
    assert StandInAutopilot.received == [["5", "", "6"]]


def test_autopilot_wrong_width_or_unknown_column_is_400(autopilot_url: str) -> None:
    for instances, says in (([[1, 2]], "instances[0] has 2 values; this model takes 3 (size, colour, weight)"), ([{"shape": 1}], "unknown column(s) 'shape'")):
        response = post(autopilot_url, {"instances": instances})
        assert response.status_code == 400 and says in response.json()["message"], response.text


# -- GET /openapi.json describes the served model --------------------------------------------------------------
def test_openapi_of_a_kmeans_model(kmeans_url: str) -> None:
    document = httpx.get(f"{kmeans_url}/openapi.json", timeout=30).json()  # public: no key
    assert "kmeans model (clustering)" in document["info"]["description"]
    assert document["info"]["x-sagelab-model"]["rowWidth"] == 3
    schemas = document["components"]["schemas"]
    positional, record = schemas["PredictRequest"]["properties"]["instances"]["items"]["anyOf"]
    assert positional["minItems"] == positional["maxItems"] == 3 and positional["items"] == {"type": "number"}
    assert list(record["properties"]) == ["a", "b", "c"] and record["required"] == ["a", "b", "c"] and record["additionalProperties"] is False
    answer = schemas["PredictResponse"]["properties"]["predictions"]["items"]
    assert answer["required"] == ["cluster", "distance"] and answer["properties"]["cluster"]["type"] == "integer"


def test_openapi_of_an_autopilot_model_names_categories_and_nullable_columns(autopilot_url: str) -> None:
    document = httpx.get(f"{autopilot_url}/openapi.json", timeout=30).json()
    schemas = document["components"]["schemas"]
    (record,) = schemas["PredictRequest"]["properties"]["instances"]["items"]["anyOf"]  # a category: no positional rows
    assert record["properties"]["colour"] == {"type": "string", "enum": ["red", "blue, dark", "force-big", None], "nullable": True}
    assert record["properties"]["size"] == {"type": "number", "nullable": True}
    assert record["properties"]["weight"] == {"type": "number"} and record["required"] == ["weight"]
    answer = schemas["PredictResponse"]["properties"]["predictions"]["items"]
    assert answer == {"type": "object", "required": ["label"], "properties": {"label": {"type": "string", "enum": ["big", "small"]}}}


def test_openapi_without_a_readable_description_is_the_base_with_a_note(tmp_path: Path) -> None:
    from runtime.front_door.build_openapi import build

    buffer = io.BytesIO()
    np.save(buffer, CENTROIDS)
    metadata = {
        "sagelab:algorithm": "kmeans",
        "sagelab:problem-type": "clustering",
        "sagelab:model-description": f"s3://{BUCKET}/models/evaluations/gone/model_description.json",
    }
    register(tmp_path, image="local/sagemaker-kmeans:1", files={"centroids.npy": buffer.getvalue()}, metadata=metadata)
    with serving(tmp_path, API_KEY) as (gateway, _):
        document = httpx.get(f"{gateway.url}/openapi.json", timeout=30).json()
        records = post(gateway.url, {"instances": [{"a": 1, "b": 2, "c": 3}]})
    assert "could not be read" in document["info"]["description"] and BUCKET not in json.dumps(document["info"])
    assert document["components"]["schemas"]["PredictRequest"] == build()["components"]["schemas"]["PredictRequest"]
    assert document["paths"] == build()["paths"]
    # Records cannot be ordered without the description: a 400 that says to send positional rows.
    assert records.status_code == 400 and "send positional rows" in records.json()["message"]


def test_the_local_s3_answers_only_what_the_front_doors_role_may_read(kmeans_url: str) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from sagelab.local.serve import LocalEndpoint

    endpoint = LocalEndpoint(None, s3_root=Path(__file__).parent / "fixtures").start()
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        with pytest.raises(ClientError) as denied:
            client.get_object(Bucket="any", Key="models/exec-1/model.tar.gz")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError) as missing:
            client.get_object(Bucket="any", Key="models/evaluations/exec-1/model_description.json")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    finally:
        endpoint.stop()
