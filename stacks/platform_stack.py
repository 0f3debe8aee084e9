"""PlatformStack: one environment's storage, roles and training pipeline. It only composes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, Environment, RemovalPolicy, Stack, Tags
from aws_cdk import aws_iam as iam
from constructs import Construct

from sagelab.code_bundle import LAB_PREFIX, CodeBundle
from sagelab.config import EnvironmentConfig, PipelineConfig
from stacks.data_buckets.construct import DataBuckets
from stacks.execution_roles.construct import ExecutionRoles
from stacks.model_approval.construct import ModelApproval
from stacks.naming import ResourceArns
from stacks.notebook_environment.construct import NotebookEnvironment
from stacks.sagemaker_log_groups.construct import ACCOUNT_WIDE_LOG_GROUPS, SageMakerLogGroups, endpoint_log_group_name
from stacks.student_guardrails.construct import StudentGuardrails
from stacks.student_portal.construct import PortalPresignRole, PortalUser
from stacks.training_pipeline.construct import TrainingPipeline


@dataclass(frozen=True)
class SharedArtifacts:
    """Built once per app and shared by every environment (and every student)."""

    definitions: Mapping[PipelineConfig, str]  # one built definition per distinct pipeline config
    code_bundle: CodeBundle
    dataset_dir: str
    image_uris_by_region: Mapping[str, Mapping[str, str]]


def image_repository_arn(image_uri: str) -> str:
    """`<acct>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>` -> the repository ARN."""
    registry, _, repository = image_uri.partition("/")
    account, _, rest = registry.partition(".dkr.ecr.")
    region = rest.split(".", 1)[0]
    partition = "aws-cn" if rest.endswith(".com.cn") else "aws"
    return f"arn:{partition}:ecr:{region}:{account}:repository/{repository.split(':', 1)[0]}"


def environment_log_group_patterns(names: ResourceArns, *, account_wide: bool) -> list[str]:
    """Names (IAM wildcards) of every log group this environment encrypts with its key."""
    patterns = [
        # Groups without a fixed name get CloudFormation's `<stack name>-<logical id>-<suffix>`.
        f"{names.platform_stack}-*",
        f"{names.serving_stack}-*",
        # The WAF group of the environment's own web ACL (stacks/api_web_acl/construct.py): WAF only logs to
        # aws-waf-logs-*, and the 8-character stack-id suffix keeps `al`'s pattern off `al-b`'s group.
        f"aws-waf-logs-{names.name('waf')}-????????",
        endpoint_log_group_name(names.endpoint),
    ]
    return patterns + list(ACCOUNT_WIDE_LOG_GROUPS) if account_wide else patterns


def apply_tags(scope: Construct, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        Tags.of(scope).add(key, value)


class PlatformStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, env_config: EnvironmentConfig, shared: SharedArtifacts, tags: Mapping[str, str], **kwargs: Any
    ) -> None:
        names = ResourceArns.of(env_config.name)
        super().__init__(
            scope,
            construct_id,
            stack_name=names.platform_stack,
            env=Environment(account=env_config.account, region=env_config.region),
            description=f"SageLab {env_config.name}: buckets, key, roles and the training pipeline",
            **kwargs,
        )
        self.env_config = env_config
        self.names = names
        image_uris = shared.image_uris_by_region[env_config.region]
        if env_config.permissions_boundary_arn:
            iam.PermissionsBoundary.of(self).apply(iam.ManagedPolicy.from_managed_policy_arn(self, "PermissionsBoundary", env_config.permissions_boundary_arn))

        retain = env_config.removal_policy == "retain"
        self.buckets = DataBuckets(
            self,
            "Storage",
            key_alias=names.key_alias,
            environment=names.environment,
            retain=retain,
            scratch_expiry_days=env_config.scratch_expiry_days,
            log_retention_days=env_config.log_retention_days,
            data_capture_expiry_days=env_config.serving.data_capture_expiry_days,
        )
        self.roles = ExecutionRoles(
            self,
            "Roles",
            names=names,
            buckets=self.buckets,
            image_repository_arns=sorted({image_repository_arn(uri) for uri in image_uris.values()}),
            existing_role_arn=env_config.existing_role_arn,
            allowed_instance_types=env_config.allowed_instance_types,
        )
        self.approval = (
            ModelApproval(self, "Approval", names=names, training_roles=[self.roles.pipeline_role, self.roles.notebook_role])
            if env_config.approval_mode == "manual"
            else None
        )
        self.pipeline = TrainingPipeline(
            self,
            "Training",
            names=names,
            buckets=self.buckets,
            role=self.roles.pipeline_role,
            role_name=self.roles.pipeline_role_name,
            definition_body=shared.definitions[env_config.pipeline],
            image_uris=image_uris,
            code_bundle=shared.code_bundle,
            dataset_dir=shared.dataset_dir,
            retain=retain,
        )
        self.notebook = NotebookEnvironment(
            self,
            "Notebook",
            names=names,
            notebook=env_config.notebook,
            role=self.roles.notebook_role,
            key=self.buckets.key,
            lab_bucket=self.buckets.artifacts_bucket,
            lab_prefix=f"{self.pipeline.code_prefix}{LAB_PREFIX}/",
            env_name=env_config.name,
        )
        if env_config.account_log_groups:
            self.account_log_groups = SageMakerLogGroups(
                self,
                "AccountLogGroups",
                log_group_names=ACCOUNT_WIDE_LOG_GROUPS,
                key=self.buckets.key,
                retention_days=env_config.log_retention_days,
                # Kept while the key is kept; a group left behind with a deleted key would stop
                # every SageMaker job in the account from logging.
                removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            )
        if env_config.budget_usd > 0:
            self.guardrails = StudentGuardrails(
                self,
                "Guardrails",
                budget_name=names.budget,
                # In a shared account only this student's tagged resources count.
                student_id=env_config.name if env_config.shares_account_with_class else None,
                limit_usd=env_config.budget_usd,
                emails=env_config.budget_alert_emails,
            )
        if env_config.class_portal_role_arn:
            self.portal_presign = PortalPresignRole(
                self,
                "PortalPresign",
                user=PortalUser(env_config.name, env_config.student_email or "", env_config.account, env_config.region),
                portal_role_arn=env_config.class_portal_role_arn,
            )
        self.buckets.allow_cloudwatch(environment_log_group_patterns(names, account_wide=env_config.account_log_groups))
        apply_tags(self, tags)

        for output_id, value, description in (
            ("DataBucketName", self.buckets.data_bucket.bucket_name, "Input data bucket"),
            ("ArtifactsBucketName", self.buckets.artifacts_bucket.bucket_name, "Pipeline code, run outputs and models"),
            ("PipelineName", names.pipeline, "SageMaker pipeline to start"),
            ("ModelPackageGroupName", names.model_package_group, "Model registry group"),
            ("KmsKeyArn", self.buckets.key.key_arn, "Key for data at rest"),
            ("NotebookName", names.notebook, "SageMaker notebook instance"),
            ("EndpointRoleArn", self.roles.endpoint_role.role_arn, "Execution role for models (endpoint, batch transform)"),
            ("NotebookUrl", self.notebook.url, "The lab notebook (open from the SageMaker console to sign in)"),
        ):
            CfnOutput(self, output_id, value=value, description=description)
        if self.approval is not None:
            CfnOutput(self, "ApproverRoleArn", value=self.approval.approver_role.role_arn, description="Assume this role to approve model packages")
