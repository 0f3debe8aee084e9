"""SageLab's typed, frozen configuration: built once in `app.py`, validated once, passed down.

Sources, later ones winning key by key:
  1. the defaults of the dataclasses below;
  2. `cdk.json` context key `sagelab` (the checked-in project defaults);
  3. an optional YAML file given with `-c config=path/to.yaml`.

Every problem is reported as one line naming the source (and line, for YAML), the field, the bad
value and what is allowed, e.g.
  config.yaml line 4: environments.dev.region: 'us-east-9x' is not an AWS region (expected like us-east-1)
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from sagelab.naming import ResourceNames
from sagelab.step_contract import ERROR_METRICS

REGION_PATTERN = re.compile(r"^(us|eu|ap|sa|ca|me|af|il|mx)(-gov|-iso[a-z]?)?-(north|south|east|west|central|northeast|northwest|southeast|southwest)-\d$")
ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12})?:.+$")
EMAIL_PATTERN = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


TAG_VALUE_PATTERN = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,128}$")
NOT_IN_A_TAG_VALUE = re.compile(r"[^A-Za-z0-9 _.:/=+@-]")


def as_tag_value(text: str) -> str:
    """`text` as an AWS tag value: characters tags do not allow (an apostrophe or quote in an email
    address, say) become `_`, and it is cut at 128 characters. Used for the `owner` tag of a
    student, whose email address is valid whatever characters the school's addresses hold."""
    return NOT_IN_A_TAG_VALUE.sub("_", text)[:128]


class ConfigError(ValueError):
    """A bad config value; str() is the one line shown to the user."""


# -- the schema --------------------------------------------------------------------------------
@dataclass(frozen=True)
class NotebookConfig:
    """The SageMaker notebook instance of an environment."""

    instance_type: str = "ml.t3.medium"
    volume_size_gb: int = 10
    idle_timeout_minutes: int = 60
    direct_internet_access: bool = True
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class TuningConfig:
    """Hyperparameter tuning in place of the single training job; 0 jobs turns it off."""

    max_jobs: int = 0
    max_parallel_jobs: int = 2
    max_depth_min: int = 3
    max_depth_max: int = 8
    eta_min: float = 0.05
    eta_max: float = 0.4
    strategy: Literal["Bayesian", "Random"] = "Bayesian"


@dataclass(frozen=True)
class PipelineConfig:
    """The training pipeline: the metric gate, instance types and default hyperparameters."""

    metric: Literal["accuracy", "weighted_f1", "roc_auc", "rmse", "mae", "mse", "r2"] = "accuracy"
    metric_threshold: float = 0.95
    processing_instance_type: str = "ml.m5.large"
    training_instance_type: str = "ml.m5.large"
    max_depth: int = 5
    eta: float = 0.2
    num_round: int = 300
    cv_folds: int = 0
    approval_status: Literal["PendingManualApproval", "Approved"] = "PendingManualApproval"
    tuning: TuningConfig = TuningConfig()

    @property
    def metric_is_error(self) -> bool:
        """Errors (evaluate.py's ERROR_METRICS): lower is better, the gate is `<=`; scores: `>=`."""
        return self.metric in ERROR_METRICS


@dataclass(frozen=True)
class ServingConfig:
    """The endpoint and its API front door."""

    mode: Literal["realtime", "serverless"] = "realtime"
    instance_type: str = "ml.m5.large"
    initial_instance_count: int = 1
    max_instance_count: int = 2
    serverless_memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    serverless_max_concurrency: int = 5
    auth: Literal["api_key", "iam"] = "api_key"
    throttle_rate_limit: int = 50
    throttle_burst_limit: int = 100
    quota_per_day: int = 10000
    waf_rate_limit_per_5_minutes: int = 1000
    model_package_arn: str | None = None
    data_capture_percent: int = 100


@dataclass(frozen=True)
class EnvironmentConfig:
    """One deployable copy of SageLab (its own buckets, key, roles, pipeline, endpoint)."""

    name: str = "dev"
    account: str | None = None
    region: str = "us-east-1"
    owner: str = "sagelab"
    removal_policy: Literal["retain", "destroy"] = "retain"
    scratch_expiry_days: int = 14
    log_retention_days: Literal[7, 14, 30, 60, 90, 180, 365] = 30
    permissions_boundary_arn: str | None = None
    existing_role_arn: str | None = None
    allowed_instance_types: tuple[str, ...] = ()
    notebook: NotebookConfig = NotebookConfig()
    pipeline: PipelineConfig = PipelineConfig()
    serving: ServingConfig = ServingConfig()
    # Set by classroom mode (one environment per roster row), or by hand for any environment.
    course: str | None = None
    student_email: str | None = None
    budget_usd: int = 0
    budget_alert_emails: tuple[str, ...] = ()
    shares_account_with_class: bool = False  # a roster row without account_id

    @property
    def names(self) -> ResourceNames:
        return ResourceNames.of(self.name)

    @property
    def resource_prefix(self) -> str:
        return self.names.prefix


@dataclass(frozen=True)
class ClassroomConfig:
    """Guardrails applied to every student environment built from a roster (-c roster=FILE)."""

    course: str = "sagelab-course"
    admin_emails: tuple[str, ...] = ()
    budget_usd: int = 50
    allowed_instance_types: tuple[str, ...] = ("ml.t3.medium", "ml.m5.large")
    notebook_idle_minutes: int = 30
    serving_mode: Literal["realtime", "serverless"] = "serverless"
    scratch_expiry_days: int = 7


@dataclass(frozen=True)
class SageLabConfig:
    """The whole app: every environment to synthesize."""

    environments: tuple[EnvironmentConfig, ...] = (EnvironmentConfig(),)
    classroom: ClassroomConfig = ClassroomConfig()


# -- validation rules beyond types -------------------------------------------------------------
def check_environment(env: EnvironmentConfig, where: str) -> list[tuple[str, Any, str]]:
    problems: list[tuple[str, Any, str]] = []

    def check(ok: bool, path: str, value: Any, expected: str) -> None:
        if not ok:
            problems.append((f"{where}.{path}", value, expected))

    check(bool(NAME_PATTERN.match(env.name)), "name", env.name, "lowercase letters, digits and hyphens, starting with a letter, at most 20 characters")
    check(bool(REGION_PATTERN.match(env.region)), "region", env.region, "an AWS region like us-east-1")
    check(env.account is None or bool(ACCOUNT_PATTERN.match(env.account)), "account", env.account, "a 12-digit AWS account id, or unset")
    check(bool(TAG_VALUE_PATTERN.match(env.owner)), "owner", env.owner, "1-128 characters valid in an AWS tag value")
    check(1 <= env.scratch_expiry_days <= 3650, "scratch_expiry_days", env.scratch_expiry_days, "1..3650")
    for key in ("permissions_boundary_arn", "existing_role_arn"):
        value = getattr(env, key)
        check(value is None or bool(ARN_PATTERN.match(value)), key, value, "an ARN (arn:aws:iam::123456789012:...)")
    for position, instance_type in enumerate(env.allowed_instance_types):
        check(bool(INSTANCE_TYPE_PATTERN.match(instance_type)), f"allowed_instance_types[{position}]", instance_type, "an ML instance type like ml.m5.large")
    nb = env.notebook
    check(bool(INSTANCE_TYPE_PATTERN.match(nb.instance_type)), "notebook.instance_type", nb.instance_type, "an ML instance type like ml.t3.medium")
    check(5 <= nb.volume_size_gb <= 16384, "notebook.volume_size_gb", nb.volume_size_gb, "5..16384")
    check(5 <= nb.idle_timeout_minutes <= 1440, "notebook.idle_timeout_minutes", nb.idle_timeout_minutes, "5..1440 minutes")
    check(
        nb.direct_internet_access or nb.subnet_id is not None,
        "notebook.direct_internet_access",
        nb.direct_internet_access,
        "true, or false together with notebook.subnet_id (a VPC)",
    )
    check(
        (nb.subnet_id is None) == (not nb.security_group_ids),
        "notebook.security_group_ids",
        list(nb.security_group_ids),
        "set together with notebook.subnet_id",
    )
    pl = env.pipeline
    for key in ("processing_instance_type", "training_instance_type"):
        check(bool(INSTANCE_TYPE_PATTERN.match(getattr(pl, key))), f"pipeline.{key}", getattr(pl, key), "an ML instance type like ml.m5.large")
    check(
        pl.metric_is_error or 0 <= pl.metric_threshold <= 1,
        "pipeline.metric_threshold",
        pl.metric_threshold,
        f"0..1 for the score {pl.metric!r}",
    )
    check(pl.metric_threshold >= 0, "pipeline.metric_threshold", pl.metric_threshold, "a non-negative number")
    check(1 <= pl.max_depth <= 32, "pipeline.max_depth", pl.max_depth, "1..32")
    check(0 < pl.eta <= 1, "pipeline.eta", pl.eta, "0 < eta <= 1")
    check(1 <= pl.num_round <= 10000, "pipeline.num_round", pl.num_round, "1..10000")
    check(pl.cv_folds == 0 or 2 <= pl.cv_folds <= 20, "pipeline.cv_folds", pl.cv_folds, "0 (off) or 2..20")
    tu = pl.tuning
    check(0 <= tu.max_jobs <= 100, "pipeline.tuning.max_jobs", tu.max_jobs, "0 (off) ..100")
    check(1 <= tu.max_parallel_jobs <= 10, "pipeline.tuning.max_parallel_jobs", tu.max_parallel_jobs, "1..10")
    check(
        1 <= tu.max_depth_min < tu.max_depth_max <= 32,
        "pipeline.tuning.max_depth_max",
        tu.max_depth_max,
        f"greater than max_depth_min ({tu.max_depth_min}), at most 32",
    )
    check(0 < tu.eta_min < tu.eta_max <= 1, "pipeline.tuning.eta_max", tu.eta_max, f"greater than eta_min ({tu.eta_min}), at most 1")
    sv = env.serving
    check(bool(INSTANCE_TYPE_PATTERN.match(sv.instance_type)), "serving.instance_type", sv.instance_type, "an ML instance type like ml.m5.large")
    check(
        1 <= sv.initial_instance_count <= sv.max_instance_count,
        "serving.initial_instance_count",
        sv.initial_instance_count,
        f"1..max_instance_count ({sv.max_instance_count})",
    )
    check(sv.max_instance_count <= 20, "serving.max_instance_count", sv.max_instance_count, "at most 20")
    check(1 <= sv.serverless_max_concurrency <= 200, "serving.serverless_max_concurrency", sv.serverless_max_concurrency, "1..200")
    check(1 <= sv.throttle_rate_limit <= 10000, "serving.throttle_rate_limit", sv.throttle_rate_limit, "1..10000 requests per second")
    check(
        sv.throttle_burst_limit >= sv.throttle_rate_limit,
        "serving.throttle_burst_limit",
        sv.throttle_burst_limit,
        f"at least throttle_rate_limit ({sv.throttle_rate_limit})",
    )
    check(sv.quota_per_day >= 1, "serving.quota_per_day", sv.quota_per_day, "at least 1")
    check(
        100 <= sv.waf_rate_limit_per_5_minutes <= 2_000_000_000,
        "serving.waf_rate_limit_per_5_minutes",
        sv.waf_rate_limit_per_5_minutes,
        "100..2000000000 (WAF's bounds)",
    )
    check(
        sv.model_package_arn is None or ":model-package/" in sv.model_package_arn,
        "serving.model_package_arn",
        sv.model_package_arn,
        "a model package version ARN (arn:aws:sagemaker:REGION:ACCOUNT:model-package/GROUP/VERSION)",
    )
    check(0 <= sv.data_capture_percent <= 100, "serving.data_capture_percent", sv.data_capture_percent, "0..100")
    check(env.course is None or bool(TAG_VALUE_PATTERN.match(env.course)), "course", env.course, "1-128 characters valid in an AWS tag value")
    check(env.student_email is None or bool(EMAIL_PATTERN.match(env.student_email)), "student_email", env.student_email, "an email address")
    check(0 <= env.budget_usd <= 1_000_000, "budget_usd", env.budget_usd, "0 (no budget) to 1000000 USD per month")
    for position, email in enumerate(env.budget_alert_emails):
        check(bool(EMAIL_PATTERN.match(email)), f"budget_alert_emails[{position}]", email, "an email address")
    check(
        env.budget_usd == 0 or bool(env.budget_alert_emails),
        "budget_alert_emails",
        list(env.budget_alert_emails),
        "at least one address when budget_usd is set",
    )
    if env.allowed_instance_types:
        allowed = set(env.allowed_instance_types)
        for path, value in (
            ("notebook.instance_type", nb.instance_type),
            ("pipeline.processing_instance_type", pl.processing_instance_type),
            ("pipeline.training_instance_type", pl.training_instance_type),
            ("serving.instance_type", sv.instance_type),
        ):
            check(
                value in allowed or (path == "serving.instance_type" and sv.mode == "serverless"),
                path,
                value,
                f"one of allowed_instance_types {sorted(allowed)}",
            )
    return problems


# -- building typed objects from plain data ------------------------------------------------------
@dataclass
class _Source:
    """Where a value came from, for error messages: a label and, for YAML, line numbers by path."""

    label: str
    lines: dict[str, int] = field(default_factory=dict)

    def locate(self, path: str) -> str:
        line = None
        probe = path
        while probe:
            if probe in self.lines:
                line = self.lines[probe]
                break
            probe = probe.rpartition(".")[0]
        return f"{self.label} line {line}" if line else self.label


def _fail(source: _Source, path: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{source.locate(path)}: {path}: {value!r} is not valid (expected {expected})")


def _describe(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        return " or ".join("null" if a is type(None) else _describe(a) for a in get_args(annotation))
    if origin is tuple:
        return f"a list of {_describe(get_args(annotation)[0])}"
    if dataclasses.is_dataclass(annotation):
        return f"a mapping of {', '.join(f.name for f in dataclasses.fields(annotation))}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(annotation, str(annotation))


def _coerce(annotation: Any, value: Any, path: str, source: _Source) -> Any:
    origin = get_origin(annotation)
    if origin is Literal:
        if value in get_args(annotation) and type(value) in {type(a) for a in get_args(annotation)}:
            return value
        raise _fail(source, path, value, _describe(annotation))
    if origin in (types.UnionType, typing.Union):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, path, source)
            except ConfigError as error:
                errors.append(error)
        raise _fail(source, path, value, _describe(annotation))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(source, path, value, _describe(annotation))
        item_type = get_args(annotation)[0]
        return tuple(_coerce(item_type, item, f"{path}[{i}]", source) for i, item in enumerate(value))
    if dataclasses.is_dataclass(annotation):
        return _build_dataclass(annotation, value, path, source)
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str and isinstance(value, str) and value:
        return value
    raise _fail(source, path, value, _describe(annotation))


def _build_dataclass(cls: Any, data: Any, path: str, source: _Source, base: Any = None) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise _fail(source, path, data, _describe(cls))
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(f"{source.locate(where)}: {where}: unknown key (allowed: {', '.join(names)})")
    values = {}
    for name in names:
        if name in data:
            child_path = f"{path}.{name}" if path else name
            values[name] = _coerce(hints[name], data[name], child_path, source)
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _yaml_with_lines(text: str, label: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML keeping the line of every mapping key, by dotted path."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{label}{where}: not valid YAML: {getattr(error, 'problem', error)}") from None
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> Any:
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key_node, value_node in node.value:
                key = key_node.value
                child = f"{path}.{key}" if path else key
                lines[child] = key_node.start_mark.line + 1
                result[key] = walk(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                lines[f"{path}[{index}]"] = item.start_mark.line + 1
                items.append(walk(item, f"{path}[{index}]"))
            return items
        return yaml.SafeLoader(text).construct_object(node, deep=True) if node is not None else None

    return (walk(root, "") if root is not None else {}), lines


def _environments(raw: Any, source: _Source, defaults: Mapping[str, Any]) -> tuple[EnvironmentConfig, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(source, "environments", raw, "a mapping of environment name to its settings, e.g. {dev: {}}")
    environments = []
    for name, settings in raw.items():
        path = f"environments.{name}"
        settings = {} if settings is None else settings
        if not isinstance(settings, Mapping):
            raise _fail(source, path, settings, "a mapping of environment settings")
        merged = _deep_merge(defaults, settings)
        if "name" in settings and settings["name"] != name:
            raise _fail(source, f"{path}.name", settings["name"], f"the environment's key {name!r} (or leave it out)")
        env = _build_dataclass(EnvironmentConfig, {**merged, "name": str(name)}, path, source)
        problems = check_environment(env, path)
        if problems:
            bad_path, value, expected = problems[0]
            raise _fail(source, bad_path, value, expected)
        environments.append(env)
    return tuple(environments)


def load_config(context: Mapping[str, Any] | None = None, config_file: str | Path | None = None) -> SageLabConfig:
    """Build the config from cdk.json context (key `sagelab`) and an optional YAML file."""
    context_data = dict((context or {}).get("sagelab") or {})
    layers: list[tuple[dict[str, Any], _Source]] = [(context_data, _Source("cdk.json context 'sagelab'"))]
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"-c config={config_file}: file not found")
        data, lines = _yaml_with_lines(path.read_text(), str(path))
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: the top level must be a mapping with keys defaults, environments, classroom")
        layers.append((dict(data), _Source(str(path), lines)))

    allowed_top = {"defaults", "environments", "classroom"}
    classroom = ClassroomConfig()
    defaults: dict[str, Any] = {}
    environments_raw: Any = {"dev": {}}
    environments_source = layers[0][1]
    for data, source in layers:
        for key in data:
            if key not in allowed_top:
                raise ConfigError(f"{source.locate(str(key))}: {key}: unknown key (allowed: {', '.join(sorted(allowed_top))})")
        if "defaults" in data:
            if not isinstance(data["defaults"], Mapping):
                raise _fail(source, "defaults", data["defaults"], "a mapping of environment settings applied to every environment")
            _build_dataclass(EnvironmentConfig, {k: v for k, v in data["defaults"].items() if k != "name"}, "defaults", source)
            defaults = _deep_merge(defaults, data["defaults"])
        if "environments" in data:
            environments_raw = data["environments"]
            environments_source = source
        if "classroom" in data:
            classroom = _build_dataclass(ClassroomConfig, data["classroom"], "classroom", source, base=classroom)
            classroom_problems = _check_classroom(classroom)
            if classroom_problems:
                field_path, value, expected = classroom_problems[0]
                raise _fail(source, field_path, value, expected)
    return SageLabConfig(environments=_environments(environments_raw, environments_source, defaults), classroom=classroom)


def _check_classroom(classroom: ClassroomConfig) -> list[tuple[str, Any, str]]:
    problems: list[tuple[str, Any, str]] = []
    if not TAG_VALUE_PATTERN.match(classroom.course):
        problems.append(("classroom.course", classroom.course, "1-128 characters valid in an AWS tag value"))
    for position, email in enumerate(classroom.admin_emails):
        if not EMAIL_PATTERN.match(email):
            problems.append((f"classroom.admin_emails[{position}]", email, "an email address"))
    if not 1 <= classroom.budget_usd <= 100_000:
        problems.append(("classroom.budget_usd", classroom.budget_usd, "1..100000 USD per student per month"))
    for position, instance_type in enumerate(classroom.allowed_instance_types):
        if not INSTANCE_TYPE_PATTERN.match(instance_type):
            problems.append((f"classroom.allowed_instance_types[{position}]", instance_type, "an ML instance type like ml.t3.medium"))
    if not 5 <= classroom.notebook_idle_minutes <= 1440:
        problems.append(("classroom.notebook_idle_minutes", classroom.notebook_idle_minutes, "5..1440 minutes"))
    if not 1 <= classroom.scratch_expiry_days <= 365:
        problems.append(("classroom.scratch_expiry_days", classroom.scratch_expiry_days, "1..365"))
    return problems
