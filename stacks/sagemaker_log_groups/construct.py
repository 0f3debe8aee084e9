"""SageMakerLogGroups: the CloudWatch log groups SageMaker writes to, created by us before
SageMaker creates them itself, so that they are encrypted with the environment's key and expire.

SageMaker names its groups: `/aws/sagemaker/Endpoints/<endpoint>` belongs to one endpoint (ours,
per environment); the job and notebook groups are one per account and region, shared by every
environment and every student there. Only one environment per account and region may own those
(`account_log_groups`), see docs/decisions/0008-sagemaker-log-groups.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

ACCOUNT_WIDE_LOG_GROUPS = (
    "/aws/sagemaker/ProcessingJobs",
    "/aws/sagemaker/TrainingJobs",
    "/aws/sagemaker/TransformJobs",
    "/aws/sagemaker/NotebookInstances",
)
ENDPOINTS_LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
RETENTION_BY_DAYS = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def endpoint_log_group_name(endpoint_name: str) -> str:
    return f"{ENDPOINTS_LOG_GROUP_PREFIX}{endpoint_name}"


def retention(days: int) -> logs.RetentionDays:
    if days not in RETENTION_BY_DAYS:
        raise ValueError(f"log retention must be one of {sorted(RETENTION_BY_DAYS)} days, got {days}")
    return RETENTION_BY_DAYS[days]


class SageMakerLogGroups(Construct):
    """One KMS-encrypted log group with a retention period per name.

    Props:
        log_group_names: the exact names SageMaker writes to.
        key: encrypts them (its policy must let CloudWatch Logs use it for these names).
        retention_days: how long events are kept (one of `RETENTION_BY_DAYS`).
        removal_policy: DESTROY when the key goes with the stack (a group whose key is deleted
            can no longer be written), or when a fixed name kept behind would block a redeploy.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_group_names: Sequence[str],
        key: kms.IKey,
        retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        if not log_group_names:
            raise ValueError("SageMakerLogGroups needs at least one log group name")
        self.log_groups = {
            name: logs.LogGroup(
                self,
                # The id never holds an environment's name: classroom stamping swaps names in the
                # template text, and a logical id must not change with them.
                "Endpoint" if name.startswith(ENDPOINTS_LOG_GROUP_PREFIX) else re.sub(r"[^A-Za-z0-9]", "", name.removeprefix("/aws/sagemaker/")),
                log_group_name=name,
                encryption_key=key,
                retention=retention(retention_days),
                removal_policy=removal_policy,
            )
            for name in log_group_names
        }


def allow_cloudwatch_logs(key: kms.IKey, sid: str, log_group_names: Sequence[str]) -> None:
    """Let CloudWatch Logs use `key` for these log groups only (IAM wildcards allowed in the names):
    the service names the group in the encryption context of every call it makes with the key."""
    stack = Stack.of(key)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": [
                        f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:{name}" for name in log_group_names
                    ]
                }
            },
        )
    )
