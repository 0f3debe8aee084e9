"""The approval deployer: its handler (CloudFormation stubbed by botocore's Stubber) and, on the
synthesized serving template, what its role may do to the serving stack (IAM evaluation)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # Lambda always sets the region
os.environ.setdefault("AWS_ACCESS_KEY_ID", "stubbed")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "stubbed")
from sagelab.local.serve import LambdaContextStandIn
from stacks.approval_deployer.runtime import handler
from tests.conftest import SynthResult
from tests.iam_policy import Env, RoleRef, Stacks, Statement, is_allowed

ACCOUNT, REGION = "123456789012", "us-east-1"
GROUP_PREFIX = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/sagelab-dev--models/"
ARN = f"{GROUP_PREFIX}2"
ENV = {
    "MODEL_PACKAGE_ARN_PREFIX": GROUP_PREFIX,
    "SERVING_STACK_NAME": "sagelab-dev--serving",
    "PARAMETER_NAME": "ModelPackageArn",
    "CLOUDFORMATION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/deploy",
    "ALGORITHM_PARAMETER": "ModelAlgorithm",
    "PROBLEM_TYPE_PARAMETER": "ModelProblemType",
    "DESCRIPTION_PARAMETER": "ModelDescriptionUri",
    "ARTIFACTS_BUCKET": "sagelab-dev-artifacts-bucket",
}
DESCRIPTION = "s3://sagelab-dev-artifacts-bucket/models/evaluations/exec-1/kmeans-evaluation/model_description.json"
CONTEXT = LambdaContextStandIn(function_name="sagelab-dev-deployer", aws_request_id="req-1")


def approval(status: str = "Approved", arn: str = ARN, group: str = "sagelab-dev--models") -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e-1",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "region": REGION,
        "time": "2026-01-01T00:00:00Z",
        "resources": [arn],
        "detail": {"ModelPackageGroupName": group, "ModelApprovalStatus": status, "ModelPackageArn": arn},
    }


def stack(status: str = "UPDATE_COMPLETE", current: str = "") -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "sagelab-dev--serving",
                "StackStatus": status,
                "CreationTime": "2026-01-01T00:00:00Z",
                "Parameters": [
                    {"ParameterKey": "ModelPackageArn", "ParameterValue": current},
                    {"ParameterKey": "ModelAlgorithm", "ParameterValue": "xgboost"},
                    {"ParameterKey": "ModelProblemType", "ParameterValue": ""},
                    {"ParameterKey": "ModelDescriptionUri", "ParameterValue": ""},
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
    with Stubber(handler.cloudformation()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def registry() -> Iterator[Stubber]:
    with Stubber(handler.sagemaker()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def described(registry: Stubber, metadata: dict[str, str] | None, arn: str = ARN) -> None:
    response: dict[str, Any] = {
        "ModelPackageName": "sagelab-dev--models",
        "ModelPackageArn": arn,
        "CreationTime": "2026-01-01T00:00:00Z",
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
    }
    if metadata is not None:
        response["CustomerMetadataProperties"] = metadata
    registry.add_response("describe_model_package", response, {"ModelPackageName": arn})


def expect_update(stub: Stubber, algorithm: str = "xgboost", problem_type: str = "", description: str = "") -> None:
    stub.add_response("describe_stacks", stack(), {"StackName": "sagelab-dev--serving"})
    stub.add_response(
        "update_stack",
        {"StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/sagelab-dev--serving/1"},
        {
            "StackName": "sagelab-dev--serving",
            "UsePreviousTemplate": True,
            "Parameters": [
                {"ParameterKey": "ModelPackageArn", "ParameterValue": ARN},
                {"ParameterKey": "ModelAlgorithm", "ParameterValue": algorithm},
                {"ParameterKey": "ModelProblemType", "ParameterValue": problem_type},
                {"ParameterKey": "ModelDescriptionUri", "ParameterValue": description},
                {"ParameterKey": "BootstrapVersion", "UsePreviousValue": True},
            ],
            "Capabilities": ["CAPABILITY_IAM"],
            "RoleARN": ENV["CLOUDFORMATION_ROLE_ARN"],
        },
    )


# -- the handler --------------------------------------------------------------------------------
def test_the_client_is_built_once() -> None:
    assert handler.cloudformation() is handler.cloudformation()


def test_approval_updates_the_serving_stack_parameter_with_the_deployment_role(stub: Stubber, registry: Stubber) -> None:
    described(registry, None)  # registered before decision 0011: an XGBoost model, no description
    expect_update(stub)
    assert handler.lambda_handler(approval(), CONTEXT) == {"result": "updating", "model_package": ARN}


def test_approval_passes_the_packages_algorithm_problem_type_and_description(stub: Stubber, registry: Stubber) -> None:
    described(registry, {"sagelab:algorithm": "kmeans", "sagelab:problem-type": "clustering", "sagelab:model-description": DESCRIPTION})
    expect_update(stub, "kmeans", "clustering", DESCRIPTION)
    assert handler.lambda_handler(approval(), CONTEXT)["result"] == "updating"


@pytest.mark.parametrize(
    "description",
    [
        DESCRIPTION.replace("sagelab-dev-artifacts-bucket", "sagelab-bob-artifacts-bucket"),
        DESCRIPTION.replace("models/evaluations/", "pipeline-runs/"),
        DESCRIPTION.replace("model_description.json", "model.tar.gz"),
        "https://example.com/model_description.json",
        DESCRIPTION.replace("exec-1", "exec 1"),
    ],
    ids=["other-bucket", "other-prefix", "other-file", "not-s3", "bad-characters"],
)
def test_a_description_outside_this_environments_runs_is_deployed_empty_and_logged(
    stub: Stubber, registry: Stubber, caplog: pytest.LogCaptureFixture, description: str
) -> None:
    described(registry, {"sagelab:algorithm": "autopilot", "sagelab:problem-type": "multiclass", "sagelab:model-description": description})
    expect_update(stub, "autopilot", "multiclass", "")
    assert handler.lambda_handler(approval(), CONTEXT)["result"] == "updating"
    assert any(r.getMessage().startswith("model description not deployed") for r in caplog.records)


def test_an_unknown_algorithm_is_not_deployed(stub: Stubber, registry: Stubber) -> None:
    described(registry, {"sagelab:algorithm": "lightgbm"})
    result = handler.lambda_handler(approval(), CONTEXT)  # no UpdateStack: the stub has none queued
    assert result["result"] == "refused" and "lightgbm" in result["reason"] and "kmeans" in result["reason"]


@pytest.mark.parametrize("problem_type", ["classification", "MulticlassClassification", "Regression", "regression "])
def test_a_problem_type_evaluate_never_writes_is_not_deployed(stub: Stubber, registry: Stubber, problem_type: str) -> None:
    # Autopilot's answer is a value or a label by problem type: a wrong one would garble every answer.
    described(registry, {"sagelab:algorithm": "autopilot", "sagelab:problem-type": problem_type})
    result = handler.lambda_handler(approval(), CONTEXT)  # no UpdateStack: the stub has none queued
    assert result["result"] == "refused"
    assert f"sagelab:problem-type is {problem_type!r}" in result["reason"] and "binary, multiclass, regression, clustering" in result["reason"]


def test_already_deployed_is_a_no_op(stub: Stubber, registry: Stubber) -> None:
    described(registry, None)
    stub.add_response("describe_stacks", stack(current=ARN), {"StackName": "sagelab-dev--serving"})
    assert handler.lambda_handler(approval(), CONTEXT)["result"] == "unchanged"


def test_busy_stack_raises_so_eventbridge_retries(stub: Stubber, registry: Stubber) -> None:
    described(registry, None)
    stub.add_response("describe_stacks", stack(status="UPDATE_IN_PROGRESS"), {"StackName": "sagelab-dev--serving"})
    with pytest.raises(handler.StackBusy, match="UPDATE_IN_PROGRESS"):
        handler.lambda_handler(approval(), CONTEXT)


@pytest.mark.parametrize(
    "event",
    [
        approval(status="Rejected"),
        approval(status="PendingManualApproval"),
        {"detail": {}},
        {},
        # Only versions of this environment's own group, in this account and region, are deployed,
        # whatever the event's group field says.
        approval(arn=f"arn:aws:sagemaker:{REGION}:210987654321:model-package/sagelab-dev--models/2"),
        approval(arn=f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model-package/sagelab-dev--models/2"),
        approval(arn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/sagelab-bob--models/2"),
        approval(arn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/sagelab-dev--models-copy/2", group="sagelab-dev--models-copy"),
        approval(arn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/sagelab-dev--models"),
        approval(arn=f"{GROUP_PREFIX}2/../../other/1"),
    ],
    ids=[
        "rejected",
        "pending",
        "empty-detail",
        "empty",
        "other-account",
        "other-region",
        "other-group",
        "group-sharing-a-prefix",
        "unversioned",
        "path-tricks",
    ],
)
def test_other_events_are_ignored(stub: Stubber, registry: Stubber, event: dict[str, Any]) -> None:
    assert handler.lambda_handler(event, CONTEXT) == {"result": "ignored"}


# -- the function's role on the synthesized template ----------------------------------------------
SERVING = "sagelab-dev--serving"
STACK_ARN = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{SERVING}/0f5e2a10-0000-4000-8000-000000000000"
BOOTSTRAP_EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"


@pytest.fixture(scope="module")
def stacks(synthesized: SynthResult) -> Stacks:
    return Stacks(synthesized.templates, Env(region=REGION, account=ACCOUNT))


def role(stacks: Stacks, prefix: str) -> RoleRef:
    (found,) = [r for r in stacks.roles() if r.stack == SERVING and r.logical_id.startswith(prefix)]
    return found


@pytest.fixture(scope="module")
def function_statements(stacks: Stacks) -> list[Statement]:
    return stacks.identity_policies(role(stacks, "DeployerFunctionRole"))


@pytest.fixture(scope="module")
def deployment_role_arn(stacks: Stacks) -> str:
    return role(stacks, "DeployerCloudFormationRole").arn


def test_update_stack_statement_requires_the_deployment_role_and_no_new_template(function_statements: list[Statement], deployment_role_arn: str) -> None:
    (update,) = [s for s in function_statements if any(a.lower() == "cloudformation:updatestack" for a in s.actions)]
    assert update.condition == {"ArnEquals": {"cloudformation:RoleArn": [deployment_role_arn]}, "Null": {"cloudformation:TemplateUrl": ["true"]}}


def test_the_deployer_can_update_the_serving_stack_only_as_the_deployment_role(function_statements: list[Statement], deployment_role_arn: str) -> None:
    def may_update(context: dict[str, str], stack_arn: str = STACK_ARN) -> bool:
        return is_allowed(function_statements, "cloudformation:UpdateStack", stack_arn, context)

    assert may_update({"cloudformation:RoleArn": deployment_role_arn})
    # Without RoleARN CloudFormation reuses the stack's last service role (after `cdk deploy`, the
    # bootstrap execution role, an administrator): denied, as is naming that role or a new template.
    assert not may_update({})
    assert not may_update({"cloudformation:RoleArn": BOOTSTRAP_EXECUTION_ROLE})
    assert not may_update({"cloudformation:RoleArn": deployment_role_arn, "cloudformation:TemplateUrl": "https://s3.amazonaws.com/evil/template.json"})
    other_stack = STACK_ARN.replace(SERVING, "sagelab-bob--serving")
    assert not may_update({"cloudformation:RoleArn": deployment_role_arn}, other_stack)
    for action in ("cloudformation:CreateChangeSet", "cloudformation:ExecuteChangeSet", "cloudformation:DeleteStack", "cloudformation:CreateStack"):
        assert not is_allowed(function_statements, action, STACK_ARN, {"cloudformation:RoleArn": deployment_role_arn}), action


def test_the_deployer_passes_only_the_deployment_role_and_only_to_cloudformation(
    stacks: Stacks, function_statements: list[Statement], deployment_role_arn: str
) -> None:
    to_cloudformation = {"iam:PassedToService": "cloudformation.amazonaws.com"}
    assert is_allowed(function_statements, "iam:PassRole", deployment_role_arn, to_cloudformation)
    assert not is_allowed(function_statements, "iam:PassRole", deployment_role_arn, {"iam:PassedToService": "lambda.amazonaws.com"})
    for other in stacks.roles():
        if other.arn != deployment_role_arn:
            assert not is_allowed(function_statements, "iam:PassRole", other.arn, to_cloudformation), other.logical_id


def test_the_function_knows_this_environments_group_prefix(stacks: Stacks) -> None:
    (function,) = [r for k, r in stacks.templates[SERVING]["Resources"].items() if k.startswith("DeployerFunction") and r["Type"] == "AWS::Lambda::Function"]
    variables = stacks.resolve(SERVING, function["Properties"]["Environment"]["Variables"])
    assert variables["MODEL_PACKAGE_ARN_PREFIX"] == GROUP_PREFIX


def test_the_serving_stack_accepts_only_versions_of_its_own_group(stacks: Stacks) -> None:
    pattern = re.compile(stacks.templates[SERVING]["Parameters"]["ModelPackageArn"]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch(ARN)
    for other in (ARN.replace("sagelab-dev--models", "sagelab-bob--models"), GROUP_PREFIX.rstrip("/"), f"{GROUP_PREFIX}2/extra", ARN.replace("/2", "/latest")):
        assert not pattern.fullmatch(other), other


NAMED_IAM = {"AWS::IAM::Role": "RoleName", "AWS::IAM::ManagedPolicy": "ManagedPolicyName", "AWS::IAM::User": "UserName", "AWS::IAM::Group": "GroupName"}


def test_the_handler_asks_for_exactly_the_capabilities_the_serving_template_needs(synthesized: SynthResult) -> None:
    resources = synthesized.template(SERVING)["Resources"].values()
    needed = []
    if any(r["Type"].startswith("AWS::IAM::") for r in resources):
        needed.append("CAPABILITY_IAM")
    if any(NAMED_IAM.get(r["Type"]) in (r.get("Properties") or {}) for r in resources):
        needed.append("CAPABILITY_NAMED_IAM")
    assert needed == handler.CAPABILITIES
