"""Builds the whole CDK app from the config: shared artifacts once, then one stage per environment.

`app.py` calls `build_app()`; tests call it with `cdk.json`'s real context and a temporary outdir.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

from aws_cdk import App

from sagelab.code_bundle import stage_code_bundle
from sagelab.config import SageLabConfig, load_config
from sagelab.datasets import DIGITS_CSV
from sagelab.pipeline_definition import PipelineSettings, TuningSettings, definition_json, image_uris
from stacks.nag import add_nag_packs
from stacks.platform_stack import PlatformStack, SharedArtifacts

REPO_ROOT = Path(__file__).resolve().parent.parent


def pipeline_settings(config: SageLabConfig) -> PipelineSettings:
    """The definition-shaping settings; they must agree across environments (built once)."""
    shapes = {_settings_for(env.pipeline) for env in config.environments}
    if len(shapes) > 1:
        raise ValueError("every environment must share the pipeline settings that shape the definition (metric, tuning, cv_folds); per-run values are pipeline parameters")
    return shapes.pop()


def _settings_for(pipeline: Any) -> PipelineSettings:
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


@functools.lru_cache(maxsize=4)
def _staged_code() -> Any:
    return stage_code_bundle()


def build_shared(config: SageLabConfig) -> SharedArtifacts:
    regions = sorted({env.region for env in config.environments})
    return SharedArtifacts(
        definition_body=definition_json(pipeline_settings(config)),
        code_bundle=_staged_code(),
        dataset_dir=str(DIGITS_CSV.parent),
        image_uris_by_region={region: image_uris(region) for region in regions},
    )


def environment_tags(config: SageLabConfig, env_name: str, owner: str) -> dict[str, str]:
    return {"project": config.project, "environment": env_name, "owner": owner}


def build_app(app: App | None = None, context: Mapping[str, Any] | None = None, config: SageLabConfig | None = None) -> App:
    """Compose every environment into `app` (a new App when None)."""
    app = app or App(context=dict(context) if context is not None else None)
    if config is None:
        context_view = {"sagelab": app.node.try_get_context("sagelab")}
        config = load_config(context_view, app.node.try_get_context("config"))
    shared = build_shared(config)
    for env in config.environments:
        PlatformStack(
            app,
            f"{env.resource_prefix}-platform",
            env_config=env,
            shared=shared,
            tags=environment_tags(config, env.name, env.owner),
        )
    add_nag_packs(app)
    return app
