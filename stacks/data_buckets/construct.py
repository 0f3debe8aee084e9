"""DataBuckets: the environment's KMS key and its data, artifacts and access-log buckets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from pipeline_steps import contract
from sagelab.bucket_layout import DATA_CAPTURE_PREFIX
from stacks.app.nag import acknowledge
from stacks.naming import REGION
from stacks.sagemaker_log_groups.construct import allow_cloudwatch_logs

# Prefixes whose objects are scratch by contract (pipeline run intermediates, notebook scratch);
# everything else in the buckets is kept until someone deletes it.
SCRATCH_PREFIXES = ("scratch/", f"{contract.PIPELINE_RUNS_PREFIX}/")
NONCURRENT_VERSION_DAYS = 90


def key_use_through_s3(sid: str, actions: list[str], key: kms.IKey, bucket: s3.IBucket, objects: list[str]) -> iam.PolicyStatement:
    """The bucket key's use on behalf of S3 (the buckets are SSE-KMS with a bucket key), for `objects`
    of `bucket` only: the encryption context names the bucket or the object."""
    return iam.PolicyStatement(
        sid=sid,
        actions=actions,
        resources=[key.key_arn],
        conditions={
            "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket.bucket_arn, *objects]},
        },
    )


class DataBuckets(Construct):
    """A customer-managed KMS key (rotated yearly) and three buckets.

    - `data_bucket`: input datasets (KMS, versioned, access-logged).
    - `artifacts_bucket`: pipeline code, run outputs, models, data capture (KMS, versioned, logged).
    - `logs_bucket`: S3 server access logs of the other two (SSE-S3: S3 log delivery cannot use
      a customer-managed key). Always RETAINED, even when the environment opted into DESTROY:
      the record of who read and wrote the data must outlive the data (it expires on its own).

    Props:
        key_alias: the key's alias (`alias/sagelab-<id>--key`); buckets get generated names so
            that a retained bucket never blocks a redeploy.
        environment: the environment's id (descriptions).
        retain: RETAIN (default, versioned data is never lost by a stack delete) or DESTROY with
            auto-delete of objects, for throwaway environments that opted in.
        scratch_expiry_days: objects under `SCRATCH_PREFIXES` expire after this many days.
        log_retention_days: access logs expire after this many days.
        data_capture_expiry_days: captured requests/responses (`DATA_CAPTURE_PREFIX` in the
            artifacts bucket) expire after this many days.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key_alias: str,
        environment: str,
        retain: bool = True,
        scratch_expiry_days: int = 14,
        log_retention_days: int = 30,
        data_capture_expiry_days: int = 30,
    ) -> None:
        super().__init__(scope, construct_id)
        for name, days in (("scratch_expiry_days", scratch_expiry_days), ("data_capture_expiry_days", data_capture_expiry_days)):
            if days < 1:
                raise ValueError(f"{name} must be at least 1, got {days}")
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY

        self.key = kms.Key(
            self,
            "Key",
            alias=key_alias,
            description=f"SageLab {environment}: buckets, SageMaker volumes and outputs",
            enable_key_rotation=True,
            removal_policy=removal,
        )

        common: dict[str, Any] = {
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "enforce_ssl": True,
            "minimum_tls_version": 1.2,
            "versioned": True,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            "removal_policy": removal,
            "auto_delete_objects": not retain,
        }
        self.logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(log_retention_days), noncurrent_version_expiration=Duration.days(1)),
                s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
            **{**common, "removal_policy": RemovalPolicy.RETAIN, "auto_delete_objects": False},
        )
        acknowledge(
            self.logs_bucket,
            ("AwsSolutions-S1", "This is the access-log destination; logging it to itself would recurse."),
            ("NIST.800.53.R5-S3BucketLoggingEnabled", "This is the access-log destination; logging it to itself would recurse."),
            ("NIST.800.53.R5-S3DefaultEncryptionKMS", "S3 server access log delivery only writes to SSE-S3 buckets, not SSE-KMS."),
            ("NIST.800.53.R5-S3BucketReplicationEnabled", "Access logs expire after the retention period; replicating them adds cost without recovery value."),
        )

        def lifecycle(purpose: str) -> list[s3.LifecycleRule]:
            expiring = dict.fromkeys(SCRATCH_PREFIXES, scratch_expiry_days)
            if purpose == "artifacts":
                expiring[DATA_CAPTURE_PREFIX] = data_capture_expiry_days
            rules = [
                s3.LifecycleRule(
                    id=f"expire-{prefix.rstrip('/')}",
                    prefix=prefix,
                    expiration=Duration.days(days),
                    noncurrent_version_expiration=Duration.days(1),
                )
                for prefix, days in expiring.items()
            ]
            rules.append(s3.LifecycleRule(id=f"noncurrent-{purpose}", noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS)))
            rules.append(s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)))
            return rules

        def data_bucket(construct_name: str, purpose: str) -> s3.Bucket:
            bucket = s3.Bucket(
                self,
                construct_name,
                encryption=s3.BucketEncryption.KMS,
                encryption_key=self.key,
                bucket_key_enabled=True,
                server_access_logs_bucket=self.logs_bucket,
                server_access_logs_prefix=f"{purpose}/",
                lifecycle_rules=lifecycle(purpose),
                **common,
            )
            acknowledge(
                bucket,
                (
                    "NIST.800.53.R5-S3BucketReplicationEnabled",
                    "Versioning plus RETAIN protect against deletion; cross-region replication is a per-organisation DR choice outside the lab.",
                ),
            )
            return bucket

        self.data_bucket = data_bucket("Data", "data")
        self.artifacts_bucket = data_bucket("Artifacts", "artifacts")

    def allow_cloudwatch(self, log_group_patterns: Sequence[str]) -> None:
        """Let CloudWatch Logs (the environment's log groups, by name) and CloudWatch alarms (its
        encrypted alarm topic) use the key. Service principals only: no reference back to the
        serving stack. CloudWatch Logs names the group in the encryption context of every call."""
        allow_cloudwatch_logs(self.key, "CloudWatchLogsOfThisEnvironment", log_group_patterns)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsToEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
