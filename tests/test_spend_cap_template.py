"""The spending cap on the synthesized templates (a three-student shared-account class): what the
enforcer may touch (only this class's students), and that the deny it attaches stops every kind
of billable SageMaker work a student's role could start. IAM wildcard semantics (tests/iam_policy.py);
each claim with a planted negative case."""

from __future__ import annotations

import re
from typing import Any

import botocore.session
import pytest

from stacks.spend_cap.construct import DENIED_ACTIONS
from tests.conftest import SynthResult
from tests.iam_policy import Env, RoleRef, Stacks, Statement, action_matches, is_allowed

ENV = Env(partition="aws", region="us-east-1", account="123456789012")
CLASS = "sagelab-class--us-east-1"
SAGEMAKER = "arn:aws:sagemaker:us-east-1:123456789012"
STACK = "arn:aws:cloudformation:us-east-1:123456789012:stack"
# Operations that start something billed by the hour (or that deploys such a thing: an approval).
BILLABLE = re.compile(r"^(Create\w*Job(V2)?|CreateEndpoint|UpdateEndpoint|CreateNotebookInstance|Start\w+|Retry\w+|UpdateModelPackage)$")


@pytest.fixture(scope="module")
def stacks(shared_class: SynthResult) -> Stacks:
    return Stacks(shared_class.templates, ENV)


def _role(stacks: Stacks, stack: str, logical_prefix: str) -> RoleRef:
    (role,) = (r for r in stacks.roles() if r.stack == stack and r.logical_id.startswith(logical_prefix))
    return role


def _enforcer(stacks: Stacks) -> list[Statement]:
    return stacks.identity_policies(_role(stacks, CLASS, "SpendCapFunctionRole"))


def _deny_policy(stacks: Stacks) -> tuple[str, list[Statement]]:
    template = stacks.templates[CLASS]
    (logical_id,) = (k for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::ManagedPolicy" and k.startswith("SpendCapCappedDeny"))
    document = stacks.resolve(CLASS, template["Resources"][logical_id]["Properties"]["PolicyDocument"])
    return stacks.stand_in(CLASS, logical_id), [Statement.from_json(s, f"{CLASS}/{logical_id}") for s in document["Statement"]]


def test_the_enforcer_reaches_the_class_students_and_nothing_else(stacks: Stacks) -> None:
    statements = _enforcer(stacks)
    course = next(r.tags["course"] for r in stacks.roles() if r.stack == "sagelab-alice--platform")
    ours = {"aws:ResourceTag/course": course}
    deny_arn, _ = _deny_policy(stacks)
    alice_roles = [r for r in stacks.roles() if r.stack == "sagelab-alice--platform"]
    deployment_role = _role(stacks, "sagelab-alice--serving", "DeployerCloudFormationRole")
    assert alice_roles and all(r.tags.get("course") == course for r in [*alice_roles, deployment_role])

    # What it must be able to do to a student of the class.
    assert is_allowed(statements, "sagemaker:StopNotebookInstance", f"{SAGEMAKER}:notebook-instance/sagelab-alice--notebook", ours)
    for role in alice_roles:
        with_deny = {**ours, "iam:PolicyARN": deny_arn}
        assert is_allowed(statements, "iam:AttachRolePolicy", role.arn, with_deny) and is_allowed(statements, "iam:DetachRolePolicy", role.arn, with_deny)
    update = {**ours, "cloudformation:RoleArn": deployment_role.arn}
    assert is_allowed(statements, "cloudformation:UpdateStack", f"{STACK}/sagelab-alice--serving/guid", update)
    assert is_allowed(statements, "iam:PassRole", deployment_role.arn, {**ours, "iam:PassedToService": "cloudformation.amazonaws.com"})

    # Planted negatives: another environment or class (no course tag, or another one), another
    # policy than the class's deny, another role for CloudFormation, a new template.
    for other in ({}, {"aws:ResourceTag/course": "another-course"}):
        assert not is_allowed(statements, "sagemaker:StopNotebookInstance", f"{SAGEMAKER}:notebook-instance/sagelab-dev--notebook", other)
        assert not is_allowed(statements, "iam:AttachRolePolicy", alice_roles[0].arn, {**other, "iam:PolicyARN": deny_arn})
        assert not is_allowed(
            statements, "cloudformation:UpdateStack", f"{STACK}/sagelab-dev--serving/guid", {**other, "cloudformation:RoleArn": deployment_role.arn}
        )
    assert not is_allowed(statements, "iam:AttachRolePolicy", alice_roles[0].arn, {**ours, "iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"})
    enforcer_role = _role(stacks, CLASS, "SpendCapFunctionRole")
    assert not is_allowed(statements, "iam:AttachRolePolicy", enforcer_role.arn, {**ours, "iam:PolicyARN": deny_arn})  # not even its own role
    admin_role = "arn:aws:iam::123456789012:role/cdk-hnb659fds-cfn-exec-role-123456789012-us-east-1"
    assert not is_allowed(statements, "cloudformation:UpdateStack", f"{STACK}/sagelab-alice--serving/guid", {**ours, "cloudformation:RoleArn": admin_role})
    assert not is_allowed(
        statements, "cloudformation:UpdateStack", f"{STACK}/sagelab-alice--serving/guid", {**update, "cloudformation:TemplateUrl": "https://evil/t.json"}
    )
    assert not is_allowed(statements, "cloudformation:UpdateStack", f"{STACK}/sagelab-alice--platform/guid", update)
    assert not is_allowed(statements, "iam:PassRole", alice_roles[0].arn, {**ours, "iam:PassedToService": "cloudformation.amazonaws.com"})
    for action in (
        "sagemaker:DeleteNotebookInstance",
        "sagemaker:DeleteEndpoint",
        "iam:PutRolePolicy",
        "iam:CreatePolicyVersion",
        "cloudformation:DeleteStack",
    ):
        assert not is_allowed(statements, action, "*", ours), action


def test_the_deny_stops_every_billable_action_a_student_role_is_allowed(stacks: Stacks) -> None:
    operations = botocore.session.get_session().get_service_model("sagemaker").operation_names
    billable = [f"sagemaker:{op}" for op in operations if BILLABLE.match(op)]
    _, deny = _deny_policy(stacks)
    course = next(r.tags["course"] for r in stacks.roles() if r.stack == "sagelab-alice--platform")
    context = {"aws:ResourceTag/course": course, "aws:RequestTag/course": course}
    checked = []
    for role in (r for r in stacks.roles() if r.stack == "sagelab-alice--platform"):
        statements = stacks.identity_policies(role)
        for action in billable:
            patterns = {resource for s in statements if s.effect == "Allow" and any(action_matches(a, action) for a in s.actions) for resource in s.resources}
            for resource in patterns:
                target = resource.replace("*", "x")
                if is_allowed(statements, action, target, context):
                    checked.append((role.logical_id, action))
                    assert not is_allowed([*statements, *deny], action, target, context), f"{role.logical_id} may still {action} when capped"
    # The proof is not vacuous: the roles can start pipelines, jobs and notebooks before the cap.
    actions = {action for _, action in checked}
    assert {"sagemaker:StartPipelineExecution", "sagemaker:CreateTrainingJob"} <= actions, actions
    # Every action the deny names exists in SageMaker's API (botocore's model).
    assert all(action.split(":", 1)[1] in operations for action in DENIED_ACTIONS)


def test_the_deny_without_an_action_leaves_that_action_open(stacks: Stacks) -> None:
    # Planted negative: the deny as it would be without StartPipelineExecution.
    _, deny = _deny_policy(stacks)
    weakened = [Statement(effect=s.effect, actions=tuple(a for a in s.actions if a != "sagemaker:StartPipelineExecution"), resources=s.resources) for s in deny]
    notebook = next(r for r in stacks.roles() if r.stack == "sagelab-alice--platform" and "Notebook" in r.logical_id)
    statements = stacks.identity_policies(notebook)
    pipeline = f"{SAGEMAKER}:pipeline/sagelab-alice--pipeline"
    assert is_allowed([*statements, *weakened], "sagemaker:StartPipelineExecution", pipeline)
    assert not is_allowed([*statements, *deny], "sagemaker:StartPipelineExecution", pipeline)


def test_students_are_warned_only_about_themselves(shared_class: SynthResult) -> None:
    subscriptions: list[dict[str, Any]] = [r["Properties"] for r in shared_class.template(CLASS)["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"]
    by_address = {s["Endpoint"]: s.get("FilterPolicy") for s in subscriptions}
    for student in ("alice", "bob", "carol"):
        assert by_address[f"{student}@example.edu"] == {"student": [student]}
    assert all("RedrivePolicy" in s for s in subscriptions)


def test_the_class_stack_with_the_cap_has_no_cfn_lint_errors(shared_class: SynthResult) -> None:
    from tests.test_cfn_lint import lint_errors

    assert lint_errors(shared_class.template(CLASS)) == []
