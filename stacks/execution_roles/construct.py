"""ExecutionRoles: the notebook, pipeline and endpoint roles of one environment.

Each role gets one customer-managed policy written statement by statement (no AWS-managed
policies, no inline policies), scoped to this environment's buckets, key and SageMaker resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_iam as iam
from constructs import Construct

from pipeline_steps import contract
from sagelab.bucket_layout import DATA_CAPTURE_PREFIX
from sagelab.pipeline_definition import PIPELINE_CODE_PREFIX
from stacks.app.nag import acknowledge_policy_wildcards
from stacks.data_buckets.construct import DataBuckets
from stacks.model_approval.construct import REVIEW_MODEL_ACTIONS
from stacks.naming import ACCOUNT_ID, PARTITION, REGION, ResourceArns

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
# Where the pipeline's jobs write in the artifacts bucket (sagelab/pipeline_definition.py: run
# outputs under pipeline-runs/<execution id>/, model artifacts under models/).
RUN_OUTPUT_PREFIXES = (contract.PIPELINE_RUNS_PREFIX, contract.MODELS_PREFIX)
# What the jobs read in the artifacts bucket: the step scripts, earlier steps' outputs and models.
# Nothing else, so that no run input (InputDataUri is a free string) reaches captured requests.
PIPELINE_ARTIFACT_READ_PREFIXES = (PIPELINE_CODE_PREFIX, *RUN_OUTPUT_PREFIXES)
# The read actions that return an object's content (CopyObject's source read is s3:GetObject too).
OBJECT_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
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
    "RunAutopilot": "AutoML jobs get a per-run suffix after this environment's job-name prefix; the ARN pattern is that prefix.",
    "ReadAutopilotLeaderboard": "sagemaker:ListCandidatesForAutoMLJob supports no resource type or condition key; it returns candidates' jobs, containers and metrics, no object.",
    "ScoreWithCandidates": "The Autopilot best-candidate model gets a per-run suffix after this environment's autopilot-model prefix.",
    "RunTransformJobs": "Batch transform jobs get a per-run suffix after this environment's job-name prefix.",
    "WriteRunOutputs": "Run outputs and models get per-execution keys, under pipeline-runs/ and models/ of this environment's own artifacts bucket only.",
    "ReadArtifacts": "Object keys under this environment's own artifacts bucket (model artifacts, code, evaluation reports).",
    "ReadRunArtifacts": "Object keys under pipeline-code/, pipeline-runs/ and models/ of this environment's own artifacts bucket (code, step outputs, models).",
    "WriteDataCapture": "Endpoint data capture and batch transform write generated keys below these two prefixes only.",
    "RunPipelineJobs": "SageMaker extends this environment's job-name prefix (sagelab-<id>--<step>) per run; the ARNs are scoped to sagelab-<id>--* (docs/decisions/0010, 0012).",
    "ReadJobs": "Read-only Describe on the jobs whose names start with this environment's job-name prefix (docs/decisions/0010).",
    "RegisterModels": "Model package versions (<group>/1, /2, ...) are created at run time inside this environment's own group.",
    "ReviewModels": "Approving a version needs its ARN, <group>/<version>, created at run time inside this environment's own group.",
    "FollowPipelineRuns": "Execution ARNs are created per run of this environment's one pipeline.",
    "WriteSageMakerLogs": "SageMaker names each log stream <job or resource name>/<instance>; streams are scoped to this environment's name prefix.",
    "ListJobLogStreams": "DescribeLogStreams is authorized on the log group (SageMaker's shared job log groups); it lists stream names, never events.",
    "ReadJobLogs": "Job log streams are named <job name>/algo-<n>-<time>; scoped to this environment's job-name prefix.",
    "EcrLogin": "ecr:GetAuthorizationToken supports no resource-level permission; image pulls are scoped to the framework repositories.",
    "PublishSageMakerMetrics": "cloudwatch:PutMetricData supports no resource-level permission; limited to SageMaker namespaces by condition.",
}


def _wildcard_reason(statement: dict[str, Any]) -> str:
    sid = statement.get("Sid", "")
    for prefix, reason in WILDCARD_REASONS.items():
        if sid.rstrip("0123456789").endswith(prefix) or sid.rstrip("0123456789") == prefix or sid.startswith(prefix):
            return reason
    raise ValueError(f"statement {sid!r} has a wildcard but no reason in WILDCARD_REASONS")


# SageMaker's own log groups, shared by every environment in an account and region; each job or
# resource writes streams named after itself (`<job name>/algo-1-...`, `<notebook>/jupyter.log`).
PROCESSING_LOGS = "/aws/sagemaker/ProcessingJobs"
TRAINING_LOGS = "/aws/sagemaker/TrainingJobs"
TRANSFORM_LOGS = "/aws/sagemaker/TransformJobs"
NOTEBOOK_LOGS = "/aws/sagemaker/NotebookInstances"
# Log actions authorized on the log group (they reveal stream names at most, never events) vs on
# one log stream (they read or write events). CloudWatch Logs' FilterLogEvents reads the events
# of every stream in a group, so no role of ours gets it on a shared group.
GROUP_LOG_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams"]
STREAM_WRITE_ACTIONS = ["logs:PutLogEvents"]


def _job_arn(resource_type: str, names: ResourceArns) -> str:
    """This environment's jobs of one ARN resource type (processing-job, ...): SageMaker lowercases job names in ARNs, ours are lowercase."""
    return ResourceArns.sagemaker_arn(f"{resource_type}/{names.pattern()}")


def _log_group_arn(group: str) -> str:
    return f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT_ID}:log-group:{group}"


def _log_stream_arn(group: str, stream_prefix: str) -> str:
    return f"{_log_group_arn(group)}:log-stream:{stream_prefix}*"


def logs_write(sid: str, streams: Sequence[tuple[str, str]]) -> list[iam.PolicyStatement]:
    """Write the log streams that start with each (group, stream prefix), creating group and stream."""
    groups = sorted({group for group, _ in streams})
    return [
        iam.PolicyStatement(
            sid=f"{sid}Groups", actions=GROUP_LOG_ACTIONS, resources=[_log_group_arn(g) for g in groups] + [f"{_log_group_arn(g)}:*" for g in groups]
        ),
        iam.PolicyStatement(sid=f"{sid}Streams", actions=STREAM_WRITE_ACTIONS, resources=[_log_stream_arn(g, prefix) for g, prefix in streams]),
    ]


def sagemaker_trust(*, with_source_arn: bool) -> iam.IPrincipal:
    """SageMaker as principal, on behalf of this account only (confused-deputy guard).

    SageMaker sets aws:SourceArn/aws:SourceAccount when Pipelines, processing, training and
    inference assume a role (its confused-deputy guide); the ARN pattern is SageMaker resources of
    this account and region, as that guide shows. Notebook instances are not among the documented
    features, so the notebook role checks the account only if SageMaker sends it. Students cannot
    use each other's roles regardless: each can pass only its own (iam:PassRole)."""
    if not with_source_arn:
        return iam.ServicePrincipal(SAGEMAKER_PRINCIPAL, conditions={"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT_ID}})
    return iam.ServicePrincipal(
        SAGEMAKER_PRINCIPAL,
        conditions={"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}, "ArnLike": {"aws:SourceArn": ResourceArns.sagemaker_arn("*")}},
    )


def _job_arns(names: ResourceArns) -> list[str]:
    return [_job_arn(resource_type, names) for resource_type in ("processing-job", "training-job", "hyper-parameter-tuning-job")]


def bucket_access(sid: str, bucket_arns: Sequence[str], write: bool, prefixes: Sequence[str] = ("",)) -> list[iam.PolicyStatement]:
    """List the buckets; read (and write) the objects under each key prefix (default: all)."""
    object_actions = [*OBJECT_READ_ACTIONS] + (["s3:PutObject", "s3:AbortMultipartUpload"] if write else [])
    return [
        iam.PolicyStatement(sid=f"{sid}List", actions=["s3:ListBucket", "s3:GetBucketLocation"], resources=list(bucket_arns)),
        iam.PolicyStatement(sid=f"{sid}Objects", actions=object_actions, resources=[f"{arn}/{prefix}*" for arn in bucket_arns for prefix in prefixes]),
    ]


def no_captured_requests(bucket_arn: str) -> iam.PolicyStatement:
    """An explicit Deny of reading captured requests: it holds whatever another statement (or a
    future bucket policy) allows, for every role a student can make act (tests/test_reach.py)."""
    return iam.PolicyStatement(
        sid="NoCapturedRequests", effect=iam.Effect.DENY, actions=list(OBJECT_READ_ACTIONS), resources=[f"{bucket_arn}/{DATA_CAPTURE_PREFIX}*"]
    )


@dataclass(frozen=True)
class _CommonStatements:
    """Statements more than one role carries: the environment key, the framework images, metrics."""

    kms_use: iam.PolicyStatement
    kms_grant: iam.PolicyStatement
    ecr_pull: list[iam.PolicyStatement]
    metrics: iam.PolicyStatement

    @classmethod
    def of(cls, buckets: DataBuckets, image_repository_arns: Sequence[str]) -> _CommonStatements:
        key = buckets.key
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
        return cls(kms_use=kms_use, kms_grant=kms_grant, ecr_pull=ecr_pull, metrics=metrics)


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
        names: ResourceArns,
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

        common = _CommonStatements.of(buckets, image_repository_arns)
        self.pipeline_role = self._pipeline_role(names, buckets, common)
        self.notebook_role = self._notebook_role(names, buckets, common)
        self.endpoint_role = self._endpoint_role(names, buckets, common)
        if allowed_instance_types:
            self._only_allowed_instance_types(allowed_instance_types)
        self.pipeline_role_name = self.pipeline_role.role_name

    def _pipeline_role(self, names: ResourceArns, buckets: DataBuckets, common: _CommonStatements) -> iam.Role:
        """Runs the jobs and registers models."""
        data, artifacts = buckets.data_bucket, buckets.artifacts_bucket
        job_arns = _job_arns(names)
        role = iam.Role(
            self,
            "PipelineRole",
            assumed_by=sagemaker_trust(with_source_arn=True),
            description=f"SageLab {names.environment}: pipeline and its jobs",
        )
        pipeline_statements = [
            *bucket_access("ReadData", [data.bucket_arn], write=False),
            *bucket_access("ReadRunArtifacts", [artifacts.bucket_arn], write=False, prefixes=[f"{p}/" for p in PIPELINE_ARTIFACT_READ_PREFIXES]),
            # InputDataUri is any string a student passes: the jobs must not read captured requests.
            no_captured_requests(artifacts.bucket_arn),
            # Jobs write run outputs and models only: the published step scripts, the lab and the
            # idle-stop script that the notebook copies stay out of the jobs' reach (finding 6).
            iam.PolicyStatement(
                sid="WriteRunOutputs",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[f"{artifacts.bucket_arn}/{prefix}/*" for prefix in RUN_OUTPUT_PREFIXES],
            ),
            common.kms_use,
            common.kms_grant,
            *common.ecr_pull,
            common.metrics,
            *logs_write("WriteSageMakerLogs", [(PROCESSING_LOGS, names.scope), (TRAINING_LOGS, names.scope), (TRANSFORM_LOGS, names.scope)]),
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
                resources=job_arns,
            ),
            # The Autopilot chain (decision 0011): the AutoML job and the jobs it starts, whose
            # names extend the AutoML job's; the best candidate as a model named with our prefix,
            # and the batch transform that scores the test split; Evaluate reads the leaderboard.
            iam.PolicyStatement(
                sid="RunAutopilot",
                actions=[
                    "sagemaker:CreateAutoMLJob",
                    "sagemaker:DescribeAutoMLJob",
                    "sagemaker:StopAutoMLJob",
                    "sagemaker:AddTags",
                ],
                resources=[_job_arn("automl-job", names)],
            ),
            iam.PolicyStatement(sid="ReadAutopilotLeaderboard", actions=["sagemaker:ListCandidatesForAutoMLJob"], resources=["*"]),
            iam.PolicyStatement(
                sid="ScoreWithCandidates",
                actions=["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel", "sagemaker:AddTags"],
                resources=[ResourceArns.sagemaker_arn(f"model/{names.pattern('autopilot-model')}")],
            ),
            iam.PolicyStatement(
                sid="RunTransformJobs",
                actions=["sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob", "sagemaker:StopTransformJob", "sagemaker:AddTags"],
                resources=[_job_arn("transform-job", names)],
            ),
            iam.PolicyStatement(
                sid="RegisterModels",
                actions=["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup", "sagemaker:AddTags"],
                resources=[names.model_package_group_arn(), names.model_packages_arn()],
            ),
        ]
        self._managed_policy("PipelinePolicy", role, pipeline_statements)
        # The pipeline hands its own role to the jobs it starts, and to nothing else.
        self._pass_self(role, "PipelinePassSelf")

        return role

    def _notebook_role(self, names: ResourceArns, buckets: DataBuckets, common: _CommonStatements) -> iam.Role:
        """The student's seat."""
        data, artifacts = buckets.data_bucket, buckets.artifacts_bucket
        job_arns = _job_arns(names)
        role = iam.Role(self, "NotebookRole", assumed_by=sagemaker_trust(with_source_arn=False), description=f"SageLab {names.environment}: notebook instance")
        notebook_statements = [
            *bucket_access("ReadWriteData", [data.bucket_arn], write=True),
            *bucket_access("ReadArtifacts", [artifacts.bucket_arn], write=False),
            # The endpoint captures API clients' requests and responses: other people's data,
            # not the student's to read from the notebook (finding 8).
            no_captured_requests(artifacts.bucket_arn),
            common.kms_use,
            *logs_write("WriteSageMakerLogs", [(NOTEBOOK_LOGS, f"{names.notebook}/")]),
            iam.PolicyStatement(
                sid="OperateThePipeline",
                actions=[
                    "sagemaker:StartPipelineExecution",
                    "sagemaker:DescribePipeline",
                    "sagemaker:ListPipelineExecutions",
                ],
                resources=[names.pipeline_arn()],
            ),
            iam.PolicyStatement(
                sid="FollowPipelineRuns",
                # DescribePipelineDefinitionForExecution is authorized on the execution, not the pipeline (parliament).
                actions=[
                    "sagemaker:DescribePipelineExecution",
                    "sagemaker:DescribePipelineDefinitionForExecution",
                    "sagemaker:ListPipelineExecutionSteps",
                    "sagemaker:StopPipelineExecution",
                ],
                resources=[f"{names.pipeline_arn()}/execution/*"],
            ),
            iam.PolicyStatement(
                sid="ReadJobs",
                actions=["sagemaker:DescribeProcessingJob", "sagemaker:DescribeTrainingJob", "sagemaker:DescribeHyperParameterTuningJob"],
                resources=job_arns,
            ),
            iam.PolicyStatement(
                sid="ReviewModels",
                actions=list(REVIEW_MODEL_ACTIONS),
                resources=[names.model_package_group_arn(), names.model_packages_arn()],
            ),
            iam.PolicyStatement(sid="CallTheEndpoint", actions=["sagemaker:InvokeEndpoint"], resources=[names.endpoint_arn()]),
            iam.PolicyStatement(
                sid="StopWhenIdle", actions=["sagemaker:DescribeNotebookInstance", "sagemaker:StopNotebookInstance"], resources=[names.notebook_arn()]
            ),
            # Stream names to find a job's streams; events only of this environment's jobs.
            iam.PolicyStatement(
                sid="ListJobLogStreams",
                actions=["logs:DescribeLogStreams"],
                resources=[_log_group_arn(PROCESSING_LOGS), _log_group_arn(TRAINING_LOGS)]
                + [f"{_log_group_arn(g)}:*" for g in (PROCESSING_LOGS, TRAINING_LOGS)],
            ),
            iam.PolicyStatement(
                sid="ReadJobLogs",
                actions=["logs:GetLogEvents"],
                resources=[_log_stream_arn(PROCESSING_LOGS, names.scope), _log_stream_arn(TRAINING_LOGS, names.scope)],
            ),
        ]
        self._managed_policy("NotebookPolicy", role, notebook_statements)

        return role

    def _endpoint_role(self, names: ResourceArns, buckets: DataBuckets, common: _CommonStatements) -> iam.Role:
        """The model's execution role (endpoint and batch transform)."""
        artifacts = buckets.artifacts_bucket
        role = iam.Role(
            self,
            "EndpointRole",
            assumed_by=sagemaker_trust(with_source_arn=True),
            description=f"SageLab {names.environment}: model and endpoint",
        )
        endpoint_statements = [
            *bucket_access("ReadArtifacts", [artifacts.bucket_arn], write=False),
            iam.PolicyStatement(
                sid="WriteDataCapture",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[f"{artifacts.bucket_arn}/{DATA_CAPTURE_PREFIX}*", f"{artifacts.bucket_arn}/batch-predictions/*"],
            ),
            # It writes captured requests and never reads them back: a student's approval deploys
            # a model (and its container) that runs with this role.
            no_captured_requests(artifacts.bucket_arn),
            common.kms_use,
            common.kms_grant,
            *common.ecr_pull,
            common.metrics,
            # An endpoint logs to a group of its own, /aws/sagemaker/Endpoints/<endpoint name>.
            *logs_write("WriteSageMakerLogs", [(f"/aws/sagemaker/Endpoints/{names.endpoint}", ""), (TRANSFORM_LOGS, names.scope)]),
        ]
        self._managed_policy("EndpointPolicy", role, endpoint_statements)

        return role

    def _only_allowed_instance_types(self, allowed_instance_types: Sequence[str]) -> None:
        """Every role is denied SageMaker jobs, endpoints and notebooks on other instance types."""
        guard = iam.PolicyStatement(
            sid="OnlyAllowedInstanceTypes",
            effect=iam.Effect.DENY,
            actions=list(INSTANCE_TYPED_ACTIONS),
            resources=["*"],
            conditions={"ForAnyValue:StringNotLike": {"sagemaker:InstanceTypes": list(allowed_instance_types)}},
        )
        iam.ManagedPolicy(self, "AllowedInstanceTypes", statements=[guard], roles=[self.pipeline_role, self.notebook_role, self.endpoint_role])

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
