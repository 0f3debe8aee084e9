"""What a synthesized SageLab costs: idle per day and month, and one active lab hour.

Reads a cloud assembly's stacks (`cdk.out`: one environment or a class, through
sagelab/cloud_assembly.py), counts per environment the resources that cost money while nobody
works (keys, web ACLs and rules, dashboards, alarms, budgets, notebook volumes, always-on
endpoint instances) and what one lab hour uses, and prices them with the checked-in table
`prices.csv` (us-east-1 list prices, each with its source).

Free allowances (3 dashboards, 10 alarm metrics, 2 budgets) are per account, so they are applied
once per account and the rest is shared out over that account's environments. Stacks without an
`environment` tag (class-wide resources) are shared out over the class.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from sagelab.cloud_assembly import AssemblyStack

DAYS_PER_MONTH = 30.4
SHARED = "(class-wide)"


@dataclass(frozen=True)
class Price:
    item: str
    unit: str
    usd: float
    free_per_account: float
    source: str


def load_prices(text: str | None = None) -> dict[str, Price]:
    text = text if text is not None else resources.files("sagelab").joinpath("prices.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    return {row["item"]: Price(row["item"], row["unit"], float(row["usd"]), float(row["free_per_account"]), row["source"]) for row in rows}


@dataclass
class Resources:
    """Billable counts of one environment (or of the class-wide stacks)."""

    kms_keys: int = 0
    web_acls: int = 0
    waf_rules: int = 0
    dashboards: int = 0
    alarm_metrics: int = 0
    budgets: int = 0
    notebook_volume_gb: int = 0
    notebook_instance_types: list[str] = field(default_factory=list)
    # Instances an endpoint keeps running once a model is deployed (real-time mode), by type.
    endpoint_instances: Counter[str] = field(default_factory=Counter)
    serverless_memory_mb: int = 0
    processing_instance_type: str | None = None
    training_instance_type: str | None = None
    # The scheduled drift check (stacks/drift_check/runtime): runs a day and its function's memory; the front
    # door's capture share (each sampled request is one S3 PUT, and one GET by the check).
    drift_check_runs_per_day: float = 0.0
    drift_check_memory_mb: int = 0
    data_capture_percent: int = 0
    # Scheduled Lambda runs (the spending cap's reconciliation) per day, and their memory.
    scheduled_runs_per_day: float = 0.0
    scheduled_memory_mb: int = 0

    def as_row(self) -> dict[str, int]:
        return {
            "kms_keys": self.kms_keys,
            "web_acls": self.web_acls,
            "waf_rules": self.waf_rules,
            "dashboards": self.dashboards,
            "alarm_metrics": self.alarm_metrics,
            "budgets": self.budgets,
            "notebook_volume_gb": self.notebook_volume_gb,
            "endpoint_instances": sum(self.endpoint_instances.values()),
        }


def _pipeline_parameter(definition: Any, name: str) -> str | None:
    # The definition is a Fn::Sub string; parameter defaults are plain JSON inside it.
    body = definition.get("PipelineDefinitionBody", definition) if isinstance(definition, dict) else definition
    text = body["Fn::Sub"][0] if isinstance(body, dict) and "Fn::Sub" in body else body
    if not isinstance(text, str):
        return None
    for parameter in json.loads(text).get("Parameters", []):
        if parameter.get("Name") == name:
            value = parameter.get("DefaultValue")
            return value if isinstance(value, str) else None
    return None


# How the drift check's resources are recognized in a template (stacks/drift_check/construct.py).
DRIFT_CHECK_RULE = "drift check every"
DRIFT_CHECK_NAMESPACE = "SageLab/DriftCheck"
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


def runs_per_day(expression: str) -> float:
    """Runs a day of an EventBridge `rate(...)` expression (0 for cron: not modelled)."""
    match = _RATE.match(expression)
    if not match:
        return 0.0
    minutes = int(match.group(1)) * {"minute": 1, "hour": 60, "day": 1440}[match.group(2).rstrip("s")]
    return 1440 / minutes


def count_resources(template: Mapping[str, Any], into: Resources | None = None) -> Resources:
    """Add one template's billable resources to `into` (a new Resources when None)."""
    counts = into or Resources()
    for resource in template.get("Resources", {}).values():
        resource_type, props = resource["Type"], resource.get("Properties", {})
        if resource_type == "AWS::KMS::Key":
            counts.kms_keys += 1
        elif resource_type == "AWS::WAFv2::WebACL":
            counts.web_acls += 1
            counts.waf_rules += len(props.get("Rules", []))
        elif resource_type == "AWS::CloudWatch::Dashboard":
            counts.dashboards += 1
        elif resource_type == "AWS::CloudWatch::Alarm":
            # A metric-math alarm is billed per metric it reads.
            metrics = [m for m in props.get("Metrics", []) if "MetricStat" in m]
            counts.alarm_metrics += len(metrics) if metrics else 1
        elif resource_type == "AWS::Budgets::Budget":
            counts.budgets += 1
        elif resource_type == "AWS::SageMaker::NotebookInstance":
            counts.notebook_volume_gb += int(props.get("VolumeSizeInGB", 5))
            counts.notebook_instance_types.append(props["InstanceType"])
        elif resource_type == "AWS::SageMaker::EndpointConfig":
            for variant in props.get("ProductionVariants", []):
                if "ServerlessConfig" in variant:
                    counts.serverless_memory_mb = max(counts.serverless_memory_mb, int(variant["ServerlessConfig"]["MemorySizeInMB"]))
                elif isinstance(variant.get("InstanceType"), str):
                    counts.endpoint_instances[variant["InstanceType"]] += int(variant.get("InitialInstanceCount", 1))
        elif resource_type == "AWS::Events::Rule" and isinstance(props.get("ScheduleExpression"), str) and DRIFT_CHECK_RULE in props.get("Description", ""):
            counts.drift_check_runs_per_day += runs_per_day(props["ScheduleExpression"])
        elif resource_type == "AWS::Events::Rule" and isinstance(props.get("ScheduleExpression"), str) and runs_per_day(props["ScheduleExpression"]):
            # Any other schedule: the spending cap's reconciliation (stacks/spend_cap).
            counts.scheduled_runs_per_day += runs_per_day(props["ScheduleExpression"])
            memory = [r["Properties"].get("MemorySize", 128) for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
            counts.scheduled_memory_mb = max(memory, default=128)
        elif resource_type == "AWS::Lambda::Function":
            variables = props.get("Environment", {}).get("Variables", {})
            if variables.get("METRIC_NAMESPACE") == DRIFT_CHECK_NAMESPACE:
                counts.drift_check_memory_mb = int(props.get("MemorySize", 128))
            if isinstance(variables.get("DATA_CAPTURE_PERCENT"), str):
                counts.data_capture_percent = int(variables["DATA_CAPTURE_PERCENT"])
        elif resource_type == "AWS::SageMaker::Pipeline":
            definition = props.get("PipelineDefinition", {})
            counts.processing_instance_type = _pipeline_parameter(definition, "ProcessingInstanceType") or counts.processing_instance_type
            counts.training_instance_type = _pipeline_parameter(definition, "TrainingInstanceType") or counts.training_instance_type
    return counts


def environment_of(stack: AssemblyStack) -> str:
    """Whose costs a stack's resources are: its `environment` tag's, else the class's (SHARED)."""
    return stack.tags.get("environment", SHARED)


# A reconciliation of the spending cap: lists what runs, queries each student's record (one read
# unit per student), judges; about two seconds at its memory (an assumption, printed by the bench).
RECONCILIATION_SECONDS = 2.0


def scheduled_usd_per_day(counts: Resources, prices: Mapping[str, Price], students: int) -> float:
    """What the cap's schedule costs a day: requests, compute, one read per student per run and,
    at most, one CloudWatch metric request per student per run (a serverless endpoint in service
    is charged from its ModelLatency: counted as if every student had one)."""
    runs = counts.scheduled_runs_per_day
    compute = prices["lambda_compute"].usd * counts.scheduled_memory_mb / 1024 * RECONCILIATION_SECONDS
    reads = prices["dynamodb_read_request"].usd * students / 1e6
    metrics = prices["cloudwatch_metric_request"].usd * students / 1000
    return runs * (prices["lambda_requests"].usd / 1e6 + compute + reads + metrics)


@dataclass(frozen=True)
class LabHour:
    """One active lab hour, as assumed by the model (printed with the results)."""

    notebook_hours: float = 1.0
    processing_job_minutes: float = 10.0  # Preprocess + Evaluate, about 5 minutes each with start-up
    training_job_minutes: float = 5.0
    predictions: int = 300
    seconds_per_serverless_prediction: float = 0.2
    # SageMaker state changes the spending cap meters (notebook, jobs, endpoint): each one
    # invocation of about half a second, one write and one query.
    cap_events: int = 10


@dataclass(frozen=True)
class DriftCheckRun:
    """One run of the drift check, as assumed by the model (measured: bench/class_cost.py prints it)."""

    seconds: float = 3.0  # an hour of sampled capture of a lab, read and compared in pure Python
    metrics: int = 16  # Violations, CapturedRows, MaxDrift, PredictionDrift, a live metric + 10 FeatureDrift + a violating one
    s3_puts: int = 2  # report.json, drift.png
    s3_gets: int = 4  # the baseline's files (captured objects are counted with the lab hour's requests)
    s3_lists: int = 2  # the window's hour folders and the ground-truth prefix


def drift_check_usd_per_day(counts: Resources, prices: Mapping[str, Price], run: DriftCheckRun = DriftCheckRun()) -> float:
    """What the scheduled check costs a day whether anyone works or not: the runs' Lambda time,
    their S3 requests and the custom metrics each run publishes (billed per metric-hour with data)."""
    runs = counts.drift_check_runs_per_day
    if not runs:
        return 0.0
    per_run = (
        prices["lambda_requests"].usd / 1e6
        + prices["lambda_compute"].usd * counts.drift_check_memory_mb / 1024 * run.seconds
        + prices["s3_put_requests"].usd * (run.s3_puts + run.s3_lists) / 1000
        + prices["s3_get_requests"].usd * run.s3_gets / 1000
        + prices["cloudwatch_custom_metric"].usd * run.metrics
    )
    return runs * per_run


@dataclass(frozen=True)
class EnvironmentCost:
    environment: str
    resources: Resources
    idle_usd_per_day: float  # no model deployed (or serverless); the drift check included
    deployed_usd_per_day: float  # with a model deployed on real-time instances
    lab_hour_usd: float
    drift_check_usd_per_day: float = 0.0  # part of idle_usd_per_day


def _monthly_items(counts: Resources) -> dict[str, float]:
    return {
        "kms_key": counts.kms_keys,
        "waf_web_acl": counts.web_acls,
        "waf_rule": counts.waf_rules,
        "cloudwatch_dashboard": counts.dashboards,
        "cloudwatch_alarm_metric": counts.alarm_metrics,
        "sagemaker_ml_storage": counts.notebook_volume_gb,
    }


def _instance_price(prices: Mapping[str, Price], instance_type: str | None) -> float:
    if instance_type is None:
        return 0.0
    key = f"sagemaker_instance:{instance_type}"
    if key not in prices:
        raise KeyError(f"prices.csv has no price for {instance_type}; add a row {key}")
    return prices[key].usd


def price_environments(stacks: Iterable[AssemblyStack], prices: Mapping[str, Price] | None = None, lab: LabHour = LabHour()) -> list[EnvironmentCost]:
    """Cost per environment; account-wide free allowances applied once per account and shared out."""
    prices = prices or load_prices()
    by_group: dict[str, Resources] = defaultdict(Resources)
    account_of: dict[str, str] = {}
    for stack in stacks:
        environment = environment_of(stack)
        count_resources(stack.template(), by_group[environment])
        account_of[environment] = stack.account
    environments = [group for group in by_group if group != SHARED]
    shared = by_group.get(SHARED, Resources())

    # Per account (class-wide stacks included): units beyond the free allowance, billed to each
    # group in proportion to the units it holds.
    per_account: dict[str, list[str]] = defaultdict(list)
    for group in by_group:
        per_account[account_of[group]].append(group)
    idle: dict[str, float] = {}
    for members in per_account.values():
        monthly_units: dict[str, float] = defaultdict(float)
        for group in members:
            for item, units in _monthly_items(by_group[group]).items():
                monthly_units[item] += units
        budgets = sum(by_group[group].budgets for group in members)
        for group in members:
            counts = by_group[group]
            usd_per_day = 0.0
            for item, units in _monthly_items(counts).items():
                if units:
                    billable = max(0.0, monthly_units[item] - prices[item].free_per_account)
                    usd_per_day += prices[item].usd * billable * (units / monthly_units[item]) / DAYS_PER_MONTH
            if counts.budgets:
                usd_per_day += prices["budget"].usd * max(0.0, budgets - prices["budget"].free_per_account) * counts.budgets / budgets
            idle[group] = usd_per_day + scheduled_usd_per_day(counts, prices, len(members))
    shared_share = idle.get(SHARED, 0.0) / len(environments) if environments else 0.0

    results = []
    for env in environments:
        counts = by_group[env]
        deployed = sum(_instance_price(prices, instance_type) * n * 24 for instance_type, n in counts.endpoint_instances.items())
        lab_hour = (
            sum(_instance_price(prices, instance_type) for instance_type in counts.notebook_instance_types) * lab.notebook_hours
            + _instance_price(prices, counts.processing_instance_type) * lab.processing_job_minutes / 60
            + _instance_price(prices, counts.training_instance_type) * lab.training_job_minutes / 60
            + prices["sagemaker_serverless"].usd * counts.serverless_memory_mb / 1024 * lab.seconds_per_serverless_prediction * lab.predictions
            + (prices["api_gateway_rest"].usd + prices["lambda_requests"].usd + prices["waf_requests"].usd * bool(counts.web_acls or shared.web_acls))
            * lab.predictions
            / 1e6
            # Each sampled request: one PUT by the front door, one GET by the drift check.
            + (prices["s3_put_requests"].usd + prices["s3_get_requests"].usd * bool(counts.drift_check_runs_per_day))
            * lab.predictions
            * counts.data_capture_percent
            / 100
            / 1000
            + (counts.scheduled_runs_per_day or shared.scheduled_runs_per_day > 0)
            * lab.cap_events
            * (
                prices["lambda_requests"].usd / 1e6
                + prices["lambda_compute"].usd * max(counts.scheduled_memory_mb, shared.scheduled_memory_mb) / 1024 * 0.5
                + (prices["dynamodb_write_request"].usd + prices["dynamodb_read_request"].usd) / 1e6
            )
        )
        drift_check = drift_check_usd_per_day(counts, prices)
        idle_per_day = idle[env] + shared_share + drift_check
        results.append(EnvironmentCost(env, counts, idle_per_day, idle_per_day + deployed, lab_hour, drift_check))
    return results
