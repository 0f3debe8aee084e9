"""Spend per student from SageMaker's state-change events: pure functions, no AWS calls.

Every event becomes a *point*: at time t, resource R (a notebook, a job, an endpoint) was running
at $x per hour, or was not running. Points are stored once each (their key holds resource, time
and state, so a repeated event writes nothing new) and spend is computed from all of a student's
points sorted by time: a resource costs its price from each running point to the next stopped
point (or to now), clipped to the month. That makes the result independent of the order and the
number of times events arrive; a missed event is replaced by a point the reconciliation writes
from what it sees running (or no longer running).

Prices are instance-hours (sagelab/prices.csv, shipped with the function by the construct).
Serverless endpoints bill per GB-second of inference, not per hour: they become *charges*, points
that carry an amount for one window of the reconciliation's grid (`serverless_charge`, from
CloudWatch's ModelLatency of that window and the endpoint's memory), keyed by the window so that a
repeated reconciliation writes nothing new. Tuning and AutoML jobs add nothing themselves, because
the training and processing jobs they start send their own events.

A resource is named with its account (`<account>:<kind>/<name>`): students with their own AWS
account send their events through the class's bus, and two accounts' same-named resources are two
resources, never one.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# detail-type -> (kind, name field, status field)
EVENT_KINDS: dict[str, tuple[str, str, str]] = {
    "SageMaker Notebook Instance State Change": ("notebook", "NotebookInstanceName", "NotebookInstanceStatus"),
    "SageMaker Training Job State Change": ("training", "TrainingJobName", "TrainingJobStatus"),
    "SageMaker Processing Job State Change": ("processing", "ProcessingJobName", "ProcessingJobStatus"),
    "SageMaker Transform Job State Change": ("transform", "TransformJobName", "TransformJobStatus"),
    "SageMaker HyperParameter Tuning Job State Change": ("tuning", "HyperParameterTuningJobName", "HyperParameterTuningJobStatus"),
    "SageMaker AutoML Job State Change": ("automl", "AutoMLJobName", "AutoMLJobStatus"),
    "SageMaker Endpoint State Change": ("endpoint", "EndpointName", "EndpointStatus"),
}
RUNNING = {"InService", "InProgress", "Updating", "SystemUpdating"}
STOPPED = {"Stopped", "Stopping", "Completed", "Failed", "Deleting", "OutOfService"}


@dataclass(frozen=True)
class Point:
    resource: str  # "<account>:<kind>/<name>"
    at: float  # epoch seconds (a charge: the start of its window)
    running: bool
    usd_per_hour: float = 0.0
    usd: float = 0.0  # a charge: what the resource cost in the window that starts at `at`

    @property
    def is_charge(self) -> bool:
        return self.usd > 0

    @property
    def key(self) -> str:
        """The point's identity: a repeated event (or charge of one window) maps to the same key (written once)."""
        state = "charge" if self.is_charge else "run" if self.running else "stop"
        return f"point#{self.resource}#{self.at:016.3f}#{state}"


def resource_of(account: str, kind: str, name: str) -> str:
    return f"{account}:{kind}/{name}"


@dataclass(frozen=True)
class Observation:
    student: str
    kind: str
    name: str
    point: Point


def epoch(value: str | datetime) -> float:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def month_window(now: float) -> tuple[float, float]:
    """[first second of now's month, first second of the next) in UTC: the cap is per calendar month."""
    moment = datetime.fromtimestamp(now, UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    days = calendar.monthrange(moment.year, moment.month)[1]
    return start.timestamp(), start.timestamp() + days * 86400


def month_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def tags_of(detail: Mapping[str, Any]) -> dict[str, str]:
    """Event tags come as a mapping or as [{Key, Value}] (either case)."""
    tags = detail.get("Tags") or {}
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    result = {}
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, Mapping):
            key, value = tag.get("Key", tag.get("key")), tag.get("Value", tag.get("value"))
            if key is not None:
                result[str(key)] = str(value)
    return result


def owner(name: str, tags: Mapping[str, str], prefixes: Mapping[str, str]) -> str | None:
    """The student a resource belongs to: its `student` tag when that is a student of the class,
    else the student whose name prefix (`prefixes`: id -> prefix with its separator) is the longest
    that starts the name; None for anything else (another environment, another class). The caller
    passes only the students of the resource's account."""
    tagged = tags.get("student")
    if tagged in prefixes:
        return tagged
    matches = [student for student, prefix in prefixes.items() if name.startswith(prefix)]
    return max(matches, key=lambda student: len(prefixes[student])) if matches else None


def instances_of(kind: str, detail: Mapping[str, Any]) -> tuple[str | None, int]:
    """(instance type, count) that the event's resource bills for; endpoints are priced by the caller."""
    if kind == "notebook":
        return detail.get("InstanceType"), 1
    config: Mapping[str, Any] = {}
    if kind == "training":
        config = detail.get("ResourceConfig") or {}
    elif kind == "processing":
        config = (detail.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    elif kind == "transform":
        config = detail.get("TransformResources") or {}
    return config.get("InstanceType"), int(config.get("InstanceCount") or 1)


def hourly(prices: Mapping[str, float], instance_type: str | None, count: int) -> float:
    """The price of `count` instances; an unpriced type is charged at the dearest known price, so
    that the cap errs towards stopping early rather than late."""
    if instance_type is None or count <= 0:
        return 0.0
    return prices.get(instance_type, max(prices.values(), default=0.0)) * count


def observe(event: Mapping[str, Any], prefixes: Mapping[str, Mapping[str, str]], prices: Mapping[str, float], endpoint_price: Any = None) -> Observation | None:
    """The point an EventBridge event means for the class, or None (not ours, not a billing state).
    `prefixes`: account -> {student: name prefix} of the students whose resources are in that
    account (the event's `account`, which EventBridge sets, decides whose it can be).
    `endpoint_price(detail, student) -> float` prices a real-time endpoint (its config names the instances)."""
    kinds = EVENT_KINDS.get(str(event.get("detail-type")))
    detail = event.get("detail")
    account = event.get("account")
    if kinds is None or not isinstance(detail, Mapping) or not event.get("time") or not isinstance(account, str):
        return None
    kind, name_field, status_field = kinds
    name, status = detail.get(name_field), detail.get(status_field)
    if not isinstance(name, str) or status not in RUNNING | STOPPED:
        return None
    student = owner(name, tags_of(detail), prefixes.get(account, {}))
    if student is None:
        return None
    running = status in RUNNING
    price = 0.0
    if running and kind == "endpoint":
        price = float(endpoint_price(detail, student)) if endpoint_price else 0.0
    elif running:
        price = hourly(prices, *instances_of(kind, detail))
    return Observation(student, kind, name, Point(resource_of(account, kind, name), epoch(str(event["time"])), running, price))


def spend(points: Iterable[Point], now: float, window: tuple[float, float] | None = None) -> float:
    """USD spent in `window` (default: now's month) by the resources these points describe."""
    start, end = window or month_window(now)
    end = min(end, now)
    by_resource: dict[str, list[Point]] = {}
    for point in points:
        by_resource.setdefault(point.resource, []).append(point)
    total = 0.0
    for resource_points in by_resource.values():
        total += sum(p.usd for p in resource_points if p.is_charge and start <= p.at < end)
        resource_points = [p for p in resource_points if not p.is_charge]
        # At one instant a stop wins over a start (a resource is not billed for a zero-length run).
        ordered = sorted(resource_points, key=lambda p: (p.at, p.running))
        running_since: float | None = None
        price = 0.0
        for point in ordered:
            if running_since is not None:
                total += price * max(0.0, min(point.at, end) - max(running_since, start)) / 3600
                running_since = None
            if point.running:
                running_since, price = point.at, point.usd_per_hour
        if running_since is not None:
            total += price * max(0.0, end - max(running_since, start)) / 3600
    return total


def is_running(points: Iterable[Point], resource: str) -> bool | None:
    """The resource's last known state (None: no point yet)."""
    mine = sorted((p for p in points if p.resource == resource and not p.is_charge), key=lambda p: (p.at, p.running))
    return mine[-1].running if mine else None


def reconcile(known: Iterable[Point], running_now: Mapping[str, tuple[float, float]], now: float) -> list[Point]:
    """Points that make the record agree with what is running: `running_now` maps each resource
    seen running to (since when, price per hour). A resource seen running whose last point says
    stopped (or that has none) gets a running point at its start, or now if it started earlier
    than its last stop (a restart whose event was missed); one whose last point says running but
    that is no longer seen gets a stopped point now (its stop event was missed: charged up to now,
    which errs towards the cap)."""
    known = list(known)
    last: dict[str, Point] = {}
    for point in sorted((p for p in known if not p.is_charge), key=lambda p: (p.at, p.running)):
        last[point.resource] = point
    added = []
    for resource, (since, price) in running_now.items():
        previous = last.get(resource)
        if previous is None or not previous.running:
            at = since if previous is None or since > previous.at else now
            added.append(Point(resource, at, True, price))
    for resource, point in last.items():
        if point.running and resource not in running_now:
            added.append(Point(resource, max(now, point.at), False))
    return added


# -- serverless endpoints: charges per window of the reconciliation's grid --------------------
SETTLE_SECONDS = 300  # CloudWatch's endpoint metrics for a minute arrive within a few minutes


def charge_windows(since: float, now: float, period: int) -> tuple[float, float] | None:
    """[first, end) of the whole windows of `period` seconds (aligned to the epoch, so every
    reconciliation cuts the same windows) from the one holding `since` to the last that ended a
    settling time ago; None when none has."""
    first = since - since % period
    end = (now - SETTLE_SECONDS) - (now - SETTLE_SECONDS) % period
    return (first, end) if end > first else None


def serverless_charge(resource: str, window_start: float, usage: Iterable[tuple[float, int]], usd_per_gb_second: float) -> Point | None:
    """What a serverless endpoint cost in one window: SageMaker bills the inference duration (the
    time the model takes to respond: CloudWatch's ModelLatency, in microseconds, summed over the
    window) times the configured memory, per GB-second. `usage`: (latency sum, memory MB) per
    variant. None for a window without compute."""
    gb_seconds = sum(latency_microseconds / 1e6 * memory_mb / 1024 for latency_microseconds, memory_mb in usage)
    usd = gb_seconds * usd_per_gb_second
    return Point(resource, window_start, False, 0.0, usd) if usd > 0 else None


def last_charged(points: Iterable[Point], resource: str) -> float | None:
    """The start of the last window charged for `resource` (None: none yet)."""
    return max((p.at for p in points if p.resource == resource and p.is_charge), default=None)
