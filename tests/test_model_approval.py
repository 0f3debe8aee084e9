"""The approval gate (approval_mode), as IAM evaluations on the synthesized platform templates of
two neighbouring environments: `alice` (self-approval, the lab default) and `alice-b` (manual)."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from sagelab.aws_ops import APPROVER_HINT, AwsOperations, OperationError
from sagelab.config import ConfigError, load_config
from tests.conftest import SynthResult
from tests.iam_policy import Env, RoleRef, Stacks, Statement, is_allowed, principal_names, statement_applies

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture(scope="module")
def stacks(neighbours: SynthResult) -> Stacks:
    return Stacks(neighbours.templates, Env(region=REGION, account=ACCOUNT))


def role(stacks: Stacks, environment: str, prefix: str) -> RoleRef:
    (found,) = [r for r in stacks.roles() if r.stack == f"sagelab-{environment}--platform" and r.logical_id.startswith(prefix)]
    return found


def statements(stacks: Stacks, environment: str, prefix: str) -> list[Statement]:
    return stacks.identity_policies(role(stacks, environment, prefix))


def version(environment: str, number: int = 3) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/sagelab-{environment}--models/{number}"


def registers(policy: list[Statement], environment: str, status: str) -> bool:
    return is_allowed(policy, "sagemaker:CreateModelPackage", version(environment), {"sagemaker:ModelApprovalStatus": status})


def test_manual_runs_register_only_pending_versions(stacks: Stacks) -> None:
    pipeline = statements(stacks, "alice-b", "RolesPipelineRole")
    assert registers(pipeline, "alice-b", "PendingManualApproval")
    assert not registers(pipeline, "alice-b", "Approved")
    assert not registers(pipeline, "alice-b", "Rejected")


def test_in_manual_mode_neither_training_role_approves_but_the_approver_does(stacks: Stacks) -> None:
    for prefix in ("RolesPipelineRole", "RolesNotebookRole"):
        policy = statements(stacks, "alice-b", prefix)
        assert not is_allowed(policy, "sagemaker:UpdateModelPackage", version("alice-b"), {"sagemaker:ModelApprovalStatus": "Approved"}), prefix
    approver = statements(stacks, "alice-b", "ApprovalApproverRole")
    assert is_allowed(approver, "sagemaker:UpdateModelPackage", version("alice-b"), {"sagemaker:ModelApprovalStatus": "Approved"})
    assert not is_allowed(approver, "sagemaker:UpdateModelPackage", version("alice"))  # only its own environment's group


def test_the_approver_is_assumable_by_the_accounts_administrators_not_by_the_training_roles(stacks: Stacks) -> None:
    approver = role(stacks, "alice-b", "ApprovalApproverRole")
    trust = [s for s in approver.trust_policy["Statement"] if s["Effect"] == "Allow"]
    assert [principal_names(s["Principal"]) for s in trust] == [[("AWS", f"arn:aws:iam::{ACCOUNT}:root")]]
    for prefix in ("RolesPipelineRole", "RolesNotebookRole"):
        policy = statements(stacks, "alice-b", prefix)
        assert not any(statement_applies(s, "sts:AssumeRole", approver.arn) for s in policy if s.effect == "Allow"), prefix


def test_self_approval_stays_for_lab_environments(stacks: Stacks) -> None:
    assert registers(statements(stacks, "alice", "RolesPipelineRole"), "alice", "Approved")
    assert is_allowed(
        statements(stacks, "alice", "RolesNotebookRole"), "sagemaker:UpdateModelPackage", version("alice"), {"sagemaker:ModelApprovalStatus": "Approved"}
    )
    assert not [r for r in stacks.roles() if r.stack == "sagelab-alice--platform" and r.logical_id.startswith("Approval")]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            "{approval_mode: manual, pipeline: {approval_status: Approved}}",
            "environments.prod.pipeline.approval_status: 'Approved' is not valid (expected PendingManualApproval when approval_mode is manual)",
        ),
        ("{approval_mode: manual, existing_role_arn: 'arn:aws:iam::123456789012:role/lab'}", "environments.prod.existing_role_arn"),
        ("{approval_mode: review}", "environments.prod.approval_mode: 'review' is not valid (expected one of 'self', 'manual')"),
    ],
)
def test_manual_mode_rejects_settings_that_would_bypass_it(tmp_path: Path, settings: str, message: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"environments:\n  prod: {settings}\n")
    with pytest.raises(ConfigError, match="^" + re.escape(str(config))) as error:
        load_config({}, config)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_approving_without_the_approver_role_says_which_role_to_use() -> None:
    """What `sagelab models approve --aws` prints when the Deny above answers (one line, no trace)."""
    session = boto3.Session(aws_access_key_id="stubbed", aws_secret_access_key="stubbed", region_name=REGION)
    operations = AwsOperations(session)
    with Stubber(operations.sagemaker) as stub:
        summary = {
            "ModelPackageGroupName": "sagelab-alice-b--models",
            "ModelPackageVersion": 3,
            "ModelPackageArn": version("alice-b"),
            "CreationTime": "2026-01-01T00:00:00Z",
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": "PendingManualApproval",
        }
        stub.add_response("list_model_packages", {"ModelPackageSummaryList": [summary]})
        message = f"User: arn:aws:sts::{ACCOUNT}:assumed-role/notebook/x is not authorized to perform: sagemaker:UpdateModelPackage with an explicit deny"
        stub.add_client_error("update_model_package", service_error_code="AccessDeniedException", service_message=message, http_status_code=400)
        with pytest.raises(OperationError) as error:
            operations.approve("sagelab-alice-b--models", 3)
    assert str(error.value) == f"access denied: {message} ({APPROVER_HINT})"
