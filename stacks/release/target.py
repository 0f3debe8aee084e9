"""The promoting environment's side of a release (its own account): the role the source account's
release functions assume to update the serving stack and to test it, and the model's execution
role's reads of the source's artifacts and key. The source's side is stacks/release/source.py."""

from __future__ import annotations

from typing import cast

from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from constructs import Construct

from sagelab.naming import ResourceNames
from stacks.app.nag import acknowledge_policy_wildcards
from stacks.approval_deployer.construct import serving_stack_update_statements
from stacks.naming import PARTITION, REGION
from stacks.release.promotion import ENDPOINT_ROLE, RELEASE_ROLE, Promotion


def trust_only(account: str, principal_arns: tuple[str, ...] | list[str]) -> iam.PrincipalBase:
    """`account`'s principals whose ARN is one of `principal_arns`, and no other. The account root
    with an aws:PrincipalArn condition, not the role ARN as principal: a role ARN principal must
    exist when the policy is written, which would order the accounts' deployments in a cycle
    (each side names the other's roles)."""
    return iam.PrincipalWithConditions(iam.AccountPrincipal(account), {"ArnEquals": {"aws:PrincipalArn": list(principal_arns)}})


class ReleaseTarget(Construct):
    """In a promoting environment's serving stack: `role`, assumable only by the source account's
    release deploy and test functions, which may update this serving stack's model through the
    deployment role (the approval deployer's, shared) and read the front door's API key to test it.

    Props:
        promotion: this environment and its source.
        serving_stack_arn: the stack the release updates.
        deployment_role: CloudFormation's role for those updates (ApprovalDeployer.cloudformation_role).
        api_key: the front door's key the acceptance test sends (None with IAM auth).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        promotion: Promotion,
        serving_stack_arn: str,
        deployment_role: iam.IRole,
        api_key: apigateway.IApiKey | None,
    ) -> None:
        super().__init__(scope, construct_id)
        source, names = promotion.source, promotion.target_names
        assert source.account is not None  # config: both sides of promote_from name their accounts
        self.role = iam.Role(
            self,
            "Role",
            role_name=names.role(RELEASE_ROLE),
            assumed_by=trust_only(source.account, promotion.function_role_arns),
            description=f"SageLab {names.environment}: the {promotion.source.name} release deploys and tests here",
        )
        statements = serving_stack_update_statements(serving_stack_arn, deployment_role.role_arn)
        if api_key is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="ReadTheApiKey",
                    actions=["apigateway:GET"],
                    resources=[f"arn:{PARTITION}:apigateway:{REGION}::/apikeys/{api_key.key_id}"],
                )
            )
        policy = iam.ManagedPolicy(self, "Policy", roles=[self.role], statements=statements)
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda statement: TARGET_WILDCARD_REASONS.get(statement.get("Sid", ""), "unexpected wildcard"),
        )


TARGET_WILDCARD_REASONS = {
    "ReadServingStack": "A stack ARN ends in a stack id CloudFormation assigns at creation; the name part pins this one serving stack.",
    "UpdateServingStack": "A stack ARN ends in a stack id CloudFormation assigns at creation; the name part pins this one serving stack.",
}


class PromotedModelReads(Construct):
    """In a promoting environment's platform stack: names its endpoint role (the source's bucket and
    key policies name it) and lets it read the promoted model's files in the source's artifacts
    bucket and decrypt them with the source's key, through S3 only. Both grants need the source's
    resource policies too (stacks/release/source.py)."""

    def __init__(self, scope: Construct, construct_id: str, *, promotion: Promotion, endpoint_role: iam.IRole) -> None:
        super().__init__(scope, construct_id)
        if not isinstance(endpoint_role, iam.Role):
            raise ValueError(f"environment {promotion.target.name}: a promoting environment creates its endpoint role (unset existing_role_arn)")
        cast(iam.CfnRole, endpoint_role.node.default_child).role_name = ResourceNames.of(promotion.target.name).role(ENDPOINT_ROLE)
        policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[endpoint_role],
            statements=[
                iam.PolicyStatement(
                    sid="ReadPromotedModels",
                    actions=["s3:GetObject"],
                    resources=[promotion.source_artifacts_objects_arn()],
                    conditions={"StringEquals": {"aws:ResourceAccount": promotion.source.account}},
                ),
                iam.PolicyStatement(
                    sid="DecryptPromotedModels",
                    actions=["kms:Decrypt"],
                    resources=[promotion.source_keys_arn()],
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{promotion.source.region}.amazonaws.com"}},
                ),
            ],
        )
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda statement: PROMOTED_READ_REASONS.get(statement.get("Sid", ""), "unexpected wildcard"),
        )


PROMOTED_READ_REASONS = {
    "ReadPromotedModels": "The source's bucket name is generated by CloudFormation in another account: scoped to that account; its bucket policy names this role.",
    "DecryptPromotedModels": "The source's key id is generated in another account; its key policy names this role, and only S3 may use the grant.",
}
