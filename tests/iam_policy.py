"""A small IAM policy model for synthesized CloudFormation templates (tests only).

It answers "can this principal do that to this resource?" over the policies in our templates,
with IAM's own semantics, so that least-privilege claims are tested as properties rather than as
string searches. No AWS call; everything is computed from the template JSON.

API (stable: other test modules import it)
------------------------------------------
Resolving intrinsics

    env = Env(partition="aws", region="us-east-1", account="123456789012")
    stacks = Stacks({stack_name: template, ...}, env)         # exports resolve across these stacks
    stacks.resolve(stack_name, value) -> Any                   # concrete strings, no intrinsics left
    stacks.stand_in(stack_name, logical_id, attribute=None)    # what Ref/GetAtt of a resource became

  Handles Ref (pseudo parameters, parameters by Default or `parameters=`, resources), Fn::GetAtt,
  Fn::Join, Fn::Sub (both forms), Fn::Select, Fn::Split, Fn::ImportValue, Fn::If/Equals/Not/And/Or
  and AWS::NoValue. A resource in a template becomes an ARN-like stand-in that is unique per
  (stack, logical id): explicit names (BucketName, RoleName, ...) are used where the template sets
  them, otherwise `<stack>-<logicalid>` stands for the physical name, in the ARN shape of the type
  (S3 bucket, IAM role/policy, KMS key, Lambda function, log group, SNS topic, SQS queue); other
  types get `arn:<p>:cfn-stand-in:<region>:<account>:<stack>/<logical id>`. A stand-in matches
  only patterns that would match that one resource (e.g. `*`), never a sibling's name.

Collecting policies

    stacks.roles() -> list[RoleRef]                              # every AWS::IAM::Role
    stacks.identity_policies(role) -> list[Statement]            # inline, AWS::IAM::Policy, ManagedPolicy
                                                                 #   (by Roles or ManagedPolicyArns)
    role.aws_managed_policy_arns                                 # AWS-managed ARNs (flagged, not modelled)
    role.permissions_boundary                                    # resolved ARN or None
    stacks.resource_policies() -> list[ResourcePolicy]           # bucket, key, topic, queue policies
    stacks.policy_documents() -> list[PolicyDocument]            # every document, resolved, for linters

  A Statement carries its resolved Action/NotAction, Resource/NotResource, Principal/NotPrincipal,
  Condition and `source` ("<stack>/<logical id>/<sid>").

Matching (IAM semantics)

    action_matches(pattern, action)       # case-insensitive, `*` and `?`
    resource_matches(pattern, arn, ctx)   # case-sensitive, `*` spans `/` and `:`; ${...} from ctx
    conditions_hold(condition, ctx)       # StringEquals/NotEquals/Like/NotLike, ArnEquals/Like
                                          #   (and Not), Bool, Null, ForAnyValue:/ForAllValues:,
                                          #   ...IfExists; ${aws:PrincipalTag/x} etc. from ctx
    statement_applies(statement, action, resource, ctx) -> bool
    is_allowed(statements, action, resource, ctx) -> bool   # explicit Deny overrides Allow
    reach(statement, action, resource) -> Reach             # NONE, UNCONDITIONAL or CONDITIONAL:
                                                            #   could the Allow match this resource
                                                            #   for SOME context, and only if its
                                                            #   conditions/policy variables allow
    can_apply_given(statement, action, resource, known) -> bool
                                                            # could it apply when the keys in `known`
                                                            #   have those values and every other key
                                                            #   may have any value (worst case)

  `ctx` is a request context: {condition key: str | list[str]}, keys case-insensitive, e.g.
  {"aws:PrincipalTag/student": "alice", "aws:ResourceTag/student": "bob"}.

Transitive reach (what a principal can make act for it)

    reach = Reachability(stacks, aws_managed={arn: [statement json, ...]})
    reach.entries() -> list[Entry]          # who acts from outside: notebook roles (students),
                                            #   roles whose trust names accounts (people), the
                                            #   roles of functions an API method integrates (callers)
    reach.closure(role) -> list[(RoleRef | ADMIN, path)]
                                            # every role that role can make act, with the path
    reach.can_read_object(role, bucket_arn, key) -> bool
                                            # identity + bucket policy + the bucket key's policy

  Edges, each a question to the acting role's policies (worst case over unknown condition keys,
  `can_apply_given`; a Deny counts only where it surely applies): iam:PassRole of a role to a
  service its trust accepts; sts:AssumeRole of a role whose trust names it (or its account);
  sagemaker:StartPipelineExecution/RetryPipelineExecution of a pipeline -> its RoleArn and every
  RoleArn in its definition (the jobs); lambda:InvokeFunction -> the function's role; an action
  that emits an event an EventBridge rule matches (e.g. sagemaker:UpdateModelPackage -> "SageMaker
  Model Package State Change") -> the roles of the rule's Lambda targets; cloudformation:UpdateStack
  with a role other than ours -> ADMIN (the bootstrap execution role: reads everything). An event
  type, a rule target or a role ARN the model does not know raises NotModelled: a new path must be
  taught, never skipped.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sagelab.naming import SEPARATOR

Context = Mapping[str, "str | Sequence[str]"]


@dataclass(frozen=True)
class Env:
    partition: str = "aws"
    region: str = "us-east-1"
    account: str = "123456789012"
    url_suffix: str = "amazonaws.com"


# -- stand-ins for resources of a template --------------------------------------------------------

# Property that holds an explicit physical name, per type.
NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SageMaker::Pipeline": "PipelineName",
    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
    "AWS::SageMaker::Endpoint": "EndpointName",
    "AWS::SageMaker::EndpointConfig": "EndpointConfigName",
    "AWS::SageMaker::Model": "ModelName",
    "AWS::SageMaker::NotebookInstance": "NotebookInstanceName",
}
SAGEMAKER_ARN_RESOURCE_TYPES = {
    "AWS::SageMaker::Pipeline": "pipeline",
    "AWS::SageMaker::ModelPackageGroup": "model-package-group",
    "AWS::SageMaker::Endpoint": "endpoint",
    "AWS::SageMaker::EndpointConfig": "endpoint-config",
    "AWS::SageMaker::Model": "model",
    "AWS::SageMaker::NotebookInstance": "notebook-instance",
}


def _arn(env: Env, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
    return f"arn:{env.partition}:{service}:{env.region if region else ''}:{env.account if account else ''}:{resource}"


def _typed_stand_in(env: Env, resource_type: str, name: str, attribute: str | None) -> str:
    """Ref (attribute None) or GetAtt of a resource called `name`, in the shape CloudFormation returns."""
    if resource_type == "AWS::S3::Bucket":
        return {None: name, "Arn": _arn(env, "s3", name, region=False, account=False)}.get(attribute, f"{name}.{attribute}")
    if resource_type == "AWS::IAM::Role":
        return {None: name, "Arn": _arn(env, "iam", f"role/{name}", region=False), "RoleId": f"AROA{name}"}.get(attribute, f"{name}.{attribute}")
    if resource_type == "AWS::IAM::ManagedPolicy":
        return _arn(env, "iam", f"policy/{name}", region=False) if attribute in (None, "PolicyArn") else f"{name}.{attribute}"
    if resource_type == "AWS::KMS::Key":
        return {None: name, "KeyId": name, "Arn": _arn(env, "kms", f"key/{name}")}.get(attribute, f"{name}.{attribute}")
    if resource_type == "AWS::Lambda::Function":
        return {None: name, "Arn": _arn(env, "lambda", f"function:{name}")}.get(attribute, f"{name}.{attribute}")
    if resource_type == "AWS::Logs::LogGroup":
        return {None: name, "Arn": _arn(env, "logs", f"log-group:{name}:*")}.get(attribute, f"{name}.{attribute}")
    if resource_type == "AWS::SNS::Topic":
        return {None: _arn(env, "sns", name), "TopicArn": _arn(env, "sns", name), "TopicName": name}.get(attribute, f"{name}.{attribute}")
    if resource_type == "AWS::SQS::Queue":
        url = f"https://sqs.{env.region}.{env.url_suffix}/{env.account}/{name}"
        return {None: url, "QueueUrl": url, "Arn": _arn(env, "sqs", name), "QueueName": name}.get(attribute, f"{name}.{attribute}")
    if resource_type == "AWS::DynamoDB::Table":
        return {None: name, "Arn": _arn(env, "dynamodb", f"table/{name}")}.get(attribute, f"{name}.{attribute}")
    if resource_type in SAGEMAKER_ARN_RESOURCE_TYPES:
        arn = _arn(env, "sagemaker", f"{SAGEMAKER_ARN_RESOURCE_TYPES[resource_type]}/{name}")
        return name if attribute is None or attribute.endswith("Name") else arn
    return f"{name}.{attribute}" if attribute else name


# -- policies ---------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    principal: Any = None
    not_principal: Any = None
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sid: str = ""
    source: str = ""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], source: str) -> Statement:
        condition = {op: {key: _as_list(values) for key, values in keys.items()} for op, keys in (raw.get("Condition") or {}).items()}
        return cls(
            effect=raw["Effect"],
            actions=tuple(_as_list(raw.get("Action"))),
            not_actions=tuple(_as_list(raw.get("NotAction"))),
            resources=tuple(_as_list(raw.get("Resource"))),
            not_resources=tuple(_as_list(raw.get("NotResource"))),
            principal=raw.get("Principal"),
            not_principal=raw.get("NotPrincipal"),
            condition=condition,
            sid=raw.get("Sid", ""),
            source=f"{source}/{raw.get('Sid', '')}",
        )


@dataclass(frozen=True)
class PolicyDocument:
    stack: str
    logical_id: str
    policy_type: str  # "identity" or "resource"
    document: Mapping[str, Any]

    def statements(self) -> list[Statement]:
        return [Statement.from_json(s, f"{self.stack}/{self.logical_id}") for s in _as_list(self.document.get("Statement"))]


@dataclass(frozen=True)
class RoleRef:
    stack: str
    logical_id: str
    name: str
    arn: str
    tags: Mapping[str, str]
    trust_policy: Mapping[str, Any]
    aws_managed_policy_arns: tuple[str, ...]
    permissions_boundary: str | None


@dataclass(frozen=True)
class ResourcePolicy:
    stack: str
    logical_id: str
    resource_type: str  # the type the policy is attached to, e.g. AWS::S3::Bucket
    resource_arns: tuple[str, ...]  # what "*" (key policies) and the statements' resources denote
    statements: tuple[Statement, ...]


class UnresolvableError(ValueError):
    pass


class Stacks:
    """Templates of one account/region, with exports resolvable across them."""

    def __init__(
        self, templates: Mapping[str, Mapping[str, Any]], env: Env | None = None, *, parameters: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        self.templates = dict(templates)
        self.env = env or Env()
        self.parameters = {stack: dict(values) for stack, values in (parameters or {}).items()}
        self._exports: dict[str, tuple[str, Any]] = {}
        for stack, template in self.templates.items():
            for output in (template.get("Outputs") or {}).values():
                export = output.get("Export")
                if export:
                    self._exports[self.resolve(stack, export["Name"])] = (stack, output["Value"])

    # -- intrinsics -------------------------------------------------------------------------
    def stand_in(self, stack: str, logical_id: str, attribute: str | None = None) -> str:
        resource = self.templates[stack]["Resources"][logical_id]
        resource_type = resource["Type"]
        name_property = NAME_PROPERTIES.get(resource_type)
        explicit = (resource.get("Properties") or {}).get(name_property) if name_property else None
        name = self.resolve(stack, explicit) if explicit is not None else f"{stack}-{logical_id}"
        if resource_type not in NAME_PROPERTIES and resource_type != "AWS::KMS::Key":
            generic = _arn(self.env, "cfn-stand-in", f"{stack}/{logical_id}")
            return f"{generic}/{attribute}" if attribute else generic
        return _typed_stand_in(self.env, resource_type, name, attribute)

    def _ref(self, stack: str, name: str) -> Any:
        env = self.env
        pseudo = {
            "AWS::Partition": env.partition,
            "AWS::Region": env.region,
            "AWS::AccountId": env.account,
            "AWS::URLSuffix": env.url_suffix,
            "AWS::StackName": stack,
            "AWS::StackId": _arn(env, "cloudformation", f"stack/{stack}/stand-in"),
        }
        if name in pseudo:
            return pseudo[name]
        template = self.templates[stack]
        if name in (template.get("Parameters") or {}):
            given = self.parameters.get(stack, {})
            if name in given:
                return given[name]
            parameter = template["Parameters"][name]
            if "Default" not in parameter:
                raise UnresolvableError(f"{stack}: parameter {name} has no Default and no value was given")
            return parameter["Default"]
        if name in template.get("Resources", {}):
            return self.stand_in(stack, name)
        raise UnresolvableError(f"{stack}: Ref to unknown {name}")

    def _condition(self, stack: str, name: str) -> bool:
        return bool(self.resolve(stack, self.templates[stack]["Conditions"][name]))

    def resolve(self, stack: str, value: Any) -> Any:
        """`value` with every intrinsic replaced by a concrete string; AWS::NoValue drops out."""
        if isinstance(value, list):
            items = [self.resolve(stack, item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self._ref(stack, arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.stand_in(stack, logical_id, self.resolve(stack, attribute))
            if key == "Fn::Join":
                separator, parts = arg
                return self.resolve(stack, separator).join(str(p) for p in self.resolve(stack, parts))
            if key == "Fn::Sub":
                return self._sub(stack, arg)
            if key == "Fn::Select":
                index, items = self.resolve(stack, arg)
                return items[int(index)]
            if key == "Fn::Split":
                separator, text = self.resolve(stack, arg)
                return text.split(separator)
            if key == "Fn::ImportValue":
                export_name = self.resolve(stack, arg)
                if export_name not in self._exports:
                    raise UnresolvableError(f"{stack}: import of {export_name!r}, which no given stack exports")
                exporter, exported = self._exports[export_name]
                return self.resolve(exporter, exported)
            if key == "Fn::If":
                condition, if_true, if_false = arg
                return self.resolve(stack, if_true if self._condition(stack, condition) else if_false)
            if key == "Fn::Equals":
                left, right = self.resolve(stack, arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(stack, arg)[0]
            if key == "Fn::And":
                return all(self.resolve(stack, arg))
            if key == "Fn::Or":
                return any(self.resolve(stack, arg))
            if key == "Condition":
                return self._condition(stack, arg)
            if key.startswith("Fn::"):
                raise UnresolvableError(f"{stack}: intrinsic {key} is not modelled")
        resolved = {key: self.resolve(stack, item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _sub(self, stack: str, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(stack, arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} is a literal ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.stand_in(stack, logical_id, attribute)
            return str(self._ref(stack, name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    # -- collecting policies ------------------------------------------------------------------
    def _resources(self, resource_type: str) -> Iterable[tuple[str, str, dict[str, Any]]]:
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource["Type"] == resource_type:
                    yield stack, logical_id, resource.get("Properties") or {}

    def roles(self) -> list[RoleRef]:
        roles = []
        for stack, logical_id, properties in self._resources("AWS::IAM::Role"):
            managed = [self.resolve(stack, arn) for arn in properties.get("ManagedPolicyArns", [])]
            boundary = properties.get("PermissionsBoundary")
            roles.append(
                RoleRef(
                    stack=stack,
                    logical_id=logical_id,
                    name=self.stand_in(stack, logical_id),
                    arn=self.stand_in(stack, logical_id, "Arn"),
                    tags={self.resolve(stack, t["Key"]): self.resolve(stack, t["Value"]) for t in properties.get("Tags", [])},
                    trust_policy=self.resolve(stack, properties.get("AssumeRolePolicyDocument", {})),
                    aws_managed_policy_arns=tuple(arn for arn in managed if is_aws_managed(arn)),
                    permissions_boundary=self.resolve(stack, boundary) if boundary is not None else None,
                )
            )
        return roles

    def _attached_to(self, stack: str, properties: Mapping[str, Any], role: RoleRef) -> bool:
        return role.stack == stack and role.name in self.resolve(stack, properties.get("Roles", []))

    def identity_policies(self, role: RoleRef) -> list[Statement]:
        """Every statement of every identity policy attached to `role` (customer-managed and inline)."""
        template = self.templates[role.stack]
        properties = template["Resources"][role.logical_id].get("Properties") or {}
        statements: list[Statement] = []
        for position, inline in enumerate(properties.get("Policies", [])):
            document = self.resolve(role.stack, inline["PolicyDocument"])
            statements += PolicyDocument(role.stack, f"{role.logical_id}/Policies/{position}", "identity", document).statements()
        managed_arns = set(self.resolve(role.stack, properties.get("ManagedPolicyArns", [])))
        for resource_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            # Only the role's own stack attaches to it (by role name or by ARN): not every stack of a class.
            stack = role.stack
            for logical_id, policy in ((k, r.get("Properties") or {}) for k, r in template.get("Resources", {}).items() if r["Type"] == resource_type):
                by_role = self._attached_to(stack, policy, role)
                by_arn = resource_type == "AWS::IAM::ManagedPolicy" and stack == role.stack and self.stand_in(stack, logical_id) in managed_arns
                if by_role or by_arn:
                    statements += PolicyDocument(stack, logical_id, "identity", self.resolve(stack, policy["PolicyDocument"])).statements()
        return statements

    def resource_policies(self) -> list[ResourcePolicy]:
        policies = []
        for stack, logical_id, properties in self._resources("AWS::S3::BucketPolicy"):
            bucket = self.resolve(stack, properties["Bucket"])
            arn = f"arn:{self.env.partition}:s3:::{bucket}"
            statements = PolicyDocument(stack, logical_id, "resource", self.resolve(stack, properties["PolicyDocument"])).statements()
            policies.append(ResourcePolicy(stack, logical_id, "AWS::S3::Bucket", (arn, f"{arn}/*"), tuple(statements)))
        for stack, logical_id, properties in self._resources("AWS::KMS::Key"):
            arn = self.stand_in(stack, logical_id, "Arn")
            statements = PolicyDocument(stack, logical_id, "resource", self.resolve(stack, properties["KeyPolicy"])).statements()
            policies.append(ResourcePolicy(stack, logical_id, "AWS::KMS::Key", (arn,), tuple(statements)))
        for resource_type, target_type, targets_key in (
            ("AWS::SNS::TopicPolicy", "AWS::SNS::Topic", "Topics"),
            ("AWS::SQS::QueuePolicy", "AWS::SQS::Queue", "Queues"),
        ):
            for stack, logical_id, properties in self._resources(resource_type):
                targets = tuple(_queue_arn(self.env, t) if t.startswith("https://sqs.") else t for t in self.resolve(stack, properties.get(targets_key, [])))
                statements = PolicyDocument(stack, logical_id, "resource", self.resolve(stack, properties["PolicyDocument"])).statements()
                policies.append(ResourcePolicy(stack, logical_id, target_type, targets, tuple(statements)))
        return policies

    def policy_documents(self) -> list[PolicyDocument]:
        """Every policy document in every template, resolved (identity, trust and resource policies)."""
        documents = []
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                properties = resource.get("Properties") or {}
                resource_type = resource["Type"]
                if resource_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                    documents.append(PolicyDocument(stack, logical_id, "identity", self.resolve(stack, properties["PolicyDocument"])))
                elif resource_type == "AWS::IAM::Role":
                    documents.append(PolicyDocument(stack, f"{logical_id}/Trust", "resource", self.resolve(stack, properties["AssumeRolePolicyDocument"])))
                    for position, inline in enumerate(properties.get("Policies", [])):
                        documents.append(PolicyDocument(stack, f"{logical_id}/Policies/{position}", "identity", self.resolve(stack, inline["PolicyDocument"])))
                elif resource_type == "AWS::KMS::Key":
                    documents.append(PolicyDocument(stack, logical_id, "resource", self.resolve(stack, properties["KeyPolicy"])))
                elif resource_type in ("AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy"):
                    documents.append(PolicyDocument(stack, logical_id, "resource", self.resolve(stack, properties["PolicyDocument"])))
        return documents


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE: Any = _NoValue()


def _queue_arn(env: Env, url: str) -> str:
    account, name = url.rstrip("/").split("/")[-2:]
    return f"arn:{env.partition}:sqs:{env.region}:{account}:{name}"


def is_aws_managed(policy_arn: str) -> bool:
    return bool(re.match(r"^arn:[a-z-]+:iam::aws:policy/", policy_arn))


# -- matching ---------------------------------------------------------------------------------------


def _lookup(context: Context, key: str) -> list[str] | None:
    for name, value in context.items():
        if name.lower() == key.lower():
            return [value] if isinstance(value, str) else list(value)
    return None


_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def substitute_variables(pattern: str, context: Context) -> str | None:
    """`${aws:PrincipalTag/x}` etc. from the context; None when a variable has no (single) value,
    in which case IAM treats the element as not matching. `${*}`, `${?}`, `${$}` are literals."""
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in ("*", "?", "$"):
            return "\x00" + name  # a literal character, not a wildcard
        default = None
        if ", " in name:  # ${key, 'default'}
            name, raw_default = name.split(", ", 1)
            default = raw_default.strip("'")
        values = _lookup(context, name)
        if values is None or len(values) != 1:
            if default is None:
                missing = True
                return ""
            return default
        return values[0].replace("*", "\x00*").replace("?", "\x00?")

    result = _VARIABLE.sub(replace, pattern)
    return None if missing else result


@functools.lru_cache(maxsize=65536)
def _wildcard_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    out = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\x00":  # escaped literal from a policy variable
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        out.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
        index += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _wildcard_regex(pattern, ignore_case).fullmatch(value) is not None


def action_matches(pattern: str, action: str) -> bool:
    return wildcard_match(pattern, action, ignore_case=True)


def resource_matches(pattern: str, arn: str, context: Context | None = None) -> bool:
    """IAM resource matching: case-sensitive, `*` spans any characters including `/` and `:`."""
    concrete = substitute_variables(pattern, context or {})
    return concrete is not None and wildcard_match(concrete, arn)


def _string_values(values: Sequence[Any], context: Context) -> list[str]:
    out = []
    for value in values:
        text = "true" if value is True else "false" if value is False else str(value)
        concrete = substitute_variables(text, context)
        if concrete is not None:
            out.append(concrete)
    return out


def _unescape(text: str) -> str:
    return text.replace("\x00", "")


def _single_match(base: str, policy_values: list[str], request_value: str) -> bool:
    """Does one request value satisfy the positive form of `base` for any policy value?"""
    if base in ("StringEquals", "ArnEquals_exact"):
        return any(_unescape(v) == request_value for v in policy_values)
    if base == "StringEqualsIgnoreCase":
        return any(_unescape(v).lower() == request_value.lower() for v in policy_values)
    if base in ("StringLike", "ArnLike", "ArnEquals"):  # ArnEquals also honours wildcards
        return any(wildcard_match(v, request_value) for v in policy_values)
    if base == "Bool":
        return any(_unescape(v).lower() == request_value.lower() for v in policy_values)
    raise NotImplementedError(f"condition operator {base} is not modelled")


NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _operator_holds(operator: str, key: str, raw_values: Sequence[Any], context: Context) -> bool:
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    request = _lookup(context, key)
    policy_values = _string_values(raw_values, context)
    if operator == "Null":
        wants_absent = _unescape(policy_values[0]).lower() == "true"
        return (request is None) == wants_absent
    if request is None:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":  # no value can match, negated or not
            return if_exists
        return if_exists or operator in NEGATED
    negated = operator in NEGATED
    base = NEGATED.get(operator, operator)

    def satisfied(value: str) -> bool:
        matched = _single_match(base, policy_values, value)
        return not matched if negated else matched

    if qualifier == "ForAnyValue":
        return any(satisfied(value) for value in request)
    if qualifier == "ForAllValues":
        return all(satisfied(value) for value in request)
    if len(request) != 1:  # a single-valued operator on a multivalued key: compare each (conservative)
        return any(satisfied(value) for value in request)
    return satisfied(request[0])


def conditions_hold(condition: Mapping[str, Mapping[str, Any]], context: Context) -> bool:
    """All operators and all keys must hold (AND); values of one key are ORed (or NOR when negated)."""
    return all(_operator_holds(operator, key, _as_list(values), context) for operator, keys in condition.items() for key, values in keys.items())


def _action_in(statement: Statement, action: str) -> bool:
    if statement.not_actions:
        return not any(action_matches(p, action) for p in statement.not_actions)
    return any(action_matches(p, action) for p in statement.actions)


def _resource_in(statement: Statement, resource: str, context: Context) -> bool:
    if statement.not_resources:
        return not any(resource_matches(p, resource, context) for p in statement.not_resources)
    return any(resource_matches(p, resource, context) for p in statement.resources)


def statement_applies(statement: Statement, action: str, resource: str, context: Context | None = None) -> bool:
    context = context or {}
    return _action_in(statement, action) and _resource_in(statement, resource, context) and conditions_hold(statement.condition, context)


def is_allowed(statements: Iterable[Statement], action: str, resource: str, context: Context | None = None) -> bool:
    """IAM's evaluation within one policy set: an explicit Deny overrides any Allow."""
    applicable = [s for s in statements if statement_applies(s, action, resource, context)]
    return any(s.effect == "Allow" for s in applicable) and not any(s.effect == "Deny" for s in applicable)


class Reach(enum.Enum):
    NONE = "none"  # no context makes it match
    UNCONDITIONAL = "unconditional"  # matches without conditions or policy variables
    CONDITIONAL = "conditional"  # matches only if its conditions/policy variables allow


def _could_match(pattern: str, resource: str) -> bool:
    """Could `pattern` match `resource` for SOME values of its policy variables?"""
    return wildcard_match(_VARIABLE.sub("*", pattern), resource)


def reach(statement: Statement, action: str, resource: str) -> Reach:
    """Whether an Allow statement can match (action, resource) at all, and whether only under conditions."""
    if statement.effect != "Allow" or not _action_in(statement, action):
        return Reach.NONE
    if statement.not_resources:
        possible = not any(wildcard_match(p, resource) for p in statement.not_resources if not _VARIABLE.search(p))
        variable_free = not any(_VARIABLE.search(p) for p in statement.not_resources)
    else:
        matching = [p for p in statement.resources if _could_match(p, resource)]
        possible = bool(matching)
        variable_free = any(not _VARIABLE.search(p) for p in matching)
    if not possible:
        return Reach.NONE
    return Reach.UNCONDITIONAL if variable_free and not statement.condition else Reach.CONDITIONAL


def principal_names(principal: Any) -> list[tuple[str, str]]:
    """(principal_type, value) pairs of a resolved Principal element: ("AWS", arn), ("Service", name), ("*", "*")."""
    if principal == "*":
        return [("*", "*")]
    if not isinstance(principal, Mapping):
        return []
    return [(principal_type, value) for principal_type, values in principal.items() for value in _as_list(values)]


def _known_part(pattern: str, known: Context) -> str:
    """`pattern` with the variables that `known` gives substituted and any other variable as `*`."""

    def replace(match: re.Match[str]) -> str:
        concrete = substitute_variables(match.group(0), known)
        return "*" if concrete is None else concrete

    return _VARIABLE.sub(replace, pattern)


def can_apply_given(statement: Statement, action: str, resource: str, known: Context) -> bool:
    """Could `statement` apply to (action, resource) for SOME request whose keys in `known` have
    those values? Keys not in `known` are assumed to take whatever value makes it apply."""
    return _action_in(statement, action) and _can_apply_to(statement, resource, known)


def _can_apply_to(statement: Statement, resource: str, known: Context) -> bool:
    """`can_apply_given` for a statement whose Action/NotAction already covers the action."""
    if statement.not_resources:
        if any(_VARIABLE.search(p) is None and wildcard_match(p, resource) for p in statement.not_resources):
            return False
    elif not any(wildcard_match(_known_part(p, known), resource) for p in statement.resources):
        return False
    for operator, keys in statement.condition.items():
        for key, values in keys.items():
            if _lookup(known, key) is None:
                continue  # unknown key: could hold
            if any(_VARIABLE.search(str(v)) and substitute_variables(str(v), known) is None for v in _as_list(values)):
                continue  # compares with an unknown variable: could hold
            if not _operator_holds(operator, key, _as_list(values), known):
                return False
    return True


# -- transitive reach ------------------------------------------------------------------------------


class NotModelled(ValueError):
    """A template holds a path (event type, rule target, role outside the templates) the reach model does not know."""


@dataclass(frozen=True)
class Entry:
    role: RoleRef
    who: str  # "student (notebook)", "people (assume role)", "API callers"


ADMIN = "ADMIN (CloudFormation's deployment role of `cdk deploy`: may do anything)"

# Events our rules listen to, and the actions (on which resource) that emit them.
# Which actions emit an EventBridge event of each detail type, and on which SageMaker resource type:
# a rule on that type makes its targets act for whoever may take one of those actions.
EVENT_EMITTERS: dict[str, tuple[tuple[str, ...], str]] = {
    "SageMaker Model Package State Change": (("sagemaker:UpdateModelPackage", "sagemaker:CreateModelPackage"), "model-package"),
    "SageMaker Training Job State Change": (("sagemaker:CreateTrainingJob", "sagemaker:StopTrainingJob"), "training-job"),
    "SageMaker Processing Job State Change": (("sagemaker:CreateProcessingJob", "sagemaker:StopProcessingJob"), "processing-job"),
    "SageMaker Transform Job State Change": (("sagemaker:CreateTransformJob", "sagemaker:StopTransformJob"), "transform-job"),
    "SageMaker HyperParameter Tuning Job State Change": (
        ("sagemaker:CreateHyperParameterTuningJob", "sagemaker:StopHyperParameterTuningJob"),
        "hyper-parameter-tuning-job",
    ),
    "SageMaker AutoML Job State Change": (("sagemaker:CreateAutoMLJob", "sagemaker:CreateAutoMLJobV2", "sagemaker:StopAutoMLJob"), "automl-job"),
    "SageMaker Endpoint State Change": (("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint"), "endpoint"),
    "SageMaker Notebook Instance State Change": (
        ("sagemaker:CreateNotebookInstance", "sagemaker:StartNotebookInstance", "sagemaker:StopNotebookInstance", "sagemaker:DeleteNotebookInstance"),
        "notebook-instance",
    ),
}
PIPELINE_START_ACTIONS = ("sagemaker:StartPipelineExecution", "sagemaker:RetryPipelineExecution")
STACK_UPDATE_ACTIONS = ("cloudformation:UpdateStack", "cloudformation:CreateChangeSet", "cloudformation:CreateStack")
# A role that is not ours: what `cdk deploy` leaves as a stack's service role.
FOREIGN_ROLE = "arn:aws:iam::123456789012:role/cdk-hnb659fds-cfn-exec-role-123456789012-us-east-1"
OBJECT_READ = ("s3:GetObject", "s3:GetObjectVersion")


def _role_arns_in(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in ("RoleArn", "ExecutionRoleArn") and isinstance(item, str):
                yield item
            else:
                yield from _role_arns_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _role_arns_in(item)


def _service_principals(trust: Mapping[str, Any]) -> set[str]:
    services: set[str] = set()
    for raw in _as_list(trust.get("Statement")):
        if raw.get("Effect") == "Allow":
            services.update(value for principal_type, value in principal_names(raw.get("Principal")) if principal_type == "Service")
    return services


class Reachability:
    """Which roles a principal can make act for it, and whether they can read an object."""

    def __init__(self, stacks: Stacks, aws_managed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> None:
        self.stacks = stacks
        self.aws_managed = dict(aws_managed or {})
        self.roles = stacks.roles()
        self.by_arn = {role.arn: role for role in self.roles}
        self._statements: dict[tuple[str, str], list[Statement]] = {}
        self._by_action: dict[tuple[str, str, str], list[Statement]] = {}
        self._edges: dict[tuple[str, str], list[tuple[RoleRef | str, str]]] = {}
        self._trusted_services: dict[tuple[str, str], list[str]] = {}
        self._principal_keys: dict[tuple[str, str], dict[str, Any]] = {}
        self._resource_policies = stacks.resource_policies()
        env = stacks.env
        self._pipelines = []  # (pipeline ARN, roles of the pipeline and its jobs)
        for stack, logical_id, properties in stacks._resources("AWS::SageMaker::Pipeline"):
            body = stacks.resolve(stack, properties["PipelineDefinition"]["PipelineDefinitionBody"])
            arns = [stacks.resolve(stack, properties["RoleArn"]), *_role_arns_in(json.loads(body))]
            self._pipelines.append((stacks.stand_in(stack, logical_id, "Arn"), [self._role(arn, f"{stack}/{logical_id}") for arn in arns]))
        self._functions: dict[str, RoleRef] = {}
        for stack, logical_id, properties in stacks._resources("AWS::Lambda::Function"):
            self._functions[stacks.stand_in(stack, logical_id, "Arn")] = self._role(stacks.resolve(stack, properties["Role"]), f"{stack}/{logical_id}")
        self._rules = []  # (emitting actions, resources, roles of the targets)
        # Each tenant's name scope (`sagelab-<id>--`), read off its stacks' names.
        tenant_scopes = sorted({name[: name.index(SEPARATOR) + len(SEPARATOR)] for name in stacks.templates if SEPARATOR in name})
        # A rule may forward to another event bus (an own-account student's SageMaker events go to the
        # class's bus, stacks/spend_cap/link.py): what it wakes is what the rules on that bus target.
        bus_names = {(stack, logical_id): properties["Name"] for stack, logical_id, properties in stacks._resources("AWS::Events::EventBus")}
        on_bus: dict[str, list[RoleRef]] = {}
        forwarded: list[tuple[list[RoleRef], list[str], str]] = []
        for stack, logical_id, properties in stacks._resources("AWS::Events::Rule"):
            pattern = stacks.resolve(stack, properties.get("EventPattern"))
            if not pattern:
                continue  # a schedule: time starts it, no principal does
            detail_types = _as_list(pattern.get("detail-type"))
            unknown = [d for d in detail_types if d not in EVENT_EMITTERS] or ([] if detail_types else ["<any>"])
            if unknown:
                raise NotModelled(f"{stack}/{logical_id}: rule on {unknown}: which actions emit it? (EVENT_EMITTERS)")
            groups = _as_list((pattern.get("detail") or {}).get("ModelPackageGroupName")) or ["*"]
            resources = []
            for detail_type in detail_types:
                resource_type = EVENT_EMITTERS[detail_type][1]
                if resource_type == "model-package":
                    resources += [f"arn:{env.partition}:sagemaker:{env.region}:{env.account}:model-package/{group.lower()}/1" for group in groups]
                else:  # the rule takes every resource of the type: one of each tenant's names, and a name of no one's
                    resources += [f"arn:{env.partition}:sagemaker:{env.region}:{env.account}:{resource_type}/{name}probe-1" for name in (*tenant_scopes, "")]
            actions = tuple(a for d in detail_types for a in EVENT_EMITTERS[d][0])
            targets: list[RoleRef] = []
            buses: list[str] = []
            for target in stacks.resolve(stack, properties.get("Targets", [])):
                if str(target["Arn"]).split(":")[-1].startswith("event-bus/"):
                    buses.append(str(target["Arn"]).rsplit("/", 1)[1])
                elif target["Arn"] in self._functions:
                    targets.append(self._functions[target["Arn"]])
                else:
                    raise NotModelled(f"{stack}/{logical_id}: target {target['Arn']} is not a function of these templates")
            bus = properties.get("EventBusName")
            bus = bus_names.get((stack, bus["Ref"])) if isinstance(bus, dict) and "Ref" in bus else bus
            if bus:
                on_bus.setdefault(str(bus), []).extend(targets)
            forwarded += [(targets, buses, f"{stack}/{logical_id}")] if buses else []
            self._rules.append((actions, resources, targets))
        for targets, buses, where in forwarded:  # the list object is the rule's own: extended in place
            for bus in buses:
                if bus not in on_bus:
                    raise NotModelled(f"{where}: forwards to event bus {bus}, on which no rule of these templates listens")
                targets.extend(on_bus[bus])
        self._stack_arns = [f"arn:{env.partition}:cloudformation:{env.region}:{env.account}:stack/{name}/stand-in" for name in stacks.templates]

    def _role(self, arn: str, where: str) -> RoleRef:
        if arn not in self.by_arn:
            raise NotModelled(f"{where}: role {arn} is not in these templates, so what it may do is unknown")
        return self.by_arn[arn]

    # -- policies of a role ------------------------------------------------------------------------
    def statements(self, role: RoleRef) -> list[Statement]:
        key = (role.stack, role.logical_id)
        if key not in self._statements:
            managed = []
            for arn in role.aws_managed_policy_arns:
                if arn not in self.aws_managed:
                    raise NotModelled(f"{role.stack}/{role.logical_id}: AWS-managed policy {arn}, whose content this model does not know")
                managed += [Statement.from_json(raw, f"{role.stack}/{arn}") for raw in self.aws_managed[arn]]
            self._statements[key] = [*self.stacks.identity_policies(role), *managed]
        return self._statements[key]

    def statements_for(self, role: RoleRef, action: str) -> list[Statement]:
        """The statements of `role` whose Action/NotAction covers `action` (cached: the walk asks
        the same few actions of every role many times)."""
        key = (role.stack, role.logical_id, action.lower())
        if key not in self._by_action:
            self._by_action[key] = [s for s in self.statements(role) if _action_in(s, action)]
        return self._by_action[key]

    def _known(self, role: RoleRef, extra: Context | None = None) -> Mapping[str, Any]:
        key = (role.stack, role.logical_id)
        if key not in self._principal_keys:  # the walk asks hundreds of thousands of times per class
            known: dict[str, Any] = {f"aws:PrincipalTag/{k}": v for k, v in role.tags.items()}
            known["aws:PrincipalArn"] = role.arn
            known["aws:PrincipalAccount"] = self.stacks.env.account
            self._principal_keys[key] = known
        return {**self._principal_keys[key], **extra} if extra else self._principal_keys[key]

    def may(self, role: RoleRef, action: str, resource: str, extra: Context | None = None) -> bool:
        """Could some request of `role` be allowed by its identity policies (worst case over the
        condition keys not in `extra`), short of a Deny that surely applies?"""
        statements = self.statements_for(role, action)
        if not any(s.effect == "Allow" for s in statements):
            return False  # most of the walk's questions: the role has no grant of the action at all
        known = self._known(role, extra)
        allowed = any(s.effect == "Allow" and _can_apply_to(s, resource, known) for s in statements)
        return allowed and not any(s.effect == "Deny" and statement_applies(s, action, resource, known) for s in statements)

    # -- edges -------------------------------------------------------------------------------------
    def edges(self, role: RoleRef) -> list[tuple[RoleRef | str, str]]:
        """(role made to act, how) for everything `role` may start or hand a role to."""
        key = (role.stack, role.logical_id)
        if key in self._edges:
            return self._edges[key]
        out: list[tuple[RoleRef | str, str]] = []
        # `may` is False for an action the role is granted nowhere: ask about each target only for
        # the actions it is granted (most roles pass or assume no role; a class has ~170 targets).
        passes, assumes = self._granted(role, "iam:PassRole"), self._granted(role, "sts:AssumeRole")
        for target in self.roles if passes or assumes else ():
            for service in self._services(target) if passes else ():
                if self.may(role, "iam:PassRole", target.arn, {"iam:PassedToService": service}):
                    out.append((target, f"iam:PassRole to {service}"))
                    break
            if assumes and target.arn != role.arn and self._trust_names(target, role) and self.may(role, "sts:AssumeRole", target.arn):
                out.append((target, "sts:AssumeRole"))
        starts = [action for action in PIPELINE_START_ACTIONS if self._granted(role, action)]
        for pipeline_arn, roles in self._pipelines if starts else ():
            executions = f"{pipeline_arn}/execution/a1b2c3d4e5f6"
            if any(self.may(role, action, arn) for action in starts for arn in (pipeline_arn, executions)):
                out += [(target, f"runs pipeline {pipeline_arn}") for target in roles]
        for function_arn, target in self._functions.items() if self._granted(role, "lambda:InvokeFunction") else ():
            if self.may(role, "lambda:InvokeFunction", function_arn):
                out.append((target, f"lambda:InvokeFunction {function_arn}"))
        emits: dict[tuple[tuple[str, ...], tuple[str, ...]], bool] = {}  # each student's rule asks the same question
        for actions, resources, targets in self._rules:
            question = (tuple(actions), tuple(resources))
            if question not in emits:
                # Each rule asks about every tenant's resources: ask only for the actions the role is granted.
                granted = [action for action in actions if self._granted(role, action)]
                emits[question] = any(self.may(role, action, resource) for action in granted for resource in resources)
            if emits[question]:
                out += [(target, f"{'/'.join(actions)} emits an event a rule sends to its function") for target in targets]
        updates = [action for action in STACK_UPDATE_ACTIONS if self._granted(role, action)]
        for stack_arn in self._stack_arns if updates else ():
            if any(self.may(role, action, stack_arn, {"cloudformation:RoleArn": FOREIGN_ROLE}) for action in updates):
                out.append((ADMIN, f"updates {stack_arn} with the stack's own service role"))
        self._edges[key] = out
        return out

    def _granted(self, role: RoleRef, action: str) -> bool:
        """Does some Allow of `role` cover `action` at all (whatever the resource and conditions)?"""
        return any(s.effect == "Allow" for s in self.statements_for(role, action))

    def _services(self, target: RoleRef) -> list[str]:
        """The services `target`'s trust policy lets assume it, sorted (cached per role)."""
        key = (target.stack, target.logical_id)
        if key not in self._trusted_services:
            self._trusted_services[key] = sorted(_service_principals(target.trust_policy))
        return self._trusted_services[key]

    def _trust_names(self, target: RoleRef, role: RoleRef) -> bool:
        account_root = f"arn:{self.stacks.env.partition}:iam::{self.stacks.env.account}:root"
        for raw in _as_list(target.trust_policy.get("Statement")):
            if raw.get("Effect") != "Allow":
                continue
            for principal_type, value in principal_names(raw.get("Principal")):
                if principal_type == "*" or (principal_type == "AWS" and value in ("*", role.arn, account_root, self.stacks.env.account)):
                    return True
        return False

    def closure(self, role: RoleRef) -> list[tuple[RoleRef | str, tuple[str, ...]]]:
        """Every role `role` can make act for it (itself first), each with the path that gets there;
        ADMIN stands for a role outside the templates that may do anything."""
        start = f"{role.stack}/{role.logical_id}"
        found: dict[str, tuple[RoleRef | str, tuple[str, ...]]] = {start: (role, (start,))}
        queue: list[RoleRef] = [role]
        while queue:
            current = queue.pop(0)
            path = found[f"{current.stack}/{current.logical_id}"][1]
            for target, how in self.edges(current):
                name = target if isinstance(target, str) else f"{target.stack}/{target.logical_id}"
                if name in found:
                    continue
                found[name] = (target, (*path, f"--{how}--> {name}"))
                if not isinstance(target, str):
                    queue.append(target)
        return list(found.values())

    # -- who acts from outside -----------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        entries = []
        for stack, logical_id, properties in self.stacks._resources("AWS::SageMaker::NotebookInstance"):
            entries.append(Entry(self._role(self.stacks.resolve(stack, properties["RoleArn"]), f"{stack}/{logical_id}"), "student (notebook)"))
        for role in self.roles:
            trusted = [
                value
                for raw in _as_list(role.trust_policy.get("Statement"))
                for principal_type, value in principal_names(raw.get("Principal"))
                if principal_type in ("AWS", "*")
            ]
            if trusted:
                entries.append(Entry(role, "people (assume role)"))
        for stack, _, properties in self.stacks._resources("AWS::ApiGateway::Method"):
            uri = self.stacks.resolve(stack, (properties.get("Integration") or {}).get("Uri", ""))
            for function_arn, role in self._functions.items():
                if isinstance(uri, str) and f"/functions/{function_arn}/" in uri:
                    entries.append(Entry(role, "API callers"))
        unique: dict[tuple[str, str, str], Entry] = {(e.role.stack, e.role.logical_id, e.who): e for e in entries}
        return list(unique.values())

    # -- reading an object ----------------------------------------------------------------------------
    def can_read_object(self, role: RoleRef, bucket_arn: str, key: str) -> bool:
        """Could `role` read the content of s3://bucket/key: an identity or bucket-policy Allow of
        s3:GetObject(Version), no Deny that surely applies, and kms:Decrypt of the bucket's key
        (the key policy's own grant, or the account's delegation to identity policies)."""
        resource = f"{bucket_arn}/{key}"
        bucket_policies = [p for p in self._resource_policies if p.resource_type == "AWS::S3::Bucket" and bucket_arn in p.resource_arns]
        readable = False
        for action in OBJECT_READ:
            known = self._known(role)
            denied_here = any(
                s.effect == "Deny" and self._names(s, role) and statement_applies(s, action, resource, known) for p in bucket_policies for s in p.statements
            )
            by_policy = any(
                s.effect == "Allow" and self._names(s, role, delegation=False) and can_apply_given(s, action, resource, known)
                for p in bucket_policies
                for s in p.statements
            )
            if (
                (by_policy or self.may(role, action, resource))
                and not denied_here
                and not any(s.effect == "Deny" and statement_applies(s, action, resource, known) for s in self.statements_for(role, action))
            ):
                readable = True
        return readable and self._may_decrypt(role, bucket_arn)

    def _names(self, statement: Statement, role: RoleRef, delegation: bool = True) -> bool:
        """Does a resource policy's statement name `role` (directly, by `*`, or by its account when
        `delegation`: the account root delegates to identity policies, which `may` checks)?"""
        account_root = f"arn:{self.stacks.env.partition}:iam::{self.stacks.env.account}:root"
        for principal_type, value in principal_names(statement.principal):
            if principal_type == "*" or (principal_type == "AWS" and (value == "*" or resource_matches(value, role.arn))):
                return True
            if delegation and principal_type == "AWS" and value in (account_root, self.stacks.env.account):
                return True
        return False

    def _may_decrypt(self, role: RoleRef, bucket_arn: str) -> bool:
        bucket_name = bucket_arn.rsplit(":", 1)[1]
        key_arn = None
        for stack, logical_id, properties in self.stacks._resources("AWS::S3::Bucket"):
            if self.stacks.stand_in(stack, logical_id) == bucket_name:
                rules = self.stacks.resolve(stack, (properties.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration", []))
                keys = [r["ServerSideEncryptionByDefault"].get("KMSMasterKeyID") for r in rules if "ServerSideEncryptionByDefault" in r]
                key_arn = next((k for k in keys if k), None)
        if key_arn is None:
            return True  # SSE-S3 (or unknown bucket): S3 alone decides
        known = {"kms:ViaService": f"s3.{self.stacks.env.region}.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": bucket_arn}
        account_root = f"arn:{self.stacks.env.partition}:iam::{self.stacks.env.account}:root"
        for policy in self._resource_policies:
            if policy.resource_type != "AWS::KMS::Key" or key_arn not in policy.resource_arns:
                continue
            for statement in policy.statements:
                # A key policy's "*" is the key itself.
                if statement.effect != "Allow" or not can_apply_given(statement, "kms:Decrypt", key_arn, known):
                    continue
                for principal_type, value in principal_names(statement.principal):
                    if principal_type == "*" or (principal_type == "AWS" and (value == "*" or resource_matches(value, role.arn))):
                        return True
                    if principal_type == "AWS" and value in (account_root, self.stacks.env.account) and self.may(role, "kms:Decrypt", key_arn, known):
                        return True
            return False
        return True  # a key outside these templates: assume it decrypts (the S3 check must hold alone)
