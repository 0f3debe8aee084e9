"""ServingStack: one environment's endpoint, front door, approval deployer and monitoring.

Kept apart from the platform stack so that a model deployment (a parameter change made by the
approval deployer) updates only this stack. It references a few platform resources (endpoint
role, key, artifacts bucket) by deliberate cross-stack references.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnOutput, Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from sagelab.config import EnvironmentConfig
from stacks.approval_deployer.construct import ApprovalDeployer, ModelParameterNames
from stacks.approval_deployer.parameters import (
    MODEL_ALGORITHM_PARAMETER,
    MODEL_DESCRIPTION_PARAMETER,
    MODEL_PACKAGE_PARAMETER,
    MODEL_PROBLEM_TYPE_PARAMETER,
    ServedModelParameters,
)
from stacks.drift_check.construct import DriftCheck
from stacks.front_door.construct import FrontDoor
from stacks.model_endpoint.construct import ModelEndpoint
from stacks.naming import ACCOUNT_ID, PARTITION, REGION, ResourceArns
from stacks.platform_stack import PlatformStack, apply_tags
from stacks.release.promotion import MODEL_DEPLOYMENT_ROLE, Promotion
from stacks.serving_monitoring.construct import ServingMonitoring

# The role CloudFormation uses for model deployments; the class's spending cap removes an endpoint with it.
DEPLOYMENT_ROLE_OUTPUT = "DeploymentRoleArn"


class ServingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_config: EnvironmentConfig,
        platform: PlatformStack,
        tags: Mapping[str, str],
        promotion: Promotion | None = None,
        **kwargs: Any,
    ) -> None:
        """`promotion`: this environment serves versions of another environment's registry, which
        its release pipeline deploys (stacks/release/); its own approvals deploy nothing."""
        names = ResourceArns.of(env_config.name)
        super().__init__(
            scope,
            construct_id,
            stack_name=names.serving_stack,
            env=Environment(account=env_config.account, region=env_config.region),
            description=f"SageLab {env_config.name}: endpoint, API front door, approval deployer and alarms",
            **kwargs,
        )
        self.add_stack_dependency(platform)
        if env_config.permissions_boundary_arn:  # every role we create, here as in the platform stack
            iam.PermissionsBoundary.of(self).apply(iam.ManagedPolicy.from_managed_policy_arn(self, "PermissionsBoundary", env_config.permissions_boundary_arn))
        self.parameters = ServedModelParameters.add_to(self, names=names, default_package_arn=env_config.serving.model_package_arn, promotion=promotion)
        artifacts_bucket = self._artifacts_bucket(platform)
        self.has_model = self.parameters.add_has_model(self)
        retention = logs.RetentionDays(retention_name(env_config.log_retention_days))
        self._add_api(names, env_config, platform, artifacts_bucket, retention)
        self._add_endpoint(names, env_config, platform)
        self._add_deployer(names, platform, retention, promotion)
        apply_tags(self, tags)
        self._add_outputs(names)

    def _artifacts_bucket(self, platform: PlatformStack) -> s3.IBucket:
        """The platform's artifacts bucket. The front door's S3 grant names the bucket by ARN through
        the export CDK would create anyway, made explicit now so that the grant's nag acknowledgment
        can name its import. (CDK's own export name, not ours: a name with the student id in it
        would not survive classroom stamping, which rewrites ids in values but not in the logical
        ids made of them.)"""
        artifacts = platform.buckets.artifacts_bucket
        return s3.Bucket.from_bucket_attributes(
            self, "ArtifactsBucket", bucket_arn=platform.export_value(artifacts.bucket_arn), bucket_name=artifacts.bucket_name
        )

    def _add_api(
        self, names: ResourceArns, env_config: EnvironmentConfig, platform: PlatformStack, artifacts_bucket: s3.IBucket, retention: logs.RetentionDays
    ) -> None:
        """The front door, its monitoring, and the drift check of what it captures (when enabled)."""
        serving = env_config.serving
        served_model = self.parameters.served_model()
        self.front_door = FrontDoor(
            self,
            "FrontDoor",
            names=names,
            serving=serving,
            log_key=platform.buckets.key,
            log_retention=retention,
            reserved_concurrency=serving.front_door_reserved_concurrency,
            trace_in_code=serving.trace_in_code,
            model=served_model,
            artifacts_bucket=artifacts_bucket,
        )
        self.monitoring = ServingMonitoring(
            self,
            "Monitoring",
            names=names,
            api=self.front_door.api,
            function=self.front_door.function,
            key=platform.buckets.key,
            for_class=serving.monitoring == "class",
            realtime=serving.mode == "realtime",
        )
        self.drift_check: DriftCheck | None = None
        if serving.drift_check_enabled:
            self.drift_check = DriftCheck(
                self,
                "DriftCheck",
                names=names,
                settings=serving,
                artifacts_bucket=artifacts_bucket,
                key=platform.buckets.key,
                topic=self.monitoring.topic,
                description_uri=served_model.description_uri,
                log_retention=retention,
            )
            self.monitoring.show_drift_check(self.drift_check.metrics, list(self.drift_check.alarms.values()))

    def _add_endpoint(self, names: ResourceArns, env_config: EnvironmentConfig, platform: PlatformStack) -> None:
        self.endpoint = ModelEndpoint(
            self,
            "Endpoint",
            names=names,
            serving=env_config.serving,
            model_package_arn=self.parameters.model_package.value_as_string,
            has_model=self.has_model,
            role=platform.roles.endpoint_role,
            key=platform.buckets.key,
            capture_bucket=platform.buckets.artifacts_bucket,
            rollback_alarms=self.monitoring.rollback_alarms,
            log_retention_days=env_config.log_retention_days,
        )

    def _add_deployer(self, names: ResourceArns, platform: PlatformStack, retention: logs.RetentionDays, promotion: Promotion | None) -> None:
        """The approval deployer, with the grants it needs on the other units (the front door's and
        the drift check's MODEL_* settings, the endpoint's resources)."""
        self.deployer = ApprovalDeployer(
            self,
            "Deployer",
            names=names,
            serving_stack_arn=f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{names.serving_stack}/*",
            parameter_name=MODEL_PACKAGE_PARAMETER,
            model_parameter_names=ModelParameterNames(MODEL_ALGORITHM_PARAMETER, MODEL_PROBLEM_TYPE_PARAMETER, MODEL_DESCRIPTION_PARAMETER),
            front_door_function=self.front_door.function,
            front_door_role=self.front_door.role,
            drift_check=(self.drift_check.function, self.drift_check.role) if self.drift_check else None,
            artifacts_bucket=platform.buckets.artifacts_bucket,
            endpoint=self.endpoint,
            endpoint_role=platform.roles.endpoint_role,
            key=platform.buckets.key,
            log_retention=retention,
            listen=promotion is None,
            role_name=names.role(MODEL_DEPLOYMENT_ROLE) if promotion else None,
            model_packages_arn=promotion.source_packages_arn() if promotion else None,
        )

    def _add_outputs(self, names: ResourceArns) -> None:
        CfnOutput(self, "ApiUrl", value=self.front_door.api.url, description="Front door base URL (POST /predict)")
        CfnOutput(self, "EndpointName", value=names.endpoint, description="SageMaker endpoint behind the front door")
        CfnOutput(self, DEPLOYMENT_ROLE_OUTPUT, value=self.deployer.cloudformation_role.role_arn, description="CloudFormation's role for model deployments")
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn, description="Subscribe to receive alarms")
        if self.front_door.api_key is not None:
            CfnOutput(self, "ApiKeyId", value=self.front_door.api_key.key_id, description="aws apigateway get-api-key --api-key ID --include-value")


def retention_name(days: int) -> str:
    names = {7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR"}
    return names[days]
