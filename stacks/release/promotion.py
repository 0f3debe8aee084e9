"""Who is who in a release across accounts: the one place that names the roles each side's
policies name. Every ARN here is concrete (account ids from the config), because a policy in one
account cannot reference a resource of another account's template."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_steps import contract
from sagelab.config import EnvironmentConfig
from sagelab.naming import ResourceNames

# Purposes of the roles other accounts name (ResourceNames.role).
DEPLOY_FUNCTION = "release-deploy"  # source account: the pipeline's deploy action
TEST_FUNCTION = "release-test"  # source account: the pipeline's test action
RELEASE_ROLE = "release"  # target account: assumed by those two functions
MODEL_DEPLOYMENT_ROLE = "model-deployment"  # target account: CloudFormation's role for the serving stack
ENDPOINT_ROLE = "endpoint"  # target account: the model's execution role
# Where in the source's artifacts bucket a promoted model's files are (model.tar.gz and evaluations).
MODELS_PREFIX = f"{contract.MODELS_PREFIX}/"


def partition_of(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def role_arn(env: EnvironmentConfig, purpose: str) -> str:
    return f"arn:{partition_of(env.region)}:iam::{env.account}:role/{ResourceNames.of(env.name).role(purpose)}"


@dataclass(frozen=True)
class Promotion:
    """One promoting environment (`target`) and where its models come from (`source`: the
    environment at the head of its chain, which trains them and owns the registry, bucket and key)."""

    source: EnvironmentConfig
    target: EnvironmentConfig

    @property
    def source_names(self) -> ResourceNames:
        return ResourceNames.of(self.source.name)

    @property
    def target_names(self) -> ResourceNames:
        return ResourceNames.of(self.target.name)

    def source_packages_arn(self) -> str:
        """Every version of the source's model package group."""
        return f"arn:{partition_of(self.source.region)}:sagemaker:{self.source.region}:{self.source.account}:model-package/{self.source_names.model_package_group}/*"

    def source_package_pattern(self) -> str:
        """The serving stack's ModelPackageArn AllowedPattern: versions of the source's group, in its account."""
        return rf"^$|^arn:aws[a-z-]*:sagemaker:{self.source.region}:{self.source.account}:model-package/{self.source_names.model_package_group}/\d+$"

    def source_artifacts_objects_arn(self) -> str:
        """Objects under models/ of any bucket: the source's artifacts bucket is named by
        CloudFormation (generated, and truncated for longer names), so the identity side scopes by
        the owning account (aws:ResourceAccount) and the source's bucket policy names this role exactly."""
        return f"arn:{partition_of(self.source.region)}:s3:::*/{MODELS_PREFIX}*"

    def source_keys_arn(self) -> str:
        """Keys of the source account and region; the source key's policy is what names this role."""
        return f"arn:{partition_of(self.source.region)}:kms:{self.source.region}:{self.source.account}:key/*"

    @property
    def endpoint_role_arn(self) -> str:
        return role_arn(self.target, ENDPOINT_ROLE)

    @property
    def model_deployment_role_arn(self) -> str:
        return role_arn(self.target, MODEL_DEPLOYMENT_ROLE)

    @property
    def release_role_arn(self) -> str:
        return role_arn(self.target, RELEASE_ROLE)

    @property
    def function_role_arns(self) -> tuple[str, str]:
        """The source account's deploy and test functions: the only principals the release role trusts."""
        return role_arn(self.source, DEPLOY_FUNCTION), role_arn(self.source, TEST_FUNCTION)


def promotions(environments: tuple[EnvironmentConfig, ...]) -> tuple[Promotion, ...]:
    """Every promoting environment with the head of its chain (config.release_chain order)."""
    by_name = {env.name: env for env in environments}
    found = []
    for env in environments:
        if env.promote_from is None:
            continue
        head = by_name[env.promote_from]
        while head.promote_from is not None:
            head = by_name[head.promote_from]
        found.append(Promotion(head, env))
    return tuple(found)
