"""ExecutionRoles: the notebook, pipeline and endpoint roles of one environment.

Each role gets one customer-managed policy written statement by statement (no AWS-managed
policies, no inline policies), scoped to this environment's buckets, key and SageMaker resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.data_buckets import DataBuckets
from stacks.nag import acknowledge_policy_wildcards
from stacks.naming import ResourceNames

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
# Job-creating actions whose requests carry `sagemaker:InstanceTypes`, for the allow-list.
INSTANCE_TYPED_ACTIONS = (
    "sagemaker:CreateProcessingJob",
    "sagemaker:CreateTrainingJob",
    "sagemaker:CreateHyperParameterTuningJob",
    "sagemaker:CreateTransformJob",
    "sagemaker:CreateEndpointConfig",
    "sagemaker:CreateNotebookInstance",
)


# Why each statement that needs a wildcard has one (keyed by statement-id prefix).
WILDCARD_REASONS = {
    "ReadData": "Object keys under this environment's own data bucket; datasets are added at run time.",
    "ReadWriteData": "Object keys under this environment's own data bucket; the notebook adds datasets at run time.",
    "ReadWriteArtifacts": "Object keys under this environment's own artifacts bucket; run outputs get per-execution keys.",
    "ReadArtifacts": "Object keys under this environment's own artifacts bucket (model artifacts, code, evaluation reports).",
    "WriteDataCapture": "Endpoint data capture and batch transform write generated keys below these two prefixes only.",
    "RunPipelineJobs": "SageMaker Pipelines names each job per execution (pipelines-<id>-<step>-...), so only the job-type ARN prefix is known at deploy time.",
    "ReadJobs": "Pipeline job names are generated per execution; read-only Describe on this account's jobs of three types.",
    "RegisterModels": "Model package versions (<group>/1, /2, ...) are created at run time inside this environment's own group.",
    "ReviewModels": "Approving a version needs its ARN, <group>/<version>, created at run time inside this environment's own group.",
    "FollowPipelineRuns": "Execution ARNs are created per run of this environment's one pipeline.",
    "WriteSageMakerLogs": "SageMaker creates one log stream per job or instance under /aws/sagemaker/<kind>/ with generated names.",
    "ReadJobLogs": "Job log streams under /aws/sagemaker/ProcessingJobs|TrainingJobs have names generated per job.",
    "EcrLogin": "ecr:GetAuthorizationToken supports no resource-level permission; image pulls are scoped to the framework repositories.",
    "PublishSageMakerMetrics": "cloudwatch:PutMetricData supports no resource-level permission; limited to SageMaker namespaces by condition.",
}


def _wildcard_reason(statement: dict[str, Any]) -> str:
    sid = statement.get("Sid", "")
    for prefix, reason in WILDCARD_REASONS.items():
        if sid.rstrip("0123456789").endswith(prefix) or sid.rstrip("0123456789") == prefix or sid.startswith(prefix):
            return reason
    raise ValueError(f"statement {sid!r} has a wildcard but no reason in WILDCARD_REASONS")


def _job_arn(kind: str) -> str:
    return ResourceNames.sagemaker_arn(f"{kind}/*")


def _log_group_arn(prefix: str) -> str:
    return f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{prefix}*"


class ExecutionRoles(Construct):
    """Least-privilege roles for SageMaker to assume on this environment's behalf.

    Props:
        names: the environment's resource names (roles are scoped to their ARNs).
        buckets: the environment's buckets and key.
        image_repository_arns: ECR repositories of the framework images the jobs and endpoint pull.
        existing_role_arn: use this role for all three instead of creating roles (accounts that
            forbid `iam:CreateRole`, e.g. lab sandboxes); it must already hold the permissions.
        allowed_instance_types: if set, every role is denied SageMaker jobs/endpoints/notebooks
            on any other instance type (a cost guardrail enforced by IAM, not by convention).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        buckets: DataBuckets,
        image_repository_arns: Sequence[str],
        existing_role_arn: str | None = None,
        allowed_instance_types: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        if not image_repository_arns:
            raise ValueError("image_repository_arns must name the framework images' repositories")
        self.names = names
        self.uses_existing_role = existing_role_arn is not None
        if existing_role_arn is not None:
            existing = iam.Role.from_role_arn(self, "ExistingRole", existing_role_arn, mutable=False)
            self.pipeline_role: iam.IRole = existing
            self.notebook_role: iam.IRole = existing
            self.endpoint_role: iam.IRole = existing
            self.pipeline_role_name = existing_role_arn.split(":role/", 1)[1]
            return

        data, artifacts, key = buckets.data_bucket, buckets.artifacts_bucket, buckets.key
        kms_use = iam.PolicyStatement(
            sid="UseEnvironmentKey",
            actions=[
                "kms:Decrypt",
                "kms:Encrypt",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
                "kms:DescribeKey",
            ],
            resources=[key.key_arn],
        )
        kms_grant = iam.PolicyStatement(
            sid="GrantKeyToSageMakerVolumes",
            actions=["kms:CreateGrant"],
            resources=[key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        )
        ecr_pull = [
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(
                sid="PullFrameworkImages",
                actions=["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                resources=list(image_repository_arns),
            ),
        ]
        metrics = iam.PolicyStatement(
            sid="PublishSageMakerMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*", "SageLab*"]}},
        )

        def logs_write(prefix: str) -> iam.PolicyStatement:
            return iam.PolicyStatement(
                sid="WriteSageMakerLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[_log_group_arn(prefix), f"{_log_group_arn(prefix)}:log-stream:*"],
            )

        def bucket_access(sid: str, bucket_arns: Sequence[str], write: bool, prefix: str = "*") -> list[iam.PolicyStatement]:
            object_actions = ["s3:GetObject", "s3:GetObjectVersion"] + (["s3:PutObject", "s3:AbortMultipartUpload"] if write else [])
            return [
                iam.PolicyStatement(sid=f"{sid}List", actions=["s3:ListBucket", "s3:GetBucketLocation"], resources=list(bucket_arns)),
                iam.PolicyStatement(sid=f"{sid}Objects", actions=object_actions, resources=[f"{arn}/{prefix}" for arn in bucket_arns]),
            ]

        # -- pipeline: runs the jobs and registers models ----------------------------------------
        self.pipeline_role = iam.Role(
            self, "PipelineRole", assumed_by=iam.ServicePrincipal(SAGEMAKER_PRINCIPAL), description=f"SageLab {names.prefix}: pipeline and its jobs"
        )
        pipeline_statements = [
            *bucket_access("ReadData", [data.bucket_arn], write=False),
            *bucket_access("ReadWriteArtifacts", [artifacts.bucket_arn], write=True),
            kms_use,
            kms_grant,
            *ecr_pull,
            metrics,
            logs_write("/aws/sagemaker/"),
            iam.PolicyStatement(
                sid="RunPipelineJobs",
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:CreateHyperParameterTuningJob",
                    "sagemaker:DescribeHyperParameterTuningJob",
                    "sagemaker:StopHyperParameterTuningJob",
                    "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                    "sagemaker:AddTags",
                ],
                resources=[_job_arn("processing-job"), _job_arn("training-job"), _job_arn("hyper-parameter-tuning-job")],
            ),
            iam.PolicyStatement(
                sid="RegisterModels",
                actions=["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup", "sagemaker:AddTags"],
                resources=[names.model_package_group_arn(), names.model_packages_arn()],
            ),
        ]
        self._managed_policy("PipelinePolicy", self.pipeline_role, pipeline_statements)
        # The pipeline hands its own role to the jobs it starts, and to nothing else.
        self._pass_self(self.pipeline_role, "PipelinePassSelf")

        # -- notebook: the student's seat -----------------------------------------------------------
        self.notebook_role = iam.Role(
            self, "NotebookRole", assumed_by=iam.ServicePrincipal(SAGEMAKER_PRINCIPAL), description=f"SageLab {names.prefix}: notebook instance"
        )
        notebook_statements = [
            *bucket_access("ReadWriteData", [data.bucket_arn], write=True),
            *bucket_access("ReadArtifacts", [artifacts.bucket_arn], write=False),
            kms_use,
            logs_write("/aws/sagemaker/NotebookInstances"),
            iam.PolicyStatement(
                sid="OperateThePipeline",
                actions=[
                    "sagemaker:StartPipelineExecution",
                    "sagemaker:DescribePipeline",
                    "sagemaker:ListPipelineExecutions",
                    "sagemaker:DescribePipelineDefinitionForExecution",
                ],
                resources=[names.pipeline_arn()],
            ),
            iam.PolicyStatement(
                sid="FollowPipelineRuns",
                actions=["sagemaker:DescribePipelineExecution", "sagemaker:ListPipelineExecutionSteps", "sagemaker:StopPipelineExecution"],
                resources=[f"{names.pipeline_arn()}/execution/*"],
            ),
            iam.PolicyStatement(
                sid="ReadJobs",
                actions=["sagemaker:DescribeProcessingJob", "sagemaker:DescribeTrainingJob", "sagemaker:DescribeHyperParameterTuningJob"],
                resources=[_job_arn("processing-job"), _job_arn("training-job"), _job_arn("hyper-parameter-tuning-job")],
            ),
            iam.PolicyStatement(
                sid="ReviewModels",
                actions=[
                    "sagemaker:ListModelPackages",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:UpdateModelPackage",
                ],
                resources=[names.model_package_group_arn(), names.model_packages_arn()],
            ),
            iam.PolicyStatement(sid="CallTheEndpoint", actions=["sagemaker:InvokeEndpoint"], resources=[names.endpoint_arn()]),
            iam.PolicyStatement(
                sid="StopWhenIdle", actions=["sagemaker:DescribeNotebookInstance", "sagemaker:StopNotebookInstance"], resources=[names.notebook_arn()]
            ),
            iam.PolicyStatement(
                sid="ReadJobLogs",
                actions=["logs:DescribeLogStreams", "logs:GetLogEvents", "logs:FilterLogEvents"],
                resources=[_log_group_arn("/aws/sagemaker/ProcessingJobs"), _log_group_arn("/aws/sagemaker/TrainingJobs")]
                + [f"{_log_group_arn(g)}:log-stream:*" for g in ("/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs")],
            ),
        ]
        self._managed_policy("NotebookPolicy", self.notebook_role, notebook_statements)

        # -- endpoint: the model's execution role ---------------------------------------------------
        self.endpoint_role = iam.Role(
            self, "EndpointRole", assumed_by=iam.ServicePrincipal(SAGEMAKER_PRINCIPAL), description=f"SageLab {names.prefix}: model and endpoint"
        )
        endpoint_statements = [
            *bucket_access("ReadArtifacts", [artifacts.bucket_arn], write=False),
            iam.PolicyStatement(
                sid="WriteDataCapture",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[f"{artifacts.bucket_arn}/data-capture/*", f"{artifacts.bucket_arn}/batch-predictions/*"],
            ),
            kms_use,
            kms_grant,
            *ecr_pull,
            metrics,
            logs_write("/aws/sagemaker/Endpoints"),
            logs_write("/aws/sagemaker/TransformJobs"),
        ]
        self._managed_policy("EndpointPolicy", self.endpoint_role, endpoint_statements)

        if allowed_instance_types:
            guard = iam.PolicyStatement(
                sid="OnlyAllowedInstanceTypes",
                effect=iam.Effect.DENY,
                actions=list(INSTANCE_TYPED_ACTIONS),
                resources=["*"],
                conditions={"ForAnyValue:StringNotLike": {"sagemaker:InstanceTypes": list(allowed_instance_types)}},
            )
            iam.ManagedPolicy(self, "AllowedInstanceTypes", statements=[guard], roles=[self.pipeline_role, self.notebook_role, self.endpoint_role])

        self.pipeline_role_name = self.pipeline_role.role_name

    def _managed_policy(self, construct_id: str, role: iam.Role, statements: list[iam.PolicyStatement]) -> iam.ManagedPolicy:
        # Statement ids must be unique within a policy; repeated helpers reuse sids, so number them.
        seen: dict[str, int] = {}
        unique = []
        for statement in statements:
            sid = statement.sid or "Statement"
            seen[sid] = seen.get(sid, 0) + 1
            if seen[sid] > 1:
                statement = iam.PolicyStatement.from_json({**statement.to_statement_json(), "Sid": f"{sid}{seen[sid]}"})
            unique.append(statement)
        policy = iam.ManagedPolicy(self, construct_id, statements=unique, roles=[role])
        acknowledge_policy_wildcards(policy.node.default_child, _wildcard_reason)  # type: ignore[arg-type]
        return policy

    def _pass_self(self, role: iam.Role, construct_id: str) -> None:
        iam.ManagedPolicy(
            self,
            construct_id,
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=[role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER_PRINCIPAL}},
                )
            ],
        )
