"""`sagelab release status --aws`: each stage's version, when and who approved, from the pipeline's
action history (CodePipeline stubbed with botocore's Stubber)."""

from __future__ import annotations

import datetime as dt
import json

import boto3
from botocore.stub import Stubber

from sagelab.release_aws import release_status

PACKAGE = "arn:aws:sagemaker:us-east-1:111111111111:model-package/sagelab-dev--models/{}"


def action(execution: str, name: str, status: str, minute: int, version: int | None = None, by: str | None = None) -> dict:
    detail: dict = {
        "pipelineExecutionId": execution,
        "actionExecutionId": f"{execution}-{name}",
        "stageName": name,
        "actionName": name,
        "status": status,
        "startTime": dt.datetime(2026, 12, 1, 10, minute, tzinfo=dt.UTC),
        "lastUpdateTime": dt.datetime(2026, 12, 1, 10, minute, tzinfo=dt.UTC),
    }
    if version is not None:
        detail["input"] = {"resolvedConfiguration": {"UserParameters": json.dumps({"model_package": PACKAGE.format(version)})}}
    if by:
        detail["updatedBy"] = by
    return detail


def test_each_stage_shows_its_last_released_version_and_approver() -> None:
    client = boto3.client("codepipeline", region_name="us-east-1", aws_access_key_id="stubbed", aws_secret_access_key="stubbed")
    history = [
        # version 3: staging, approved to prod by ana
        action("e1", "DeployStaging", "Succeeded", 1, 3),
        action("e1", "ApproveProd", "Succeeded", 5, by="arn:aws:sts::111111111111:assumed-role/release-approver/ana"),
        action("e1", "DeployProd", "Succeeded", 6, 3),
        # version 4: staging, then its test failed: prod keeps version 3
        action("e2", "DeployStaging", "Succeeded", 20, 4),
        action("e2", "TestStaging", "Failed", 22),
        # version 5: its deployment to staging failed: staging keeps version 4
        action("e3", "DeployStaging", "Failed", 30, 5),
    ]
    with Stubber(client) as stubber:
        stubber.add_response("list_action_executions", {"actionExecutionDetails": history}, {"pipelineName": "sagelab-dev--release"})
        rows = release_status(client, "dev", ["staging", "prod"])
    assert [(r["stage"], r["version"], r["approved_by"]) for r in rows] == [
        ("staging", 4, "release (approved in the source registry)"),
        ("prod", 3, "arn:aws:sts::111111111111:assumed-role/release-approver/ana"),
    ]
    assert rows[1]["deployed_at"].startswith("2026-12-01 10:06")
