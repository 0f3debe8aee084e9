"""Local twin of SageMaker's built-in K-Means: training, its model artifact, and its inference container.

`sagelab run` runs `train` where the pipeline has a Training step with the K-Means image, and the
local serving path wraps a trained model in `KMeansContainer`. Both speak the built-in's contract:

- Training: channel `train` (required) and `test` (optional) hold CSV files
  (`text/csv;label_size=0`: numbers only, no header, no label column). Hyperparameters are the
  built-in's names and string values (`k`, `feature_dim`, `init_method`, `epochs`,
  `mini_batch_size`, `extra_center_factor`, `local_lloyd_*`, `half_life_time_size`,
  `eval_metrics`, `force_dense` and the `_`-prefixed internal ones its `default-input.json`
  lists) and are validated as strictly: an unknown name or a bad value fails the job before any
  data is read. The model is `model_algo-1`, an MXNet NDArray list file whose array 0 holds the
  centroids, float32 `(k, feature_dim)`; `write_mxnet_ndarrays` writes it byte for byte as
  MXNet 1.9's `mx.nd.save` does, so a model trained here loads with MXNet, and one trained on AWS
  serves here. The log carries the built-in's metric lines
  (`#quality_metric: host=algo-1, train msd <loss>=...`, `test msd` / `test ssd`), which the
  K-Means image's metric definitions (`train:msd`, `test:msd`, `test:ssd`) parse.
- Serving: `text/csv`, `application/json` (`{"instances": [{"features": [...]}]}` or
  `{"instances": [{"data": {"features": {"values": [...]}}}]}`) and `application/jsonlines`
  (`{"features": [...]}` per line) in; `application/json`
  (`{"predictions": [{"closest_cluster": 3.0, "distance_to_cluster": 1.23}]}`),
  `application/jsonlines` and `text/csv` (`3.0,1.23`) out. The cluster index is a float and the
  distance is the Euclidean (not squared) distance to the closest centroid, both at float32
  precision, as the built-in answers.

Where this twin differs from SageMaker's (results are close on the same data, not identical):

- Algorithm. SageMaker streams mini-batches through its own web-scale k-means, keeping
  `k * extra_center_factor` centers, then shrinks them to `k` with a weighted local Lloyd's
  (`local_lloyd_*`). This twin keeps that two-stage shape with scikit-learn: `MiniBatchKMeans`
  over the rows with `k * extra_center_factor` centers (`init_method`, `mini_batch_size` as its
  batch size, `epochs` as its passes over the data), then a `KMeans` over those centers weighted
  by their cluster sizes (`local_lloyd_init_method`, `local_lloyd_max_iter`, `local_lloyd_tol`,
  `local_lloyd_num_trials` as its `n_init`). `extra_center_factor=auto` becomes 10 and
  `local_lloyd_num_trials=auto` becomes 10 here (the values a published K-Means log shows for a
  small job); SageMaker derives them from the data. Both stages are capped at the number of rows.
- Randomness. A fixed seed, so the same data and hyperparameters give the same centroids on every
  run; SageMaker's initialisation is random per job.
- `half_life_time_size` is validated but not applied: scikit-learn's mini-batch updates have no
  exponential decay of a point's weight.
- One host, CPU only: no distributed training (`ShardedByS3Key` channels are simply all read), no
  GPU, no Pipe mode, no `application/x-recordio-protobuf` training data or requests. The
  `_`-prefixed tuning knobs (`_kvstore`, `_num_gpus`, ...) are accepted and ignored.
- `k` must be at least 2 (the SageMaker SDK's `KMeans` refuses `k=1`; a single cluster also has no
  silhouette for Evaluate to gate on) and at most the number of training rows.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_steps.evaluate import _MXNET_DENSE_STORAGE, _MXNET_DTYPES, _MXNET_LIST_MAGIC, _MXNET_V2_MAGIC, read_mxnet_ndarrays

MODEL_FILE_NAME = "model_algo-1"
HOST = "algo-1"  # the built-in names its single training host so; its metric lines carry it
TRAIN_CHANNEL = "train"
TEST_CHANNEL = "test"
# MXNet's Context for CPU memory (dev_type kCPU = 1, dev_id 0): what the built-in's file records.
_MXNET_CPU_CONTEXT = (1, 0)
# The fixed seed that makes local runs reproducible (SageMaker's own runs are not).
RANDOM_STATE = 0
# `auto` as this twin resolves it (see the module docstring).
AUTO_EXTRA_CENTER_FACTOR = 10
AUTO_LOCAL_LLOYD_NUM_TRIALS = 10
INIT_METHODS = {"random": "random", "kmeans++": "k-means++"}  # built-in name -> scikit-learn's
EVAL_METRICS = ("msd", "ssd")
# The built-in's defaults (its default-input.json, as a training job's log prints it).
DEFAULT_HYPERPARAMETERS: Mapping[str, str] = {
    "init_method": "random",
    "mini_batch_size": "5000",
    "epochs": "1",
    "extra_center_factor": "auto",
    "local_lloyd_max_iter": "300",
    "local_lloyd_tol": "0.0001",
    "local_lloyd_init_method": "kmeans++",
    "local_lloyd_num_trials": "auto",
    "half_life_time_size": "0",
    "eval_metrics": '["msd"]',
    "force_dense": "true",
    "_disable_wait_to_read": "false",
    "_enable_profiler": "false",
    "_kvstore": "auto",
    "_log_level": "info",
    "_num_gpus": "auto",
    "_num_kv_servers": "1",
    "_num_slices": "1",
    "_tuning_objective_metric": "",
}
REQUIRED_HYPERPARAMETERS = ("k", "feature_dim")
CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
REQUEST_CONTENT_TYPES = (CSV, JSON, JSONLINES)
RESPONSE_CONTENT_TYPES = (JSON, JSONLINES, CSV)
_INTEGER = re.compile(r"[+]?\d+")


class BuiltinAlgorithmError(ValueError):
    """What the built-in algorithm would refuse (hyperparameters, data, a request); the message says what is expected."""


# --- The model artifact ------------------------------------------------------------------------------


def write_mxnet_ndarrays(path: Path, arrays: Sequence[np.ndarray], names: Sequence[str] | None = None) -> None:
    """Write dense arrays as MXNet 1.x's `mx.nd.save` does (V2 records, CPU context), `names` as a saved dict's keys.

    The format is read back by `pipeline_steps.evaluate.read_mxnet_ndarrays`, whose comment
    documents the layout. 0-d arrays are refused: MXNet's legacy (V2) shape semantics read ndim 0
    as "no array".
    """
    if names is not None and len(names) != len(arrays):
        raise ValueError(f"write_mxnet_ndarrays got {len(arrays)} arrays but {len(names)} names; expected one name per array or no names")
    flags = {dtype: flag for flag, dtype in _MXNET_DTYPES.items()}
    out = io.BytesIO()
    out.write(np.array([_MXNET_LIST_MAGIC, 0, len(arrays)], dtype="<u8").tobytes())
    for index, array in enumerate(arrays):
        value = np.asarray(array)
        little_endian = value.dtype.newbyteorder("<") if value.dtype.byteorder not in ("|", "<") else value.dtype
        flag = flags.get(little_endian)
        if flag is None:
            raise ValueError(f"array {index} has dtype {value.dtype}; MXNet's NDArray file holds one of {sorted({d.name for d in flags})}")
        if value.ndim == 0:
            raise ValueError(f"array {index} is 0-d; MXNet's NDArray file (V2) has no 0-d arrays, reshape it to (1,)")
        out.write(np.array([_MXNET_V2_MAGIC], dtype="<u4").tobytes())
        out.write(np.array([_MXNET_DENSE_STORAGE, value.ndim], dtype="<i4").tobytes())
        out.write(np.array(value.shape, dtype="<i8").tobytes())
        out.write(np.array([*_MXNET_CPU_CONTEXT, flag], dtype="<i4").tobytes())
        out.write(np.ascontiguousarray(value, dtype=little_endian).tobytes())
    encoded = [name.encode("utf-8") for name in names or ()]
    out.write(np.array([len(encoded)], dtype="<u8").tobytes())
    for name in encoded:
        out.write(np.array([len(name)], dtype="<u8").tobytes())
        out.write(name)
    Path(path).write_bytes(out.getvalue())


# --- Hyperparameters -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KMeansHyperparameters:
    k: int
    feature_dim: int
    init_method: str
    mini_batch_size: int
    epochs: int
    extra_center_factor: int | None  # None = auto
    local_lloyd_max_iter: int
    local_lloyd_tol: float
    local_lloyd_init_method: str
    local_lloyd_num_trials: int | None  # None = auto
    half_life_time_size: int
    eval_metrics: tuple[str, ...]


def _integer(values: Mapping[str, str], name: str, minimum: int, expected: str) -> int:
    raw = values[name]
    if not _INTEGER.fullmatch(raw.strip()) or int(raw) < minimum:
        raise BuiltinAlgorithmError(f"hyperparameter {name}={raw!r} is invalid: expected {expected}")
    return int(raw)


def _integer_or_auto(values: Mapping[str, str], name: str) -> int | None:
    if values[name].strip().lower() == "auto":
        return None
    return _integer(values, name, 1, "a positive integer or 'auto'")


def _choice(values: Mapping[str, str], name: str, allowed: Sequence[str]) -> str:
    raw = values[name]
    if raw not in allowed:
        raise BuiltinAlgorithmError(f"hyperparameter {name}={raw!r} is invalid: expected one of {', '.join(allowed)}")
    return raw


def _eval_metrics(raw: str) -> tuple[str, ...]:
    expected = 'a JSON list of "msd" and/or "ssd", e.g. ["msd"] or ["msd", "ssd"]'
    try:
        metrics = json.loads(raw)
    except json.JSONDecodeError:
        raise BuiltinAlgorithmError(f"hyperparameter eval_metrics={raw!r} is invalid: expected {expected}") from None
    if not isinstance(metrics, list) or not metrics or any(m not in EVAL_METRICS for m in metrics):
        raise BuiltinAlgorithmError(f"hyperparameter eval_metrics={raw!r} is invalid: expected {expected}")
    return tuple(dict.fromkeys(metrics))


def parse_hyperparameters(hyperparameters: Mapping[str, str]) -> KMeansHyperparameters:
    """Validate the built-in's hyperparameters (string values, as CreateTrainingJob carries them) over its defaults."""
    given = {str(name): str(value) for name, value in hyperparameters.items()}
    known = set(DEFAULT_HYPERPARAMETERS) | set(REQUIRED_HYPERPARAMETERS)
    unknown = sorted(set(given) - known)
    if unknown:
        raise BuiltinAlgorithmError(f"unknown K-Means hyperparameter(s) {', '.join(unknown)}: expected names among {', '.join(sorted(known))}")
    missing = [name for name in REQUIRED_HYPERPARAMETERS if name not in given]
    if missing:
        raise BuiltinAlgorithmError(
            f"missing required K-Means hyperparameter(s) {', '.join(missing)}: k is the number of clusters, feature_dim the CSV's width"
        )
    values = {**DEFAULT_HYPERPARAMETERS, **given}
    if values["force_dense"].lower() not in ("true", "false"):
        raise BuiltinAlgorithmError(f"hyperparameter force_dense={values['force_dense']!r} is invalid: expected true or false")
    tol_raw = values["local_lloyd_tol"]
    try:
        tol = float(tol_raw)
    except ValueError:
        tol = math.nan
    if not 0.0 <= tol <= 1.0:
        raise BuiltinAlgorithmError(f"hyperparameter local_lloyd_tol={tol_raw!r} is invalid: expected a number in [0, 1]")
    return KMeansHyperparameters(
        k=_integer(values, "k", 2, "an integer of at least 2 (the number of clusters)"),
        feature_dim=_integer(values, "feature_dim", 1, "a positive integer (the number of columns in the CSV)"),
        init_method=_choice(values, "init_method", tuple(INIT_METHODS)),
        mini_batch_size=_integer(values, "mini_batch_size", 1, "a positive integer"),
        epochs=_integer(values, "epochs", 1, "a positive integer"),
        extra_center_factor=_integer_or_auto(values, "extra_center_factor"),
        local_lloyd_max_iter=_integer(values, "local_lloyd_max_iter", 1, "a positive integer"),
        local_lloyd_tol=tol,
        local_lloyd_init_method=_choice(values, "local_lloyd_init_method", tuple(INIT_METHODS)),
        local_lloyd_num_trials=_integer_or_auto(values, "local_lloyd_num_trials"),
        half_life_time_size=_integer(values, "half_life_time_size", 0, "a non-negative integer"),
        eval_metrics=_eval_metrics(values["eval_metrics"]),
    )


# --- Data ----------------------------------------------------------------------------------------------


def _parse_number(cell: str, where: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise BuiltinAlgorithmError(f"{where} is {cell.strip()!r}; expected a number (text/csv;label_size=0: numbers only, no header)") from None
    if not math.isfinite(value):
        raise BuiltinAlgorithmError(f"{where} is {cell.strip()!r}; expected a finite number")
    return value


def _parse_csv_rows(text: str, source: str) -> list[list[float]]:
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        rows.append([_parse_number(cell, f"{source} line {line_number} column {column}") for column, cell in enumerate(line.split(","), start=1)])
    return rows


def _rows_to_matrix(rows: list[list[float]], source: str) -> np.ndarray:
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        first = len(rows[0])
        line = next(i for i, row in enumerate(rows, start=1) if len(row) != first)
        raise BuiltinAlgorithmError(f"{source}: row {line} has {len(rows[line - 1])} values but row 1 has {first}; expected every row to have the same width")
    return np.array(rows, dtype=np.float64).reshape(len(rows), widths.pop() if widths else 0)


def _read_csv_file(file: Path, source: str) -> np.ndarray:
    """pandas' C parser for speed (MNIST-sized channels); on anything it rejects or fills with NaN, our parser, which names the line and column."""
    import pandas as pd

    try:
        matrix = pd.read_csv(file, header=None, dtype=np.float64).to_numpy()
        if np.isfinite(matrix).all():  # ragged rows come back NaN-padded; a NaN or inf cell is refused below
            return matrix
    except (ValueError, UnicodeDecodeError):  # pandas' ParserError and EmptyDataError are ValueErrors
        pass
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BuiltinAlgorithmError(f"{source} is not UTF-8 text; expected CSV (text/csv;label_size=0)") from None
    return _rows_to_matrix(_parse_csv_rows(text, source), source)


def read_channel(directory: Path, channel: str) -> np.ndarray:
    """All rows of every file in a channel directory (files in path order), as float64."""
    files = sorted(p for p in Path(directory).rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise BuiltinAlgorithmError(f"channel {channel!r} ({directory}) has no files; expected CSV files of numbers")
    matrices = [_read_csv_file(file, f"channel {channel!r} file {file.name}") for file in files]
    widths = {m.shape[1] for m in matrices if len(m)}
    if len(widths) > 1:
        raise BuiltinAlgorithmError(f"channel {channel!r} files have different widths {sorted(widths)}; expected one width (feature_dim) in every file")
    rows = np.concatenate([m for m in matrices if len(m)]) if widths else np.empty((0, 0))
    if not len(rows):
        raise BuiltinAlgorithmError(f"channel {channel!r} ({directory}) has no rows; expected CSV rows of numbers")
    return rows


def _check_width(rows: np.ndarray, feature_dim: int, channel: str) -> None:
    if rows.shape[1] != feature_dim:
        raise BuiltinAlgorithmError(
            f"hyperparameter feature_dim={feature_dim} but channel {channel!r} has {rows.shape[1]} columns; expected feature_dim to equal the CSV's width"
        )


# --- Training ------------------------------------------------------------------------------------------


def squared_distances(rows: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance from every row to every centroid, (n, k), in float64."""
    rows = np.asarray(rows, dtype=np.float64)
    centers = np.asarray(centroids, dtype=np.float64)
    distances = (rows**2).sum(axis=1)[:, None] - 2.0 * rows @ centers.T + (centers**2).sum(axis=1)[None, :]
    return np.maximum(distances, 0.0)  # rounding can make a zero distance slightly negative


def fit_centroids(rows: np.ndarray, params: KMeansHyperparameters, log: Callable[[str], None]) -> np.ndarray:
    """The two stages described in the module docstring; returns float32 centroids (k, feature_dim)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    factor = params.extra_center_factor or AUTO_EXTRA_CENTER_FACTOR
    if params.extra_center_factor is None:
        log(f"'extra_center_factor' was set to 'auto', evaluated to {factor}.")
    centers = min(params.k * factor, len(rows))
    streaming = MiniBatchKMeans(
        n_clusters=centers,
        init=INIT_METHODS[params.init_method],
        batch_size=min(params.mini_batch_size, len(rows)),
        max_iter=params.epochs,
        n_init=1,
        random_state=RANDOM_STATE,
    ).fit(rows)
    weights = np.bincount(streaming.labels_, minlength=centers).astype(np.float64)
    occupied = weights > 0  # an empty center carries no data; Lloyd's over it would only add noise
    candidates, weights = streaming.cluster_centers_[occupied], weights[occupied]
    if len(candidates) < params.k:  # rows that coincide can leave fewer distinct centers than k
        candidates, weights = rows, np.ones(len(rows))
    log(f"shrinking {len(candidates)} centers into {params.k}")
    trials = params.local_lloyd_num_trials or AUTO_LOCAL_LLOYD_NUM_TRIALS
    final = KMeans(
        n_clusters=params.k,
        init=INIT_METHODS[params.local_lloyd_init_method],
        n_init=trials,
        max_iter=params.local_lloyd_max_iter,
        tol=params.local_lloyd_tol,
        random_state=RANDOM_STATE,
    ).fit(candidates, sample_weight=weights)
    return final.cluster_centers_.astype(np.float32)


def train(channels: Mapping[str, Path], hyperparameters: Mapping[str, str], model_dir: Path, log: Callable[[str], None]) -> dict[str, float]:
    """Train as the built-in K-Means does: write `model_dir/model_algo-1`, log its metric lines, return the metrics by their SageMaker names."""
    params = parse_hyperparameters(hyperparameters)
    log(f"Final configuration: {json.dumps({**DEFAULT_HYPERPARAMETERS, **{str(k): str(v) for k, v in hyperparameters.items()}}, sort_keys=True)}")
    if TRAIN_CHANNEL not in channels:
        raise BuiltinAlgorithmError(
            f"no {TRAIN_CHANNEL!r} channel (given: {', '.join(sorted(channels)) or 'none'}); K-Means expects its training CSV in channel 'train'"
        )
    unexpected = sorted(set(channels) - {TRAIN_CHANNEL, TEST_CHANNEL})
    if unexpected:
        raise BuiltinAlgorithmError(f"unexpected channel(s) {', '.join(unexpected)}; K-Means reads only 'train' and 'test'")
    rows = read_channel(channels[TRAIN_CHANNEL], TRAIN_CHANNEL)
    _check_width(rows, params.feature_dim, TRAIN_CHANNEL)
    if params.k > len(rows):
        raise BuiltinAlgorithmError(f"hyperparameter k={params.k} but channel 'train' has only {len(rows)} rows; expected k to be at most the number of rows")
    test_rows = None
    if TEST_CHANNEL in channels:
        test_rows = read_channel(channels[TEST_CHANNEL], TEST_CHANNEL)
        _check_width(test_rows, params.feature_dim, TEST_CHANNEL)
    log(f"processed a total of {len(rows)} examples")

    centroids = fit_centroids(rows, params, log)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    write_mxnet_ndarrays(Path(model_dir) / MODEL_FILE_NAME, [centroids])

    metrics = {"train:msd": float(squared_distances(rows, centroids).min(axis=1).mean())}
    log(f"#quality_metric: host={HOST}, train msd <loss>={metrics['train:msd']}")
    if test_rows is None:
        log("Test data is not provided.")
    else:
        closest = squared_distances(test_rows, centroids).min(axis=1)
        scores = {"msd": float(closest.mean()), "ssd": float(closest.sum())}
        for metric in params.eval_metrics:
            metrics[f"test:{metric}"] = scores[metric]
            log(f"#quality_metric: host={HOST}, test {metric} <loss>={scores[metric]}")
    return metrics


# --- Serving -------------------------------------------------------------------------------------------


def _media_type(header: str) -> str:
    return header.split(";")[0].strip().lower()


def _float32_number(value: float) -> float:
    """A float32 result as the built-in reports it, printed at float32's shortest precision (1.23, not 1.2300000190734863)."""
    return float(str(np.float32(value)))


class KMeansContainer:
    """Answers invocations as the built-in K-Means inference container does, from a `model_algo-1` in `model_dir`."""

    def __init__(self, model_dir: Path) -> None:
        path = Path(model_dir) / MODEL_FILE_NAME
        if not path.is_file():
            raise BuiltinAlgorithmError(f"no {MODEL_FILE_NAME} in {model_dir}; expected the K-Means model (the extracted model.tar.gz)")
        try:
            arrays = read_mxnet_ndarrays(path)
        except ValueError as error:
            raise BuiltinAlgorithmError(str(error)) from None
        if not arrays or arrays[0].ndim != 2 or not np.issubdtype(arrays[0].dtype, np.floating) or not len(arrays[0]):
            found = f"{arrays[0].dtype} array of shape {arrays[0].shape}" if arrays else "no arrays"
            raise BuiltinAlgorithmError(f"{path}: expected the centroids, a float (k, feature_dim) array, as array 0; found {found}")
        self.centroids = arrays[0].astype(np.float32)
        self.k, self.feature_dim = self.centroids.shape

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Assign each row of the request to its closest centroid; returns (body, content type)."""
        answer_type = _media_type(accept or JSON)
        if answer_type in ("*/*", ""):
            answer_type = JSON
        if answer_type not in RESPONSE_CONTENT_TYPES:
            raise BuiltinAlgorithmError(f"accept {accept!r} is not supported; expected one of {', '.join(RESPONSE_CONTENT_TYPES)}")
        rows = self.parse_request(body, content_type)
        distances = squared_distances(rows, self.centroids)
        closest = distances.argmin(axis=1)
        predictions = [
            {"closest_cluster": float(cluster), "distance_to_cluster": _float32_number(math.sqrt(distances[i, cluster]))} for i, cluster in enumerate(closest)
        ]
        if answer_type == JSON:
            return json.dumps({"predictions": predictions}).encode(), JSON
        if answer_type == JSONLINES:
            return "".join(json.dumps(p) + "\n" for p in predictions).encode(), JSONLINES
        return "".join(f"{p['closest_cluster']},{p['distance_to_cluster']}\n" for p in predictions).encode(), CSV

    def parse_request(self, body: bytes, content_type: str) -> np.ndarray:
        """The request's rows as a float64 (n, feature_dim) matrix, or BuiltinAlgorithmError saying what is wrong."""
        media = _media_type(content_type or "")
        if media not in REQUEST_CONTENT_TYPES:
            raise BuiltinAlgorithmError(f"content type {content_type!r} is not supported; expected one of {', '.join(REQUEST_CONTENT_TYPES)}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BuiltinAlgorithmError(f"the {media} request body is not UTF-8 text") from None
        if not text.strip():
            raise BuiltinAlgorithmError(f"the {media} request body is empty; expected at least one row of {self.feature_dim} numbers")
        if media == CSV:
            rows = _parse_csv_rows(text, "request")
        elif media == JSON:
            rows = self._json_rows(text)
        else:
            rows = [self._features(self._load_json(line, f"line {n}"), f"line {n}") for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        for index, row in enumerate(rows, start=1):
            if len(row) != self.feature_dim:
                raise BuiltinAlgorithmError(f"request row {index} has {len(row)} values; expected {self.feature_dim} (the model's feature_dim)")
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.feature_dim)

    @staticmethod
    def _load_json(text: str, where: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise BuiltinAlgorithmError(f"request {where} is not valid JSON ({error})") from None

    def _json_rows(self, text: str) -> list[list[float]]:
        document = self._load_json(text, "body")
        expected = '{"instances": [{"features": [...]}, ...]}'
        if not isinstance(document, dict) or not isinstance(document.get("instances"), list) or not document["instances"]:
            raise BuiltinAlgorithmError(f"the application/json request has no non-empty 'instances' list; expected {expected}")
        return [self._features(instance, f"instance {i}") for i, instance in enumerate(document["instances"], start=1)]

    def _features(self, instance: Any, where: str) -> list[float]:
        """One instance: `{"features": [...]}` or `{"data": {"features": {"values": [...]}}}` (with `keys` for a sparse vector)."""
        if isinstance(instance, dict) and isinstance(instance.get("data"), dict):
            instance = instance["data"]
        features = instance.get("features") if isinstance(instance, dict) else None
        if isinstance(features, dict):
            features = self._tensor_values(features, where)
        if not isinstance(features, list):
            raise BuiltinAlgorithmError(f"request {where} has no 'features' list; expected {{\"features\": [{self.feature_dim} numbers]}}")
        return [self._number(value, f"request {where} feature {j}") for j, value in enumerate(features, start=1)]

    def _tensor_values(self, tensor: dict[str, Any], where: str) -> list[Any]:
        values, keys = tensor.get("values"), tensor.get("keys") or []
        if not isinstance(values, list) or not isinstance(keys, list):
            raise BuiltinAlgorithmError(f"request {where} 'features' has no 'values' list; expected {{\"values\": [...], \"keys\": [...]}}")
        if not keys:
            return values
        if len(keys) != len(values) or any(not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < self.feature_dim for key in keys):
            raise BuiltinAlgorithmError(f"request {where} has sparse 'keys' {keys}; expected one index in [0, {self.feature_dim}) per value")
        dense: list[Any] = [0.0] * self.feature_dim
        for key, value in zip(keys, values, strict=True):
            dense[key] = value
        return dense

    @staticmethod
    def _number(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BuiltinAlgorithmError(f"{where} is {value!r}; expected a finite number")
        return float(value)
