"""ApprovalDeployer: approving a model package deploys it, with CloudFormation still the owner."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.nag import acknowledge, acknowledge_policy_wildcards, acknowledge_tracing_grant
from stacks.naming import ResourceNames

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime" / "deployer"


class ApprovalDeployer(Construct):
    """EventBridge rule on "SageMaker Model Package State Change" (Approved, this group) -> a
    function that updates the serving stack's `parameter_name` through a CloudFormation service
    role. Failed deliveries land in an encrypted dead-letter queue.

    Props:
        names: the environment's names (group, endpoint, serving stack).
        serving_stack_arn: the stack to update (its own ARN, from the serving stack).
        parameter_name: the stack parameter that holds the model package ARN.
        endpoint_role: passed to SageMaker by CloudFormation when it creates the model.
        key: the environment key (endpoint volumes, data capture, queue, logs).
        log_retention: the function's log retention.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        serving_stack_arn: str,
        parameter_name: str,
        endpoint_role: iam.IRole,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        sagemaker_arn = ResourceNames.sagemaker_arn
        # The role CloudFormation assumes for updates the deployer starts: only what changing the
        # model package needs (model, endpoint config, endpoint, its autoscaling).
        self.cloudformation_role = iam.Role(
            self,
            "CloudFormationRole",
            assumed_by=iam.ServicePrincipal("cloudformation.amazonaws.com"),
            description=f"SageLab {names.prefix}: model deployments",
        )
        cfn_policy = iam.ManagedPolicy(
            self,
            "CloudFormationPolicy",
            roles=[self.cloudformation_role],
            statements=[
                iam.PolicyStatement(
                    sid="ManageServingResources",
                    actions=[
                        "sagemaker:CreateModel",
                        "sagemaker:DeleteModel",
                        "sagemaker:DescribeModel",
                        "sagemaker:CreateEndpointConfig",
                        "sagemaker:DeleteEndpointConfig",
                        "sagemaker:DescribeEndpointConfig",
                        "sagemaker:CreateEndpoint",
                        "sagemaker:UpdateEndpoint",
                        "sagemaker:DeleteEndpoint",
                        "sagemaker:DescribeEndpoint",
                        "sagemaker:AddTags",
                        "sagemaker:DeleteTags",
                        "sagemaker:ListTags",
                    ],
                    resources=[sagemaker_arn("model/*"), sagemaker_arn("endpoint-config/*"), names.endpoint_arn()],
                ),
                iam.PolicyStatement(sid="ReadModelPackages", actions=["sagemaker:DescribeModelPackage"], resources=[names.model_packages_arn()]),
                iam.PolicyStatement(
                    sid="PassEndpointRole",
                    actions=["iam:PassRole"],
                    resources=[endpoint_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    sid="UseEnvironmentKey", actions=["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]
                ),
                iam.PolicyStatement(
                    sid="ScaleTheEndpoint",
                    actions=[
                        "application-autoscaling:RegisterScalableTarget",
                        "application-autoscaling:DeregisterScalableTarget",
                        "application-autoscaling:PutScalingPolicy",
                        "application-autoscaling:DeleteScalingPolicy",
                        "application-autoscaling:Describe*",
                    ],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="ScalingAlarms",
                    actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"],
                    resources=[
                        f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:TargetTracking-endpoint/{names.endpoint}/*",
                        f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*",
                    ],
                ),
                iam.PolicyStatement(
                    sid="AutoscalingServiceLinkedRole",
                    actions=["iam:CreateServiceLinkedRole"],
                    resources=[f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/*"],
                    conditions={"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
                ),
            ],
        )
        acknowledge_policy_wildcards(
            cfn_policy.node.default_child,  # type: ignore[arg-type]
            lambda statement: {
                "ManageServingResources": "CloudFormation generates model and endpoint-config names on each deployment; the endpoint itself is named.",
                "ReadModelPackages": "Versions of this environment's own model package group are created at run time.",
                "ScaleTheEndpoint": "Application Auto Scaling actions support no resource-level permissions.",
                "ScalingAlarms": "Target tracking creates alarms with generated names (TargetTracking-endpoint/<name>/...).",
                "AutoscalingServiceLinkedRole": "The service-linked role path is fixed by AWS; the condition limits it to SageMaker autoscaling.",
            }.get(statement.get("Sid", ""), "unexpected wildcard"),
        )

        dead_letters = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True, retention_period=Duration.days(14)
        )
        acknowledge(
            dead_letters,
            ("AwsSolutions-SQS3", "This queue is itself the dead-letter queue of the approval rule and function."),
            ("Serverless-SQSRedrivePolicy", "This queue is itself the dead-letter queue; messages wait here for an operator."),
        )
        function_logs = logs.LogGroup(self, "FunctionLogs", retention=log_retention, encryption_key=key, removal_policy=RemovalPolicy.DESTROY)
        role = iam.Role(self, "FunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"SageLab {names.prefix}: approval deployer")
        function_policy = iam.ManagedPolicy(
            self,
            "FunctionPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    sid="UpdateServingStack", actions=["cloudformation:DescribeStacks", "cloudformation:UpdateStack"], resources=[serving_stack_arn]
                ),
                iam.PolicyStatement(sid="PassDeploymentRole", actions=["iam:PassRole"], resources=[self.cloudformation_role.role_arn]),
                iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[function_logs.log_group_arn]),
            ],
        )
        acknowledge_policy_wildcards(
            function_policy.node.default_child,  # type: ignore[arg-type]
            lambda _statement: "A stack ARN ends in a stack id CloudFormation assigns at creation; the name part pins this one serving stack.",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="handler.lambda_handler",
            code=lambda_.Code.from_asset(str(RUNTIME_DIR), exclude=["__pycache__", "*.pyc", "__init__.py"]),
            role=role,
            memory_size=256,
            timeout=Duration.seconds(30),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=function_logs,
            logging_format=lambda_.LoggingFormat.JSON,
            dead_letter_queue=dead_letters,
            environment={
                "MODEL_PACKAGE_GROUP": names.model_package_group,
                "SERVING_STACK_NAME": names.serving_stack,
                "PARAMETER_NAME": parameter_name,
                "CLOUDFORMATION_ROLE_ARN": self.cloudformation_role.role_arn,
            },
            description=f"SageLab {names.prefix}: deploys approved model packages",
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
        acknowledge(
            self.function,
            ("NIST.800.53.R5-LambdaConcurrency", "Approvals are rare, human-paced events; reserved concurrency would only risk the account's shared pool."),
            ("NIST.800.53.R5-LambdaInsideVPC", "The function only calls the CloudFormation API; a VPC would add NAT or endpoints and no protection."),
            ("AwsSolutions-L1", "Python 3.12 matches the front door; the function uses only boto3 from the runtime."),
            ("Serverless-LambdaLatestVersion", "Python 3.12 matches the front door; the function uses only boto3 from the runtime."),
        )
        acknowledge_tracing_grant(role, "approval deployer")
