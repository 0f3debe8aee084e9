"""The spending cap's enforcer replayed against realistic SageMaker event sequences (duplicates,
out of order, a missed event caught by reconciliation): moto for DynamoDB, SNS, SQS, IAM and
SageMaker; botocore's Stubber for CloudFormation (whose UpdateStack moto does not model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

moto = pytest.importorskip("moto")

from stacks.approval_deployer.runtime import handler as deployer  # noqa: E402
from stacks.spend_cap.runtime import handler as enforcer  # noqa: E402
from stacks.spend_cap.runtime.metering import Point, reconcile, spend  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
PRICES = {"ml.t3.medium": 0.05, "ml.m5.large": 0.115, "ml.m5.xlarge": 0.23}
PARAMETER, OUTPUT = "ModelPackageArn", "DeploymentRoleArn"


def at(minutes: float) -> float:
    return (T0 + timedelta(minutes=minutes)).timestamp()


def event(detail_type: str, minutes: float, **detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": detail_type,
        "time": (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "account": ACCOUNT,
        "detail": detail,
    }


def notebook(status: str, minutes: float, student: str = "ana") -> dict[str, Any]:
    return event(
        "SageMaker Notebook Instance State Change",
        minutes,
        NotebookInstanceName=f"sagelab-{student}--notebook",
        NotebookInstanceStatus=status,
        InstanceType="ml.t3.medium",
    )


def training(status: str, minutes: float, student: str = "ana") -> dict[str, Any]:
    return event(
        "SageMaker Training Job State Change",
        minutes,
        TrainingJobName=f"sagelab-{student}--train-abc123",
        TrainingJobStatus=status,
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 4, "VolumeSizeInGB": 30},
        Tags={"sagemaker:pipeline-execution-arn": "x"},
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, moto_environment: None, shared_class: Any) -> Iterator[dict[str, Any]]:
    """A class account: the table as the class template declares it, the topic with an SQS queue
    per reader (a student's filtered subscription, an admin's), the students' platform roles and
    the class's deny policy, and a notebook instance per student."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    class_template = shared_class.template(f"sagelab-class--{REGION}")
    (table,) = (r["Properties"] for r in class_template["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table")
    with moto.mock_aws():
        enforcer.client.cache_clear()
        deployer.cloudformation.cache_clear()
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName="spend", KeySchema=table["KeySchema"], AttributeDefinitions=table["AttributeDefinitions"], BillingMode=table["BillingMode"]
        )
        sns, sqs, iam, sagemaker = (boto3.client(s) for s in ("sns", "sqs", "iam", "sagemaker"))
        topic = sns.create_topic(Name="warnings")["TopicArn"]
        queues = {}
        for reader, policy in (("ana", {"student": ["ana"]}), ("ben", {"student": ["ben"]}), ("admin", None)):
            url = sqs.create_queue(QueueName=reader)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attributes = {"RawMessageDelivery": "true", **({"FilterPolicy": json.dumps(policy)} if policy else {})}
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attributes)
            queues[reader] = url
        deny = iam.create_policy(
            PolicyName="capped-deny",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "sagemaker:CreateTrainingJob", "Resource": "*"}]}),
        )["Policy"]["Arn"]
        trust = json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        )
        roles = {}
        for student in ("ana", "ben"):
            roles[student] = [
                iam.create_role(RoleName=f"sagelab-{student}--platform-{kind}Role-X1", AssumeRolePolicyDocument=trust)["Role"]["RoleName"]
                for kind in ("Notebook", "Pipeline")
            ]
            sagemaker.create_notebook_instance(
                NotebookInstanceName=f"sagelab-{student}--notebook", InstanceType="ml.t3.medium", RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{roles[student][0]}"
            )
        monkeypatch.setenv("TABLE_NAME", "spend")
        monkeypatch.setenv("TOPIC_ARN", topic)
        monkeypatch.setenv("DENY_POLICY_ARN", deny)
        cloudformation = deployer.cloudformation()
        with Stubber(cloudformation) as stubber:
            yield {"queues": queues, "roles": roles, "deny": deny, "stubber": stubber, "sqs": sqs, "iam": iam, "sagemaker": sagemaker}
            stubber.assert_no_pending_responses()
        enforcer.client.cache_clear()
        deployer.cloudformation.cache_clear()


def settings(cap_usd: float = 1.0) -> enforcer.ClassSettings:
    return enforcer.ClassSettings(
        course="ml101",
        cap_usd=cap_usd,
        warn_percent=80,
        students=("ana", "ben"),
        prices=PRICES,
        model_package_parameter=PARAMETER,
        deployment_role_output=OUTPUT,
        home_account=ACCOUNT,
    )


def expect_enforcement(
    stubber: Stubber, student: str, serving_model: str = "arn:aws:sagemaker:us-east-1:123456789012:model-package/sagelab-ana--models/3"
) -> None:
    """The CloudFormation calls of one enforcement: read the serving stack (the enforcer, then the
    deployer's `deploy`), UpdateStack with an empty ModelPackageArn and the stack's deployment
    role, then the platform stack's roles for the deny."""
    serving = f"sagelab-{student}--serving"
    role = f"arn:aws:iam::{ACCOUNT}:role/{serving}-DeployerCloudFormationRole-Z9"
    stack = {
        "StackName": serving,
        "CreationTime": T0,
        "StackStatus": "UPDATE_COMPLETE",
        "Parameters": [{"ParameterKey": PARAMETER, "ParameterValue": serving_model}, {"ParameterKey": "ModelAlgorithm", "ParameterValue": "xgboost"}],
        "Outputs": [{"OutputKey": OUTPUT, "OutputValue": role}],
    }
    stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": serving})
    stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": serving})
    if serving_model:
        stubber.add_response(
            "update_stack",
            {"StackId": "id"},
            {
                "StackName": serving,
                "UsePreviousTemplate": True,
                "Parameters": [{"ParameterKey": PARAMETER, "ParameterValue": ""}, {"ParameterKey": "ModelAlgorithm", "UsePreviousValue": True}],
                "Capabilities": ["CAPABILITY_IAM"],
                "RoleARN": role,
            },
        )
    platform_roles = [
        {"LogicalResourceId": f"R{i}", "PhysicalResourceId": name, "ResourceType": "AWS::IAM::Role", "Timestamp": T0, "ResourceStatus": "CREATE_COMPLETE"}
        for i, name in enumerate([f"sagelab-{student}--platform-NotebookRole-X1", f"sagelab-{student}--platform-PipelineRole-X1"])
    ]
    stubber.add_response("describe_stack_resources", {"StackResources": platform_roles}, {"StackName": f"sagelab-{student}--platform"})


def messages(aws: dict[str, Any], reader: str) -> list[str]:
    got = aws["sqs"].receive_message(QueueUrl=aws["queues"][reader], MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in got]


def attached(aws: dict[str, Any], role: str) -> list[str]:
    return [p["PolicyArn"] for p in aws["iam"].list_attached_role_policies(RoleName=role)["AttachedPolicies"]]


def test_replayed_events_warn_once_then_cap_within_one_event_and_lift_restores(aws: dict[str, Any]) -> None:
    cap = settings(cap_usd=1.0)
    stubber = aws["stubber"]
    # Out of order and repeated, as EventBridge may deliver them: the job's end first, its start
    # twice, the notebook's start last. A notebook of another student, and a job of no student.
    replay = [
        (training("Completed", 65), "recorded"),
        (training("InProgress", 5), "recorded"),
        (training("InProgress", 5), "repeated"),
        (notebook("InService", 0), "recorded"),
        (notebook("InService", 0), "repeated"),
        (notebook("InService", 1, student="ben"), "recorded"),
        (event("SageMaker Training Job State Change", 2, TrainingJobName="someone-else", TrainingJobStatus="InProgress"), "ignored"),
    ]
    for item, expected in replay:
        assert enforcer.handle(item, cap, at(65))["result"] == expected
    # ana: 4 x ml.m5.xlarge for 60 minutes ($0.92) + the notebook for 65 ($0.054): past 80 %.
    assert spend(enforcer.points_of("ana"), at(65)) == pytest.approx(0.92 + 0.05 * 65 / 60)
    ana_mail = messages(aws, "ana")
    assert len(ana_mail) == 1 and "over 80% of the cap" in ana_mail[0]
    assert messages(aws, "ben") == []
    assert aws["sagemaker"].describe_notebook_instance(NotebookInstanceName="sagelab-ana--notebook")["NotebookInstanceStatus"] == "InService"

    # At minute 100 the next event of hers judges the month at $0.92 + $0.083: the cap.
    expect_enforcement(stubber, "ana")
    result = enforcer.handle(training("Stopped", 66), cap, at(100))
    assert result["actions"] == ["notebook stopped", "endpoint deletion requested", "deny attached"]
    stubber.assert_no_pending_responses()
    assert aws["sagemaker"].describe_notebook_instance(NotebookInstanceName="sagelab-ana--notebook")["NotebookInstanceStatus"] == "Stopped"
    for role in aws["roles"]["ana"]:
        assert attached(aws, role) == [aws["deny"]]
    for role in aws["roles"]["ben"]:  # the other student is untouched
        assert attached(aws, role) == []
    assert aws["sagemaker"].describe_notebook_instance(NotebookInstanceName="sagelab-ben--notebook")["NotebookInstanceStatus"] == "InService"
    capped = messages(aws, "ana")
    assert len(capped) == 1 and "reached the spending cap" in capped[0] and "sagelab class lift ana" in capped[0]
    assert len(messages(aws, "admin")) == 2  # the admin reads every warning
    assert messages(aws, "ben") == []

    # Lift with a new cap: the deny goes, and the next event no longer caps her.
    stubber.add_response(
        "describe_stack_resources",
        {
            "StackResources": [
                {"LogicalResourceId": f"R{i}", "PhysicalResourceId": r, "ResourceType": "AWS::IAM::Role", "Timestamp": T0, "ResourceStatus": "CREATE_COMPLETE"}
                for i, r in enumerate(aws["roles"]["ana"])
            ]
        },
        {"StackName": "sagelab-ana--platform"},
    )
    lifted = enforcer.handle({"action": "lift", "student": "ana", "cap_usd": 5}, cap, at(101))
    assert lifted["result"] == "lifted" and lifted["cap_usd"] == 5
    for role in aws["roles"]["ana"]:
        assert attached(aws, role) == []
    assert enforcer.handle(notebook("InService", 110), cap, at(115))["actions"] == []
    with pytest.raises(ValueError, match="not above what ana has spent"):
        enforcer.handle({"action": "lift", "student": "ana", "cap_usd": 1}, cap, at(116))
    with pytest.raises(ValueError, match="not a student of this class"):
        enforcer.handle({"action": "lift", "student": "zed"}, cap, at(116))


def test_a_missed_start_is_caught_by_one_reconciliation(aws: dict[str, Any]) -> None:
    # No event ever arrived for ana's notebook (moto started it now); one reconciliation three
    # hours later finds it running, records it from its start and caps her ($0.15 > $0.10).
    started = aws["sagemaker"].describe_notebook_instance(NotebookInstanceName="sagelab-ana--notebook")["LastModifiedTime"]
    now = started.timestamp() + 3 * 3600
    cap = settings(cap_usd=0.10)
    # ben's notebook also runs three hours: he is capped too, in the same reconciliation.
    expect_enforcement(aws["stubber"], "ana")
    expect_enforcement(aws["stubber"], "ben", serving_model="")
    result = enforcer.handle({"detail-type": "Scheduled Event", "source": "aws.events"}, cap, now)
    assert result == {"result": "reconciled", "capped": ["ana", "ben"]}
    assert spend(enforcer.points_of("ana"), now) == pytest.approx(0.15, rel=1e-3)
    for student in ("ana", "ben"):
        assert aws["sagemaker"].describe_notebook_instance(NotebookInstanceName=f"sagelab-{student}--notebook")["NotebookInstanceStatus"] == "Stopped"
        for role in aws["roles"][student]:
            assert attached(aws, role) == [aws["deny"]]


def test_a_missed_stop_is_closed_by_reconciliation() -> None:
    # The record says a job runs; nothing is running any more: it is charged up to now, not forever.
    known = [Point("training/sagelab-ana--train", at(0), True, 0.92)]
    added = reconcile(known, {}, at(30))
    assert added == [Point("training/sagelab-ana--train", at(30), False)]
    assert spend(known + added, at(600)) == pytest.approx(0.46)
    # A restart whose start event was missed: running again after its last stop.
    stopped = [*known, Point("training/sagelab-ana--train", at(30), False)]
    assert reconcile(stopped, {"training/sagelab-ana--train": (at(10), 0.92)}, at(40)) == [Point("training/sagelab-ana--train", at(40), True, 0.92)]
    # Nothing to add when the record agrees.
    assert reconcile(known, {"training/sagelab-ana--train": (at(0), 0.92)}, at(40)) == []


def test_spend_is_the_same_in_any_order_and_with_repeats() -> None:
    import random

    points = [
        Point("notebook/n", at(0), True, 0.05),
        Point("notebook/n", at(60), False),
        Point("notebook/n", at(120), True, 0.05),
        Point("training/t", at(10), True, 0.92),
        Point("training/t", at(20), True, 0.92),  # a repeated InProgress with a new secondary status
        Point("training/t", at(70), False),
    ]
    expected = 0.05 * (60 + 60) / 60 + 0.92
    rng = random.Random(7)
    for _ in range(50):
        shuffled = points + rng.sample(points, 3)
        rng.shuffle(shuffled)
        assert spend(set(shuffled), at(180)) == pytest.approx(expected)
    # Only this month counts: a notebook left running since last month costs from the 1st.
    december = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert spend([Point("notebook/n", december - 86400, True, 0.05)], december + 3600) == pytest.approx(0.05)


def test_the_class_file_the_construct_writes_is_what_the_enforcer_reads(shared_class: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The function's code asset holds class.json; the enforcer loads it (one contract, two sides).
    outdir = Path(shared_class.outdir)
    template = shared_class.template(f"sagelab-class--{REGION}")
    (function,) = (
        r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == "enforcer.handler.lambda_handler"
    )
    asset = "asset." + str(function["Properties"]["Code"]["S3Key"]).removesuffix(".zip")
    monkeypatch.setenv("CLASS_ACCOUNT", ACCOUNT)  # the function's environment: Aws.ACCOUNT_ID
    loaded = enforcer.ClassSettings.load(outdir / asset / "class.json")
    assert loaded.students == ("alice", "bob", "carol") and loaded.prices["ml.m5.large"] == 0.115
    assert loaded.own_accounts == {} and loaded.serverless_usd_per_gb_second == 0.00002 and loaded.reconcile_minutes == 10
    assert (outdir / asset / "stacks" / "approval_deployer" / "runtime" / "handler.py").read_text() == Path(deployer.__file__).read_text()
