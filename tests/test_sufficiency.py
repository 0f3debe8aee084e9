"""Sufficiency: the roles can do what their work needs, taken from field data rather than memory.

- The deployment role (the CloudFormation role the approval deployer passes) against the resource
  provider schemas bundled with cfn-lint: `handlers.create/update/delete.permissions` of every
  resource an approval makes CloudFormation create, update or delete. A permission our
  configuration never uses is skipped by name, with a reason and a check that the reason holds.
- The same role cannot touch a neighbouring environment's models, endpoint configs, endpoint or
  alarms (two environments whose names share a prefix, in one account).
- The deployer function: every AWS API its code calls (found with ast, named through botocore's
  service model) is allowed on the resource it calls it on.
- The pipeline role: every S3 URI of the pipeline definition readable (inputs) or writable
  (outputs), the keys usable, the images pullable, the job logs writable, and iam:PassRole
  covering exactly the roles the steps pass.

All checks are IAM evaluations (tests/iam_policy.py) on the synthesized templates.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from sagelab.registry_permissions import HANDLERS, handler_permissions
from stacks.approval_deployer.parameters import (
    MODEL_ALGORITHM_PARAMETER,
    MODEL_DESCRIPTION_PARAMETER,
    MODEL_PACKAGE_PARAMETER,
    MODEL_PROBLEM_TYPE_PARAMETER,
)
from tests.conftest import REPO_ROOT, SynthResult
from tests.iam_policy import Env, RoleRef, Stacks, Statement, is_allowed

ACCOUNT, REGION = "123456789012", "us-east-1"
ENV = Env(region=REGION, account=ACCOUNT)
SCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"


def package_version(environment: str, number: int = 3) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/sagelab-{environment}--models/{number}"


def stacks_with_models(templates: dict[str, dict[str, Any]], environments: list[str]) -> Stacks:
    """The templates as they are once a version is approved in each environment."""
    parameters = {f"sagelab-{e}--serving": {MODEL_PACKAGE_PARAMETER: package_version(e)} for e in environments}
    return Stacks(templates, ENV, parameters=parameters)


def role(stacks: Stacks, stack: str, prefix: str) -> RoleRef:
    (found,) = [r for r in stacks.roles() if r.stack == stack and r.logical_id.startswith(prefix)]
    return found


# -- what an approval changes ------------------------------------------------------------------
def _mentions(value: Any, names: set[str]) -> bool:
    """Does a template value Ref/GetAtt any of `names` (parameters, resources or conditions)?"""
    if isinstance(value, list):
        return any(_mentions(item, names) for item in value)
    if not isinstance(value, dict):
        return False
    for key in ("Ref", "Condition"):  # a policy statement's "Condition" is a mapping, not a name
        if isinstance(value.get(key), str) and value[key] in names:
            return True
    get_att = value.get("Fn::GetAtt")
    if get_att is not None and (get_att.split(".")[0] if isinstance(get_att, str) else get_att[0]) in names:
        return True
    if "Fn::If" in value and value["Fn::If"][0] in names:
        return True
    return any(_mentions(inner, names) for inner in value.values())


def changed_by_parameter(template: dict[str, Any], parameter: str) -> dict[str, dict[str, Any]]:
    """Resources CloudFormation creates, updates or deletes when `parameter` changes: those whose
    condition or properties depend on it, directly or through other such resources."""
    names = {parameter}
    conditions = template.get("Conditions", {})
    grew = True
    while grew:
        grew = False
        for name, expression in conditions.items():
            if name not in names and _mentions(expression, names):
                names.add(name)
                grew = True
        for logical_id, resource in template["Resources"].items():
            if logical_id not in names and (resource.get("Condition") in names or _mentions(resource.get("Properties", {}), names)):
                names.add(logical_id)
                grew = True
    return {k: v for k, v in template["Resources"].items() if k in names}


@dataclass(frozen=True)
class Skip:
    reason: str
    holds: Callable[[dict[str, Any]], bool]  # on the resource's properties


# Permissions a schema lists that our configuration never uses, like a nag acknowledgment: each
# with the reason and a check of the reason on the resource (a skip whose reason is false of a
# resource is not taken, and the permission is checked like any other).
SKIPPED: dict[tuple[str, str], Skip] = {
    ("AWS::SageMaker::EndpointConfig", "kms:DescribeKey"): Skip(
        "Serverless endpoint configs take no KmsKeyId (no instance volumes); realtime ones name the key and are checked.",
        lambda p: "KmsKeyId" not in p,
    ),
    ("AWS::SageMaker::EndpointConfig", "iam:PassRole"): Skip(
        "Our endpoint configs set no ExecutionRoleArn (that is for inference components); the model carries the role.",
        lambda p: "ExecutionRoleArn" not in p,
    ),
    # The front door function, whose MODEL_* environment an approval sets (decision 0011).
    **{
        ("AWS::Lambda::Function", action): Skip("The function has no VpcConfig.", lambda p: "VpcConfig" not in p)
        for action in ("ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeNetworkInterfaces")
    },
    **{
        ("AWS::Lambda::Function", action): Skip("The function mounts no file system.", lambda p: "FileSystemConfigs" not in p)
        for action in ("elasticfilesystem:DescribeMountTargets", "s3files:ListMountTargets")
    },
    **{
        ("AWS::Lambda::Function", action): Skip(
            "The function's Code depends on no parameter: an approval never uploads code.", lambda p: "Ref" not in json.dumps(p["Code"])
        )
        for action in ("lambda:UpdateFunctionCode", "s3:GetObject", "s3:GetObjectVersion")
    },
    **{
        ("AWS::Lambda::Function", action): Skip(
            "The function has no KmsKeyArn: Lambda encrypts its environment with its AWS managed key.", lambda p: "KmsKeyArn" not in p
        )
        for action in ("kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "kms:Encrypt")
    },
    **{
        ("AWS::Lambda::Function", action): Skip("The function has no CodeSigningConfigArn.", lambda p: "CodeSigningConfigArn" not in p)
        for action in ("lambda:PutFunctionCodeSigningConfig", "lambda:DeleteFunctionCodeSigningConfig", "lambda:GetCodeSigningConfig")
    },
    **{
        ("AWS::Lambda::Function", action): Skip("The function has no capacity provider.", lambda p: "CapacityProviderConfig" not in p)
        for action in ("lambda:PutFunctionScalingConfig", "lambda:PassCapacityProvider", "lambda:AssociateRuntimeAlias")
    },
    ("AWS::Lambda::Function", "lambda:PublishVersion"): Skip("The function has no SnapStart and publishes no version.", lambda p: "SnapStart" not in p),
    **{
        ("AWS::ApplicationAutoScaling::ScalableTarget", f"application-autoscaling:{action}"): Skip(
            "The scalable target has no ScheduledActions.", lambda p: "ScheduledActions" not in p
        )
        for action in ("PutScheduledAction", "DeleteScheduledAction")
    },
    **{
        ("AWS::ApplicationAutoScaling::ScalableTarget", f"lambda:{action}"): Skip(
            "The scalable target is a SageMaker endpoint variant, never a Lambda alias.", lambda p: p["ServiceNamespace"] == "sagemaker"
        )
        for action in ("GetProvisionedConcurrencyConfig", "PutProvisionedConcurrencyConfig", "DeleteProvisionedConcurrencyConfig")
    },
}


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: dict[str, str]


def _scalable_target(template: dict[str, Any]) -> dict[str, Any]:
    (target,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"]
    return target


def _scaling_resource_id(template: dict[str, Any]) -> str:
    return str(_scalable_target(template)["ResourceId"])


def _scaling_context(template: dict[str, Any]) -> dict[str, str]:
    """The condition keys Application Auto Scaling sets from the request (the target's namespace and dimension)."""
    target = _scalable_target(template)
    return {"application-autoscaling:service-namespace": target["ServiceNamespace"], "application-autoscaling:scalable-dimension": target["ScalableDimension"]}


def request_for(stacks: Stacks, stack: str, logical_id: str, action: str) -> Request:
    """The resource (and request context) a handler permission is exercised on, for this resource."""
    template = stacks.templates[stack]
    resource = template["Resources"][logical_id]
    properties = stacks.resolve(stack, resource.get("Properties", {}))
    service, name = action.split(":")
    if service in ("sagemaker", "lambda"):
        return Request(action, stacks.stand_in(stack, logical_id, "Arn"), {})
    if action == "iam:PassRole" and resource["Type"] == "AWS::Lambda::Function":
        return Request(action, properties["Role"], {"iam:PassedToService": "lambda.amazonaws.com"})
    if action == "iam:PassRole" and resource["Type"] == "AWS::SageMaker::Model":
        return Request(action, properties["ExecutionRoleArn"], {"iam:PassedToService": "sagemaker.amazonaws.com"})
    if action == "iam:PassRole" and resource["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget":
        return Request(action, properties.get("RoleARN", ""), {})
    if action == "iam:CreateServiceLinkedRole":
        slr = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/{SCALING_SERVICE}/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
        return Request(action, slr, {"iam:AWSServiceName": SCALING_SERVICE})
    if service == "iam":  # e.g. iam:CreateRole for a role the template creates
        return Request(action, stacks.stand_in(stack, logical_id, "Arn"), {})
    if service == "kms":
        return Request(action, properties["KmsKeyId"], {})
    if service == "application-autoscaling":
        return Request(action, f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/0123456789abcdef0123", _scaling_context(template))
    if name in ("PutMetricAlarm", "DeleteAlarms", "DescribeAlarms"):
        alarm = f"TargetTracking-{_scaling_resource_id(template)}-AlarmHigh-3f1c6a52-7d2e-4b7a-9c1d-0e5f6a7b8c9d"
        return Request(action, f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm}", {})
    if action == "cloudwatch:GetMetricData":
        return Request(action, "*", {})
    raise AssertionError(f"no rule for the resource {action} acts on ({resource['Type']}); add one to request_for")


MODEL_PARAMETERS = (MODEL_ALGORITHM_PARAMETER, MODEL_PROBLEM_TYPE_PARAMETER, MODEL_DESCRIPTION_PARAMETER)


def set_with_the_package(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Resources whose own properties name the parameters the deployer sets from the package's
    metadata. Not followed further: a Lambda configuration update keeps the function's ARN and
    name, so what references the function does not change."""
    return {
        k: r for k, r in template["Resources"].items() if _mentions(r.get("Properties", {}), set(MODEL_PARAMETERS)) or r.get("Condition") in MODEL_PARAMETERS
    }


def changed_by_approval(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**changed_by_parameter(template, MODEL_PACKAGE_PARAMETER), **set_with_the_package(template)}


def deployment_requests(stacks: Stacks, stack: str) -> Iterator[tuple[str, str, Request]]:
    template = stacks.templates[stack]
    # The package's resources come and go with the ARN; the front door is only ever updated.
    created_or_deleted = changed_by_parameter(template, MODEL_PACKAGE_PARAMETER)
    for logical_id, resource in changed_by_approval(template).items():
        handlers = HANDLERS if logical_id in created_or_deleted else ("update",)
        for action in sorted(handler_permissions(resource["Type"], handlers)):
            skip = SKIPPED.get((resource["Type"], action))
            if skip is not None and skip.holds(resource.get("Properties", {})):
                continue  # taken only where its reason is true of this resource; else checked
            yield logical_id, resource["Type"], request_for(stacks, stack, logical_id, action)


@pytest.fixture(scope="module")
def dev(synthesized: SynthResult) -> Stacks:
    return stacks_with_models(synthesized.templates, ["dev"])


def test_an_approval_changes_the_model_endpoint_and_its_scaling(dev: Stacks) -> None:
    changed = changed_by_parameter(dev.templates["sagelab-dev--serving"], MODEL_PACKAGE_PARAMETER)
    assert sorted({r["Type"] for r in changed.values()}) == [
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::SageMaker::Endpoint",
        "AWS::SageMaker::EndpointConfig",
        "AWS::SageMaker::Model",
    ]


def test_the_packages_metadata_changes_only_the_front_door_and_drift_check_functions_environment(dev: Stacks) -> None:
    template = dev.templates["sagelab-dev--serving"]
    changed = set_with_the_package(template)
    assert [r["Type"] for r in changed.values()] == ["AWS::Lambda::Function"] * 2
    ((_logical_id, function),) = [(k, f) for k, f in changed.items() if k.startswith("FrontDoorFunction")]
    ((_check_id, check),) = [(k, f) for k, f in changed.items() if k.startswith("DriftCheckFunction")]
    # The drift check reads the served version's baseline beside its description (decision 0013).
    assert check["Properties"]["Environment"]["Variables"]["MODEL_DESCRIPTION_URI"] == {"Ref": MODEL_DESCRIPTION_PARAMETER}
    assert all(not _mentions(value, set(MODEL_PARAMETERS)) for key, value in check["Properties"].items() if key != "Environment")
    variables = function["Properties"]["Environment"]["Variables"]
    assert {name: variables[name] for name in ("MODEL_ALGORITHM", "MODEL_PROBLEM_TYPE", "MODEL_DESCRIPTION_URI")} == {
        "MODEL_ALGORITHM": {"Ref": MODEL_ALGORITHM_PARAMETER},
        "MODEL_PROBLEM_TYPE": {"Ref": MODEL_PROBLEM_TYPE_PARAMETER},
        "MODEL_DESCRIPTION_URI": {"Ref": MODEL_DESCRIPTION_PARAMETER},
    }
    # Only the environment: code, role and everything else stay as deployed.
    assert all(not _mentions(value, set(MODEL_PARAMETERS)) for key, value in function["Properties"].items() if key != "Environment")


def test_a_serverless_approval_changes_the_model_and_endpoint_only(neighbours_deployed: Stacks) -> None:
    changed = changed_by_parameter(neighbours_deployed.templates["sagelab-carol--serving"], MODEL_PACKAGE_PARAMETER)
    assert sorted({r["Type"] for r in changed.values()}) == ["AWS::SageMaker::Endpoint", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Model"]


@pytest.mark.parametrize("environment", ["dev", "carol"], ids=["realtime", "serverless"])
def test_the_deployment_role_holds_every_permission_the_registry_lists_for_those_resources(dev: Stacks, neighbours_deployed: Stacks, environment: str) -> None:
    stacks = dev if environment == "dev" else neighbours_deployed
    stack = f"sagelab-{environment}--serving"
    statements = stacks.identity_policies(role(stacks, stack, "DeployerCloudFormationRole"))
    requests = list(deployment_requests(stacks, stack))
    changed = changed_by_approval(stacks.templates[stack])
    assert {logical_id for logical_id, _, _ in requests} == set(changed)  # every schema was found and read
    missing = [
        f"{logical_id} ({resource_type}): {r.action} on {r.resource}"
        for logical_id, resource_type, r in requests
        if not is_allowed(statements, r.action, r.resource, r.context)
    ]
    assert not missing, "the deployment role lacks:\n" + "\n".join(missing)


def test_the_deployment_role_scales_only_sagemaker_variants(dev: Stacks) -> None:
    statements = dev.identity_policies(role(dev, "sagelab-dev--serving", "DeployerCloudFormationRole"))
    target = f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/0123456789abcdef0123"
    ecs = {"application-autoscaling:service-namespace": "ecs", "application-autoscaling:scalable-dimension": "ecs:service:DesiredCount"}
    variant = {"application-autoscaling:service-namespace": "sagemaker", "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount"}
    for action in ("RegisterScalableTarget", "DeregisterScalableTarget", "PutScalingPolicy", "DeleteScalingPolicy"):
        assert is_allowed(statements, f"application-autoscaling:{action}", target, variant), action
        assert not is_allowed(statements, f"application-autoscaling:{action}", target, ecs), action


# -- neighbours in one account -------------------------------------------------------------------
@pytest.fixture(scope="module")
def neighbours_deployed(neighbours: SynthResult) -> Stacks:
    return stacks_with_models(neighbours.templates, ["alice", "alice-b", "carol"])


@pytest.mark.parametrize(("own", "other"), [("alice", "alice-b"), ("alice-b", "alice"), ("carol", "alice"), ("alice", "carol")])
def test_a_deployment_role_reaches_only_its_own_environment(neighbours_deployed: Stacks, own: str, other: str) -> None:
    stacks = neighbours_deployed
    statements = stacks.identity_policies(role(stacks, f"sagelab-{own}--serving", "DeployerCloudFormationRole"))
    # The neighbour's resources, addressed by ARN (tagging, describe, create, delete, alarms):
    reached = [
        f"{logical_id}: {r.action} on {r.resource}"
        for logical_id, _, r in deployment_requests(stacks, f"sagelab-{other}--serving")
        if r.resource != "*" and r.resource.split(":")[2] in ("sagemaker", "cloudwatch") and is_allowed(statements, r.action, r.resource, r.context)
    ]
    assert not reached, f"{own}'s deployment role reaches {other}'s resources:\n" + "\n".join(reached)
    own_requests = list(deployment_requests(stacks, f"sagelab-{own}--serving"))
    assert all(is_allowed(statements, r.action, r.resource, r.context) for _, _, r in own_requests)


# -- the deployer function's own calls --------------------------------------------------------------
DEPLOYER_CODE = REPO_ROOT / "stacks" / "approval_deployer" / "runtime" / "handler.py"


@dataclass(frozen=True)
class ApiCall:
    service: str
    method: str
    keywords: frozenset[str]


def boto3_calls(source: Path) -> list[ApiCall]:
    """Every call of a boto3 client method in `source`. The module must create clients with
    boto3.client("<service>") literals, so that the services are known."""
    tree = ast.parse(source.read_text())
    services = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "boto3.client":
            (service,) = [a.value for a in node.args if isinstance(a, ast.Constant)]
            services.add(service)
    calls = []
    for service in sorted(services):
        methods = boto3.client(service, region_name=REGION).meta.method_to_api_mapping
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in methods:
                calls.append(ApiCall(service, node.func.attr, frozenset(k.arg for k in node.keywords if k.arg)))
    return calls


def test_the_deployer_may_make_every_call_its_code_makes(synthesized: SynthResult) -> None:
    stacks = Stacks(synthesized.templates, ENV)
    stack = "sagelab-dev--serving"
    (function_id,) = [k for k, r in stacks.templates[stack]["Resources"].items() if k.startswith("DeployerFunction") and r["Type"] == "AWS::Lambda::Function"]
    function = stacks.resolve(stack, stacks.templates[stack]["Resources"][function_id]["Properties"])
    variables = function["Environment"]["Variables"]
    statements = stacks.identity_policies(role(stacks, stack, "DeployerFunctionRole"))
    stack_arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{variables['SERVING_STACK_NAME']}/0f5e2a10-0000-4000-8000-000000000000"
    package_arn = f"{variables['MODEL_PACKAGE_ARN_PREFIX']}3"

    calls = boto3_calls(DEPLOYER_CODE)
    assert {(c.service, c.method) for c in calls} == {
        ("cloudformation", "describe_stacks"),
        ("cloudformation", "update_stack"),
        ("sagemaker", "describe_model_package"),
    }
    for call in calls:
        action = f"{call.service}:{boto3.client(call.service, region_name=REGION).meta.method_to_api_mapping[call.method]}"
        context: dict[str, str] = {}
        if call.service == "sagemaker":  # the approved version, of this environment's group only
            assert is_allowed(statements, action, package_arn), action
            assert not is_allowed(statements, action, package_arn.replace("sagelab-dev--models", "sagelab-bob--models")), action
            continue
        if call.method == "update_stack":
            # What the request carries decides the condition keys: a RoleARN and the previous template.
            assert {"RoleARN", "UsePreviousTemplate"} <= call.keywords and not {"TemplateURL", "TemplateBody"} & call.keywords, call.keywords
            context = {"cloudformation:RoleArn": variables["CLOUDFORMATION_ROLE_ARN"]}
            assert is_allowed(statements, "iam:PassRole", variables["CLOUDFORMATION_ROLE_ARN"], {"iam:PassedToService": "cloudformation.amazonaws.com"}), (
                "UpdateStack with RoleARN needs iam:PassRole on it"
            )
        assert is_allowed(statements, action, stack_arn, context), action
    log_group = function["LoggingConfig"]["LogGroup"]
    log_stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{log_group}:log-stream:2026/01/01/[$LATEST]0123456789abcdef"
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert is_allowed(statements, action, log_stream), action


# -- the pipeline role ---------------------------------------------------------------------------
PLATFORM = "sagelab-dev--platform"
EXECUTION_ID = "a1b2c3d4e5f6"
# Where a definition's S3 URI is written rather than read.
WRITTEN_UNDER = {"ProcessingOutputConfig", "OutputDataConfig", "DebugHookConfig", "CheckpointConfig", "TransformOutput"}
LOG_GROUPS = {"Processing": "/aws/sagemaker/ProcessingJobs", "Training": "/aws/sagemaker/TrainingJobs", "Transform": "/aws/sagemaker/TransformJobs"}
JOB_ACTIONS = {
    "Processing": ("CreateProcessingJob", "processing-job"),
    "Training": ("CreateTrainingJob", "training-job"),
    "Transform": ("CreateTransformJob", "transform-job"),
    "AutoML": ("CreateAutoMLJob", "automl-job"),
    "Model": ("CreateModel", "model"),
}
# The API field that names each job-like step's resource (custom job prefixes keep it as a prefix).
NAME_FIELDS = {"AutoML": "AutoMLJobName", "Model": "ModelName"}


@dataclass(frozen=True)
class Definition:
    document: dict[str, Any]
    role_arn: str  # the pipeline's own role (CfnPipeline RoleArn)

    def parameter(self, name: str) -> Any:
        (found,) = [p.get("DefaultValue") for p in self.document["Parameters"] if p["Name"] == name]
        return found

    def steps(self) -> Iterator[dict[str, Any]]:
        pending = list(self.document["Steps"])
        while pending:
            step = pending.pop()
            yield step
            pending += step.get("Arguments", {}).get("IfSteps", []) + step.get("Arguments", {}).get("ElseSteps", [])
            pending += step.get("IfSteps", []) + step.get("ElseSteps", [])


def render(definition: Definition, value: Any) -> str | None:
    """A definition value as the string it becomes at run time; None for another step's property
    (those are URIs checked where that step writes them)."""
    if isinstance(value, str):
        return value.strip('"')  # hyperparameters are JSON-encoded strings
    if isinstance(value, dict) and "Get" in value:
        reference = value["Get"]
        if reference == "Execution.PipelineExecutionId":
            return EXECUTION_ID
        if reference.startswith("Parameters."):
            return str(definition.parameter(reference.split(".", 1)[1]))
        return None
    if isinstance(value, dict) and "Std:Join" in value:
        parts = [render(definition, v) for v in value["Std:Join"]["Values"]]
        return None if None in parts else value["Std:Join"]["On"].join(p for p in parts if p is not None)
    return None


def walk(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, value
    if isinstance(value, dict) and not ({"Get", "Std:Join"} & set(value)):
        for key, inner in value.items():
            yield from walk(inner, (*path, key))
    elif isinstance(value, list):
        for inner in value:
            yield from walk(inner, path)


@pytest.fixture(scope="module")
def pipeline(synthesized: SynthResult) -> tuple[Stacks, Definition, list[Statement]]:
    stacks = Stacks(synthesized.templates, ENV)
    (properties,) = [
        stacks.resolve(PLATFORM, r["Properties"]) for r in stacks.templates[PLATFORM]["Resources"].values() if r["Type"] == "AWS::SageMaker::Pipeline"
    ]
    definition = Definition(json.loads(properties["PipelineDefinition"]["PipelineDefinitionBody"]), properties["RoleArn"])
    pipeline_role = next(r for r in stacks.roles() if r.arn == definition.role_arn)
    return stacks, definition, stacks.identity_policies(pipeline_role)


def job_name(step: dict[str, Any]) -> str:
    """The name SageMaker Pipelines gives a step's job: the definition's job-name prefix (custom
    job prefixes) or `pipelines-<execution id>-<step>`, then a generated suffix."""
    field = NAME_FIELDS.get(step["Type"], f"{step['Type']}JobName")
    prefix = step["Arguments"].get(field) or f"pipelines-{EXECUTION_ID}-{step['Name'].lower()}"
    return f"{prefix}-x1y2z3a4b5"


def s3_uris(definition: Definition) -> list[tuple[str, bool]]:
    """(URI, written) for every S3 URI of the definition, parameters' defaults included."""
    found = []
    for parameter in definition.document["Parameters"]:
        if str(parameter.get("DefaultValue", "")).startswith("s3://"):
            found.append((parameter["DefaultValue"], False))
    for path, value in walk(definition.document["Steps"]):
        text = render(definition, value) if isinstance(value, (str, dict)) else None
        if text and text.startswith("s3://"):
            found.append((text, bool(WRITTEN_UNDER & set(path))))
    return sorted(set(found))


def bucket_key(stacks: Stacks, bucket: str) -> str | None:
    for stack, template in stacks.templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::S3::Bucket" and stacks.stand_in(stack, logical_id) == bucket:
                rules = stacks.resolve(stack, resource["Properties"].get("BucketEncryption", {})).get("ServerSideEncryptionConfiguration", [])
                keys = [r["ServerSideEncryptionByDefault"].get("KMSMasterKeyID") for r in rules]
                return keys[0] if keys else None
    raise AssertionError(f"bucket {bucket} is not in the templates")


def test_every_s3_uri_of_the_pipeline_is_readable_or_writable(pipeline: tuple[Stacks, Definition, list[Statement]]) -> None:
    stacks, definition, statements = pipeline
    uris = s3_uris(definition)
    assert any(written for _, written in uris) and any(not written for _, written in uris)
    missing = []
    for uri, written in uris:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        # A URI naming a file is the object; one naming a prefix covers the objects below it.
        obj = key if "." in key.rsplit("/", 1)[-1] else f"{key.rstrip('/')}/part-00000"
        # What a step writes, a later step (or the registered model) reads: outputs need both.
        needs = [("s3:GetObject", f"arn:aws:s3:::{bucket}/{obj}"), ("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
        needs += [("s3:PutObject", f"arn:aws:s3:::{bucket}/{obj}")] if written else []
        key_arn = bucket_key(stacks, bucket)
        if key_arn:
            needs += [("kms:Decrypt", key_arn)] + ([("kms:GenerateDataKey", key_arn)] if written else [])
        missing += [f"{action} on {resource} (for {uri})" for action, resource in needs if not is_allowed(statements, action, resource)]
    assert not missing, "the pipeline role lacks:\n" + "\n".join(missing)


def test_the_pipeline_role_can_use_the_keys_pull_the_images_and_write_the_job_logs(pipeline: tuple[Stacks, Definition, list[Statement]]) -> None:
    _, definition, statements = pipeline
    needs: list[tuple[str, str, dict[str, str]]] = []
    jobs = [s for s in definition.steps() if s["Type"] in JOB_ACTIONS]
    assert {s["Type"] for s in jobs} == set(JOB_ACTIONS)
    for step in jobs:
        arguments = step["Arguments"]
        for path, value in walk(arguments):
            if path and path[-1] in ("KmsKeyId", "VolumeKmsKeyId") and isinstance(value, str):
                needs += [(a, value, {}) for a in ("kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey")]
                needs.append(("kms:CreateGrant", value, {"kms:GrantIsForAWSResource": "true"}))
            if path and path[-1] in ("ImageUri", "TrainingImage", "Image") and isinstance(value, str):
                registry, _, repository = value.partition("/")
                account, region = registry.split(".")[0], registry.split(".")[3]
                repository_arn = f"arn:aws:ecr:{region}:{account}:repository/{repository.split(':')[0].split('@')[0]}"
                needs += [(a, repository_arn, {}) for a in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")]
        needs.append(("ecr:GetAuthorizationToken", "*", {}))
        job = job_name(step)
        if step["Type"] in LOG_GROUPS:  # an AutoML job or a model writes no log stream of its own
            group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{LOG_GROUPS[step['Type']]}"
            needs += [("logs:CreateLogGroup", group, {})]
            needs += [(a, f"{group}:log-stream:{job}/algo-1-1767225600", {}) for a in ("logs:CreateLogStream", "logs:PutLogEvents")]
        if step["Type"] == "Processing" and "--automl-job-name" in json.dumps(arguments):
            needs.append(("sagemaker:ListCandidatesForAutoMLJob", "*", {}))  # evaluate.py reads the Autopilot leaderboard
        action, resource_type = JOB_ACTIONS[step["Type"]]
        needs.append((f"sagemaker:{action}", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{resource_type}/{job}", {}))
    registrations = [s for s in definition.steps() if s["Type"] == "RegisterModel"]
    assert registrations
    for step in registrations:
        group = step["Arguments"]["ModelPackageGroupName"]
        needs.append(("sagemaker:CreateModelPackage", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/1", {}))
    missing = sorted({f"{a} on {r}" for a, r, c in needs if not is_allowed(statements, a, r, c)})
    assert not missing, "the pipeline role lacks:\n" + "\n".join(missing)


def test_the_pipeline_role_passes_exactly_the_roles_its_steps_pass(pipeline: tuple[Stacks, Definition, list[Statement]]) -> None:
    stacks, definition, statements = pipeline
    passed = {
        value
        for _, value in ((p, v) for p, v in walk(definition.document["Steps"]) if p and p[-1] in ("RoleArn", "ExecutionRoleArn"))
        if isinstance(value, str)
    }
    assert passed == {definition.role_arn}
    to_sagemaker = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    passable = {r.arn for r in stacks.roles() if is_allowed(statements, "iam:PassRole", r.arn, to_sagemaker)}
    assert passable == passed
    assert not is_allowed(statements, "iam:PassRole", definition.role_arn, {"iam:PassedToService": "lambda.amazonaws.com"})


def test_the_roles_that_run_an_autopilot_candidate_can_pull_its_image(synthesized: SynthResult, pipeline: tuple[Stacks, Definition, list[Statement]]) -> None:
    """The best candidate's image is known only when the AutoML job ends (a `Get` in the
    definition), so the generic image check above cannot see it: ensembling candidates are served
    by the AutoGluon inference image; the pipeline role (batch transform of the test split) and the
    endpoint role (serving an approved candidate) pull it, and nothing from other repositories."""
    from sagelab.pipeline_definition import AUTOPILOT_INFERENCE_IMAGE, image_uris

    stacks, definition, statements = pipeline
    registry, _, repository = image_uris(REGION)[AUTOPILOT_INFERENCE_IMAGE].partition("/")
    repository_arn = f"arn:aws:ecr:{REGION}:{registry.split('.')[0]}:repository/{repository.split(':')[0]}"
    assert repository_arn.endswith(":763104351884:repository/autogluon-inference")
    endpoint_role = next(r for r in stacks.roles() if r.logical_id.startswith("RolesEndpointRole"))
    for role_statements in (statements, stacks.identity_policies(endpoint_role)):
        assert is_allowed(role_statements, "ecr:BatchGetImage", repository_arn)
        assert not is_allowed(role_statements, "ecr:BatchGetImage", f"arn:aws:ecr:{REGION}:763104351884:repository/pytorch-training")
    create_model = next(s for s in definition.steps() if s["Type"] == "Model")
    assert create_model["Arguments"]["PrimaryContainer"]["Image"] == {"Get": "Steps.Autopilot.BestCandidate.InferenceContainers[0].Image"}


def test_the_kmeans_and_autopilot_branches_run_the_right_images_with_the_pipeline_role(pipeline: tuple[Stacks, Definition, list[Statement]]) -> None:
    """On the synthesized template (placeholders filled as CloudFormation fills them): the K-Means
    chain trains and serves the region's built-in K-Means image; the Autopilot chain's AutoML job,
    candidate model and transform all run as the pipeline's own role; no step runs as another."""
    from sagelab.pipeline_definition import image_uris

    _, definition, statements = pipeline
    steps = {step["Name"]: step["Arguments"] for step in definition.steps()}
    kmeans_image = image_uris(REGION)["KmeansImageUri"]
    assert kmeans_image == f"382416733822.dkr.ecr.{REGION}.amazonaws.com/kmeans:1"
    assert steps["KMeansTrain"]["AlgorithmSpecification"]["TrainingImage"] == kmeans_image
    assert steps["KMeansTrain"]["RoleArn"] == definition.role_arn
    (container,) = steps["KMeansRegisterModel-RegisterModel"]["InferenceSpecification"]["Containers"]
    assert container["Image"] == kmeans_image
    assert steps["Autopilot"]["RoleArn"] == definition.role_arn and steps["Autopilot"]["AutoMLJobConfig"]["Mode"] == "ENSEMBLING"
    assert steps["AutopilotModel-CreateModel"]["ExecutionRoleArn"] == definition.role_arn
    for name in ("KMeansEvaluate", "AutopilotEvaluate"):
        assert steps[name]["RoleArn"] == definition.role_arn
        assert steps[name]["AppSpecification"]["ImageUri"] == image_uris(REGION)["XgboostImageUri"]
    automl_job = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:automl-job/{steps['Autopilot']['AutoMLJobName']}-x1y2z3"
    assert is_allowed(statements, "sagemaker:CreateAutoMLJob", automl_job)
    assert not is_allowed(statements, "sagemaker:CreateAutoMLJob", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:automl-job/someone-else-a-x1y2z3")
