"""Constants the step scripts own and the pipeline builder needs, read without importing them.

Facts shared beyond one script (file names, algorithm names) live in pipeline_steps/contract.py, which is
standard library only and imported directly; the names below that come from it are kept for callers.

The scripts are the single source of truth (evaluate.py writes the gate's verdict the condition reads;
model_contract.py holds the format of the lines the metric regexes parse; train_custom.py names the
hyperparameter that says which script of yours it runs). Importing them would load pandas, xgboost and
scikit-learn (over a second) into every `cdk synth`, so their module-level literals are read with
`ast` instead. A test checks that these values equal the imported modules' attributes.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

from pipeline_steps import contract
from sagelab.package_files import package_dir

STEPS_DIR = package_dir("pipeline_steps")


@functools.cache
def _literals(script: str) -> dict[str, Any]:
    tree = ast.parse((STEPS_DIR / script).read_text(), filename=script)
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue  # not a literal (computed at import time); not part of the contract
    return values


# The scripts whose literals the pipeline definition depends on (its cache key hashes them).
CONTRACT_SCRIPTS = ("evaluate.py", "model_contract.py", "train_custom.py", "preprocess.py", "contract.py")


def script_constant(script: str, name: str) -> Any:
    values = _literals(script)
    if name not in values:
        raise KeyError(f"{script} defines no literal {name}; the pipeline builder depends on it")
    return values[name]


EVALUATION_FILE_NAME = contract.EVALUATION_FILE_NAME
CONDITION_METRIC_PATH: str = script_constant("evaluate.py", "CONDITION_METRIC_PATH")
ERROR_METRICS: tuple[str, ...] = script_constant("evaluate.py", "ERROR_METRICS")
METRIC_LINE_FORMAT: str = script_constant("model_contract.py", "METRIC_LINE_FORMAT")
USER_SCRIPT_HYPERPARAMETER: str = script_constant("train_custom.py", "USER_SCRIPT_HYPERPARAMETER")
# The gate every CheckMetric reads (decision 0011): ConditionEquals(JsonGet(GATE_PASSED_PATH), 1),
# the Fail message JsonGet(GATE_MESSAGE_PATH); the pipeline parameters the gate's message names.
GATE_PASSED_PATH: str = script_constant("evaluate.py", "GATE_PASSED_PATH")
GATE_MESSAGE_PATH: str = script_constant("evaluate.py", "GATE_MESSAGE_PATH")
MODEL_DESCRIPTION_FILE_NAME = contract.MODEL_DESCRIPTION_FILE_NAME
# The drift check's baseline beside the evaluation (decision 0013), which the registered version names.
STATISTICS_FILE_NAME = contract.STATISTICS_FILE_NAME
CONSTRAINTS_FILE_NAME = contract.CONSTRAINTS_FILE_NAME
PREDICTION_STATISTICS_FILE_NAME = contract.PREDICTION_STATISTICS_FILE_NAME
METRIC_THRESHOLD_PARAMETER: str = script_constant("evaluate.py", "METRIC_THRESHOLD_PARAMETER")
RMSE_THRESHOLD_PARAMETER: str = script_constant("evaluate.py", "RMSE_THRESHOLD_PARAMETER")
SILHOUETTE_THRESHOLD_PARAMETER: str = script_constant("evaluate.py", "SILHOUETTE_THRESHOLD_PARAMETER")
KMEANS_MODEL_FILE_NAME: str = script_constant("evaluate.py", "KMEANS_MODEL_FILE_NAME")
CUSTOM_MODEL_FILE_NAME: str = script_constant("evaluate.py", "CUSTOM_MODEL_FILE_NAME")
# What preprocess.py writes for the other algorithms' containers: spec/DATA_SUMMARY_FILE_NAME (the
# K-Means step's feature_dim is JsonGet(FEATURE_DIM_KEY)) and the tabular/ output's CSV files.
DATA_SUMMARY_FILE_NAME: str = script_constant("preprocess.py", "DATA_SUMMARY_FILE_NAME")
FEATURE_DIM_KEY: str = script_constant("preprocess.py", "FEATURE_DIM_KEY")
TABULAR_DIR: str = script_constant("preprocess.py", "TABULAR_DIR")
TABULAR_TRAIN_FILE: str = script_constant("preprocess.py", "TABULAR_TRAIN_FILE")
TABULAR_TEST_FILE: str = script_constant("preprocess.py", "TABULAR_TEST_FILE")
