"""The facts SageLab's parts share, defined once: algorithm names, problem types, the artifacts
bucket's prefixes, the registry metadata keys, artifact file names, and the one function that turns
a registered version's metadata into the front door's serving settings.

Standard library only, constants and pure functions only: this file ships as it is, byte for byte,
to every place that cannot import `sagelab` (docs/decisions/0018):

- each processing job (Preprocess, every Evaluate) gets it as its own input, `contract`, beside the
  script's `code` input (`/opt/ml/processing/input/contract/contract.py`);
- the training source bundle (`sourcedir.tar.gz`) and the model's serving code (`code/`) carry it
  beside the scripts;
- each Lambda asset (front door, approval deployer, drift check, release, spending cap) has it at
  its root, staged at synth (`stacks/lambda_runtime.py`).

The synth-side registry (`sagelab/algorithms`) and the local twins read their names from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# -- algorithms (decision 0011): the `Algorithm` pipeline parameter's values and `sagelab:algorithm` ---
XGBOOST = "xgboost"
KMEANS = "kmeans"
AUTOPILOT = "autopilot"
CUSTOM = "custom"  # your own script (pipeline.custom_script)
ALGORITHMS = (XGBOOST, KMEANS, AUTOPILOT, CUSTOM)
DEFAULT_ALGORITHM = XGBOOST  # also what a version registered without `sagelab:algorithm` is served as

# -- problem types: one vocabulary end to end (`sagelab_summary.problem_type`, `sagelab:problem-type`) --
BINARY = "binary"
MULTICLASS = "multiclass"
REGRESSION = "regression"
CLUSTERING = "clustering"  # K-Means: what evaluate.py writes whatever the target
PROBLEM_TYPES = (MULTICLASS, BINARY, REGRESSION)  # what preprocess infers from a target (or is told)
# What evaluate.py writes and registration tags, and the family each is scored and answered as.
CLASSIFICATION = "classification"
PROBLEM_FAMILIES = {BINARY: CLASSIFICATION, MULTICLASS: CLASSIFICATION, REGRESSION: REGRESSION, CLUSTERING: CLUSTERING}

# -- the artifacts bucket's prefixes --------------------------------------------------------------------
PIPELINE_CODE_PREFIX = "pipeline-code"  # the code bundle, per content version
PIPELINE_RUNS_PREFIX = "pipeline-runs"  # a run's scratch (expires after scratch_expiry_days)
MODELS_PREFIX = "models"  # trained models: kept as long as the registry names them
# A run's evaluation (metrics, model description, drift baseline): kept as long as the model.
EVALUATIONS_PREFIX = "models/evaluations"  # below MODELS_PREFIX
# Requests and responses captured from API callers: other people's data (see sagelab/bucket_layout.py).
DATA_CAPTURE_PREFIX = "data-capture/"

# -- the model registry's CustomerMetadataProperties, set by every chain's RegisterModel -------------------
METADATA_ALGORITHM = "sagelab:algorithm"
METADATA_PROBLEM_TYPE = "sagelab:problem-type"
METADATA_DESCRIPTION = "sagelab:model-description"

# -- artifact file names ---------------------------------------------------------------------------------
XGBOOST_MODEL_FILE_NAME = "xgboost-model.json"  # train.py writes it, evaluate.py and inference.py load it
EVALUATION_FILE_NAME = "evaluation.json"
MODEL_DESCRIPTION_FILE_NAME = "model_description.json"
# The drift check's baseline beside the evaluation (decision 0013).
STATISTICS_FILE_NAME = "statistics.json"
CONSTRAINTS_FILE_NAME = "constraints.json"
PREDICTION_STATISTICS_FILE_NAME = "prediction_statistics.json"

# -- serving settings: the front door's model configuration from a version's metadata ---------------------
# The only model descriptions the front door's role may read (stacks/front_door.py grants exactly these keys).
DESCRIPTION_KEY_PATTERN = rf"^{EVALUATIONS_PREFIX}/[A-Za-z0-9!_.*'()/-]+/{re.escape(MODEL_DESCRIPTION_FILE_NAME)}$"
# The front door function's environment that carries them (the serving stack sets it; `sagelab serve` too).
ENV_ALGORITHM = "MODEL_ALGORITHM"
ENV_PROBLEM_TYPE = "MODEL_PROBLEM_TYPE"
ENV_DESCRIPTION_URI = "MODEL_DESCRIPTION_URI"


class UnservableModel(ValueError):
    """The version's metadata names an algorithm or a problem type the front door cannot speak; it is not served."""


@dataclass(frozen=True)
class ServingSettings:
    """What the front door needs to know about the served model; `dropped` says which metadata values
    were not usable and why (they are served as empty, never passed on)."""

    algorithm: str
    problem_type: str = ""
    description_uri: str = ""
    dropped: tuple[str, ...] = field(default=(), compare=False)

    def environment(self) -> dict[str, str]:
        return {ENV_ALGORITHM: self.algorithm, ENV_PROBLEM_TYPE: self.problem_type, ENV_DESCRIPTION_URI: self.description_uri}


def serving_settings(metadata: Mapping[str, str], artifacts_bucket: str, default_algorithm: str = DEFAULT_ALGORITHM) -> ServingSettings:
    """The front door's settings from a version's CustomerMetadataProperties, each value checked:
    UnservableModel for an algorithm or a problem type it cannot speak (its answer's shape depends on
    the problem type; a version registered before 0011 has none: ""); a description URI that is not of
    the expected shape (outside `s3://<artifacts_bucket>/models/evaluations/...`) is dropped, with the
    reason in `dropped`. The approval deployer and `sagelab serve` both call this."""
    algorithm = str(metadata.get(METADATA_ALGORITHM) or default_algorithm).strip().lower()
    if algorithm not in ALGORITHMS:
        raise UnservableModel(f"{METADATA_ALGORITHM} is {algorithm[:40]!r}; the front door serves {', '.join(ALGORITHMS)}")
    problem_type = str(metadata.get(METADATA_PROBLEM_TYPE) or "")
    if problem_type and problem_type not in PROBLEM_FAMILIES:
        raise UnservableModel(f"{METADATA_PROBLEM_TYPE} is {problem_type[:40]!r}; the front door serves {', '.join(PROBLEM_FAMILIES)} (or none)")
    dropped = []
    description = str(metadata.get(METADATA_DESCRIPTION) or "")
    prefix = f"s3://{artifacts_bucket}/"
    if description and not (description.startswith(prefix) and re.match(DESCRIPTION_KEY_PATTERN, description[len(prefix) :])):
        dropped.append(
            f"model description not deployed: {METADATA_DESCRIPTION} {description[:300]!r}: expected "
            f"s3://{artifacts_bucket}/{EVALUATIONS_PREFIX}/.../{MODEL_DESCRIPTION_FILE_NAME} (this environment's artifacts bucket)"
        )
        description = ""
    return ServingSettings(algorithm, problem_type, description, tuple(dropped))
