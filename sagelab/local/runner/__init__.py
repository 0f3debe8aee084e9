"""Interpret a SageMaker Pipeline definition on this machine: no AWS, no Docker.

The runner takes the *deployed* definition (placeholders substituted with local values) and runs
each step under the container contract SageMaker gives it:

- Processing: inputs copied from local S3 into `/opt/ml/processing/...` mapped into a sandbox,
  `ContainerEntrypoint` + `ContainerArguments` run with this Python, outputs copied back.
- Training: channels in `/opt/ml/input/data/<channel>`, `SM_*` variables, hyperparameters as
  arguments, the entry point from `sagemaker_submit_directory`, `model.tar.gz` written to
  `<S3OutputPath>/<job>/output/` like SageMaker; metric definitions parsed from the log.
- Tuning: a bounded search (deterministic) over the definition's ranges, best job first.
- Built-in K-Means (a Training step with the K-Means image): `sagelab.local.builtin_kmeans`.
- AutoML: a bounded local search (`sagelab.local.automl`); its candidates are answered on a
  loopback SageMaker API (`sagelab.local.sagemaker_api`) that processing steps reach with boto3.
- Model / Transform: a local model and a batch transform through the local twin of its container
  (`sagelab.local.containers`).
- RegisterModel: a local model registry (`sagelab.local.registry`).
- Condition / Fail: evaluated with `sagelab.local.expressions`.

`s3://bucket/key` is `<workdir>/s3/bucket/key`.

    pipeline.py     LocalPipelineRunner: the run loop, each step's record, the gate's verdict
    dag.py          the steps by name, their order, a condition's branches
    parameters.py   the definition's parameters and `--param` overrides
    cache.py        the resume cache (`--resume`)
    local_s3.py     the local S3 and its link policy (hard links or private copies)
    processes.py    a step's program as a process, its log
    loopback_api.py the loopback SageMaker API for AutoML's leaderboard
    services.py     what an executor may use from its run
    steps/          one module per step type
"""

from sagelab.local.runner.dag import dependency_order, flatten_steps
from sagelab.local.runner.errors import FailStepReached, PipelineError, StepFailed
from sagelab.local.runner.local_s3 import READ_ONLY_INPUT_SCRIPTS, AccessDenied, LocalS3, reads_inputs_only
from sagelab.local.runner.parameters import coerce_parameter
from sagelab.local.runner.pipeline import (
    DEFAULT_LOCAL_AUTOML_BUDGET_S,
    DEFAULT_MAX_LOCAL_TUNING_JOBS,
    SUPPORTED_STEP_TYPES,
    LocalPipelineRunner,
    RunResult,
    StepRecord,
)

__all__ = [
    "DEFAULT_LOCAL_AUTOML_BUDGET_S",
    "DEFAULT_MAX_LOCAL_TUNING_JOBS",
    "READ_ONLY_INPUT_SCRIPTS",
    "SUPPORTED_STEP_TYPES",
    "AccessDenied",
    "FailStepReached",
    "LocalPipelineRunner",
    "LocalS3",
    "PipelineError",
    "RunResult",
    "StepFailed",
    "StepRecord",
    "coerce_parameter",
    "dependency_order",
    "flatten_steps",
    "reads_inputs_only",
]
