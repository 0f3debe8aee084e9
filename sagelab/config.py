"""SageLab's typed, frozen configuration: built once in `app.py`, validated once, passed down.

Sources, later ones winning key by key:
  1. the defaults of the dataclasses below;
  2. `cdk.json` context key `sagelab` (the checked-in project defaults);
  3. an optional YAML file given with `-c config=path/to.yaml`.

`pipeline.custom_script` is a path relative to the folder of the source that sets it (the YAML
file's folder; for cdk.json, the project folder) and is stored resolved, as an absolute path.

Every problem is reported as one line naming the source (and line, for YAML), the field, the bad
value and what is allowed, e.g.
  config.yaml line 4: environments.dev.region: 'us-east-9x' is not an AWS region (expected like us-east-1)
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo

from sagelab.naming import CLASS_ID, ENVIRONMENT_ID, ID_RULE, MAX_ID_LENGTH, ResourceNames
from sagelab.quotas import QuotaError, check_declared
from sagelab.step_contract import ERROR_METRICS

REGION_PATTERN = re.compile(r"^(us|eu|ap|sa|ca|me|af|il|mx)(-gov|-iso[a-z]?)?-(north|south|east|west|central|northeast|northwest|southeast|southwest)-\d$")
ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12})?:.+$")
EMAIL_PATTERN = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
# Where the code bundle puts `pipeline.custom_script` inside sourcedir.tar.gz (beside train_custom.py).
CUSTOM_SCRIPT_BUNDLE_FOLDER = "custom"


def custom_script_bundle_path(script: str | Path) -> str:
    """A configured script's path inside sourcedir.tar.gz: `custom/<file name>`."""
    return f"{CUSTOM_SCRIPT_BUNDLE_FOLDER}/{Path(script).name}"


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
# Pydantic dataclasses: frozen (hashable, so equal pipeline configs share one built definition),
# unknown keys rejected, scalars strict (no "10" for 10, no true for 1), every constraint beside
# its default with the words an error shows (`description`). `dataclasses.replace` validates too.
_SCHEMA = ConfigDict(extra="forbid")  # frozen: by the decorators

Text = Annotated[StrictStr, Field(min_length=1, description="a non-empty string")]
InstanceType = Annotated[StrictStr, Field(pattern=INSTANCE_TYPE_PATTERN.pattern, description="an ML instance type like ml.m5.large")]
TagValue = Annotated[StrictStr, Field(pattern=TAG_VALUE_PATTERN.pattern, description="1-128 characters valid in an AWS tag value")]
Email = Annotated[StrictStr, Field(pattern=EMAIL_PATTERN.pattern, description="an email address")]
Arn = Annotated[StrictStr, Field(pattern=ARN_PATTERN.pattern, description="an ARN (arn:aws:iam::123456789012:...)")]


@dataclass(frozen=True, config=_SCHEMA)
class NotebookConfig:
    """The SageMaker notebook instance of an environment."""

    instance_type: InstanceType = "ml.t3.medium"
    volume_size_gb: StrictInt = Field(default=10, ge=5, le=16384, description="5..16384")
    idle_timeout_minutes: StrictInt = Field(default=60, ge=5, le=1440, description="5..1440 minutes")
    direct_internet_access: StrictBool = True
    subnet_id: Text | None = None
    security_group_ids: tuple[Text, ...] = ()


@dataclass(frozen=True, config=_SCHEMA)
class TuningConfig:
    """Hyperparameter tuning in place of the single training job; 0 jobs turns it off."""

    max_jobs: StrictInt = Field(default=0, ge=0, le=100, description="0 (off) ..100")
    max_parallel_jobs: StrictInt = Field(default=2, ge=1, le=10, description="1..10")
    max_depth_min: StrictInt = Field(default=3, ge=1, le=32, description="1..32")
    max_depth_max: StrictInt = Field(default=8, ge=1, le=32, description="1..32")
    eta_min: StrictFloat = Field(default=0.05, gt=0, le=1, description="0 < eta_min <= 1")
    eta_max: StrictFloat = Field(default=0.4, gt=0, le=1, description="0 < eta_max <= 1")
    strategy: Literal["Bayesian", "Random"] = "Bayesian"


@dataclass(frozen=True, config=_SCHEMA)
class PipelineConfig:
    """The training pipeline: the metric gate, instance types and default hyperparameters."""

    metric: Literal["accuracy", "weighted_f1", "roc_auc", "rmse", "mae", "mse", "r2"] = "accuracy"
    metric_threshold: StrictFloat = Field(default=0.95, ge=0, description="a non-negative number")
    processing_instance_type: InstanceType = "ml.m5.large"
    training_instance_type: InstanceType = "ml.m5.large"
    max_depth: StrictInt = Field(default=5, ge=1, le=32, description="1..32")
    eta: StrictFloat = Field(default=0.2, gt=0, le=1, description="0 < eta <= 1")
    num_round: StrictInt = Field(default=300, ge=1, le=10000, description="1..10000")
    cv_folds: StrictInt = Field(default=0, ge=0, le=20, description="0 (off) or 2..20")
    approval_status: Literal["PendingManualApproval", "Approved"] = "PendingManualApproval"
    tuning: TuningConfig = TuningConfig()
    # The algorithm a run uses when `--param Algorithm=...` is not given (docs/decisions/0011).
    algorithm: Literal["xgboost", "kmeans", "autopilot", "custom"] = "xgboost"
    # Built-in K-Means: the number of clusters (pipeline parameter `Clusters`).
    kmeans_clusters: StrictInt = Field(default=10, ge=2, le=1000, description="2..1000")
    # Gates of the problem families `metric` does not belong to (evaluate.py decides which applies):
    # regression `rmse <= rmse_threshold` (0 = the test target's standard deviation, i.e. better
    # than the best constant prediction), clustering `silhouette >= silhouette_threshold`.
    rmse_threshold: StrictFloat = Field(default=0.0, ge=0, description="0 (auto) or a positive RMSE")
    silhouette_threshold: StrictFloat = Field(default=0.1, ge=-1, le=1, description="-1..1")
    # Autopilot (AutoMLStep, ensembling mode): how many candidates and how long the job may run.
    autopilot_max_candidates: StrictInt = Field(default=10, ge=1, le=250, description="1..250")
    autopilot_max_runtime_minutes: StrictInt = Field(default=60, ge=5, le=2880, description="5..2880 minutes")
    # Your own training script (relative to the config file's folder or the project; stored
    # resolved), run in the SKLearn framework image under the SageMaker training contract by
    # train_custom.py; adds `custom` to Algorithm.
    custom_script: Text | None = None

    @property
    def custom_script_bundle_path(self) -> str | None:
        """`custom_script`'s path inside sourcedir.tar.gz (the `user_script` hyperparameter of
        train_custom.py), e.g. `custom/train.py`; None when no script is configured."""
        return custom_script_bundle_path(self.custom_script) if self.custom_script else None

    @property
    def metric_is_error(self) -> bool:
        """Errors (evaluate.py's ERROR_METRICS): lower is better, the gate is `<=`; scores: `>=`."""
        return self.metric in ERROR_METRICS


@dataclass(frozen=True, config=_SCHEMA)
class ServingConfig:
    """The endpoint and its API front door."""

    mode: Literal["realtime", "serverless"] = "realtime"
    instance_type: InstanceType = "ml.m5.large"
    initial_instance_count: StrictInt = Field(default=1, ge=1, description="at least 1, at most max_instance_count")
    max_instance_count: StrictInt = Field(default=2, ge=1, le=20, description="1..20")
    serverless_memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    serverless_max_concurrency: StrictInt = Field(default=5, ge=1, le=200, description="1..200")
    auth: Literal["api_key", "iam"] = "api_key"
    throttle_rate_limit: StrictInt = Field(default=50, ge=1, le=10000, description="1..10000 requests per second")
    throttle_burst_limit: StrictInt = Field(default=100, ge=1, description="at least throttle_rate_limit")
    quota_per_day: StrictInt = Field(default=10000, ge=1, description="at least 1")
    waf_rate_limit_per_5_minutes: StrictInt = Field(default=1000, ge=100, le=2_000_000_000, description="100..2000000000 (WAF's bounds)")
    model_package_arn: (
        Annotated[
            StrictStr,
            Field(
                pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/.+",
                description="a model package version ARN (arn:aws:sagemaker:REGION:ACCOUNT:model-package/GROUP/VERSION)",
            ),
        ]
        | None
    ) = None
    # Requests and responses are personal data in many labs: sample a tenth by default, 0 turns capture off.
    data_capture_percent: StrictInt = Field(default=10, ge=0, le=100, description="0..100")
    data_capture_expiry_days: StrictInt = Field(default=30, ge=1, le=3650, description="1..3650")
    # The scheduled drift check of the captured requests against the served version's baseline
    # (decision 0013): `auto` runs it unless the environment is a classroom student's.
    drift_check: Literal["auto", "on", "off"] = "auto"
    drift_check_interval_hours: StrictInt = Field(default=1, ge=1, le=24, description="1..24")
    drift_threshold: StrictFloat = Field(default=0.2, gt=0, le=10, description="0 < PSI threshold <= 10")
    # The API's WAF web ACL: the environment's own, the class's shared one (classroom mode, shared
    # account), or none (API keys, usage-plan throttling and the account's limits protect it).
    waf: Literal["own", "shared", "off"] = "own"
    # `class`: no per-environment dashboard (the class has one) and only the alarms an automatic
    # action uses (the blue/green rollback of a real-time endpoint).
    monitoring: Literal["full", "class"] = "full"
    # The front door function's reserved concurrency (caps what /predict takes from the account's
    # pool). Unset by default: a new account's concurrency quota is 10 and Lambda keeps 100 of any
    # pool unreserved, so any reservation fails a first deploy there. Synth counts what is set
    # against the account's quota (sagelab/quotas.py, `quotas.lambda_concurrent_executions`).
    front_door_reserved_concurrency: StrictInt | None = Field(default=None, ge=1, le=1000, description="1..1000, or unset")
    # Load the X-Ray SDK in the function for subsegments (~200 ms per cold start); Lambda's and API
    # Gateway's own active tracing stay on either way.
    trace_in_code: StrictBool = False

    @property
    def drift_check_enabled(self) -> bool:
        return self.drift_check == "on" or (self.drift_check == "auto" and self.monitoring == "full")


@dataclass(frozen=True, config=_SCHEMA)
class ReleaseConfig:
    """How versions reach an environment that takes its models from another (`promote_from`):
    the acceptance test's bounds and who approves (docs/decisions/0015)."""

    # The stage's front door must score within this of the registered metric (one-sided: better passes).
    tolerance: StrictFloat = Field(default=0.02, ge=0, le=1, description="0..1")
    # The 95th percentile of single-row /predict round trips, measured by the acceptance test.
    latency_p95_ms: StrictInt = Field(default=1000, ge=1, le=60000, description="1..60000 milliseconds")
    # Held for a manual approval before this stage (the first promoted stage deploys straight away).
    # Who may approve: IAM roles or users of the release's (source) account; who is told: emails.
    approvers: tuple[Arn, ...] = ()
    approval_emails: tuple[Email, ...] = ()


@dataclass(frozen=True, config=_SCHEMA)
class EnvironmentConfig:
    """One deployable copy of SageLab (its own buckets, key, roles, pipeline, endpoint)."""

    name: Annotated[StrictStr, Field(pattern=ENVIRONMENT_ID.pattern, max_length=MAX_ID_LENGTH, description=f"{ID_RULE}, starting with a letter")] = "dev"
    account: Annotated[StrictStr, Field(pattern=ACCOUNT_PATTERN.pattern, description="a 12-digit AWS account id, or unset")] | None = None
    region: Annotated[StrictStr, Field(pattern=REGION_PATTERN.pattern, description="an AWS region like us-east-1")] = "us-east-1"
    owner: TagValue = "sagelab"
    removal_policy: Literal["retain", "destroy"] = "retain"
    scratch_expiry_days: StrictInt = Field(default=14, ge=1, le=3650, description="1..3650")
    log_retention_days: Literal[7, 14, 30, 60, 90, 180, 365] = 30
    permissions_boundary_arn: Arn | None = None
    existing_role_arn: Arn | None = None
    allowed_instance_types: tuple[InstanceType, ...] = ()
    # SageMaker's account-wide log groups (/aws/sagemaker/TrainingJobs, ...) created with this
    # environment's key: set on ONE environment per account and region (never on students).
    account_log_groups: StrictBool = False
    # "self": whoever trains may approve (lab and class: students approve their own models).
    # "manual": runs register only PendingManualApproval and only an approver role, assumable by
    # the account's administrators, may approve (approving deploys to the public API).
    approval_mode: Literal["self", "manual"] = "self"
    notebook: NotebookConfig = NotebookConfig()
    pipeline: PipelineConfig = PipelineConfig()
    serving: ServingConfig = ServingConfig()
    # Set by classroom mode (one environment per roster row), or by hand for any environment.
    course: TagValue | None = None
    student_email: Email | None = None
    budget_usd: StrictInt = Field(default=0, ge=0, le=1_000_000, description="0 (no budget) to 1000000 USD per month")
    budget_alert_emails: tuple[Email, ...] = ()
    shares_account_with_class: StrictBool = False  # a roster row without account_id
    # A roster row with its own account: the class portal's function role (in the class account),
    # which alone may assume this environment's portal role to presign its notebook.
    class_portal_role_arn: Arn | None = None
    # Take models from that environment's releases instead of its own approvals (sagelab/release.py,
    # stacks/release/): its serving stack is updated by the release pipeline, never by this
    # environment's own approval deployer.
    promote_from: (
        Annotated[StrictStr, Field(pattern=ENVIRONMENT_ID.pattern, max_length=MAX_ID_LENGTH, description="the name of another environment")] | None
    ) = None
    release: ReleaseConfig = ReleaseConfig()

    @property
    def names(self) -> ResourceNames:
        return ResourceNames.of(self.name)


@dataclass(frozen=True, config=_SCHEMA)
class ClassroomConfig:
    """Guardrails applied to every student environment built from a roster (-c roster=FILE)."""

    course: TagValue = "sagelab-course"
    admin_emails: tuple[Email, ...] = ()
    budget_usd: StrictInt = Field(default=50, ge=1, le=100_000, description="1..100000 USD per student per month")
    allowed_instance_types: tuple[InstanceType, ...] = ("ml.t3.medium", "ml.m5.large")
    notebook_idle_minutes: StrictInt = Field(default=30, ge=5, le=1440, description="5..1440 minutes")
    serving_mode: Literal["realtime", "serverless"] = "serverless"
    scratch_expiry_days: StrictInt = Field(default=7, ge=1, le=365, description="1..365")
    # Cost at rest: one WAF web ACL per class and region instead of one per student (or none), and
    # small notebook volumes (the lab's data is small; each GB costs $0.14 a month while stopped).
    waf: Literal["shared", "off"] = "shared"
    own_account_waf: StrictBool = False  # students with their own account get their own web ACL only if asked
    notebook_volume_gb: StrictInt = Field(default=5, ge=5, le=16384, description="5..16384")
    # The hard spending cap of shared-account students (stacks/spend_cap): metered from SageMaker's
    # events; at the cap the notebook stops, the endpoint goes and new work is denied until lifted.
    spend_cap: StrictBool = True
    spend_cap_usd: StrictInt | None = Field(default=None, ge=1, le=100_000, description="1..100000 USD per student per month, or unset (budget_usd)")
    spend_warn_percent: StrictInt = Field(default=80, ge=1, le=99, description="1..99 percent of the cap")
    spend_reconcile_minutes: StrictInt = Field(default=10, ge=1, le=60, description="1..60 minutes")
    # Own-account students: bootstrap every account of these organizational units at once
    # (stacks/bootstrap: a service-managed StackSet of the CDK bootstrap template, trusting the
    # admin's account, with an execution policy derived from the student templates).
    bootstrap_organizational_units: tuple[
        Annotated[
            StrictStr,
            Field(
                pattern=r"^(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|r-[a-z0-9]{4,32})$",
                description="an organizational unit id like ou-ab12-cd34ef56 (or a root r-ab12)",
            ),
        ],
        ...,
    ] = ()
    bootstrap_call_as: Literal["SELF", "DELEGATED_ADMIN"] = "SELF"

    @property
    def cap_usd(self) -> int:
        return self.spend_cap_usd if self.spend_cap_usd is not None else self.budget_usd


@dataclass(frozen=True, config=_SCHEMA)
class SageLabConfig:
    """The whole app: every environment to synthesize."""

    environments: tuple[EnvironmentConfig, ...] = (EnvironmentConfig(),)
    classroom: ClassroomConfig = ClassroomConfig()
    # Raised account quotas (`quotas:` in YAML: key -> value, sagelab/quotas.py), as pairs so the config stays hashable.
    quotas: tuple[tuple[str, int], ...] = ()


# -- rules across fields (each field's own rules are in the schema) ------------------------------
def check_environment(env: EnvironmentConfig, where: str) -> list[tuple[str, Any, str]]:
    """(path, value, expected) for every rule that relates two fields; [] when all hold."""
    problems: list[tuple[str, Any, str]] = []

    def check(ok: bool, path: str, value: Any, expected: str) -> None:
        if not ok:
            problems.append((f"{where}.{path}", value, expected))

    nb, pl, tu, sv = env.notebook, env.pipeline, env.pipeline.tuning, env.serving
    if env.approval_mode == "manual":
        check(
            pl.approval_status == "PendingManualApproval",
            "pipeline.approval_status",
            pl.approval_status,
            "PendingManualApproval when approval_mode is manual",
        )
        check(
            env.existing_role_arn is None,
            "existing_role_arn",
            env.existing_role_arn,
            "unset when approval_mode is manual (the gate is a policy on roles SageLab creates)",
        )
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
    check(pl.metric_is_error or pl.metric_threshold <= 1, "pipeline.metric_threshold", pl.metric_threshold, f"0..1 for the score {pl.metric!r}")
    check(pl.cv_folds != 1, "pipeline.cv_folds", pl.cv_folds, "0 (off) or 2..20")
    check(
        pl.algorithm != "custom" or pl.custom_script is not None,
        "pipeline.algorithm",
        pl.algorithm,
        "xgboost, kmeans or autopilot, or set pipeline.custom_script (the script the custom algorithm runs)",
    )
    check(
        tu.max_depth_min < tu.max_depth_max, "pipeline.tuning.max_depth_max", tu.max_depth_max, f"greater than max_depth_min ({tu.max_depth_min}), at most 32"
    )
    check(tu.eta_min < tu.eta_max, "pipeline.tuning.eta_max", tu.eta_max, f"greater than eta_min ({tu.eta_min}), at most 1")
    check(
        sv.initial_instance_count <= sv.max_instance_count,
        "serving.initial_instance_count",
        sv.initial_instance_count,
        f"1..max_instance_count ({sv.max_instance_count})",
    )
    check(
        sv.throttle_burst_limit >= sv.throttle_rate_limit,
        "serving.throttle_burst_limit",
        sv.throttle_burst_limit,
        f"at least throttle_rate_limit ({sv.throttle_rate_limit})",
    )
    check(
        sv.waf != "shared" or (env.course is not None and env.shares_account_with_class),
        "serving.waf",
        sv.waf,
        "own or off ('shared' is the class web ACL, set by classroom mode for students in the class account)",
    )
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
@dataclasses.dataclass
class _Source:
    """Where a value came from, for error messages: a label and, for YAML, line numbers by path."""

    label: str
    lines: dict[str, int] = dataclasses.field(default_factory=dict)

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
    """What a value of this type looks like, in the words of an error message."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _describe(get_args(annotation)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        return " or ".join("null" if a is type(None) else _describe(a) for a in get_args(annotation))
    if origin is tuple:
        return f"a list of {_describe(get_args(annotation)[0])}"
    if dataclasses.is_dataclass(annotation):
        return f"a mapping of {', '.join(f.name for f in dataclasses.fields(annotation))}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(annotation, str(annotation))


def _described(annotation: Any) -> str | None:
    """The `description` of a constrained type (Annotated[..., Field(description=...)])."""
    if get_origin(annotation) in (types.UnionType, typing.Union):
        return next((d for a in get_args(annotation) if (d := _described(a))), None)
    if get_origin(annotation) is Annotated:
        return next((m.description for m in get_args(annotation)[1:] if isinstance(m, FieldInfo) and m.description), None)
    return None


def _annotation_at(root: Any, loc: tuple[int | str, ...]) -> tuple[Any, FieldInfo | None, Any]:
    """The annotation (and field, and owning dataclass) that `loc` of a validation error points at."""
    annotation: Any = root
    field: FieldInfo | None = None
    owner: Any = root
    for step in loc:
        while get_origin(annotation) in (Annotated, types.UnionType, typing.Union):
            options = [a for a in get_args(annotation) if a is not type(None) and not isinstance(a, FieldInfo)]
            annotation = options[0]
        if isinstance(step, int) and get_origin(annotation) is tuple:
            annotation, field = get_args(annotation)[0], None
        elif dataclasses.is_dataclass(annotation) and isinstance(step, str):
            owner = annotation
            field = annotation.__pydantic_fields__.get(step)  # type: ignore[union-attr]
            annotation = typing.get_type_hints(annotation, include_extras=True).get(step, Any)
    return annotation, field, owner


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for step in loc:
        path = f"{path}[{step}]" if isinstance(step, int) else (f"{path}.{step}" if path else str(step))
    return path


def _problem(error: ValidationError, root: Any, prefix: str, source: _Source) -> ConfigError:
    """The first problem of a validation error as our one line: source and line, field, value, what is allowed."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    path = _path(prefix, loc)
    annotation, field, owner = _annotation_at(root, loc)
    if first["type"] == "unexpected_keyword_argument":
        allowed = ", ".join(f.name for f in dataclasses.fields(owner))
        return ConfigError(f"{source.locate(path)}: {path}: unknown key (allowed: {allowed})")
    if first["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "string_pattern_mismatch", "string_too_short"):
        expected = (field.description if field is not None and field.description else None) or _described(annotation) or _describe(annotation)
    else:
        expected = _describe(annotation)
    return _fail(source, path, first["input"], expected)


def _validated(cls: Any, data: Any, path: str, source: _Source) -> Any:
    if not isinstance(data, Mapping):
        raise _fail(source, path, data, _describe(cls))
    try:
        return TypeAdapter(cls).validate_python(dict(data))
    except ValidationError as error:
        raise _problem(error, cls, path, source) from None


def replace_checked(obj: Any, label: str, path: str, **changes: Any) -> Any:
    """`dataclasses.replace` (which validates the new values) with a problem as our one line,
    `<label>: <path>.<field>: <value> is not valid (expected ...)`."""
    try:
        return dataclasses.replace(obj, **changes)
    except ValidationError as error:
        raise _problem(error, type(obj), path, _Source(label)) from None


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# How deep a config's mappings and lists may nest (the schema needs 4); deeper documents are
# refused before PyYAML's recursive composer could hit Python's recursion limit.
MAX_YAML_DEPTH = 32


def _refuse_aliases_and_depth(text: str, label: str) -> None:
    """A config has no use for anchors and aliases (`&x`, `*x`): refuse them, and nesting deeper
    than MAX_YAML_DEPTH, from the event stream, before anything is composed. An alias is a
    reference that a plain walk expands: nine levels of nine aliases (a "billion laughs", 400
    bytes) expand to 9^9 values, and an alias inside its own anchor never ends."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConfigError(
                f"{label} line {line}: YAML anchors and aliases (&name, *name) are not allowed in a SageLab config; write each value out (or use `defaults:`)"
            )
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{label} line {line}: nested more than {MAX_YAML_DEPTH} levels deep; a SageLab config nests at most a few")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _yaml_with_lines(text: str, label: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML keeping the line of every mapping key, by dotted path."""
    try:
        _refuse_aliases_and_depth(text, label)
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
        if name == CLASS_ID:
            raise _fail(source, path, name, f"another name ({CLASS_ID!r} names the class-wide resources of a classroom)")
        env = _validated(EnvironmentConfig, {**merged, "name": str(name)}, path, source)
        problems = check_environment(env, path)
        if problems:
            bad_path, value, expected = problems[0]
            raise _fail(source, bad_path, value, expected)
        environments.append(env)
    return tuple(environments)


def _resolve_custom_script(value: Any, path: str, source: _Source, base: Path, base_label: str) -> Any:
    """A configured script path -> its absolute path, checked; anything but a string is left for the schema."""
    if not isinstance(value, str) or not value:
        return value
    script = (base / value).resolve()
    if script.suffix != ".py" or not script.is_file():
        found = "is not a .py file" if script.is_file() else "is a folder" if script.is_dir() else "does not exist"
        raise _fail(source, path, value, f"a .py file, relative to {base_label} ({base}); {script} {found}")
    return str(script)


def _with_resolved_scripts(data: dict[str, Any], source: _Source, base: Path, base_label: str) -> dict[str, Any]:
    """`data` with every `pipeline.custom_script` (under defaults and each environment) resolved against `base`."""
    scopes: list[tuple[list[str], str]] = [(["defaults"], "defaults")]
    if isinstance(data.get("environments"), Mapping):
        scopes += [(["environments", str(name)], f"environments.{name}") for name in data["environments"]]
    resolved = copy.deepcopy(data)  # the caller's context stays as given
    for keys, label in scopes:
        node: Any = resolved
        for key in [*keys, "pipeline"]:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, dict) and "custom_script" in node:
            node["custom_script"] = _resolve_custom_script(node["custom_script"], f"{label}.pipeline.custom_script", source, base, base_label)
    return resolved


def _check_script_names(environments: tuple[EnvironmentConfig, ...], source: _Source) -> None:
    """One code bundle serves every environment: two different scripts may not share a bundle path."""
    seen: dict[str, tuple[str, str]] = {}
    for env in environments:
        bundle_path, script = env.pipeline.custom_script_bundle_path, env.pipeline.custom_script
        if bundle_path is None or script is None:
            continue
        other = seen.setdefault(bundle_path, (env.name, script))
        if other[1] != script:
            raise _fail(
                source,
                f"environments.{env.name}.pipeline.custom_script",
                script,
                f"a file name other than environment {other[0]}'s {other[1]} (both would be {bundle_path} in the one code bundle)",
            )


def release_chain(environments: tuple[EnvironmentConfig, ...], source: EnvironmentConfig) -> tuple[EnvironmentConfig, ...]:
    """`source` and the environments promoting from it, in release order (dev, staging, prod)."""
    by_source = {env.promote_from: env for env in environments if env.promote_from}
    chain = [source]
    while chain[-1].name in by_source:
        chain.append(by_source[chain[-1].name])
    return tuple(chain)


def _check_promotions(environments: tuple[EnvironmentConfig, ...], source: _Source) -> None:
    """`promote_from` across environments: a known source, no cycle, one promoting environment per
    source (a release is a line of stages), the same region, and accounts named (the grants of
    each side name the other's roles)."""
    by_name = {env.name: env for env in environments}
    promoting_from: dict[str, str] = {}
    for env in environments:
        if env.promote_from is None:
            continue
        path = f"environments.{env.name}.promote_from"
        origin = by_name.get(env.promote_from)
        if origin is None or origin.name == env.name:
            others = ", ".join(name for name in by_name if name != env.name) or "none"
            raise _fail(source, path, env.promote_from, f"the name of another environment of this config ({others})")
        if env.promote_from in promoting_from:
            raise _fail(source, path, env.promote_from, f"an environment no other promotes from ({promoting_from[env.promote_from]} already does)")
        promoting_from[env.promote_from] = env.name
        if origin.region != env.region:
            raise _fail(
                source,
                f"environments.{env.name}.region",
                env.region,
                f"{origin.region}, the region of {origin.name} it promotes from (crossing regions needs the model artifacts"
                " and key replicated into this region and a CodePipeline artifact store per region, which SageLab does not create)",
            )
        if env.serving.auth != "api_key":
            raise _fail(
                source,
                f"environments.{env.name}.serving.auth",
                env.serving.auth,
                "api_key in a promoting environment (the release's acceptance test sends the API key)",
            )
        for named, where in ((env, path.rpartition(".")[0]), (origin, f"environments.{origin.name}")):
            if named.account is None or named.course is not None:
                raise _fail(source, f"{where}.account", named.account, "a 12-digit account id on both sides of promote_from (no students)")
    for env in environments:  # a cycle: following promote_from comes back to where it started
        seen = [env.name]
        current = env
        while current.promote_from is not None and current.promote_from in by_name:
            current = by_name[current.promote_from]
            if current.name in seen:
                cycle = " -> ".join([*seen, current.name])
                raise _fail(source, f"environments.{env.name}.promote_from", env.promote_from, f"no cycle ({cycle}); one environment must train")
            seen.append(current.name)


def load_config(context: Mapping[str, Any] | None = None, config_file: str | Path | None = None, project_dir: str | Path | None = None) -> SageLabConfig:
    """Build the config from cdk.json context (key `sagelab`) and an optional YAML file.

    `project_dir` is cdk.json's folder (default: the current directory, where the CDK CLI runs the
    app): the context's `pipeline.custom_script` is relative to it, the YAML file's to its folder."""
    context_source = _Source("cdk.json context 'sagelab'")
    project = Path(project_dir) if project_dir is not None else Path.cwd()
    context_data = _with_resolved_scripts(dict((context or {}).get("sagelab") or {}), context_source, project.resolve(), "the project folder")
    layers: list[tuple[dict[str, Any], _Source]] = [(context_data, context_source)]
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"-c config={config_file}: file not found")
        data, lines = _yaml_with_lines(path.read_text(), str(path))
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: the top level must be a mapping with keys defaults, environments, classroom, quotas")
        source = _Source(str(path), lines)
        layers.append((_with_resolved_scripts(dict(data), source, path.resolve().parent, "the config file's folder"), source))

    allowed_top = {"defaults", "environments", "classroom", "quotas"}
    declared_quotas: dict[str, int] = {}
    classroom_data: dict[str, Any] = {}
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
            _validated(EnvironmentConfig, {k: v for k, v in data["defaults"].items() if k != "name"}, "defaults", source)
            defaults = _deep_merge(defaults, data["defaults"])
        if "environments" in data:
            environments_raw = data["environments"]
            environments_source = source
        if "classroom" in data:
            if not isinstance(data["classroom"], Mapping):
                raise _fail(source, "classroom", data["classroom"], _describe(ClassroomConfig))
            classroom_data = _deep_merge(classroom_data, data["classroom"])
            classroom = _validated(ClassroomConfig, classroom_data, "classroom", source)
        if "quotas" in data:
            declared_quotas.update(_declared_quotas(data["quotas"], source))
    environments = _environments(environments_raw, environments_source, defaults)
    _check_script_names(environments, environments_source)
    _check_promotions(environments, environments_source)
    return SageLabConfig(environments=environments, classroom=classroom, quotas=tuple(sorted(declared_quotas.items())))


def _declared_quotas(raw: Any, source: _Source) -> dict[str, int]:
    """`quotas:`: raised account quotas, each checked by sagelab/quotas.py (which names what is allowed)."""
    if not isinstance(raw, Mapping):
        raise _fail(source, "quotas", raw, "a mapping of quota name to its value in your account, e.g. {lambda_concurrent_executions: 2000}")
    declared: dict[str, int] = {}
    for key, value in raw.items():
        try:
            declared.update(check_declared({key: value}))
        except QuotaError as error:
            raise ConfigError(f"{source.locate(f'quotas.{key}')}: {error}") from None
    return declared
