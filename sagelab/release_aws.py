"""`sagelab release status --aws`: where each version is, read from the release pipeline's history.

For every stage: the version its latest succeeded Deploy<stage> action released (the resolved
ModelPackageArn of that action), when, and who approved the promotion (the Approve<stage> action of
the same execution; the first stage follows the approval in the source registry). The same facts are
tagged on each version in the registry (`sagelab:release:<stage>`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sagelab.naming import ResourceNames


def stage_title(name: str) -> str:
    """An environment name as the pipeline's stage and action names spell it (stacks/release/construct.py)."""
    return name.replace("-", " ").title().replace(" ", "")


def release_status(codepipeline: Any, source: str, stages: Sequence[str]) -> list[dict[str, Any]]:
    """Each stage's current version on AWS (None when nothing was released there yet)."""
    pipeline = ResourceNames.of(source).release_pipeline
    executions: list[dict[str, Any]] = []
    for page in codepipeline.get_paginator("list_action_executions").paginate(pipelineName=pipeline):
        executions += page.get("actionExecutionDetails", [])
    executions.sort(key=lambda e: str(e.get("lastUpdateTime") or e.get("startTime") or ""), reverse=True)
    rows = []
    for index, stage in enumerate(stages):
        title = stage_title(stage)
        deployed = next((e for e in executions if e.get("actionName") == f"Deploy{title}" and e.get("status") == "Succeeded"), None)
        row: dict[str, Any] = {"stage": stage, "version": None, "model_package": None, "approved_by": None, "deployed_at": None}
        if deployed is not None:
            resolved = (deployed.get("input") or {}).get("resolvedConfiguration") or {}
            package = str(json.loads(resolved.get("UserParameters") or "{}").get("model_package") or "")
            approval = next(
                (e for e in executions if e.get("actionName") == f"Approve{title}" and e.get("pipelineExecutionId") == deployed.get("pipelineExecutionId")),
                None,
            )
            row.update(
                version=int(package.rsplit("/", 1)[-1]) if package.rsplit("/", 1)[-1].isdigit() else None,
                model_package=package or None,
                deployed_at=str(deployed.get("lastUpdateTime") or ""),
                approved_by=(approval or {}).get("updatedBy") if index > 0 else "release (approved in the source registry)",
            )
        rows.append(row)
    return rows
