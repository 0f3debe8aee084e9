"""ModelApproval: the manual approval gate of an environment (`approval_mode: manual`).

Approving a model package deploys it to the public API (the approval deployer listens for it), so
in a manual environment the roles that train cannot approve: the pipeline may register versions
only as PendingManualApproval, the notebook may not change a version's status, and a separate
approver role, assumable by the account's administrators, approves.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.app.nag import acknowledge_policy_wildcards
from stacks.naming import ResourceArns

PENDING = "PendingManualApproval"

# Reviewing a group's versions and approving (or rejecting) one: what approving takes, whoever holds it.
REVIEW_MODEL_ACTIONS = (
    "sagemaker:ListModelPackages",
    "sagemaker:DescribeModelPackage",
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:UpdateModelPackage",
)


class ModelApproval(Construct):
    """An approver role and a Deny policy on the roles that train.

    The Deny is a separate managed policy attached to `training_roles` (the roles' own policies,
    in ExecutionRoles, keep their Allow statements): an explicit Deny wins over any Allow, now or
    added later.

    Props:
        names: the environment's names (the model package group).
        training_roles: roles denied approving (the pipeline and notebook roles); SageLab must
            own them (an imported role cannot be given a policy here).
    """

    def __init__(self, scope: Construct, construct_id: str, *, names: ResourceArns, training_roles: Sequence[iam.IRole]) -> None:
        super().__init__(scope, construct_id)
        if not training_roles:
            raise ValueError("training_roles must name the roles that train (pipeline, notebook)")
        self.gate = iam.ManagedPolicy(
            self,
            "Gate",
            description=f"SageLab {names.environment}: trainers register models as {PENDING} and cannot approve them",
            roles=list(training_roles),
            statements=[
                # UpdateModelPackage is how a version is approved; no training role needs it.
                iam.PolicyStatement(sid="NoApproving", effect=iam.Effect.DENY, actions=["sagemaker:UpdateModelPackage"], resources=["*"]),
                # Registering a version already Approved would skip the approver. A request without
                # a status registers PendingManualApproval, hence IfExists.
                iam.PolicyStatement(
                    sid="RegisterOnlyPending",
                    effect=iam.Effect.DENY,
                    actions=["sagemaker:CreateModelPackage"],
                    resources=["*"],
                    conditions={"StringNotEqualsIfExists": {"sagemaker:ModelApprovalStatus": PENDING}},
                ),
            ],
        )
        self.approver_role = iam.Role(
            self,
            "ApproverRole",
            # The account's administrators: any principal of this account whose own policy allows
            # sts:AssumeRole on this role (the training roles have no such permission).
            assumed_by=iam.AccountRootPrincipal(),
            description=f"SageLab {names.environment}: approves model packages (approving deploys to the API)",
        )
        approver_policy = iam.ManagedPolicy(
            self,
            "ApproverPolicy",
            roles=[self.approver_role],
            statements=[
                iam.PolicyStatement(
                    sid="ReviewAndApprove",
                    actions=list(REVIEW_MODEL_ACTIONS),
                    resources=[names.model_package_group_arn(), names.model_packages_arn()],
                )
            ],
        )
        acknowledge_policy_wildcards(
            approver_policy.node.default_child,  # type: ignore[arg-type]
            lambda _statement: "Approving a version needs its ARN, <group>/<version>, created at run time inside this environment's own group.",
        )
