"""ModelEndpoint: the SageMaker model, endpoint config and endpoint serving one model package."""

from __future__ import annotations

import hashlib
import json
from typing import Literal, Protocol

from aws_cdk import CfnCondition, CfnResource, Duration, Fn, RemovalPolicy
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from sagelab.bucket_layout import DATA_CAPTURE_PREFIX
from sagelab.naming import ResourceNames
from stacks.app.nag import acknowledge
from stacks.naming import ACCOUNT_ID, PARTITION
from stacks.sagemaker_log_groups.construct import SageMakerLogGroups, endpoint_log_group_name

VARIANT = "AllTraffic"
TARGET_INVOCATIONS_PER_INSTANCE = 100
# Application Auto Scaling's own role for SageMaker endpoints: the service creates it on first use
# (iam:CreateServiceLinkedRole), so no stack has to create, and nobody has to pass, an IAM role.
SCALING_SERVICE_LINKED_ROLE = "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
# The settings that the model and endpoint config are made of; a change to one of them replaces
# both, so it must also change their names (CloudFormation cannot replace a named resource in place).


class EndpointSettings(Protocol):
    """What the endpoint reads of an environment's serving settings (the config's `serving` section
    has these; the construct does not depend on the config module)."""

    @property
    def mode(self) -> Literal["realtime", "serverless"]: ...

    @property
    def instance_type(self) -> str: ...

    @property
    def initial_instance_count(self) -> int: ...

    @property
    def max_instance_count(self) -> int: ...

    @property
    def serverless_memory_mb(self) -> int: ...

    @property
    def serverless_max_concurrency(self) -> int: ...

    @property
    def data_capture_percent(self) -> int: ...


_NAMED_SETTINGS = ("mode", "instance_type", "initial_instance_count", "serverless_memory_mb", "serverless_max_concurrency", "data_capture_percent")


def deployment_name_prefix(names: ResourceNames, serving: EndpointSettings) -> str:
    """`sagelab-<id>--<8 hex>-v`: the start of this environment's model and endpoint-config names.

    Names are ours (not CloudFormation's generated ones) so that the deployment role can be scoped
    to them; the scope `sagelab-<id>--` keeps them off every other environment's (`sagelab.naming`).
    The hex part is of the settings above only (classroom stamping needs names that differ between
    students by the student id alone).
    """
    settings = {key: getattr(serving, key) for key in _NAMED_SETTINGS}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return names.name(f"{digest}-v")


class ModelEndpoint(Construct):
    """Serves `model_package_arn`; every resource exists only when `has_model` holds, so the first
    deploy (before any model is approved) succeeds and the front door answers 503 until then.

    Attributes for the deployment role: `name_prefix` (model and endpoint-config names start with
    it), `endpoint_name`, `scales` (realtime: a scalable target and a target-tracking policy) and
    `scaling_role_arn` (Application Auto Scaling's service-linked role; no role is created).

    Props:
        names: the endpoint's fixed name comes from here (the front door's only target).
        serving: realtime (instances, autoscaling, blue/green with rollback) or serverless.
        model_package_arn: a CloudFormation parameter value (the deployer or `-c model_package_arn` sets it).
        has_model: the condition that the parameter is not empty.
        role: the model's execution role; key: encrypts the endpoint's volumes, data capture and
            its log group `/aws/sagemaker/Endpoints/<endpoint>` (created here, before SageMaker
            would create it unencrypted and never expiring).
        capture_bucket: request/response data capture goes to `DATA_CAPTURE_PREFIX` in it
            (realtime only; `serving.data_capture_percent` of requests, 0 = no capture).
        rollback_alarms: alarms that roll a blue/green deployment back (realtime only).
        log_retention_days: retention of the endpoint's log group.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        serving: EndpointSettings,
        model_package_arn: str,
        has_model: CfnCondition,
        role: iam.IRole,
        key: kms.IKey,
        capture_bucket: s3.IBucket,
        rollback_alarms: list[cloudwatch.IAlarm],
        log_retention_days: int = 30,
    ) -> None:
        super().__init__(scope, construct_id)
        realtime = serving.mode == "realtime"
        self.endpoint_name = names.endpoint
        self.scales = realtime
        self.name_prefix = deployment_name_prefix(names, serving)
        self.scaling_role_arn = f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{SCALING_SERVICE_LINKED_ROLE}"
        # Not conditional on a model: an empty group costs nothing. Its fixed name would block the
        # next deploy if kept behind, and its events expire anyway: it goes with the stack.
        self.logs = SageMakerLogGroups(
            self,
            "Logs",
            log_group_names=[endpoint_log_group_name(names.endpoint)],
            key=key,
            retention_days=log_retention_days,
            removal_policy=RemovalPolicy.DESTROY,
        )
        name = self._deployment_name(names, model_package_arn)
        self.model = self._model(name, role, model_package_arn)
        self.endpoint_config = self._realtime_config(name, serving, key, capture_bucket) if realtime else self._serverless_config(name, serving)
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=names.endpoint,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            deployment_config=blue_green(rollback_alarms) if realtime else None,
        )
        for log_group in self.logs.log_groups.values():
            self.endpoint.node.add_dependency(log_group)
        conditional: list[CfnResource] = [self.model, self.endpoint_config, self.endpoint]
        if realtime:
            conditional += self._scaling(names, serving)
        for resource in conditional:
            resource.cfn_options.condition = has_model

    def _deployment_name(self, names: ResourceNames, model_package_arn: str) -> str:
        """`<name_prefix><version>`, the version taken from the package ARN (.../<group>/<version>;
        the parameter's pattern admits only this group's versions): the model's and the endpoint
        config's name. The separator is appended before splitting so that the expression also
        evaluates for an empty ARN (the resources then do not exist, but tools resolve it)."""
        separator = f"model-package/{names.model_package_group}/"
        version = Fn.select(1, Fn.split(separator, Fn.join("", [model_package_arn, separator])))
        return Fn.join("", [self.name_prefix, version])

    def _model(self, name: str, role: iam.IRole, model_package_arn: str) -> sagemaker.CfnModel:
        return sagemaker.CfnModel(
            self,
            "Model",
            model_name=name,
            execution_role_arn=role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(model_package_name=model_package_arn),
            # No network from the container: the model carries its code (pipeline_steps/train.py),
            # and SageMaker itself fetches the artifact and writes data capture and logs.
            enable_network_isolation=True,
        )

    def _realtime_config(self, name: str, serving: EndpointSettings, key: kms.IKey, capture_bucket: s3.IBucket) -> sagemaker.CfnEndpointConfig:
        """Instances, their volumes encrypted with `key`, and data capture (when a percentage is set)."""
        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT,
            model_name=self.model.attr_model_name,
            initial_instance_count=serving.initial_instance_count,
            instance_type=serving.instance_type,
            initial_variant_weight=1.0,
        )
        capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
            enable_capture=True,
            initial_sampling_percentage=serving.data_capture_percent,
            destination_s3_uri=f"s3://{capture_bucket.bucket_name}/{DATA_CAPTURE_PREFIX.rstrip('/')}",
            kms_key_id=key.key_arn,
            capture_options=[
                sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
            ],
            capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                json_content_types=["application/json"], csv_content_types=["text/csv"]
            ),
        )
        return sagemaker.CfnEndpointConfig(
            self,
            "Config",
            endpoint_config_name=name,
            production_variants=[variant],
            kms_key_id=key.key_arn,
            data_capture_config=capture if serving.data_capture_percent > 0 else None,
        )

    def _serverless_config(self, name: str, serving: EndpointSettings) -> sagemaker.CfnEndpointConfig:
        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT,
            model_name=self.model.attr_model_name,
            serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                max_concurrency=serving.serverless_max_concurrency, memory_size_in_mb=serving.serverless_memory_mb
            ),
        )
        config = sagemaker.CfnEndpointConfig(self, "Config", endpoint_config_name=name, production_variants=[variant])
        why = "Serverless endpoints have no instance volumes to encrypt with a customer key and do not accept KmsKeyId."
        acknowledge(config, ("AwsSolutions-SM2", why), ("NIST.800.53.R5-SageMakerEndpointConfigurationKMSKeyConfigured", why))
        return config

    def _scaling(self, names: ResourceNames, serving: EndpointSettings) -> list[CfnResource]:
        """Target tracking on invocations per instance, through Application Auto Scaling's
        service-linked role; the resources it creates (to put under the model condition)."""
        target = appscaling.ScalableTarget(
            self,
            "Scaling",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{names.endpoint}/variant/{VARIANT}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            role=iam.Role.from_role_arn(self, "ScalingServiceLinkedRole", self.scaling_role_arn, mutable=False),
            min_capacity=serving.initial_instance_count,
            max_capacity=serving.max_instance_count,
        )
        target.node.add_dependency(self.endpoint)
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=TARGET_INVOCATIONS_PER_INSTANCE,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        return [child for child in target.node.find_all() if isinstance(child, CfnResource)]


def blue_green(rollback_alarms: list[cloudwatch.IAlarm]) -> sagemaker.CfnEndpoint.DeploymentConfigProperty:
    """A realtime endpoint's updates: 10 % canary for five minutes, rolled back by `rollback_alarms`."""
    return sagemaker.CfnEndpoint.DeploymentConfigProperty(
        blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
            traffic_routing_configuration=sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="CANARY",
                canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(type="CAPACITY_PERCENT", value=10),
                wait_interval_in_seconds=300,
            ),
            termination_wait_in_seconds=120,
            maximum_execution_timeout_in_seconds=3600,
        ),
        auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
            alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=alarm.alarm_name) for alarm in rollback_alarms]
        ),
    )
