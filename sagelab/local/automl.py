"""Local twin of a SageMaker Autopilot job in ENSEMBLING mode, and of its best candidate's container.

`run_automl_job` takes the `CreateAutoMLJob` request as the SDK writes it into the pipeline definition
(`AutoMLStep`, arguments evaluated), the CSV files the runner copied from the input prefix, and runs a
bounded search on this machine:

    input_dir/*.csv ──> infer problem type + objective (Autopilot's defaults) ──> one-hot + impute
        ──> k-fold CV, one candidate per model family, cheapest first, until MaxCandidates or the budget
        ──> greedy weighted ensemble of the out-of-fold predictions (ENSEMBLING mode's final model)
        ──> best candidate refit on every row ──> output_dir/best/model.tar.gz
        ──> a dict shaped like DescribeAutoMLJob's response (+ "_candidates", shaped like ListCandidates')

`AutopilotContainer` answers like the Autopilot inference container does: CSV rows of raw features in,
CSV out with the fields `SAGEMAKER_INFERENCE_OUTPUT` names.

Where this differs from SageMaker (the README repeats it): Autopilot's ensembling mode trains AutoGluon
models (LightGBM, CatBoost, neural nets, ...) with stacking and bagging for up to hours; here a handful of
scikit-learn / XGBoost models with fixed hyperparameters run for about a minute, and the ensemble is one
greedy weighted average (Caruana's ensemble selection) of the out-of-fold predictions. The artifact is
a local twin of an opaque container artifact: a joblib of the fitted pipeline plus `candidate.json`
(feature order and types, problem type, labels); AWS cannot serve it and this module cannot serve theirs.
Only the best candidate gets an artifact and inference container; the others are leaderboard entries.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn import metrics
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

LOCAL_AUTOPILOT_IMAGE = "local/sagemaker-autopilot:ensembling"
LOCAL_ARN_PREFIX = "arn:aws:sagemaker:local:000000000000"
ARTIFACT_FORMAT_VERSION = 1
SEED = 0
CV_FOLDS = 5
ENSEMBLE_ROUNDS = 25
# Above this many distinct values a text column keeps its most frequent ones and pools the rest, so one
# free-text column cannot widen the one-hot matrix to one column per row.
MAX_ONE_HOT_CATEGORIES = 30

# Autopilot's own ProblemType values (the CreateAutoMLJob API and its candidate.json), kept as AWS spells
# them: the twin answers as the API does. SageLab's problem type (`sagelab:problem-type`) is
# preprocess.py's binary|multiclass|regression, which evaluate.py writes for an Autopilot run too.
BINARY = "BinaryClassification"
MULTICLASS = "MulticlassClassification"
REGRESSION = "Regression"
PROBLEM_TYPES = (BINARY, MULTICLASS, REGRESSION)

# Autopilot's metrics per tabular problem type, the first being its default objective
# (SageMaker API reference, AutoMLJobObjective).
OBJECTIVES_BY_PROBLEM_TYPE: dict[str, tuple[str, ...]] = {
    BINARY: ("F1", "Accuracy", "AUC", "BalancedAccuracy", "Precision", "Recall"),
    MULTICLASS: ("Accuracy", "BalancedAccuracy", "F1macro", "PrecisionMacro", "RecallMacro"),
    REGRESSION: ("MSE", "MAE", "R2", "RMSE"),
}
MINIMIZED_METRICS = frozenset({"MSE", "MAE", "RMSE"})

# The inference container's output keys (Autopilot docs, "Configure inference output in generated
# containers"); the default answer is the predicted label only.
CLASSIFICATION_OUTPUT_KEYS = ("predicted_label", "probability", "probabilities", "labels")
REGRESSION_OUTPUT_KEYS = ("predicted_label",)
DEFAULT_INFERENCE_OUTPUT = "predicted_label"

# A numeric target with at most this many distinct integral values (and few per row) is read as class
# labels, like Autopilot's inference; more distinct values, or any fraction, make it a regression.
MAX_INFERRED_CLASSES = 100


class AutoMLRequestError(ValueError):
    """The request or its data cannot run as an AutoML job; the message says what to change."""


class AutopilotInputError(ValueError):
    """An invocation the Autopilot container would reject (4xx); the message says what is expected."""


# ---------------------------------------------------------------------------------------------------
# Candidate model families


@dataclass(frozen=True)
class _Family:
    """One model family: `name` is Autopilot's AutoMLAlgorithm name where one exists (so
    CandidateGenerationConfig.AlgorithmsConfig can select it), `scaled` puts a StandardScaler first."""

    name: str
    model_name: str
    scaled: bool
    build: Callable[[str, int], BaseEstimator]


def _cores() -> int:
    try:
        return max(1, min(2, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(2, os.cpu_count() or 1))


def _knn(problem_type: str, cores: int) -> BaseEstimator:
    if problem_type == REGRESSION:
        return KNeighborsRegressor(n_neighbors=10, weights="distance")
    return KNeighborsClassifier(n_neighbors=5, weights="distance")


def _linear(problem_type: str, cores: int) -> BaseEstimator:
    if problem_type == REGRESSION:
        return Ridge(alpha=1.0)
    return LogisticRegression(C=1.0, max_iter=2000)


def _extra_trees(problem_type: str, cores: int) -> BaseEstimator:
    if problem_type == REGRESSION:
        return ExtraTreesRegressor(n_estimators=300, min_samples_leaf=2, n_jobs=cores, random_state=SEED)
    return ExtraTreesClassifier(n_estimators=300, n_jobs=cores, random_state=SEED)


def _random_forest(problem_type: str, cores: int) -> BaseEstimator:
    if problem_type == REGRESSION:
        return RandomForestRegressor(n_estimators=300, min_samples_leaf=2, n_jobs=cores, random_state=SEED)
    return RandomForestClassifier(n_estimators=300, n_jobs=cores, random_state=SEED)


def _mlp(problem_type: str, cores: int) -> BaseEstimator:
    if problem_type == REGRESSION:
        # A raw target in the hundreds stalls Adam's default step size; learn it standardized.
        network = MLPRegressor(hidden_layer_sizes=(64,), alpha=1e-2, max_iter=500, random_state=SEED)
        return TransformedTargetRegressor(regressor=network, transformer=StandardScaler())
    return MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=200, random_state=SEED)


def _xgboost(problem_type: str, cores: int) -> BaseEstimator:
    from xgboost import XGBClassifier, XGBRegressor

    common = {"n_estimators": 200, "max_depth": 4, "learning_rate": 0.15, "tree_method": "hist", "n_jobs": cores, "random_state": SEED}
    if problem_type == REGRESSION:
        return XGBRegressor(subsample=0.8, **common)
    return XGBClassifier(**common)


# Cheapest first: when the budget runs out, the families already done are the fast, decent ones.
FAMILIES: tuple[_Family, ...] = (
    _Family("k-nearest-neighbors", "KNeighbors", True, _knn),  # local only: not an AutoMLAlgorithm name
    _Family("linear-learner", "LinearModel", True, _linear),
    _Family("extra-trees", "ExtraTrees", False, _extra_trees),
    _Family("randomforest", "RandomForest", False, _random_forest),
    _Family("mlp", "NeuralNetMLP", True, _mlp),
    _Family("xgboost", "XGBoost", False, _xgboost),
)
ENSEMBLE_FAMILY = "weighted-ensemble"
ENSEMBLE_MODEL_NAME = "WeightedEnsemble"


class WeightedEnsemble(BaseEstimator):
    """A weighted average of fitted pipelines' probabilities (classification) or predictions (regression)."""

    def __init__(self, members: Sequence[tuple[float, Any]], problem_type: str) -> None:
        self.members = list(members)
        self.problem_type = problem_type

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(sum(weight * model.predict_proba(features) for weight, model in self.members))

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        if self.problem_type == REGRESSION:
            return np.asarray(sum(weight * model.predict(features) for weight, model in self.members))
        return np.asarray(self.predict_proba(features).argmax(axis=1))


# ---------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class _Dataset:
    features: pd.DataFrame
    target: np.ndarray  # class indices for classification, floats for regression
    numeric_columns: list[str]
    categorical_columns: list[str]
    labels: list[str]  # classification only: the original labels, index = class index
    problem_type: str


def _read_tables(input_dir: Path, content_type: str) -> pd.DataFrame:
    files = sorted(path for path in input_dir.rglob("*") if path.is_file() and not path.name.startswith("."))
    if not files:
        raise AutoMLRequestError(f"no input files under {input_dir}: expected one or more CSV files with a header row (the S3Uri prefix's objects)")
    parquet = "parquet" in content_type.lower()
    tables = []
    for path in files:
        try:
            tables.append(pd.read_parquet(path) if parquet else pd.read_csv(path, skipinitialspace=True))
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
            expected_format = "Parquet" if parquet else "CSV with a header row"
            raise AutoMLRequestError(f"cannot read {path.name} as {expected_format} (ContentType {content_type!r}): {error}") from error
    first = list(tables[0].columns)
    for path, table in zip(files[1:], tables[1:], strict=True):
        if list(table.columns) != first:
            raise AutoMLRequestError(
                f"{path.name} has columns {list(table.columns)[:8]}..., {files[0].name} has {first[:8]}...: every input file needs the same header"
            )
    return pd.concat(tables, ignore_index=True)


def _label_text(value: Any) -> str:
    """How a class label is named in candidate.json and in the container's answers: 3, not 3.0."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _infer_problem_type(target: pd.Series) -> str:
    distinct = target.nunique()
    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        return BINARY if distinct == 2 else MULTICLASS
    if distinct == 2:
        return BINARY
    values = target.to_numpy(dtype=float)
    integral = bool(np.all(np.equal(np.mod(values, 1), 0)))
    if integral and distinct <= min(MAX_INFERRED_CLASSES, max(2, len(values) // 10)):
        return MULTICLASS
    return REGRESSION


def _load_dataset(input_dir: Path, channel: Mapping[str, Any], problem_type: str | None) -> _Dataset:
    table = _read_tables(input_dir, str(channel.get("ContentType") or "text/csv;header=present"))
    target_name = channel.get("TargetAttributeName")
    if not target_name or target_name not in table.columns:
        raise AutoMLRequestError(f"TargetAttributeName {target_name!r} is not a column of the input; the columns are {list(table.columns)}")
    table = table[table[target_name].notna()].reset_index(drop=True)  # Autopilot drops rows without a target
    weight_name = channel.get("SampleWeightAttributeName")
    features = table.drop(columns=[name for name in (target_name, weight_name) if name])
    if features.shape[1] == 0:
        raise AutoMLRequestError(f"the input has only the target column {target_name!r}: at least one feature column is needed")
    target = table[target_name]
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise AutoMLRequestError(f"ProblemType {problem_type!r} is not a tabular problem type; expected one of {list(PROBLEM_TYPES)}")
    resolved = problem_type or _infer_problem_type(target)

    numeric = [str(name) for name in features.columns if pd.api.types.is_numeric_dtype(features[name]) and not pd.api.types.is_bool_dtype(features[name])]
    categorical = [str(name) for name in features.columns if str(name) not in numeric]
    features = _typed_features(features, numeric, categorical)

    if resolved == REGRESSION:
        if not pd.api.types.is_numeric_dtype(target):
            raise AutoMLRequestError(f"ProblemType Regression needs a numeric target; {target_name!r} holds text such as {target.iloc[0]!r}")
        return _Dataset(features, target.to_numpy(dtype=float), numeric, categorical, [], resolved)
    texts = target.map(_label_text)
    labels = sorted(texts.unique(), key=lambda text: (float(text), text) if _is_number(text) else (math.inf, text))
    if resolved == BINARY and len(labels) != 2:
        raise AutoMLRequestError(f"ProblemType BinaryClassification needs exactly 2 target values; {target_name!r} has {len(labels)}: {labels[:10]}")
    if len(labels) < 2:
        raise AutoMLRequestError(f"the target {target_name!r} has a single value {labels}: a classifier needs at least 2 classes")
    index = {label: position for position, label in enumerate(labels)}
    return _Dataset(features, texts.map(index).to_numpy(dtype=int), numeric, categorical, labels, resolved)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _typed_features(features: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """Numeric columns as floats, the others as Python strings with None for missing (what the imputer and
    one-hot encoder expect, whatever string dtype pandas chose)."""
    typed = pd.DataFrame(index=features.index)
    for name in features.columns:
        column = features[name]
        if str(name) in numeric:
            typed[str(name)] = column.astype(float)
        else:
            typed[str(name)] = column.astype(object).where(column.notna(), None).map(lambda value: None if value is None else str(value))
    return typed


def _preprocessor(dataset_numeric: Sequence[str], dataset_categorical: Sequence[str], scaled: bool) -> ColumnTransformer:
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scaled:
        numeric_steps.append(("scale", StandardScaler()))
    categorical_steps = [
        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
        ("one_hot", OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_ONE_HOT_CATEGORIES, sparse_output=False)),
    ]
    transformers: list[tuple[str, Any, list[str]]] = []
    if dataset_numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), list(dataset_numeric)))
    if dataset_categorical:
        transformers.append(("categorical", Pipeline(categorical_steps), list(dataset_categorical)))
    return ColumnTransformer(transformers)


# ---------------------------------------------------------------------------------------------------
# Metrics


def _all_metrics(problem_type: str, target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Every metric Autopilot offers for the problem type, from out-of-fold predictions (probabilities for
    classification). Binary F1/Precision/Recall/AUC take the second label in sorted order as positive."""
    if problem_type == REGRESSION:
        mse = float(metrics.mean_squared_error(target, predicted))
        return {
            "MSE": mse,
            "RMSE": math.sqrt(mse),
            "MAE": float(metrics.mean_absolute_error(target, predicted)),
            "R2": float(metrics.r2_score(target, predicted)),
        }
    labels = predicted.argmax(axis=1)
    values = {
        "Accuracy": float(metrics.accuracy_score(target, labels)),
        "BalancedAccuracy": float(metrics.balanced_accuracy_score(target, labels)),
    }
    if problem_type == BINARY:
        values["F1"] = float(metrics.f1_score(target, labels, zero_division=0))
        values["Precision"] = float(metrics.precision_score(target, labels, zero_division=0))
        values["Recall"] = float(metrics.recall_score(target, labels, zero_division=0))
        values["AUC"] = float(metrics.roc_auc_score(target, predicted[:, 1]))
    else:
        values["F1macro"] = float(metrics.f1_score(target, labels, average="macro", zero_division=0))
        values["PrecisionMacro"] = float(metrics.precision_score(target, labels, average="macro", zero_division=0))
        values["RecallMacro"] = float(metrics.recall_score(target, labels, average="macro", zero_division=0))
    return values


def _objective_score(objective: str, problem_type: str, target: np.ndarray, predicted: np.ndarray) -> float:
    """The objective alone, in NumPy for the common ones: ensemble selection scores it a few hundred times,
    and scikit-learn's input checks would make that the slowest part of the search."""
    if problem_type == REGRESSION:
        error = predicted - target
        if objective == "MSE":
            return float(np.mean(error**2))
        if objective == "RMSE":
            return float(np.sqrt(np.mean(error**2)))
        if objective == "MAE":
            return float(np.mean(np.abs(error)))
    elif objective == "Accuracy":
        return float(np.mean(predicted.argmax(axis=1) == target))
    return _all_metrics(problem_type, target, predicted)[objective]


def _better(objective: str, candidate: float, incumbent: float) -> bool:
    return candidate < incumbent if objective in MINIMIZED_METRICS else candidate > incumbent


# ---------------------------------------------------------------------------------------------------
# The search


@dataclass
class _Trial:
    name: str
    family: str
    model_name: str
    status: str  # Completed | Failed
    started: dt.datetime
    ended: dt.datetime
    seconds: float
    metrics: dict[str, float]
    out_of_fold: np.ndarray | None
    failure: str | None = None
    members: tuple[tuple[float, str], ...] = ()  # ensemble only: (weight, member family)


def _folds(dataset: _Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    rows = len(dataset.target)
    if dataset.problem_type == REGRESSION:
        if rows < 2 * CV_FOLDS:
            raise AutoMLRequestError(f"{rows} rows with a target: the local AutoML job needs at least {2 * CV_FOLDS} for {CV_FOLDS}-fold cross-validation")
        return list(KFold(CV_FOLDS, shuffle=True, random_state=SEED).split(dataset.features))
    smallest = int(np.bincount(dataset.target).min())
    if smallest < 2:
        rare = [dataset.labels[index] for index, count in enumerate(np.bincount(dataset.target)) if count < 2]
        raise AutoMLRequestError(f"classes {rare[:10]} have a single row: cross-validation needs at least 2 rows of every class (drop or merge those classes)")
    # Fewer folds than the rarest class's count would leave a class out of some training fold.
    folds = min(CV_FOLDS, smallest)
    return list(StratifiedKFold(folds, shuffle=True, random_state=SEED).split(dataset.features, dataset.target))


def _pipeline(dataset: _Dataset, family: _Family, cores: int) -> Pipeline:
    return Pipeline(
        [("features", _preprocessor(dataset.numeric_columns, dataset.categorical_columns, family.scaled)), ("model", family.build(dataset.problem_type, cores))]
    )


def _fitted(dataset: _Dataset, family: _Family, cores: int, rows: np.ndarray | None = None) -> Pipeline:
    """The family's pipeline fitted on `rows` (all rows when None), made to predict on one thread: a forest
    predicting on several threads adds its trees' outputs in whatever order the threads finish, so the last
    bits of a prediction (and a leaderboard value) would change from run to run."""
    features, target = (dataset.features, dataset.target) if rows is None else (dataset.features.iloc[rows], dataset.target[rows])
    model = _pipeline(dataset, family, cores).fit(features, target)
    if isinstance(model.named_steps["model"], ExtraTreesClassifier | ExtraTreesRegressor | RandomForestClassifier | RandomForestRegressor):
        model.named_steps["model"].set_params(n_jobs=1)
    return model


def _cross_validate(
    dataset: _Dataset, family: _Family, folds: Sequence[tuple[np.ndarray, np.ndarray]], cores: int, per_job_limit_s: float | None
) -> np.ndarray:
    classes = len(dataset.labels)
    out_of_fold = np.zeros((len(dataset.target), classes)) if classes else np.zeros(len(dataset.target))
    for train_rows, test_rows in folds:
        started = time.monotonic()
        model = _fitted(dataset, family, cores, train_rows)
        if classes:
            out_of_fold[test_rows] = model.predict_proba(dataset.features.iloc[test_rows])
        else:
            out_of_fold[test_rows] = model.predict(dataset.features.iloc[test_rows])
        took = time.monotonic() - started
        # SageMaker stops a training job at MaxRuntimePerTrainingJobInSeconds; one fold stands for one job.
        if per_job_limit_s is not None and took > per_job_limit_s:
            raise TimeoutError(f"a fold took {took:.1f} s, more than MaxRuntimePerTrainingJobInSeconds={per_job_limit_s:g}")
    return out_of_fold


def _ensemble(objective: str, dataset: _Dataset, trials: Sequence[_Trial]) -> tuple[tuple[float, str], ...]:
    """Caruana's greedy ensemble selection with replacement over the out-of-fold predictions: each round adds
    the member that makes the blend score best; the blend kept is the best-scoring prefix of the rounds
    (the earliest on ties). Weights are how often each member was picked."""
    pool = [(trial.family, trial.out_of_fold) for trial in trials if trial.out_of_fold is not None]
    picks: list[int] = []
    total = np.zeros_like(pool[0][1])
    kept: tuple[float, int] | None = None  # (score, number of picks)
    for _ in range(ENSEMBLE_ROUNDS):
        scored = []
        for position, (_, predictions) in enumerate(pool):
            blended = (total + predictions) / (len(picks) + 1)
            scored.append((_objective_score(objective, dataset.problem_type, dataset.target, blended), position))
        score, position = scored[0]
        for candidate_score, candidate_position in scored[1:]:
            if _better(objective, candidate_score, score):
                score, position = candidate_score, candidate_position
        total = total + pool[position][1]
        picks.append(position)
        if kept is None or _better(objective, score, kept[0]):
            kept = (score, len(picks))
    assert kept is not None
    counts = np.bincount(picks[: kept[1]], minlength=len(pool))
    return tuple((float(count / kept[1]), pool[position][0]) for position, count in enumerate(counts) if count)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run_automl_job(
    request: Mapping[str, Any],
    input_dir: Path,
    output_dir: Path,
    job_name: str,
    log: Callable[[str], None],
    time_budget_s: float = 90.0,
) -> dict[str, Any]:
    """Run the CreateAutoMLJob `request` on the CSV(s) in `input_dir`; write the best candidate's artifact to
    `output_dir/best/model.tar.gz`; return the job described like DescribeAutoMLJob (timestamps as ISO 8601
    strings so the runner can cache it as JSON).

    The best candidate's inference container has `ModelDataPath` (the local artifact) instead of
    `ModelDataUrl`: the runner fills `ModelDataUrl` with the S3 URI it maps the path to. The private key
    `_candidates` lists every candidate shaped like ListCandidatesForAutoMLJob's `Candidates`, in creation order,
    without InferenceContainers (LocalSageMakerApi adds BestCandidate's to the best one's entry).

    The search starts candidates while the time used is under min(`time_budget_s`,
    MaxAutoMLJobRuntimeInSeconds), so it overruns by at most one candidate plus the final refit.
    """
    job_started = _now()
    clock = time.monotonic()
    config = request.get("AutoMLJobConfig") or {}
    channels = _checked_request(request, config)
    criteria = config.get("CompletionCriteria") or {}
    limits = _job_limits(criteria, time_budget_s)
    dataset = _load_dataset(input_dir, channels[0], request.get("ProblemType"))
    objective = _objective(request, dataset.problem_type)
    families = _selected_families(config)
    folds = _folds(dataset)
    cores = _cores()
    log(
        f"AutoML job {job_name}: {len(dataset.target)} rows, {len(dataset.numeric_columns)} numeric + {len(dataset.categorical_columns)} categorical features, "
        f"{dataset.problem_type}, objective {objective}, {len(folds)}-fold CV, up to {limits.max_candidates} candidates, budget {limits.budget_s:g} s"
    )
    # One BLAS thread: the linear and MLP fits are small matrix products, and on a shared 2-core machine a
    # multithreaded BLAS spends its time waiting for cores (an MLP's 2 s CV took 38 s beside other jobs).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # Fixed iteration caps are part of the budget; a model that has not fully converged is still a candidate.
        warnings.simplefilter("ignore", ConvergenceWarning)
        trials, secondary_status = _search(job_name, families, dataset, folds, cores, limits, objective, clock, log)
        best = _best_trial(objective, trials)
        log(f"best candidate {best.name}: {objective}={best.metrics[objective]:.4f}; refitting it on all {len(dataset.target)} rows")
        refit_started = time.monotonic()
        artifact = _write_best_artifact(output_dir / "best", best, dataset, objective, cores)
        log(f"refit and artifact: {time.monotonic() - refit_started:.1f} s")
    job_ended = _now()
    log(f"AutoML job {job_name} completed in {time.monotonic() - clock:.1f} s")
    return _job_description(request, job_name, channels, dataset.problem_type, objective, trials, best, artifact, (job_started, job_ended), secondary_status)


@dataclass(frozen=True)
class _JobLimits:
    """When the search stops: MaxCandidates (the ensemble counts), the time budget (the smaller of
    the local budget and MaxAutoMLJobRuntimeInSeconds), and one candidate's fold time limit."""

    max_candidates: int
    budget_s: float
    per_job_limit_s: float | None


def _checked_request(request: Mapping[str, Any], config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The request's input channels, once the parts the local job cannot model are refused."""
    mode = config.get("Mode", "ENSEMBLING")
    if mode not in ("ENSEMBLING", "AUTO"):
        raise AutoMLRequestError(
            f"AutoMLJobConfig.Mode {mode!r} is not modelled locally: the local AutoML job runs ENSEMBLING (or AUTO, which picks it for small data)"
        )
    channels = request.get("InputDataConfig") or []
    if not channels:
        raise AutoMLRequestError("InputDataConfig is empty: expected one channel with DataSource.S3DataSource.S3Uri and TargetAttributeName")
    return list(channels)


def _job_limits(criteria: Mapping[str, Any], time_budget_s: float) -> _JobLimits:
    runtime_limit = criteria.get("MaxAutoMLJobRuntimeInSeconds")
    return _JobLimits(
        max_candidates=int(criteria.get("MaxCandidates") or len(FAMILIES) + 1),
        budget_s=min(time_budget_s, float(runtime_limit)) if runtime_limit else time_budget_s,
        per_job_limit_s=float(criteria["MaxRuntimePerTrainingJobInSeconds"]) if criteria.get("MaxRuntimePerTrainingJobInSeconds") else None,
    )


def _objective(request: Mapping[str, Any], problem_type: str) -> str:
    """The request's objective metric, or Autopilot's default for the problem type."""
    objective = (request.get("AutoMLJobObjective") or {}).get("MetricName") or OBJECTIVES_BY_PROBLEM_TYPE[problem_type][0]
    if objective not in OBJECTIVES_BY_PROBLEM_TYPE[problem_type]:
        raise AutoMLRequestError(
            f"AutoMLJobObjective.MetricName {objective!r} does not apply to {problem_type}; expected one of {list(OBJECTIVES_BY_PROBLEM_TYPE[problem_type])}"
        )
    return objective


def _search(
    job_name: str,
    families: Sequence[_Family],
    dataset: _Dataset,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    cores: int,
    limits: _JobLimits,
    objective: str,
    clock: float,
    log: Callable[[str], None],
) -> tuple[list[_Trial], str]:
    """One candidate per family, cheapest first, until MaxCandidates or the budget (`clock` is when the
    job started), then the ensemble of the completed ones; the trials and the job's secondary status."""
    # In ensembling mode the ensemble is a candidate too: keep one of MaxCandidates for it when there is room.
    with_ensemble = limits.max_candidates >= 3 and len(families) >= 2
    base_limit = limits.max_candidates - 1 if with_ensemble else limits.max_candidates
    trials: list[_Trial] = []
    secondary_status = "Completed"
    for family in families:
        if len(trials) >= base_limit:
            secondary_status = "MaxCandidatesReached"
            break
        # At least one candidate runs whatever the budget: a job with no candidate has no model.
        if trials and time.monotonic() - clock >= limits.budget_s:
            secondary_status = "MaxAutoMLJobRuntimeReached"
            log(f"time budget of {limits.budget_s:g} s spent after {len(trials)} candidates; no more candidates start")
            break
        trials.append(_run_trial(job_name, len(trials) + 1, family, dataset, folds, cores, limits.per_job_limit_s, objective, log))
    completed = [trial for trial in trials if trial.status == "Completed"]
    if not completed:
        raise AutoMLRequestError(f"no candidate completed ({'; '.join(f'{t.family}: {t.failure}' for t in trials)}): raise the time limits or check the data")
    # The ensemble is scored from predictions already made (cheap), so it runs even when the budget is spent.
    if with_ensemble and len(completed) >= 2:
        trials.append(_ensemble_trial(job_name, len(trials) + 1, objective, dataset, completed, log))
    return trials, secondary_status


def _best_trial(objective: str, trials: Sequence[_Trial]) -> _Trial:
    completed = [trial for trial in trials if trial.status == "Completed"]
    best = completed[0]
    for trial in completed:
        if _better(objective, trial.metrics[objective], best.metrics[objective]):
            best = trial  # ties keep the earlier (simpler, cheaper) candidate
    return best


def _job_description(
    request: Mapping[str, Any],
    job_name: str,
    channels: Sequence[Mapping[str, Any]],
    problem_type: str,
    objective: str,
    trials: Sequence[_Trial],
    best: _Trial,
    artifact: Path,
    started_ended: tuple[dt.datetime, dt.datetime],
    secondary_status: str,
) -> dict[str, Any]:
    """DescribeAutoMLJob's answer for the finished job, plus `_candidates`."""
    config = request.get("AutoMLJobConfig") or {}
    candidates = [_candidate_description(trial, objective) for trial in trials]
    # Only BestCandidate carries the inference container, so the runner fills ModelDataUrl in one place;
    # LocalSageMakerApi lists it on the best candidate's entry too, as SageMaker does.
    best_description = dict(next(candidate for candidate in candidates if candidate["CandidateName"] == best.name))
    best_description["InferenceContainers"] = [
        {"Image": LOCAL_AUTOPILOT_IMAGE, "ModelDataPath": str(artifact), "Environment": inference_environment(problem_type, best.model_name)}
    ]
    description: dict[str, Any] = {
        "AutoMLJobName": job_name,
        "AutoMLJobArn": f"{LOCAL_ARN_PREFIX}:automl-job/{job_name.lower()}",
        "InputDataConfig": [dict(channel) for channel in channels],
        "OutputDataConfig": dict(request.get("OutputDataConfig") or {}),
        "RoleArn": request.get("RoleArn", ""),
        "AutoMLJobConfig": dict(config),
        "CreationTime": _iso(started_ended[0]),
        "EndTime": _iso(started_ended[1]),
        "LastModifiedTime": _iso(started_ended[1]),
        "AutoMLJobStatus": "Completed",
        "AutoMLJobSecondaryStatus": secondary_status,
        "BestCandidate": best_description,
        "ResolvedAttributes": {
            "AutoMLJobObjective": {"MetricName": objective},
            "ProblemType": problem_type,
            "CompletionCriteria": dict(config.get("CompletionCriteria") or {}),
        },
        "_candidates": candidates,
    }
    if request.get("ProblemType"):
        description["ProblemType"] = request["ProblemType"]
    if request.get("AutoMLJobObjective"):
        description["AutoMLJobObjective"] = dict(request["AutoMLJobObjective"])
    return description


def _selected_families(config: Mapping[str, Any]) -> list[_Family]:
    algorithm_configs = (config.get("CandidateGenerationConfig") or {}).get("AlgorithmsConfig") or []
    chosen = {name for entry in algorithm_configs for name in entry.get("AutoMLAlgorithms", [])}
    if not chosen:
        return list(FAMILIES)
    families = [family for family in FAMILIES if family.name in chosen]
    if not families:
        known = [family.name for family in FAMILIES if family.name != "k-nearest-neighbors"]
        raise AutoMLRequestError(f"AlgorithmsConfig selects {sorted(chosen)}, none of which the local AutoML job trains; it knows {known}")
    return families


def _run_trial(
    job_name: str,
    number: int,
    family: _Family,
    dataset: _Dataset,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    cores: int,
    per_job_limit: float | None,
    objective: str,
    log: Callable[[str], None],
) -> _Trial:
    name = _candidate_name(job_name, number, family.name)
    started, clock = _now(), time.monotonic()
    try:
        out_of_fold = _cross_validate(dataset, family, folds, cores, per_job_limit)
    except (TimeoutError, ValueError, np.linalg.LinAlgError) as error:
        log(f"candidate {name}: failed: {error}")
        return _Trial(name, family.name, family.model_name, "Failed", started, _now(), time.monotonic() - clock, {}, None, failure=str(error))
    scores = _all_metrics(dataset.problem_type, dataset.target, out_of_fold)
    seconds = time.monotonic() - clock
    log(f"candidate {name}: {objective}={scores[objective]:.4f} ({len(folds)}-fold CV, {seconds:.1f} s)")
    return _Trial(name, family.name, family.model_name, "Completed", started, _now(), seconds, scores, out_of_fold)


def _ensemble_trial(job_name: str, number: int, objective: str, dataset: _Dataset, completed: Sequence[_Trial], log: Callable[[str], None]) -> _Trial:
    started, clock = _now(), time.monotonic()
    members = _ensemble(objective, dataset, completed)
    by_family = {trial.family: trial for trial in completed}
    blended = np.zeros(len(dataset.target)) if dataset.problem_type == REGRESSION else np.zeros((len(dataset.target), len(dataset.labels)))
    for weight, family in members:
        predictions = by_family[family].out_of_fold
        if predictions is not None:  # every completed trial has them
            blended += weight * predictions
    scores = _all_metrics(dataset.problem_type, dataset.target, blended)
    name = _candidate_name(job_name, number, ENSEMBLE_FAMILY)
    log(f"candidate {name}: {objective}={scores[objective]:.4f} (weights {', '.join(f'{family} {weight:.2f}' for weight, family in members)})")
    return _Trial(name, ENSEMBLE_FAMILY, ENSEMBLE_MODEL_NAME, "Completed", started, _now(), time.monotonic() - clock, scores, None, members=members)


def _candidate_name(job_name: str, number: int, family: str) -> str:
    return f"{job_name}-t{number:02d}-{family}"[:64]


def _candidate_description(trial: _Trial, objective: str) -> dict[str, Any]:
    """One ListCandidatesForAutoMLJob `Candidates` entry (botocore's AutoMLCandidate shape)."""
    step_name = trial.name[:63]
    description: dict[str, Any] = {
        "CandidateName": trial.name,
        "ObjectiveStatus": "Succeeded" if trial.status == "Completed" else "Failed",
        "CandidateSteps": [
            {
                "CandidateStepType": "AWS::SageMaker::TrainingJob",
                "CandidateStepArn": f"{LOCAL_ARN_PREFIX}:training-job/{step_name.lower()}",
                "CandidateStepName": step_name,
            }
        ],
        "CandidateStatus": trial.status,
        "CreationTime": _iso(trial.started),
        "EndTime": _iso(trial.ended),
        "LastModifiedTime": _iso(trial.ended),
    }
    if trial.status == "Completed":
        description["FinalAutoMLJobObjectiveMetric"] = {
            "Type": "Minimize" if objective in MINIMIZED_METRICS else "Maximize",
            "MetricName": objective,
            "Value": trial.metrics[objective],
            "StandardMetricName": objective,
        }
        description["CandidateProperties"] = {
            "CandidateMetrics": [
                {"MetricName": name, "StandardMetricName": name, "Value": value, "Set": "Validation"} for name, value in sorted(trial.metrics.items())
            ]
        }
    else:
        description["FailureReason"] = trial.failure or "failed"
    return description


def inference_environment(problem_type: str, model_name: str) -> dict[str, str]:
    """The container environment of an ensembling-mode best candidate: the six keys
    `AutoMLStep.get_best_auto_ml_model` copies, with the values an Autopilot ensembling candidate carries
    (its AutoGluon serving script and code directory; MODEL_NAME names the model inside the artifact)."""
    supported = CLASSIFICATION_OUTPUT_KEYS if problem_type != REGRESSION else REGRESSION_OUTPUT_KEYS
    return {
        "MODEL_NAME": model_name,
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
        "SAGEMAKER_INFERENCE_OUTPUT": DEFAULT_INFERENCE_OUTPUT,
        "SAGEMAKER_INFERENCE_SUPPORTED": ",".join(supported),
        "SAGEMAKER_PROGRAM": "tabular_serve.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    }


def _write_best_artifact(directory: Path, best: _Trial, dataset: _Dataset, objective: str, cores: int) -> Path:
    by_name = {family.name: family for family in FAMILIES}
    if best.family == ENSEMBLE_FAMILY:
        fitted = [(weight, _fitted(dataset, by_name[family], cores)) for weight, family in best.members]
        model: Any = WeightedEnsemble(fitted, dataset.problem_type)
    else:
        model = _fitted(dataset, by_name[best.family], cores)
    spec = {
        "format_version": ARTIFACT_FORMAT_VERSION,
        "candidate_name": best.name,
        "model_name": best.model_name,
        "problem_type": dataset.problem_type,
        "objective": objective,
        "feature_columns": list(dataset.features.columns),
        "numeric_columns": dataset.numeric_columns,
        "categorical_columns": dataset.categorical_columns,
        "labels": dataset.labels,
        "ensemble_members": [{"weight": weight, "family": family} for weight, family in best.members],
    }
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        joblib.dump(model, Path(staging) / "model.joblib")
        (Path(staging) / "candidate.json").write_text(json.dumps(spec, indent=2))
        artifact = directory / "model.tar.gz"
        # Level 1: the forests' pickles are tens of MB, and gzip's default level 9 took 12 s on one for a
        # file barely smaller.
        with tarfile.open(artifact, "w:gz", compresslevel=1) as archive:
            for member in ("candidate.json", "model.joblib"):
                archive.add(Path(staging) / member, arcname=member)
    return artifact


# ---------------------------------------------------------------------------------------------------
# The inference container


class AutopilotContainer:
    """The best candidate's inference container: `invoke` is its POST /invocations.

    `model_dir` holds the extracted artifact (`candidate.json`, `model.joblib`) or the `model.tar.gz` itself.
    Requests are `text/csv`: one row per line, no header, the training feature columns in order without the
    target, an empty cell for a missing value. The answer is `text/csv`, one line per row, with the fields
    `SAGEMAKER_INFERENCE_OUTPUT` lists, in its order: `predicted_label`; `probability` (of the predicted
    label, as in ensembling mode); `probabilities` and `labels` as bracketed lists in one quoted field,
    e.g. `1,0.9,"[0.1, 0.9]","['0', '1']"`. A regression answers the predicted value.
    """

    def __init__(self, model_dir: Path, environment: Mapping[str, str]) -> None:
        self._extracted: tempfile.TemporaryDirectory[str] | None = None
        model_dir = Path(model_dir)
        if not (model_dir / "candidate.json").is_file() and (model_dir / "model.tar.gz").is_file():
            self._extracted = tempfile.TemporaryDirectory(prefix="sagelab-autopilot-")
            with tarfile.open(model_dir / "model.tar.gz") as archive:
                archive.extractall(self._extracted.name, filter="data")
            model_dir = Path(self._extracted.name)
        spec_path = model_dir / "candidate.json"
        if not spec_path.is_file():
            raise FileNotFoundError(f"{model_dir} has no candidate.json (nor a model.tar.gz holding one): expected the artifact run_automl_job wrote")
        self.spec: dict[str, Any] = json.loads(spec_path.read_text())
        if self.spec.get("format_version") != ARTIFACT_FORMAT_VERSION:
            raise ValueError(f"{spec_path} has format_version {self.spec.get('format_version')!r}; this container reads version {ARTIFACT_FORMAT_VERSION}")
        self.model = joblib.load(model_dir / "model.joblib")
        self.problem_type: str = self.spec["problem_type"]
        self.feature_columns: list[str] = self.spec["feature_columns"]
        self.numeric_columns = set(self.spec["numeric_columns"])
        self.labels: list[str] = self.spec["labels"]
        requested = environment.get("SAGEMAKER_INFERENCE_OUTPUT") or DEFAULT_INFERENCE_OUTPUT
        self.output_keys = [key.strip().lower() for key in requested.split(",") if key.strip()]
        supported = REGRESSION_OUTPUT_KEYS if self.problem_type == REGRESSION else CLASSIFICATION_OUTPUT_KEYS
        unsupported = [key for key in self.output_keys if key not in supported]
        if unsupported or not self.output_keys:
            raise ValueError(
                f"SAGEMAKER_INFERENCE_OUTPUT={requested!r}: {unsupported or 'no keys'} not supported for {self.problem_type}; expected keys from {list(supported)}"
            )

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type != "text/csv":
            raise AutopilotInputError(f"Content-Type {content_type!r} is not supported: send text/csv rows of {len(self.feature_columns)} feature values")
        accepted = (accept or "text/csv").split(";")[0].strip().lower()
        if accepted not in ("text/csv", "*/*"):
            raise AutopilotInputError(f"Accept {accept!r} is not supported: this container answers text/csv")
        features = self._parse(body)
        rendered = self._render(features)
        return rendered.encode("utf-8"), "text/csv"

    def _parse(self, body: bytes) -> pd.DataFrame:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise AutopilotInputError(f"the body is not UTF-8 text ({error}): send text/csv rows") from error
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
        if not rows:
            raise AutopilotInputError(
                f"the body is empty: send one or more text/csv rows of {len(self.feature_columns)} feature values ({self._columns_hint()})"
            )
        width = len(self.feature_columns)
        records: list[list[Any]] = []
        for number, row in enumerate(rows, start=1):
            if len(row) != width:
                raise AutopilotInputError(
                    f"row {number} has {len(row)} values; expected {width} ({self._columns_hint()}), without a header or the target column"
                )
            record: list[Any] = []
            for name, cell in zip(self.feature_columns, row, strict=True):
                cell = cell.strip()
                if cell == "":
                    record.append(np.nan if name in self.numeric_columns else None)
                elif name in self.numeric_columns:
                    try:
                        record.append(float(cell))
                    except ValueError:
                        raise AutopilotInputError(f"row {number}, column {name!r}: expected a number (or an empty cell), got {cell[:40]!r}") from None
                else:
                    record.append(cell)
            records.append(record)
        return pd.DataFrame(records, columns=self.feature_columns)

    def _columns_hint(self) -> str:
        names = self.feature_columns
        return ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:3])}, ..., {names[-1]}"

    def _render(self, features: pd.DataFrame) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if self.problem_type == REGRESSION:
            for value in self.model.predict(features):
                writer.writerow([repr(float(value))])
            return out.getvalue()
        probabilities = np.asarray(self.model.predict_proba(features))
        for row in probabilities:
            winner = int(row.argmax())
            fields = {
                "predicted_label": self.labels[winner],
                "probability": repr(float(row[winner])),
                "probabilities": "[" + ", ".join(repr(float(p)) for p in row) + "]",
                "labels": "[" + ", ".join(repr(label) for label in self.labels) + "]",
            }
            writer.writerow([fields[key] for key in self.output_keys])
        return out.getvalue()
