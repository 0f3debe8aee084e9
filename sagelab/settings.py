"""Where the CLI and the CDK app find the project's config (no CDK import): the nearest
cdk.json's context, an optional YAML file, and the environment asked for.

The pipeline definition is built from `EnvironmentConfig.pipeline` itself, in both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sagelab.config import EnvironmentConfig, SageLabConfig, load_config


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
    path = cdk_json or find_cdk_json()
    return load_config(cdk_context(path), config_file, project_dir=path.parent if path else None)


def environment(config: SageLabConfig, name: str | None = None) -> EnvironmentConfig:
    """The named environment (the first one when `name` is None), or a one-line error."""
    if name is None:
        return config.environments[0]
    for env in config.environments:
        if env.name == name:
            return env
    raise KeyError(f"no environment {name!r}; configured: {', '.join(e.name for e in config.environments)}")
