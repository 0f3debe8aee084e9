"""DriftCheck: the scheduled drift check of the front door's capture (decision 0013).

    EventBridge schedule (every `interval_hours`) -> Lambda (handler.py: comparison.py over the
    capture of the last interval) -> report.json + drift.png under data-capture/reports/, metrics in
    SageLab/DriftCheck -> alarms (any violation; drift above the threshold) -> the environment's topic

The unit is this folder: the construct, and in runtime/ the Lambda's code and the comparison
`sagelab monitor` runs. Its package is runtime/ as `monitor/` beside the front door's
`front_door/capture.py`, the capture format it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from pipeline_steps.contract import (
    CONSTRAINTS_FILE_NAME,
    ENV_DESCRIPTION_URI,
    EVALUATION_FILE_NAME,
    EVALUATIONS_PREFIX,
    PREDICTION_STATISTICS_FILE_NAME,
    STATISTICS_FILE_NAME,
)
from sagelab.naming import ResourceNames
from stacks.app.nag import acknowledge, acknowledge_policy_wildcards
from stacks.data_buckets.construct import key_use_through_s3
from stacks.front_door.runtime import capture
from stacks.front_door.runtime.capture import FRONT_DOOR_CAPTURE, GROUND_TRUTH, REPORTS
from stacks.lambda_runtime import CONTRACT_MODULE, LAMBDA_RUNTIME, contract_file, staged_package
from stacks.serving_monitoring.construct import alarm_to_topic

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
METRIC_NAMESPACE = "SageLab/DriftCheck"
# Where evaluate.py writes a version's baseline (beside model_description.json: decision 0011's folder).
BASELINE_KEYS = tuple(
    f"{EVALUATIONS_PREFIX}/*/{name}" for name in (STATISTICS_FILE_NAME, CONSTRAINTS_FILE_NAME, PREDICTION_STATISTICS_FILE_NAME, EVALUATION_FILE_NAME)
)
MEMORY_MB = 512  # pure Python over an hour of capture; 512 MB buys the CPU share that keeps a run to seconds
TIMEOUT = Duration.minutes(5)


def package() -> Path:
    """The function's code: this unit's runtime/ as the `monitor` package (the handler is
    `monitor.handler`), the front door's capture module as `front_door/capture.py`, and the
    contract module at the root (docs/decisions/0018)."""
    files = {f"monitor/{path.name}": path for path in sorted(RUNTIME_DIR.glob("*.py"))}
    return staged_package("drift-check", {**files, "front_door/capture.py": Path(capture.__file__), CONTRACT_MODULE: contract_file()})


class DriftCheckSettings(Protocol):
    """The config's serving section has these."""

    @property
    def drift_check_interval_hours(self) -> int: ...

    @property
    def drift_threshold(self) -> float: ...


class DriftCheck(Construct):
    """The scheduled check, its alarms and their metrics.

    Props:
        names: the endpoint whose capture is checked (metric dimension, alarm names).
        settings: interval (hours, also the window checked) and PSI threshold.
        artifacts_bucket: capture, baselines and reports live in it; the function reads the front
            door's capture, ground truth and baselines, and writes reports only.
        key: the environment key (the bucket's SSE-KMS; the log group).
        topic: alarms notify it.
        description_uri: the served version's model description URI (a parameter the approval
            deployer sets): its folder holds the version's baseline.
        log_retention: the function's log group.

    Exposes `function`, `rule`, `alarms` and `metrics` (for the dashboard).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        settings: DriftCheckSettings,
        artifacts_bucket: s3.IBucket,
        key: kms.IKey,
        topic: sns.ITopic,
        description_uri: str,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        interval = Duration.hours(settings.drift_check_interval_hours)
        log_group = logs.LogGroup(self, "Logs", retention=log_retention, encryption_key=key, removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"SageLab {names.environment}: drift check")
        self._policy(artifacts_bucket, key, log_group)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=LAMBDA_RUNTIME,
            handler="monitor.handler.lambda_handler",
            code=lambda_.Code.from_asset(str(package())),
            role=self.role,
            memory_size=MEMORY_MB,
            timeout=TIMEOUT,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
                "ENDPOINT_NAME": names.endpoint,
                ENV_DESCRIPTION_URI: description_uri,
                "DRIFT_THRESHOLD": str(settings.drift_threshold),
                "WINDOW_HOURS": str(settings.drift_check_interval_hours),
                "METRIC_NAMESPACE": METRIC_NAMESPACE,
            },
            description=f"SageLab {names.environment}: compares captured requests with the served version's baseline",
        )
        self.rule = events.Rule(
            self,
            "Schedule",
            schedule=events.Schedule.rate(interval),
            description=f"SageLab {names.environment}: drift check every {settings.drift_check_interval_hours} h",
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
        acknowledge(
            self.rule,
            (
                "Serverless-EventBusDLQ",
                "A missed scheduled run needs no replay: the next run checks the next window, and an unavailable check shows as missing data.",
            ),
        )
        self.metrics = self._metrics(names, interval)
        self.alarms = self._alarms(names, settings, topic)
        self._acknowledge()

    def _policy(self, bucket: s3.IBucket, key: kms.IKey, log_group: logs.ILogGroup) -> None:
        readable = [bucket.arn_for_objects(f"{FRONT_DOOR_CAPTURE}*"), bucket.arn_for_objects(f"{GROUND_TRUTH}*")]
        readable += [bucket.arn_for_objects(pattern) for pattern in BASELINE_KEYS]
        reports = bucket.arn_for_objects(f"{REPORTS}*")
        policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="ListCaptureAndGroundTruth",
                    actions=["s3:ListBucket"],
                    resources=[bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{FRONT_DOOR_CAPTURE}*", f"{GROUND_TRUTH}*"]}},
                ),
                iam.PolicyStatement(sid="ReadCaptureGroundTruthAndBaselines", actions=["s3:GetObject"], resources=readable),
                iam.PolicyStatement(sid="WriteReports", actions=["s3:PutObject"], resources=[reports]),
                key_use_through_s3("DecryptWhatItReads", ["kms:Decrypt"], key, bucket, readable),
                key_use_through_s3("EncryptReports", ["kms:GenerateDataKey"], key, bucket, [reports]),
                iam.PolicyStatement(
                    sid="PublishDriftMetrics",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}},
                ),
                iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]),
            ],
        )
        acknowledge_policy_wildcards(
            policy.node.default_child,  # type: ignore[arg-type]
            lambda statement: (
                "PutMetricData has no resource-level permission; the cloudwatch:namespace condition limits it to the drift check's namespace."
                if statement.get("Sid") == "PublishDriftMetrics"
                else "Captured requests, reports and baselines are named per request, per run and per pipeline execution at run time; "
                "each pattern is one prefix (or one file name below models/evaluations/)."
            ),
        )

    def _metrics(self, names: ResourceNames, period: Duration) -> dict[str, cloudwatch.Metric]:
        def metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRIC_NAMESPACE, metric_name=name, dimensions_map={"Endpoint": names.endpoint}, statistic=statistic, period=period
            )

        return {
            "Violations": metric("Violations", "Maximum"),
            "MaxDrift": metric("MaxDrift", "Maximum"),
            "PredictionDrift": metric("PredictionDrift", "Maximum"),
            "CapturedRows": metric("CapturedRows", "Sum"),
            "LiveAccuracy": metric("LiveAccuracy", "Average"),
            "LiveRmse": metric("LiveRmse", "Average"),
        }

    def _alarms(self, names: ResourceNames, settings: DriftCheckSettings, topic: sns.ITopic) -> dict[str, cloudwatch.Alarm]:
        specs = (
            ("DriftViolations", self.metrics["Violations"], 1, "The drift check found violations (report under data-capture/reports/)"),
            (
                "FeatureDrift",
                self.metrics["MaxDrift"],
                settings.drift_threshold,
                f"A feature drifted from the training data (PSI >= {settings.drift_threshold})",
            ),
        )
        return {
            alarm_id: alarm_to_topic(self, alarm_id, metric=metric, threshold=threshold, description=description, names=names, topic=topic)
            for alarm_id, metric, threshold, description in specs
        }

    def _acknowledge(self) -> None:
        scheduled = "EventBridge invokes the check asynchronously on a schedule; a failed run is in its log and the next run checks again."
        acknowledge(
            self.function,
            ("Serverless-LambdaDLQ", scheduled),
            ("NIST.800.53.R5-LambdaDLQ", scheduled),
            ("NIST.800.53.R5-LambdaInsideVPC", "The function only calls S3 and CloudWatch APIs; a VPC would add NAT or endpoints and no protection."),
            ("NIST.800.53.R5-LambdaConcurrency", "One scheduled invocation per interval; there is no caller that could flood it."),
            ("AwsSolutions-L1", f"{LAMBDA_RUNTIME.name} is the runtime every SageLab function uses (stacks/lambda_runtime.py)."),
            ("Serverless-LambdaLatestVersion", f"{LAMBDA_RUNTIME.name} is the runtime every SageLab function uses (stacks/lambda_runtime.py)."),
            ("Serverless-LambdaTracing", "A scheduled batch job with two S3 reads per object; its log line per run says what it did."),
        )
