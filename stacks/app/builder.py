"""Builds the whole CDK app from the config: shared artifacts once, then one stage per environment.

`app.py` calls `build_app()`; tests call it with `cdk.json`'s real context and a temporary outdir.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import App, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from sagelab.code_bundle import stage_code_bundle
from sagelab.config import ConfigError, EnvironmentConfig, SageLabConfig, check_environment, load_config
from sagelab.datasets import DIGITS_CSV
from sagelab.naming import PROJECT
from sagelab.pipeline_definition import definition_json, image_uris
from sagelab.quotas import QuotaError
from sagelab.roster import classroom_config, read_roster
from sagelab.spend_cap import class_stack_name
from stacks.app.account_quotas import check_app_quotas
from stacks.app.classroom import StampedStack, add_classroom, clear_template_environments
from stacks.app.nag import add_nag_packs
from stacks.app.validation import new_app
from stacks.bootstrap_stack import StudentBootstrapStack
from stacks.class_stack import ClassStack
from stacks.platform_stack import PlatformStack, SharedArtifacts
from stacks.release.promotion import Promotion
from stacks.release_stack import add_releases, promotion_of
from stacks.serving_stack import ServingStack, retention_name
from stacks.spend_cap.construct import SpendCapSettings
from stacks.spend_cap.link import SpendCapLinkStack
from stacks.student_portal.construct import PortalUser


@functools.lru_cache(maxsize=4)
def _staged_code(custom_scripts: tuple[str, ...]) -> Any:
    return stage_code_bundle(custom_scripts=custom_scripts)


def build_shared(config: SageLabConfig) -> SharedArtifacts:
    regions = sorted({env.region for env in config.environments})
    return SharedArtifacts(
        definitions={pipeline: definition_json(pipeline) for pipeline in {env.pipeline for env in config.environments}},
        code_bundle=_staged_code(tuple(sorted({env.pipeline.custom_script for env in config.environments if env.pipeline.custom_script}))),
        dataset_dir=str(DIGITS_CSV.parent),
        image_uris_by_region={region: image_uris(region) for region in regions},
    )


def environment_tags(config: SageLabConfig, env: EnvironmentConfig) -> dict[str, str]:
    tags = {"project": PROJECT, "environment": env.name, "owner": env.owner}
    if env.course:  # cost-allocation tags for a class
        tags.update(course=env.course, student=env.name)
    return tags


def pin_model_package(config: SageLabConfig, arn: str | None) -> SageLabConfig:
    """`-c model_package_arn=...`: serve that version (the serving stack's parameter default)."""
    if not arn:
        return config
    if len(config.environments) != 1:
        raise ConfigError(
            f"-c model_package_arn applies to one environment; the config has {len(config.environments)} (set serving.model_package_arn per environment instead)"
        )
    (env,) = config.environments
    pinned = dataclasses.replace(env, serving=dataclasses.replace(env.serving, model_package_arn=arn))
    problems = check_environment(pinned, f"environments.{env.name}")
    if problems:
        _path, value, expected = problems[0]
        raise ConfigError(f"-c model_package_arn: {value!r} is not valid (expected {expected})")
    return dataclasses.replace(config, environments=(pinned,))


def add_environment(
    scope: Construct,
    env: EnvironmentConfig,
    tags: Mapping[str, str],
    platform_id: str,
    serving_id: str,
    *,
    shared: SharedArtifacts,
    promotion: Promotion | None = None,
) -> list[Stack]:
    platform = PlatformStack(scope, platform_id, env_config=env, shared=shared, tags=tags)
    serving = ServingStack(scope, serving_id, env_config=env, platform=platform, tags=tags, promotion=promotion)
    return [platform, serving]


def add_class_stacks(app: App, config: SageLabConfig, student_stacks: Sequence[StampedStack], class_account: str | None = None) -> list[ClassStack]:
    """One ClassStack per region with shared-account students (when they use the class's web ACL
    or the class has a spending cap) or, with a spending cap, own-account students; serving
    stacks on the class's web ACL deploy after it (they import it). Own-account students get a
    link stack in their account (stacks/spend_cap/link.py), deployed after their region's class stack."""
    by_name = {stack.stamped_name: stack for stack in student_stacks}
    classroom = config.classroom
    sharing: dict[str, list[EnvironmentConfig]] = {}
    capped: dict[str, list[EnvironmentConfig]] = {}
    for env in config.environments:
        if env.serving.waf == "shared" or (env.shares_account_with_class and classroom.spend_cap):
            sharing.setdefault(env.region, []).append(env)
        if classroom.spend_cap:
            capped.setdefault(env.region, []).append(env)
    own_capped = [env for students in capped.values() for env in students if not env.shares_account_with_class]
    if own_capped and class_account is None:
        raise ConfigError(
            f"classroom.spend_cap: own-account students ({', '.join(env.name for env in own_capped[:3])}{', ...' if len(own_capped) > 3 else ''}) "
            "are capped from the class account, which the config does not name: set `account` of the config's environment "
            "(the class account; shared-account students deploy there) or classroom.spend_cap: false"
        )
    # The portal serves the whole roster (own-account rows too) from the first class stack.
    portal_users = [
        PortalUser(env.name, env.student_email or "", None if env.shares_account_with_class else env.account, env.region) for env in config.environments
    ]
    class_stacks: list[ClassStack] = []
    for region in [*sharing, *(region for region in capped if region not in sharing)]:
        students = sharing.get(region, [])
        base = students[0] if students else capped[region][0]
        on_web_acl = [env for env in students if env.serving.waf == "shared"]
        class_stack = ClassStack(
            app,
            class_stack_name(region),
            account=base.account if students else class_account,
            region=region,
            students=[env.name for env in students],
            rate_limit_per_5_minutes=base.serving.waf_rate_limit_per_5_minutes,
            log_retention=logs.RetentionDays(retention_name(base.log_retention_days)),
            tags={"project": PROJECT, "course": classroom.course},
            portal_users=portal_users if not class_stacks and students else (),
            admin_emails=config.classroom.admin_emails,
            web_acl=bool(on_web_acl),
            spend_cap=spend_cap_settings(config, capped[region]) if classroom.spend_cap else None,
        )
        for env in on_web_acl:
            by_name[env.names.serving_stack].add_stack_dependency(class_stack)
        for env in capped.get(region, []):
            if not env.shares_account_with_class and class_account is not None:
                link = SpendCapLinkStack(
                    app,
                    student=env.name,
                    account=env.account,
                    region=region,
                    course=classroom.course,
                    class_account=class_account,
                    tags={"project": PROJECT, "course": classroom.course, "student": env.name},
                )
                link.add_stack_dependency(class_stack)  # its role trusts the enforcer's role by ARN
        class_stacks.append(class_stack)
    return class_stacks


def add_bootstrap_stack(app: App, config: SageLabConfig, student_stacks: Sequence[StampedStack]) -> Stack | None:
    """With `classroom.bootstrap_organizational_units`: one StackSet bootstraps every own-account
    student's account (in the admin's account and the config's first region); their stacks deploy after it."""
    classroom = config.classroom
    own = [env for env in config.environments if not env.shares_account_with_class]
    if not classroom.bootstrap_organizational_units or not own:
        return None
    admin = config.environments[0]
    stack = StudentBootstrapStack(
        app,
        account=next((env.account for env in config.environments if env.shares_account_with_class), None),
        region=admin.region,
        organizational_unit_ids=classroom.bootstrap_organizational_units,
        regions=sorted({env.region for env in own}),
        call_as=classroom.bootstrap_call_as,
        tags={"project": PROJECT, "course": classroom.course},
    )
    own_names = {env.names.platform_stack for env in own} | {env.names.serving_stack for env in own}
    for student_stack in student_stacks:
        if student_stack.stamped_name in own_names:
            student_stack.add_stack_dependency(stack)
    return stack


def spend_cap_settings(config: SageLabConfig, students: Sequence[EnvironmentConfig]) -> SpendCapSettings:
    classroom = config.classroom
    return SpendCapSettings(
        course=classroom.course,
        students=tuple(env.name for env in students),
        student_emails={env.name: env.student_email for env in students if env.student_email},
        own_accounts={env.name: env.account for env in students if not env.shares_account_with_class and env.account},
        admin_emails=classroom.admin_emails,
        cap_usd=classroom.cap_usd,
        warn_percent=classroom.spend_warn_percent,
        reconcile_minutes=classroom.spend_reconcile_minutes,
        allowed_instance_types=classroom.allowed_instance_types,
    )


def build_app(app: App | None = None, context: Mapping[str, Any] | None = None, config: SageLabConfig | None = None) -> App:
    """Compose every environment into `app` (a new App when None).

    With a roster, every student gets stacks stamped from one template environment per shape of
    student (stacks/app/classroom.py).
    """
    app = app or new_app(context)
    classroom = False
    class_account = None
    if config is None:
        context_view = {"sagelab": app.node.try_get_context("sagelab")}
        config = load_config(context_view, app.node.try_get_context("config"))
        config = pin_model_package(config, app.node.try_get_context("model_package_arn"))
        roster = app.node.try_get_context("roster")
        if roster:
            class_account = config.environments[0].account  # the class's shared-account students deploy there
            config = classroom_config(config, read_roster(roster), str(roster))
            classroom = True
    clear_template_environments(app)
    shared = build_shared(config)
    build = functools.partial(add_environment, shared=shared)
    student_stacks: list[StampedStack] = []
    if classroom:
        student_stacks = add_classroom(app, config, functools.partial(environment_tags, config), build, add_nag_packs)
        add_class_stacks(app, config, student_stacks, class_account)
        add_bootstrap_stack(app, config, student_stacks)
    else:
        built = {}
        for env in config.environments:
            platform, serving = build(
                app, env, environment_tags(config, env), env.names.platform_stack, env.names.serving_stack, promotion=promotion_of(config, env)
            )
            built[env.name] = (platform, serving)
        add_releases(app, config, built, functools.partial(environment_tags, config))  # only where `promote_from` is set
    add_nag_packs(app)
    check_quotas_of(app, student_stacks, config)
    return app


def check_quotas_of(app: App, student_stacks: Sequence[StampedStack], config: SageLabConfig) -> None:
    """Fail synth (a ConfigError naming the quota and the numbers) when the app's stacks exceed an
    account's quota: the defaults, or the raised values the config declares (sagelab/quotas.py).
    The app's other stacks are built through the constructs and counted from them."""
    built = (child for child in app.node.children if isinstance(child, Stack) and not isinstance(child, StampedStack))
    try:
        check_app_quotas(built, student_stacks, config.quotas)
    except QuotaError as error:
        raise ConfigError(f"quota: {error}") from None
