"""Classroom synthesis: build a student environment once per shape, stamp it for every student.

Forty students are forty copies of one environment that differ only in three strings: the student
id (in every name, tag and description), the email (budget alerts, owner tag) and, for
one-account-per-student rows, the account. Building each copy through the constructs costs ~0.3 s
of jsii calls per student; instead, for each *shape* of student (region, own account or shared,
and whether the student is also a course admin: each changes the template's structure) we

1. build one template environment through the very same `PlatformStack`/`ServingStack` in an App
   of its own, with placeholder values (`TEMPLATE_STUDENT_ID`, ...), and synthesize it with the
   cdk-nag packs — any unacknowledged finding fails synth here, as for any environment;
2. give each student real stacks in the main app (`sagelab-<id>--platform`, `--serving`, named as
   always) whose synthesizer writes the template environment's template with the placeholders
   replaced, and publishes the template environment's assets (code bundle, Lambda code) to the
   student's own bootstrap bucket.

Stack construct ids in the template environment are neutral ("Platform", "Serving") so that no
logical id or CDK-generated hash depends on the student: a stamped template is byte-identical to
the template that the student's own build gives (tests/test_classroom.py compares all of them with
every student built alone through the constructs, in an App of its own, no stamping). Substituted
values are JSON-escaped (an email may hold `"` or `\\`). See docs/decisions/0007.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aws_cdk import App, AssetHashType, DefaultStackSynthesizer, Environment, FileAssetPackaging, FileAssetSource, ISynthesisSession, Stack
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from sagelab.cloud_assembly import AssemblyStack, assembly_stacks
from sagelab.config import EnvironmentConfig, SageLabConfig
from stacks.app.validation import new_app

# Placeholders for what differs between students of one shape. The id is 20 characters (the
# longest a student id may be), so every length limit CDK checks on the template environment holds
# for every real id; none of them can occur in anything CDK or SageLab generates by chance.
TEMPLATE_STUDENT_ID = "q9stamp9student9id9q"
TEMPLATE_STUDENT_EMAIL = "q9stamp9student9id9q@template.invalid"
TEMPLATE_STUDENT_OWNER = "q9stamp9owner9tag9q"  # the owner tag: the email made a valid tag value
TEMPLATE_STUDENT_ACCOUNT = "999999999999"
PLACEHOLDERS = (TEMPLATE_STUDENT_ID, TEMPLATE_STUDENT_EMAIL, TEMPLATE_STUDENT_OWNER, TEMPLATE_STUDENT_ACCOUNT)
TEMPLATES_DIR = "student-templates"

# Builds one environment's stacks into `scope` with the given construct ids (app_builder's job).
EnvironmentBuilder = Callable[[Construct, EnvironmentConfig, Mapping[str, str], str, str], Sequence[Stack]]
TEMPLATE_STACK_IDS = ("Platform", "Serving")


@dataclass(frozen=True)
class StudentShape:
    """Students of one shape share a template environment."""

    region: str
    own_account: bool
    admin_email: str | None  # set when the student's email is also an admin's (one subscriber fewer)

    @property
    def slug(self) -> str:
        digest = hashlib.sha256(repr(self).encode()).hexdigest()[:8]
        return f"{self.region}-{'own' if self.own_account else 'shared'}-account-{digest}"


def shape_of(env: EnvironmentConfig, admin_emails: Sequence[str]) -> StudentShape:
    email = env.student_email if env.student_email in admin_emails else None
    return StudentShape(region=env.region, own_account=not env.shares_account_with_class, admin_email=email)


def as_template(env: EnvironmentConfig, shape: StudentShape) -> EnvironmentConfig:
    """The student's environment with the placeholders in place of what differs between students."""
    email = shape.admin_email or TEMPLATE_STUDENT_EMAIL
    return replace(
        env,
        name=TEMPLATE_STUDENT_ID,
        account=TEMPLATE_STUDENT_ACCOUNT if shape.own_account else env.account,
        owner=env.owner if shape.admin_email else TEMPLATE_STUDENT_OWNER,
        student_email=email,
        budget_alert_emails=tuple(email if address == env.student_email else address for address in env.budget_alert_emails),
    )


def substitutions(env: EnvironmentConfig, shape: StudentShape) -> list[tuple[str, str]]:
    """(placeholder, value) pairs, the email first (it is the longer string that contains the id).
    Values are raw text; `stamp_json` escapes them for a template."""
    pairs = [(TEMPLATE_STUDENT_EMAIL, env.student_email or ""), (TEMPLATE_STUDENT_OWNER, env.owner), (TEMPLATE_STUDENT_ID, env.name)]
    if shape.own_account:
        pairs.append((TEMPLATE_STUDENT_ACCOUNT, env.account or ""))
    return pairs


def stamp(text: str, pairs: Sequence[tuple[str, str]]) -> str:
    """Plain text (stack names, tag values in the manifest): the values as they are."""
    for placeholder, value in pairs:
        text = text.replace(placeholder, value)
    return text


def stamp_json(template_text: str, pairs: Sequence[tuple[str, str]]) -> str:
    """A template: every placeholder sits inside a JSON string, so each value is inserted as JSON
    string content (an email may hold `"` or `\\`), escaped as CDK itself writes it
    (JSON.stringify leaves non-ASCII as it is)."""
    return stamp(template_text, [(placeholder, json.dumps(value, ensure_ascii=False)[1:-1]) for placeholder, value in pairs])


@dataclass(frozen=True)
class TemplateStack:
    """One synthesized stack of a template environment, read back from its cloud assembly: what
    every student's copy is stamped from, read once."""

    stack: AssemblyStack  # its manifest entry: construct id, name, tags, the stacks it depends on
    template_text: str
    file_assets: tuple[Mapping[str, Any], ...]  # the assets manifest entries, template excluded


@dataclass(frozen=True)
class TemplateEnvironment:
    directory: Path  # its cloud assembly, inside the main one (assets are published from here)
    stacks: tuple[TemplateStack, ...]


def synthesize_template_environment(
    outdir: Path, context: Mapping[str, Any], env: EnvironmentConfig, tags: Mapping[str, str], build: EnvironmentBuilder, add_checks: Callable[[App], None]
) -> TemplateEnvironment:
    """Build and synthesize the template environment (with the cdk-nag packs) in an App of its own."""
    template_app = new_app(context, str(outdir))
    build(template_app, env, tags, *TEMPLATE_STACK_IDS)
    add_checks(template_app)
    template_app.synth()
    stacks = []
    for stack in assembly_stacks(outdir):
        assets = json.loads(stack.asset_manifest_file.read_text()) if stack.asset_manifest_file else {}
        if assets.get("dockerImages"):
            raise NotImplementedError(f"{stack.artifact_id}: Docker image assets cannot be stamped per student (SageLab builds none)")
        template_file = stack.template_file.relative_to(outdir).as_posix()  # as its asset manifest names it
        file_assets = tuple({"hash": asset_hash, **entry} for asset_hash, entry in assets.get("files", {}).items() if entry["source"]["path"] != template_file)
        stacks.append(TemplateStack(stack=stack, template_text=stack.template_text(), file_assets=file_assets))
    return TemplateEnvironment(directory=outdir, stacks=tuple(stacks))


class StampedStackSynthesizer(DefaultStackSynthesizer):
    """A DefaultStackSynthesizer whose template is given (a stamped template environment's) instead
    of generated from the stack's constructs. Roles, bootstrap checks, the asset manifest and the
    template upload are CDK's own."""

    def __init__(self, outdir: Path) -> None:
        super().__init__()
        # The app's cloud assembly, where a top-level stack's template goes: known here, it is not
        # read back from the synthesis session (two jsii round trips per stack).
        self.outdir = outdir
        # Set once the stack and its assets exist. (jsii hands Python the unbound original of
        # this reusable synthesizer, so everything the override needs is kept here.)
        self.template_file = ""
        self.template_text = ""

    def _synthesize_template(  # jsii: overrides the protected StackSynthesizer.synthesizeTemplate
        self,
        session: ISynthesisSession,
        lookup_role_arn: str | None = None,
        lookup_role_external_id: str | None = None,
        lookup_role_additional_options: Mapping[str, Any] | None = None,
    ) -> FileAssetSource:
        (self.outdir / self.template_file).write_text(self.template_text)
        return FileAssetSource(
            file_name=self.template_file,
            packaging=FileAssetPackaging.FILE,
            source_hash=hashlib.sha256(self.template_text.encode()).hexdigest(),
            deploy_time=True,
        )


class StampedStack(Stack):
    """A student's stack whose template is stamped from a template environment (`template_text`,
    what it deploys: account quotas are counted on it, stacks/app/account_quotas.py).

    What the app, its quotas and its template validation read is kept on the Python side too
    (`stamped_name`, `quota_*`): each read through jsii is a round trip to Node, and reading it
    back cost more than counting the quotas of a 200-student class."""

    stamped_name = ""  # its stack name, which is also its construct id in the app
    template_text = ""
    template_environment_text = ""  # the template it is stamped from
    quota_account = ""  # "" when the environment names none
    quota_region = ""


# Where the main app stages a template environment's asset (its source path and hash): the staged
# path and hash, the same for every student stamped from that environment.
StagedAssets = dict[tuple[Path, str], tuple[str, str]]


def add_stamped_stacks(
    app: App, template: TemplateEnvironment, env: EnvironmentConfig, shape: StudentShape, *, outdir: Path, staged_assets: StagedAssets
) -> list[StampedStack]:
    """The student's stacks in `app` (whose cloud assembly is `outdir`): named as always, stamped
    from the template environment. `staged_assets` is shared by the app's stamped stacks: CDK
    stages an asset once per app, so the first stack's Asset says where for all of them."""
    pairs = substitutions(env, shape)
    by_construct_id: dict[str, StampedStack] = {}
    for template_stack in template.stacks:
        stack_name = stamp(template_stack.stack.stack_name, pairs)
        synthesizer = StampedStackSynthesizer(outdir)
        stack = StampedStack(
            app,
            stack_name,
            stack_name=stack_name,
            env=Environment(account=env.account, region=env.region),
            tags={key: stamp(value, pairs) for key, value in template_stack.stack.tags.items()},
            termination_protection=template_stack.stack.termination_protection,
            synthesizer=synthesizer,
        )
        # The template environment's assets (code bundle, Lambda code), published with this
        # stack to the student's bootstrap bucket. CDK derives the staged hash from the given
        # one, so the template's references are renamed to it.
        renamed_assets = []
        for position, asset in enumerate(template_stack.file_assets):
            source = template.directory / asset["source"]["path"]
            staged = s3_assets.Asset(
                stack,
                f"TemplateAsset{position}",
                path=str(source),
                asset_hash=asset["hash"],
                asset_hash_type=AssetHashType.CUSTOM,
                display_name=asset.get("displayName"),
            )
            if (source, asset["hash"]) not in staged_assets:  # two jsii reads, once per app
                staged_assets[(source, asset["hash"])] = (staged.asset_path, staged.asset_hash)
            staged_path, staged_hash = staged_assets[(source, asset["hash"])]
            # aws:asset:path metadata (SAM local) names the staged copy; object keys the new hash.
            renamed_assets += [(f'"{asset["source"]["path"]}"', f'"{staged_path}"'), (asset["hash"], staged_hash)]
        synthesizer.template_file = stack.template_file
        # Asset paths and hashes are JSON already (quotes included), hence not escaped again.
        synthesizer.template_text = stamp(stamp_json(template_stack.template_text, pairs), renamed_assets)
        stack.template_text = synthesizer.template_text
        stack.template_environment_text = template_stack.template_text
        stack.stamped_name, stack.quota_account, stack.quota_region = stack_name, env.account or "", env.region
        by_construct_id[template_stack.stack.artifact_id] = stack
    for template_stack in template.stacks:
        for dependency in template_stack.stack.dependencies:
            by_construct_id[template_stack.stack.artifact_id].add_stack_dependency(by_construct_id[dependency])
    return list(by_construct_id.values())


def clear_template_environments(app: App) -> None:
    """cdk.out is reused between synths: drop template environments of an earlier roster."""
    shutil.rmtree(Path(app.outdir) / TEMPLATES_DIR, ignore_errors=True)


def add_classroom(
    app: App,
    config: SageLabConfig,
    tags_for: Callable[[EnvironmentConfig], Mapping[str, str]],
    build: EnvironmentBuilder,
    add_checks: Callable[[App], None],
) -> list[StampedStack]:
    """Every student's stacks, stamped from one template environment per shape of student."""
    outdir = Path(app.outdir)
    context = app.node.get_all_context()
    templates: dict[StudentShape, TemplateEnvironment] = {}
    staged_assets: StagedAssets = {}
    stacks: list[StampedStack] = []
    for env in config.environments:
        shape = shape_of(env, config.classroom.admin_emails)
        if shape not in templates:
            template_env = as_template(env, shape)
            templates[shape] = synthesize_template_environment(
                outdir / TEMPLATES_DIR / shape.slug, context, template_env, tags_for(template_env), build, add_checks
            )
        stacks.extend(add_stamped_stacks(app, templates[shape], env, shape, outdir=outdir, staged_assets=staged_assets))
    return stacks
