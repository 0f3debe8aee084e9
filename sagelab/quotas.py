"""Account quotas, counted before deploy: what the synthesized stacks take from each account.

A class in one account takes one notebook, one API, one usage plan and key, a key, a dozen roles
and two stacks per student from quotas that the account shares; Lambda also keeps 100 of the
account's concurrency pool unreserved, so every reservation comes out of the rest. Synth counts
each quota below over every template that deploys into an account (and region, for regional
quotas) and fails, naming the quota, its code, the numbers and the value to raise it to, when the
default (or the raised value the config declares under `quotas:`) is exceeded:

    quotas:                                   # raised values, applied to every account the app deploys into
      lambda_concurrent_executions: 2000
      notebook_instances.ml.t3.medium: 60     # per instance type: `<quota>.<instance type>`

Per-instance-type SageMaker quotas have no single default (AWS sets them per account, often 0-4
for a new one): they are checked only where the config declares them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# Lambda keeps this much of every account's pool for functions without reserved concurrency.
LAMBDA_UNRESERVED_MINIMUM = 100
# A new account's (and many course accounts') concurrency quota: what the default config must fit.
NEW_ACCOUNT_LAMBDA_CONCURRENCY = 10


@dataclass(frozen=True)
class Quota:
    key: str  # the config's word for it (`quotas.<key>`)
    name: str  # Service Quotas' name
    code: str  # Service Quotas' code ("" where the service has none)
    default: int | None  # None: no single default (per-instance-type SageMaker quotas)
    scope: Literal["account", "region", "role"]
    source: str
    per_instance_type: bool = False


LAMBDA_CONCURRENCY = Quota(
    "lambda_concurrent_executions",
    "Lambda concurrent executions",
    "L-B99A9384",
    1000,
    "region",
    "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html (1,000; new accounts may start at 10; 100 always stay unreserved)",
)
# One table, with sources. Defaults are AWS's documented ones for an established account.
QUOTAS: tuple[Quota, ...] = (
    LAMBDA_CONCURRENCY,
    Quota("iam_roles", "Roles per account", "L-FE177D64", 1000, "account", "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"),
    Quota(
        "cloudformation_stacks",
        "Stack count",
        "L-0485CB21",
        2000,
        "region",
        "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html",
    ),
    Quota(
        "kms_keys", "Customer Master Keys (CMKs)", "L-C2F1777E", 100_000, "region", "https://docs.aws.amazon.com/kms/latest/developerguide/resource-limits.html"
    ),
    Quota(
        "rest_apis",
        "Regional APIs per Region",
        "",
        600,
        "region",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html (cannot be increased)",
    ),
    Quota(
        "usage_plans",
        "Usage plans per account",
        "L-E8693075",
        300,
        "region",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html (usage plans per account per Region)",
    ),
    Quota(
        "api_keys",
        "API keys per account per Region",
        "",
        10_000,
        "region",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-execution-service-limits-table.html (cannot be increased)",
    ),
    Quota(
        "serverless_endpoints",
        "Maximum number of serverless endpoints",
        "",
        50,
        "region",
        "https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html (50 serverless endpoint variants per Region)",
    ),
    Quota(
        "serverless_concurrency",
        "Maximum total concurrency that can be allocated across all serverless endpoints",
        "",
        200,
        "region",
        "https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html (200 per Region; some new accounts report 10)",
    ),
    Quota(
        "notebook_instances",
        "<instance type> for notebook instance usage",
        "",
        None,
        "region",
        "https://docs.aws.amazon.com/general/latest/gr/sagemaker.html (set per account: see the Service Quotas console)",
        per_instance_type=True,
    ),
    Quota(
        "endpoint_instances",
        "<instance type> for endpoint usage",
        "",
        None,
        "region",
        "https://docs.aws.amazon.com/general/latest/gr/sagemaker.html (set per account: see the Service Quotas console)",
        per_instance_type=True,
    ),
)
# Per role, not a sum: the largest number of customer managed policies attached to one role. The
# class portal's function role takes one per 12 shared-account students (a policy holds 6,144
# characters), so a class past 108 in one account needs it raised (up to 20: 228 students).
MANAGED_POLICIES_PER_ROLE = Quota(
    "iam_managed_policies_per_role",
    "Managed policies per role",
    "L-0DA4ABF3",
    10,
    "role",
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html (10 by default, at most 20)",
)
QUOTAS = (*QUOTAS, MANAGED_POLICIES_PER_ROLE)
BY_KEY = {quota.key: quota for quota in QUOTAS}


class QuotaError(ValueError):
    """A quota the app would exceed; str() names the quota, the numbers and what to raise."""


def check_declared(declared: Mapping[str, Any], label: str = "quotas") -> dict[str, int]:
    """The config's `quotas:` mapping, each key a known quota (or `<per-type quota>.<ml.type>`)
    and each value a positive integer; a bad one is named with what is allowed."""
    checked: dict[str, int] = {}
    for key, value in declared.items():
        base, _, instance_type = str(key).partition(".")
        quota = BY_KEY.get(base)
        if quota is None or bool(instance_type) != quota.per_instance_type:
            allowed = ", ".join(q.key + (".<ml instance type>" if q.per_instance_type else "") for q in QUOTAS)
            raise QuotaError(f"{label}.{key}: unknown quota (allowed: {allowed})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise QuotaError(f"{label}.{key}: {value!r} is not valid (expected a positive integer: the quota's value in your account)")
        checked[str(key)] = value
    return checked


@dataclass(frozen=True)
class StackResources:
    """What one stack deploys, as (resource type, properties) pairs, and where."""

    stack_name: str
    account: str  # "" for an environment-agnostic stack (the deploying account)
    region: str
    resources: tuple[tuple[str, Mapping[str, Any]], ...]


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def demand_of(stack: StackResources) -> Counter[str]:
    """The units of each quota (key, or `key.<instance type>`) that one stack takes."""
    units: Counter[str] = Counter(cloudformation_stacks=1)
    for resource_type, props in stack.resources:
        if resource_type == "AWS::IAM::Role":
            units["iam_roles"] += 1
        elif resource_type == "AWS::KMS::Key":
            units["kms_keys"] += 1
        elif resource_type == "AWS::Lambda::Function":
            units["lambda_concurrent_executions"] += _int(props.get("ReservedConcurrentExecutions"))
        elif resource_type == "AWS::ApiGateway::RestApi":
            units["rest_apis"] += 1
        elif resource_type == "AWS::ApiGateway::UsagePlan":
            units["usage_plans"] += 1
        elif resource_type == "AWS::ApiGateway::ApiKey":
            units["api_keys"] += 1
        elif resource_type == "AWS::SageMaker::NotebookInstance" and isinstance(props.get("InstanceType"), str):
            units[f"notebook_instances.{props['InstanceType']}"] += 1
        elif resource_type == "AWS::SageMaker::EndpointConfig":
            for variant in props.get("ProductionVariants") or []:
                serverless = variant.get("ServerlessConfig")
                if serverless:
                    units["serverless_endpoints"] += 1
                    units["serverless_concurrency"] += _int(serverless.get("MaxConcurrency"), 1)
                elif isinstance(variant.get("InstanceType"), str):
                    units[f"endpoint_instances.{variant['InstanceType']}"] += _int(variant.get("InitialInstanceCount"), 1)
    return units


def managed_policies_by_role(stack: StackResources) -> Counter[str]:
    """How many managed policies each role of the stack gets from the stack's AWS::IAM::ManagedPolicy
    resources (how SageLab's constructs attach them), by the role's reference."""
    counts: Counter[str] = Counter()
    for resource_type, props in stack.resources:
        if resource_type == "AWS::IAM::ManagedPolicy":
            for role in props.get("Roles") or []:
                counts[role["Ref"] if isinstance(role, Mapping) and "Ref" in role else str(role)] += 1
    return counts


def _check_per_role(stacks: Iterable[StackResources], declared: Mapping[str, int]) -> None:
    quota = MANAGED_POLICIES_PER_ROLE
    limit = declared.get(quota.key, quota.default) or 0
    for stack in stacks:
        for role, used in managed_policies_by_role(stack).most_common(1):
            if used > limit:
                source = "declared in quotas:" if quota.key in declared else "AWS's default"
                raise QuotaError(
                    f"account {stack.account or '(the deploying account)'}: {quota.name} (Service Quotas {quota.code}): {used} attached to "
                    f"{stack.stack_name}'s role {role} > {limit} ({source}). Raise the quota to at least {used} and declare it "
                    f"(quotas: {{{quota.key}: {used}}}), or take less (a smaller class, another account)"
                )


def _limit(key: str, declared: Mapping[str, int]) -> tuple[Quota, int | None]:
    quota = BY_KEY[key.partition(".")[0]]
    return quota, declared.get(key, quota.default)


def check_quotas(stacks: Iterable[StackResources], declared: Mapping[str, int] | None = None) -> None:
    """QuotaError for the first quota that the stacks exceed in an account (and region)."""
    declared = declared or {}
    stacks = list(stacks)
    _check_per_role(stacks, declared)
    totals: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    contributors: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for stack in stacks:
        for key, units in demand_of(stack).items():
            quota = BY_KEY[key.partition(".")[0]]
            where = (stack.account, stack.region if quota.scope == "region" else "")
            totals[where][key] += units
            if units:
                contributors[(*where, key)][stack.stack_name] = units
    for (account, region), counts in totals.items():
        for key, used in sorted(counts.items()):
            quota, limit = _limit(key, declared)
            if limit is None:
                continue
            needed = used + LAMBDA_UNRESERVED_MINIMUM if quota is LAMBDA_CONCURRENCY and used else used
            if needed <= limit:
                continue
            place = f"account {account or '(the deploying account)'}{' ' + region if region else ''}"
            top = contributors[(account, region, key)].most_common(3)
            by = ", ".join(f"{name} {units}" for name, units in top) + (", ..." if len(contributors[(account, region, key)]) > 3 else "")
            what = quota.name.replace("<instance type>", key.partition(".")[2])
            code = f" (Service Quotas {quota.code})" if quota.code else ""
            if quota is LAMBDA_CONCURRENCY:
                numbers = f"reserved {used} ({by}) + {LAMBDA_UNRESERVED_MINIMUM} Lambda keeps unreserved = {needed} > {limit}"
            else:
                numbers = f"{used} needed ({by}) > {limit}"
            source = "declared in quotas:" if key in declared else "AWS's default"
            raise QuotaError(
                f"{place}: {what}{code}: {numbers} ({source}). Raise the quota to at least {needed} and declare it "
                f"(quotas: {{{key}: {needed}}}), or take less (a smaller class, another account or region)"
            )
