"""TrainingPipeline: the SageMaker Pipeline, its model package group, code and default dataset."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Fn, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from sagelab.code_bundle import CodeBundle
from sagelab.naming import ResourceNames
from sagelab.pipeline_definition import PIPELINE_CODE_PREFIX, PLACEHOLDERS
from stacks.app.nag import acknowledge, acknowledge_cdk_singleton_lambda, acknowledge_policy_wildcards
from stacks.data_buckets.construct import DataBuckets
from stacks.naming import ACCOUNT_ID

DATASET_PREFIX = "datasets/digits/"


class TrainingPipeline(Construct):
    """Deploys one environment's copy of the pipeline definition.

    Props:
        names: the environment's resource names (pipeline, model package group).
        buckets: where code, data and run outputs live.
        role: the pipeline execution role (also the jobs' role).
        role_name: that role's name, as the definition's `${PipelineRoleName}`.
        definition_body: the definition JSON with `${Name}` placeholders, built once per app.
        image_uris: `SklearnImageUri`/`XgboostImageUri` for this environment's region.
        code_bundle: the staged step scripts (`pipeline-code/<version>/`).
        dataset_dir: a local folder published as the default input (`datasets/digits/`).
        retain: keep the model package group when the stack is deleted (registered models are data).
        copy_log_retention: how long the deploy-time copy function's log group keeps its logs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        buckets: DataBuckets,
        role: iam.IRole,
        role_name: str,
        definition_body: str,
        image_uris: Mapping[str, str],
        code_bundle: CodeBundle,
        dataset_dir: str,
        retain: bool = True,
        copy_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        variables = {
            "ArtifactsBucket": buckets.artifacts_bucket.bucket_name,
            "DataBucket": buckets.data_bucket.bucket_name,
            "CodeVersion": code_bundle.version,
            "PipelineRoleName": role_name,
            "KmsKeyArn": buckets.key.key_arn,
            "ModelPackageGroupName": names.model_package_group,
            # Jobs are named sagelab-<id>--<step>-...; the roles are scoped to sagelab-<id>--*.
            "JobNamePrefix": names.scope,
            **{name: uri for name, uri in image_uris.items() if name in PLACEHOLDERS},
        }
        missing = set(PLACEHOLDERS) - set(variables)
        if missing:
            raise ValueError(f"no value for the definition's placeholder(s) {sorted(missing)} (image_uris must name both framework images)")

        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=names.model_package_group,
            model_package_group_description=f"Models trained by the {names.pipeline} pipeline",
        )
        self.model_package_group.apply_removal_policy(RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY)

        self.code_prefix = f"{PIPELINE_CODE_PREFIX}/{code_bundle.version}/"
        copy_role, copy_logs = self._copy_function_role(names, buckets.key, copy_log_retention)
        self.code_deployment = s3deploy.BucketDeployment(
            self,
            "PipelineCode",
            sources=[s3deploy.Source.asset(str(code_bundle.directory))],
            destination_bucket=buckets.artifacts_bucket,
            destination_key_prefix=self.code_prefix,
            retain_on_delete=True,
            memory_limit=256,
            role=copy_role,
            log_group=copy_logs,
        )
        self.dataset_deployment = s3deploy.BucketDeployment(
            self,
            "DefaultDataset",
            sources=[s3deploy.Source.asset(dataset_dir)],
            destination_bucket=buckets.data_bucket,
            destination_key_prefix=DATASET_PREFIX,
            retain_on_delete=True,
            memory_limit=256,
            role=copy_role,
            log_group=copy_logs,
        )
        acknowledge_cdk_singleton_lambda(Stack.of(self), "Custom::CDKBucketDeployment", "bucket-deployment")
        # CDK adds the copy grants (asset bucket read, destination read/write) to the role's
        # default policy once both deployments exist: acknowledge its wildcards after that.
        acknowledge_policy_wildcards(
            copy_role.node.find_child("DefaultPolicy").node.default_child,  # type: ignore[arg-type]
            lambda _statement: "CDK's bucket-deployment grants: read the CDK asset objects, write this environment's code and dataset prefixes' objects.",
        )
        acknowledge(
            copy_role,
            (
                "NIST.800.53.R5-IAMNoInlinePolicy",
                "aws-cdk-lib attaches the bucket-deployment copy grants as the role's default policy; its logging grant is managed.",
            ),
        )

        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=names.pipeline,
            pipeline_display_name=names.pipeline,
            pipeline_description="SageLab: preprocess -> train -> evaluate -> check metric -> register",
            role_arn=role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": Fn.sub(definition_body, variables)},
        )
        # Runs started right after a deploy must find their code and data already in place.
        self.pipeline.node.add_dependency(self.code_deployment)
        self.pipeline.node.add_dependency(self.dataset_deployment)
        self.pipeline.node.add_dependency(self.model_package_group)
        self.pipeline_name = names.pipeline

    def _copy_function_role(self, names: ResourceNames, key: kms.IKey, retention: logs.RetentionDays) -> tuple[iam.Role, logs.LogGroup]:
        """The role and log group of CDK's bucket-deployment function. Its default role would carry
        AWSLambdaBasicExecutionRole (logs on `*`: every classmate's log groups); this one writes
        to its own log group only, encrypted with the environment's key like every other group."""
        copy_logs = logs.LogGroup(self, "CopyFunctionLogs", retention=retention, encryption_key=key, removal_policy=RemovalPolicy.DESTROY)
        copy_role = iam.Role(
            self,
            "CopyFunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com", conditions={"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT_ID}}),
            description=f"SageLab {names.environment}: deploy-time copy of pipeline code and dataset",
        )
        iam.ManagedPolicy(
            self,
            "CopyFunctionLogging",
            roles=[copy_role],
            statements=[iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[copy_logs.log_group_arn])],
        )
        return copy_role, copy_logs
