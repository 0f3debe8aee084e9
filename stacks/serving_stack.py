"""ServingStack: one environment's endpoint, front door, approval deployer and monitoring.

Kept apart from the platform stack so that a model deployment (a parameter change made by the
approval deployer) updates only this stack. It references a few platform resources (endpoint
role, key, artifacts bucket) by deliberate cross-stack references.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Aws, CfnCondition, CfnOutput, CfnParameter, Environment, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from sagelab.config import EnvironmentConfig
from stacks.approval_deployer import ApprovalDeployer
from stacks.front_door import FrontDoor
from stacks.model_endpoint import ModelEndpoint
from stacks.naming import ResourceNames
from stacks.platform_stack import PlatformStack, apply_tags
from stacks.serving_monitoring import ServingMonitoring

MODEL_PACKAGE_PARAMETER = "ModelPackageArn"


class ServingStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, env_config: EnvironmentConfig, platform: PlatformStack, tags: Mapping[str, str], **kwargs: Any
    ) -> None:
        names = ResourceNames(env_config.resource_prefix)
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
        serving = env_config.serving
        retention = logs.RetentionDays(retention_name(env_config.log_retention_days))
        model_package = CfnParameter(
            self,
            MODEL_PACKAGE_PARAMETER,
            type="String",
            default=serving.model_package_arn or "",
            # Versions of this environment's own group only: CloudFormation refuses anything else
            # before a resource is touched (the deployer checks the same, and the deployment role
            # may read only this group's packages).
            allowed_pattern=rf"^$|^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{{12}}:model-package/{names.model_package_group}/\d+$",
            description="Model package version to serve; empty until one is approved (the approval deployer sets it).",
        )
        has_model = CfnCondition(self, "HasModel", expression=Fn.condition_not(Fn.condition_equals(model_package.value_as_string, "")))

        self.front_door = FrontDoor(
            self,
            "FrontDoor",
            names=names,
            serving=serving,
            log_key=platform.buckets.key,
            log_retention=retention,
            reserved_concurrency=serving.front_door_reserved_concurrency,
            trace_in_code=serving.trace_in_code,
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
        self.endpoint = ModelEndpoint(
            self,
            "Endpoint",
            names=names,
            serving=serving,
            model_package_arn=model_package.value_as_string,
            has_model=has_model,
            role=platform.roles.endpoint_role,
            key=platform.buckets.key,
            capture_bucket=platform.buckets.artifacts_bucket,
            rollback_alarms=self.monitoring.rollback_alarms,
            log_retention_days=env_config.log_retention_days,
        )
        self.deployer = ApprovalDeployer(
            self,
            "Deployer",
            names=names,
            serving_stack_arn=f"arn:{Aws.PARTITION}:cloudformation:{Aws.REGION}:{Aws.ACCOUNT_ID}:stack/{names.serving_stack}/*",
            parameter_name=MODEL_PACKAGE_PARAMETER,
            endpoint=self.endpoint,
            endpoint_role=platform.roles.endpoint_role,
            key=platform.buckets.key,
            log_retention=retention,
        )
        apply_tags(self, tags)

        CfnOutput(self, "ApiUrl", value=self.front_door.api.url, description="Front door base URL (POST /predict)")
        CfnOutput(self, "EndpointName", value=names.endpoint, description="SageMaker endpoint behind the front door")
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn, description="Subscribe to receive alarms")
        if self.front_door.api_key is not None:
            CfnOutput(self, "ApiKeyId", value=self.front_door.api_key.key_id, description="aws apigateway get-api-key --api-key ID --include-value")


def retention_name(days: int) -> str:
    names = {7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR"}
    return names[days]
