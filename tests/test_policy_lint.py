"""Every policy document in every template passes parliament (duo-labs' IAM linter, with its
community auditors) after its intrinsics are resolved (tests/iam_policy.py); each finding left is
acknowledged in ACKNOWLEDGED with the reason it does not apply, and an acknowledgment that no
longer matches any finding fails the test (so the table cannot rot).

Also here: privilege escalation. No role we create can pass a role it could also modify, create
or attach policies, or create roles.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from parliament import analyze_policy_string

from tests.conftest import SynthResult
from tests.iam_policy import Env, Stacks, Statement, action_matches, resource_matches

ENV = Env(partition="aws", region="us-east-1", account="123456789012")


@dataclass(frozen=True)
class Acknowledged:
    document: str  # regex on "<stack role>/<logical id>", stack role being platform or serving
    issue: str
    reason: str


ACKNOWLEDGED = (
    Acknowledged(
        r".*/Trust$",
        "MALFORMED",
        "A role's trust policy has no Resource element by grammar (the role is the resource); parliament reads it as a resource policy.",
    ),
    Acknowledged(
        r"platform/RolesPipelinePassSelf",
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "iam:PassRole of the pipeline role to SageMaker only (iam:PassedToService), for the jobs it starts; test_no_role_can_escalate proves it.",
    ),
    Acknowledged(
        r"platform/Roles(Pipeline|Endpoint)Policy",
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "kms:CreateGrant on the environment's own key, only for AWS resources (kms:GrantIsForAWSResource): SageMaker volumes need the grant.",
    ),
    Acknowledged(
        r"platform/Roles(Pipeline|Endpoint)Policy",
        "CREDENTIALS_EXPOSURE",
        "ecr:GetAuthorizationToken is the registry login SageMaker needs to pull the framework images; pulls are scoped to those repositories.",
    ),
    Acknowledged(
        r"(platform/StorageKey|class/LogKey)",
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "The key policy's account-root statement (CDK default) delegates the key to IAM policies; without it the key is unmanageable.",
    ),
    Acknowledged(r"(platform/StorageKey|class/LogKey)", "RESOURCE_STAR", "In a key policy, Resource * means this key and no other."),
    Acknowledged(
        r"(platform/StorageKey|class/LogKey)",
        "UNKNOWN_CONDITION_FOR_ACTION",
        "kms:EncryptionContext:<key> is a documented KMS key pattern (CloudWatch Logs' aws:logs:arn); parliament's data knows only fixed keys.",
    ),
    Acknowledged(
        r"(platform/StorageKey|class/LogKey)",
        "MISMATCHED_TYPE",
        "ArnLike on kms:EncryptionContext:aws:logs:arn compares an ARN, as CloudWatch Logs' key-policy example does; parliament types the key as String.",
    ),
    Acknowledged(
        r"platform/Storage\w+Policy",
        "MISMATCHED_TYPE",
        "s3:TlsVersion is numeric; CloudFormation templates carry every condition value as a string, which IAM converts.",
    ),
    Acknowledged(
        r"platform/Storage\w+Policy",
        "UNKNOWN_CONDITION_FOR_ACTION",
        "The TLS-version Deny covers s3:* on purpose; parliament reports the actions whose reference entry lacks s3:TlsVersion.",
    ),
    Acknowledged(
        r"platform/TrainingCopyFunctionRoleDefaultPolicy",
        "RESOURCE_MISMATCH",
        "aws-cdk-lib writes the bucket-deployment grants with s3:GetObject*/s3:List* wildcards; the expansions that need other resource types grant nothing here.",
    ),
    # The approval deployer's policies (stacks/approval_deployer/construct.py).
    Acknowledged(
        r"serving/Deployer(CloudFormation|Function)Policy",
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "Approval deployer: iam:PassRole of the CloudFormation/endpoint roles and kms:CreateGrant for the endpoint's volume.",
    ),
    # The spending cap's enforcer (stacks/spend_cap): tests/test_spend_cap_template.py proves its reach.
    Acknowledged(
        r"class/SpendCapFunctionPolicy",
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "Spending cap: attaches/detaches only the class's deny (iam:PolicyARN) on course-tagged student roles; passes only serving deployment roles to CloudFormation.",
    ),
    Acknowledged(
        r"serving/DeployerCloudFormationPolicy",
        "RESOURCE_STAR",
        "Approval deployer: Application Auto Scaling policies and targets support no resource-level permission for these actions.",
    ),
)


def _as_iam_strings(value: Any) -> Any:
    """Condition values as IAM reads them: CloudFormation may carry numbers and booleans."""
    if isinstance(value, dict):
        return {key: _as_iam_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_iam_strings(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _stack_role(stack: str) -> str:
    # sagelab-<env>--platform|serving, or the class-wide sagelab-class-<region>.
    return "class" if stack.startswith("sagelab-class--") else stack.rsplit("-", 1)[-1]


def findings_of(result: SynthResult) -> list[tuple[str, str, str]]:
    """(document, issue, detail) for every parliament finding on every resolved policy document."""
    stacks = Stacks(result.templates, ENV)
    found = []
    for document in stacks.policy_documents():
        policy = analyze_policy_string(json.dumps(_as_iam_strings(document.document)), include_community_auditors=True)
        for finding in policy.findings:
            found.append((f"{_stack_role(document.stack)}/{document.logical_id}", finding.issue, str(finding.detail)))
    return found


def _acknowledgment(document: str, issue: str) -> Acknowledged | None:
    return next((ack for ack in ACKNOWLEDGED if ack.issue == issue and re.match(ack.document, document)), None)


@pytest.mark.slow  # parliament over every policy of two apps
def test_every_policy_passes_parliament(synthesized: SynthResult, shared_class: SynthResult) -> None:
    """Both apps (one real-time environment; a serverless class): an acknowledgment is stale only
    if it matches no finding in either."""
    found = findings_of(synthesized) + findings_of(shared_class)
    unacknowledged = sorted({f"{document}: {issue} {detail[:200]}" for document, issue, detail in found if _acknowledgment(document, issue) is None})
    assert not unacknowledged, "parliament findings without an acknowledgment:\n" + "\n".join(unacknowledged)
    used = {_acknowledgment(document, issue) for document, issue, _ in found}
    stale = [ack for ack in ACKNOWLEDGED if ack not in used]
    assert not stale, f"acknowledgments that match no finding (remove them): {stale}"


def test_parliament_catches_a_misplaced_action() -> None:
    """Negative case: the finding this lint fixed (DescribePipelineDefinitionForExecution on the
    pipeline instead of its executions) is reported, and not once scoped to executions."""
    pipeline = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/sagelab-dev--pipeline"
    for resource, expected in ((pipeline, {"RESOURCE_MISMATCH"}), (f"{pipeline}/execution/*", set())):
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sagemaker:DescribePipelineDefinitionForExecution", "Resource": resource}],
        }
        assert {finding.issue for finding in analyze_policy_string(json.dumps(document)).findings} == expected


# -- privilege escalation -------------------------------------------------------------------------

# Actions that change what a role may do, or make new principals.
ROLE_MODIFYING_ACTIONS = (
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:DetachRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:UpdateRole",
    "iam:TagRole",
    "iam:UntagRole",
)
POLICY_MODIFYING_ACTIONS = ("iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicyVersion")
PRINCIPAL_CREATING_ACTIONS = ("iam:CreateRole", "iam:CreateUser", "iam:CreateAccessKey", "iam:CreateLoginProfile", "iam:AttachUserPolicy", "iam:PutUserPolicy")
ANY_ROLE = "arn:aws:iam::123456789012:role/any-role"
ANY_POLICY = "arn:aws:iam::123456789012:policy/any-policy"


def _allows(statements: list[Statement], action: str, resource: str) -> bool:
    """Could an Allow apply (conditions assumed satisfiable), and no unconditional Deny stop it?"""
    allowed = any(
        s.effect == "Allow"
        and (any(action_matches(p, action) for p in s.actions) if s.actions else not any(action_matches(p, action) for p in s.not_actions))
        and (any(resource_matches(p, resource) for p in s.resources) if s.resources else not any(resource_matches(p, resource) for p in s.not_resources))
        for s in statements
    )
    denied = any(
        s.effect == "Deny" and not s.condition and any(action_matches(p, action) for p in s.actions) and any(resource_matches(p, resource) for p in s.resources)
        for s in statements
    )
    return allowed and not denied


def escalations(result: SynthResult) -> list[str]:
    stacks = Stacks(result.templates, ENV)
    roles = stacks.roles()
    problems = []
    for role in roles:
        statements = stacks.identity_policies(role)
        for action in (*POLICY_MODIFYING_ACTIONS, *PRINCIPAL_CREATING_ACTIONS):
            for resource in (ANY_POLICY, ANY_ROLE, "arn:aws:iam::123456789012:user/any-user"):
                if _allows(statements, action, resource):
                    problems.append(f"{role.stack}/{role.logical_id} may {action} on {resource}")
        for target in [*roles, None]:
            target_arn = target.arn if target else ANY_ROLE
            if not _allows(statements, "iam:PassRole", target_arn):
                continue
            modifiable = [action for action in ROLE_MODIFYING_ACTIONS if _allows(statements, action, target_arn)]
            if modifiable:
                problems.append(f"{role.stack}/{role.logical_id} may pass {target_arn} and also {modifiable}")
            if target is not None:  # passing a role that itself can escalate is escalating
                target_statements = stacks.identity_policies(target)
                if any(_allows(target_statements, action, ANY_POLICY) for action in POLICY_MODIFYING_ACTIONS):
                    problems.append(f"{role.stack}/{role.logical_id} may pass {target.logical_id}, which may change policies")
    return problems


@pytest.mark.slow  # every role's privilege-escalation paths
def test_no_role_can_escalate(shared_class: SynthResult) -> None:
    assert escalations(shared_class) == []


def test_escalation_check_finds_a_planted_escalation(shared_class: SynthResult) -> None:
    """Negative case: let alice's notebook role pass her pipeline role and also put a policy on it:
    exactly that is reported."""
    templates = json.loads(json.dumps(shared_class.templates))
    platform = templates["sagelab-alice--platform"]["Resources"]
    (policy_id,) = [k for k, v in platform.items() if k.startswith("RolesNotebookPolicy")]
    (pipeline_role,) = [k for k, v in platform.items() if k.startswith("RolesPipelineRole") and v["Type"] == "AWS::IAM::Role"]
    platform[policy_id]["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": ["iam:PassRole", "iam:PutRolePolicy"], "Resource": {"Fn::GetAtt": [pipeline_role, "Arn"]}}
    )
    problems = escalations(SynthResult(outdir=shared_class.outdir, templates=templates))
    assert len(problems) == 1 and "RolesNotebookRole" in problems[0] and "iam:PutRolePolicy" in problems[0]


def test_every_role_carries_the_permissions_boundary(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With `permissions_boundary_arn` set, every role of every stack has it (CDK's own included)."""
    from tests.conftest import synth

    boundary = "arn:aws:iam::123456789012:policy/sagelab-boundary"
    context = {"sagelab": {"environments": {"dev": {"region": "us-east-1", "owner": "platform-team", "permissions_boundary_arn": boundary}}}}
    result = synth(tmp_path_factory.mktemp("boundary"), context)
    stacks = Stacks(result.templates, ENV)
    missing = [f"{role.stack}/{role.logical_id}" for role in stacks.roles() if role.permissions_boundary != boundary]
    assert not missing, f"roles without the permissions boundary: {missing}"
