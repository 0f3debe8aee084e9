"""The source environment's side of a release (the account that trains and registers): resource
policies that let each promoting environment's roles, and no other principal of their accounts,
read exactly what serving a promoted version takes. The identity side is stacks/release/target.py.

  model package group policy  sagemaker:DescribeModelPackage on the group's versions, for each
                              target's deployment role (CloudFormation creates the model from the
                              package: SageMaker resolves a cross-account package with the
                              caller's access to it)
  artifacts bucket policy     s3:GetObject on models/* (model.tar.gz, evaluations), for each
                              target's endpoint role (SageMaker downloads the model with it)
  key policy                  kms:Decrypt through S3 only, for the same endpoint roles
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from sagelab.release_aws import stage_title
from stacks.naming import REGION, ResourceArns
from stacks.release.promotion import MODELS_PREFIX, Promotion
from stacks.release.target import trust_only


class ReleaseSourceGrants(Construct):
    """Props:
    names: the source environment's names.
    promotions: every environment promoting (directly or through another) from this one.
    model_package_group, artifacts_bucket, key: the source's registry group, bucket and key.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceArns,
        promotions: Sequence[Promotion],
        model_package_group: sagemaker.CfnModelPackageGroup,
        artifacts_bucket: s3.IBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        group_statements = []
        for promotion in promotions:
            account = promotion.target.account
            assert account is not None  # config: both sides of promote_from name their accounts
            tag = stage_title(promotion.target.name)
            group_statements.append(
                iam.PolicyStatement(
                    sid=f"DeployTo{tag}",
                    principals=[trust_only(account, [promotion.model_deployment_role_arn])],
                    actions=["sagemaker:DescribeModelPackage"],
                    resources=[names.model_packages_arn()],
                )
            )
            artifacts_bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"ServeIn{tag}",
                    principals=[trust_only(account, [promotion.endpoint_role_arn])],
                    actions=["s3:GetObject"],
                    resources=[artifacts_bucket.arn_for_objects(f"{MODELS_PREFIX}*")],
                )
            )
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"ServeIn{tag}",
                    principals=[trust_only(account, [promotion.endpoint_role_arn])],
                    actions=["kms:Decrypt"],
                    resources=["*"],  # in a key policy, "*" is this key
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}},
                )
            )
        model_package_group.model_package_group_policy = iam.PolicyDocument(statements=group_statements)
