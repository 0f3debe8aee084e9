"""The release pipeline (CodePipeline V2, in the source environment's account; docs/decisions/0015):

  EventBridge: a version of <source>-models Approved ─► Start (Lambda) ─► execution, ModelPackageArn=<version>
  Source (the release's own code, pinned with the pipeline)
  ─► Deploy<stage 1> ─► Test<stage 1>
  ─► Approve<stage 2> (SNS to the approvers with the test's evidence) ─► Deploy<stage 2> ─► Test<stage 2> ...

Deploy and Test are Lambda actions (stacks/release/runtime/handler.py) that assume each stage's release
role (stacks/release/target.py) in its account. A failed action or a rejection ends the execution:
later stages are untouched. Executions are QUEUED, so an older version approved again (a rollback)
goes through the same stages after the one in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from pipeline_steps import contract
from sagelab.config import EnvironmentConfig
from sagelab.package_files import package_dir
from sagelab.release_aws import stage_title
from stacks.app.nag import acknowledge, acknowledge_policy_wildcards
from stacks.lambda_runtime import CONTRACT_MODULE, LAMBDA_RUNTIME, contract_file, powertools_layer, staged_package
from stacks.naming import ACCOUNT_ID, PARTITION, REGION, ResourceArns
from stacks.release.promotion import DEPLOY_FUNCTION, TEST_FUNCTION, Promotion
from stacks.sagemaker_log_groups.construct import allow_cloudwatch_logs

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
VARIABLE = "ModelPackageArn"  # stacks/release/runtime/handler.py's VARIABLE


def package() -> Path:
    """The functions' code: this unit's runtime/ as the `release` package and the approval
    deployer's handler as `deployer/handler.py` (Deploy calls its `deploy`), and the contract module
    at the root, which both import (docs/decisions/0018)."""
    files = {f"release/{path.name}": path for path in sorted(RUNTIME_DIR.glob("*.py")) if path.name != "__init__.py"}
    deployer = package_dir("stacks.approval_deployer.runtime") / "handler.py"
    return staged_package("release", {**files, "deployer/handler.py": deployer, CONTRACT_MODULE: contract_file()})


@dataclass(frozen=True)
class StageTarget:
    """What the pipeline needs of one promoting environment's serving stack."""

    promotion: Promotion
    model_parameter: str
    algorithm_parameter: str
    problem_type_parameter: str
    description_parameter: str
    deployment_role_arn: str

    @property
    def name(self) -> str:
        return self.promotion.target.name

    @property
    def title(self) -> str:
        return stage_title(self.name)


class ReleasePipeline(Construct):
    """Props:
    source: the environment versions are approved in (its account holds the pipeline).
    stages: the promoting environments, in release order (config.release_chain).
    artifacts_bucket, source_key: where the source's models and evaluations are, and their key.
    retain: keep the pipeline's artifact bucket and key on destroy.
    log_retention: the functions' log retention.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: EnvironmentConfig,
        stages: Sequence[StageTarget],
        artifacts_bucket: s3.IBucket,
        source_key: kms.IKey,
        retain: bool,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        if not stages:
            raise ValueError(f"{source.name}: a release needs at least one environment that promotes from it")
        names = ResourceArns.of(source.name)
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
        self.key = kms.Key(
            self, "Key", enable_key_rotation=True, description=f"SageLab {names.environment}: release artifacts, approvals, logs", removal_policy=removal
        )
        allow_cloudwatch_logs(self.key, "CloudWatchLogsOfTheRelease", [f"{names.release_stack}-*"])
        artifact_bucket = s3.Bucket(
            self,
            "Artifacts",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            removal_policy=removal,
        )
        acknowledge(
            artifact_bucket,
            ("AwsSolutions-S1", "Holds only the release's own code zip and action artifacts; every stage change is in CodePipeline's execution history."),
            ("NIST.800.53.R5-S3BucketLoggingEnabled", "Holds only the release's own code zip and action artifacts; the pipeline's history records each use."),
            ("NIST.800.53.R5-S3BucketReplicationEnabled", "Pipeline artifacts are rebuilt by the next execution; replicating them protects nothing."),
            ("NIST.800.53.R5-S3DefaultEncryptionKMS", "Encrypted with the release's customer-managed key (bucket key on)."),
        )
        self.topic = sns.Topic(self, "Approvals", master_key=self.key, enforce_ssl=True, display_name=f"SageLab {names.environment} release approvals")
        dead_letters = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.key, enforce_ssl=True, retention_period=Duration.days(14)
        )
        acknowledge(
            dead_letters,
            ("AwsSolutions-SQS3", "This queue is itself the dead-letter queue of the approval rule and the start function."),
            ("Serverless-SQSRedrivePolicy", "This queue is itself the dead-letter queue; messages wait here for an operator."),
        )
        code = lambda_.Code.from_asset(str(package()))
        layer = powertools_layer(self)
        pipeline_arn = f"arn:{PARTITION}:codepipeline:{REGION}:{ACCOUNT_ID}:{names.release_pipeline}"
        release_roles = [stage.promotion.release_role_arn for stage in stages]
        common_environment = {
            "PIPELINE_NAME": names.release_pipeline,
            "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
            "POWERTOOLS_SERVICE_NAME": "sagelab-release",
        }
        read_packages = iam.PolicyStatement(sid="ReadModelPackages", actions=["sagemaker:DescribeModelPackage"], resources=[names.model_packages_arn()])
        assume_stage_roles = iam.PolicyStatement(sid="AssumeStageReleaseRoles", actions=["sts:AssumeRole"], resources=release_roles)

        self.deploy_function = self._function(
            "Deploy",
            handler="release.handler.deploy",
            role_name=names.role(DEPLOY_FUNCTION),
            code=code,
            layer=layer,
            log_retention=log_retention,
            timeout=Duration.minutes(1),
            environment=common_environment,
            statements=[
                assume_stage_roles,
                read_packages,
                # Where each stage's version is: a tag per stage on the version in the registry.
                iam.PolicyStatement(sid="TagReleasedVersions", actions=["sagemaker:AddTags"], resources=[names.model_packages_arn()]),
                iam.PolicyStatement(sid="ReadWhoApproved", actions=["codepipeline:GetPipelineState"], resources=[pipeline_arn]),
            ],
        )
        self.test_function = self._function(
            "Test",
            handler="release.handler.test",
            role_name=names.role(TEST_FUNCTION),
            code=code,
            layer=layer,
            log_retention=log_retention,
            timeout=Duration.minutes(5),
            environment=common_environment,
            statements=[
                assume_stage_roles,
                read_packages,
                iam.PolicyStatement(
                    sid="ReadEvidence",
                    actions=["s3:GetObject"],
                    resources=[
                        artifacts_bucket.arn_for_objects(f"{contract.EVALUATIONS_PREFIX}/*"),
                        artifacts_bucket.arn_for_objects(f"{contract.PIPELINE_RUNS_PREFIX}/*/preprocess/*"),
                    ],
                ),
                iam.PolicyStatement(sid="DecryptEvidence", actions=["kms:Decrypt"], resources=[source_key.key_arn]),
            ],
        )
        self.start_function = self._function(
            "Start",
            handler="release.handler.start",
            role_name=None,
            code=code,
            layer=layer,
            log_retention=log_retention,
            timeout=Duration.seconds(30),
            environment={**common_environment, "MODEL_PACKAGE_ARN_PREFIX": f"{names.sagemaker_arn('model-package')}/{names.model_package_group}/"},
            statements=[iam.PolicyStatement(sid="StartTheRelease", actions=["codepipeline:StartPipelineExecution"], resources=[pipeline_arn])],
            dead_letters=dead_letters,
        )

        release_code = s3_assets.Asset(self, "ReleaseCode", path=str(RUNTIME_DIR))
        source_output = codepipeline.Artifact("ReleaseCode")
        pipeline_stages: list[codepipeline.StageProps] = [
            codepipeline.StageProps(
                stage_name="Source",
                actions=[
                    # CodePipeline starts with a source stage: the release's own code, pinned with
                    # the pipeline (the version to release is the execution's variable).
                    actions.S3SourceAction(
                        action_name="ReleaseCode",
                        bucket=release_code.bucket,
                        bucket_key=release_code.s3_object_key,
                        output=source_output,
                        trigger=actions.S3Trigger.NONE,
                    )
                ],
            )
        ]
        self.approvals: list[actions.ManualApprovalAction] = []
        approvers: list[tuple[actions.ManualApprovalAction, StageTarget]] = []
        previous_test: actions.LambdaInvokeAction | None = None
        for index, stage in enumerate(stages):
            parameters = {
                "stage": stage.name,
                "model_package": f"#{{variables.{VARIABLE}}}",
                "stack": stage.promotion.target_names.serving_stack,
                "release_role": stage.promotion.release_role_arn,
                "deployment_role": stage.deployment_role_arn,
                "parameter": stage.model_parameter,
                "algorithm_parameter": stage.algorithm_parameter,
                "problem_type_parameter": stage.problem_type_parameter,
                "description_parameter": stage.description_parameter,
                "tolerance": stage.promotion.target.release.tolerance,
                "latency_p95_ms": stage.promotion.target.release.latency_p95_ms,
            }
            if index > 0:
                assert previous_test is not None
                approval = actions.ManualApprovalAction(
                    action_name=f"Approve{stage.title}",
                    notification_topic=self.topic,
                    notify_emails=list(stage.promotion.target.release.approval_emails) or None,
                    additional_information=(
                        f"Promote #{{variables.{VARIABLE}}} to {stage.name}. Acceptance test in {stages[index - 1].name}: {previous_test.variable('summary')}"
                    ),
                    # The execution: each action's result, the test's output variables, its log.
                    external_entity_link=f"https://console.aws.amazon.com/codesuite/codepipeline/pipelines/{names.release_pipeline}/view?region={REGION}",
                    timeout=Duration.days(7),
                )
                self.approvals.append(approval)
                approvers.append((approval, stage))
                parameters["approval_action"] = approval.action_properties.action_name
                pipeline_stages.append(codepipeline.StageProps(stage_name=f"Approve{stage.title}", actions=[approval]))
            deploy = actions.LambdaInvokeAction(
                action_name=f"Deploy{stage.title}", lambda_=self.deploy_function, user_parameters=parameters, variables_namespace=f"Deploy{stage.title}"
            )
            test = actions.LambdaInvokeAction(
                action_name=f"Test{stage.title}", lambda_=self.test_function, user_parameters=parameters, variables_namespace=f"Test{stage.title}"
            )
            pipeline_stages.append(codepipeline.StageProps(stage_name=f"Deploy{stage.title}", actions=[deploy]))
            pipeline_stages.append(codepipeline.StageProps(stage_name=f"Test{stage.title}", actions=[test]))
            previous_test = test
        self.pipeline = codepipeline.Pipeline(
            self,
            "Pipeline",
            pipeline_name=names.release_pipeline,
            pipeline_type=codepipeline.PipelineType.V2,
            execution_mode=codepipeline.ExecutionMode.QUEUED,
            variables=[codepipeline.Variable(variable_name=VARIABLE, default_value="none", description="The model package version this execution releases")],
            artifact_bucket=artifact_bucket,
            restart_execution_on_update=False,
            stages=pipeline_stages,
        )
        for approval, stage in approvers:  # once the actions are bound to the pipeline
            for number, approver in enumerate(stage.promotion.target.release.approvers):
                # Who may approve: PutApprovalResult on this one action, in their identity policy.
                approval.grant_manual_approval(
                    iam.Role.from_role_arn(self, f"{stage.title}Approver{number}", approver, mutable=True)
                    if ":role/" in approver
                    else iam.User.from_user_arn(self, f"{stage.title}Approver{number}", approver)
                )
        self.key.grant_encrypt_decrypt(self.pipeline.role)  # approval notifications to the encrypted topic
        # CDK's own grants (pipeline and action roles, Lambda actions' job results, approvers):
        # written inline by aws-cdk-lib, each wildcard with its reason.
        for policy in (c for c in self.node.find_all() if isinstance(c, iam.CfnPolicy)):
            acknowledge_policy_wildcards(policy, lambda statement: cdk_grant_reason(statement))
            acknowledge(policy, ("NIST.800.53.R5-IAMNoInlinePolicy", "aws-cdk-lib writes the pipeline's, its actions' and approvers' grants inline."))
        acknowledge(
            self.topic, ("Serverless-SNSRedrivePolicy", "Approval emails: a lost notification leaves the approval waiting in the pipeline, visible there.")
        )
        self.rule = events.Rule(
            self,
            "OnApproval",
            description=f"Release {names.model_package_group} versions when they are approved",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": [names.model_package_group], "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[targets.LambdaFunction(self.start_function, dead_letter_queue=dead_letters, retry_attempts=8, max_event_age=Duration.hours(6))],
        )

    def _function(
        self,
        construct_id: str,
        *,
        handler: str,
        role_name: str | None,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        log_retention: logs.RetentionDays,
        timeout: Duration,
        environment: dict[str, str],
        statements: list[iam.PolicyStatement],
        dead_letters: sqs.IQueue | None = None,
    ) -> lambda_.Function:
        function_logs = logs.LogGroup(self, f"{construct_id}Logs", retention=log_retention, encryption_key=self.key, removal_policy=RemovalPolicy.DESTROY)
        role = iam.Role(
            self,
            f"{construct_id}Role",
            role_name=role_name,  # named when another account's trust policy names it
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"SageLab release: {construct_id.lower()} function",
        )
        policy = iam.ManagedPolicy(
            self,
            f"{construct_id}Policy",
            roles=[role],
            statements=[
                *statements,
                iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[function_logs.log_group_arn]),
            ],
        )
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda statement: RELEASE_WILDCARD_REASONS.get(statement.get("Sid", ""), "unexpected wildcard"),
        )
        function = lambda_.Function(
            self,
            construct_id,
            runtime=LAMBDA_RUNTIME,
            handler=handler,
            code=code,
            layers=[layer],
            role=role,
            memory_size=256,
            timeout=timeout,
            log_group=function_logs,
            logging_format=lambda_.LoggingFormat.JSON,
            dead_letter_queue=dead_letters,
            environment={**environment, "POWERTOOLS_LOG_LEVEL": "INFO"},
            description=f"SageLab release: {construct_id.lower()}",
        )
        acknowledge(
            function,
            ("NIST.800.53.R5-LambdaConcurrency", "Releases are rare, human-paced events; reserved concurrency would only risk the account's shared pool."),
            ("NIST.800.53.R5-LambdaInsideVPC", "The function calls AWS APIs and the stage's public front door; a VPC would add NAT and no protection."),
            (
                "AwsSolutions-L1",
                f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned in stacks/lambda_runtime.py.",
            ),
            (
                "Serverless-LambdaLatestVersion",
                f"{LAMBDA_RUNTIME.name} is the newest runtime with a published Powertools v3 layer version pinned in stacks/lambda_runtime.py.",
            ),
            ("Serverless-LambdaTracing", "The release's functions are a few calls per release; their logs carry every call's outcome."),
            ("NIST.800.53.R5-LambdaDLQ", "CodePipeline invokes the action functions synchronously and records each failure in the execution."),
            ("Serverless-LambdaDLQ", "CodePipeline invokes the action functions synchronously and records each failure in the execution."),
        )
        return function


RELEASE_WILDCARD_REASONS = {
    "ReportJobResults": "codepipeline:PutJobSuccessResult/PutJobFailureResult support no resource-level permission.",
    "ReadModelPackages": "Versions of the source's model package group are created at run time.",
    "TagReleasedVersions": "Versions of the source's model package group are created at run time.",
    "ReadEvidence": "Evaluations and test splits are under the training execution's id, known only when a version is released.",
}


def cdk_grant_reason(statement: dict[str, object]) -> str:
    """Why a wildcard of a grant aws-cdk-lib writes for the pipeline is there."""
    actions = statement.get("Action")
    actions = [actions] if isinstance(actions, str) else list(actions or [])  # type: ignore[call-overload]
    if any(str(a).startswith("codepipeline:PutJob") for a in actions):
        return "codepipeline:PutJobSuccessResult/PutJobFailureResult support no resource-level permission (CDK's grant for Lambda actions)."
    if "lambda:ListFunctions" in actions:
        return "lambda:ListFunctions supports no resource-level permission; the invoke grant names one function and its versions (:*)."
    if "codepipeline:ListPipelines" in actions:
        return "codepipeline:ListPipelines supports no resource-level permission; approving names this one approval action."
    if any(str(a).startswith(("s3:", "kms:")) for a in actions):
        return "CDK's pipeline grants on the release's own artifact bucket objects and key (object keys are generated per execution)."
    if any(str(a).startswith("lambda:InvokeFunction") for a in actions):
        return "The invoke grant names the action's one function and its versions (:*)."
    return "unexpected wildcard"
