"""The spending cap for students with an AWS account of their own (#25, decision 0016).

Replay: omar's SageMaker events arrive through the class's bus from his account 222222222222
(duplicates, out of order, a missed start caught by reconciliation through the role the enforcer
assumes there); at the cap his notebook is stopped, UpdateStack is requested of HIS account's
CloudFormation and the deny of his account is attached to his roles; lift restores. Serverless
endpoints are charged from CloudWatch's ModelLatency. moto for STS, IAM, SageMaker, CloudWatch,
DynamoDB, SNS, SQS (several accounts: assumed-role credentials are the target account's); botocore's
Stubber for CloudFormation (whose UpdateStack moto does not model).

Reach, on the synthesized templates with IAM semantics (tests/iam_policy.py), both sides: the
enforcer may assume exactly the class's own-account students' spend-cap roles (its identity
policy) and each of those roles trusts only the enforcer (its trust policy); each role reaches
only its student; the class's bus accepts exactly the roster's own accounts' forwarding roles and
each forwarding role may put events only to that bus. Each proof is a function that returns what
is wrong, run on the real templates (nothing) and on planted widenings (each caught).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

moto = pytest.importorskip("moto")

from sagelab.aws_session import new_session  # noqa: E402
from sagelab.cloud_assembly import assembly_stacks  # noqa: E402
from stacks.approval_deployer.runtime import handler as deployer  # noqa: E402
from stacks.spend_cap.runtime import handler as enforcer  # noqa: E402
from stacks.spend_cap.runtime.metering import Point, spend  # noqa: E402
from tests.botocore_parses import record_parses  # noqa: E402
from tests.conftest import SynthResult, synth  # noqa: E402
from tests.iam_policy import Env, RoleRef, Stacks, Statement, conditions_hold, is_allowed, principal_names  # noqa: E402
from tests.test_cfn_lint import lint_errors  # noqa: E402

REGION = "us-east-1"
CLASS_ACCOUNT = "123456789012"
OMAR, ZOE = "222222222222", "333333333333"
STRANGER = "444444444444"
ROSTER = f"student_id,email,account_id,region\nana,ana@example.edu,,\nben,ben@example.edu,,\nomar,omar@example.edu,{OMAR},\nzoe,zoe@example.edu,{ZOE},\n"
CLASS = f"sagelab-class--{REGION}"
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
PRICES = {"ml.t3.medium": 0.05, "ml.m5.large": 0.115, "ml.m5.xlarge": 0.23}
PARAMETER, OUTPUT = "ModelPackageArn", "DeploymentRoleArn"
OMAR_ROLE = f"arn:aws:iam::{OMAR}:role/sagelab-omar--spend-cap"
OMAR_DENY = f"arn:aws:iam::{OMAR}:policy/sagelab-omar--capped-deny"
IAM_PREFIX = {"monitoring": "cloudwatch"}  # botocore's signing name -> the IAM action prefix, where they differ


@pytest.fixture(scope="session")
def own_account_class(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """Two students in the class account 123456789012 and two with their own (omar, zoe), cdk-nag on."""
    root = tmp_path_factory.mktemp("own-account-cap")
    (root / "roster.csv").write_text(ROSTER)
    (root / "class.yaml").write_text(
        f'environments:\n  dev:\n    account: "{CLASS_ACCOUNT}"\n    region: {REGION}\nclassroom:\n  admin_emails: [admin@example.edu]\n'
    )
    return synth(root / "cdk.out", {"roster": str(root / "roster.csv"), "config": str(root / "class.yaml")})


# -- replay ---------------------------------------------------------------------------------------
def at(minutes: float) -> float:
    return (T0 + timedelta(minutes=minutes)).timestamp()


def event(detail_type: str, minutes: float, account: str, **detail: Any) -> dict[str, Any]:
    """As the class's bus delivers it: EventBridge keeps the source account in `account`."""
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": detail_type,
        "time": (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "account": account,
        "detail": detail,
    }


def notebook(status: str, minutes: float, account: str = OMAR, student: str = "omar") -> dict[str, Any]:
    return event(
        "SageMaker Notebook Instance State Change",
        minutes,
        account,
        NotebookInstanceName=f"sagelab-{student}--notebook",
        NotebookInstanceStatus=status,
        InstanceType="ml.t3.medium",
    )


def training(status: str, minutes: float, account: str = OMAR) -> dict[str, Any]:
    return event(
        "SageMaker Training Job State Change",
        minutes,
        account,
        TrainingJobName="sagelab-omar--train-abc123",
        TrainingJobStatus=status,
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 4, "VolumeSizeInGB": 30},
    )


def settings(cap_usd: float = 1.0) -> enforcer.ClassSettings:
    return enforcer.ClassSettings(
        course="ml101",
        cap_usd=cap_usd,
        warn_percent=80,
        students=("ana", "omar"),
        prices=PRICES,
        model_package_parameter=PARAMETER,
        deployment_role_output=OUTPUT,
        home_account=CLASS_ACCOUNT,
        own_accounts={"omar": OMAR},
        serverless_usd_per_gb_second=0.00002,
        reconcile_minutes=10,
    )


def _session_in(account: str) -> boto3.Session:
    credentials = boto3.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/setup", RoleSessionName="test-setup")["Credentials"]
    return new_session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, moto_environment: None, own_account_class: SynthResult) -> Iterator[dict[str, Any]]:
    """The class account (table as the class template declares it, topic, its deny) and omar's
    account 222222222222 (his platform roles, his deny, his notebook), each through its own
    credentials. CloudFormation is stubbed in both: the class account's stub has no response, so
    a call there for omar fails the test."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    (table,) = (r["Properties"] for r in own_account_class.template(CLASS)["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table")
    with moto.mock_aws():
        enforcer.client.cache_clear()
        enforcer.assumed.cache_clear()
        deployer.cloudformation.cache_clear()
        boto3.client("dynamodb").create_table(
            TableName="spend", KeySchema=table["KeySchema"], AttributeDefinitions=table["AttributeDefinitions"], BillingMode=table["BillingMode"]
        )
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="warnings")["TopicArn"]
        admin = sqs.create_queue(QueueName="admin")["QueueUrl"]
        admin_arn = sqs.get_queue_attributes(QueueUrl=admin, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=admin_arn, Attributes={"RawMessageDelivery": "true"})
        deny_document = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "sagemaker:CreateTrainingJob", "Resource": "*"}]})
        class_deny = boto3.client("iam").create_policy(PolicyName="capped-deny", PolicyDocument=deny_document)["Policy"]["Arn"]
        trust = json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        )
        omar = _session_in(OMAR)
        omar_iam, omar_sagemaker = omar.client("iam"), omar.client("sagemaker")
        assert omar_iam.create_policy(PolicyName="sagelab-omar--capped-deny", PolicyDocument=deny_document)["Policy"]["Arn"] == OMAR_DENY
        roles = [
            omar_iam.create_role(RoleName=f"sagelab-omar--platform-{kind}Role-X1", AssumeRolePolicyDocument=trust)["Role"]["RoleName"]
            for kind in ("Notebook", "Pipeline")
        ]
        omar_sagemaker.create_notebook_instance(
            NotebookInstanceName="sagelab-omar--notebook", InstanceType="ml.t3.medium", RoleArn=f"arn:aws:iam::{OMAR}:role/{roles[0]}"
        )
        monkeypatch.setenv("TABLE_NAME", "spend")
        monkeypatch.setenv("TOPIC_ARN", topic)
        monkeypatch.setenv("DENY_POLICY_ARN", class_deny)
        calls: list[tuple[str, str, dict[str, Any]]] = []
        recorded = enforcer.StudentClients.client

        def recording(self: enforcer.StudentClients, service: str) -> Any:
            made = recorded(self, service)
            if not getattr(made, "_recorded", False):  # every call the enforcer makes in omar's account
                made.meta.events.register(
                    "provide-client-params",
                    lambda params, model, **_: calls.append(
                        (IAM_PREFIX.get(model.service_model.signing_name, model.service_model.signing_name), model.name, dict(params))
                    ),
                )
                made._recorded = True
            return made

        monkeypatch.setattr(enforcer.StudentClients, "client", recording)
        in_omars_account = enforcer.assumed(OMAR_ROLE).client("cloudformation")
        with Stubber(in_omars_account) as omar_stacks, Stubber(deployer.cloudformation()) as class_stacks:
            yield {
                "calls": calls,
                "omar_stacks": omar_stacks,
                "class_stacks": class_stacks,
                "roles": roles,
                "iam": omar_iam,
                "sagemaker": omar_sagemaker,
                "cloudwatch": omar.client("cloudwatch"),
                "class_deny": class_deny,
                "sqs": sqs,
                "admin": admin,
            }
            omar_stacks.assert_no_pending_responses()
        enforcer.client.cache_clear()
        enforcer.assumed.cache_clear()
        deployer.cloudformation.cache_clear()


def expect_enforcement(stubber: Stubber) -> None:
    """omar's CloudFormation calls at the cap: read his serving stack (the enforcer, then `deploy`),
    UpdateStack with an empty ModelPackageArn and the stack's own deployment role, then his
    platform stack's roles for the deny: all in his account."""
    serving = "sagelab-omar--serving"
    role = f"arn:aws:iam::{OMAR}:role/{serving}-DeployerCloudFormationRole-Z9"
    stack = {
        "StackName": serving,
        "CreationTime": T0,
        "StackStatus": "UPDATE_COMPLETE",
        "Parameters": [{"ParameterKey": PARAMETER, "ParameterValue": f"arn:aws:sagemaker:{REGION}:{OMAR}:model-package/sagelab-omar--models/1"}],
        "Outputs": [{"OutputKey": OUTPUT, "OutputValue": role}],
    }
    stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": serving})
    stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": serving})
    stubber.add_response(
        "update_stack",
        {"StackId": "id"},
        {
            "StackName": serving,
            "UsePreviousTemplate": True,
            "Parameters": [{"ParameterKey": PARAMETER, "ParameterValue": ""}],
            "Capabilities": ["CAPABILITY_IAM"],
            "RoleARN": role,
        },
    )
    expect_platform_roles(stubber)


def expect_platform_roles(stubber: Stubber) -> None:
    resources = [
        {"LogicalResourceId": f"R{i}", "PhysicalResourceId": name, "ResourceType": "AWS::IAM::Role", "Timestamp": T0, "ResourceStatus": "CREATE_COMPLETE"}
        for i, name in enumerate(["sagelab-omar--platform-NotebookRole-X1", "sagelab-omar--platform-PipelineRole-X1"])
    ]
    stubber.add_response("describe_stack_resources", {"StackResources": resources}, {"StackName": "sagelab-omar--platform"})


def calls_not_allowed(calls: list[tuple[str, str, dict[str, Any]]], result: SynthResult) -> list[str]:
    """Each call the enforcer made in omar's account, checked against the policy of the role it
    assumed there as synthesized (IAM semantics; the resources carry the class's course tag):
    what the role does not allow would fail in AWS. Sufficiency from the calls themselves."""
    stacks = Stacks({"sagelab-omar--spend-cap": result.template("sagelab-omar--spend-cap")}, Env(account=OMAR, region=REGION))
    statements = stacks.identity_policies(_role(stacks, "Enforcement"))
    sagemaker = f"arn:aws:sagemaker:{REGION}:{OMAR}"
    tagged = {"aws:ResourceTag/course": "sagelab-course"}
    kinds = {
        "NotebookInstanceName": "notebook-instance",
        "EndpointName": "endpoint",
        "EndpointConfigName": "endpoint-config",
        "TrainingJobName": "training-job",
        "ProcessingJobName": "processing-job",
        "TransformJobName": "transform-job",
    }
    refused = []
    for service, operation, params in calls:
        if service == "sts":
            continue  # the test's own GetCallerIdentity
        action = f"{service}:{operation}"
        context: dict[str, str] = dict(tagged)
        needs = []
        if service == "sagemaker":
            named = [f"{sagemaker}:{kinds[key]}/{value}" for key, value in params.items() if key in kinds]
            needs.append((action, named[0] if named else "*"))
        elif service == "cloudformation":
            if "RoleARN" in params:
                context["cloudformation:RoleArn"] = params["RoleARN"]
                needs.append(("iam:PassRole", params["RoleARN"], {**tagged, "iam:PassedToService": "cloudformation.amazonaws.com"}))
            needs.append((action, f"arn:aws:cloudformation:{REGION}:{OMAR}:stack/{params['StackName']}/guid"))
        elif service == "iam":
            context["iam:PolicyARN"] = params["PolicyArn"]
            needs.append((action, f"arn:aws:iam::{OMAR}:role/{params['RoleName']}"))
        else:
            needs.append((action, "*"))
        for need in needs:
            action_, resource = need[0], need[1]
            if not is_allowed(statements, action_, resource, need[2] if len(need) > 2 else context):  # type: ignore[misc]
                refused.append(f"{action_} on {resource}")
    return refused


def attached(aws: dict[str, Any], role: str) -> list[str]:
    return [p["PolicyArn"] for p in aws["iam"].list_attached_role_policies(RoleName=role)["AttachedPolicies"]]


def notebook_status(aws: dict[str, Any]) -> str:
    return str(aws["sagemaker"].describe_notebook_instance(NotebookInstanceName="sagelab-omar--notebook")["NotebookInstanceStatus"])


def test_events_from_the_students_account_cap_him_there_and_lift_restores(aws: dict[str, Any], own_account_class: SynthResult) -> None:
    cap = settings(cap_usd=1.0)
    # Out of order and repeated, as the bus may deliver them; the same names from another
    # account (zoe's, not omar's) and from the class account are nobody's here.
    replay = [
        (training("Completed", 65), "recorded"),
        (training("InProgress", 5), "recorded"),
        (training("InProgress", 5), "repeated"),
        (notebook("InService", 0), "recorded"),
        (notebook("InService", 0), "repeated"),
        (notebook("InService", 0, account=ZOE), "ignored"),
        (notebook("InService", 0, account=CLASS_ACCOUNT), "ignored"),
    ]
    for item, expected in replay:
        assert enforcer.handle(item, cap, at(65))["result"] == expected, item
    points = enforcer.points_of("omar")
    assert {p.resource for p in points} == {f"{OMAR}:training/sagelab-omar--train-abc123", f"{OMAR}:notebook/sagelab-omar--notebook"}
    assert spend(points, at(65)) == pytest.approx(0.92 + 0.05 * 65 / 60)
    assert notebook_status(aws) == "InService"

    expect_enforcement(aws["omar_stacks"])
    result = enforcer.handle(training("Stopped", 66, account=OMAR), cap, at(100))
    assert result["actions"] == ["notebook stopped", "endpoint deletion requested", "deny attached"]
    aws["omar_stacks"].assert_no_pending_responses()  # UpdateStack went to HIS account's CloudFormation...
    stacks_client = enforcer.assumed(OMAR_ROLE)
    assert stacks_client.client("sts").get_caller_identity()["Account"] == OMAR  # ...through the role assumed there
    assert notebook_status(aws) == "Stopped"
    for role in aws["roles"]:
        assert attached(aws, role) == [OMAR_DENY]  # his account's deny, not the class account's

    expect_platform_roles(aws["omar_stacks"])
    lifted = enforcer.handle({"action": "lift", "student": "omar", "cap_usd": 5}, cap, at(101))
    assert lifted["result"] == "lifted" and lifted["cap_usd"] == 5
    for role in aws["roles"]:
        assert attached(aws, role) == []
    assert enforcer.handle(notebook("InService", 110), cap, at(115))["actions"] == []
    assert {operation for _, operation, _ in aws["calls"]} >= {"StopNotebookInstance", "UpdateStack", "AttachRolePolicy", "DetachRolePolicy"}
    assert calls_not_allowed(aws["calls"], own_account_class) == []


def test_a_missed_start_in_the_students_account_is_caught_by_reconciliation_through_the_role(aws: dict[str, Any], own_account_class: SynthResult) -> None:
    # No event ever came; reconciliation lists omar's account through the assumed role, finds the
    # notebook running for three hours ($0.15 > $0.10) and caps him in one period.
    started = aws["sagemaker"].describe_notebook_instance(NotebookInstanceName="sagelab-omar--notebook")["LastModifiedTime"]
    now = started.timestamp() + 3 * 3600
    expect_enforcement(aws["omar_stacks"])
    result = enforcer.handle({"detail-type": "Scheduled Event", "source": "aws.events"}, settings(cap_usd=0.10), now)
    assert result == {"result": "reconciled", "capped": ["omar"]}
    assert spend(enforcer.points_of("omar"), now) == pytest.approx(0.15, rel=1e-3)
    assert notebook_status(aws) == "Stopped"
    for role in aws["roles"]:
        assert attached(aws, role) == [OMAR_DENY]
    assert {operation for _, operation, _ in aws["calls"]} >= {"ListNotebookInstances", "ListEndpoints", "ListTrainingJobs"}
    assert calls_not_allowed(aws["calls"], own_account_class) == []


def test_serverless_endpoints_are_charged_per_window_from_model_latency(aws: dict[str, Any], own_account_class: SynthResult) -> None:
    sagemaker = aws["sagemaker"]
    sagemaker.stop_notebook_instance(NotebookInstanceName="sagelab-omar--notebook")  # only the endpoint bills here
    sagemaker.create_model(ModelName="sagelab-omar--model", ExecutionRoleArn=f"arn:aws:iam::{OMAR}:role/{aws['roles'][0]}", PrimaryContainer={"Image": "x"})
    sagemaker.create_endpoint_config(
        EndpointConfigName="sagelab-omar--config",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "sagelab-omar--model", "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}
        ],
    )
    sagemaker.create_endpoint(EndpointName="sagelab-omar--endpoint", EndpointConfigName="sagelab-omar--config")
    created = sagemaker.describe_endpoint(EndpointName="sagelab-omar--endpoint")["CreationTime"].timestamp()
    dimensions = [{"Name": "EndpointName", "Value": "sagelab-omar--endpoint"}, {"Name": "VariantName", "Value": "AllTraffic"}]
    # 1,000 requests of 0.25 s in one window and 200 of 0.5 s in the next (ModelLatency in
    # microseconds; one datum per window holds the window's sum).
    period = 600
    first = created - created % period + period
    for window, (count, latency) in enumerate(((1000, 250_000.0), (200, 500_000.0))):
        stamp = datetime.fromtimestamp(first + window * period + 60, UTC)
        aws["cloudwatch"].put_metric_data(
            Namespace="AWS/SageMaker",
            MetricData=[{"MetricName": "ModelLatency", "Dimensions": dimensions, "Timestamp": stamp, "Value": count * latency, "Unit": "Microseconds"}],
        )
    now = first + 3 * period
    cap = settings(cap_usd=100)
    assert enforcer.handle({"detail-type": "Scheduled Event"}, cap, now)["result"] == "reconciled"
    charges = sorted((p for p in enforcer.points_of("omar") if p.is_charge), key=lambda p: p.at)
    # 250 s and 100 s of compute at 2 GB, $0.00002 per GB-second (sagelab/prices.csv).
    assert [(p.resource, p.at) for p in charges] == [
        (f"{OMAR}:serverless/sagelab-omar--endpoint", first),
        (f"{OMAR}:serverless/sagelab-omar--endpoint", first + period),
    ]
    assert [p.usd for p in charges] == pytest.approx([250 * 2 * 0.00002, 100 * 2 * 0.00002])
    spent = spend(enforcer.points_of("omar"), now)
    assert spent == pytest.approx(0.014)
    # A second reconciliation (repeated, or a period later with no new traffic) charges nothing twice.
    enforcer.handle({"detail-type": "Scheduled Event"}, cap, now)
    enforcer.handle({"detail-type": "Scheduled Event"}, cap, now + period)
    assert spend(enforcer.points_of("omar"), now + period) == pytest.approx(spent)
    assert ("cloudwatch", "GetMetricStatistics") in {(service, operation) for service, operation, _ in aws["calls"]}
    assert calls_not_allowed(aws["calls"], own_account_class) == []


def test_same_named_resources_of_two_accounts_are_two_resources() -> None:
    # Keyed by account: the same notebook name in two accounts is metered twice, never merged
    # (a stop in one account does not end the other's run).
    points = [
        Point(f"{OMAR}:notebook/sagelab-x--notebook", at(0), True, 0.05),
        Point(f"{ZOE}:notebook/sagelab-x--notebook", at(0), True, 0.05),
        Point(f"{ZOE}:notebook/sagelab-x--notebook", at(30), False),
    ]
    assert spend(points, at(60)) == pytest.approx(0.05 + 0.025)
    assert len({p.key for p in points[:2]}) == 2


# -- reach on the templates -----------------------------------------------------------------------
def _stacks(result: SynthResult, account: str, names: list[str]) -> Stacks:
    return Stacks({name: result.template(name) for name in names}, Env(account=account, region=REGION))


def _role(stacks: Stacks, name_part: str) -> RoleRef:
    (role,) = (r for r in stacks.roles() if name_part in r.logical_id)
    return role


def may_assume(caller_arn: str, caller: list[Statement], target: RoleRef) -> bool:
    """Cross-account sts:AssumeRole needs both sides: the caller's identity policy allows it on
    the target, and the target's trust names the caller (its ARN, its account, or anyone)."""
    caller_account = caller_arn.split(":")[4]
    context = {"aws:PrincipalArn": caller_arn, "aws:PrincipalAccount": caller_account}
    trusted = False
    for raw in target.trust_policy.get("Statement", []):
        statement = Statement.from_json(raw, "trust")
        if statement.effect != "Allow" or not any(a in ("sts:AssumeRole", "sts:*", "*") for a in statement.actions):
            continue
        for kind, value in principal_names(statement.principal):
            names = kind == "*" or (kind == "AWS" and value in ("*", caller_arn, caller_account, f"arn:aws:iam::{caller_account}:root"))
            if names and conditions_hold(statement.condition, context):
                trusted = True
    return trusted and is_allowed(caller, "sts:AssumeRole", target.arn)


def _templates(result: SynthResult) -> dict[str, dict[str, Any]]:
    return {name: copy.deepcopy(template) for name, template in result.templates.items()}


def enforcer_reach_problems(templates: dict[str, dict[str, Any]]) -> list[str]:
    """What is wrong with who may act in an own-account student's account: [] when the class's
    enforcer is the only class principal that may assume a spend-cap role, it may assume exactly
    omar's and zoe's, and each reaches only its own student."""
    problems = []
    class_stacks = Stacks({CLASS: templates[CLASS]}, Env(account=CLASS_ACCOUNT, region=REGION))
    enforcer_role = _role(class_stacks, "SpendCapFunctionRole")
    enforcer_arn = f"arn:aws:iam::{CLASS_ACCOUNT}:role/sagelab-class--spend-cap-{REGION}"
    if enforcer_role.arn != enforcer_arn:
        problems.append(f"the enforcer's role is {enforcer_role.arn}, not the name its students' roles trust")
    identity = class_stacks.identity_policies(enforcer_role)
    for student, account, other in (("omar", OMAR, "zoe"), ("zoe", ZOE, "omar")):
        stacks = Stacks({f"sagelab-{student}--spend-cap": templates[f"sagelab-{student}--spend-cap"]}, Env(account=account, region=REGION))
        target = _role(stacks, "Enforcement")
        if not may_assume(enforcer_arn, identity, target):
            problems.append(f"the enforcer may not assume {student}'s role")
        # No other principal of the class account (another class role, the account's root
        # user, a stranger) may assume it, whatever its identity policy says.
        for caller in (f"arn:aws:iam::{CLASS_ACCOUNT}:role/sagelab-ana--platform-NotebookRole-X1", f"arn:aws:iam::{STRANGER}:role/admin"):
            if may_assume(caller, [Statement("Allow", ("sts:AssumeRole",), resources=("*",))], target):
                problems.append(f"{caller} may assume {student}'s role")
        # The enforcer's side: nothing else of that account, and nothing of the name elsewhere.
        for elsewhere in (
            f"arn:aws:iam::{account}:role/sagelab-{student}--platform-NotebookRole-X1",
            f"arn:aws:iam::{account}:role/sagelab-{student}--portal",
            f"arn:aws:iam::{account}:role/sagelab-{other}--spend-cap",
            f"arn:aws:iam::{STRANGER}:role/sagelab-{student}--spend-cap",
        ):
            if is_allowed(identity, "sts:AssumeRole", elsewhere):
                problems.append(f"the enforcer may assume {elsewhere}")
        # The role reaches only its student: the same actions on another student's names fail.
        statements = stacks.identity_policies(target)
        course = {"aws:ResourceTag/course": "sagelab-course"}
        stack = f"arn:aws:cloudformation:{REGION}:{account}:stack"
        role = f"arn:aws:iam::{account}:role"
        deny = stacks.stand_in(
            f"sagelab-{student}--spend-cap", next(k for k in templates[f"sagelab-{student}--spend-cap"]["Resources"] if k.startswith("SpendCapCappedDeny"))
        )
        for who, expected in ((student, True), (other, False), ("ana", False)):
            checks = {
                "stop": is_allowed(
                    statements, "sagemaker:StopNotebookInstance", f"arn:aws:sagemaker:{REGION}:{account}:notebook-instance/sagelab-{who}--notebook", course
                ),
                "update": is_allowed(
                    statements,
                    "cloudformation:UpdateStack",
                    f"{stack}/sagelab-{who}--serving/guid",
                    {**course, "cloudformation:RoleArn": f"{role}/sagelab-{who}--serving-DeployerRole-X"},
                ),
                "pass": is_allowed(
                    statements,
                    "iam:PassRole",
                    f"{role}/sagelab-{who}--serving-DeployerRole-X",
                    {**course, "iam:PassedToService": "cloudformation.amazonaws.com"},
                ),
                "attach": is_allowed(statements, "iam:AttachRolePolicy", f"{role}/sagelab-{who}--platform-NotebookRole-X", {**course, "iam:PolicyARN": deny}),
            }
            wrong = [action for action, allowed in checks.items() if allowed != expected]
            if wrong:
                problems.append(f"{student}'s role: {wrong} on {who}'s resources should be {'allowed' if expected else 'denied'}")
        if is_allowed(
            statements,
            "iam:AttachRolePolicy",
            f"{role}/sagelab-{student}--platform-NotebookRole-X",
            {**course, "iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"},
        ):
            problems.append(f"{student}'s role may attach another policy than the deny")
    return problems


def bus_problems(templates: dict[str, dict[str, Any]]) -> list[str]:
    """[] when the class's bus accepts SageMaker events from exactly omar's and zoe's forwarding
    roles (resource side), and each forwarding role may put events only to that bus (identity side)."""
    problems = []
    class_stacks = Stacks({CLASS: templates[CLASS]}, Env(account=CLASS_ACCOUNT, region=REGION))
    bus_arn = f"arn:aws:events:{REGION}:{CLASS_ACCOUNT}:event-bus/sagelab-class--spend-cap"
    policies = [r["Properties"] for r in templates[CLASS]["Resources"].values() if r["Type"] == "AWS::Events::EventBusPolicy"]
    statements = [Statement.from_json(class_stacks.resolve(CLASS, p["Statement"]), "bus") for p in policies]

    def bus_accepts(account: str, role_arn: str, source: str = "aws.sagemaker") -> bool:
        context = {
            "aws:PrincipalArn": role_arn,
            "aws:PrincipalAccount": account,
            "events:source": source,
            "events:detail-type": "SageMaker Notebook Instance State Change",
        }
        return any(
            s.effect == "Allow"
            and is_allowed([Statement("Allow", s.actions, resources=s.resources, condition=s.condition)], "events:PutEvents", bus_arn, context)
            and any(kind == "*" or value in ("*", account, f"arn:aws:iam::{account}:root", role_arn) for kind, value in principal_names(s.principal))
            for s in statements
        )

    for student, account in (("omar", OMAR), ("zoe", ZOE)):
        forwarder = f"arn:aws:iam::{account}:role/sagelab-{student}--spend-events"
        if not bus_accepts(account, forwarder):
            problems.append(f"the bus refuses {student}'s forwarder")
        for refused in (
            (account, f"arn:aws:iam::{account}:role/sagelab-{student}--platform-NotebookRole-X1"),
            (STRANGER, f"arn:aws:iam::{STRANGER}:role/sagelab-{student}--spend-events"),
        ):
            if bus_accepts(*refused):
                problems.append(f"the bus accepts {refused[1]}")
        if bus_accepts(account, forwarder, source="com.example.spoof"):
            problems.append(f"the bus accepts {student}'s events of another source")
        stacks = Stacks({f"sagelab-{student}--spend-cap": templates[f"sagelab-{student}--spend-cap"]}, Env(account=account, region=REGION))
        identity = stacks.identity_policies(_role(stacks, "Forwarder"))
        if not is_allowed(identity, "events:PutEvents", bus_arn):
            problems.append(f"{student}'s forwarder may not put to the class's bus")
        for other in (f"arn:aws:events:{REGION}:{account}:event-bus/default", f"arn:aws:events:{REGION}:{STRANGER}:event-bus/sagelab-class--spend-cap"):
            if is_allowed(identity, "events:PutEvents", other):
                problems.append(f"{student}'s forwarder may put to {other}")
        if any(is_allowed(identity, action, "*") for action in ("events:PutRule", "events:PutTargets", "iam:PassRole", "sts:AssumeRole")):
            problems.append(f"{student}'s forwarder may do more than PutEvents")
    return problems


def test_the_enforcer_may_assume_exactly_the_students_roles_and_each_reaches_only_its_student(own_account_class: SynthResult) -> None:
    assert enforcer_reach_problems(_templates(own_account_class)) == []


def test_the_class_bus_and_the_forwarders_name_exactly_the_own_accounts(own_account_class: SynthResult) -> None:
    assert bus_problems(_templates(own_account_class)) == []


def _edit(templates: dict[str, dict[str, Any]], stack: str, logical_prefix: str, change: Callable[[dict[str, Any]], None]) -> dict[str, dict[str, Any]]:
    # The prefix and the change's kind pick one resource (an IAM role and its policy share a prefix).
    kind = "AWS::IAM::Role" if change is _trust_to_account else None
    (resource,) = (r for k, r in templates[stack]["Resources"].items() if k.startswith(logical_prefix) and kind in (None, r["Type"]))
    change(resource["Properties"])
    return templates


def _trust_to_account(properties: dict[str, Any]) -> None:
    properties["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] = {"AWS": f"arn:aws:iam::{CLASS_ACCOUNT}:root"}


def _assume_any_role(properties: dict[str, Any]) -> None:
    statement = next(s for s in properties["PolicyDocument"]["Statement"] if s.get("Sid") == "ActInOwnAccounts")
    statement["Resource"] = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::*:role/sagelab-*--spend-cap"]]}


def _role_reaches_any_student(properties: dict[str, Any]) -> None:
    for statement in properties["PolicyDocument"]["Statement"]:
        if statement.get("Sid") == "StopStudentNotebooks":
            statement["Resource"] = {
                "Fn::Join": ["", ["arn:aws:sagemaker:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}, ":notebook-instance/sagelab-*--notebook"]]
            }


def _bus_to_anyone(properties: dict[str, Any]) -> None:
    properties["Statement"]["Principal"] = {"AWS": "*"}
    del properties["Statement"]["Condition"]["ArnEquals"]


def _forwarder_to_any_bus(properties: dict[str, Any]) -> None:
    properties["PolicyDocument"]["Statement"][0]["Resource"] = "*"


@pytest.mark.parametrize(
    ("check", "stack", "logical_prefix", "change", "expected"),
    [
        (enforcer_reach_problems, "sagelab-omar--spend-cap", "SpendCapEnforcement", _trust_to_account, "may assume omar's role"),
        (enforcer_reach_problems, CLASS, "SpendCapFunctionPolicy", _assume_any_role, "the enforcer may assume"),
        (enforcer_reach_problems, "sagelab-omar--spend-cap", "SpendCapEnforcementPolicy", _role_reaches_any_student, "omar's role: ['stop'] on zoe's"),
        (bus_problems, CLASS, "SpendCapStudentEventscdk", _bus_to_anyone, "the bus accepts"),
        (bus_problems, "sagelab-zoe--spend-cap", "SpendCapForwarderDefaultPolicy", _forwarder_to_any_bus, "zoe's forwarder may put to"),
    ],
    ids=[
        "trust-widened-to-the-class-account",
        "assume-widened-to-any-student-role",
        "role-widened-to-any-notebook",
        "bus-open-to-anyone",
        "forwarder-to-any-bus",
    ],
)
def test_each_widening_is_caught(
    own_account_class: SynthResult,
    check: Callable[[dict[str, dict[str, Any]]], list[str]],
    stack: str,
    logical_prefix: str,
    change: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    problems = check(_edit(_templates(own_account_class), stack, logical_prefix, change))
    assert any(expected in problem for problem in problems), problems


def test_own_account_students_deploy_their_link_after_the_class_and_lint_clean(own_account_class: SynthResult) -> None:
    stacks = {stack.artifact_id: stack for stack in assembly_stacks(own_account_class.outdir)}
    for student in ("omar", "zoe"):
        link = stacks[f"sagelab-{student}--spend-cap"]
        assert CLASS in link.dependencies
        assert (link.account, link.region) == (OMAR if student == "omar" else ZOE, REGION)
        assert lint_errors(own_account_class.template(f"sagelab-{student}--spend-cap")) == []
    assert "sagelab-ana--spend-cap" not in own_account_class.templates  # the class account's students need none
    assert lint_errors(own_account_class.template(CLASS)) == []
    # The class file ships the own accounts to the enforcer.
    (function,) = (
        r
        for r in own_account_class.template(CLASS)["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == "enforcer.handler.lambda_handler"
    )
    class_file = Path(own_account_class.outdir) / ("asset." + str(function["Properties"]["Code"]["S3Key"]).removesuffix(".zip")) / "class.json"
    data = json.loads(class_file.read_text())
    assert data["own_accounts"] == {"omar": OMAR, "zoe": ZOE} and data["students"] == ["ana", "ben", "omar", "zoe"]


def test_own_account_students_without_a_named_class_account_fail_synth(tmp_path: Path) -> None:
    from sagelab.config import ConfigError

    (tmp_path / "roster.csv").write_text(ROSTER)
    with pytest.raises(ConfigError, match=r"own-account students \(omar, zoe\) are capped from the class account, which the config does not name"):
        synth(tmp_path / "cdk.out", {"roster": str(tmp_path / "roster.csv")})


def test_the_enforcer_renews_its_session_before_it_ends(moto_environment: None) -> None:
    with moto.mock_aws():
        enforcer.client.cache_clear()
        clients = enforcer.StudentClients(OMAR_ROLE)
        first = clients.client("sagemaker")
        assert clients.client("sagemaker") is first
        clients._expires = time.time() + 60  # within five minutes of its end
        assert clients.client("sagemaker") is not first
        enforcer.client.cache_clear()


def test_the_enforcers_sessions_in_students_accounts_share_the_parsed_models(moto_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm enforcer reaches each own-account student through the role assumed there, a session
    of its own per student, without parsing SageMaker's model (or endpoints.json) again."""
    with moto.mock_aws():
        enforcer.client.cache_clear()
        omar = enforcer.StudentClients(OMAR_ROLE)
        assert omar.client("sts").get_caller_identity()["Account"] == OMAR
        omar.client("sagemaker")
        parsed = record_parses(monkeypatch)
        zoe = enforcer.StudentClients(f"arn:aws:iam::{ZOE}:role/sagelab-zoe--spend-cap")
        zoe_sagemaker = zoe.client("sagemaker")
        assert parsed == []
        assert zoe.client("sts").get_caller_identity()["Account"] == ZOE and zoe_sagemaker.meta.region_name == REGION
        enforcer.client.cache_clear()


def test_the_cap_policies_pass_parliament_but_for_the_grants_the_reach_proof_scopes(own_account_class: SynthResult) -> None:
    """With tests/test_policy_lint.py's acknowledgments, parliament finds on the cap's policies only
    what enforcer_reach_problems proves scoped: the student role's attach/detach of the deny and
    pass of the deployment role (PERMISSIONS_MANAGEMENT_ACTIONS), and the enforcer's sts:AssumeRole
    of exactly the students' roles (CREDENTIALS_EXPOSURE; with its attach of the deny,
    PRIVILEGE_ESCALATION)."""
    from tests.test_policy_lint import _acknowledgment, findings_of

    found = {(document, issue) for document, issue, _ in findings_of(own_account_class) if "SpendCap" in document}
    scoped = {
        (d, i)
        for d, i in found
        if (d.startswith("cap/SpendCapEnforcementPolicy") and i == "PERMISSIONS_MANAGEMENT_ACTIONS")
        or (d.startswith("class/SpendCapFunctionPolicy") and i in ("CREDENTIALS_EXPOSURE", "PRIVILEGE_ESCALATION"))
    }
    assert {i for _, i in scoped} == {"PERMISSIONS_MANAGEMENT_ACTIONS", "CREDENTIALS_EXPOSURE", "PRIVILEGE_ESCALATION"}, "the check saw both sides"
    unacknowledged = sorted(f for f in found - scoped if _acknowledgment(*f) is None)
    assert not unacknowledged, unacknowledged
