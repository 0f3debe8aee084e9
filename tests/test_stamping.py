"""Stamping: a class's students are copies of one template environment per shape of student
(stacks/app/classroom.py), each equal to that student built alone through the constructs.

Apart from tests/test_classroom.py so that, under `pytest -n 2 --dist loadscope`, its two class
synths (and the sixteen students built alone) run beside the class-of-40 tests, not after them."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from sagelab.config import EnvironmentConfig, load_config
from sagelab.roster import classroom_config, parse_roster, read_roster
from sagelab.settings import cdk_context
from stacks.app.builder import add_environment, build_shared, environment_tags
from stacks.app.classroom import (
    TEMPLATE_STACK_IDS,
    TEMPLATE_STUDENT_ACCOUNT,
    TEMPLATE_STUDENT_EMAIL,
    TEMPLATE_STUDENT_ID,
    TEMPLATES_DIR,
    add_classroom,
)
from stacks.app.nag import add_nag_packs
from stacks.app.validation import new_app
from tests.conftest import SynthResult, read_json, synth
from tests.test_cfn_lint import lint_errors

# -- stamping: one template environment per shape of student ---------------------------------------
MIXED_ROSTER = """student_id,email,account_id,region
a,a@example.edu,,
abcdefghijklmnopqrst,longest.id@example.edu,,
ann-lee,ann@example.edu,,
teacher-1,admin@example.edu,,
own-1,own1@example.edu,123456789012,eu-west-1
own-2,own2@example.edu,210987654321,eu-west-1
o-brien,O'Brien+Lab@Math.Example.EDU,,
q-uote,"we""ird\\back@x.edu",,
"""
# CDK names the API deployment after a hash of the whole RestApi, tags included, so that any change
# redeploys it. Stamped students keep the template environment's hash (it still changes whenever
# the API does); a student built alone hashes their own tags. The one id that may differ.
API_DEPLOYMENT_HASH = re.compile(r"(FrontDoorApiDeployment[0-9A-Fa-f]{8})[0-9a-f]{32}")
# BucketDeployment tags its bucket with a hash of its sources' object keys, which are asset hashes.
BUCKET_DEPLOYMENT_HASH = re.compile(r'("aws-cdk:cr-owned:[^"]*:)[0-9a-f]{8}"')


def _class_context(root: Path, roster_text: str, class_account: str | None = None) -> dict[str, Any]:
    root.mkdir()
    roster = root / "roster.csv"
    roster.write_text(roster_text)
    sagelab = cdk_context()["sagelab"] | {"classroom": {"admin_emails": ["admin@example.edu"]}}
    if class_account:  # own-account students then trust the class portal by ARN (their portal role)
        sagelab["environments"] = {name: env | {"account": class_account} for name, env in sagelab["environments"].items()}
    else:  # own-account students' spending cap needs the class account (tests/test_spend_cap_own_accounts.py)
        sagelab["classroom"]["spend_cap"] = False
    return {**cdk_context(), "roster": str(roster), "sagelab": sagelab}


def _students_built_alone(root: Path, context: dict[str, Any]) -> list[Path]:
    """The reference: each student built through the constructs in an App of its own (neutral
    stack construct ids, as in a template environment), with the ordinary synthesizer. Without
    the checks: cdk-nag and CDK's template validation only report, they change no template, asset
    or manifest entry (the stamped synth runs both where the students are built, its template
    environments: the last two tests of this module), and here they were two thirds of the
    reference's CPU (8 s of 13 per case)."""
    config = classroom_config(load_config(context), read_roster(context["roster"]))
    build = functools.partial(add_environment, shared=build_shared(config))
    for env in config.environments:
        app = App(context=context, outdir=str(root / env.name), builtin_cloud_formation_validation=False)
        build(app, env, environment_tags(config, env), *TEMPLATE_STACK_IDS)
        app.synth()
    return [root / env.name for env in config.environments]


def _content_digest(path: Path) -> str:
    """What an asset holds (a file, or a directory tree), whatever hash CDK gave it."""
    digest = hashlib.sha256()
    for item in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode() + b"\0" + item.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _deployable_parts(outdir: Path) -> dict[str, Any]:
    """Per stack name: its template, its assets (the template's own upload aside) and its manifest entry.
    Assets are named by their content: a stamped stack republishes the template environment's
    assets under hashes derived from the template's, a student built alone hashes its own."""
    manifest = read_json(outdir / "manifest.json")["artifacts"]
    stack_names = {name: artifact["properties"].get("stackName", name) for name, artifact in manifest.items() if artifact["type"] == "aws:cloudformation:stack"}
    parts: dict[str, Any] = {}
    digests: dict[str, str] = {}  # stamped stacks share their template environment's asset files: read each once
    for name, artifact in manifest.items():
        if name not in stack_names:
            continue
        files = read_json(outdir / f"{name}.assets.json")["files"]
        renames = []
        for asset_hash, entry in files.items():
            if entry["source"]["path"] != f"{name}.template.json":
                path = entry["source"]["path"]
                if path not in digests:
                    digests[path] = _content_digest(outdir / path)
                renames += [(path, f"asset-path-{digests[path]}"), (asset_hash, f"asset-{digests[path]}")]

        def by_content(text: str, renames: list[tuple[str, str]] = renames) -> str:
            for old, new in renames:
                text = text.replace(old, new)
            return text

        template = API_DEPLOYMENT_HASH.sub(r"\1<api-hash>", by_content((outdir / f"{name}.template.json").read_text()))
        template = BUCKET_DEPLOYMENT_HASH.sub(r'\1<sources-hash>"', template)
        assets = json.loads(by_content(json.dumps({h: entry for h, entry in files.items() if entry["source"]["path"] != f"{name}.template.json"})))
        for entry in assets.values():  # destination ids are CDK's hashes of the asset's hash: keep what they say
            entry["destinations"] = list(entry["destinations"].values())
        entry = {k: artifact["properties"].get(k) for k in ("tags", "assumeRoleArn", "cloudFormationExecutionRoleArn", "terminationProtection")}
        # Dependencies name artifacts (stacks and their `.assets`), by construct id: read as stack names.
        dependencies = [
            stack_names.get(d, d) if not d.endswith(".assets") else f"{stack_names[d.removesuffix('.assets')]}.assets" for d in artifact.get("dependencies", [])
        ]
        parts[stack_names[name]] = {"template": template, "assets": assets, "environment": artifact["environment"], "dependencies": dependencies, **entry}
    return parts


MixedClass = Callable[[str | None], tuple[dict[str, Any], SynthResult]]


@pytest.fixture(scope="module")
def mixed_class(tmp_path_factory: pytest.TempPathFactory) -> MixedClass:
    """MIXED_ROSTER synthesized (stamped) with the class account unknown or named: its context and
    its synth, once per module for each, which the stamping and email tests share."""
    made: dict[str | None, tuple[dict[str, Any], SynthResult]] = {}

    def get(class_account: str | None) -> tuple[dict[str, Any], SynthResult]:
        if class_account not in made:
            root = tmp_path_factory.mktemp("mixed-class")
            context = _class_context(root / "roster", MIXED_ROSTER, class_account)
            made[class_account] = (context, synth(root / "stamped", context))
        return made[class_account]

    return get


@pytest.mark.slow  # two synths per case: stamping is byte-equal to building each student alone
@pytest.mark.parametrize("class_account", [None, "111122223333"], ids=["class-account-unknown", "class-account-named"])
def test_stamped_students_equal_students_built_alone(tmp_path: Path, mixed_class: MixedClass, class_account: str | None) -> None:
    """Shortest and longest ids, a hyphen, a student who is also an admin, own accounts in another
    region (with the class account named: their portal role): each stamped stack is what building
    that student through the constructs gives."""
    context, stamped = mixed_class(class_account)
    stamped_parts = _deployable_parts(stamped.outdir)
    # The class-wide stack (shared web ACL and dashboard) is no student's: checked apart in
    # tests/test_class_cost.py, as is the shared-account serving stacks' dependency on it.
    # With the class account named, own-account students' spending cap adds a class stack in their
    # region and a link stack in each of their accounts (tests/test_spend_cap_own_accounts.py).
    class_wide = [name for name in stamped_parts if name.startswith("sagelab-class--") or name.endswith("--spend-cap")]
    assert sorted(class_wide) == (
        ["sagelab-class--eu-west-1", "sagelab-class--us-east-1", "sagelab-own-1--spend-cap", "sagelab-own-2--spend-cap"]
        if class_account
        else ["sagelab-class--us-east-1"]
    )
    for name in class_wide:
        del stamped_parts[name]
    for parts in stamped_parts.values():
        parts["dependencies"] = [d for d in parts["dependencies"] if not d.startswith("sagelab-class--")]
    alone_parts = {name: parts for outdir in _students_built_alone(tmp_path / "alone", context) for name, parts in _deployable_parts(outdir).items()}
    assert sorted(stamped_parts) == sorted(alone_parts) and len(stamped_parts) == 16
    for name, parts in alone_parts.items():
        for key, value in parts.items():
            assert stamped_parts[name][key] == value, f"{name}: {key} differs"
    # Three shapes (shared account; shared account, student is an admin; own account in
    # eu-west-1) mean three template environments instead of six students built one by one.
    assert len(list((stamped.outdir / TEMPLATES_DIR).iterdir())) == 3
    for path in stamped.outdir.glob("*.json"):
        text = path.read_text()
        assert not any(p in text for p in (TEMPLATE_STUDENT_ID, TEMPLATE_STUDENT_EMAIL, TEMPLATE_STUDENT_ACCOUNT)), f"placeholder left in {path.name}"
    # In the shared account the budget counts only the student's tagged resources; in their own, all.
    budgets = {
        student: next(r for r in stamped.template(f"sagelab-{student}--platform")["Resources"].values() if r["Type"] == "AWS::Budgets::Budget")
        for student in ("ann-lee", "own-1")
    }
    assert budgets["ann-lee"]["Properties"]["Budget"]["CostFilters"] == {"TagKeyValue": ["user:student$ann-lee"]}
    assert "CostFilters" not in budgets["own-1"]["Properties"]["Budget"]
    for name in ("sagelab-own-2--platform", "sagelab-own-2--serving"):
        assert lint_errors(stamped.template(name), region="eu-west-1") == [], name
    own = stamped.template("sagelab-own-2--platform")
    assert "210987654321" in json.dumps(own) and "123456789012" not in json.dumps(own)
    # Named class account: own-2's portal role trusts the class portal's function role, stamped alike.
    portal_roles = [
        r["Properties"] for r in own["Resources"].values() if r["Type"] == "AWS::IAM::Role" and r["Properties"].get("RoleName") == "sagelab-own-2--portal"
    ]
    assert [role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] for role in portal_roles] == (
        [{"AWS": f"arn:aws:iam::{class_account}:role/sagelab-class--portal-us-east-1"}] if class_account else []
    )
    (budget,) = [r for r in stamped.template("sagelab-teacher-1--platform")["Resources"].values() if r["Type"] == "AWS::Budgets::Budget"]
    assert {s["Address"] for s in budget["Properties"]["NotificationsWithSubscribers"][0]["Subscribers"]} == {"admin@example.edu"}


def _budget_subscribers(template: dict[str, Any]) -> set[str]:
    (budget,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Budgets::Budget"]
    return {s["Address"] for n in budget["Properties"]["NotificationsWithSubscribers"] for s in n["Subscribers"]}


def test_any_school_email_is_a_student_and_round_trips_through_stamping(mixed_class: MixedClass) -> None:
    """JSON-special characters in an email land in a valid template as the same string; the owner
    tag gets the address with the characters tags do not allow replaced (documented in roster.py).
    MIXED_ROSTER's q-uote and o-brien (the class it synthesizes for the stamping test, shared)."""
    _context, stamped = mixed_class(None)
    assert _budget_subscribers(stamped.template("sagelab-q-uote--platform")) == {'we"ird\\back@x.edu', "admin@example.edu"}
    assert _budget_subscribers(stamped.template("sagelab-o-brien--platform")) == {"O'Brien+Lab@Math.Example.EDU", "admin@example.edu"}
    manifest = read_json(stamped.outdir / "manifest.json")["artifacts"]
    assert manifest["sagelab-q-uote--platform"]["properties"]["tags"]["owner"] == "we_ird_back@x.edu"
    assert manifest["sagelab-o-brien--serving"]["properties"]["tags"]["owner"] == "O_Brien+Lab@Math.Example.EDU"
    for name in ("sagelab-q-uote--platform", "sagelab-o-brien--serving"):
        assert lint_errors(stamped.template(name)) == [], name


def test_a_finding_in_the_student_template_fails_synth(tmp_path: Path) -> None:
    """cdk-nag runs where the students' resources are built: the template environment."""
    config = classroom_config(load_config({"sagelab": {}}), parse_roster("student_id,email\nalice,alice@x.edu\nbob,bob@x.edu\n"))
    app = App(outdir=str(tmp_path), context=cdk_context())

    def unencrypted_bucket(scope: Construct, env: EnvironmentConfig, _tags: Mapping[str, str], platform_id: str, _serving_id: str) -> list[Stack]:
        stack = Stack(scope, platform_id, stack_name=env.names.platform_stack)
        s3.Bucket(stack, "Plain")
        return [stack]

    with pytest.raises(RuntimeError, match="ValidationFailed"):
        add_classroom(app, config, lambda _env: {}, unencrypted_bucket, add_nag_packs)
    (report,) = (tmp_path / TEMPLATES_DIR).rglob("validation-report.json")
    assert "AwsSolutions-S1" in report.read_text()


def _validated(report_path: Path) -> dict[str, set[str]]:
    """The CloudFormation Validate plugin's findings in a validation report: rule -> construct paths."""
    if not report_path.is_file():
        return {}
    found: dict[str, set[str]] = {}
    for report in json.loads(report_path.read_text())["pluginReports"]:
        for violation in report["violations"] if report["pluginName"] == "CloudFormation Validate" else []:
            found.setdefault(violation["ruleName"], set()).update(construct["constructPath"] for construct in violation["violatingConstructs"])
    return found


def test_cdks_template_validation_sees_every_stack_once_and_the_stamped_copies_through_their_template(tmp_path: Path) -> None:
    """CDK's built-in CloudFormation validation (scoped by stacks/app/validation.py): an invalid
    property in a class-level stack and in the students' template environment is reported, and
    the students' stamped copies of that template are not validated a second time each."""
    config = classroom_config(load_config({"sagelab": {}}), parse_roster("student_id,email\nalice,alice@x.edu\nbob,bob@x.edu\n"))
    app = new_app(cdk_context(), str(tmp_path))

    def misnamed_bucket(scope: Construct, env: EnvironmentConfig, _tags: Mapping[str, str], platform_id: str, _serving_id: str) -> list[Stack]:
        stack = Stack(scope, platform_id, stack_name=env.names.platform_stack)
        s3.CfnBucket(stack, "Misnamed", bucket_name=f"Upper_{env.name}")  # S3 names are lower case: F3031
        return [stack]

    stamped = add_classroom(app, config, lambda _env: {}, misnamed_bucket, lambda _app: None)
    class_level = Stack(app, "ClassLevel")
    s3.CfnBucket(class_level, "Misnamed", bucket_name="Upper_class")
    app.synth()
    assert [stack.stack_name for stack in stamped] == ["sagelab-alice--platform", "sagelab-bob--platform"]
    (template_report,) = (tmp_path / TEMPLATES_DIR).rglob("validation-report.json")
    assert _validated(template_report) == {"F3031": {"Platform/Misnamed"}}
    assert _validated(tmp_path / "validation-report.json") == {"F3031": {"ClassLevel/Misnamed"}}
