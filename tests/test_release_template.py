"""The release across three accounts, on the synthesized templates (conftest `three_accounts`):
cdk-nag clean (the synth fails otherwise) and cfn-lint clean, the pipeline's stages in order, and
cross-account access proven on both sides with IAM semantics (tests/iam_policy.py): each principal
that needs a read in another account has its identity policy AND the owner's resource policy for
exactly that, and no other principal of the other accounts gets any of it. Each proof has a planted
negative case (one grant removed or widened: the proof fails)."""

from __future__ import annotations

import ast
import copy
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from stacks.approval_deployer.parameters import MODEL_PACKAGE_PARAMETER
from tests.conftest import REPO_ROOT, SynthResult
from tests.iam_policy import Env, Stacks, Statement, is_allowed, statement_applies
from tests.test_cfn_lint import lint_errors
from tests.test_sufficiency import ACCOUNT as SUFFICIENCY_ACCOUNT
from tests.test_sufficiency import deployment_requests, role

REGION = "us-east-1"
DEV, STAGING, PROD = "111111111111", "222222222222", "333333333333"
ACCOUNTS = {"dev": DEV, "staging": STAGING, "prod": PROD}
PACKAGE = f"arn:aws:sagemaker:{REGION}:{DEV}:model-package/sagelab-dev--models/7"


def account_stacks(templates: dict[str, dict[str, Any]], environment: str) -> Stacks:
    """The templates one account deploys, as they are once the release has set the model."""
    mine = {name: t for name, t in templates.items() if name.startswith(f"sagelab-{environment}--")}
    parameters = {f"sagelab-{environment}--serving": {MODEL_PACKAGE_PARAMETER: PACKAGE}} if environment != "dev" else {}
    return Stacks(mine, Env(region=REGION, account=ACCOUNTS[environment]), parameters=parameters)


def role_arn(account: str, name: str) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


# -- principals and resource policies -----------------------------------------------------------
def principal_matches(statement: Statement, principal_arn: str) -> bool:
    """Does the statement's Principal cover this role (by ARN, its account, or anyone)?"""
    principal = statement.principal
    if principal == "*":
        return True
    values = principal.get("AWS", []) if isinstance(principal, dict) else []
    values = [values] if isinstance(values, str) else values
    account = principal_arn.split(":")[4]
    return any(v in ("*", principal_arn, account, f"arn:aws:iam::{account}:root") for v in values)


def resource_policy_allows(statements: list[Statement], principal_arn: str, action: str, resource: str, context: dict[str, str]) -> bool:
    ctx = {**context, "aws:PrincipalArn": principal_arn, "aws:PrincipalAccount": principal_arn.split(":")[4]}
    applicable = [s for s in statements if principal_matches(s, principal_arn) and statement_applies(s, action, resource, ctx)]
    return any(s.effect == "Allow" for s in applicable) and not any(s.effect == "Deny" for s in applicable)


def owner_policies(dev: Stacks) -> dict[str, list[Statement]]:
    """The source's resource policies: model package group, artifacts bucket, key."""
    policies: dict[str, list[Statement]] = {}
    for stack, template in dev.templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::SageMaker::ModelPackageGroup":
                document = dev.resolve(stack, resource["Properties"].get("ModelPackageGroupPolicy") or {})
                policies["group"] = [Statement.from_json(s, f"{stack}/{logical_id}") for s in document.get("Statement", [])]
    for policy in dev.resource_policies():
        if policy.resource_type == "AWS::S3::Bucket" and policy.stack == "sagelab-dev--platform" and "Artifacts" in policy.logical_id:
            policies["bucket"] = list(policy.statements)
        if policy.resource_type == "AWS::KMS::Key" and policy.stack == "sagelab-dev--platform":
            policies["key"] = list(policy.statements)
    return policies


def trust_statements(stacks: Stacks, role_name: str) -> list[Statement]:
    """A role's trust policy; its statements name no Resource: they are about the role itself."""
    (found,) = [r for r in stacks.roles() if r.name == role_name]
    raw = [Statement.from_json(s, f"{found.stack}/{found.logical_id}/Trust") for s in found.trust_policy.get("Statement", [])]
    return [dataclasses.replace(s, resources=(found.arn,)) for s in raw]


def identity_allows(stacks: Stacks, role_name: str, action: str, resource: str, context: dict[str, str]) -> bool:
    (found,) = [r for r in stacks.roles() if r.name == role_name]
    return is_allowed(stacks.identity_policies(found), action, resource, context)


@dataclass(frozen=True)
class Need:
    """A read across accounts that the release's work takes, and who makes it."""

    why: str
    principal_account: str
    principal_role: str
    action: str
    resource_as_named: str  # the resource as the principal's identity policy names it
    resource_as_owned: str  # the same resource as the owner's template knows it
    owner: str  # "group", "bucket", "key" (the source's) or "trust:<account>" (a release role's)
    context: dict[str, str]


def needs(dev: Stacks) -> list[Need]:
    """Derived from what each principal does: CloudFormation (the deployment role) creates the model
    from the package, SageMaker downloads model.tar.gz with the endpoint role and S3 decrypts it with
    the source key for that role, and the source's deploy and test functions assume each stage's role.
    (The evaluation and test rows are read by the test function in the source's own account.)"""
    bucket = dev.stand_in(
        "sagelab-dev--platform",
        next(
            k
            for k in dev.templates["sagelab-dev--platform"]["Resources"]
            if k.startswith("StorageArtifacts") and dev.templates["sagelab-dev--platform"]["Resources"][k]["Type"] == "AWS::S3::Bucket"
        ),
    )
    key = dev.stand_in(
        "sagelab-dev--platform", next(k for k, r in dev.templates["sagelab-dev--platform"]["Resources"].items() if r["Type"] == "AWS::KMS::Key"), "Arn"
    )
    model_key = "models/sagelab-dev--train-0a1b2c3d4e/output/model.tar.gz"
    # CloudFormation names the bucket <stack>-<logical id>-<suffix> in lower case.
    physical = f"{bucket.lower()}-1q2w3e4r5t6y"
    found = []
    for environment in ("staging", "prod"):
        account = ACCOUNTS[environment]
        found += [
            Need(
                "the deployment role creates the model from the package",
                account,
                f"sagelab-{environment}--model-deployment",
                "sagemaker:DescribeModelPackage",
                PACKAGE,
                PACKAGE,
                "group",
                {},
            ),
            Need(
                "SageMaker downloads the model with the endpoint role",
                account,
                f"sagelab-{environment}--endpoint",
                "s3:GetObject",
                f"arn:aws:s3:::{physical}/{model_key}",
                f"arn:aws:s3:::{bucket}/{model_key}",
                "bucket",
                {"aws:ResourceAccount": DEV},  # S3 sets it: the bucket's account
            ),
            Need(
                "S3 decrypts it with the source key for that role",
                account,
                f"sagelab-{environment}--endpoint",
                "kms:Decrypt",
                key,
                key,
                "key",
                {"kms:ViaService": f"s3.{REGION}.amazonaws.com"},
            ),
        ]
        release_role = role_arn(account, f"sagelab-{environment}--release")
        for function in ("sagelab-dev--release-deploy", "sagelab-dev--release-test"):
            found.append(
                Need(f"the {function} function works in {environment}", DEV, function, "sts:AssumeRole", release_role, release_role, f"trust:{environment}", {})
            )
    return found


def unproven(templates: dict[str, dict[str, Any]]) -> list[str]:
    """Every need whose identity side or owner side is missing; [] when all are proven."""
    by_env = {environment: account_stacks(templates, environment) for environment in ACCOUNTS}
    owners = owner_policies(by_env["dev"])
    problems = []
    for need in needs(by_env["dev"]):
        principal_env = next(e for e, a in ACCOUNTS.items() if a == need.principal_account)
        if not identity_allows(by_env[principal_env], need.principal_role, need.action, need.resource_as_named, need.context):
            problems.append(f"identity side: {need.principal_role} may not {need.action} {need.resource_as_named} ({need.why})")
        principal = role_arn(need.principal_account, need.principal_role)
        if need.owner.startswith("trust:"):
            environment = need.owner.split(":")[1]
            statements = trust_statements(by_env[environment], f"sagelab-{environment}--release")
        else:
            statements = owners.get(need.owner, [])
        if not resource_policy_allows(statements, principal, need.action, need.resource_as_owned, need.context):
            problems.append(f"owner side: the {need.owner} policy does not let {principal} {need.action} ({need.why})")
    return problems


def other_account_grants(templates: dict[str, dict[str, Any]]) -> set[tuple[str, str, tuple[str, ...]]]:
    """(policy, action, the principal ARNs it is limited to) of every Allow in the owner-side
    policies that a principal of another account could use; () means: any principal of that account."""
    by_env = {environment: account_stacks(templates, environment) for environment in ACCOUNTS}
    policies = owner_policies(by_env["dev"])
    for environment in ("staging", "prod"):
        policies[f"trust:{environment}"] = trust_statements(by_env[environment], f"sagelab-{environment}--release")
    found = set()
    for name, statements in policies.items():
        owner_account = DEV if not name.startswith("trust:") else ACCOUNTS[name.split(":")[1]]
        for statement in statements:
            if statement.effect != "Allow" or statement.principal is None:
                continue
            principal = statement.principal
            values = principal.get("AWS", []) if isinstance(principal, dict) else ["*"]
            values = [values] if isinstance(values, str) else values
            foreign = [v for v in values if v == "*" or owner_account not in v]
            if not foreign:
                continue
            limited = tuple(sorted(statement.condition.get("ArnEquals", {}).get("aws:PrincipalArn", [])))
            for action in statement.actions:
                found.add((name, action, limited))
    return found


EXPECTED_GRANTS = {
    *{("group", "sagemaker:DescribeModelPackage", (role_arn(a, f"sagelab-{e}--model-deployment"),)) for e, a in (("staging", STAGING), ("prod", PROD))},
    *{("bucket", "s3:GetObject", (role_arn(a, f"sagelab-{e}--endpoint"),)) for e, a in (("staging", STAGING), ("prod", PROD))},
    *{("key", "kms:Decrypt", (role_arn(a, f"sagelab-{e}--endpoint"),)) for e, a in (("staging", STAGING), ("prod", PROD))},
    *{
        (f"trust:{e}", "sts:AssumeRole", (role_arn(DEV, "sagelab-dev--release-deploy"), role_arn(DEV, "sagelab-dev--release-test")))
        for e in ("staging", "prod")
    },
}


# -- the tests ------------------------------------------------------------------------------------
def test_the_three_accounts_synthesize_into_their_stacks(three_accounts: SynthResult) -> None:
    assert sorted(three_accounts.templates) == [
        "sagelab-dev--platform",
        "sagelab-dev--release",
        "sagelab-dev--serving",
        "sagelab-prod--platform",
        "sagelab-prod--serving",
        "sagelab-staging--platform",
        "sagelab-staging--serving",
    ]


@pytest.mark.slow  # cfn-lint over every template of three accounts
def test_every_release_template_has_no_cfn_lint_errors(three_accounts: SynthResult) -> None:
    for name, template in three_accounts.templates.items():
        assert lint_errors(template) == [], name


def test_the_functions_package_holds_the_release_and_the_deployer_it_calls_only(three_accounts: SynthResult) -> None:
    """The package is staged from two units (stacks/release/runtime, stacks/approval_deployer/runtime)
    and the contract module both import (docs/decisions/0018): exactly those modules, and
    `release.handler` imports the deployer shipped beside it."""
    functions = three_accounts.resources("sagelab-dev--release", "AWS::Lambda::Function").values()
    (key,) = {f["Properties"]["Code"]["S3Key"] for f in functions if f["Properties"]["Handler"].startswith("release.handler.")}
    package = three_accounts.outdir / f"asset.{key.removesuffix('.zip')}"
    files = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert files == ["contract.py", "deployer/handler.py", "release/acceptance.py", "release/handler.py"]
    probe = "import release.handler as h; print(h.deployer.__file__, h.run_acceptance.__code__.co_filename)"
    completed = subprocess.run([sys.executable, "-c", probe], cwd=package, env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert all(path.startswith(str(package)) for path in completed.stdout.split()), completed.stdout


def pipeline(three_accounts: SynthResult) -> dict[str, Any]:
    (found,) = three_accounts.resources("sagelab-dev--release", "AWS::CodePipeline::Pipeline").values()
    return found["Properties"]


def test_the_stages_run_deploy_test_approve_deploy_test(three_accounts: SynthResult) -> None:
    properties = pipeline(three_accounts)
    assert properties["PipelineType"] == "V2" and properties["ExecutionMode"] == "QUEUED"
    stages = [
        (stage["Name"], [a["ActionTypeId"]["Category"] + "/" + a["ActionTypeId"]["Provider"] for a in stage["Actions"]]) for stage in properties["Stages"]
    ]
    assert stages == [
        ("Source", ["Source/S3"]),
        ("DeployStaging", ["Invoke/Lambda"]),
        ("TestStaging", ["Invoke/Lambda"]),
        ("ApproveProd", ["Approval/Manual"]),
        ("DeployProd", ["Invoke/Lambda"]),
        ("TestProd", ["Invoke/Lambda"]),
    ]
    approval = properties["Stages"][3]["Actions"][0]["Configuration"]
    assert "#{TestStaging.summary}" in approval["CustomData"] and "NotificationArn" in approval  # the evidence goes to the approvers


def test_each_action_targets_its_stage(three_accounts: SynthResult) -> None:
    import json

    for stage in pipeline(three_accounts)["Stages"][1:]:
        for action in stage["Actions"]:
            if action["ActionTypeId"]["Category"] != "Invoke":
                continue
            parameters = json.loads(action["Configuration"]["UserParameters"])
            environment = parameters["stage"]
            assert stage["Name"].lower().endswith(environment)
            assert parameters["release_role"] == role_arn(ACCOUNTS[environment], f"sagelab-{environment}--release")
            assert parameters["stack"] == f"sagelab-{environment}--serving" and parameters["model_package"] == "#{variables.ModelPackageArn}"


def test_an_approval_in_the_source_registry_starts_the_release(three_accounts: SynthResult) -> None:
    (rule,) = three_accounts.resources("sagelab-dev--release", "AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["SageMaker Model Package State Change"]
    assert pattern["detail"] == {"ModelPackageGroupName": ["sagelab-dev--models"], "ModelApprovalStatus": ["Approved"]}


def test_only_the_configured_approver_may_approve(three_accounts: SynthResult) -> None:
    dev = account_stacks(three_accounts.templates, "dev")
    policies = three_accounts.resources("sagelab-dev--release", "AWS::IAM::Policy")
    approver = [p for p in policies.values() if p["Properties"].get("Roles") == ["release-approver"]]
    (policy,) = approver
    statements = [Statement.from_json(s, "approver") for s in dev.resolve("sagelab-dev--release", policy["Properties"]["PolicyDocument"])["Statement"]]
    (logical_id,) = three_accounts.resources("sagelab-dev--release", "AWS::CodePipeline::Pipeline")
    name = dev.stand_in("sagelab-dev--release", logical_id)  # what Ref of the pipeline (its name) became
    assert is_allowed(statements, "codepipeline:PutApprovalResult", f"arn:aws:codepipeline:{REGION}:{DEV}:{name}/ApproveProd/ApproveProd")
    assert not is_allowed(statements, "codepipeline:PutApprovalResult", f"arn:aws:codepipeline:{REGION}:{DEV}:{name}/Other/Other")
    assert not is_allowed(statements, "codepipeline:PutApprovalResult", f"arn:aws:codepipeline:{REGION}:{DEV}:another-pipeline/ApproveProd/ApproveProd")


def test_promoting_environments_serve_only_the_sources_versions_and_do_not_deploy_their_own(three_accounts: SynthResult) -> None:
    import re

    for environment in ("staging", "prod"):
        template = three_accounts.template(f"sagelab-{environment}--serving")
        pattern = re.compile(template["Parameters"][MODEL_PACKAGE_PARAMETER]["AllowedPattern"])
        assert pattern.match(PACKAGE) and not pattern.match(PACKAGE.replace(DEV, ACCOUNTS[environment]))
        assert not pattern.match(f"arn:aws:sagemaker:{REGION}:{DEV}:model-package/sagelab-{environment}--models/1")
        rules = three_accounts.resources(f"sagelab-{environment}--serving", "AWS::Events::Rule").values()
        approvals = [r for r in rules if "SageMaker Model Package State Change" in str(r["Properties"].get("EventPattern"))]
        assert approvals == []  # no approval deployer listening


def test_every_cross_account_read_has_both_sides(three_accounts: SynthResult) -> None:
    assert len(needs(account_stacks(three_accounts.templates, "dev"))) == 10
    assert unproven(three_accounts.templates) == []


def test_no_other_principal_of_the_other_accounts_gets_any_of_it(three_accounts: SynthResult) -> None:
    assert other_account_grants(three_accounts.templates) == EXPECTED_GRANTS
    # And by evaluation: a stranger in each target account (another role, the root user) and another
    # role of the source account get none of what the release's principals get.
    dev = account_stacks(three_accounts.templates, "dev")
    by_env = {e: account_stacks(three_accounts.templates, e) for e in ACCOUNTS}
    owners = owner_policies(dev)
    for need in needs(dev):
        statements = (
            trust_statements(by_env[need.owner.split(":")[1]], f"sagelab-{need.owner.split(':')[1]}--release")
            if need.owner.startswith("trust:")
            else owners[need.owner]
        )
        for stranger in (
            role_arn(need.principal_account, "sagelab-staging--notebook-role"),
            f"arn:aws:iam::{need.principal_account}:root",
            role_arn(need.principal_account, "Admin"),
        ):
            assert not resource_policy_allows(statements, stranger, need.action, need.resource_as_owned, need.context), (stranger, need.why)


def test_the_endpoint_role_reads_models_of_the_source_account_only(three_accounts: SynthResult) -> None:
    staging = account_stacks(three_accounts.templates, "staging")
    objects = "arn:aws:s3:::any-bucket/models/x/model.tar.gz"
    assert identity_allows(staging, "sagelab-staging--endpoint", "s3:GetObject", objects, {"aws:ResourceAccount": DEV})
    assert not identity_allows(staging, "sagelab-staging--endpoint", "s3:GetObject", objects, {"aws:ResourceAccount": "444444444444"})


def test_the_source_key_decrypts_for_the_endpoint_role_only_through_s3(three_accounts: SynthResult) -> None:
    dev = account_stacks(three_accounts.templates, "dev")
    need = next(n for n in needs(dev) if n.action == "kms:Decrypt")
    principal = role_arn(need.principal_account, need.principal_role)
    assert resource_policy_allows(owner_policies(dev)["key"], principal, "kms:Decrypt", need.resource_as_owned, need.context)
    assert not resource_policy_allows(
        owner_policies(dev)["key"], principal, "kms:Decrypt", need.resource_as_owned, {"kms:ViaService": f"sagemaker.{REGION}.amazonaws.com"}
    )


# -- planted negative cases -------------------------------------------------------------------------
def without_statement(templates: dict[str, dict[str, Any]], stack: str, sid: str) -> dict[str, dict[str, Any]]:
    """A copy of the templates with every policy statement `sid` removed from `stack`."""
    broken = copy.deepcopy(templates)

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Statement" and isinstance(value, list):
                    value[:] = [s for s in value if not (isinstance(s, dict) and s.get("Sid") == sid)]
                strip(value)
        elif isinstance(node, list):
            for item in node:
                strip(item)

    strip(broken[stack])
    return broken


def trust_opened(templates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """staging's release role trusting the whole dev account (its PrincipalArn condition dropped)."""
    broken = copy.deepcopy(templates)
    for resource in broken["sagelab-staging--serving"]["Resources"].values():
        if resource["Type"] == "AWS::IAM::Role" and resource["Properties"].get("RoleName") == "sagelab-staging--release":
            for statement in resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
                statement.pop("Condition", None)
    return broken


@pytest.mark.parametrize(
    ("stack", "sid", "expected"),
    [
        (
            "sagelab-dev--platform",
            "DeployToStaging",
            "owner side: the group policy does not let arn:aws:iam::222222222222:role/sagelab-staging--model-deployment",
        ),
        ("sagelab-dev--platform", "ServeInProd", "owner side: the bucket policy does not let arn:aws:iam::333333333333:role/sagelab-prod--endpoint"),
        ("sagelab-staging--platform", "ReadPromotedModels", "identity side: sagelab-staging--endpoint may not s3:GetObject"),
        ("sagelab-prod--platform", "DecryptPromotedModels", "identity side: sagelab-prod--endpoint may not kms:Decrypt"),
        ("sagelab-prod--serving", "ReadModelPackages", "identity side: sagelab-prod--model-deployment may not sagemaker:DescribeModelPackage"),
        ("sagelab-dev--release", "AssumeStageReleaseRoles", "identity side: sagelab-dev--release-deploy may not sts:AssumeRole"),
    ],
)
def test_removing_one_grant_fails_the_proof(three_accounts: SynthResult, stack: str, sid: str, expected: str) -> None:
    problems = unproven(without_statement(three_accounts.templates, stack, sid))
    assert any(p.startswith(expected) for p in problems), problems


def test_widening_a_trust_fails_the_exclusivity_proof(three_accounts: SynthResult) -> None:
    grants = other_account_grants(trust_opened(three_accounts.templates))
    assert grants != EXPECTED_GRANTS and ("trust:staging", "sts:AssumeRole", ()) in grants


# -- sufficiency from field data ------------------------------------------------------------------
@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_a_promoting_deployment_role_holds_every_permission_the_registry_lists(three_accounts: SynthResult, environment: str) -> None:
    """CloudFormation's handler permissions (cfn-lint's bundled registry schemas) for every resource
    the release's update creates, updates or deletes, as in tests/test_sufficiency.py, in the
    promoting environment's own account."""
    stacks = account_stacks(three_accounts.templates, environment)
    stack = f"sagelab-{environment}--serving"
    statements = stacks.identity_policies(role(stacks, stack, "DeployerCloudFormationRole"))
    requests: Iterator[Any] = deployment_requests(stacks, stack)
    # test_sufficiency's request builder names alarms and the scaling service-linked role in its own account.
    missing = [
        f"{logical_id}: {r.action} on {r.resource}"
        for logical_id, _, r in requests
        if not is_allowed(statements, r.action, r.resource.replace(SUFFICIENCY_ACCOUNT, ACCOUNTS[environment]), r.context)
    ]
    assert not missing, missing


# -- the release functions may make every call their code makes -------------------------------------
RELEASE_CODE = REPO_ROOT / "stacks" / "release" / "runtime" / "handler.py"
# Calls made through stacks/approval_deployer/runtime's functions (tests/test_sufficiency.py finds them in that code):
# served_model_values -> sagemaker DescribeModelPackage (the function's own account); deploy(client=the
# stage's) -> cloudformation DescribeStacks and UpdateStack (the stage's account).
THROUGH_THE_DEPLOYER = {
    "deploy": [("source", "sagemaker", "describe_model_package"), ("stage", "cloudformation", "describe_stacks"), ("stage", "cloudformation", "update_stack")]
}


def release_calls() -> dict[str, set[tuple[str, str, str]]]:
    """Per handler (and the helpers it calls): (account side, service, method) of every client call,
    found with ast: `client("svc").m(...)` is the function's own account, `assumed("svc", ...).m(...)`
    the stage's, also through a variable assigned from either."""
    tree = ast.parse(RELEASE_CODE.read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}

    def origin(node: ast.expr, names: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("client", "assumed") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant):
                return ("source" if node.func.id == "client" else "stage", str(first.value))
        if isinstance(node, ast.Name):
            return names.get(node.id)
        return None

    def direct(function: ast.FunctionDef) -> set[tuple[str, str, str]]:
        names: dict[str, tuple[str, str]] = {}
        found = set()
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                made = origin(node.value, names)
                if made:
                    names[node.targets[0].id] = made
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                made = origin(node.func.value, names)
                if made and made[1] in ("sts",) and node.func.attr == "assume_role":
                    continue  # the role assumption itself is proven on both sides above
                if made:
                    found.add((made[0], made[1], node.func.attr))
        return found

    def helpers(function: ast.FunctionDef) -> set[str]:
        return {n.func.id for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions}

    calls = {}
    for name in ("start", "deploy", "test"):
        seen, todo, found = set(), [name], set()
        while todo:
            current = todo.pop()
            if current in seen or current in ("client", "assumed", "_job"):
                continue
            seen.add(current)
            found |= direct(functions[current])
            todo += list(helpers(functions[current]))
        calls[name] = found | set(THROUGH_THE_DEPLOYER.get(name, []))
    return calls


def test_the_release_functions_may_make_every_call_their_code_makes(three_accounts: SynthResult) -> None:
    calls = release_calls()
    assert calls["start"] == {("source", "codepipeline", "start_pipeline_execution")}
    assert ("stage", "apigateway", "get_api_key") in calls["test"] and ("source", "s3", "get_object") in calls["test"]
    assert calls_not_allowed(three_accounts.templates) == []


@pytest.mark.parametrize(
    ("stack", "sid", "expected"),
    [("sagelab-staging--serving", "ReadTheApiKey", "test in staging: apigateway:GET"), ("sagelab-dev--release", "ReadEvidence", "test: s3:GetObject")],
)
def test_removing_a_call_grant_fails_the_proof(three_accounts: SynthResult, stack: str, sid: str, expected: str) -> None:
    assert any(p.startswith(expected) for p in calls_not_allowed(without_statement(three_accounts.templates, stack, sid)))


def calls_not_allowed(templates: dict[str, dict[str, Any]]) -> list[str]:
    dev = account_stacks(templates, "dev")
    calls = release_calls()
    pipeline_arn = f"arn:aws:codepipeline:{REGION}:{DEV}:sagelab-dev--release"  # ResourceNames.release_pipeline
    bucket = dev.stand_in(
        "sagelab-dev--platform",
        next(k for k, r in dev.templates["sagelab-dev--platform"]["Resources"].items() if k.startswith("StorageArtifacts") and r["Type"] == "AWS::S3::Bucket"),
    )
    roles = {"start": "StartRole", "deploy": "DeployRole", "test": "TestRole"}
    missing = []
    for function, made in calls.items():
        own = dev.identity_policies(next(r for r in dev.roles() if r.stack == "sagelab-dev--release" and r.logical_id.startswith(f"Release{roles[function]}")))
        for side, service, method in sorted(made):
            model = boto3.client(service, region_name=REGION).meta
            api = model.method_to_api_mapping[method]
            # API Gateway's management actions are its HTTP verbs (botocore's operation model says which).
            action = f"apigateway:{model.service_model.operation_model(api).http['method']}" if service == "apigateway" else f"{service}:{api}"
            if side == "source":
                resource = {
                    "codepipeline": pipeline_arn,
                    "sagemaker": PACKAGE,
                    "s3": f"arn:aws:s3:::{bucket}/models/evaluations/exec-1/evaluation/evaluation.json",
                }[service]
                if api.startswith("PutJob"):
                    resource = "*"
                if not is_allowed(own, action, resource):
                    missing.append(f"{function}: {action} on {resource}")
                continue
            for environment in ("staging", "prod"):  # as the stage's release role
                stage = account_stacks(templates, environment)
                release_role = next(r for r in stage.roles() if r.name == f"sagelab-{environment}--release")
                statements = stage.identity_policies(release_role)
                stack_arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNTS[environment]}:stack/sagelab-{environment}--serving/0f5e2a10-0000-4000-8000-000000000000"
                if service == "apigateway":
                    key_id = next(
                        k for k, r in stage.templates[f"sagelab-{environment}--serving"]["Resources"].items() if r["Type"] == "AWS::ApiGateway::ApiKey"
                    )
                    resource, context = f"arn:aws:apigateway:{REGION}::/apikeys/{stage.stand_in(f'sagelab-{environment}--serving', key_id)}", {}
                elif method == "update_stack":
                    resource, context = stack_arn, {"cloudformation:RoleArn": role_arn(ACCOUNTS[environment], f"sagelab-{environment}--model-deployment")}
                else:
                    resource, context = stack_arn, {}
                if not is_allowed(statements, action, resource, context):
                    missing.append(f"{function} in {environment}: {action} on {resource}")
    return missing
