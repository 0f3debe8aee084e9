"""Train step for your own script (`pipeline.custom_script`), in the SKLearn 1.4-2 framework image.

SageMaker starts this file in script mode (entry point `train_custom.py` of sourcedir.tar.gz) with
`--user_script custom/<your file>` (the path inside the archive, relative to this file) and the
run's other hyperparameters. It runs your script in this process as `__main__`, as `python
<your file> --name value ...` would, under the same SageMaker training contract:

    $SM_CHANNEL_TRAIN/features.npy, target.npy        the training split (float32 features; int64
    $SM_CHANNEL_VALIDATION/features.npy, target.npy   class positions in the spec's labels, or float64)
    $SM_CHANNEL_SPEC/feature_spec.json                 feature names, problem_type, labels
    sys.argv[1:]                                       the other hyperparameters, `--name value`

and expects a fitted scikit-learn estimator saved with joblib as `$SM_MODEL_DIR/model.joblib`.
Then this script makes the model directory servable like train.py's: it checks that the model
loads as inference.py loads it (predict, and predict_proba for a classification target), adds the
feature spec and the serving code, and prints the validation metric lines the pipeline's metric
definitions parse.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:  # in the containers and under `sagelab run` the scripts' folder is on sys.path
    from inference import ESTIMATOR_FILE_NAME, model_fn, model_output
    from model_contract import REPORT_FILE_NAME, add_serving_code, print_metrics
    from preprocess import FeatureSpec, load_split
except ModuleNotFoundError:  # imported from the repository (tests)
    from pipeline_steps.inference import ESTIMATOR_FILE_NAME, model_fn, model_output
    from pipeline_steps.model_contract import REPORT_FILE_NAME, add_serving_code, print_metrics
    from pipeline_steps.preprocess import FeatureSpec, load_split

# Contract with the pipeline definition (read by sagelab/step_contract.py): the hyperparameter
# naming your script, as a path inside the source archive.
USER_SCRIPT_HYPERPARAMETER = "user_script"
SAVE_LINE = f'joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "{ESTIMATOR_FILE_NAME}"))'


class CustomTrainingError(Exception):
    """Your script ran but left no servable model; str() is the one line that says what to change."""


def _channel(name: str) -> Path:
    return Path(os.environ.get(f"SM_CHANNEL_{name}", f"/opt/ml/input/data/{name.lower()}"))


def model_dir() -> Path:
    return Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))


def resolve_user_script(relative: str) -> Path:
    """`custom/train.py` -> the file beside this one in the unpacked source archive."""
    script = Path(__file__).resolve().parent / relative
    if not script.is_file() or script.suffix != ".py":
        raise CustomTrainingError(
            f"--{USER_SCRIPT_HYPERPARAMETER} {relative!r}: no such .py file in the source archive ({script}); expected the path the code bundle gives it, like custom/train.py"
        )
    return script


def run_user_script(script: Path, arguments: Sequence[str]) -> None:
    """Run `script` as `__main__` in this process with `arguments` as its command line, as `python
    script ...` would (its folder first on sys.path). A non-zero SystemExit propagates."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *arguments]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (None, 0):
            raise
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def finish_model(directory: Path, spec_dir: Path, validation_dir: Path, script_label: str) -> dict[str, Any]:
    """Check the saved model, add the feature spec and the serving code, score the validation split.
    Returns the training report (also written to the model directory)."""
    saved = directory / ESTIMATOR_FILE_NAME
    if not saved.is_file():
        raise CustomTrainingError(f"{script_label} saved no model: {saved} does not exist; end your script with {SAVE_LINE}")
    spec = FeatureSpec.load(spec_dir)
    spec.save(directory)  # model_fn reads the spec from the model directory, as serving will
    try:
        model = model_fn(directory)
    except Exception as error:  # a class defined in your script cannot be unpickled at serving either
        raise CustomTrainingError(f"{saved} does not load as serving loads it: {type(error).__name__}: {error}") from None
    features, target = load_split(validation_dir, "validation")
    try:
        output = model_output(model, features)
    except Exception as error:
        raise CustomTrainingError(
            f"{ESTIMATOR_FILE_NAME} ({type(model.estimator).__name__}) failed to predict the validation split "
            f"({features.shape[0]} rows x {features.shape[1]} features, as in features.npy): {type(error).__name__}: {error}"
        ) from None
    if spec.problem_type == "regression":
        scores = {"rmse": float(np.sqrt(np.mean((output - target) ** 2)))}
    else:
        scores = {"accuracy": float(np.mean(output.argmax(axis=1) == target))}
    print_metrics("validation", scores)
    add_serving_code(directory)
    report = {"script": script_label, "estimator": type(model.estimator).__name__, "validation": scores, "rows": {"validation": len(target)}}
    (directory / REPORT_FILE_NAME).write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


def parse_args(argv: Sequence[str] | None) -> tuple[str, list[str]]:
    """(the script's path in the archive, the hyperparameters left for it)."""
    parser = argparse.ArgumentParser(description="Run your training script under the SageMaker training contract", allow_abbrev=False)
    parser.add_argument(f"--{USER_SCRIPT_HYPERPARAMETER}", required=True, help="path of your script inside the source archive, like custom/train.py")
    args, rest = parser.parse_known_args(argv)
    return getattr(args, USER_SCRIPT_HYPERPARAMETER), rest


def main(argv: Sequence[str] | None = None) -> int:
    relative, arguments = parse_args(argv)
    try:
        script = resolve_user_script(relative)
        model_dir().mkdir(parents=True, exist_ok=True)
        print(f"train_custom: running {relative} {' '.join(arguments)}".rstrip(), flush=True)
        try:
            run_user_script(script, arguments)
        except SystemExit as stop:
            print(f"train_custom: error: {relative} exited with status {stop.code}", file=sys.stderr, flush=True)
            return stop.code if isinstance(stop.code, int) else 1
        except Exception as error:  # your script's own failure: its traceback, then one line
            traceback.print_exc()
            print(f"train_custom: error: {relative} raised {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            return 1
        report = finish_model(model_dir(), _channel("SPEC"), _channel("VALIDATION"), relative)
    except CustomTrainingError as error:
        print(f"train_custom: error: {error}", file=sys.stderr, flush=True)
        return 2
    print(f"train_custom: {report['estimator']} from {relative}, validation {report['validation']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
