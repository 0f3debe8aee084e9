"""Evaluate step: score the trained model on the held-out test split.

Writes `evaluation.json` in the SageMaker Model Registry model-quality format
(`multiclass_classification_metrics` / `binary_classification_metrics` / `regression_metrics`, each
metric as `{"value": v, "standard_deviation": "NaN"}`), a flat summary the pipeline's condition
reads (`CONDITION_METRIC_PATH`), and a confusion-matrix and ROC-curve PNG for classification.

This file is the processing job's only code file, so it is self-contained (no sibling imports).

Container contract (paths passed as arguments by the pipeline definition):
    --model-dir       /opt/ml/processing/model        model.tar.gz from the training step
    --test-dir        /opt/ml/processing/test         features.npy + target.npy from the preprocess step
    --output-dir      /opt/ml/processing/evaluation   evaluation.json, *.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Contract with the pipeline definition. The builder reads these literals from this file
# (sagelab/step_contract.py), so the producer and the pipeline's JsonGet cannot drift apart.
EVALUATION_FILE_NAME = "evaluation.json"
CONDITION_METRIC_PATH = "sagelab_summary.metrics.{metric}"
# Metrics that are better when lower; the pipeline's condition uses <= for these and >= otherwise.
ERROR_METRICS = ("mse", "rmse", "mae", "log_loss")
SUMMARY_KEY = CONDITION_METRIC_PATH.split(".")[0]
# The gate every chain's condition reads: ConditionEquals(JsonGet(GATE_PASSED_PATH), 1), and the
# Fail step's message (docs/decisions/0011).
GATE_PASSED_PATH = "sagelab_summary.gate.passed"
GATE_MESSAGE_PATH = "sagelab_summary.gate.message"
MODEL_DESCRIPTION_FILE_NAME = "model_description.json"
CLASSIFICATION_METRICS = ("accuracy", "weighted_precision", "weighted_recall", "weighted_f1", "roc_auc")
REGRESSION_METRICS = ("mse", "rmse", "mae", "r2")
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
ROC_CURVE_PNG = "roc_curve.png"
# The test split as preprocess.py writes it (its SPLIT_FEATURES_FILE / SPLIT_TARGET_FILE; a test
# keeps the two in step): NumPy arrays, which this image (XGBoost 3.0-5, no pyarrow) reads natively.
SPLIT_FEATURES_FILE = "features.npy"
SPLIT_TARGET_FILE = "target.npy"


def _metric(value: float) -> dict[str, Any]:
    return {"value": float(value), "standard_deviation": "NaN"}


def load_model_dir(model_dir: Path, scratch: Path) -> Path:
    """Accept either an extracted model directory or one holding SageMaker's model.tar.gz."""
    archive = Path(model_dir) / "model.tar.gz"
    if not archive.exists():
        return Path(model_dir)
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(scratch, filter="data")
        except TypeError:  # Python without extraction filters (older container images)
            tar.extractall(scratch)  # noqa: S202 - our own training job wrote this archive
    return scratch


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> tuple[dict[str, Any], dict[str, float]]:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve

    binary = len(labels) == 2
    if probabilities.ndim == 1:  # binary:logistic gives P(class 1)
        probabilities = np.column_stack([1 - probabilities, probabilities])
    y_pred = probabilities.argmax(axis=1)
    classes = list(range(len(labels)))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="weighted", zero_division=0)
    present = np.unique(y_true)
    if len(present) < 2:
        auc = float("nan")
    elif binary:
        auc = float(roc_auc_score(y_true, probabilities[:, 1]))
    else:
        # One-vs-rest AUC over the classes present in the test split, weighted by support.
        auc = float(
            roc_auc_score(
                y_true, probabilities[:, present] / probabilities[:, present].sum(axis=1, keepdims=True), multi_class="ovr", average="weighted", labels=present
            )
        )
    matrix = confusion_matrix(y_true, y_pred, labels=classes)
    flat = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_precision": float(precision),
        "weighted_recall": float(recall),
        "weighted_f1": float(f1),
        "roc_auc": auc,
    }
    confusion = {labels[i]: {labels[j]: int(matrix[i, j]) for j in classes} for i in classes}
    if binary:
        fpr, tpr, _ = roc_curve(y_true, probabilities[:, 1]) if len(present) == 2 else (np.array([0.0, 1.0]), np.array([0.0, 1.0]), None)
        section = {
            "binary_classification_metrics": {
                "accuracy": _metric(flat["accuracy"]),
                "precision": _metric(flat["weighted_precision"]),
                "recall": _metric(flat["weighted_recall"]),
                "f1": _metric(flat["weighted_f1"]),
                "auc": _metric(auc),
                "confusion_matrix": confusion,
                "receiver_operating_characteristic_curve": {
                    "false_positive_rates": [float(x) for x in fpr],
                    "true_positive_rates": [float(x) for x in tpr],
                },
            }
        }
    else:
        section = {
            "multiclass_classification_metrics": {
                "accuracy": _metric(flat["accuracy"]),
                "weighted_precision": _metric(flat["weighted_precision"]),
                "weighted_recall": _metric(flat["weighted_recall"]),
                "weighted_f1": _metric(flat["weighted_f1"]),
                "weighted_roc_auc": _metric(auc),
                "confusion_matrix": confusion,
            }
        }
    return section, flat


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[dict[str, Any], dict[str, float]]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    mse = float(mean_squared_error(y_true, y_pred))
    flat = {"mse": mse, "rmse": math.sqrt(mse), "mae": float(mean_absolute_error(y_true, y_pred)), "r2": float(r2_score(y_true, y_pred))}
    return {"regression_metrics": {name: _metric(value) for name, value in flat.items()}}, flat


def plot_classification(y_true: np.ndarray, probabilities: np.ndarray, labels: list[str], output_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay
    except ImportError as error:  # a container without matplotlib still gets evaluation.json
        print(f"evaluate: plots skipped ({error})", flush=True)
        return []
    if probabilities.ndim == 1:
        probabilities = np.column_stack([1 - probabilities, probabilities])
    y_pred = probabilities.argmax(axis=1)
    written = []
    figure, axes = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=list(range(len(labels))), display_labels=labels, ax=axes, colorbar=False)
    axes.set_title("Confusion matrix (test split)")
    figure.tight_layout()
    figure.savefig(output_dir / CONFUSION_MATRIX_PNG, dpi=80)
    plt.close(figure)
    written.append(CONFUSION_MATRIX_PNG)

    figure, axes = plt.subplots(figsize=(7, 6))
    for index, label in enumerate(labels):
        positives = (y_true == index).astype(int)
        if positives.min() == positives.max():
            continue  # a class absent from the test split has no ROC curve
        RocCurveDisplay.from_predictions(positives, probabilities[:, index], name=f"class {label}", ax=axes, plot_chance_level=index == 0)
    axes.set_title("ROC curves, one-vs-rest (test split)")
    figure.tight_layout()
    figure.savefig(output_dir / ROC_CURVE_PNG, dpi=80)
    plt.close(figure)
    written.append(ROC_CURVE_PNG)
    return written


def load_test_split(test_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    paths = (test_dir / SPLIT_FEATURES_FILE, test_dir / SPLIT_TARGET_FILE)
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"test data not found at {path}")
    features, target = (np.load(path, allow_pickle=False) for path in paths)
    if len(target) == 0:
        raise ValueError(f"{test_dir / SPLIT_TARGET_FILE} has no rows")
    return features, target


def evaluate(model_dir: Path, test_dir: Path, output_dir: Path) -> dict[str, Any]:
    import xgboost as xgb

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        extracted = load_model_dir(Path(model_dir), Path(scratch))
        spec = json.loads((extracted / "feature_spec.json").read_text())
        booster = xgb.Booster()
        booster.load_model(extracted / "xgboost-model.json")
    features, y_true = load_test_split(Path(test_dir))
    predictions = booster.predict(xgb.DMatrix(features))
    problem_type = spec["problem_type"]
    plots: list[str] = []
    if problem_type == "regression":
        section, flat = regression_metrics(y_true.astype(float), predictions)
    else:
        labels = spec["labels"]
        section, flat = classification_metrics(y_true.astype(int), predictions, labels)
        plots = plot_classification(y_true.astype(int), predictions, labels, output_dir)
    report = {
        **section,
        SUMMARY_KEY: {
            "problem_type": problem_type,
            "metrics": {name: (None if math.isnan(value) else value) for name, value in flat.items()},
            "test_rows": len(y_true),
            "plots": plots,
        },
    }
    (output_dir / EVALUATION_FILE_NAME).write_text(json.dumps(report, indent=2, allow_nan=False, default=str))
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate the trained model on the test split")
    parser.add_argument("--model-dir", type=Path, default=Path("/opt/ml/processing/model"))
    parser.add_argument("--test-dir", type=Path, default=Path("/opt/ml/processing/test"))
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/evaluation"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = evaluate(args.model_dir, args.test_dir, args.output_dir)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr, flush=True)
        return 2
    summary = report[SUMMARY_KEY]
    print(f"evaluate: {summary['problem_type']} on {summary['test_rows']} test rows: {json.dumps(summary['metrics'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
