"""evaluate.py for every algorithm (decision 0011): regression, clustering, Autopilot's
predictions and leaderboard, a custom scikit-learn model; the gate each writes and the pipeline
reads; and the tabular CSVs preprocess.py writes for the built-in containers. Real models on the
bundled digits and scikit-learn's diabetes; only the SageMaker API call is stubbed (botocore Stubber)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from pipeline_steps import evaluate, preprocess, train
from sagelab import step_contract
from sagelab.datasets import DIGITS_CSV

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def json_get(document: dict[str, Any], path: str) -> Any:
    """What the pipeline's JsonGet does with a dotted path: a missing key is an error, not None."""
    value: Any = document
    for key in path.split("."):
        assert isinstance(value, dict) and key in value, f"JsonGet path {path!r}: no {key!r}"
        value = value[key]
    return value


def read_report(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / evaluate.EVALUATION_FILE_NAME).read_text()))


def read_description(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / evaluate.MODEL_DESCRIPTION_FILE_NAME).read_text()))


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 3000, path


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits through preprocess for Autopilot (so tabular/ is there too)."""
    root = tmp_path_factory.mktemp("digits")
    (root / "in").mkdir()
    shutil.copyfile(DIGITS_CSV, root / "in" / "digits.csv")
    preprocess.preprocess(root / "in", root / "splits", algorithm="autopilot")
    return root / "splits"


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's diabetes (442 rows, numeric target 25..346) as a user's regression CSV."""
    from sklearn.datasets import load_diabetes

    root = tmp_path_factory.mktemp("diabetes")
    (root / "in").mkdir()
    frame = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    frame.to_csv(root / "in" / "diabetes.csv", index=False)
    preprocess.preprocess(root / "in", root / "splits", target_column="progression")
    return root / "splits"


@pytest.fixture(scope="module")
def regression_run(diabetes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("regression")
    train.train(diabetes / "train", diabetes / "validation", diabetes / "spec", root / "model", train.Hyperparameters(max_depth=3, eta=0.05, num_round=300))
    assert evaluate.main(["--model-dir", str(root / "model"), "--test-dir", str(diabetes / "test"), "--output-dir", str(root / "eval")]) == 0
    return root / "eval"


# -- regression ------------------------------------------------------------------------------------
def test_regression_passes_the_default_gate_on_rmse(regression_run: Path, diabetes: Path) -> None:
    """The default config (metric accuracy) on a numeric target: the gate is RMSE against the
    test target's standard deviation, not a JsonGet error on 'accuracy'."""
    report = read_report(regression_run)
    assert set(report["regression_metrics"]) == {"mse", "rmse", "mae", "r2"}
    summary = report["sagelab_summary"]
    metrics = summary["metrics"]
    assert metrics["rmse"] == pytest.approx(metrics["mse"] ** 0.5) and 0 < metrics["mae"] < metrics["rmse"] and 0.2 < metrics["r2"] < 1
    target = np.load(diabetes / "test" / "target.npy")
    gate = summary["gate"]
    assert gate["metric"] == "rmse" and gate["comparison"] == "<=" and gate["passed"] == 1
    assert gate["threshold"] == pytest.approx(float(np.std(target))) and gate["value"] == metrics["rmse"]
    assert "RmseThreshold=0" in gate["message"] and "'accuracy' does not apply to a regression model" in gate["message"]
    assert summary["plots"] == [evaluate.RESIDUALS_PNG, evaluate.PREDICTED_VS_ACTUAL_PNG]
    for name in summary["plots"]:
        assert_png(regression_run / name)


def test_regression_model_description(regression_run: Path) -> None:
    description = read_description(regression_run)
    assert description["algorithm"] == "xgboost" and description["problem_type"] == "regression"
    assert [f["name"] for f in description["features"]] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert description["row_width"] == 10 and all(f == {"name": f["name"], "type": "number", "nullable": True} for f in description["features"])
    assert description["answer"]["required"] == ["value"] and "labels" not in description


@pytest.mark.parametrize(
    ("arguments", "metric", "comparison", "threshold", "passed", "names"),
    [
        (["--rmse-threshold", "1.5"], "rmse", "<=", 1.5, 0, ["is not <= 1.5", "RmseThreshold=<"]),
        (["--rmse-threshold", "1000"], "rmse", "<=", 1000.0, 1, ["<= 1000"]),
        (["--metric", "r2", "--metric-threshold", "0.99"], "r2", ">=", 0.99, 0, ["is not >= 0.99", "MetricThreshold=<a smaller r2>"]),
        (["--metric", "mae", "--metric-threshold", "500"], "mae", "<=", 500.0, 1, ["<= 500", "pipeline.metric 'mae'"]),
        (["--metric", "mae", "--metric-threshold", "2"], "mae", "<=", 2.0, 0, ["is not <= 2", "MetricThreshold=<a larger mae>"]),
    ],
)
def test_regression_gate_in_both_directions(
    diabetes: Path, regression_run: Path, tmp_path: Path, arguments: list[str], metric: str, comparison: str, threshold: float, passed: int, names: list[str]
) -> None:
    model = regression_run.parent / "model"
    assert evaluate.main(["--model-dir", str(model), "--test-dir", str(diabetes / "test"), "--output-dir", str(tmp_path), *arguments]) == 0
    report = read_report(tmp_path)
    gate = json_get(report, "sagelab_summary.gate")
    value = report["sagelab_summary"]["metrics"][metric]
    assert (gate["metric"], gate["comparison"], gate["threshold"], gate["passed"], gate["value"]) == (metric, comparison, threshold, passed, value)
    assert json_get(report, evaluate.GATE_PASSED_PATH) == passed and isinstance(json_get(report, evaluate.GATE_PASSED_PATH), int)
    message = json_get(report, evaluate.GATE_MESSAGE_PATH)
    assert f"{metric} {value:.6g}" in message and message.startswith("Gate passed" if passed else "Gate failed")
    for name in names:
        assert name in message, message


# -- the gate, decided alone -----------------------------------------------------------------------
def test_classification_gate_defaults_and_fallbacks() -> None:
    metrics: dict[str, float | None] = {"accuracy": 0.93, "weighted_f1": 0.92, "roc_auc": None}
    configured = evaluate.decide_gate("multiclass", metrics, evaluate.GateSettings("weighted_f1", 0.95))
    assert (configured["metric"], configured["passed"], configured["threshold"]) == ("weighted_f1", 0, 0.95)
    assert "weighted_f1 0.92 is not >= 0.95" in configured["message"] and "MetricThreshold=<a smaller weighted_f1>" in configured["message"]
    # An error metric configured for a classifier, and an AUC that could not be measured: accuracy >= 0.9.
    for settings in (evaluate.GateSettings("rmse", 10.0), evaluate.GateSettings("roc_auc", 0.99)):
        gate = evaluate.decide_gate("multiclass", metrics, settings)
        assert (gate["metric"], gate["comparison"], gate["threshold"], gate["passed"]) == ("accuracy", ">=", 0.9, 1)
    assert "'roc_auc' was not measured" in evaluate.decide_gate("multiclass", metrics, evaluate.GateSettings("roc_auc", 0.99))["message"]


def test_clustering_gate_and_unmeasurable_silhouette() -> None:
    passing = evaluate.decide_gate("clustering", {"silhouette": 0.18, "inertia": 5.0}, evaluate.GateSettings("accuracy", 0.95, silhouette_threshold=0.1))
    assert (passing["metric"], passing["comparison"], passing["threshold"], passing["passed"]) == ("silhouette", ">=", 0.1, 1)
    failing = evaluate.decide_gate("clustering", {"silhouette": 0.18}, evaluate.GateSettings(silhouette_threshold=0.25))
    assert failing["passed"] == 0 and "silhouette 0.18 is not >= 0.25" in failing["message"] and "SilhouetteThreshold=" in failing["message"]
    undefined = evaluate.decide_gate("clustering", {"silhouette": None}, evaluate.GateSettings())
    assert undefined["passed"] == 0 and undefined["value"] is None and "could not be measured" in undefined["message"]


# -- clustering ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_kmeans(digits: Path) -> Any:
    from sklearn.cluster import KMeans

    features, _ = preprocess.load_split(digits / "train", "train")
    return KMeans(n_clusters=10, n_init=4, random_state=0).fit(features)


def test_clustering_metrics_on_digits(digits: Path, digits_kmeans: Any, tmp_path: Path) -> None:
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    features, target = preprocess.load_split(digits / "test", "test")
    spec = preprocess.FeatureSpec.load(digits / "spec")
    section, flat = evaluate.clustering_metrics(features, digits_kmeans.cluster_centers_, target, spec.labels)
    assigned = digits_kmeans.predict(features)
    assert flat["inertia"] == pytest.approx(-digits_kmeans.score(features), rel=1e-6)  # scikit-learn's inertia of the same rows
    assert flat["silhouette"] == pytest.approx(silhouette_score(features, assigned)) and 0.05 < flat["silhouette"] < 0.5
    assert flat["adjusted_rand_index"] == pytest.approx(adjusted_rand_score(target, assigned)) and flat["adjusted_rand_index"] > 0.4
    metrics = section["clustering_metrics"]
    assert metrics["cluster_sizes"] == np.bincount(assigned, minlength=10).tolist() and sum(metrics["cluster_sizes"]) == 270
    matrix = metrics["cluster_label_matrix"]
    assert sorted(matrix, key=int) == [str(c) for c in range(10)] and list(matrix["0"]) == spec.labels
    assert sum(sum(row.values()) for row in matrix.values()) == 270
    assert evaluate.plot_cluster_label_matrix(section, tmp_path) == [evaluate.CLUSTER_LABEL_MATRIX_PNG]
    assert_png(tmp_path / evaluate.CLUSTER_LABEL_MATRIX_PNG)


def test_silhouette_is_sampled_on_large_splits_and_omitted_without_labels(digits_kmeans: Any) -> None:
    features = pd.read_csv(DIGITS_CSV).drop(columns="label").to_numpy(dtype=np.float32)
    doubled = np.vstack([features, features + 0.5])  # 3,594 rows: more than the sample
    section, flat = evaluate.clustering_metrics(doubled, digits_kmeans.cluster_centers_, None)
    metrics = section["clustering_metrics"]
    assert metrics["silhouette_sample_rows"] == evaluate.SILHOUETTE_SAMPLE_ROWS < len(doubled)
    assert "adjusted_rand_index" not in flat and "cluster_label_matrix" not in metrics
    again, _ = evaluate.clustering_metrics(doubled, digits_kmeans.cluster_centers_, None)
    assert again == section  # the sample is seeded: the same report every run
    with pytest.raises(ValueError, match=r"centroids of shape \(10, 64\); expected \(clusters, 63\)"):
        evaluate.clustering_metrics(doubled[:, :63], digits_kmeans.cluster_centers_, None)


def write_mxnet_ndarray_list(path: Path, arrays: list[np.ndarray]) -> None:
    """MXNet's NDArray list file as the built-in K-Means saves it (written from the format's
    description: list magic 0x112, then each array as V2 magic, dense storage, int64 shape, CPU
    context, float32 flag and data; then the (empty) list of names)."""
    parts = [struct.pack("<QQQ", 0x112, 0, len(arrays))]
    for array in arrays:
        data = np.ascontiguousarray(array, dtype="<f4")
        parts.append(struct.pack("<Ii", 0xF993FAC9, 0))
        parts.append(struct.pack("<I", data.ndim) + struct.pack(f"<{data.ndim}q", *data.shape))
        parts.append(struct.pack("<iii", 1, 0, 0) + data.tobytes())
    parts.append(struct.pack("<Q", 0))
    path.write_bytes(b"".join(parts))


def test_kmeans_model_evaluates_end_to_end(digits: Path, digits_kmeans: Any, tmp_path: Path) -> None:
    if not hasattr(evaluate, "read_mxnet_ndarrays"):
        pytest.skip("read_mxnet_ndarrays (the K-Means change to evaluate.py) is not merged yet")
    (tmp_path / "model").mkdir()
    write_mxnet_ndarray_list(tmp_path / "model" / evaluate.KMEANS_MODEL_FILE_NAME, [digits_kmeans.cluster_centers_])
    arguments = ["--algorithm", "kmeans", "--model-dir", str(tmp_path / "model"), "--test-dir", str(digits / "test"), "--spec-dir", str(digits / "spec")]
    assert evaluate.main([*arguments, "--output-dir", str(tmp_path / "eval")]) == 0
    report = read_report(tmp_path / "eval")
    assert report["sagelab_summary"]["problem_type"] == "clustering" and report["sagelab_summary"]["metrics"]["silhouette"] > 0.05
    assert json_get(report, evaluate.GATE_PASSED_PATH) == 1
    description = read_description(tmp_path / "eval")
    assert description["row_width"] == 64 and description["features"][0] == {"name": "pixel_0", "type": "number", "nullable": False}
    assert description["answer"]["properties"]["cluster"] == {"type": "integer", "minimum": 0, "maximum": 9}


def test_kmeans_without_its_model_file_is_a_one_line_error(digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model").mkdir()
    arguments = ["--algorithm", "kmeans", "--model-dir", str(tmp_path / "model"), "--test-dir", str(digits / "test"), "--spec-dir", str(digits / "spec")]
    assert evaluate.main([*arguments, "--output-dir", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "K-Means model not found at model_algo-1" in error


# -- Autopilot -------------------------------------------------------------------------------------
def stubbed_sagemaker(pages: list[dict[str, Any]], job_name: str) -> Any:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    stubber = Stubber(client)
    for number, page in enumerate(pages):
        expected = {"AutoMLJobName": job_name, "SortBy": "FinalObjectiveMetricValue", "MaxResults": 100}
        if number:
            expected["NextToken"] = pages[number - 1]["NextToken"]
        stubber.add_response("list_candidates_for_auto_ml_job", page, expected)
    stubber.activate()
    return client, stubber


def candidate(name: str, value: float | None, status: str = "Completed", objective: tuple[str, str] = ("Maximize", "Accuracy")) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "CandidateName": name,
        "ObjectiveStatus": "Succeeded" if value is not None else "Failed",
        "CandidateSteps": [],
        "CandidateStatus": status,
        "CreationTime": "2026-01-01T00:00:00Z",
        "LastModifiedTime": "2026-01-01T00:10:00Z",
    }
    if value is not None:
        entry["FinalAutoMLJobObjectiveMetric"] = {"Type": objective[0], "MetricName": objective[1], "Value": value}
    return entry


@pytest.fixture(scope="module")
def autopilot_predictions(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model's answers on tabular/test/test.csv, one predicted label per line, as the batch
    transform writes test.csv.out (read back by the test row order of target.npy). Nearest neighbours
    (about 0.97 on the digits) fit in milliseconds; a logistic regression took 8 s of CPU to converge."""
    from sklearn.neighbors import KNeighborsClassifier

    train_frame = pd.read_csv(digits / preprocess.TABULAR_DIR / preprocess.TABULAR_TRAIN_FILE)
    model = KNeighborsClassifier().fit(train_frame.drop(columns="label"), train_frame["label"].astype(str))
    test_rows = pd.read_csv(digits / preprocess.TABULAR_DIR / preprocess.TABULAR_TEST_FILE, header=None)
    test_rows.columns = train_frame.drop(columns="label").columns
    predictions = tmp_path_factory.mktemp("transform")
    (predictions / "test.csv.out").write_text("".join(f"{label}\n" for label in model.predict(test_rows)))
    return predictions


def test_autopilot_predictions_and_paged_leaderboard(digits: Path, autopilot_predictions: Path, tmp_path: Path) -> None:
    pages: list[dict[str, Any]] = [
        {"Candidates": [candidate("digits-xgb-2", 0.97), candidate("digits-linear-1", 0.95)], "NextToken": "page-2"},
        {"Candidates": [candidate("digits-mlp-3", 0.985), candidate("digits-xgb-4", None, status="Failed")]},
    ]
    client, stubber = stubbed_sagemaker(pages, "sagelab-automl-1")
    report = evaluate.evaluate(
        None,
        digits / "test",
        tmp_path,
        algorithm="autopilot",
        spec_dir=digits / "spec",
        predictions_dir=autopilot_predictions,
        automl_job_name="sagelab-automl-1",
        sagemaker_client=client,
    )
    stubber.assert_no_pending_responses()  # both pages were read
    board = report["autopilot_leaderboard"]
    assert [row["name"] for row in board["candidates"]] == ["digits-mlp-3", "digits-xgb-2", "digits-linear-1", "digits-xgb-4"]
    assert board["candidates"][0] == {"name": "digits-mlp-3", "objective_metric": "Accuracy", "value": 0.985, "status": "Completed"}
    assert board["candidates"][-1]["value"] is None and board["best_candidate"] == "digits-mlp-3"
    summary = report["sagelab_summary"]
    assert summary["algorithm"] == "autopilot" and summary["metrics"]["accuracy"] > 0.9 and "roc_auc" not in summary["metrics"]
    assert "roc_auc omitted" in summary["notes"][0] and summary["plots"] == [evaluate.CONFUSION_MATRIX_PNG]
    section = report["multiclass_classification_metrics"]
    assert "weighted_roc_auc" not in section and section["accuracy"]["value"] == summary["metrics"]["accuracy"]
    assert json_get(report, evaluate.GATE_PASSED_PATH) == 1  # accuracy >= 0.9
    description = read_description(tmp_path)
    assert description["answer"]["required"] == ["label"] and description["labels"] == [str(d) for d in range(10)]
    assert description["row_width"] == 64 and description["features"][0]["nullable"] is True


def test_leaderboard_of_a_minimized_objective_lists_the_lowest_first() -> None:
    mse = ("Minimize", "MSE")
    pages: list[dict[str, Any]] = [
        {"Candidates": [candidate("c-1", 3100.0, objective=mse), candidate("c-2", 2900.5, objective=mse), candidate("c-3", 3500.0, objective=mse)]}
    ]
    client, stubber = stubbed_sagemaker(pages, "regression-job")
    rows = evaluate.autopilot_leaderboard("regression-job", client)
    stubber.assert_no_pending_responses()
    assert [(row["name"], row["value"], row["objective_metric"]) for row in rows] == [("c-2", 2900.5, "MSE"), ("c-1", 3100.0, "MSE"), ("c-3", 3500.0, "MSE")]


def test_autopilot_leaderboard_failure_is_recorded_not_fatal(digits: Path, autopilot_predictions: Path, tmp_path: Path) -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    stubber = Stubber(client)
    stubber.add_client_error("list_candidates_for_auto_ml_job", service_error_code="AccessDeniedException", service_message="not authorized")
    with stubber:
        report = evaluate.evaluate(
            None,
            digits / "test",
            tmp_path,
            algorithm="autopilot",
            spec_dir=digits / "spec",
            predictions_dir=autopilot_predictions,
            automl_job_name="j",
            sagemaker_client=client,
        )
    assert "AccessDeniedException" in report["autopilot_leaderboard"]["error"] and report["autopilot_leaderboard"]["candidates"] == []
    assert json_get(report, evaluate.GATE_PASSED_PATH) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("3\n4\n", "hold 2 predictions; expected one per test row (270)"),
        ("seven\n" * 270, "test.csv.out line 1 predicts 'seven', not one of the labels"),
    ],
)
def test_autopilot_bad_predictions_are_one_line_errors(digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "test.csv.out").write_text(content)
    arguments = [
        "--algorithm",
        "autopilot",
        "--test-dir",
        str(digits / "test"),
        "--spec-dir",
        str(digits / "spec"),
        "--predictions-dir",
        str(tmp_path / "pred"),
    ]
    assert evaluate.main([*arguments, "--output-dir", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error


def test_autopilot_regression_values(diabetes: Path, tmp_path: Path) -> None:
    target = np.load(diabetes / "test" / "target.npy")
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "test.csv.out").write_text("".join(f"{value + 10.0}\n" for value in target))  # always 10 too high
    report = evaluate.evaluate(None, diabetes / "test", tmp_path / "eval", algorithm="autopilot", spec_dir=diabetes / "spec", predictions_dir=tmp_path / "pred")
    metrics = report["sagelab_summary"]["metrics"]
    assert metrics["rmse"] == pytest.approx(10.0) and metrics["mae"] == pytest.approx(10.0)
    assert report["autopilot_leaderboard"]["error"].startswith("no --automl-job-name")
    assert read_description(tmp_path / "eval")["answer"]["required"] == ["value"]


# -- custom ----------------------------------------------------------------------------------------
def custom_model_dir(splits: Path, estimator: Any, directory: Path) -> Path:
    """What train_custom.py leaves: the student's joblib estimator beside the feature spec."""
    features, target = preprocess.load_split(splits / "train", "train")
    directory.mkdir()
    joblib.dump(estimator.fit(features, target), directory / evaluate.CUSTOM_MODEL_FILE_NAME)
    shutil.copyfile(splits / "spec" / preprocess.SPEC_FILE_NAME, directory / preprocess.SPEC_FILE_NAME)
    return directory


def test_custom_classifier_with_probabilities(digits: Path, tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    model = custom_model_dir(digits, RandomForestClassifier(n_estimators=60, random_state=0, n_jobs=1), tmp_path / "model")
    arguments = ["--algorithm", "custom", "--model-dir", str(model), "--test-dir", str(digits / "test"), "--metric", "weighted_f1", "--metric-threshold", "0.9"]
    assert evaluate.main([*arguments, "--output-dir", str(tmp_path / "eval")]) == 0
    report = read_report(tmp_path / "eval")
    summary = report["sagelab_summary"]
    assert summary["metrics"]["roc_auc"] > 0.95 and summary["metrics"]["accuracy"] > 0.9
    assert (summary["gate"]["metric"], summary["gate"]["passed"]) == ("weighted_f1", 1)
    assert summary["plots"] == [evaluate.CONFUSION_MATRIX_PNG, evaluate.ROC_CURVE_PNG]
    assert read_description(tmp_path / "eval")["answer"]["required"] == ["label", "probabilities"]


def test_custom_classifier_without_predict_proba(digits: Path, tmp_path: Path) -> None:
    from sklearn.svm import LinearSVC

    model = custom_model_dir(digits, LinearSVC(C=0.01, max_iter=5000), tmp_path / "model")
    report = evaluate.evaluate(model, digits / "test", tmp_path / "eval", algorithm="custom")
    summary = report["sagelab_summary"]
    assert "roc_auc" not in summary["metrics"] and summary["notes"] == ["roc_auc omitted: the custom model has no predict_proba"]
    assert summary["metrics"]["accuracy"] > 0.85
    assert read_description(tmp_path / "eval")["answer"]["required"] == ["label"]


def test_custom_regressor(diabetes: Path, tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    model = custom_model_dir(diabetes, Ridge(alpha=0.1), tmp_path / "model")
    report = evaluate.evaluate(model, diabetes / "test", tmp_path / "eval", algorithm="custom")
    assert report["sagelab_summary"]["gate"]["metric"] == "rmse" and report["sagelab_summary"]["metrics"]["r2"] > 0.2


def test_custom_model_without_model_joblib(digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model").mkdir()
    assert (
        evaluate.main(["--algorithm", "custom", "--model-dir", str(tmp_path / "model"), "--test-dir", str(digits / "test"), "--spec-dir", str(digits / "spec")])
        == 2
    )
    assert "custom model not found at model.joblib" in capsys.readouterr().err


# -- the classification report keeps its shape and gains the gate ---------------------------------
def test_xgboost_classification_report_has_the_gate_and_description(digits: Path, tmp_path: Path) -> None:
    train.train(digits / "train", digits / "validation", digits / "spec", tmp_path / "model", train.Hyperparameters(num_round=40))
    assert evaluate.main(["--model-dir", str(tmp_path / "model"), "--test-dir", str(digits / "test"), "--output-dir", str(tmp_path / "eval")]) == 0
    report = read_report(tmp_path / "eval")
    assert json_get(report, evaluate.CONDITION_METRIC_PATH.format(metric="accuracy")) > 0.9
    assert json_get(report, evaluate.GATE_PASSED_PATH) == 1 and json_get(report, "sagelab_summary.gate.metric") == "accuracy"
    description = read_description(tmp_path / "eval")
    assert description["algorithm"] == "xgboost" and description["problem_type"] == "multiclass" and description["row_width"] == 64
    probabilities = description["answer"]["properties"]["probabilities"]
    assert probabilities["required"] == [str(d) for d in range(10)] and description["answer"]["properties"]["label"]["enum"] == description["labels"]


def test_categorical_features_are_described_with_their_values(tmp_path: Path) -> None:
    spec = {"feature_columns": ["size", "colour"], "categorical_vocabulary": {"colour": ["blue", "red"]}, "labels": ["a", "b"], "encoded_columns": []}
    description = evaluate.model_description("custom", "binary", spec)
    assert description["features"] == [
        {"name": "size", "type": "number", "nullable": True},
        {"name": "colour", "type": "category", "values": ["blue", "red"], "nullable": True},
    ]


# -- preprocess exports ----------------------------------------------------------------------------
def test_data_summary_is_always_written(digits: Path, diabetes: Path) -> None:
    summary = json.loads((digits / "spec" / preprocess.DATA_SUMMARY_FILE_NAME).read_text())
    completeness = summary.pop(preprocess.COMPLETENESS_KEY)
    assert summary == {"feature_dim": 64, "problem_type": "multiclass", "rows": {"train": 1257, "validation": 270, "test": 270}}
    assert completeness == {f"pixel_{i}": 1.0 for i in range(64)}  # the digits have no gaps
    assert json.loads((diabetes / "spec" / preprocess.DATA_SUMMARY_FILE_NAME).read_text())["problem_type"] == "regression"
    assert not (diabetes / preprocess.TABULAR_DIR).exists()  # xgboost: nothing extra to write


def test_autopilot_csvs_are_raw_and_in_target_order(digits: Path) -> None:
    raw = pd.read_csv(DIGITS_CSV)
    train_csv = pd.read_csv(digits / preprocess.TABULAR_DIR / preprocess.TABULAR_TRAIN_FILE)
    assert list(train_csv.columns) == list(raw.columns) and len(train_csv) == 1257 + 270
    test_csv = pd.read_csv(digits / preprocess.TABULAR_DIR / preprocess.TABULAR_TEST_FILE, header=None)
    features, target = preprocess.load_split(digits / "test", "test")
    assert test_csv.shape == (270, 64)
    np.testing.assert_array_equal(test_csv.to_numpy(dtype=np.float32), features)  # same rows, same order as target.npy
    # Each test row is a raw digits row whose label is the one target.npy holds for that position.
    labels_by_row = {tuple(row[:-1]): row[-1] for row in raw[[*raw.columns.drop("label"), "label"]].itertuples(index=False)}
    assert [str(labels_by_row[tuple(row)]) for row in test_csv.itertuples(index=False)] == [str(t) for t in target]


def test_kmeans_csv_is_the_encoded_train_features(tmp_path: Path) -> None:
    frame = pd.read_csv(DIGITS_CSV)
    frame.loc[::7, "pixel_20"] = np.nan  # gaps arrive imputed: K-Means reads numbers only
    (tmp_path / "in").mkdir()
    frame.to_csv(tmp_path / "in" / "digits.csv", index=False)
    assert preprocess.main(["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), "--algorithm", "kmeans"]) == 0
    exported = np.loadtxt(tmp_path / "out" / preprocess.TABULAR_DIR / preprocess.TABULAR_TRAIN_FILE, delimiter=",", dtype=np.float32)
    features, _ = preprocess.load_split(tmp_path / "out" / "train", "train")
    assert exported.shape == (1257, 64) and not np.isnan(exported).any()
    np.testing.assert_array_equal(exported, features)
    assert not (tmp_path / "out" / preprocess.TABULAR_DIR / "test").exists()


def test_kmeans_refuses_categorical_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"size": rng.normal(size=60), "colour": rng.choice(["red", "blue"], 60), "shade": rng.choice(["dark", "light"], 60), "label": [0, 1] * 30}
    )
    (tmp_path / "in").mkdir()
    frame.to_csv(tmp_path / "in" / "t.csv", index=False)
    assert preprocess.main(["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), "--algorithm", "kmeans"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "K-Means needs numeric features; column(s) ['colour', 'shade'] are categorical" in error


def test_step_contract_reads_the_new_literals() -> None:
    assert step_contract.GATE_PASSED_PATH == evaluate.GATE_PASSED_PATH == "sagelab_summary.gate.passed"
    assert step_contract.GATE_MESSAGE_PATH == evaluate.GATE_MESSAGE_PATH
    assert step_contract.MODEL_DESCRIPTION_FILE_NAME == evaluate.MODEL_DESCRIPTION_FILE_NAME
    assert (step_contract.METRIC_THRESHOLD_PARAMETER, step_contract.RMSE_THRESHOLD_PARAMETER, step_contract.SILHOUETTE_THRESHOLD_PARAMETER) == (
        evaluate.METRIC_THRESHOLD_PARAMETER,
        evaluate.RMSE_THRESHOLD_PARAMETER,
        evaluate.SILHOUETTE_THRESHOLD_PARAMETER,
    )
    assert (step_contract.KMEANS_MODEL_FILE_NAME, step_contract.CUSTOM_MODEL_FILE_NAME) == (evaluate.KMEANS_MODEL_FILE_NAME, evaluate.CUSTOM_MODEL_FILE_NAME)
    assert (step_contract.DATA_SUMMARY_FILE_NAME, step_contract.FEATURE_DIM_KEY) == (preprocess.DATA_SUMMARY_FILE_NAME, preprocess.FEATURE_DIM_KEY)
    assert (step_contract.TABULAR_DIR, step_contract.TABULAR_TRAIN_FILE, step_contract.TABULAR_TEST_FILE) == (
        preprocess.TABULAR_DIR,
        preprocess.TABULAR_TRAIN_FILE,
        preprocess.TABULAR_TEST_FILE,
    )
    assert evaluate.SPEC_FILE_NAME == preprocess.SPEC_FILE_NAME
