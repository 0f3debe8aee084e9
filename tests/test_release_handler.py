"""The release pipeline's functions (stacks/release/runtime/handler.py): AWS control-plane calls stubbed
with botocore's Stubber; the test action runs the acceptance test against the local gateway over
real sockets (the same code `sagelab release` runs)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # Lambda always sets the region
os.environ.setdefault("AWS_ACCESS_KEY_ID", "stubbed")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "stubbed")
from sagelab.local.registry import LocalRegistry
from sagelab.local.serve import serving
from stacks.approval_deployer.runtime import handler as deployer
from stacks.release.runtime import handler

DEV, STAGING = "111111111111", "222222222222"
PACKAGE = f"arn:aws:sagemaker:us-east-1:{DEV}:model-package/sagelab-dev--models/3"
RELEASE_ROLE = f"arn:aws:iam::{STAGING}:role/sagelab-staging--release"
DEPLOYMENT_ROLE = f"arn:aws:iam::{STAGING}:role/sagelab-staging--model-deployment"
ENVIRONMENT = {
    "PIPELINE_NAME": "sagelab-dev--release",
    "ARTIFACTS_BUCKET": "sagelab-dev--artifacts",
    "MODEL_PACKAGE_ARN_PREFIX": f"arn:aws:sagemaker:us-east-1:{DEV}:model-package/sagelab-dev--models/",
}
PARAMETERS = {
    "stage": "staging",
    "model_package": PACKAGE,
    "stack": "sagelab-staging--serving",
    "release_role": RELEASE_ROLE,
    "deployment_role": DEPLOYMENT_ROLE,
    "parameter": "ModelPackageArn",
    "algorithm_parameter": "ModelAlgorithm",
    "problem_type_parameter": "ModelProblemType",
    "description_parameter": "ModelDescriptionUri",
    "tolerance": 0.02,
    "latency_p95_ms": 5000,
}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    handler._assumed.clear()


@pytest.fixture
def stubs() -> Iterator[dict[str, Stubber]]:
    """Stubbers on the function's own clients (source account) and on the stage's clients, which
    assume_role (stubbed) makes."""
    own = {name: Stubber(handler.client(name)) for name in ("sts", "codepipeline", "sagemaker", "s3")}
    own["deployer-sagemaker"] = Stubber(deployer.sagemaker())
    for stubber in own.values():
        stubber.activate()
    yield own
    for stubber in own.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def stage_client(stubs: dict[str, Stubber], service: str) -> Stubber:
    """The stage account's client, made through a stubbed AssumeRole of the release role."""
    credentials = {
        "AccessKeyId": "ASIA000000000000STUB",
        "SecretAccessKey": "stubbed-secret",
        "SessionToken": "stubbed-token",
        "Expiration": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    }
    stubs["sts"].add_response("assume_role", {"Credentials": credentials}, {"RoleArn": RELEASE_ROLE, "RoleSessionName": "sagelab-release-staging"})
    stubber = Stubber(handler.assumed(service, RELEASE_ROLE, "staging"))
    stubber.activate()
    return stubber


def job(parameters: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"actionConfiguration": {"configuration": {"UserParameters": json.dumps(parameters)}}}
    if token:
        data["continuationToken"] = token
    return {"CodePipeline.job": {"id": "job-1", "data": data}}


def serving_stack(status: str, outputs: list[dict[str, str]] | None = None) -> dict[str, Any]:
    parameters = [{"ParameterKey": key, "ParameterValue": ""} for key in ("ModelPackageArn", "ModelAlgorithm", "ModelProblemType", "ModelDescriptionUri")]
    return {
        "Stacks": [
            {
                "StackName": "sagelab-staging--serving",
                "StackStatus": status,
                "CreationTime": "2026-01-01T00:00:00Z",
                "Parameters": parameters,
                "Outputs": outputs or [],
            }
        ]
    }


def test_an_approval_starts_an_execution_carrying_the_version(stubs: dict[str, Stubber]) -> None:
    stubs["codepipeline"].add_response(
        "start_pipeline_execution",
        {"pipelineExecutionId": "exec-1"},
        {"name": "sagelab-dev--release", "variables": [{"name": "ModelPackageArn", "value": PACKAGE}]},
    )
    event = {"detail-type": "SageMaker Model Package State Change", "detail": {"ModelApprovalStatus": "Approved", "ModelPackageArn": PACKAGE}}
    assert handler.start(event, None)["result"] == "started"
    other_group = {"detail": {"ModelApprovalStatus": "Approved", "ModelPackageArn": PACKAGE.replace("sagelab-dev--models", "sagelab-prod--models")}}
    assert handler.start(other_group, None)["result"] == "ignored"


def test_deploy_updates_the_stage_through_its_role_then_waits_for_the_stack(stubs: dict[str, Stubber]) -> None:
    cloudformation = stage_client(stubs, "cloudformation")
    stubs["deployer-sagemaker"].add_response(
        "describe_model_package",
        {
            "ModelPackageName": "sagelab-dev--models",
            "ModelPackageArn": PACKAGE,
            "CreationTime": "2026-01-01T00:00:00Z",
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            "CustomerMetadataProperties": {"sagelab:algorithm": "xgboost", "sagelab:problem-type": "multiclass"},
        },
        {"ModelPackageName": PACKAGE},
    )
    cloudformation.add_response("describe_stacks", serving_stack("UPDATE_COMPLETE"), {"StackName": "sagelab-staging--serving"})
    cloudformation.add_response(
        "update_stack",
        {"StackId": "x"},
        {
            "StackName": "sagelab-staging--serving",
            "UsePreviousTemplate": True,
            "Parameters": [
                {"ParameterKey": "ModelPackageArn", "ParameterValue": PACKAGE},
                {"ParameterKey": "ModelAlgorithm", "ParameterValue": "xgboost"},
                {"ParameterKey": "ModelProblemType", "ParameterValue": "multiclass"},
                {"ParameterKey": "ModelDescriptionUri", "ParameterValue": ""},  # in the source's bucket: not for this front door
            ],
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            "RoleARN": DEPLOYMENT_ROLE,
        },
    )
    stubs["codepipeline"].add_response("put_job_success_result", {}, {"jobId": "job-1", "continuationToken": "updating"})
    assert handler.deploy(job(PARAMETERS), None) == {"result": "updating"}

    # Called again by CodePipeline with the token: still updating, then done.
    cloudformation.add_response("describe_stacks", serving_stack("UPDATE_IN_PROGRESS"), {"StackName": "sagelab-staging--serving"})
    stubs["codepipeline"].add_response("put_job_success_result", {}, {"jobId": "job-1", "continuationToken": "updating"})
    assert handler.deploy(job(PARAMETERS, "updating"), None) == {"result": "updating"}
    cloudformation.add_response("describe_stacks", serving_stack("UPDATE_COMPLETE"), {"StackName": "sagelab-staging--serving"})
    stubs["sagemaker"].add_response("add_tags", {}, {"ResourceArn": PACKAGE, "Tags": [{"Key": "sagelab:release:staging", "Value": ANY}]})
    stubs["codepipeline"].add_response("put_job_success_result", {}, {"jobId": "job-1", "outputVariables": {"deployed_at": ANY}})
    assert handler.deploy(job(PARAMETERS, "updating"), None)["result"] == "deployed"
    cloudformation.assert_no_pending_responses()


def test_a_rolled_back_update_fails_the_stage(stubs: dict[str, Stubber]) -> None:
    cloudformation = stage_client(stubs, "cloudformation")
    cloudformation.add_response("describe_stacks", serving_stack("UPDATE_ROLLBACK_COMPLETE"), {"StackName": "sagelab-staging--serving"})
    stubs["codepipeline"].add_response("put_job_failure_result", {}, {"jobId": "job-1", "failureDetails": {"type": "JobFailed", "message": ANY}})
    result = handler.deploy(job(PARAMETERS, "updating"), None)
    assert result["result"] == "failed" and "UPDATE_ROLLBACK_COMPLETE" in result["reason"]


def test_who_approved_comes_from_the_approval_action(stubs: dict[str, Stubber]) -> None:
    stubs["codepipeline"].add_response(
        "get_pipeline_state",
        {
            "stageStates": [
                {
                    "stageName": "ApproveProd",
                    "actionStates": [
                        {"actionName": "ApproveProd", "latestExecution": {"lastUpdatedBy": "arn:aws:sts::111111111111:assumed-role/release-approver/ana"}}
                    ],
                }
            ]
        },
        {"name": "sagelab-dev--release"},
    )
    assert handler.approver({**PARAMETERS, "approval_action": "ApproveProd"}) == "arn:aws:sts::111111111111:assumed-role/release-approver/ana"
    assert handler.approver(PARAMETERS).startswith("release")


def located(uri: str) -> dict[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return {"Bucket": bucket, "Key": key}


def s3_object(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"Body": StreamingBody(io.BytesIO(data), len(data))}


@pytest.mark.slow  # a trained model served over sockets for the acceptance test
@pytest.mark.parametrize(("registered", "passes"), [(None, True), (1.0, False)], ids=["meets-its-metric", "over-promises"])
def test_the_test_action_runs_the_acceptance_test_against_the_stage_over_sockets(
    stubs: dict[str, Stubber], approved_workdir: Path, registered: float | None, passes: bool
) -> None:
    package = LocalRegistry(approved_workdir).get("sagelab-dev--models", 1)
    metrics_url = str(package.metrics_url)
    evaluation = dict(package.metrics)
    if registered is not None:
        evaluation["sagelab_summary"] = {**evaluation["sagelab_summary"], "metrics": {**evaluation["sagelab_summary"]["metrics"], "accuracy": registered}}
    from stacks.release.runtime.acceptance import EvidenceLocations

    where = EvidenceLocations.of(metrics_url)
    local = approved_workdir / "s3"
    with serving(approved_workdir, "stage-key") as (gateway, _):
        cloudformation = stage_client(stubs, "cloudformation")
        apigateway = stage_client(stubs, "apigateway")
        outputs = [{"OutputKey": "ApiUrl", "OutputValue": gateway.url}, {"OutputKey": "ApiKeyId", "OutputValue": "key-1"}]
        cloudformation.add_response("describe_stacks", serving_stack("UPDATE_COMPLETE", outputs), {"StackName": "sagelab-staging--serving"})
        apigateway.add_response("get_api_key", {"id": "key-1", "value": "stage-key"}, {"apiKey": "key-1", "includeValue": True})
        stubs["sagemaker"].add_response(
            "describe_model_package",
            {
                "ModelPackageName": "sagelab-dev--models",
                "ModelPackageArn": PACKAGE,
                "CreationTime": "2026-01-01T00:00:00Z",
                "ModelPackageStatus": "Completed",
                "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
                "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": metrics_url}}},
            },
            {"ModelPackageName": PACKAGE},
        )
        evaluation_bytes = json.dumps(evaluation).encode()
        stubs["s3"].add_response("get_object", {"Body": StreamingBody(io.BytesIO(evaluation_bytes), len(evaluation_bytes))}, located(where.evaluation))
        for uri in (where.feature_spec, where.features, where.target):
            stubs["s3"].add_response("get_object", s3_object(local / uri.removeprefix("s3://")), located(uri))
        if passes:
            stubs["codepipeline"].add_response("put_job_success_result", {}, {"jobId": "job-1", "outputVariables": {"summary": ANY}})
        else:
            stubs["codepipeline"].add_response("put_job_failure_result", {}, {"jobId": "job-1", "failureDetails": {"type": "JobFailed", "message": ANY}})
        result = handler.test(job(PARAMETERS), None)
    assert result["result"] == ("passed" if passes else "failed"), result
    if not passes:
        assert "score FAILED" in result["reason"]
