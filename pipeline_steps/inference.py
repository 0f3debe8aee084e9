"""Inference handlers for the SageMaker XGBoost and SKLearn serving containers (and `sagelab serve`).

The container calls `model_fn(model_dir)` once, then per request
`output_fn(predict_fn(input_fn(body, content_type), model), accept)`.

The model directory holds the feature spec and either an XGBoost booster (`xgboost-model.json`,
written by train.py) or a scikit-learn estimator saved with joblib (`model.joblib`, written by your
own script under train_custom.py). xgboost is imported only for a booster: the SKLearn image has none.

Accepted bodies (raw feature rows; the feature spec in the model does imputation and encoding):
    application/json  {"instances": [[v1, v2, ...], ...]}            rows in feature-column order
                      {"instances": [{"col": v, ...}, ...]}            records by column name
    text/csv          one raw row per line, no header, feature-column order
Answer (application/json):
    {"predictions": [{"label": "3", "probabilities": {"0": 0.01, ...}}, ...]}   classification
    {"predictions": [{"value": 12.5}, ...]}                                      regression

Bad input is answered with a 4xx and a JSON body {"message": ...} naming what is wrong, through the
container's own contract. The XGBoost and SKLearn images serve this module with sagemaker-containers
2.8.6.post2 (aws/sagemaker-containers@150ff4674b268a4c6f9518aefa767892c50e1e94, tag v2.8.6.post2,
src/sagemaker_containers/_transformer.py and _functions.py): every user function runs inside
`error_wrapper`, so ANY exception it raises becomes a ClientError that Flask answers with a 500 HTML
page (the front door then sees a model failure, not the client's mistake). What a user function
can do instead is *return* an answer: `Transformer.transform` hands output_fn's result to Flask as
is, and Flask sends a Response object with its own status and body. So a request that cannot be
scored flows through the three handlers as a `Rejection` value (input_fn -> predict_fn -> output_fn)
and output_fn turns it into a werkzeug Response: 415 for an unsupported content type, 406 for an
unsupported accept (the statuses the toolkit's own default handlers use), 400 for the rest.
`predict_rows` and the functions it calls still raise `InvalidInput` (a ValueError), for in-process use.

Cost: a request should cost what the model costs. JSON rows of numbers (the common case) go from
`json.loads` straight into one float64 array in feature order, are imputed with NumPy and scored
by `inplace_predict` (an estimator's `predict_proba`/`predict`); pandas is used only for records,
CSV and categorical columns, and for the precise error message when a request is bad.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:  # in the containers and under `sagelab run` the scripts' folder is on sys.path
    from preprocess import DataError, FeatureSpec
except ModuleNotFoundError:  # imported from the repository (tests, `sagelab serve`)
    from pipeline_steps.preprocess import DataError, FeatureSpec

JSON_CONTENT_TYPE = "application/json"
CSV_CONTENT_TYPE = "text/csv"
SUPPORTED_CONTENT_TYPES = (JSON_CONTENT_TYPE, CSV_CONTENT_TYPE)
MAX_ROWS = 1000
MODEL_FILE_NAME = "xgboost-model.json"
# Your own script's model (train_custom.py checks it and evaluate.py reads it under this name).
ESTIMATOR_FILE_NAME = "model.joblib"


class InvalidInput(ValueError):
    """The request body cannot be scored; the message says what is wrong and what is expected."""

    status = 400


class UnsupportedContentType(InvalidInput):
    status = 415  # the toolkit's answer to a content type its default input_fn cannot decode


class UnsupportedAccept(InvalidInput):
    status = 406  # the toolkit's answer to an accept its default output_fn cannot encode


@dataclass(frozen=True)
class Rejection:
    """A request that cannot be scored, passed from handler to handler so that output_fn can answer
    it with a 4xx (an exception would become the container's 500)."""

    status: int
    message: str

    @classmethod
    def of(cls, error: InvalidInput) -> Rejection:
        return cls(status=error.status, message=str(error))

    def response(self) -> Any:
        """A werkzeug Response (the class Flask and the toolkit's worker.Response derive from; both
        images ship werkzeug with Flask): Flask sends its status and body unchanged."""
        from werkzeug.wrappers import Response

        return Response(response=json.dumps({"message": self.message}), status=self.status, mimetype=JSON_CONTENT_TYPE)


@dataclass
class LoadedModel:
    """A feature spec and exactly one of: an XGBoost booster, a scikit-learn estimator. (Typed Any:
    their libraries are imported only when such a model is loaded.)"""

    spec: FeatureSpec
    booster: Any = None
    estimator: Any = None


class UnusableModel(ValueError):
    """The model directory holds no model serving can use; the message says what is wrong."""


def model_fn(model_dir: str | Path) -> LoadedModel:
    directory = Path(model_dir)
    spec = FeatureSpec.load(directory)
    if (directory / MODEL_FILE_NAME).is_file():
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(directory / MODEL_FILE_NAME)
        booster.set_param({"nthread": 1})  # one request at a time per worker; threads only add latency here
        return LoadedModel(spec=spec, booster=booster)
    if (directory / ESTIMATOR_FILE_NAME).is_file():
        import joblib

        estimator = joblib.load(directory / ESTIMATOR_FILE_NAME)
        check_estimator(estimator, spec)
        return LoadedModel(spec=spec, estimator=estimator)
    raise FileNotFoundError(
        f"no model in {directory}: expected {MODEL_FILE_NAME} (XGBoost, from train.py) or {ESTIMATOR_FILE_NAME} (scikit-learn, saved with joblib)"
    )


def check_estimator(estimator: Any, spec: FeatureSpec) -> None:
    """Raise UnusableModel unless `estimator` answers the way predict_fn asks for this spec's problem type."""
    estimator_class = type(estimator).__name__
    if not callable(getattr(estimator, "predict", None)):
        raise UnusableModel(f"{ESTIMATOR_FILE_NAME} holds a {estimator_class}, which has no predict method; expected a fitted scikit-learn estimator")
    if spec.problem_type == "regression":
        return
    if not callable(getattr(estimator, "predict_proba", None)):
        raise UnusableModel(
            f"{ESTIMATOR_FILE_NAME} holds a {estimator_class}, which has no predict_proba method; the target is {spec.problem_type} classification, "
            "so the answer needs class probabilities (use a classifier that has predict_proba)"
        )
    classes = np.asarray(getattr(estimator, "classes_", []))
    positions = range(len(spec.labels))
    listed = classes.tolist() if classes.ndim == 1 else []
    if not listed or len(set(listed)) != len(listed) or not all(type(c) is int and c in positions for c in listed):
        raise UnusableModel(
            f"{ESTIMATOR_FILE_NAME} holds a {estimator_class} whose classes_ are {classes.tolist()[:10]}; expected class positions 0..{len(spec.labels) - 1} "
            "as in target.npy (fit it on the target array as written by the preprocessing step)"
        )


def _base_content_type(content_type: str | None) -> str:
    return (content_type or JSON_CONTENT_TYPE).split(";")[0].strip().lower()


def _check_value(value: Any, where: str) -> None:
    if value is None or isinstance(value, str):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{where} is {type(value).__name__}; expected a number, a string category or null")
    if not math.isfinite(value):
        raise InvalidInput(f"{where} is {value}; expected a finite number")


def _instances(payload: Any) -> list[Any]:
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput('body must be a JSON object with an "instances" array')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('"instances" must be a non-empty array of rows')
    if len(instances) > MAX_ROWS:
        raise InvalidInput(f'"instances" has {len(instances)} rows; at most {MAX_ROWS} per request')
    return instances


_NUMBER_TYPES = frozenset((int, float, type(None)))  # exact types: bool (a subclass of int) is not a number here


def numeric_rows(payload: Any, spec: FeatureSpec) -> np.ndarray | None:
    """The fast path: rows of JSON numbers/null for an all-numeric spec -> float64 matrix in feature
    order (NaN = null). None when anything else is in the request (records, strings, booleans, a
    wrong width, an overflow): the careful path then accepts it or names the problem."""
    instances = _instances(payload)
    if spec.categorical_vocabulary or not all(type(row) is list for row in instances):
        return None
    seen: set[type] = set()
    for row in instances:  # C-level `map`: ~1 µs per 64 values, against ~10 µs for per-value checks
        seen.update(map(type, row))
    if not seen <= _NUMBER_TYPES:
        return None
    try:
        matrix = np.array(instances, dtype=np.float64)  # None -> NaN
    except (ValueError, TypeError, OverflowError):  # ragged rows, huge integers
        return None
    if matrix.ndim != 2 or matrix.shape[1] != len(spec.feature_columns) or np.isinf(matrix).any():
        return None
    return matrix


def parse_rows(payload: Any, spec: FeatureSpec) -> pd.DataFrame:
    """Validated JSON payload -> raw frame with the spec's feature columns (the careful path)."""
    instances = _instances(payload)
    width = len(spec.feature_columns)
    if all(isinstance(row, list) for row in instances):
        for number, row in enumerate(instances):
            if len(row) != width:
                raise InvalidInput(f"instances[{number}] has {len(row)} values; expected {width}")
            for position, value in enumerate(row):
                _check_value(value, f"instances[{number}][{position}]")
        frame = pd.DataFrame(instances, columns=spec.feature_columns)
    elif all(isinstance(row, dict) for row in instances):
        known = set(spec.feature_columns)
        for number, record in enumerate(instances):
            unknown = sorted(set(record) - known)
            if unknown:
                raise InvalidInput(f"instances[{number}] has unknown column(s) {unknown[:5]}; expected columns from the feature spec")
            for name, value in record.items():
                _check_value(value, f"instances[{number}].{name}")
        frame = pd.DataFrame.from_records(instances, columns=spec.feature_columns)
    else:
        raise InvalidInput('every element of "instances" must be an array (a row) or an object (a record), not a mix')
    for name in spec.feature_columns:
        if name in spec.categorical_vocabulary:
            continue
        column = frame[name]
        strings = column.map(lambda v: isinstance(v, str))
        if strings.any():
            row = int(np.flatnonzero(strings.to_numpy())[0])
            raise InvalidInput(f"instances[{row}] column {name!r} is the string {column.iloc[row]!r}; expected a number or null")
    return frame


def input_fn(request_body: bytes | str, content_type: str | None = JSON_CONTENT_TYPE) -> Any:
    """The container's first handler: the decoded payload, or a Rejection for predict_fn to pass on."""
    try:
        return decode(request_body, content_type)
    except InvalidInput as error:
        return Rejection.of(error)


def decode(request_body: bytes | str, content_type: str | None = JSON_CONTENT_TYPE, spec: FeatureSpec | None = None) -> Any:
    """Decode the body (raises InvalidInput). Without a spec the payload is kept for predict_fn; with
    one, it is validated into raw numeric rows (an array) or, for anything else, a frame."""
    media_type = _base_content_type(content_type)
    if media_type not in SUPPORTED_CONTENT_TYPES:
        raise UnsupportedContentType(f"content type {content_type!r} is not supported; use {' or '.join(SUPPORTED_CONTENT_TYPES)}")
    try:  # the toolkit passes text for exactly application/json and text/csv, bytes otherwise (a charset suffix)
        text = request_body.decode("utf-8") if isinstance(request_body, (bytes, bytearray)) else request_body
    except UnicodeDecodeError as error:
        raise InvalidInput(f"body is not UTF-8 text (byte {error.start}); send {media_type} encoded as UTF-8") from None
    if media_type == JSON_CONTENT_TYPE:
        try:
            payload = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
        except RecursionError:
            raise InvalidInput('body nests arrays or objects too deeply; send {"instances": [[...], ...]}') from None
    else:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
        payload = {"instances": [[_csv_value(cell) for cell in row] for row in rows]}
    if spec is None:
        return payload
    numeric = numeric_rows(payload, spec)
    return numeric if numeric is not None else parse_rows(payload, spec)


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"body contains {name}; JSON numbers must be finite")


def _csv_value(cell: str) -> Any:
    cell = cell.strip()
    if cell == "":
        return None
    try:
        number = float(cell)
    except ValueError:
        return cell
    if not math.isfinite(number):
        raise InvalidInput(f"CSV value {cell!r} is not a finite number")
    return number


def features_for(data: Any, spec: FeatureSpec) -> np.ndarray:
    """A decoded request -> the model's float32 feature matrix. `data` is a payload, a frame of raw
    columns, or an array of raw numeric rows in feature order (NaN = missing)."""
    if isinstance(data, np.ndarray):
        return spec.impute(data.astype(np.float64, copy=False))
    if not isinstance(data, pd.DataFrame):
        numeric = numeric_rows(data, spec)
        if numeric is not None:
            return spec.impute(numeric)
        data = parse_rows(data, spec)
    try:
        return spec.transform(data)
    except DataError as error:
        raise InvalidInput(str(error)) from None


def model_output(model: LoadedModel, features: np.ndarray) -> np.ndarray:
    """The model's raw answer for a feature matrix: regression values, or class probabilities
    (rows x labels; an XGBoost binary model gives the positive class's probability alone)."""
    if model.booster is not None:
        return model.booster.inplace_predict(features)  # no DMatrix copy
    if model.spec.problem_type == "regression":
        return np.asarray(model.estimator.predict(features), dtype=np.float64).reshape(len(features))
    probabilities = np.asarray(model.estimator.predict_proba(features), dtype=np.float64)
    classes = np.asarray(model.estimator.classes_)  # distinct label positions (check_estimator)
    width = len(model.spec.labels)
    if len(classes) == width and (classes == np.arange(width)).all():
        return probabilities
    everything = np.zeros((len(features), width))  # a class absent from the training split: probability 0
    everything[:, classes] = probabilities
    return everything


def predict_fn(data: Any, model: LoadedModel) -> list[dict[str, Any]] | Rejection:
    """The container's second handler: predictions, or a Rejection (input_fn's, or of rows that do not
    fit the model) for output_fn to answer."""
    if isinstance(data, Rejection):
        return data
    try:
        return predict(data, model)
    except InvalidInput as error:
        return Rejection.of(error)


def predict(data: Any, model: LoadedModel) -> list[dict[str, Any]]:
    """Predictions for a decoded request (raises InvalidInput)."""
    raw = model_output(model, features_for(data, model.spec))
    spec = model.spec
    if spec.problem_type == "regression":
        return [{"value": value} for value in raw.astype(np.float64).tolist()]
    probabilities = np.column_stack([1 - raw, raw]) if raw.ndim == 1 else raw
    best = probabilities.argmax(axis=1).tolist()
    labels = spec.labels
    # Six decimals for every probability at once. For float32 probabilities this equals Python's
    # round(p, 6): p * 1e6 is exact in float64 (24 + 14 significant bits), so rint picks the same
    # integer and the division gives the same nearest double. 10,000 round() calls were a third of a batch.
    rounded = np.round(probabilities.astype(np.float64), 6).tolist()
    return [{"label": labels[index], "probabilities": dict(zip(labels, row, strict=True))} for index, row in zip(best, rounded, strict=True)]


def output_fn(prediction: list[dict[str, Any]] | Rejection, accept: str | None = JSON_CONTENT_TYPE) -> Any:
    """The container's last handler: (body, content type) for predictions, which the toolkit sends as
    a 200; a werkzeug Response carrying the 4xx for a Rejection."""
    if isinstance(prediction, Rejection):
        return prediction.response()
    try:
        return serialize(prediction, accept)
    except InvalidInput as error:
        return Rejection.of(error).response()


def serialize(predictions: list[dict[str, Any]], accept: str | None = JSON_CONTENT_TYPE) -> tuple[str, str]:
    """(body, content type) of the predictions in the accepted type (raises InvalidInput)."""
    media_type = _base_content_type(accept)
    if media_type in ("*/*", JSON_CONTENT_TYPE):
        return json.dumps({"predictions": predictions}), JSON_CONTENT_TYPE
    if media_type == CSV_CONTENT_TYPE:
        lines = [str(p.get("label", p.get("value"))) for p in predictions]
        return "\n".join(lines) + "\n", CSV_CONTENT_TYPE
    raise UnsupportedAccept(f"accept type {accept!r} is not supported; use {' or '.join(SUPPORTED_CONTENT_TYPES)}")


def predict_rows(model: LoadedModel, body: bytes | str, content_type: str = JSON_CONTENT_TYPE) -> list[dict[str, Any]]:
    """The whole request path in-process (raises InvalidInput); used by tests and benchmarks as the reference."""
    return predict(decode(body, content_type, model.spec), model)
