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

Students with their own AWS account: their account forwards its SageMaker events to the class's
bus (the event's `account` says whose they can be), and everything the enforcer does there (read,
reconcile, stop, UpdateStack, attach the deny) it does through the role it assumes in that
account, `ResourceNames.spend_cap_role`, which reaches only that student (stacks/spend_cap/link.py).

Serverless endpoints: each reconciliation charges the windows of its grid that have ended, from
CloudWatch's ModelLatency and the endpoint's memory (metering.serverless_charge).

The table (one per class): key (student, item). Items `point#...` (metering.Point, written once:
a repeated event changes nothing) and `state#<month>` (cap override, warned, capped).

Configuration: `class.json` beside this package (written by the construct at synth: course, cap,
warn share, student ids and own accounts, instance and serverless prices from sagelab/prices.csv,
the reconciliation period, the serving stack's parameter and output names) and the environment:
TABLE_NAME, TOPIC_ARN, DENY_POLICY_ARN (the class account's deny), CLASS_ACCOUNT, PARTITION.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from sagelab.aws_session import new_session
from sagelab.naming import ResourceNames
from stacks.approval_deployer.runtime.handler import StackBusy, cloudformation, deploy

from .metering import (
    Point,
    charge_windows,
    epoch,
    hourly,
    last_charged,
    month_of,
    month_window,
    observe,
    owner,
    reconcile,
    resource_of,
    serverless_charge,
    spend,
)

CLASS_FILE = Path(__file__).resolve().parent.parent / "class.json"
logger = Logger(service="sagelab-spend-cap")
POINT_TTL_SECONDS = 70 * 86400  # points outlive their month, then DynamoDB's TTL removes them
ASSUMED_SECONDS = 3600  # a session in a student's account; renewed 5 minutes before it ends


@dataclass(frozen=True)
class ClassSettings:
    course: str
    cap_usd: float
    warn_percent: int
    students: tuple[str, ...]
    prices: Mapping[str, float]
    model_package_parameter: str
    deployment_role_output: str
    home_account: str  # the class account (the function's own)
    own_accounts: Mapping[str, str] = field(default_factory=dict)  # student -> their own account
    serverless_usd_per_gb_second: float = 0.0
    reconcile_minutes: int = 10
    partition: str = "aws"

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
            home_account=os.environ["CLASS_ACCOUNT"],
            own_accounts=dict(data["own_accounts"]),
            serverless_usd_per_gb_second=float(data["serverless_usd_per_gb_second"]),
            reconcile_minutes=int(data["reconcile_minutes"]),
            partition=os.environ.get("PARTITION", "aws"),
        )

    def account_of(self, student: str) -> str:
        return self.own_accounts.get(student, self.home_account)

    @property
    def prefixes(self) -> dict[str, dict[str, str]]:
        """account -> {student: name prefix} of the students whose resources are in that account."""
        by_account: dict[str, dict[str, str]] = {}
        for student in self.students:
            by_account.setdefault(self.account_of(student), {})[student] = ResourceNames.of(student).scope
        return by_account

    def role_arn(self, student: str) -> str | None:
        """The role assumed for an own-account student (None: the class account's own student)."""
        if student not in self.own_accounts:
            return None
        return f"arn:{self.partition}:iam::{self.own_accounts[student]}:role/{ResourceNames.of(student).spend_cap_role}"

    def deny_policy_arn(self, student: str) -> str:
        """The class's deny where the student's roles are: a managed policy attaches only in its own account."""
        if student not in self.own_accounts:
            return os.environ["DENY_POLICY_ARN"]
        return f"arn:{self.partition}:iam::{self.own_accounts[student]}:policy/{ResourceNames.of(student).capped_deny_policy}"


@dataclass(frozen=True)
class Verdict:
    student: str
    spent_usd: float
    cap_usd: float
    actions: tuple[str, ...] = field(default=())


@cache
def client(service: str) -> Any:
    """A client of the class account (CloudFormation's is the deployer's, used by its `deploy`), on
    the shared loader as the students' clients are: SageMaker's model is parsed once, not per account."""
    return cloudformation() if service == "cloudformation" else new_session().client(service)


class StudentClients:
    """Clients in an own-account student's account, through the role the enforcer assumes there
    (renewed before its session ends)."""

    def __init__(self, role_arn: str) -> None:
        self.role_arn = role_arn
        self._clients: dict[str, Any] = {}
        self._expires = 0.0

    def client(self, service: str) -> Any:
        if time.time() > self._expires - 300:
            credentials = client("sts").assume_role(RoleArn=self.role_arn, RoleSessionName="sagelab-spend-cap", DurationSeconds=ASSUMED_SECONDS)["Credentials"]
            # On the process's shared botocore loader: a renewed session (and the next student's)
            # parses no service model again (sagelab/aws_session.py, shipped with the function).
            self._session = new_session(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
            self._expires = credentials["Expiration"].timestamp()
            self._clients = {}
        if service not in self._clients:
            self._clients[service] = self._session.client(service)
        return self._clients[service]


class HomeClients:
    def client(self, service: str) -> Any:
        return client(service)


@cache
def assumed(role_arn: str) -> StudentClients:
    return StudentClients(role_arn)


def clients_of(settings: ClassSettings, student: str) -> StudentClients | HomeClients:
    """Where the student's resources are: the class account, or theirs through the assumed role."""
    role_arn = settings.role_arn(student)
    return assumed(role_arn) if role_arn else HomeClients()


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
                "usd": {"N": repr(point.usd)},
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
            usd = float(item["usd"]["N"]) if "usd" in item else 0.0  # points written before charges existed have none
            points.append(Point(item["resource"]["S"], float(item["at"]["N"]), item["running"]["BOOL"], float(item["usd_per_hour"]["N"]), usd))
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
Clients = StudentClients | HomeClients


def _platform_roles(names: ResourceNames, where: Clients) -> list[str]:
    resources = where.client("cloudformation").describe_stack_resources(StackName=names.platform_stack)["StackResources"]
    return [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::IAM::Role" and r.get("PhysicalResourceId")]


def stop_notebook(names: ResourceNames, where: Clients) -> str:
    sagemaker = where.client("sagemaker")
    try:
        status = sagemaker.describe_notebook_instance(NotebookInstanceName=names.notebook)["NotebookInstanceStatus"]
    except ClientError:
        return "no notebook"
    if status != "InService":
        return f"notebook {status}"
    sagemaker.stop_notebook_instance(NotebookInstanceName=names.notebook)
    return "notebook stopped"


def delete_endpoint(names: ResourceNames, settings: ClassSettings, where: Clients) -> str:
    """Request the endpoint's deletion through its stack: ModelPackageArn "" removes it."""
    stacks = where.client("cloudformation")
    stack = stacks.describe_stacks(StackName=names.serving_stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    role_arn = outputs.get(settings.deployment_role_output)
    if role_arn is None:
        return "no deployment role output"
    try:
        result = deploy(names.serving_stack, settings.model_package_parameter, "", role_arn, client=stacks)
    except StackBusy:
        return "endpoint deletion waits for the stack (next reconciliation)"
    return "no endpoint" if result == "unchanged" else "endpoint deletion requested"


def deny(names: ResourceNames, where: Clients, policy_arn: str) -> str:
    for role in _platform_roles(names, where):
        where.client("iam").attach_role_policy(RoleName=role, PolicyArn=policy_arn)
    return "deny attached"


def allow(names: ResourceNames, where: Clients, policy_arn: str) -> str:
    for role in _platform_roles(names, where):
        try:
            where.client("iam").detach_role_policy(RoleName=role, PolicyArn=policy_arn)
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
    names, where = ResourceNames.of(student), clients_of(settings, student)
    if spent >= cap:
        actions = (stop_notebook(names, where), delete_endpoint(names, settings, where), deny(names, where, settings.deny_policy_arn(student)))
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
    return Verdict(student, spent, cap, (allow(ResourceNames.of(student), clients_of(settings, student), settings.deny_policy_arn(student)),))


# -- what is running (reconciliation) ---------------------------------------------------------
def _paged(method: Callable[..., Any], key: str, **kwargs: Any) -> Iterable[dict[str, Any]]:
    token = None
    while True:
        page = method(**kwargs, **({"NextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return


def endpoint_variants(config_name: str, where: Clients) -> list[dict[str, Any]]:
    return list(where.client("sagemaker").describe_endpoint_config(EndpointConfigName=config_name).get("ProductionVariants", []))


def endpoint_price(config_name: str, prices: Mapping[str, float], where: Clients) -> float:
    """Instance-hours of a real-time endpoint (serverless variants are charged per window instead)."""
    return sum(
        hourly(prices, variant.get("InstanceType"), int(variant.get("InitialInstanceCount") or 1))
        for variant in endpoint_variants(config_name, where)
        if "ServerlessConfig" not in variant
    )


@dataclass(frozen=True)
class Serverless:
    """A serverless endpoint seen in service: what its charges need."""

    name: str
    since: float
    memory_mb: dict[str, int]  # variant -> configured memory


@dataclass
class Running:
    """What one account holds of its students now."""

    resources: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # student -> {resource: (since, usd/h)}
    serverless: dict[str, list[Serverless]] = field(default_factory=dict)  # student -> endpoints


def running_now(settings: ClassSettings, account: str, prefixes: Mapping[str, str], where: Clients) -> Running:
    """Everything of these students (`prefixes`) running now in `account`, seen through `where`."""
    sagemaker = where.client("sagemaker")
    found = Running()

    def add(kind: str, name: str, since: Any, price: Callable[[], float]) -> None:
        student = owner(name, {}, prefixes)
        if student is not None:
            found.resources.setdefault(student, {})[resource_of(account, kind, name)] = (epoch(since), price())

    def notebook_price(instance_type: str | None) -> Callable[[], float]:
        return lambda: hourly(settings.prices, instance_type, 1)

    for nb in _paged(sagemaker.list_notebook_instances, "NotebookInstances", StatusEquals="InService"):
        add("notebook", nb["NotebookInstanceName"], nb["LastModifiedTime"], notebook_price(nb.get("InstanceType")))
    for ep in _paged(sagemaker.list_endpoints, "Endpoints", StatusEquals="InService"):
        name = ep["EndpointName"]
        student = owner(name, {}, prefixes)
        if student is None:
            continue
        variants = endpoint_variants(sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"], where)
        hourly_price = sum(
            hourly(settings.prices, v.get("InstanceType"), int(v.get("InitialInstanceCount") or 1)) for v in variants if "ServerlessConfig" not in v
        )
        add("endpoint", name, ep["LastModifiedTime"], functools.partial(float, hourly_price))
        memory = {v["VariantName"]: int(v["ServerlessConfig"]["MemorySizeInMB"]) for v in variants if "ServerlessConfig" in v}
        if memory:
            found.serverless.setdefault(student, []).append(Serverless(name, epoch(ep["CreationTime"]), memory))
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


def serverless_charges(settings: ClassSettings, account: str, endpoint: Serverless, known: list[Point], now: float, where: Clients) -> list[Point]:
    """Charges for the windows of the grid that ended since the last one charged (or since the
    endpoint's creation, within this month): ModelLatency's sum per window, per variant."""
    resource = resource_of(account, "serverless", endpoint.name)
    period = settings.reconcile_minutes * 60
    last = last_charged(known, resource)
    since = max(endpoint.since, month_window(now)[0], last + period if last is not None else 0.0)
    windows = charge_windows(since, now, period)
    if windows is None:
        return []
    usage: dict[float, list[tuple[float, int]]] = {}  # window start -> (latency sum, memory) per variant
    cloudwatch = where.client("cloudwatch")
    for variant, memory_mb in endpoint.memory_mb.items():
        datapoints = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="ModelLatency",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint.name}, {"Name": "VariantName", "Value": variant}],
            StartTime=windows[0],
            EndTime=windows[1],
            Period=period,
            Statistics=["Sum"],
        )["Datapoints"]
        for datapoint in datapoints:
            stamp = epoch(datapoint["Timestamp"])  # on the grid already (StartTime is); aligned again to key the window
            usage.setdefault(stamp - stamp % period, []).append((float(datapoint["Sum"]), memory_mb))
    charges = (serverless_charge(resource, start, used, settings.serverless_usd_per_gb_second) for start, used in sorted(usage.items()))
    return [charge for charge in charges if charge is not None]


def reconcile_all(settings: ClassSettings, now: float) -> list[Verdict]:
    """Each account's running work, seen from the class account (its students) or through each
    own-account student's role (that student), made a part of the record; then every judgment."""
    seen: dict[str, Running] = {}
    home = {student: prefix for student, prefix in settings.prefixes.get(settings.home_account, {}).items() if student not in settings.own_accounts}
    if home:
        running = running_now(settings, settings.home_account, home, HomeClients())
        for student in home:
            seen[student] = running
    for student, account in settings.own_accounts.items():
        seen[student] = running_now(settings, account, {student: ResourceNames.of(student).scope}, clients_of(settings, student))
    verdicts = []
    for student in settings.students:
        running = seen[student]
        known = points_of(student)
        for point in reconcile(known, running.resources.get(student, {}), now):
            record(student, point)
        for endpoint in running.serverless.get(student, []):
            for charge in serverless_charges(settings, settings.account_of(student), endpoint, known, now, clients_of(settings, student)):
                record(student, charge)
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

    def price_endpoint(detail: Mapping[str, Any], student: str) -> float:
        config = detail.get("EndpointConfigName")
        return endpoint_price(config, settings.prices, clients_of(settings, student)) if isinstance(config, str) else 0.0

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
