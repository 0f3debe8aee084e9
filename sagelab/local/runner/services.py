"""What a step executor may use from its run: local S3, the registry, process spawning, the
loopback SageMaker API, the run's Model steps, the local limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sagelab.local.registry import LocalRegistry
from sagelab.local.runner.local_s3 import LocalS3
from sagelab.local.runner.loopback_api import LoopbackApi
from sagelab.local.runner.processes import Processes


@dataclass
class RunServices:
    s3: LocalS3
    registry: LocalRegistry
    processes: Processes
    log: Callable[[str], None]
    max_tuning_jobs: int
    automl_budget_s: float
    loopback: LoopbackApi = field(default_factory=LoopbackApi)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # Model steps of this run: name -> container
