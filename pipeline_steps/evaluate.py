"""Evaluate step: score the trained model on the held-out test split and decide the gate.

Problem types (PROBLEM_FAMILIES): the feature spec's `binary`, `multiclass` or `regression` (preprocess.py
infers it), or `clustering` for kmeans. Evaluate writes it as `sagelab_summary.problem_type`, the value
registration tags `sagelab:problem-type` with and the deployer, front door and release read. Its problem
family decides the metrics, the gate and the answer's shape:
    classification  binary, multiclass: xgboost, custom (probabilities), autopilot (predicted labels only, no AUC)
    regression      xgboost, custom, autopilot: mse, rmse, mae, r2, residual and predicted-vs-actual PNGs
    clustering      kmeans: silhouette, inertia, cluster sizes; with a class target, adjusted Rand
                    index and a cluster-vs-label PNG

Writes `evaluation.json` in the SageMaker Model Registry model-quality format
(`multiclass_classification_metrics` / `binary_classification_metrics` / `regression_metrics`, each
metric as `{"value": v, "standard_deviation": "NaN"}`), plus `clustering_metrics` and
`autopilot_leaderboard` where they apply, and `sagelab_summary`: the flat metrics, the plots and
the gate (`sagelab_summary.gate`: metric, value, comparison, threshold, passed 1|0, message) that
every `CheckMetric` condition reads (decision 0011). Beside it, `model_description.json` says what
the model takes and answers (feature names in order, categories, row width, answer schema), and,
given the training split (`--train-dir`), the drift check's baseline in SageMaker Model Monitor's
formats (decision 0013): `statistics.json` and `constraints.json` of the feature columns on the
training split, `prediction_statistics.json` of the model's answers on the test split. The
registered version points at them (DriftCheckBaselines and ModelMetrics.ModelDataQuality).

This file is the processing job's only code file, so it is self-contained (no sibling imports).
It runs in the XGBoost 3.0-5 image and, for `custom`, in the SKLearn 1.4-2 image (no xgboost and
no matplotlib there: xgboost is imported only for xgboost models, plots are skipped without
matplotlib). boto3 is in both images (it is in both containers' requirements).

Container contract (paths passed as arguments by the pipeline definition):
    --model-dir        /opt/ml/processing/model        model.tar.gz from training (not for autopilot)
    --test-dir         /opt/ml/processing/test         features.npy + target.npy from preprocess
    --spec-dir         /opt/ml/processing/spec         feature_spec.json from preprocess (labels, names)
    --predictions-dir  /opt/ml/processing/predictions  autopilot: the batch transform's *.out
    --train-dir        /opt/ml/processing/train        features.npy from preprocess (the drift baseline)
    --output-dir       /opt/ml/processing/evaluation   evaluation.json, model_description.json, *.png
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

# A processing job ships this script alone (its `code` input) and the contract as an input of its
# own beside it (docs/decisions/0018).
_CONTRACT_INPUT = Path(__file__).resolve().parent.parent / "contract"
if _CONTRACT_INPUT.is_dir() and str(_CONTRACT_INPUT) not in sys.path:
    sys.path.insert(0, str(_CONTRACT_INPUT))
try:
    import contract
except ModuleNotFoundError:  # imported from the repository (tests, `sagelab run`'s in-process twins)
    from pipeline_steps import contract

# Contract with the pipeline definition. The builder reads these literals from this file
# (sagelab/step_contract.py), so the producer and the pipeline's JsonGet cannot drift apart.
EVALUATION_FILE_NAME = contract.EVALUATION_FILE_NAME
MODEL_DESCRIPTION_FILE_NAME = contract.MODEL_DESCRIPTION_FILE_NAME
CONDITION_METRIC_PATH = "sagelab_summary.metrics.{metric}"
# Every CheckMetric is ConditionEquals(JsonGet(GATE_PASSED_PATH), 1); its Fail message is GATE_MESSAGE_PATH.
GATE_PASSED_PATH = "sagelab_summary.gate.passed"
GATE_MESSAGE_PATH = "sagelab_summary.gate.message"
# The pipeline parameters that carry the thresholds; the gate's message tells the student to set them.
METRIC_THRESHOLD_PARAMETER = "MetricThreshold"
RMSE_THRESHOLD_PARAMETER = "RmseThreshold"
SILHOUETTE_THRESHOLD_PARAMETER = "SilhouetteThreshold"
ALGORITHMS = contract.ALGORITHMS
# Metrics that are better when lower; the gate compares these with <= and every other with >=.
ERROR_METRICS = ("mse", "rmse", "mae", "log_loss")
SUMMARY_KEY = CONDITION_METRIC_PATH.split(".")[0]
CLASSIFICATION_METRICS = ("accuracy", "weighted_precision", "weighted_recall", "weighted_f1", "roc_auc")
REGRESSION_METRICS = ("mse", "rmse", "mae", "r2")
CLUSTERING_METRICS = ("silhouette", "inertia", "adjusted_rand_index")
# Every problem type evaluate writes (`sagelab_summary.problem_type`, the `sagelab:problem-type` tag)
# and its problem family: the first three are preprocess.py's PROBLEM_TYPES, clustering is kmeans'.
PROBLEM_FAMILIES = contract.PROBLEM_FAMILIES
# The metrics a configured `pipeline.metric` may gate on, per problem family; any other metric
# falls back to the family's default gate below.
GATE_METRICS_BY_FAMILY = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS, "clustering": ("silhouette",)}
DEFAULT_CLASSIFICATION_GATE = ("accuracy", 0.9)
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
ROC_CURVE_PNG = "roc_curve.png"
RESIDUALS_PNG = "residuals.png"
PREDICTED_VS_ACTUAL_PNG = "predicted_vs_actual.png"
CLUSTER_LABEL_MATRIX_PNG = "cluster_label_matrix.png"
# The test split as preprocess.py writes it (its SPLIT_FEATURES_FILE / SPLIT_TARGET_FILE; a test
# keeps the two in step): NumPy arrays, which this image (XGBoost 3.0-5) reads natively.
SPLIT_FEATURES_FILE = "features.npy"
SPLIT_TARGET_FILE = "target.npy"
SPEC_FILE_NAME = "feature_spec.json"
XGBOOST_MODEL_FILE_NAME = contract.XGBOOST_MODEL_FILE_NAME
# The drift check's baseline (stacks/drift_check/runtime/comparison.py reads the same names).
STATISTICS_FILE_NAME = contract.STATISTICS_FILE_NAME
CONSTRAINTS_FILE_NAME = contract.CONSTRAINTS_FILE_NAME
PREDICTION_STATISTICS_FILE_NAME = contract.PREDICTION_STATISTICS_FILE_NAME
# preprocess.py's spec/data_summary.json and its key of each feature's completeness on the training
# split (the splits themselves are imputed).
DATA_SUMMARY_FILE_NAME = "data_summary.json"
COMPLETENESS_KEY = "train_completeness"
HISTOGRAM_BUCKETS = 10
PREDICTION_FEATURE = "prediction"
CUSTOM_MODEL_FILE_NAME = "model.joblib"  # what train_custom.py requires the student's script to save
KMEANS_MODEL_FILE_NAME = "model_algo-1"  # the built-in K-Means artifact (MXNet NDArray list, centroids first)
AUTOPILOT_PREDICTIONS_SUFFIX = ".out"  # batch transform: one <input>.out per input file
# Silhouette is O(n^2) in rows: a seeded sample keeps MNIST-sized test splits to about a second.
SILHOUETTE_SAMPLE_ROWS = 3000
SILHOUETTE_SEED = 0
LEADERBOARD_PAGE_SIZE = 100

# MXNet 1.x NDArray list file (`mx.nd.save`), what built-in K-Means writes as `model_algo-1`: the
# centroids are array 0. Facts from apache/mxnet 1.9.1 src/ndarray/ndarray.cc (NDArray::Save/Load),
# include/mxnet/tuple.h (TShape::Save) and mshadow's TypeFlag; checked byte for byte against files
# mxnet 1.9.1 wrote (tests/fixtures/mxnet/). All integers are little-endian:
#   file   = u64 0x112, u64 reserved, u64 n, n x array, u64 m, m x (u64 length, UTF-8 name), m in {0, n}
#   array  = u32 magic; V2/V3: i32 storage type (0 = dense), shape; V1: shape; before V1 the magic *is*
#            ndim, followed by ndim u32 dims; then (unless the shape says "no array") i32 dev_type,
#            i32 dev_id, i32 type flag, the values in C order
#   shape  = i32 ndim, ndim x i64 (V2 ndim 0 and V3 ndim -1 mean an empty NDArray with no data)
_MXNET_LIST_MAGIC = 0x112
_MXNET_V1_MAGIC = 0xF993FAC8  # int64 shape, no storage type
_MXNET_V2_MAGIC = 0xF993FAC9  # adds the storage type; what MXNet 1.x writes by default
_MXNET_V3_MAGIC = 0xF993FACA  # same layout, NumPy shape semantics (0-d arrays exist, ndim -1 = none)
_MXNET_DENSE_STORAGE = 0
_MXNET_STORAGE_NAMES = {1: "row_sparse", 2: "csr"}
_MXNET_MAX_NDIM = 32  # MXNet's own limit is far lower in practice; anything above is a corrupt header
# mshadow TypeFlag -> NumPy dtype (12 = bfloat16 has no NumPy equivalent).
_MXNET_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
    7: np.dtype("?"),
    8: np.dtype("<i2"),
    9: np.dtype("<u2"),
    10: np.dtype("<u4"),
    11: np.dtype("<u8"),
}


class _MXNetCursor:
    """Reads little-endian fields from the file's bytes, naming the offset and the field when short."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.offset = data, path, 0

    def fail(self, message: str, offset: int | None = None) -> ValueError:
        at = self.offset if offset is None else offset
        return ValueError(f"{self.path} is not a readable MXNet NDArray file: at byte offset {at}, {message}")

    def take(self, size: int, what: str) -> bytes:
        if size > len(self.data) - self.offset:
            raise self.fail(f"expected {what} ({size} bytes) but only {len(self.data) - self.offset} bytes remain (truncated file?)")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def integer(self, dtype: str, what: str) -> int:
        return int(np.frombuffer(self.take(np.dtype(dtype).itemsize, what), dtype=dtype)[0])


def _read_mxnet_shape(cursor: _MXNetCursor, dim_type: str, ndim: int | None = None) -> tuple[int, ...]:
    start = cursor.offset
    if ndim is None:
        ndim = cursor.integer("<i4", "the shape's ndim (int32)")
    if not -1 <= ndim <= _MXNET_MAX_NDIM:
        raise cursor.fail(f"expected a shape's ndim between -1 and {_MXNET_MAX_NDIM}, found {ndim}", start)
    if ndim <= 0:
        return (ndim,) if ndim < 0 else ()
    dims = np.frombuffer(cursor.take(ndim * np.dtype(dim_type).itemsize, f"{ndim} shape dimensions ({dim_type})"), dtype=dim_type)
    return tuple(int(d) for d in dims)


def _read_mxnet_array(cursor: _MXNetCursor, index: int) -> np.ndarray:
    start = cursor.offset
    magic = cursor.integer("<u4", f"array {index}'s magic number (uint32)")
    storage = _MXNET_DENSE_STORAGE
    if magic in (_MXNET_V2_MAGIC, _MXNET_V3_MAGIC):
        storage = cursor.integer("<i4", f"array {index}'s storage type (int32)")
        if storage != _MXNET_DENSE_STORAGE:
            storage_type = _MXNET_STORAGE_NAMES.get(storage, f"unknown storage type {storage}")
            raise cursor.fail(f"array {index} is a sparse ({storage_type}) NDArray; expected dense arrays (storage type 0) only", start)
        shape = _read_mxnet_shape(cursor, "<i8")
        is_none = shape == () if magic == _MXNET_V2_MAGIC else any(d < 0 for d in shape)
    elif magic == _MXNET_V1_MAGIC:
        shape = _read_mxnet_shape(cursor, "<i8")
        is_none = shape == () or any(d < 0 for d in shape)
    elif magic <= _MXNET_MAX_NDIM:  # before V1 there was no magic: the first field is ndim, dims are uint32
        shape = _read_mxnet_shape(cursor, "<u4", ndim=magic)
        is_none = shape == ()
    else:
        raise cursor.fail(
            f"expected array {index}'s magic number 0x{_MXNET_V2_MAGIC:08X} (V2), 0x{_MXNET_V3_MAGIC:08X} (V3) "
            f"or 0x{_MXNET_V1_MAGIC:08X} (V1), found 0x{magic:08X}",
            start,
        )
    if is_none:
        raise cursor.fail(f"array {index} is an empty NDArray without a shape; expected arrays that hold values", start)
    if any(d < 0 for d in shape):
        raise cursor.fail(f"array {index} has a negative dimension in its shape {shape}", start)
    cursor.take(8, f"array {index}'s context (int32 dev_type, int32 dev_id)")
    flag_at = cursor.offset
    type_flag = cursor.integer("<i4", f"array {index}'s type flag (int32)")
    if type_flag not in _MXNET_DTYPES:
        raise cursor.fail(f"array {index} has type flag {type_flag}; expected one of {sorted(_MXNET_DTYPES)} (12 = bfloat16 is not supported)", flag_at)
    dtype = _MXNET_DTYPES[type_flag]
    count = 1
    for dim in shape:  # Python ints: a corrupt shape cannot overflow into a small, plausible size
        count *= dim
    values = cursor.take(count * dtype.itemsize, f"array {index}'s {count} {dtype.name} values of shape {shape}")
    return np.frombuffer(values, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_mxnet_ndarrays(path: Path) -> list[np.ndarray]:
    """Read an MXNet NDArray list file (`mx.nd.save`, e.g. K-Means' `model_algo-1`) into NumPy arrays, in file order.

    Dense arrays of any MXNet 1.x format (V2, V3, V1 and the older magic-less layout); names, if the
    file has them, are checked and dropped. Raises ValueError naming the byte offset and what was
    expected on a truncated, corrupt or sparse file.
    """
    cursor = _MXNetCursor(Path(path).read_bytes(), Path(path))
    header = cursor.integer("<u8", "the list header (uint64)")
    if header != _MXNET_LIST_MAGIC:
        raise cursor.fail(f"expected the NDArray list header 0x{_MXNET_LIST_MAGIC:X}, found 0x{header:X}", 0)
    cursor.take(8, "the reserved field (uint64)")
    count_at = cursor.offset
    count = cursor.integer("<u8", "the number of arrays (uint64)")
    # Every array takes at least 24 bytes; a larger count is a corrupt header, not a reason to loop.
    if count > (len(cursor.data) - cursor.offset) // 24:
        raise cursor.fail(f"the file declares {count} arrays but only {len(cursor.data) - cursor.offset} bytes follow", count_at)
    arrays = [_read_mxnet_array(cursor, i) for i in range(count)]
    names_at = cursor.offset
    name_count = cursor.integer("<u8", "the number of names (uint64)")
    if name_count not in (0, count):
        raise cursor.fail(f"expected 0 names or one per array ({count}), found {name_count}", names_at)
    for i in range(name_count):
        length = cursor.integer("<u8", f"name {i}'s length (uint64)")
        name_at = cursor.offset
        try:
            cursor.take(length, f"name {i} ({length} bytes of UTF-8)").decode("utf-8")
        except UnicodeDecodeError as error:
            raise cursor.fail(f"name {i} is not UTF-8 ({error})", name_at) from None
    if cursor.offset != len(cursor.data):
        raise cursor.fail(f"expected the end of the file after the names, found {len(cursor.data) - cursor.offset} more bytes")
    return arrays


def _metric(value: float) -> dict[str, Any]:
    return {"value": float(value), "standard_deviation": "NaN"}


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def load_model_dir(model_dir: Path, scratch: Path) -> Path:
    """Accept either an extracted model directory or one holding SageMaker's model.tar.gz."""
    archive = Path(model_dir) / "model.tar.gz"
    if not archive.exists():
        return Path(model_dir)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(scratch, filter="data")
        else:  # a Python without extraction filters (before 3.10.12 / 3.11.4: older container images)
            tar.extractall(scratch, members=safe_members(tar, archive))  # noqa: S202 - every member checked first
    return scratch


def safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """What the "data" extraction filter would let through, for a Python that lacks it: files,
    folders and links that stay inside the destination, permissions without setuid/setgid or write
    for others. Anything else stops the step with the member's name (a model archive never holds one):
    an absolute name, a `..` segment, a path through a link of the archive, a link whose target is
    absolute, climbs with `..` or runs through another link, a device or a FIFO."""
    members = tar.getmembers()
    links = {PurePosixPath(m.name) for m in members if m.issym() or m.islnk()}

    def problem_with(path: PurePosixPath, what: str) -> str | None:
        if path.is_absolute() or str(path).startswith("\\"):
            return f"{what} is absolute"
        if ".." in path.parts:
            return f"{what} has a '..' segment"
        if any(parent in links for parent in path.parents):
            return f"{what} runs through a link in the archive"
        return None

    for member in members:
        name = PurePosixPath(member.name)
        problem = problem_with(name, "its name")
        if problem is None and not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            problem = "it is a device or FIFO"
        if problem is None and (member.issym() or member.islnk()):
            target = PurePosixPath(member.linkname)
            problem = problem_with(target if member.islnk() or target.is_absolute() else name.parent / target, f"its link target {member.linkname!r}")
        if problem:
            raise ValueError(f"{archive}: member {member.name!r} refused: {problem}; a model archive holds only files and folders inside the model folder")
        member.mode &= 0o755  # as the data filter: no setuid/setgid/sticky bit, no write for group or others
    return members


def load_spec(directories: Sequence[Path | None]) -> dict[str, Any]:
    """The feature spec (labels, feature names, categories) from the first directory holding one:
    the model's own copy where training packed it, else preprocess's `spec` output."""
    candidates = [Path(d) / SPEC_FILE_NAME for d in directories if d is not None]
    for path in candidates:
        if path.is_file():
            return dict(json.loads(path.read_text()))
    raise FileNotFoundError(f"feature spec not found at {' or '.join(str(p) for p in candidates)}; expected preprocess's spec output (--spec-dir)")


def problem_family(problem_type: str) -> str:
    """classification, regression or clustering for one of PROBLEM_FAMILIES' problem types."""
    family = PROBLEM_FAMILIES.get(problem_type)
    if family is None:
        raise ValueError(f"problem type {problem_type!r} is not one of {', '.join(PROBLEM_FAMILIES)}")
    return family


# -- classification --------------------------------------------------------------------------------
def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> tuple[dict[str, Any], dict[str, float]]:
    """Model-quality section and flat metrics from class probabilities (columns in `labels` order)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    binary = len(labels) == 2
    if probabilities.ndim == 1:  # binary:logistic gives P(class 1)
        probabilities = np.column_stack([1 - probabilities, probabilities])
    y_pred = probabilities.argmax(axis=1)
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
    section, flat = label_metrics(y_true, y_pred, labels)
    flat["roc_auc"] = auc
    if binary:
        fpr, tpr, _ = roc_curve(y_true, probabilities[:, 1]) if len(present) == 2 else (np.array([0.0, 1.0]), np.array([0.0, 1.0]), None)
        metrics = section["binary_classification_metrics"]
        metrics["auc"] = _metric(auc)
        metrics["receiver_operating_characteristic_curve"] = {"false_positive_rates": [float(x) for x in fpr], "true_positive_rates": [float(x) for x in tpr]}
    else:
        section["multiclass_classification_metrics"]["weighted_roc_auc"] = _metric(auc)
    return section, flat


def label_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> tuple[dict[str, Any], dict[str, float]]:
    """Model-quality section and flat metrics from predicted class positions alone (no AUC)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    classes = list(range(len(labels)))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="weighted", zero_division=0)
    flat = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_precision": float(precision),
        "weighted_recall": float(recall),
        "weighted_f1": float(f1),
    }
    matrix = confusion_matrix(y_true, y_pred, labels=classes)
    confusion = {labels[i]: {labels[j]: int(matrix[i, j]) for j in classes} for i in classes}
    if len(labels) == 2:
        names = {"accuracy": "accuracy", "precision": "weighted_precision", "recall": "weighted_recall", "f1": "weighted_f1"}
        section = {"binary_classification_metrics": {**{name: _metric(flat[key]) for name, key in names.items()}, "confusion_matrix": confusion}}
    else:
        section = {"multiclass_classification_metrics": {**{name: _metric(value) for name, value in flat.items()}, "confusion_matrix": confusion}}
    return section, flat


# -- regression ------------------------------------------------------------------------------------
def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[dict[str, Any], dict[str, float]]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    mse = float(mean_squared_error(y_true, y_pred))
    flat = {"mse": mse, "rmse": math.sqrt(mse), "mae": float(mean_absolute_error(y_true, y_pred)), "r2": float(r2_score(y_true, y_pred))}
    return {"regression_metrics": {name: _metric(value) for name, value in flat.items()}}, flat


# -- clustering ------------------------------------------------------------------------------------
def nearest_centroids(features: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each row, squared Euclidean distance to it), as K-Means assigns rows."""
    rows = np.asarray(features, dtype=np.float64)
    centres = np.asarray(centroids, dtype=np.float64)
    squared = (rows**2).sum(axis=1)[:, None] - 2.0 * rows @ centres.T + (centres**2).sum(axis=1)[None, :]
    np.maximum(squared, 0.0, out=squared)  # rounding can dip a zero distance just below zero
    clusters = squared.argmin(axis=1)
    return clusters, squared[np.arange(len(rows)), clusters]


def clustering_metrics(
    features: np.ndarray, centroids: np.ndarray, target: np.ndarray | None, labels: Sequence[str] | None = None
) -> tuple[dict[str, Any], dict[str, float]]:
    """Silhouette (on a seeded sample of at most SILHOUETTE_SAMPLE_ROWS rows), inertia (sum of squared
    distances to the nearest centroid, over the test rows), cluster sizes and, when `target` holds
    class positions, the adjusted Rand index and the cluster-vs-label counts."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    centroids = np.asarray(centroids, dtype=np.float64)
    if centroids.ndim != 2 or centroids.shape[1] != features.shape[1]:
        raise ValueError(f"the K-Means model has centroids of shape {centroids.shape}; expected (clusters, {features.shape[1]}) for the test features' width")
    clusters, squared = nearest_centroids(features, centroids)
    k = len(centroids)
    sample = np.arange(len(features))
    if len(sample) > SILHOUETTE_SAMPLE_ROWS:
        sample = np.sort(np.random.default_rng(SILHOUETTE_SEED).choice(len(features), SILHOUETTE_SAMPLE_ROWS, replace=False))
    found = len(np.unique(clusters[sample]))
    # Silhouette is defined for 2 .. rows-1 clusters; one cluster for every row has none.
    silhouette = float(silhouette_score(features[sample], clusters[sample])) if 2 <= found < len(sample) else float("nan")
    sizes = np.bincount(clusters, minlength=k)
    flat = {"silhouette": silhouette, "inertia": float(squared.sum())}
    section: dict[str, Any] = {
        "silhouette": _metric(silhouette),
        "inertia": _metric(flat["inertia"]),
        "clusters": k,
        "cluster_sizes": [int(n) for n in sizes],
        "silhouette_sample_rows": len(sample),
    }
    if target is not None:
        target = np.asarray(target).astype(np.int64)
        flat["adjusted_rand_index"] = float(adjusted_rand_score(target, clusters))
        section["adjusted_rand_index"] = _metric(flat["adjusted_rand_index"])
        names = list(labels) if labels is not None else [str(v) for v in range(int(target.max()) + 1)]
        counts = cluster_label_counts(clusters, target, k, len(names))
        section["cluster_label_matrix"] = {str(c): {names[j]: int(counts[c, j]) for j in range(len(names))} for c in range(k)}
    return {"clustering_metrics": section}, flat


def cluster_label_counts(clusters: np.ndarray, target: np.ndarray, k: int, classes: int) -> np.ndarray:
    counts = np.zeros((k, classes), dtype=np.int64)
    np.add.at(counts, (clusters, target), 1)
    return counts


# -- plots -----------------------------------------------------------------------------------------
def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # the SKLearn image has no matplotlib: evaluation.json without PNGs
        print(f"evaluate: plots skipped ({error})", flush=True)
        return None
    return plt


def _save(plt: Any, figure: Any, output_dir: Path, name: str) -> str:
    figure.tight_layout()
    figure.savefig(output_dir / name, dpi=80)
    plt.close(figure)
    return name


def plot_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], output_dir: Path) -> list[str]:
    plt = _pyplot()
    if plt is None:
        return []
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axes = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=list(range(len(labels))), display_labels=labels, ax=axes, colorbar=False)
    axes.set_title("Confusion matrix (test split)")
    return [_save(plt, figure, output_dir, CONFUSION_MATRIX_PNG)]


def plot_classification(y_true: np.ndarray, probabilities: np.ndarray, labels: list[str], output_dir: Path) -> list[str]:
    if probabilities.ndim == 1:
        probabilities = np.column_stack([1 - probabilities, probabilities])
    written = plot_confusion_matrix(y_true, probabilities.argmax(axis=1), labels, output_dir)
    if not written:
        return written
    plt = _pyplot()
    from sklearn.metrics import RocCurveDisplay

    figure, axes = plt.subplots(figsize=(7, 6))
    for index, label in enumerate(labels):
        positives = (y_true == index).astype(int)
        if positives.min() == positives.max():
            continue  # a class absent from the test split has no ROC curve
        RocCurveDisplay.from_predictions(positives, probabilities[:, index], name=f"class {label}", ax=axes, plot_chance_level=index == 0)
    axes.set_title("ROC curves, one-vs-rest (test split)")
    written.append(_save(plt, figure, output_dir, ROC_CURVE_PNG))
    return written


def plot_regression(y_true: np.ndarray, y_pred: np.ndarray, output_dir: Path) -> list[str]:
    plt = _pyplot()
    if plt is None:
        return []
    figure, axes = plt.subplots(figsize=(7, 6))
    axes.scatter(y_pred, y_true - y_pred, s=8, alpha=0.6)
    axes.axhline(0.0, color="grey", linewidth=1)
    axes.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals (test split)")
    written = [_save(plt, figure, output_dir, RESIDUALS_PNG)]
    figure, axes = plt.subplots(figsize=(7, 6))
    axes.scatter(y_true, y_pred, s=8, alpha=0.6)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    axes.plot([low, high], [low, high], color="grey", linewidth=1, label="predicted = actual")
    axes.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test split)")
    axes.legend(loc="upper left")
    written.append(_save(plt, figure, output_dir, PREDICTED_VS_ACTUAL_PNG))
    return written


def plot_cluster_label_matrix(section: dict[str, Any], output_dir: Path) -> list[str]:
    matrix = section["clustering_metrics"].get("cluster_label_matrix")
    plt = _pyplot() if matrix else None
    if plt is None:
        return []
    clusters = list(matrix)
    labels = list(matrix[clusters[0]])
    counts = np.array([[matrix[c][label] for label in labels] for c in clusters])
    figure, axes = plt.subplots(figsize=(max(6, len(labels) * 0.6), max(5, len(clusters) * 0.45)))
    axes.imshow(counts, cmap="Blues", aspect="auto")
    if counts.size <= 400:  # numbers stay legible up to about 20 x 20
        for (row, column), value in np.ndenumerate(counts):
            axes.text(column, row, str(value), ha="center", va="center", fontsize=8, color="white" if value > counts.max() / 2 else "black")
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(clusters)), clusters)
    axes.set(xlabel="label", ylabel="cluster", title="Test rows per cluster and label")
    return [_save(plt, figure, output_dir, CLUSTER_LABEL_MATRIX_PNG)]


# -- the test split and the models' predictions ----------------------------------------------------
def load_test_split(test_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    paths = (test_dir / SPLIT_FEATURES_FILE, test_dir / SPLIT_TARGET_FILE)
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"test data not found at {path}")
    features, target = (np.load(path, allow_pickle=False) for path in paths)
    if len(target) == 0:
        raise ValueError(f"{test_dir / SPLIT_TARGET_FILE} has no rows")
    if len(features) != len(target):
        raise ValueError(f"the test split at {test_dir} has {len(features)} feature rows but {len(target)} targets")
    return features, target


def load_test_target(test_dir: Path) -> np.ndarray:
    path = test_dir / SPLIT_TARGET_FILE
    if not path.exists():
        raise FileNotFoundError(f"test data not found at {path}")
    target = np.load(path, allow_pickle=False)
    if len(target) == 0:
        raise ValueError(f"{path} has no rows")
    return target


def custom_predictions(estimator: Any, features: np.ndarray, classes: int | None) -> np.ndarray:
    """Class probabilities (rows x classes, columns in label order) when the estimator has
    predict_proba, else its predictions: class positions, or values for regression."""
    if classes is None or not hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict(features))
    raw = np.asarray(estimator.predict_proba(features), dtype=np.float64)
    known = [int(c) for c in getattr(estimator, "classes_", range(raw.shape[1]))]
    if len(known) != raw.shape[1] or min(known) < 0 or max(known) >= classes:
        raise ValueError(f"the custom model's classes_ {known[:10]} are not positions 0..{classes - 1} of the spec's labels; train it on target.npy as given")
    probabilities = np.zeros((len(raw), classes))
    probabilities[:, known] = raw  # a class the estimator never saw keeps probability 0
    return probabilities


def read_autopilot_predictions(predictions_dir: Path, rows: int, spec: dict[str, Any]) -> np.ndarray:
    """The batch transform's output (`*.out`, in file-name order): one CSV line per test row, its first
    field the predicted label (classification, as a position in the spec's labels) or value (regression)."""
    files = sorted(p for p in Path(predictions_dir).glob(f"*{AUTOPILOT_PREDICTIONS_SUFFIX}") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no *{AUTOPILOT_PREDICTIONS_SUFFIX} files in {predictions_dir}; expected the Autopilot batch transform's output")
    fields: list[tuple[str, str]] = []
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            fields.extend((row[0].strip(), f"{path.name} line {number}") for number, row in enumerate(csv.reader(handle), start=1) if row)
    if len(fields) != rows:
        raise ValueError(f"{', '.join(p.name for p in files)} hold {len(fields)} predictions; expected one per test row ({rows})")
    if spec["problem_type"] == "regression":
        values = []
        for text, where in fields:
            try:
                values.append(float(text))
            except ValueError:
                raise ValueError(f"{where} is {text!r}; expected a predicted number") from None
        return np.array(values)
    index = {label: position for position, label in enumerate(spec["labels"])}
    positions = []
    for text, where in fields:
        key = _label_key(text)
        if key not in index:
            raise ValueError(f"{where} predicts {text!r}, not one of the labels {spec['labels'][:10]}")
        positions.append(index[key])
    return np.array(positions, dtype=np.int64)


def _label_key(text: str) -> str:
    """Labels are compared as preprocess.py spells them: "3.0" is the label "3"."""
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def autopilot_leaderboard(job_name: str, client: Any = None) -> list[dict[str, Any]]:
    """Every candidate of the AutoML job, best first: {name, objective_metric, value, status}."""
    if client is None:
        import boto3

        # AWS_ENDPOINT_URL_SAGEMAKER: the local runner answers this call on a loopback endpoint.
        client = boto3.client("sagemaker", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER") or None)
    candidates: list[dict[str, Any]] = []
    request: dict[str, Any] = {"AutoMLJobName": job_name, "SortBy": "FinalObjectiveMetricValue", "MaxResults": LEADERBOARD_PAGE_SIZE}
    while True:
        page = client.list_candidates_for_auto_ml_job(**request)
        candidates.extend(page.get("Candidates", []))
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]
    rows = []
    for candidate in candidates:
        objective = candidate.get("FinalAutoMLJobObjectiveMetric") or {}
        value = objective.get("Value")
        rows.append(
            {
                "name": candidate["CandidateName"],
                "objective_metric": objective.get("MetricName"),
                "value": None if value is None else float(value),
                "status": candidate.get("CandidateStatus"),
                "_minimize": objective.get("Type") == "Minimize",
            }
        )
    # Best first whatever the objective's direction (pages come sorted by value, not by goodness);
    # candidates without a final value (failed, stopped) last.
    rows.sort(key=lambda row: (row["value"] is None, (row["value"] or 0.0) * (1 if row["_minimize"] else -1)))
    for row in rows:
        del row["_minimize"]
    return rows


# -- the gate --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateSettings:
    """The thresholds the pipeline passes in (pipeline parameters, see *_PARAMETER)."""

    metric: str = "accuracy"
    metric_threshold: float = 0.9
    rmse_threshold: float = 0.0  # 0 = the test target's standard deviation
    silhouette_threshold: float = 0.1


def decide_gate(problem_type: str, metrics: dict[str, float | None], settings: GateSettings, target_std: float | None = None) -> dict[str, Any]:
    """The gate for this problem type: the configured metric and MetricThreshold where that metric
    belongs to the problem family and was measured, else the family's default gate."""
    family = problem_family(problem_type)
    value = metrics.get(settings.metric)
    if settings.metric in GATE_METRICS_BY_FAMILY[family] and value is not None:
        metric, threshold = settings.metric, settings.metric_threshold
        reason = f"pipeline.metric {metric!r} and {METRIC_THRESHOLD_PARAMETER}"
        advice = f"set --param {METRIC_THRESHOLD_PARAMETER}=<a {'larger' if metric in ERROR_METRICS else 'smaller'} {metric}> or improve the model"
    else:
        measured_here = settings.metric in GATE_METRICS_BY_FAMILY[family]
        why_not = f"pipeline.metric {settings.metric!r} " + (
            f"was not measured for this {family} model" if measured_here else f"does not apply to a {family} model"
        )
        if family == "classification":
            metric, threshold = DEFAULT_CLASSIFICATION_GATE
            reason = f"the classification default gate; {why_not}"
            advice = f"improve the model, or set pipeline.metric to one of {', '.join(CLASSIFICATION_METRICS)} and --param {METRIC_THRESHOLD_PARAMETER}=<value>"
        elif family == "regression":
            metric = "rmse"
            if settings.rmse_threshold > 0:
                threshold = settings.rmse_threshold
                reason = f"the regression default gate with {RMSE_THRESHOLD_PARAMETER}={threshold:g}; {why_not}"
            else:
                threshold = float(target_std or 0.0)
                reason = (
                    f"the regression default gate with {RMSE_THRESHOLD_PARAMETER}=0: the test target's standard deviation, "
                    f"the RMSE of always predicting the mean; {why_not}"
                )
            advice = f"improve the model or set --param {RMSE_THRESHOLD_PARAMETER}=<the largest acceptable RMSE> (0 = the test target's standard deviation)"
        else:
            metric, threshold = "silhouette", settings.silhouette_threshold
            reason = f"the clustering gate with {SILHOUETTE_THRESHOLD_PARAMETER}"
            advice = f"try another number of clusters (pipeline.kmeans_clusters) or set --param {SILHOUETTE_THRESHOLD_PARAMETER}=<value in -1..1>"
    comparison = "<=" if metric in ERROR_METRICS else ">="
    measured = metrics.get(metric)
    if measured is None:
        passed = False
        message = f"Gate failed: {metric} could not be measured on the test split ({reason}); the model is not registered"
    else:
        passed = measured <= threshold if comparison == "<=" else measured >= threshold
        if passed:
            message = f"Gate passed: test {metric} {measured:.6g} {comparison} {threshold:.6g} ({reason})"
        else:
            message = f"Gate failed: test {metric} {measured:.6g} is not {comparison} {threshold:.6g} ({reason}); the model is not registered: {advice}"
    return {"metric": metric, "value": measured, "comparison": comparison, "threshold": float(threshold), "passed": int(passed), "message": message}


# -- what the model takes and answers --------------------------------------------------------------
def model_description(algorithm: str, problem_type: str, spec: dict[str, Any], clusters: int | None = None, probabilities: bool = True) -> dict[str, Any]:
    """The served model's input and answer. K-Means takes the encoded numeric features (the built-in
    container has no spec to apply); every other model takes the raw feature columns, gaps allowed
    (inference.py imputes; Autopilot's containers impute empty CSV cells)."""
    if algorithm == contract.KMEANS:
        features: list[dict[str, Any]] = [{"name": name, "type": "number", "nullable": False} for name in spec["encoded_columns"]]
    else:
        vocabulary = spec.get("categorical_vocabulary", {})
        features = [
            {"name": name, "type": "category", "values": list(vocabulary[name]), "nullable": True}
            if name in vocabulary
            else {"name": name, "type": "number", "nullable": True}
            for name in spec["feature_columns"]
        ]
    description: dict[str, Any] = {"algorithm": algorithm, "problem_type": problem_type, "features": features, "row_width": len(features)}
    family = problem_family(problem_type)
    if family == "classification":
        labels = list(spec["labels"])
        description["labels"] = labels
        properties: dict[str, Any] = {"label": {"type": "string", "enum": labels}}
        if probabilities:
            properties["probabilities"] = {
                "type": "object",
                "properties": {label: {"type": "number", "minimum": 0, "maximum": 1} for label in labels},
                "required": labels,
                "additionalProperties": False,
            }
    elif family == "regression":
        properties = {"value": {"type": "number"}}
    else:
        properties = {
            "cluster": {"type": "integer", "minimum": 0, **({"maximum": clusters - 1} if clusters else {})},
            "distance": {"type": "number", "minimum": 0},
        }
    description["answer"] = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return description


# -- the step --------------------------------------------------------------------------------------
@dataclass
class Scored:
    """What one algorithm's evaluation produced, before the gate."""

    problem_type: str
    sections: dict[str, Any]
    metrics: dict[str, float]
    plots: list[str]
    test_rows: int
    target_std: float | None = None
    clusters: int | None = None
    probabilities: bool = True
    notes: list[str] = field(default_factory=list)
    # What the model answered for each test row, as the front door answers it (label, value or
    # cluster): the prediction baseline of the drift check.
    answers: list[Any] = field(default_factory=list)


def score_supervised(algorithm: str, spec: dict[str, Any], predictions: np.ndarray, y_true: np.ndarray, output_dir: Path, probabilities: bool) -> Scored:
    problem_type = spec["problem_type"]
    if problem_type == "regression":
        actual, predicted = y_true.astype(np.float64), np.asarray(predictions, dtype=np.float64).reshape(len(y_true))
        sections, flat = regression_metrics(actual, predicted)
        plots = plot_regression(actual, predicted, output_dir)
        return Scored(problem_type, sections, flat, plots, len(y_true), target_std=float(np.std(actual)), answers=predicted.tolist())
    labels = list(spec["labels"])
    actual = y_true.astype(np.int64)
    if probabilities:
        sections, flat = classification_metrics(actual, predictions, labels)
        plots = plot_classification(actual, predictions, labels, output_dir)
        answers = [labels[i] for i in _class_positions(predictions, len(labels))]
        return Scored(problem_type, sections, flat, plots, len(y_true), answers=answers)
    predicted = np.asarray(predictions).astype(np.int64)
    sections, flat = label_metrics(actual, predicted, labels)
    plots = plot_confusion_matrix(actual, predicted, labels, output_dir)
    source = "Autopilot's batch transform gives predicted labels only" if algorithm == contract.AUTOPILOT else "the custom model has no predict_proba"
    answers = [labels[int(i)] for i in predicted.tolist()]
    return Scored(problem_type, sections, flat, plots, len(y_true), probabilities=False, notes=[f"roc_auc omitted: {source}"], answers=answers)


def _class_positions(probabilities: np.ndarray, classes: int) -> list[int]:
    """The predicted class of each row: a binary model's one column is P(second label)."""
    scores = np.asarray(probabilities)
    if scores.ndim == 1 or scores.shape[1] == 1:
        return (scores.reshape(-1) >= 0.5).astype(np.int64).tolist() if classes == 2 else scores.reshape(-1).astype(np.int64).tolist()
    return scores.argmax(axis=1).tolist()


def score_xgboost(model_dir: Path, test_dir: Path, spec_dir: Path | None, output_dir: Path) -> tuple[Scored, dict[str, Any]]:
    import xgboost as xgb

    with tempfile.TemporaryDirectory() as scratch:
        extracted = load_model_dir(model_dir, Path(scratch))
        spec = load_spec([extracted, spec_dir])
        booster = xgb.Booster()
        booster.load_model(extracted / XGBOOST_MODEL_FILE_NAME)
    features, y_true = load_test_split(test_dir)
    predictions = booster.predict(xgb.DMatrix(features))
    return score_supervised(contract.XGBOOST, spec, predictions, y_true, output_dir, probabilities=spec["problem_type"] != "regression"), spec


def score_custom(model_dir: Path, test_dir: Path, spec_dir: Path | None, output_dir: Path) -> tuple[Scored, dict[str, Any]]:
    import joblib

    with tempfile.TemporaryDirectory() as scratch:
        extracted = load_model_dir(model_dir, Path(scratch))
        spec = load_spec([extracted, spec_dir])
        path = extracted / CUSTOM_MODEL_FILE_NAME
        if not path.is_file():
            raise FileNotFoundError(f"custom model not found at {CUSTOM_MODEL_FILE_NAME} in the model; your script must save its estimator with joblib there")
        estimator = joblib.load(path)
    features, y_true = load_test_split(test_dir)
    classes = None if spec["problem_type"] == "regression" else len(spec["labels"])
    predictions = custom_predictions(estimator, features, classes)
    with_probabilities = classes is not None and predictions.ndim == 2
    return score_supervised(contract.CUSTOM, spec, predictions, y_true, output_dir, probabilities=with_probabilities), spec


def score_autopilot(test_dir: Path, spec_dir: Path | None, predictions_dir: Path | None, output_dir: Path) -> tuple[Scored, dict[str, Any]]:
    if predictions_dir is None:
        raise ValueError("--predictions-dir is required for --algorithm autopilot (the batch transform output of the best candidate)")
    spec = load_spec([spec_dir])
    y_true = load_test_target(test_dir)
    predictions = read_autopilot_predictions(predictions_dir, len(y_true), spec)
    return score_supervised(contract.AUTOPILOT, spec, predictions, y_true, output_dir, probabilities=False), spec


def score_clustering(features: np.ndarray, centroids: np.ndarray, y_true: np.ndarray | None, spec: dict[str, Any], output_dir: Path) -> Scored:
    # Only class positions can be compared with clusters; a regression target is no partition.
    target = y_true if y_true is not None and spec.get("problem_type") != "regression" else None
    sections, flat = clustering_metrics(features, centroids, target, spec.get("labels") or None)
    plots = plot_cluster_label_matrix(sections, output_dir)
    notes = [] if target is not None else ["adjusted_rand_index omitted: the test split has no class target"]
    answers = nearest_centroids(features, centroids)[0].tolist()
    return Scored("clustering", sections, flat, plots, len(features), clusters=len(centroids), notes=notes, answers=answers)


def evaluate(
    model_dir: Path | None,
    test_dir: Path,
    output_dir: Path,
    *,
    algorithm: str = contract.DEFAULT_ALGORITHM,
    spec_dir: Path | None = None,
    predictions_dir: Path | None = None,
    automl_job_name: str | None = None,
    gate: GateSettings | None = None,
    sagemaker_client: Any = None,
    train_dir: Path | None = None,
) -> dict[str, Any]:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    if model_dir is None and algorithm != contract.AUTOPILOT:
        raise ValueError(f"--model-dir is required for --algorithm {algorithm}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    test_dir = Path(test_dir)
    spec_dir = Path(spec_dir) if spec_dir is not None else None
    extra: dict[str, Any] = {}
    if algorithm == contract.XGBOOST:
        scored, spec = score_xgboost(Path(model_dir or ""), test_dir, spec_dir, output_dir)
    elif algorithm == contract.CUSTOM:
        scored, spec = score_custom(Path(model_dir or ""), test_dir, spec_dir, output_dir)
    elif algorithm == contract.AUTOPILOT:
        scored, spec = score_autopilot(test_dir, spec_dir, Path(predictions_dir) if predictions_dir else None, output_dir)
        extra["autopilot_leaderboard"] = leaderboard_section(automl_job_name, sagemaker_client)
    else:
        spec = load_spec([spec_dir])
        features, y_true = load_test_split(test_dir)
        scored = score_clustering(features, load_kmeans_centroids(Path(model_dir or "")), y_true, spec, output_dir)
    metrics = {name: _finite_or_none(value) for name, value in scored.metrics.items()}
    verdict = decide_gate(scored.problem_type, metrics, gate or GateSettings(), scored.target_std)
    report = {
        **scored.sections,
        **extra,
        SUMMARY_KEY: {
            "problem_type": scored.problem_type,
            "algorithm": algorithm,
            "metrics": metrics,
            "test_rows": scored.test_rows,
            "plots": scored.plots,
            "notes": scored.notes,
            "gate": verdict,
        },
    }
    (output_dir / EVALUATION_FILE_NAME).write_text(json.dumps(report, indent=2, allow_nan=False, default=str))
    description = model_description(algorithm, scored.problem_type, spec, clusters=scored.clusters, probabilities=scored.probabilities)
    (output_dir / MODEL_DESCRIPTION_FILE_NAME).write_text(json.dumps(description, indent=2))
    if train_dir is not None:
        write_baseline(output_dir, spec, Path(train_dir), spec_dir, scored)
    return report


# -- the drift check's baseline (decision 0013) ----------------------------------------------------
def numeric_statistics(name: str, values: np.ndarray, missing: int) -> dict[str, Any]:
    """Model Monitor's statistics of a numeric feature: KLL-style buckets of equal width over the
    training range (one bucket for a constant feature)."""
    values = np.asarray(values, dtype=np.float64)
    integral = bool(len(values)) and bool(np.all(values == np.round(values)))
    common = {"num_present": len(values), "num_missing": int(missing)}
    if not len(values):
        return {"name": name, "inferred_type": "Fractional", "numerical_statistics": {"common": common}}
    low, high = float(values.min()), float(values.max())
    if low == high:
        buckets = [{"lower_bound": low, "upper_bound": high, "count": len(values)}]
    else:
        counts, edges = np.histogram(values, bins=HISTOGRAM_BUCKETS, range=(low, high))
        buckets = [{"lower_bound": float(edges[i]), "upper_bound": float(edges[i + 1]), "count": int(counts[i])} for i in range(len(counts))]
    statistics = {
        "common": common,
        "mean": float(values.mean()),
        "sum": float(values.sum()),
        "std_dev": float(values.std()),
        "min": low,
        "max": high,
        "distribution": {"kll": {"buckets": buckets}},
    }
    return {"name": name, "inferred_type": "Integral" if integral else "Fractional", "numerical_statistics": statistics}


def categorical_statistics(name: str, values: Sequence[str], missing: int) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    statistics = {
        "common": {"num_present": len(values), "num_missing": int(missing)},
        "distinct_count": float(len(counts)),
        "distribution": {"categorical": {"buckets": [{"value": value, "count": count} for value, count in sorted(counts.items())]}},
    }
    return {"name": name, "inferred_type": "String", "string_statistics": statistics}


def feature_statistics(spec: dict[str, Any], train: np.ndarray, completeness: dict[str, float]) -> list[dict[str, Any]]:
    """Each raw feature column of the training split, decoded from the encoded matrix: numeric
    columns as they are (imputed: the present share comes from preprocess's completeness),
    categorical columns from their one-hot block."""
    position = {name: index for index, name in enumerate(spec["encoded_columns"])}
    vocabulary = spec.get("categorical_vocabulary", {})
    rows = len(train)
    features = []
    for name in spec["feature_columns"]:
        share = float(completeness.get(name, 1.0))
        missing = round(rows * (1.0 - share))
        if name in vocabulary:
            block = train[:, [position[f"{name}={value}"] for value in vocabulary[name]]]
            chosen = block.argmax(axis=1)
            values = [vocabulary[name][i] for i, hot in zip(chosen.tolist(), (block.max(axis=1) > 0).tolist(), strict=True) if hot]
            features.append(categorical_statistics(name, values, missing))
        else:
            features.append(numeric_statistics(name, train[:, position[name]], missing))
    return features


def constraints_of(features: list[dict[str, Any]], completeness: dict[str, float]) -> dict[str, Any]:
    """Model Monitor's constraints: completeness and category domains per feature, and its
    monitoring_config defaults (every value must have the baseline's type and be in its domain)."""
    constrained = []
    for feature in features:
        entry: dict[str, Any] = {
            "name": feature["name"],
            "inferred_type": feature["inferred_type"],
            "completeness": float(completeness.get(feature["name"], 1.0)),
        }
        if feature["inferred_type"] == "String":
            entry["string_constraints"] = {"domains": [b["value"] for b in feature["string_statistics"]["distribution"]["categorical"]["buckets"]]}
        else:
            entry["num_constraints"] = {"is_non_negative": bool(feature["numerical_statistics"].get("min", 0.0) >= 0)}
        constrained.append(entry)
    config = {
        "evaluate_constraints": "Enabled",
        "emit_metrics": "Enabled",
        "datatype_check_threshold": 1.0,
        "domain_content_threshold": 1.0,
        "distribution_constraints": {"perform_comparison": "Enabled", "comparison_threshold": 0.1, "comparison_method": "Robust"},
    }
    return {"version": 0.0, "features": constrained, "monitoring_config": config}


def write_baseline(output_dir: Path, spec: dict[str, Any], train_dir: Path, spec_dir: Path | None, scored: Scored) -> list[str]:
    train = np.load(train_dir / SPLIT_FEATURES_FILE, allow_pickle=False)
    summary_path = (spec_dir or train_dir) / DATA_SUMMARY_FILE_NAME
    completeness = json.loads(summary_path.read_text()).get(COMPLETENESS_KEY, {}) if summary_path.is_file() else {}
    features = feature_statistics(spec, train, completeness)
    statistics = {"version": 0.0, "dataset": {"item_count": len(train)}, "features": features}
    if scored.problem_type == "regression":
        answer = numeric_statistics(PREDICTION_FEATURE, np.asarray(scored.answers, dtype=np.float64), 0)
    else:
        answer = categorical_statistics(PREDICTION_FEATURE, [str(a) for a in scored.answers], 0)
    predictions = {"version": 0.0, "dataset": {"item_count": len(scored.answers)}, "features": [answer]}
    written = []
    for name, document in (
        (STATISTICS_FILE_NAME, statistics),
        (CONSTRAINTS_FILE_NAME, constraints_of(features, completeness)),
        (PREDICTION_STATISTICS_FILE_NAME, predictions),
    ):
        (output_dir / name).write_text(json.dumps(document, indent=1, allow_nan=False))
        written.append(name)
    return written


def leaderboard_section(job_name: str | None, client: Any) -> dict[str, Any]:
    """The AutoML job's candidates. A failed listing is recorded, not fatal: the best candidate's
    test metrics (what the gate reads) do not depend on it."""
    if not job_name:
        return {"job_name": None, "candidates": [], "error": "no --automl-job-name given; the leaderboard was not read"}
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # both images have boto3; a bare interpreter does not
        return {"job_name": job_name, "candidates": [], "error": "boto3 is not installed; the leaderboard was not read"}
    try:
        candidates = autopilot_leaderboard(job_name, client)
    except (BotoCoreError, ClientError) as error:  # no credentials or region, endpoint unreachable, access denied
        print(f"evaluate: the Autopilot leaderboard of {job_name} could not be read: {error}", file=sys.stderr, flush=True)
        return {"job_name": job_name, "candidates": [], "error": f"ListCandidatesForAutoMLJob failed: {error}"}
    best = candidates[0]["name"] if candidates and candidates[0]["value"] is not None else None
    return {"job_name": job_name, "best_candidate": best, "candidates": candidates}


def load_kmeans_centroids(model_dir: Path) -> np.ndarray:
    """The centroids of the built-in K-Means model: the first array of its `model_algo-1`."""
    with tempfile.TemporaryDirectory() as scratch:
        extracted = load_model_dir(model_dir, Path(scratch))
        path = extracted / KMEANS_MODEL_FILE_NAME
        if not path.is_file():
            raise FileNotFoundError(f"K-Means model not found at {KMEANS_MODEL_FILE_NAME} in {model_dir}; expected the built-in K-Means training output")
        # read_mxnet_ndarrays is the NDArray-list parser the K-Means change adds to this file;
        # drop the two lint markers when both are merged.
        arrays = read_mxnet_ndarrays(path)
    if not arrays:
        raise ValueError(f"{KMEANS_MODEL_FILE_NAME} holds no arrays; expected the centroids first")
    return np.asarray(arrays[0], dtype=np.float64)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate the trained model on the test split and decide the gate")
    parser.add_argument("--algorithm", default=contract.DEFAULT_ALGORITHM, choices=ALGORITHMS)
    parser.add_argument("--model-dir", type=Path, default=Path("/opt/ml/processing/model"))
    parser.add_argument("--test-dir", type=Path, default=Path("/opt/ml/processing/test"))
    parser.add_argument("--spec-dir", type=Path, default=Path("/opt/ml/processing/spec"))
    parser.add_argument("--predictions-dir", type=Path, default=None, help="autopilot: the batch transform output (*.out)")
    parser.add_argument("--automl-job-name", default=None, help="autopilot: the AutoML job whose candidates form the leaderboard")
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/evaluation"))
    parser.add_argument("--train-dir", type=Path, default=None, help="the training split: the drift check's baseline is written beside the evaluation")
    parser.add_argument("--metric", default=GateSettings.metric, help="the configured pipeline.metric")
    parser.add_argument("--metric-threshold", type=float, default=GateSettings.metric_threshold)
    parser.add_argument("--rmse-threshold", type=float, default=GateSettings.rmse_threshold, help="regression default gate; 0 = the test target's std")
    parser.add_argument("--silhouette-threshold", type=float, default=GateSettings.silhouette_threshold)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    gate = GateSettings(args.metric, args.metric_threshold, args.rmse_threshold, args.silhouette_threshold)
    try:
        report = evaluate(
            None if args.algorithm == contract.AUTOPILOT else args.model_dir,
            args.test_dir,
            args.output_dir,
            algorithm=args.algorithm,
            spec_dir=args.spec_dir,
            predictions_dir=args.predictions_dir,
            automl_job_name=args.automl_job_name,
            gate=gate,
            train_dir=args.train_dir,
        )
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr, flush=True)
        return 2
    summary = report[SUMMARY_KEY]
    print(f"evaluate: {args.algorithm} {summary['problem_type']} on {summary['test_rows']} test rows: {json.dumps(summary['metrics'])}", flush=True)
    print(f"evaluate: {summary['gate']['message']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
