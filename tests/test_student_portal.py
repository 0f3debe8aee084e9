"""The student portal in the class stack: its users per roster row, its client, the least
privilege of its function (IAM semantics over the synthesized templates, with planted negative
cases), and the handler refusing a request that names another student."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.botocore_parses import record_parses
from tests.conftest import CLASS_ACCOUNT, CLASS_OWN, CLASS_SHARED_IDS, SynthResult
from tests.iam_policy import Env, Stacks, Statement, action_matches, is_allowed
from tests.test_least_privilege import example_resources

ENV = Env(partition="aws", region="us-east-1", account=CLASS_ACCOUNT)
CLASS_STACK = "sagelab-class--us-east-1"
OWN_ACCOUNT = CLASS_OWN["dave"][0]
# conftest's class of 40: alice, bob, s02..s39 in the class account and two own-account rows, dave
# (another region) and erin (carol of `shared_class` is on neither roster).
SHARED_IDS = CLASS_SHARED_IDS
OWN = CLASS_OWN
# Everything the portal's function may do. Nothing reads or writes data (S3, KMS, endpoints).
PORTAL_ACTIONS = {
    "sagemaker:createpresignednotebookinstanceurl",
    "sagemaker:describenotebookinstance",
    "sagemaker:describeendpoint",
    "sagemaker:listpipelineexecutions",
    "cloudformation:describestacks",
    "budgets:viewbudget",
    "sts:assumerole",
    "logs:createlogstream",
    "logs:putlogevents",
    "xray:puttracesegments",
    "xray:puttelemetryrecords",
}
DATA_ACTIONS = ("s3:GetObject", "s3:PutObject", "kms:Decrypt", "sagemaker:InvokeEndpoint", "sagemaker:CreatePresignedDomainUrl", "iam:PassRole")


PORTAL_ROLE = f"arn:aws:iam::{ENV.account}:role/sagelab-class--portal-us-east-1"


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == resource_type}


def portal_statements(stacks: Stacks) -> list[Statement]:
    (role,) = [role for role in stacks.roles() if role.stack == CLASS_STACK and role.logical_id.startswith("PortalFunctionRole")]
    return stacks.identity_policies(role)


def notebook(student: str, region: str = "us-east-1", account: str = ENV.account) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:notebook-instance/sagelab-{student}--notebook"


def portal_reach_problems(stacks: Stacks, class_students: tuple[str, ...], own_account: dict[str, str]) -> Iterator[str]:
    """What the portal's function can do beyond presigning and reading its class's own students."""
    statements = portal_statements(stacks)
    for statement in statements:
        for action in statement.actions:
            if not any(action_matches(action, allowed) for allowed in PORTAL_ACTIONS) or "*" in action:
                yield f"{statement.source}: action {action} is not one the portal needs"
    for student in class_students:
        if not is_allowed(statements, "sagemaker:CreatePresignedNotebookInstanceUrl", notebook(student)):
            yield f"cannot presign {student}'s notebook"
    outsiders = [notebook("dev"), notebook("alice-2"), notebook("carol-x"), notebook("alice", account="999999999999"), "*"]
    outsiders += [notebook(student) for student in ("carol", "eve") if student not in class_students]
    for arn in outsiders:
        if is_allowed(statements, "sagemaker:CreatePresignedNotebookInstanceUrl", arn):
            yield f"may presign {arn}, which is not a notebook of this class"
    for student in class_students:
        for arn in example_resources(stacks, student):
            for action in DATA_ACTIONS:
                if is_allowed(statements, action, arn):
                    yield f"may {action} {arn}"
    for student, account in own_account.items():
        own_role = f"arn:aws:iam::{account}:role/sagelab-{student}--portal"
        if not is_allowed(statements, "sts:AssumeRole", own_role):
            yield f"cannot assume {own_role}"
        for other in (f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", f"arn:aws:iam::{account}:role/sagelab-{student}--notebook-role"):
            if is_allowed(statements, "sts:AssumeRole", other):
                yield f"may assume {other}"


@pytest.mark.slow  # the class of 40 (a 20 s synth): the class-wide property at a real class's scale
def test_the_pool_has_one_invited_user_per_roster_row_and_no_self_sign_up(class_of_40: SynthResult, shared_class: SynthResult) -> None:
    template = class_of_40.template(CLASS_STACK)
    (pool,) = _resources(template, "AWS::Cognito::UserPool").values()
    assert pool["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    policy = pool["Properties"]["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12 and all(policy[f"Require{character_class}"] for character_class in ("Lowercase", "Uppercase", "Numbers", "Symbols"))
    assert pool["Properties"]["MfaConfiguration"] == "OPTIONAL"
    users = {user["Properties"]["Username"]: user["Properties"] for user in _resources(template, "AWS::Cognito::UserPoolUser").values()}
    assert {name for name in users if not name.startswith("admin.")} == {*SHARED_IDS, *OWN}
    assert {name: users[name]["UserAttributes"][0]["Value"] for name in users if name.startswith("admin.")} == {"admin.1": "teacher@example.edu"}
    assert users["alice"]["DesiredDeliveryMediums"] == ["EMAIL"]
    assert {"Name": "email", "Value": "alice@example.edu"} in users["alice"]["UserAttributes"]
    # The same class with carol instead of dave: a row removed is a user gone on the next deploy.
    shared_users = {u["Properties"]["Username"] for u in _resources(shared_class.template(CLASS_STACK), "AWS::Cognito::UserPoolUser").values()}
    assert "dave" not in shared_users and "carol" in shared_users and "carol" not in users


@pytest.mark.slow  # the class of 40 (a 20 s synth): the class-wide property at a real class's scale (IAM and Lambda size limits)
def test_a_class_of_forty_and_own_account_rows_is_clean_and_within_iam_and_lambda_limits(class_of_40: SynthResult) -> None:
    from tests.test_cfn_lint import lint_errors

    # Synth raised on any unacknowledged cdk-nag finding; the reports say so too.
    for report in class_of_40.outdir.rglob("validation-report.json"):
        assert all(not plugin["violations"] for plugin in json.loads(report.read_text())["pluginReports"]), report
    for name in (CLASS_STACK, "sagelab-dave--platform", "sagelab-erin--platform", "sagelab-alice--platform"):
        assert lint_errors(class_of_40.template(name)) == [], name
    stacks = Stacks(class_of_40.templates, ENV)
    template = class_of_40.template(CLASS_STACK)
    policies = _resources(template, "AWS::IAM::ManagedPolicy")
    for logical_id, policy in policies.items():
        document = stacks.resolve(CLASS_STACK, policy["Properties"]["PolicyDocument"])
        assert len(json.dumps(document, separators=(",", ":"))) <= 6144, f"{logical_id} is over IAM's 6,144 characters"
    (role_id,) = [k for k in _resources(template, "AWS::IAM::Role") if k.startswith("PortalFunctionRole")]
    attached = [p for p in policies.values() if {"Ref": role_id} in p["Properties"].get("Roles", [])]
    assert len(attached) <= 10, "a role takes at most 10 managed policies"
    (function,) = [f for k, f in _resources(template, "AWS::Lambda::Function").items() if k.startswith("PortalFunction")]
    variables = stacks.resolve(CLASS_STACK, function["Properties"]["Environment"]["Variables"])
    assert sum(len(k) + len(v) for k, v in variables.items()) <= 4096, "Lambda's environment is at most 4 KB"


@pytest.mark.slow  # the class of 40 (a 20 s synth): the class-wide property at a real class's scale
def test_the_page_client_can_write_no_attribute_and_identity_is_the_username(class_of_40: SynthResult) -> None:
    """Who a caller is comes from `cognito:username`, which the admin side sets; the client may
    write no attribute at all (so not `email`, nor any custom one)."""
    (client,) = _resources(class_of_40.template(CLASS_STACK), "AWS::Cognito::UserPoolClient").values()
    assert client["Properties"]["WriteAttributes"] == []
    assert client["Properties"]["AllowedOAuthFlows"] == ["code"] and client["Properties"]["GenerateSecret"] is False
    methods = _resources(class_of_40.template(CLASS_STACK), "AWS::ApiGateway::Method").values()
    public = [m for m in methods if m["Properties"]["AuthorizationType"] != "COGNITO_USER_POOLS"]
    assert len(public) == 1 and public[0]["Properties"]["ResourceId"] == {"Fn::GetAtt": [public[0]["Properties"]["RestApiId"]["Ref"], "RootResourceId"]}


@pytest.mark.slow  # the class of 40 (a 20 s synth): the class-wide property at a real class's scale
def test_the_portal_function_presigns_only_its_class_and_reads_no_data(class_of_40: SynthResult, shared_class: SynthResult) -> None:
    own_accounts = {student: account for student, (account, _region) in OWN.items()}
    assert list(portal_reach_problems(Stacks(class_of_40.templates, ENV), SHARED_IDS, own_accounts)) == []
    assert list(portal_reach_problems(Stacks(shared_class.templates, ENV), ("alice", "bob", "carol"), {})) == []


@pytest.mark.slow  # the class of 40 (a 20 s synth): the class-wide property at a real class's scale
@pytest.mark.parametrize(
    "planted",
    [
        {"Action": "sagemaker:CreatePresignedNotebookInstanceUrl", "Resource": "arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/sagelab-*"},
        {"Action": "s3:GetObject", "Resource": "*"},
        {"Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{OWN_ACCOUNT}:role/*"},
    ],
    ids=["every-notebook", "data", "any-role-in-their-account"],
)
def test_the_reach_check_finds_a_planted_widening(class_of_40: SynthResult, planted: dict[str, str]) -> None:
    templates = json.loads(json.dumps(class_of_40.templates))
    resources = templates[CLASS_STACK]["Resources"]
    policy_id = next(key for key, value in resources.items() if key.startswith("PortalStudents") and value["Type"] == "AWS::IAM::ManagedPolicy")
    resources[policy_id]["Properties"]["PolicyDocument"]["Statement"].append({"Sid": "Planted", "Effect": "Allow", **planted})
    assert list(portal_reach_problems(Stacks(templates, ENV), ("alice", "bob"), {"dave": OWN_ACCOUNT}))


@pytest.mark.slow  # the class of 40 (a 20 s synth): the class-wide property at a real class's scale
def test_an_own_account_students_portal_role_trusts_only_the_portal_and_reaches_only_them(class_of_40: SynthResult) -> None:
    stacks = Stacks(class_of_40.templates, ENV)
    (function_role,) = [r for r in stacks.roles() if r.stack == CLASS_STACK and r.logical_id.startswith("PortalFunctionRole")]
    assert class_of_40.template(CLASS_STACK)["Resources"][function_role.logical_id]["Properties"]["RoleName"] == "sagelab-class--portal-us-east-1"
    (role,) = [r for r in stacks.roles() if r.stack == "sagelab-dave--platform" and r.logical_id.startswith("PortalPresign")]
    properties = class_of_40.template("sagelab-dave--platform")["Resources"][role.logical_id]["Properties"]
    assert properties["RoleName"] == "sagelab-dave--portal"
    assert properties["AssumeRolePolicyDocument"]["Statement"] == [{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": PORTAL_ROLE}}]
    statements = stacks.identity_policies(role)
    assert is_allowed(statements, "sagemaker:CreatePresignedNotebookInstanceUrl", notebook("dave", "eu-west-1"))
    for arn in (notebook("alice"), notebook("dave"), notebook("dave-2", "eu-west-1"), "*"):
        assert not is_allowed(statements, "sagemaker:CreatePresignedNotebookInstanceUrl", arn), arn
    assert {action.lower() for statement in statements for action in statement.actions} <= PORTAL_ACTIONS
    for arn in example_resources(stacks, "dave"):
        assert not any(is_allowed(statements, action, arn) for action in DATA_ACTIONS), arn
    # Shared-account students need no such role: the portal presigns with its own.
    assert not [r for r in stacks.roles() if r.stack == "sagelab-alice--platform" and r.logical_id.startswith("PortalPresign")]


# -- the handler: who may open what -----------------------------------------------------------------
class RecordingEnvironments:
    """The handler's environments for these tests: records whose notebook was presigned."""

    def __init__(self) -> None:
        self.presigned: list[str] = []

    def notebook_url(self, student: Any) -> str:
        self.presigned.append(student.student_id)
        return f"https://example.invalid/{student.student_id}"

    def status(self, student: Any) -> dict[str, str]:
        return {"notebook_status": "InService", "last_run": "none", "budget_limit_usd": "n/a: access denied: arn:aws:iam::210987654321:role/x", "api_url": ""}


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from stacks.student_portal.runtime import handler as module

    monkeypatch.setenv("STUDENTS", json.dumps({"alice": "", "bob": "", "dave": f"{OWN_ACCOUNT}/eu-west-1"}))
    monkeypatch.setenv("REGION", "us-east-1")
    monkeypatch.setenv("CLIENT_ID", "client-1")
    module.settings.cache_clear()
    monkeypatch.setattr(module, "environments", RecordingEnvironments())
    yield module
    module.settings.cache_clear()


def _event(path: str, claims: dict[str, str] | None) -> dict[str, Any]:
    return {
        "resource": path,
        "path": path,
        "httpMethod": "GET",
        "headers": {},
        "requestContext": {"requestId": "r-1", "resourcePath": path, "httpMethod": "GET", "authorizer": {"claims": claims} if claims else {}},
        "body": None,
    }


def _call(handler: Any, path: str, claims: dict[str, str] | None) -> tuple[int, dict[str, Any]]:
    from sagelab.local.serve import LambdaContextStandIn

    response = handler.lambda_handler(_event(path, claims), LambdaContextStandIn())
    return response["statusCode"], json.loads(response["body"])


ALICE = {"cognito:username": "alice", "token_use": "id", "aud": "client-1", "email": "alice@example.edu"}


def test_a_student_sees_their_status_without_aws_details(handler: Any) -> None:
    status, body = _call(handler, "/students/alice", ALICE)
    assert status == 200 and body["student"] == "alice" and body["notebook_status"] == "InService"
    assert body["budget_limit_usd"] == "not available" and "210987654321" not in json.dumps(body)
    assert "'2. Run the pipeline'" in body["next_step"]


def test_a_student_gets_their_own_notebook_url(handler: Any) -> None:
    status, body = _call(handler, "/students/alice/notebook", ALICE)
    assert (status, body["url"]) == (200, "https://example.invalid/alice") and handler.environments.presigned == ["alice"]


@pytest.mark.parametrize("path", ["/students/bob/notebook", "/students/bob", "/students/dave/notebook"])
def test_a_request_edited_to_name_another_student_is_refused(handler: Any, path: str) -> None:
    status, body = _call(handler, path, ALICE)
    other = path.split("/")[2]
    assert status == 403
    assert body["message"] == f"you are signed in as 'alice' and may open only 'alice''s environment, not '{other}'"
    assert handler.environments.presigned == []


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        (None, 401),
        ({**ALICE, "aud": "another-client"}, 401),
        ({**ALICE, "token_use": "access"}, 401),
        ({**ALICE, "cognito:username": "mallory"}, 403),
    ],
    ids=["no-claims", "other-client", "access-token", "not-on-roster"],
)
def test_only_an_id_token_of_a_roster_student_opens_a_notebook(handler: Any, claims: dict[str, str] | None, status: int) -> None:
    answer, body = _call(handler, "/students/mallory/notebook" if claims and claims["cognito:username"] == "mallory" else "/students/alice/notebook", claims)
    assert answer == status and body["message"] and handler.environments.presigned == []


def test_a_notebook_that_cannot_be_presigned_answers_502_with_what_to_do(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    def refuse(student: Any) -> str:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "arn:aws:iam::210987654321:role/x is not authorized"}}, "AssumeRole")

    monkeypatch.setattr(handler.environments, "notebook_url", refuse)
    status, body = _call(handler, "/students/dave/notebook", {**ALICE, "cognito:username": "dave"})
    assert (status, body["error"]) == (502, "NotebookUnavailable") and "AccessDenied" in body["message"] and "210987654321" not in body["message"]


def test_the_class_report_is_for_admins_only(handler: Any) -> None:
    assert _call(handler, "/class", ALICE)[0] == 403
    status, body = _call(handler, "/class", {**ALICE, "cognito:username": "admin.1", "cognito:groups": "admins"})
    assert status == 200 and [row["student"] for row in body["students"]] == ["alice", "bob", "dave"]


@pytest.mark.parametrize(
    "status",
    [
        {"notebook_status": "Stopped", "last_run": "none"},
        {"notebook_status": "InService", "last_run": "none"},
        {"notebook_status": "InService", "last_run": "2026-12-01 10:00 UTC", "last_run_status": "Executing"},
        {"notebook_status": "InService", "last_run": "2026-12-01 10:00 UTC", "last_run_status": "Failed"},
        {"notebook_status": "InService", "last_run": "2026-12-01 10:00 UTC", "last_run_status": "Succeeded"},
    ],
    ids=["stopped", "no-run", "running", "failed", "succeeded"],
)
def test_each_next_step_names_sections_the_lab_has(handler: Any, status: dict[str, Any]) -> None:
    import re

    notebook = json.loads((Path(__file__).resolve().parent.parent / "sagelab" / "notebooks" / "sagemaker_lab.ipynb").read_text())
    headings = [
        line.lstrip("# ")
        for cell in notebook["cells"]
        if cell["cell_type"] == "markdown"
        for line in "".join(cell["source"]).splitlines()
        if line.startswith("#")
    ]
    cited = re.findall(r"'(\d+\. .+?)'(?=[) ,.:]|$)", handler.next_step(status))
    assert cited and all(any(heading.startswith(section) for heading in headings) for section in cited), cited


def test_the_page_loads_nothing_from_outside() -> None:
    page = (Path(__file__).resolve().parent.parent / "stacks" / "student_portal" / "runtime" / "page.html").read_text()
    assert "<script src" not in page and "<link" not in page and "@import" not in page


# -- sufficiency: every call the handler makes is allowed ------------------------------------------
HANDLER_CODE = Path(__file__).resolve().parent.parent / "stacks" / "student_portal" / "runtime" / "handler.py"
# Budgets authorizes its read APIs as budgets:ViewBudget (Service Authorization Reference).
IAM_ACTIONS = {"budgets:DescribeBudget": "budgets:ViewBudget"}
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}


def handler_api_calls() -> set[str]:
    """`service:Operation` of every boto3 client method the portal's code calls or hands to
    `translate`: the handler, class_report.student_status and AwsOperations.stack_outputs."""
    import ast

    import boto3

    root = Path(__file__).resolve().parent.parent
    trees = [ast.parse(HANDLER_CODE.read_text())]
    for path, function in (("sagelab/class_report.py", "student_status"), ("sagelab/aws_ops.py", "stack_outputs")):
        (found,) = [n for n in ast.walk(ast.parse((root / path).read_text())) if isinstance(n, ast.FunctionDef) and n.name == function]
        trees.append(found)  # type: ignore[arg-type]
    mappings = {
        service: boto3.client(service, region_name="us-east-1").meta.method_to_api_mapping for service in ("sagemaker", "cloudformation", "budgets", "sts")
    }
    calls = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                for service, mapping in mappings.items():
                    # `ops.sagemaker.x`, `sagemaker.x`, `client("budgets").x`, `boto3.client("sts").x`
                    owner = ast.unparse(node.value)
                    if node.attr in mapping and service in owner:
                        calls.add(f"{service}:{mapping[node.attr]}")
    return calls


def _resource(action: str, student: str, region: str, account: str) -> str:
    return {
        "sagemaker:CreatePresignedNotebookInstanceUrl": notebook(student, region, account),
        "sagemaker:DescribeNotebookInstance": notebook(student, region, account),
        "sagemaker:DescribeEndpoint": f"arn:aws:sagemaker:{region}:{account}:endpoint/sagelab-{student}--endpoint",
        "sagemaker:ListPipelineExecutions": f"arn:aws:sagemaker:{region}:{account}:pipeline/sagelab-{student}--pipeline",
        "cloudformation:DescribeStacks": f"arn:aws:cloudformation:{region}:{account}:stack/sagelab-{student}--serving/0f5e2a10-0000-4000-8000-000000000000",
        "budgets:ViewBudget": f"arn:aws:budgets::{account}:budget/sagelab-{student}--monthly",
    }[action]


@pytest.mark.slow  # the class of 40 (a 20 s synth): the class-wide property at a real class's scale
def test_the_portal_may_make_every_call_its_handler_makes(class_of_40: SynthResult) -> None:
    calls = handler_api_calls()
    assert calls == {
        "sagemaker:CreatePresignedNotebookInstanceUrl",
        "sagemaker:DescribeNotebookInstance",
        "sagemaker:DescribeEndpoint",
        "sagemaker:ListPipelineExecutions",
        "cloudformation:DescribeStacks",
        "budgets:DescribeBudget",
        "sts:AssumeRole",
        "sts:GetCallerIdentity",
    }
    stacks = Stacks(class_of_40.templates, ENV)
    function = portal_statements(stacks)
    (dave_role,) = [r for r in stacks.roles() if r.stack == "sagelab-dave--platform" and r.logical_id.startswith("PortalPresign")]
    dave = stacks.identity_policies(dave_role)
    for call in sorted(calls - NEEDS_NO_PERMISSION):
        action = IAM_ACTIONS.get(call, call)
        if action == "sts:AssumeRole":  # own-account students only, their portal role only
            assert is_allowed(function, action, f"arn:aws:iam::{OWN_ACCOUNT}:role/sagelab-dave--portal")
            continue
        assert is_allowed(function, action, _resource(action, "alice", "us-east-1", ENV.account)), action
        assert not is_allowed(function, action, _resource(action, "carol", "us-east-1", ENV.account)), action
        # In dave's stack the account is the stack's own (the model resolves it to ENV's account).
        assert is_allowed(dave, action, _resource(action, "dave", "eu-west-1", ENV.account)), action


def test_the_function_ships_every_project_module_it_imports() -> None:
    """The function's asset is its handler, page and the shipped modules: importing the handler
    and what it imports lazily (class_report, aws_ops, aws_session) loads no project module from elsewhere."""
    import subprocess
    import sys

    from stacks.student_portal.construct import staged_runtime

    directory = staged_runtime()
    probe = (
        "import json, sys; sys.path.insert(0, '.'); import handler, sagelab.class_report, sagelab.aws_ops, sagelab.aws_session; "
        "print(json.dumps({n: getattr(m, '__file__', '') for n, m in sys.modules.items() if n.split('.')[0] in ('handler', 'sagelab', 'stacks', 'pipeline_steps')}))"
    )
    completed = subprocess.run([sys.executable, "-I", "-c", probe], cwd=directory, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    loaded = json.loads(completed.stdout)
    assert {"handler", "sagelab.class_report", "sagelab.aws_ops", "sagelab.aws_session", "sagelab.naming"} <= set(loaded)
    assert all(Path(path).resolve().is_relative_to(directory.resolve()) for path in loaded.values() if path), loaded


# -- the AWS side: a session per student, one parse of botocore's data --------------------------------
def test_each_student_is_read_through_a_session_of_their_own_and_the_models_are_parsed_once(moto_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm portal reads own-account students through their portal roles, each in a session of
    its own (their account, their region); the second student's reading parses no service model,
    endpoints.json or rule set again (the function makes these sessions per request)."""
    moto = pytest.importorskip("moto")
    from sagelab.aws_session import new_session
    from stacks.student_portal.runtime import handler as module

    dave, erin = module.PortalStudent("dave", OWN_ACCOUNT, "eu-west-1"), module.PortalStudent("erin", "444455556666", "us-east-2")
    with moto.mock_aws():
        module.own_sts.cache_clear()
        # In dave's account: his notebook, and one named as erin's (her reading must not see it).
        assumed = new_session(region_name="us-east-1").client("sts").assume_role(RoleArn=f"arn:aws:iam::{OWN_ACCOUNT}:role/setup", RoleSessionName="setup")
        keys = assumed["Credentials"]
        in_daves = new_session(
            region_name="eu-west-1",
            aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"],
            aws_session_token=keys["SessionToken"],
        ).client("sagemaker")
        for name in ("sagelab-dave--notebook", "sagelab-erin--notebook"):
            in_daves.create_notebook_instance(NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn=f"arn:aws:iam::{OWN_ACCOUNT}:role/nb")
        environments = module.AwsEnvironments()
        daves = environments.status(dave)
        parsed = record_parses(monkeypatch)
        erins = environments.status(erin)
        assert parsed == []
        module.own_sts.cache_clear()
    assert daves["notebook_status"] == "InService"
    assert erins["notebook_status"] == "none"  # her account (and region) has no notebook


# -- the local sign-in stand-in: the authorizer's checks ----------------------------------------------
def test_the_local_sign_in_accepts_only_its_own_unexpired_untampered_tokens() -> None:
    import base64

    from sagelab.local.portal import Account, LocalSignIn

    sign_in = LocalSignIn()
    alice = Account("alice", "alice@example.edu", ())
    token = sign_in.token(alice, now=1_000)
    assert sign_in.verify(token, now=1_001)["cognito:username"] == "alice"
    assert sign_in.verify(token, now=1_000 + 3_601) is None  # expired
    assert LocalSignIn().verify(token, now=1_001) is None  # another run's key
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "cognito:username": "bob"}).encode()).rstrip(b"=").decode()
    assert sign_in.verify(f"{header}.{forged}.{signature}", now=1_001) is None  # claims edited to name bob


def test_a_sign_in_code_is_good_once_and_only_with_its_verifier() -> None:
    import base64
    import hashlib

    from sagelab.local.portal import Account, LocalSignIn

    sign_in = LocalSignIn()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(b"the-verifier").digest()).rstrip(b"=").decode()
    code = sign_in.code_for(Account("alice", "alice@example.edu", ()), challenge)
    assert sign_in.redeem(code, "another-verifier") is None
    code = sign_in.code_for(Account("alice", "alice@example.edu", ()), challenge)
    assert sign_in.redeem(code, "the-verifier") == Account("alice", "alice@example.edu", ())
    assert sign_in.redeem(code, "the-verifier") is None
