"""ReleaseStack and the wiring of a release into the app: it only composes the release's units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from aws_cdk import Environment, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from sagelab.config import EnvironmentConfig, SageLabConfig
from stacks.approval_deployer.parameters import MODEL_ALGORITHM_PARAMETER, MODEL_DESCRIPTION_PARAMETER, MODEL_PACKAGE_PARAMETER, MODEL_PROBLEM_TYPE_PARAMETER
from stacks.naming import ResourceArns
from stacks.platform_stack import PlatformStack, apply_tags
from stacks.release.construct import ReleasePipeline, StageTarget
from stacks.release.promotion import Promotion, promotions
from stacks.release.source import ReleaseSourceGrants
from stacks.release.target import PromotedModelReads, ReleaseTarget
from stacks.serving_stack import ServingStack, retention_name


class ReleaseStack(Stack):
    """`sagelab-<source>-release`, in the source environment's account and region."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: EnvironmentConfig,
        platform: PlatformStack,
        stages: Sequence[StageTarget],
        tags: Mapping[str, str],
        **kwargs: Any,
    ) -> None:
        names = ResourceArns.of(source.name)
        super().__init__(
            scope,
            construct_id,
            stack_name=names.release_stack,
            env=Environment(account=source.account, region=source.region),
            description=f"SageLab {source.name}: the release of approved versions to {', '.join(stage.name for stage in stages)}",
            **kwargs,
        )
        self.add_stack_dependency(platform)
        self.release = ReleasePipeline(
            self,
            "Release",
            source=source,
            stages=stages,
            # Named imports (not CDK's implicit ones), so each grant's acknowledgment can name them.
            artifacts_bucket=s3.Bucket.from_bucket_attributes(
                self,
                "SourceArtifacts",
                bucket_arn=platform.export_value(platform.buckets.artifacts_bucket.bucket_arn),
                bucket_name=platform.buckets.artifacts_bucket.bucket_name,
            ),
            source_key=kms.Key.from_key_arn(self, "SourceKey", platform.export_value(platform.buckets.key.key_arn)),
            retain=source.removal_policy == "retain",
            log_retention=logs.RetentionDays(retention_name(source.log_retention_days)),
        )
        apply_tags(self, tags)


def promotion_of(config: SageLabConfig, env: EnvironmentConfig) -> Promotion | None:
    return next((p for p in promotions(config.environments) if p.target.name == env.name), None)


def add_releases(app: Construct, config: SageLabConfig, built: Mapping[str, Sequence[Stack]], tags_of: Any) -> list[ReleaseStack]:
    """For every environment others promote from: its resource-policy grants, its release stack;
    for every promoting environment: its release role and its endpoint role's reads."""
    found = promotions(config.environments)
    release_stacks = []
    for source in config.environments:
        chain = [p for p in found if p.source.name == source.name]
        if not chain:
            continue
        order = {env.name: index for index, env in enumerate(_chain_order(config, source))}
        chain.sort(key=lambda p: order[p.target.name])
        platform = cast(PlatformStack, built[source.name][0])
        ReleaseSourceGrants(
            platform,
            "ReleaseGrants",
            names=platform.names,
            promotions=chain,
            model_package_group=platform.pipeline.model_package_group,
            artifacts_bucket=platform.buckets.artifacts_bucket,
            key=platform.buckets.key,
        )
        stages = []
        for promotion in chain:
            target_platform, target_serving = cast(PlatformStack, built[promotion.target.name][0]), cast(ServingStack, built[promotion.target.name][1])
            PromotedModelReads(target_platform, "PromotedModelReads", promotion=promotion, endpoint_role=target_platform.roles.endpoint_role)
            deployment_role = target_serving.deployer.cloudformation_role
            ReleaseTarget(
                target_serving,
                "Release",
                promotion=promotion,
                serving_stack_arn=target_serving.format_arn(
                    service="cloudformation", resource="stack", resource_name=f"{promotion.target_names.serving_stack}/*"
                ),
                deployment_role=deployment_role,
                api_key=target_serving.front_door.api_key,
            )
            stages.append(
                StageTarget(
                    promotion,
                    MODEL_PACKAGE_PARAMETER,
                    MODEL_ALGORITHM_PARAMETER,
                    MODEL_PROBLEM_TYPE_PARAMETER,
                    MODEL_DESCRIPTION_PARAMETER,
                    promotion.model_deployment_role_arn,
                )
            )
        release_stacks.append(
            ReleaseStack(app, ResourceArns.of(source.name).release_stack, source=source, platform=platform, stages=stages, tags=tags_of(source))
        )
    return release_stacks


def _chain_order(config: SageLabConfig, source: EnvironmentConfig) -> tuple[EnvironmentConfig, ...]:
    from sagelab.config import release_chain

    return release_chain(config.environments, source)
