"""From the typed config to the settings that shape the pipeline definition (no CDK import).

Shared by the CDK app and `sagelab` so that both build the definition from the same inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sagelab.config import EnvironmentConfig, PipelineConfig, SageLabConfig, load_config
from sagelab.pipeline_definition import PipelineSettings, TuningSettings


def find_cdk_json(start: Path | None = None) -> Path | None:
    """The project's cdk.json: in `start` (the current directory) or the nearest folder above it,
    as git finds its repository. None outside a checkout (an installed `sagelab` run anywhere)."""
    here = (start or Path.cwd()).resolve()
    return next((folder / "cdk.json" for folder in (here, *here.parents) if (folder / "cdk.json").is_file()), None)


def cdk_context(cdk_json: Path | None = None) -> dict[str, Any]:
    """The `context` of cdk.json (the nearest one by default), as the CDK CLI hands it to the app;
    empty outside a checkout, so the config's own defaults apply."""
    path = cdk_json or find_cdk_json()
    return dict(json.loads(path.read_text()).get("context", {})) if path else {}


def load_project_config(config_file: str | Path | None = None, cdk_json: Path | None = None) -> SageLabConfig:
    return load_config(cdk_context(cdk_json), config_file)


def settings_for(pipeline: PipelineConfig) -> PipelineSettings:
    """The definition-shaping settings of one environment. Environments with equal settings
    (every student of a class) share one built definition."""
    tuning = pipeline.tuning
    return PipelineSettings(
        metric=pipeline.metric,
        metric_threshold=pipeline.metric_threshold,
        processing_instance_type=pipeline.processing_instance_type,
        training_instance_type=pipeline.training_instance_type,
        max_depth=pipeline.max_depth,
        eta=pipeline.eta,
        num_round=pipeline.num_round,
        cv_folds=pipeline.cv_folds,
        approval_status=pipeline.approval_status,
        tuning=TuningSettings(
            max_jobs=tuning.max_jobs,
            max_parallel_jobs=tuning.max_parallel_jobs,
            max_depth=(tuning.max_depth_min, tuning.max_depth_max),
            eta=(tuning.eta_min, tuning.eta_max),
            strategy=tuning.strategy,
        ),
    )


def environment(config: SageLabConfig, name: str | None = None) -> EnvironmentConfig:
    """The named environment (the first one when `name` is None), or a one-line error."""
    if name is None:
        return config.environments[0]
    for env in config.environments:
        if env.name == name:
            return env
    raise KeyError(f"no environment {name!r}; configured: {', '.join(e.name for e in config.environments)}")
