"""The approval deployer's handler, with CloudFormation stubbed by botocore's Stubber."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # Lambda always sets the region
os.environ.setdefault("AWS_ACCESS_KEY_ID", "stubbed")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "stubbed")
from runtime.deployer import handler

ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/sagelab-dev-models/2"
ENV = {
    "MODEL_PACKAGE_GROUP": "sagelab-dev-models",
    "SERVING_STACK_NAME": "sagelab-dev-serving",
    "PARAMETER_NAME": "ModelPackageArn",
    "CLOUDFORMATION_ROLE_ARN": "arn:aws:iam::123456789012:role/deploy",
}


def approval(status: str = "Approved", group: str = "sagelab-dev-models") -> dict[str, Any]:
    return {
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "detail": {"ModelPackageGroupName": group, "ModelApprovalStatus": status, "ModelPackageArn": ARN},
    }


def stack(status: str = "UPDATE_COMPLETE", current: str = "") -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "sagelab-dev-serving",
                "StackStatus": status,
                "CreationTime": "2026-01-01T00:00:00Z",
                "Parameters": [
                    {"ParameterKey": "ModelPackageArn", "ParameterValue": current},
                    {"ParameterKey": "BootstrapVersion", "ParameterValue": "/cdk-bootstrap/hnb659fds/version"},
                ],
            }
        ]
    }


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def stub() -> Iterator[Stubber]:
    with Stubber(handler._cloudformation) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_approval_updates_the_serving_stack_parameter(stub: Stubber) -> None:
    stub.add_response("describe_stacks", stack(), {"StackName": "sagelab-dev-serving"})
    stub.add_response(
        "update_stack",
        {"StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/sagelab-dev-serving/1"},
        {
            "StackName": "sagelab-dev-serving",
            "UsePreviousTemplate": True,
            "Parameters": [{"ParameterKey": "ModelPackageArn", "ParameterValue": ARN}, {"ParameterKey": "BootstrapVersion", "UsePreviousValue": True}],
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            "RoleARN": ENV["CLOUDFORMATION_ROLE_ARN"],
        },
    )
    assert handler.lambda_handler(approval(), None) == {"result": "updating", "model_package": ARN}


def test_already_deployed_is_a_no_op(stub: Stubber) -> None:
    stub.add_response("describe_stacks", stack(current=ARN), {"StackName": "sagelab-dev-serving"})
    assert handler.lambda_handler(approval(), None)["result"] == "unchanged"


def test_busy_stack_raises_so_eventbridge_retries(stub: Stubber) -> None:
    stub.add_response("describe_stacks", stack(status="UPDATE_IN_PROGRESS"), {"StackName": "sagelab-dev-serving"})
    with pytest.raises(handler.StackBusy, match="UPDATE_IN_PROGRESS"):
        handler.lambda_handler(approval(), None)


@pytest.mark.parametrize("event", [approval(status="Rejected"), approval(group="someone-elses-models"), {"detail": {}}])
def test_other_events_are_ignored(stub: Stubber, event: dict[str, Any]) -> None:
    assert handler.lambda_handler(event, None) == {"result": "ignored"}
