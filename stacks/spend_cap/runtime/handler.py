"""The spending cap's Lambda: meters each student's SageMaker spend and enforces the class's cap.

Three ways in:
  - a SageMaker state-change event (EventBridge): record its point (metering.py), then judge the
    student's month;
  - the schedule (every few minutes): reconcile the record with what is actually running (a missed
    event becomes a point), then judge every student;
  - `{"action": "lift", "student": ID, "cap_usd": N}` (sagelab class lift, lambda:InvokeFunction):
    take the deny away and give the student a new cap for the month.

Judging: at `warn_percent` of the cap the student and the admins get one warning a month (SNS,
filtered by the `student` message attribute); at the cap the student's notebook is stopped, their
endpoint's deletion is requested through CloudFormation (UpdateStack of their serving stack with
an empty ModelPackageArn, the approval deployer's own `deploy`, so the stack stays the owner of
the endpoint) and the class's deny policy is attached to the roles of their platform stack, so no
new SageMaker work starts until an admin lifts it. Every action is idempotent and re-applied at
each judgment while the student is over the cap (a restarted notebook is stopped again).

The table (one per class): key (student, item). Items `point#...` (metering.Point, written once:
a repeated event changes nothing) and `state#<month>` (cap override, warned, capped).

Configuration: `class.json` beside this package (written by the construct at synth: course, cap,
warn share, student ids, instance prices from sagelab/prices.csv, the serving stack's parameter
and output names) and the environment: TABLE_NAME, TOPIC_ARN, DENY_POLICY_ARN.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from sagelab.naming import ResourceNames
from stacks.approval_deployer.runtime.handler import StackBusy, cloudformation, deploy

from .metering import Point, epoch, hourly, month_of, observe, owner, reconcile, spend

CLASS_FILE = Path(__file__).resolve().parent.parent / "class.json"
logger = Logger(service="sagelab-spend-cap")
POINT_TTL_SECONDS = 70 * 86400  # points outlive their month, then DynamoDB's TTL removes them


@dataclass(frozen=True)
class ClassSettings:
    course: str
    cap_usd: float
    warn_percent: int
    students: tuple[str, ...]
    prices: Mapping[str, float]
    model_package_parameter: str
    deployment_role_output: str

    @classmethod
    def load(cls, path: Path = CLASS_FILE) -> ClassSettings:
        data = json.loads(path.read_text())
        return cls(
            course=data["course"],
            cap_usd=float(data["cap_usd"]),
            warn_percent=int(data["warn_percent"]),
            students=tuple(data["students"]),
            prices={k: float(v) for k, v in data["prices"].items()},
            model_package_parameter=data["model_package_parameter"],
            deployment_role_output=data["deployment_role_output"],
        )

    @property
    def prefixes(self) -> dict[str, str]:
        return {student: ResourceNames.of(student).scope for student in self.students}


@dataclass(frozen=True)
class Verdict:
    student: str
    spent_usd: float
    cap_usd: float
    actions: tuple[str, ...] = field(default=())


@cache
def client(service: str) -> Any:
    return boto3.client(service)


# -- the record -------------------------------------------------------------------------------
def record(student: str, point: Point) -> bool:
    """Store a point once; False when it was already there (a repeated event)."""
    try:
        client("dynamodb").put_item(
            TableName=os.environ["TABLE_NAME"],
            Item={
                "student": {"S": student},
                "item": {"S": point.key},
                "resource": {"S": point.resource},
                "at": {"N": repr(point.at)},
                "running": {"BOOL": point.running},
                "usd_per_hour": {"N": repr(point.usd_per_hour)},
                "expires": {"N": str(int(point.at) + POINT_TTL_SECONDS)},
            },
            ConditionExpression="attribute_not_exists(#item)",
            ExpressionAttributeNames={"#item": "item"},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def points_of(student: str) -> list[Point]:
    points, start = [], None
    while True:
        kwargs: dict[str, Any] = {
            "TableName": os.environ["TABLE_NAME"],
            "KeyConditionExpression": "student = :s AND begins_with(#item, :p)",
            "ExpressionAttributeNames": {"#item": "item"},
            "ExpressionAttributeValues": {":s": {"S": student}, ":p": {"S": "point#"}},
            "ConsistentRead": True,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = client("dynamodb").query(**kwargs)
        for item in page.get("Items", []):
            points.append(Point(item["resource"]["S"], float(item["at"]["N"]), item["running"]["BOOL"], float(item["usd_per_hour"]["N"])))
        start = page.get("LastEvaluatedKey")
        if not start:
            return points


def _state_key(student: str, month: str) -> dict[str, Any]:
    return {"student": {"S": student}, "item": {"S": f"state#{month}"}}


def state_of(student: str, month: str) -> dict[str, Any]:
    item = client("dynamodb").get_item(TableName=os.environ["TABLE_NAME"], Key=_state_key(student, month), ConsistentRead=True).get("Item", {})
    return {
        "cap_usd": float(item["cap_usd"]["N"]) if "cap_usd" in item else None,
        "warned": item.get("warned", {}).get("BOOL", False),
        "capped": item.get("capped", {}).get("BOOL", False),
    }


def _set_flag_once(student: str, month: str, flag: str) -> bool:
    """Set `flag` in the month's state; False when it was already set (one notification each)."""
    try:
        client("dynamodb").update_item(
            TableName=os.environ["TABLE_NAME"],
            Key=_state_key(student, month),
            UpdateExpression="SET #f = :t",
            ConditionExpression="attribute_not_exists(#f) OR #f = :f",
            ExpressionAttributeNames={"#f": flag},
            ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


# -- enforcement ------------------------------------------------------------------------------
def _platform_roles(names: ResourceNames) -> list[str]:
    resources = cloudformation().describe_stack_resources(StackName=names.platform_stack)["StackResources"]
    return [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::IAM::Role" and r.get("PhysicalResourceId")]


def stop_notebook(names: ResourceNames) -> str:
    try:
        status = client("sagemaker").describe_notebook_instance(NotebookInstanceName=names.notebook)["NotebookInstanceStatus"]
    except ClientError:
        return "no notebook"
    if status != "InService":
        return f"notebook {status}"
    client("sagemaker").stop_notebook_instance(NotebookInstanceName=names.notebook)
    return "notebook stopped"


def delete_endpoint(names: ResourceNames, settings: ClassSettings) -> str:
    """Request the endpoint's deletion through its stack: ModelPackageArn "" removes it."""
    stack = cloudformation().describe_stacks(StackName=names.serving_stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    role_arn = outputs.get(settings.deployment_role_output)
    if role_arn is None:
        return "no deployment role output"
    try:
        result = deploy(names.serving_stack, settings.model_package_parameter, "", role_arn)
    except StackBusy:
        return "endpoint deletion waits for the stack (next reconciliation)"
    return "no endpoint" if result == "unchanged" else "endpoint deletion requested"


def deny(names: ResourceNames) -> str:
    for role in _platform_roles(names):
        client("iam").attach_role_policy(RoleName=role, PolicyArn=os.environ["DENY_POLICY_ARN"])
    return "deny attached"


def allow(names: ResourceNames) -> str:
    for role in _platform_roles(names):
        try:
            client("iam").detach_role_policy(RoleName=role, PolicyArn=os.environ["DENY_POLICY_ARN"])
        except ClientError as error:
            if error.response["Error"]["Code"] != "NoSuchEntity":
                raise
    return "deny detached"


def notify(student: str, subject: str, message: str) -> None:
    client("sns").publish(
        TopicArn=os.environ["TOPIC_ARN"],
        Subject=subject[:100],
        Message=message,
        MessageAttributes={"student": {"DataType": "String", "StringValue": student}},
    )


def judge(student: str, settings: ClassSettings, now: float) -> Verdict:
    """Compare the student's month with the cap and act (idempotently)."""
    month = month_of(now)
    spent = spend(points_of(student), now)
    state = state_of(student, month)
    cap = state["cap_usd"] if state["cap_usd"] is not None else settings.cap_usd
    names = ResourceNames.of(student)
    if spent >= cap:
        actions = (stop_notebook(names), delete_endpoint(names, settings), deny(names))
        if _set_flag_once(student, month, "capped"):
            notify(
                student,
                f"SageLab {settings.course}: {student} reached the spending cap",
                f"{student} reached the spending cap: ${spent:.2f} of ${cap:.2f} this month. Notebook stopped, endpoint deletion requested, new SageMaker work denied "
                f"until an admin runs `sagelab class lift {student}`. ({'; '.join(actions)})",
            )
        return Verdict(student, spent, cap, actions)
    if spent >= cap * settings.warn_percent / 100 and _set_flag_once(student, month, "warned"):
        notify(
            student,
            f"SageLab {settings.course}: {student} at {settings.warn_percent}% of the spending cap",
            f"{student} has spent ${spent:.2f} of ${cap:.2f} this month (over {settings.warn_percent}% of the cap); at ${cap:.2f} the notebook stops, the endpoint is deleted and new SageMaker work is denied.",
        )
        return Verdict(student, spent, cap, ("warned",))
    return Verdict(student, spent, cap)


def lift(student: str, settings: ClassSettings, cap_usd: float | None, now: float) -> Verdict:
    """Take the deny away and give the student a new cap for this month: `cap_usd`, or what they
    have spent plus the class's cap."""
    if student not in settings.students:
        raise ValueError(f"{student!r} is not a student of this class")
    spent = spend(points_of(student), now)
    cap = cap_usd if cap_usd is not None else spent + settings.cap_usd
    if cap <= spent:
        raise ValueError(f"a cap of ${cap:.2f} is not above what {student} has spent this month (${spent:.2f}): give a higher --cap")
    client("dynamodb").put_item(
        TableName=os.environ["TABLE_NAME"],
        Item={**_state_key(student, month_of(now)), "cap_usd": {"N": repr(float(cap))}, "warned": {"BOOL": False}, "capped": {"BOOL": False}},
    )
    return Verdict(student, spent, cap, (allow(ResourceNames.of(student)),))


# -- what is running (reconciliation) ---------------------------------------------------------
def _paged(method: Callable[..., Any], key: str, **kwargs: Any) -> Iterable[dict[str, Any]]:
    token = None
    while True:
        page = method(**kwargs, **({"NextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return


def endpoint_price(config_name: str, prices: Mapping[str, float]) -> float:
    config = client("sagemaker").describe_endpoint_config(EndpointConfigName=config_name)
    return sum(
        hourly(prices, variant.get("InstanceType"), int(variant.get("InitialInstanceCount") or 1))
        for variant in config.get("ProductionVariants", [])
        if "ServerlessConfig" not in variant
    )


def running_now(settings: ClassSettings) -> dict[str, dict[str, tuple[float, float]]]:
    """student -> {resource: (since, usd per hour)} for everything of the class running now."""
    sagemaker = client("sagemaker")
    prefixes = settings.prefixes
    found: dict[str, dict[str, tuple[float, float]]] = {}

    def add(kind: str, name: str, since: Any, price: Callable[[], float]) -> None:
        student = owner(name, {}, prefixes)
        if student is not None:
            found.setdefault(student, {})[f"{kind}/{name}"] = (epoch(since), price())

    def notebook_price(instance_type: str | None) -> Callable[[], float]:
        return lambda: hourly(settings.prices, instance_type, 1)

    def endpoint_price_of(name: str) -> Callable[[], float]:
        return lambda: endpoint_price(sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"], settings.prices)

    for nb in _paged(sagemaker.list_notebook_instances, "NotebookInstances", StatusEquals="InService"):
        add("notebook", nb["NotebookInstanceName"], nb["LastModifiedTime"], notebook_price(nb.get("InstanceType")))
    for ep in _paged(sagemaker.list_endpoints, "Endpoints", StatusEquals="InService"):
        add("endpoint", ep["EndpointName"], ep["LastModifiedTime"], endpoint_price_of(ep["EndpointName"]))
    jobs = (
        (
            "training",
            sagemaker.list_training_jobs,
            "TrainingJobSummaries",
            "TrainingJobName",
            lambda n: sagemaker.describe_training_job(TrainingJobName=n)["ResourceConfig"],
        ),
        (
            "processing",
            sagemaker.list_processing_jobs,
            "ProcessingJobSummaries",
            "ProcessingJobName",
            lambda n: sagemaker.describe_processing_job(ProcessingJobName=n)["ProcessingResources"]["ClusterConfig"],
        ),
        (
            "transform",
            sagemaker.list_transform_jobs,
            "TransformJobSummaries",
            "TransformJobName",
            lambda n: sagemaker.describe_transform_job(TransformJobName=n)["TransformResources"],
        ),
    )
    for kind, lister, key, name_field, resources in jobs:
        for job in _paged(lister, key, StatusEquals="InProgress"):
            name = job[name_field]

            def price(name: str = name, resources: Callable[[str], Any] = resources) -> float:
                config = resources(name)
                return hourly(settings.prices, config.get("InstanceType"), int(config.get("InstanceCount") or 1))

            add(kind, name, job["CreationTime"], price)
    return found


def reconcile_all(settings: ClassSettings, now: float) -> list[Verdict]:
    running = running_now(settings)
    verdicts = []
    for student in settings.students:
        for point in reconcile(points_of(student), running.get(student, {}), now):
            record(student, point)
        verdicts.append(judge(student, settings, now))
    return verdicts


# -- the entry point --------------------------------------------------------------------------
def handle(event: Mapping[str, Any], settings: ClassSettings, now: float) -> dict[str, Any]:
    if event.get("action") == "lift":
        cap = event.get("cap_usd")
        verdict = lift(str(event.get("student")), settings, float(cap) if cap is not None else None, now)
        return {"result": "lifted", "student": verdict.student, "spent_usd": round(verdict.spent_usd, 2), "cap_usd": round(verdict.cap_usd, 2)}
    if event.get("detail-type") == "Scheduled Event":
        verdicts = reconcile_all(settings, now)
        return {"result": "reconciled", "capped": [v.student for v in verdicts if v.spent_usd >= v.cap_usd]}

    def price_endpoint(detail: Mapping[str, Any]) -> float:
        config = detail.get("EndpointConfigName")
        return endpoint_price(config, settings.prices) if isinstance(config, str) else 0.0

    observation = observe(event, settings.prefixes, settings.prices, price_endpoint)
    if observation is None:
        return {"result": "ignored"}
    fresh = record(observation.student, observation.point)
    verdict = judge(observation.student, settings, now)
    return {
        "result": "recorded" if fresh else "repeated",
        "student": verdict.student,
        "spent_usd": round(verdict.spent_usd, 4),
        "actions": list(verdict.actions),
    }


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result = handle(event, ClassSettings.load(), time.time())
    logger.info("handled", extra={"event": event.get("detail-type") or event.get("action"), **result})
    return result
