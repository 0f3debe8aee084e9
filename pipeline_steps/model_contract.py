"""What every trainer (train.py: XGBoost; train_custom.py: your own script) leaves for serving and prints.

Standard library only: train_custom.py runs in the SKLearn image, which has no xgboost, so the
contract both trainers share cannot live in train.py (importing it loads xgboost).

- The model directory carries its serving code (`code/`: inference.py and what it imports) and the
  registered model points the container at /opt/ml/model/code: the endpoint runs with network
  isolation, so nothing may be fetched from S3 or PyPI when it starts (no requirements.txt either).
- Metric lines (`validation-accuracy=0.970000`) are printed in the form the pipeline's metric
  definitions parse from the log: sagelab/step_contract.py reads METRIC_LINE_FORMAT from this file
  and derives the regexes from it, so the lines and the regexes stay in step.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

SERVING_CODE_DIR = "code"
SERVING_CODE = ("inference.py", "preprocess.py", "contract.py")  # and what they import
METRIC_LINE_FORMAT = "{split}-{metric}={value:.6f}"
REPORT_FILE_NAME = "training_report.json"


def add_serving_code(model_dir: Path) -> None:
    """Copy the serving code into `<model_dir>/code/`: this file's siblings, from the same source archive."""
    code_dir = Path(model_dir) / SERVING_CODE_DIR
    code_dir.mkdir(parents=True, exist_ok=True)
    for name in SERVING_CODE:
        shutil.copyfile(Path(__file__).with_name(name), code_dir / name)


def print_metrics(split: str, scores: Mapping[str, float]) -> None:
    for metric, value in scores.items():
        print(METRIC_LINE_FORMAT.format(split=split, metric=metric, value=value), flush=True)
