"""`sagelab pipeline start/status/logs` and `models --aws` against moto in server mode (control
plane it supports) and botocore's Stubber (execution steps, CloudWatch log events)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from sagelab.aws_ops import AwsOperations, OperationError
from sagelab.aws_session import new_session
from tests.conftest import Cli

REPO_ROOT = Path(__file__).resolve().parent.parent
PLATFORM_TEMPLATE = {
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {"PipelineName": {"Value": "sagelab-dev--pipeline"}, "ModelPackageGroupName": {"Value": "sagelab-dev--models"}},
}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials and region only: nothing from the machine's AWS settings."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def deployed(moto_url: str) -> dict[str, Any]:
    session = new_session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    cloudformation = session.client("cloudformation", endpoint_url=moto_url)
    cloudformation.create_stack(StackName="sagelab-dev--platform", TemplateBody=json.dumps(PLATFORM_TEMPLATE))
    sagemaker = session.client("sagemaker", endpoint_url=moto_url)
    sagemaker.create_pipeline(
        PipelineName="sagelab-dev--pipeline",
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
        RoleArn="arn:aws:iam::123456789012:role/pipeline",
    )
    sagemaker.create_model_package_group(ModelPackageGroupName="sagelab-dev--models")
    spec = {
        "Containers": [{"Image": "123.dkr.ecr.us-east-1.amazonaws.com/x:1"}],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    packages = [
        sagemaker.create_model_package(ModelPackageGroupName="sagelab-dev--models", ModelApprovalStatus="PendingManualApproval", InferenceSpecification=spec)[
            "ModelPackageArn"
        ]
        for _ in range(2)
    ]
    return {"session": session, "packages": packages}


@pytest.mark.usefixtures("aws_env")
def test_start_finds_the_pipeline_from_the_stack_and_passes_parameters(moto_url: str, deployed: dict[str, Any], cli: Cli) -> None:
    completed = cli("pipeline", "start", "--aws", "--param", "MaxDepth=4", "--endpoint-url", moto_url)
    assert completed.returncode == 0, completed.stderr
    arn = completed.stdout.split()[1]
    sagemaker = deployed["session"].client("sagemaker", endpoint_url=moto_url)
    execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
    assert execution["PipelineArn"].endswith("pipeline/sagelab-dev--pipeline")
    assert sagemaker.list_pipeline_executions(PipelineName="sagelab-dev--pipeline")["PipelineExecutionSummaries"][0]["PipelineExecutionArn"] == arn


@pytest.mark.usefixtures("aws_env")
def test_models_list_and_approve_on_aws(moto_url: str, deployed: dict[str, Any], cli: Cli) -> None:
    listed = json.loads(cli("models", "list", "--aws", "--json", "--endpoint-url", moto_url).stdout)
    assert [(m["version"], m["status"]) for m in listed] == [(1, "PendingManualApproval"), (2, "PendingManualApproval")]
    approved = cli("models", "approve", "sagelab-dev--models", "2", "--aws", "--endpoint-url", moto_url)
    assert approved.returncode == 0, approved.stderr
    sagemaker = deployed["session"].client("sagemaker", endpoint_url=moto_url)
    assert sagemaker.describe_model_package(ModelPackageName=deployed["packages"][1])["ModelApprovalStatus"] == "Approved"
    missing = cli("models", "approve", "sagelab-dev--models", "9", "--aws", "--endpoint-url", moto_url)
    assert (missing.returncode, missing.stderr) == (2, "sagelab: error: model package group sagelab-dev--models has no version 9\n")


@pytest.mark.usefixtures("aws_env", "deployed")
def test_missing_stack_is_a_one_line_error(moto_url: str, cli: Cli) -> None:
    completed = cli("pipeline", "start", "--aws", "--env", "prod", "--endpoint-url", moto_url)
    assert completed.returncode == 2
    assert (
        completed.stderr.strip()
        == "sagelab: error: stack sagelab-prod--platform not found in us-east-1: deploy it with `make deploy ENV=prod`, or pass --region"
    )


@pytest.mark.usefixtures("aws_env")
def test_missing_credentials_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process boundary: what a person without credentials sees from `python -m sagelab`."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    completed = subprocess.run([sys.executable, "-m", "sagelab", "pipeline", "status", "--aws"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.strip() == "sagelab: error: no AWS credentials found: run `aws configure` (or set AWS_PROFILE) and try again, or use --local"


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize(
    ("args", "unset", "message"),
    [
        ((), "AWS_DEFAULT_REGION", "no AWS region configured: set AWS_REGION or `aws configure set region REGION`"),
        (("--region", "us east"), None, "Provided region_name 'us east' doesn't match a supported format."),
        (("--endpoint-url", "not-a-url"), None, "Invalid endpoint: not-a-url"),
    ],
    ids=["no-region", "malformed-region", "malformed-endpoint"],
)
def test_a_client_that_cannot_be_made_is_a_one_line_error(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], unset: str | None, message: str
) -> None:
    """The clients are made on first use, not up front: what cannot make one is said as before."""
    if unset:
        monkeypatch.delenv(unset)
    completed = cli("pipeline", "status", "--aws", *args)
    assert (completed.returncode, completed.stderr) == (2, f"sagelab: error: {message}\n")


def test_operations_make_each_client_on_first_use_and_keep_it() -> None:
    """A command that needs only SageMaker makes no CloudFormation or Logs client, and a class report
    asks each student's operations for STS and Budgets without making a client per row."""
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    made: list[str] = []
    session.events.register("creating-client-class", lambda event_name, **_: made.append(event_name.rsplit(".", 1)[-1]))
    ops = AwsOperations(session)
    assert made == []
    assert ops.sagemaker is ops.sagemaker and ops.client("sts") is ops.client("sts")
    assert made == ["sagemaker", "sts"]


STEPS = {
    "PipelineExecutionSteps": [
        {
            "StepName": "Preprocess",
            "StepStatus": "Succeeded",
            "Metadata": {"ProcessingJob": {"Arn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/pipelines-abc-preprocess"}},
        },
        {
            "StepName": "Train",
            "StepStatus": "Failed",
            "FailureReason": "AlgorithmError: train.py exited 2",
            "Metadata": {"TrainingJob": {"Arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/pipelines-abc-train"}},
        },
        {"StepName": "CheckMetric", "StepStatus": "Starting", "Metadata": {}},
    ]
}


@pytest.fixture(scope="module")
def offline_ops() -> AwsOperations:
    """One AwsOperations for the module's stubbed tests: it holds only its session and clients."""
    return AwsOperations(new_session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"))


@pytest.fixture
def stubbed_ops(offline_ops: AwsOperations) -> Iterator[tuple[AwsOperations, Stubber, Stubber]]:
    ops = offline_ops  # fresh Stubbers per test: their queues of answers are the test's own
    with Stubber(ops.sagemaker) as sagemaker, Stubber(ops.logs) as logs:
        yield ops, sagemaker, logs
        sagemaker.assert_no_pending_responses()
        logs.assert_no_pending_responses()


ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/sagelab-dev--pipeline/execution/abc"


def test_status_reports_each_step_and_its_failure(stubbed_ops: tuple[AwsOperations, Stubber, Stubber]) -> None:
    ops, sagemaker, _ = stubbed_ops
    sagemaker.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionArn": ARN, "PipelineExecutionStatus": "Failed", "FailureReason": "Step Train failed"},
        {"PipelineExecutionArn": ARN},
    )
    sagemaker.add_response("list_pipeline_execution_steps", STEPS, {"PipelineExecutionArn": ARN, "SortOrder": "Ascending"})
    status = ops.status(ARN)
    assert status["status"] == "Failed"
    assert [(s["name"], s["status"], s["job"]) for s in status["steps"]] == [
        ("Preprocess", "Succeeded", ("ProcessingJob", "pipelines-abc-preprocess")),
        ("Train", "Failed", ("TrainingJob", "pipelines-abc-train")),
        ("CheckMetric", "Starting", None),
    ]
    assert status["steps"][1]["failure_reason"] == "AlgorithmError: train.py exited 2"


def test_logs_read_each_jobs_log_group_and_follow_stops_at_the_end(stubbed_ops: tuple[AwsOperations, Stubber, Stubber]) -> None:
    ops, sagemaker, logs = stubbed_ops

    def status_round(execution_status: str) -> None:
        sagemaker.add_response(
            "describe_pipeline_execution", {"PipelineExecutionArn": ARN, "PipelineExecutionStatus": execution_status}, {"PipelineExecutionArn": ARN}
        )
        sagemaker.add_response("list_pipeline_execution_steps", STEPS, {"PipelineExecutionArn": ARN, "SortOrder": "Ascending"})

    def log_page(group: str, job: str, events: list[dict[str, Any]]) -> None:
        stream = f"{job}/algo-1"
        logs.add_response("describe_log_streams", {"logStreams": [{"logStreamName": stream}]}, {"logGroupName": group, "logStreamNamePrefix": job})
        logs.add_response(
            "get_log_events", {"events": events, "nextForwardToken": "f/1"}, {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        )
        if events:  # the stream's end: the same forward token again
            logs.add_response(
                "get_log_events",
                {"events": [], "nextForwardToken": "f/1"},
                {"logGroupName": group, "logStreamName": stream, "startFromHead": True, "nextToken": "f/1"},
            )

    preprocess_event = {"timestamp": 1, "message": "preprocess: multiclass on 'label'\n", "ingestionTime": 1}
    train_event = {"timestamp": 2, "message": "validation-accuracy=0.96", "ingestionTime": 2}
    # round 1: running; round 2: finished (then one last read)
    status_round("Executing")  # logs_of -> status
    log_page("/aws/sagemaker/ProcessingJobs", "pipelines-abc-preprocess", [preprocess_event])
    log_page("/aws/sagemaker/TrainingJobs", "pipelines-abc-train", [])
    status_round("Executing")  # follow -> status
    status_round("Executing")  # logs_of -> status
    log_page("/aws/sagemaker/ProcessingJobs", "pipelines-abc-preprocess", [preprocess_event])
    log_page("/aws/sagemaker/TrainingJobs", "pipelines-abc-train", [train_event])
    status_round("Failed")  # follow -> status: terminal
    status_round("Failed")  # final logs_of -> status
    log_page("/aws/sagemaker/ProcessingJobs", "pipelines-abc-preprocess", [preprocess_event])
    log_page("/aws/sagemaker/TrainingJobs", "pipelines-abc-train", [train_event])
    lines = list(ops.follow(ARN, sleep=lambda _seconds: None))
    assert lines == ["[Preprocess] preprocess: multiclass on 'label'", "[Train] validation-accuracy=0.96", "execution Failed"]


def test_no_executions_yet_is_explained(stubbed_ops: tuple[AwsOperations, Stubber, Stubber]) -> None:
    ops, sagemaker, _ = stubbed_ops
    sagemaker.add_response(
        "list_pipeline_executions",
        {"PipelineExecutionSummaries": []},
        {"PipelineName": "p", "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 1},
    )
    with pytest.raises(OperationError, match="has no executions yet"):
        ops.latest_execution("p")


def _package_summary(version: int) -> dict[str, Any]:
    return {
        "ModelPackageGroupName": "g",
        "ModelPackageVersion": version,
        "ModelPackageArn": f"arn:aws:sagemaker:us-east-1:123456789012:model-package/g/{version}",
        "CreationTime": f"2026-01-{version:02d}T00:00:00Z",
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": "Approved" if version == 3 else "PendingManualApproval",
    }


def test_models_reads_every_page_so_the_newest_version_is_last(stubbed_ops: tuple[AwsOperations, Stubber, Stubber]) -> None:
    """A group with more than one page: the newest versions are on the later pages (oldest first)."""
    ops, sagemaker, _ = stubbed_ops
    query = {"ModelPackageGroupName": "g", "SortBy": "CreationTime", "SortOrder": "Ascending"}
    sagemaker.add_response("list_model_packages", {"ModelPackageSummaryList": [_package_summary(1), _package_summary(2)], "NextToken": "page-2"}, query)
    sagemaker.add_response("list_model_packages", {"ModelPackageSummaryList": [_package_summary(3)], "NextToken": "page-3"}, {**query, "NextToken": "page-2"})
    sagemaker.add_response("list_model_packages", {"ModelPackageSummaryList": [_package_summary(4)]}, {**query, "NextToken": "page-3"})
    assert [(m["version"], m["status"]) for m in ops.models("g")] == [
        (1, "PendingManualApproval"),
        (2, "PendingManualApproval"),
        (3, "Approved"),
        (4, "PendingManualApproval"),
    ]


def test_approve_finds_a_version_on_a_later_page(stubbed_ops: tuple[AwsOperations, Stubber, Stubber]) -> None:
    ops, sagemaker, _ = stubbed_ops
    query = {"ModelPackageGroupName": "g", "SortBy": "CreationTime", "SortOrder": "Ascending"}
    sagemaker.add_response("list_model_packages", {"ModelPackageSummaryList": [_package_summary(1)], "NextToken": "page-2"}, query)
    sagemaker.add_response("list_model_packages", {"ModelPackageSummaryList": [_package_summary(2)]}, {**query, "NextToken": "page-2"})
    arn = _package_summary(2)["ModelPackageArn"]
    sagemaker.add_response("update_model_package", {"ModelPackageArn": arn}, {"ModelPackageArn": arn, "ModelApprovalStatus": "Approved"})
    assert ops.approve("g", 2) == arn


def test_step_list_and_log_events_follow_every_page(stubbed_ops: tuple[AwsOperations, Stubber, Stubber]) -> None:
    ops, sagemaker, logs = stubbed_ops
    sagemaker.add_response("describe_pipeline_execution", {"PipelineExecutionArn": ARN, "PipelineExecutionStatus": "Failed"}, {"PipelineExecutionArn": ARN})
    first, rest = STEPS["PipelineExecutionSteps"][:1], STEPS["PipelineExecutionSteps"][1:]
    steps_query = {"PipelineExecutionArn": ARN, "SortOrder": "Ascending"}
    sagemaker.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": first, "NextToken": "t"}, steps_query)
    sagemaker.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": rest}, {**steps_query, "NextToken": "t"})
    # Stream by stream: the job's streams (every page), then each stream's events (every page).
    streams_query = {"logGroupName": "/aws/sagemaker/ProcessingJobs", "logStreamNamePrefix": "pipelines-abc-preprocess"}
    logs.add_response("describe_log_streams", {"logStreams": [{"logStreamName": "pipelines-abc-preprocess/algo-1"}], "nextToken": "s"}, streams_query)
    logs.add_response("describe_log_streams", {"logStreams": [{"logStreamName": "pipelines-abc-preprocess/algo-2"}]}, {**streams_query, "nextToken": "s"})
    for stream, messages in (("algo-1", ["page one", "page two"]), ("algo-2", ["other host"])):
        events_query = {"logGroupName": "/aws/sagemaker/ProcessingJobs", "logStreamName": f"pipelines-abc-preprocess/{stream}", "startFromHead": True}
        token = None
        for position, message in enumerate(messages):
            page = {"events": [{"timestamp": position, "message": message}], "nextForwardToken": f"f/{stream}/{position}"}
            logs.add_response("get_log_events", page, {**events_query, **({"nextToken": token} if token else {})})
            token = page["nextForwardToken"]
        logs.add_response("get_log_events", {"events": [], "nextForwardToken": token}, {**events_query, "nextToken": token})
    train_query = {"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamNamePrefix": "pipelines-abc-train"}
    logs.add_response("describe_log_streams", {"logStreams": []}, train_query)
    assert list(ops.logs_of(ARN)) == ["[Preprocess] page one", "[Preprocess] page two", "[Preprocess] other host"]
