"""Constants the step scripts own and the pipeline builder needs, read without importing them.

The scripts are the single source of truth (evaluate.py writes the metric the condition reads;
model_contract.py holds the format of the lines the metric regexes parse; train_custom.py names the
hyperparameter that says which script of yours it runs). Importing them would load pandas, xgboost and
scikit-learn (over a second) into every `cdk synth`, so their module-level literals are read with
`ast` instead. A test checks that these values equal the imported modules' attributes.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

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
CONTRACT_SCRIPTS = ("evaluate.py", "model_contract.py", "train_custom.py")


def script_constant(script: str, name: str) -> Any:
    values = _literals(script)
    if name not in values:
        raise KeyError(f"{script} defines no literal {name}; the pipeline builder depends on it")
    return values[name]


EVALUATION_FILE_NAME: str = script_constant("evaluate.py", "EVALUATION_FILE_NAME")
CONDITION_METRIC_PATH: str = script_constant("evaluate.py", "CONDITION_METRIC_PATH")
ERROR_METRICS: tuple[str, ...] = script_constant("evaluate.py", "ERROR_METRICS")
METRIC_LINE_FORMAT: str = script_constant("model_contract.py", "METRIC_LINE_FORMAT")
USER_SCRIPT_HYPERPARAMETER: str = script_constant("train_custom.py", "USER_SCRIPT_HYPERPARAMETER")
