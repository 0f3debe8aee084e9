"""ApprovalDeployer: approving a model package deploys it, with CloudFormation still the owner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.app.nag import acknowledge, acknowledge_policy_wildcards, acknowledge_tracing_grant
from stacks.lambda_runtime import LAMBDA_RUNTIME, code_with_contract, powertools_layer
from stacks.model_endpoint.construct import ModelEndpoint
from stacks.naming import ACCOUNT_ID, PARTITION, REGION, ResourceArns

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
# What CloudFormation's Lambda handler needs to change the front door's MODEL_* environment (the
# update handler's permissions in the registry schema that apply to a function without VPC, file
# systems, code signing, SnapStart or capacity providers; tests/test_sufficiency.py checks them).
FRONT_DOOR_UPDATE_ACTIONS = [
    "lambda:GetFunction",
    "lambda:UpdateFunctionConfiguration",
    "lambda:PutFunctionConcurrency",
    "lambda:DeleteFunctionConcurrency",
    "lambda:TagResource",
    "lambda:UntagResource",
    "lambda:GetRuntimeManagementConfig",
    "lambda:PutRuntimeManagementConfig",
    "lambda:GetFunctionRecursionConfig",
    "lambda:PutFunctionRecursionConfig",
    "lambda:GetFunctionCodeSigningConfig",
]


@dataclass(frozen=True)
class ModelParameterNames:
    """The serving stack's parameters the deployer sets from the package's CustomerMetadataProperties."""

    algorithm: str
    problem_type: str
    description_uri: str


class ApprovalDeployer(Construct):
    """EventBridge rule on "SageMaker Model Package State Change" (Approved, this group) -> a
    function that updates the serving stack's `parameter_name` through a CloudFormation service
    role. Failed deliveries land in an encrypted dead-letter queue.

    The function may update the serving stack only with that role and the previous template: once
    a stack has a service role, whoever may update it uses the role without iam:PassRole, and after
    `cdk deploy` that is the bootstrap execution role (administrator). The deployment role, in turn,
    reaches only this environment's models, endpoint configs, endpoint, scaling and alarms.

    Props:
        names: the environment's names (group, endpoint, serving stack).
        serving_stack_arn: the stack to update (its own ARN, from the serving stack).
        parameter_name: the stack parameter that holds the model package ARN.
        model_parameter_names: the parameters set from the package's CustomerMetadataProperties
            (`sagelab:algorithm`, `sagelab:problem-type`, `sagelab:model-description`).
        front_door_function, front_door_role: the function whose MODEL_* environment those
            parameters set; the deployment role may update its configuration and pass its role.
        drift_check: the drift check's function and role (its MODEL_DESCRIPTION_URI names the
            served version's baseline), configured the same way; None when there is no check.
        artifacts_bucket: a description URI outside it is not deployed.
        endpoint: what a deployment creates (names, whether it scales, the scaling role).
        endpoint_role: passed to SageMaker by CloudFormation when it creates the model.
        key: the environment key (endpoint volumes, data capture, queue, logs).
        log_retention: the function's log retention.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceArns,
        serving_stack_arn: str,
        parameter_name: str,
        model_parameter_names: ModelParameterNames,
        front_door_function: lambda_.IFunction,
        front_door_role: iam.IRole,
        drift_check: tuple[lambda_.IFunction, iam.IRole] | None = None,
        artifacts_bucket: s3.IBucket,
        endpoint: ModelEndpoint,
        endpoint_role: iam.IRole,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
        listen: bool = True,
        role_name: str | None = None,
        model_packages_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cloudformation_role = self._deployment_role(
            names=names,
            endpoint=endpoint,
            endpoint_role=endpoint_role,
            key=key,
            front_door_function=front_door_function,
            front_door_role=front_door_role,
            role_name=role_name,
            model_packages_arn=model_packages_arn or names.model_packages_arn(),
            drift_check=drift_check,
        )
        self.function: lambda_.Function | None = None
        self.rule: events.Rule | None = None
        if not listen:  # a promoting environment: the release pipeline deploys, with this same role
            return
        dead_letters = self._dead_letter_queue(key)
        self.function = self._function(
            names=names,
            serving_stack_arn=serving_stack_arn,
            parameter_name=parameter_name,
            model_parameter_names=model_parameter_names,
            artifacts_bucket=artifacts_bucket,
            key=key,
            log_retention=log_retention,
            dead_letters=dead_letters,
        )
        self.rule = events.Rule(
            self,
            "OnApproval",
            description=f"Deploy {names.model_package_group} versions when they are approved",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": [names.model_package_group], "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[targets.LambdaFunction(self.function, dead_letter_queue=dead_letters, retry_attempts=8, max_event_age=Duration.hours(6))],
        )

    def _deployment_role(
        self,
        *,
        names: ResourceArns,
        endpoint: ModelEndpoint,
        endpoint_role: iam.IRole,
        key: kms.IKey,
        front_door_function: lambda_.IFunction,
        front_door_role: iam.IRole,
        role_name: str | None,
        model_packages_arn: str,
        drift_check: tuple[lambda_.IFunction, iam.IRole] | None = None,
    ) -> iam.Role:
        """The role CloudFormation assumes for the updates the deployer starts: what the resources
        that depend on the model package need (tests/test_sufficiency.py checks it against the
        CloudFormation registry's handler permissions), on this environment's resources only."""
        sagemaker_arn = ResourceArns.sagemaker_arn
        role = iam.Role(
            self,
            "CloudFormationRole",
            assumed_by=iam.ServicePrincipal("cloudformation.amazonaws.com"),
            description=f"SageLab {names.environment}: model deployments",
            role_name=role_name,  # named when another account's model package group policy names it
        )
        tagging = ["sagemaker:AddTags", "sagemaker:DeleteTags", "sagemaker:ListTags"]
        statements = [
            iam.PolicyStatement(
                sid="ManageModels",
                actions=["sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:DescribeModel", *tagging],
                resources=[sagemaker_arn(f"model/{endpoint.name_prefix}*")],
            ),
            iam.PolicyStatement(
                sid="ManageEndpointConfigs",
                actions=["sagemaker:CreateEndpointConfig", "sagemaker:DeleteEndpointConfig", "sagemaker:DescribeEndpointConfig", *tagging],
                resources=[sagemaker_arn(f"endpoint-config/{endpoint.name_prefix}*")],
            ),
            iam.PolicyStatement(
                sid="ManageTheEndpoint",
                actions=["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:DescribeEndpoint", *tagging],
                resources=[names.endpoint_arn(), sagemaker_arn(f"endpoint-config/{endpoint.name_prefix}*")],
            ),
            # A promoting environment's versions are the source environment's (another account).
            iam.PolicyStatement(sid="ReadModelPackages", actions=["sagemaker:DescribeModelPackage"], resources=[model_packages_arn]),
            iam.PolicyStatement(
                sid="PassEndpointRole",
                actions=["iam:PassRole"],
                resources=[endpoint_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="UseEnvironmentKey", actions=["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]
            ),
            # An approval also sets the front door's MODEL_* environment (the served model's algorithm and problem type).
            iam.PolicyStatement(sid="ConfigureTheFrontDoor", actions=FRONT_DOOR_UPDATE_ACTIONS, resources=[front_door_function.function_arn]),
            iam.PolicyStatement(
                sid="PassFrontDoorRole",
                actions=["iam:PassRole"],
                resources=[front_door_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
            ),
        ]
        if drift_check is not None:
            # The drift check reads the served version's baseline from the same parameter.
            statements += [
                iam.PolicyStatement(sid="ConfigureTheDriftCheck", actions=FRONT_DOOR_UPDATE_ACTIONS, resources=[drift_check[0].function_arn]),
                iam.PolicyStatement(
                    sid="PassDriftCheckRole",
                    actions=["iam:PassRole"],
                    resources=[drift_check[1].role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
                ),
            ]
        if endpoint.scales:
            statements += self._scaling_statements(names=names, endpoint=endpoint)
        policy = iam.ManagedPolicy(self, "CloudFormationPolicy", roles=[role], statements=statements)
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda statement: DEPLOYMENT_WILDCARD_REASONS.get(statement.get("Sid", ""), "unexpected wildcard"),
        )
        return role

    @staticmethod
    def _scaling_statements(*, names: ResourceArns, endpoint: ModelEndpoint) -> list[iam.PolicyStatement]:
        # Target tracking names its alarms TargetTracking-<resource id>-AlarmHigh|Low-<uuid>; the
        # resource id starts with this environment's endpoint name and a slash.
        alarms = f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:TargetTracking-endpoint/{names.endpoint}/*"
        return [
            # Scaling writes only SageMaker variants' instance counts; targets and policies have no
            # ARN known before they exist, so the resource stays "*".
            iam.PolicyStatement(
                sid="ScaleTheEndpoint",
                actions=[
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:PutScalingPolicy",
                    "application-autoscaling:DeleteScalingPolicy",
                ],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "application-autoscaling:service-namespace": "sagemaker",
                        "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount",
                    }
                },
            ),
            iam.PolicyStatement(
                sid="ReadAndTagScaling",
                actions=[
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:DescribeScalingPolicies",
                    "application-autoscaling:DescribeScheduledActions",
                    "application-autoscaling:ListTagsForResource",
                    "application-autoscaling:TagResource",
                    "application-autoscaling:UntagResource",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="ScalingAlarms", actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"], resources=[alarms]
            ),
            iam.PolicyStatement(sid="ReadScalingMetrics", actions=["cloudwatch:GetMetricData"], resources=["*"]),
            iam.PolicyStatement(
                sid="CreateScalingServiceLinkedRole",
                actions=["iam:CreateServiceLinkedRole"],
                resources=[endpoint.scaling_role_arn],
                conditions={"StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
            ),
            # The scalable target names the service-linked role; only Application Auto Scaling can assume it.
            iam.PolicyStatement(sid="NameScalingServiceLinkedRole", actions=["iam:PassRole"], resources=[endpoint.scaling_role_arn]),
        ]

    def _dead_letter_queue(self, key: kms.IKey) -> sqs.Queue:
        dead_letters = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True, retention_period=Duration.days(14)
        )
        acknowledge(
            dead_letters,
            ("AwsSolutions-SQS3", "This queue is itself the dead-letter queue of the approval rule and function."),
            ("Serverless-SQSRedrivePolicy", "This queue is itself the dead-letter queue; messages wait here for an operator."),
        )
        return dead_letters

    def _function(
        self,
        *,
        names: ResourceArns,
        serving_stack_arn: str,
        parameter_name: str,
        model_parameter_names: ModelParameterNames,
        artifacts_bucket: s3.IBucket,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
        dead_letters: sqs.IQueue,
    ) -> lambda_.Function:
        function_logs = logs.LogGroup(self, "FunctionLogs", retention=log_retention, encryption_key=key, removal_policy=RemovalPolicy.DESTROY)
        role = iam.Role(
            self, "FunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"SageLab {names.environment}: approval deployer"
        )
        deployment_role_arn = self.cloudformation_role.role_arn
        function_policy = iam.ManagedPolicy(
            self,
            "FunctionPolicy",
            roles=[role],
            statements=[
                *serving_stack_update_statements(serving_stack_arn, deployment_role_arn)[:1],
                # The approved version's CustomerMetadataProperties (algorithm, problem type, description).
                iam.PolicyStatement(sid="ReadModelPackages", actions=["sagemaker:DescribeModelPackage"], resources=[names.model_packages_arn()]),
                *serving_stack_update_statements(serving_stack_arn, deployment_role_arn)[1:],
                iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[function_logs.log_group_arn]),
            ],
        )
        acknowledge_policy_wildcards(
            function_policy.node.default_child,  # type: ignore[arg-type]
            lambda statement: DEPLOYER_WILDCARD_REASONS.get(statement.get("Sid", ""), "unexpected wildcard"),
        )
        powertools = powertools_layer(self)
        function = lambda_.Function(
            self,
            "Function",
            runtime=LAMBDA_RUNTIME,
            handler="handler.lambda_handler",
            code=code_with_contract(RUNTIME_DIR),
            layers=[powertools],
            role=role,
            memory_size=256,
            timeout=Duration.seconds(30),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=function_logs,
            logging_format=lambda_.LoggingFormat.JSON,
            dead_letter_queue=dead_letters,
            environment={
                "MODEL_PACKAGE_ARN_PREFIX": f"{names.sagemaker_arn('model-package')}/{names.model_package_group}/",
                "SERVING_STACK_NAME": names.serving_stack,
                "PARAMETER_NAME": parameter_name,
                "ALGORITHM_PARAMETER": model_parameter_names.algorithm,
                "PROBLEM_TYPE_PARAMETER": model_parameter_names.problem_type,
                "DESCRIPTION_PARAMETER": model_parameter_names.description_uri,
                "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
                "CLOUDFORMATION_ROLE_ARN": deployment_role_arn,
                "POWERTOOLS_SERVICE_NAME": "sagelab-deployer",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            description=f"SageLab {names.environment}: deploys approved model packages",
        )
        acknowledge(
            function,
            ("NIST.800.53.R5-LambdaConcurrency", "Approvals are rare, human-paced events; reserved concurrency would only risk the account's shared pool."),
            ("NIST.800.53.R5-LambdaInsideVPC", "The function only calls the CloudFormation API; a VPC would add NAT or endpoints and no protection."),
            (
                "AwsSolutions-L1",
                f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned in stacks/lambda_runtime.py.",
            ),
            (
                "Serverless-LambdaLatestVersion",
                f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned in stacks/lambda_runtime.py.",
            ),
        )
        acknowledge_tracing_grant(role, "approval deployer")
        return function


def serving_stack_update_statements(serving_stack_arn: str, deployment_role_arn: str) -> list[iam.PolicyStatement]:
    """What updating the serving stack's model takes, for the deployer function here and for the
    release role of a promoting environment (stacks/release/target.py): read the stack, update it
    only with the deployment role (never the stack's previous service role, which CloudFormation
    uses when RoleARN is left out) and without a new template URL, and pass that role. A
    TemplateBody has no condition key; the deployment role bounds what one could do."""
    return [
        iam.PolicyStatement(sid="ReadServingStack", actions=["cloudformation:DescribeStacks"], resources=[serving_stack_arn]),
        iam.PolicyStatement(
            sid="UpdateServingStack",
            actions=["cloudformation:UpdateStack"],
            resources=[serving_stack_arn],
            conditions={"ArnEquals": {"cloudformation:RoleArn": deployment_role_arn}, "Null": {"cloudformation:TemplateUrl": "true"}},
        ),
        iam.PolicyStatement(
            sid="PassDeploymentRole",
            actions=["iam:PassRole"],
            resources=[deployment_role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
        ),
    ]


# Why each wildcard of the deployer function's policy is there (by statement id).
DEPLOYER_WILDCARD_REASONS = {
    "ReadServingStack": "A stack ARN ends in a stack id CloudFormation assigns at creation; the name part pins this one serving stack.",
    "UpdateServingStack": "A stack ARN ends in a stack id CloudFormation assigns at creation; the name part pins this one serving stack.",
    "ReadModelPackages": "Versions of this environment's own model package group are created at run time.",
}

# Why each wildcard of the deployment role is there (by statement id).
DEPLOYMENT_WILDCARD_REASONS = {
    "ManageModels": "Model names are <environment>-<settings hash>-v<package version>; the version is known only when a package is approved.",
    "ManageEndpointConfigs": "Endpoint-config names are <environment>-<settings hash>-v<package version>; the version is known only at approval.",
    "ManageTheEndpoint": "The endpoint is named; updating it to a new config also names that config, <environment>-<settings hash>-v<version>.",
    "ReadModelPackages": "Versions of this environment's own model package group are created at run time.",
    "ScaleTheEndpoint": "Scalable targets and policies get no ARN known before they exist; conditions limit writes to SageMaker variant instance counts.",
    "ReadAndTagScaling": "Describe and tag calls on scalable targets whose ids Application Auto Scaling generates; no write to capacity.",
    "ScalingAlarms": "Target tracking names its alarms TargetTracking-endpoint/<this endpoint>/...-<uuid>; the uuid is generated.",
    "ReadScalingMetrics": "cloudwatch:GetMetricData supports no resource-level permission; CloudFormation reads the scaling metric with it.",
}
