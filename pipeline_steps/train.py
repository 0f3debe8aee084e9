"""Train step: XGBoost in SageMaker script mode (framework container 3.0-5; locally `xgboost-cpu`).

SageMaker training contract: channels arrive as `SM_CHANNEL_<NAME>` directories (train, validation,
spec), the model goes to `SM_MODEL_DIR`, extra output to `SM_OUTPUT_DATA_DIR`, hyperparameters as
`--name value` arguments. The model directory holds everything serving needs and nothing that
needs pickle: the booster in XGBoost's portable JSON format, the feature spec and a training report.

Metric lines (`validation-accuracy=0.97`) are printed in the form the pipeline's metric definitions
(and so the tuning step's objective) parse from the log; that format and the serving code the model
carries are shared with train_custom.py in model_contract.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

try:  # in the containers and under `sagelab run` the scripts' folder is on sys.path
    import contract
    from model_contract import REPORT_FILE_NAME, add_serving_code, print_metrics
    from preprocess import FeatureSpec, load_split
except ModuleNotFoundError:  # imported from the repository (tests, `sagelab serve`)
    from pipeline_steps import contract
    from pipeline_steps.model_contract import REPORT_FILE_NAME, add_serving_code, print_metrics
    from pipeline_steps.preprocess import FeatureSpec, load_split

MODEL_FILE_NAME = contract.XGBOOST_MODEL_FILE_NAME
# Distributed training (TrainingInstanceCount > 1): the first host runs XGBoost's collective
# tracker on this port; SAGELAB_XGBOOST_TRACKER_PORT overrides it (tests, restrictive networks).
TRACKER_PORT = int(os.environ.get("SAGELAB_XGBOOST_TRACKER_PORT", "9099"))


@dataclass(frozen=True)
class Hyperparameters:
    max_depth: int = 5
    eta: float = 0.2
    num_round: int = 200
    early_stopping_rounds: int = 20
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    min_child_weight: float = 1.0
    cv_folds: int = 0
    seed: int = 42
    nthread: int = 0  # 0 = every core this process may use
    # Scoring the training set every round costs a prediction pass over 70% of the data per round
    # (MNIST: ~15% of training time) and only feeds the log; the validation set drives early stopping.
    eval_train: bool = False

    def validate(self) -> None:
        problems = []
        if not 1 <= self.max_depth <= 32:
            problems.append(f"max_depth={self.max_depth} (expected 1..32)")
        if not 0 < self.eta <= 1:
            problems.append(f"eta={self.eta} (expected 0 < eta <= 1)")
        if not 1 <= self.num_round <= 10000:
            problems.append(f"num_round={self.num_round} (expected 1..10000)")
        if not 0 < self.subsample <= 1:
            problems.append(f"subsample={self.subsample} (expected 0 < subsample <= 1)")
        if self.cv_folds == 1 or self.cv_folds < 0:
            problems.append(f"cv_folds={self.cv_folds} (expected 0 to disable, or 2 or more)")
        if not 0 < self.colsample_bytree <= 1:
            problems.append(f"colsample_bytree={self.colsample_bytree} (expected 0 < colsample_bytree <= 1)")
        if problems:
            raise ValueError("bad hyperparameters: " + "; ".join(problems))


def xgboost_params(spec: FeatureSpec, hp: Hyperparameters) -> dict[str, Any]:
    params: dict[str, Any] = {
        "max_depth": hp.max_depth,
        "eta": hp.eta,
        "subsample": hp.subsample,
        "colsample_bytree": hp.colsample_bytree,
        "min_child_weight": hp.min_child_weight,
        "seed": hp.seed,
        "tree_method": "hist",
    }
    params["nthread"] = hp.nthread or available_cores()
    if spec.problem_type == "multiclass":
        params.update(objective="multi:softprob", num_class=len(spec.labels), eval_metric=["merror", "mlogloss"])
    elif spec.problem_type == "binary":
        params.update(objective="binary:logistic", eval_metric=["error", "auc", "logloss"])
    else:
        params.update(objective="reg:squarederror", eval_metric=["rmse"])
    return params


def available_cores() -> int:
    """Cores this process may run on (a container's CPU set or affinity, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def score(spec: FeatureSpec, booster: xgb.Booster, features: np.ndarray, target: np.ndarray) -> dict[str, float]:
    predictions = booster.predict(xgb.DMatrix(features), iteration_range=(0, booster.best_iteration + 1))
    if spec.problem_type == "regression":
        rmse = float(np.sqrt(np.mean((predictions - target) ** 2)))
        return {"rmse": rmse}
    labels = predictions.argmax(axis=1) if predictions.ndim == 2 else (predictions >= 0.5).astype(int)
    return {"accuracy": float(np.mean(labels == target))}


def cross_validate(spec: FeatureSpec, hp: Hyperparameters, features: np.ndarray, target: np.ndarray) -> dict[str, dict[str, float]]:
    """k-fold CV on the training split; stratified for classification. Returns mean and std per metric."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (
        KFold(n_splits=hp.cv_folds, shuffle=True, random_state=hp.seed)
        if spec.problem_type == "regression"
        else StratifiedKFold(n_splits=hp.cv_folds, shuffle=True, random_state=hp.seed)
    )
    fold_scores: list[dict[str, float]] = []
    params = xgboost_params(spec, hp)
    for fold, (fit_index, holdout_index) in enumerate(splitter.split(features, target), start=1):
        fit = xgb.DMatrix(features[fit_index], label=target[fit_index])
        holdout = xgb.DMatrix(features[holdout_index], label=target[holdout_index])
        booster = xgb.train(
            params, fit, num_boost_round=hp.num_round, evals=[(holdout, "holdout")], early_stopping_rounds=hp.early_stopping_rounds, verbose_eval=False
        )
        fold_scores.append(score(spec, booster, features[holdout_index], target[holdout_index]))
        print(f"cv fold {fold}/{hp.cv_folds}: {fold_scores[-1]}", flush=True)
    summary = {}
    for metric in fold_scores[0]:
        values = np.array([s[metric] for s in fold_scores])
        summary[metric] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
        print(f"cv-{metric}-mean={summary[metric]['mean']:.6f} cv-{metric}-std={summary[metric]['std']:.6f}", flush=True)
    return summary


@dataclass(frozen=True)
class Cluster:
    """The training hosts as SageMaker describes them (SM_HOSTS, SM_CURRENT_HOST)."""

    hosts: tuple[str, ...] = ("algo-1",)
    current: str = "algo-1"

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current)

    @property
    def size(self) -> int:
        return len(self.hosts)

    @classmethod
    def from_env(cls) -> Cluster:
        hosts = tuple(json.loads(os.environ.get("SM_HOSTS", '["algo-1"]')))
        current = os.environ.get("SM_CURRENT_HOST", hosts[0])
        if current not in hosts:
            raise ValueError(f"SM_CURRENT_HOST {current!r} is not one of SM_HOSTS {list(hosts)}")
        return cls(hosts=hosts, current=current)


@contextlib.contextmanager
def collective(cluster: Cluster) -> Any:
    """One host: nothing. Several: the first host starts the tracker; every host joins the
    collective, so `xgb.train` builds one model from every host's shard of the rows."""
    if cluster.size == 1:
        yield
        return
    from xgboost.collective import CommunicatorContext
    from xgboost.tracker import RabitTracker

    master = socket.gethostbyname(cluster.hosts[0])
    tracker = None
    if cluster.rank == 0:
        tracker = RabitTracker(n_workers=cluster.size, host_ip=master, port=TRACKER_PORT, sortby="task")
        tracker.start()
    with CommunicatorContext(dmlc_tracker_uri=master, dmlc_tracker_port=TRACKER_PORT, dmlc_task_id=str(cluster.rank)):
        yield
    if tracker is not None:
        tracker.wait_for()


def train(
    train_dir: Path,
    validation_dir: Path,
    spec_dir: Path,
    model_dir: Path,
    hp: Hyperparameters,
    output_data_dir: Path | None = None,
    cluster: Cluster | None = None,
) -> dict[str, Any]:
    hp.validate()
    cluster = cluster or Cluster()
    spec = FeatureSpec.load(spec_dir)
    train_x, train_y = load_split(train_dir, "train")
    valid_x, valid_y = load_split(validation_dir, "validation")
    if cluster.size > 1:  # every host gets the full data (FullyReplicated); each trains on its shard
        train_x, train_y = train_x[cluster.rank :: cluster.size], train_y[cluster.rank :: cluster.size]
        print(f"host {cluster.current}: rank {cluster.rank} of {cluster.size}, {len(train_y)} training rows", flush=True)
    params = xgboost_params(spec, hp)
    history: dict[str, dict[str, list[float]]] = {}
    with collective(cluster):  # the quantile sketch is agreed across hosts, so it is built in here
        # `hist` needs only the binned histogram index: QuantileDMatrix builds it straight from the
        # array, with no DMatrix copy of every value (MNIST: ~300 MB and a second less); same cuts, same model.
        dtrain = xgb.QuantileDMatrix(train_x, label=train_y)
        dvalid = xgb.QuantileDMatrix(valid_x, label=valid_y, ref=dtrain)
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=hp.num_round,
            evals=[(dtrain, "train"), (dvalid, "validation")] if hp.eval_train else [(dvalid, "validation")],  # the last set stops early
            early_stopping_rounds=hp.early_stopping_rounds,
            evals_result=history,
            verbose_eval=max(1, hp.num_round // 10),
        )
    validation_scores = score(spec, booster, valid_x, valid_y)
    print_metrics("validation", validation_scores)

    report: dict[str, Any] = {
        "hyperparameters": hp.__dict__,
        "best_iteration": int(booster.best_iteration),
        "validation": validation_scores,
        "rows": {"train": len(train_y), "validation": len(valid_y)},
    }
    if cluster.rank != 0:
        return report  # the first host writes the model; the others' copies would be identical
    if hp.cv_folds:
        report["cross_validation"] = cross_validate(spec, hp, train_x, train_y)

    model_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(model_dir / MODEL_FILE_NAME)
    spec.save(model_dir)
    (model_dir / REPORT_FILE_NAME).write_text(json.dumps(report, indent=2, sort_keys=True))
    add_serving_code(model_dir)
    if output_data_dir is not None:
        output_data_dir.mkdir(parents=True, exist_ok=True)
        (output_data_dir / REPORT_FILE_NAME).write_text(json.dumps({**report, "history": history}, indent=2, sort_keys=True))
    return report


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Hyperparameters]:
    parser = argparse.ArgumentParser(description="Train an XGBoost model (SageMaker script mode)")
    defaults = Hyperparameters()
    for name, value in defaults.__dict__.items():
        parser.add_argument(f"--{name}", type=_flag if isinstance(value, bool) else type(value), default=value)
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model")))
    parser.add_argument("--train", type=Path, default=_channel("TRAIN"))
    parser.add_argument("--validation", type=Path, default=_channel("VALIDATION"))
    parser.add_argument("--spec", type=Path, default=_channel("SPEC"))
    parser.add_argument("--output-data-dir", type=Path, default=Path(os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"train: ignoring unknown arguments {unknown}", flush=True)
    hp = Hyperparameters(**{name: getattr(args, name) for name in defaults.__dict__})
    return args, hp


def _flag(text: str) -> bool:
    """SageMaker passes every hyperparameter as text: "true"/"false" (or 1/0), not Python's bool("false") == True."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _channel(name: str) -> Path:
    return Path(os.environ.get(f"SM_CHANNEL_{name}", f"/opt/ml/input/data/{name.lower()}"))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, hp = parse_args(argv)
        report = train(args.train, args.validation, args.spec, args.model_dir, hp, args.output_data_dir, Cluster.from_env())
    except (ValueError, FileNotFoundError) as error:
        print(f"train: error: {error}", file=sys.stderr, flush=True)
        return 2
    print(f"train: best iteration {report['best_iteration']}, validation {report['validation']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
