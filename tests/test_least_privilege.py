"""Least privilege across students, proven on the synthesized templates with IAM's semantics.

A shared-account class (tests/conftest.py `shared_class`) is resolved to concrete ARNs
(tests/iam_policy.py) and every Allow statement of each student's stacks is matched against
concrete example ARNs of every other student's resources, including the ones SageMaker and
CloudFormation name themselves (jobs, log streams, models, endpoint configs, alarms). A statement
that can match counts as a leak unless a condition scopes it to its own student (evaluated with the
student's principal tag against the other student's resource tag). Deny statements (guardrails)
scoped to resources count too: a guardrail scope that names another tenant's resource is a scope
that does not say what it means.

The same proof runs over every tenant of one account whose ids extend one another (conftest
`tenants`: environments alice, alice-b, dev, ml-prod; students ana, ana-2, dev-kowal, ml), with the
jobs' names taken from each tenant's own pipeline definition, not from the naming code.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sagelab.naming import ResourceNames
from tests.conftest import NEIGHBOURS, TENANT_STUDENTS, SynthResult
from tests.iam_policy import Env, RoleRef, Stacks, Statement, can_apply_given, is_allowed, resource_matches

ENV = Env(partition="aws", region="us-east-1", account="123456789012")
STUDENTS = ("alice", "bob", "carol")

# Actions that support no resource-level permission: they cannot touch another student's resource
# whatever their Resource says (Service Authorization Reference, resource type column empty).
RESOURCELESS_ACTIONS = {
    "ecr:getauthorizationtoken": "Registry login; image pulls are scoped to the framework repositories.",
    "cloudwatch:putmetricdata": "Metrics are published to a namespace, not a resource; limited by the cloudwatch:namespace condition.",
    "xray:puttracesegments": "X-Ray supports no resource-level permission.",
    "cloudwatch:getmetricdata": "Reads metric data by namespace and dimensions; supports no resource-level permission (the scaling deployer's ReadScalingMetrics).",
    "xray:puttelemetryrecords": "X-Ray supports no resource-level permission.",
}

# CloudWatch Logs actions authorized on a log group (Service Authorization Reference): they apply to
# log-group ARNs, the others to log-stream ARNs. Of the group actions, those that read the events
# of every stream in the group make a shared group (SageMaker's /aws/sagemaker/<job type>) count as
# every student's resource.
LOG_GROUP_ACTIONS = {
    "logs:createloggroup",
    "logs:createlogstream",
    "logs:describelogstreams",
    "logs:putretentionpolicy",
    "logs:filterlogevents",
    "logs:startquery",
}
READS_EVERY_STREAM = {"logs:filterlogevents", "logs:startquery", "logs:startlivetail"}
SHARED_SAGEMAKER_LOG_GROUPS = (
    "/aws/sagemaker/ProcessingJobs",
    "/aws/sagemaker/TrainingJobs",
    "/aws/sagemaker/TransformJobs",
    "/aws/sagemaker/NotebookInstances",
)

# Statements allowed to reach a classmate's resources, keyed by (role logical-id prefix, Sid
# prefix), each with the reason; the test fails if an entry no longer matches anything (stale).
KNOWN_OPEN: dict[tuple[str, str], str] = {
    ("RolesPipelineRole", "ReadAutopilotLeaderboard"): (
        "sagemaker:ListCandidatesForAutoMLJob supports no resource type and no condition key (IAM authorizes it on * only), so it "
        "cannot be scoped. Given another student's AutoML job name, a job of this pipeline could list that job's candidates in "
        "full: CandidateName, CandidateStatus, ObjectiveStatus and FinalAutoMLJobObjectiveMetric, CandidateProperties (metrics and "
        "artifact locations), CandidateSteps (the ARNs and names of its processing, training and transform jobs), "
        "InferenceContainers and InferenceContainerDefinitions (each container's Image, ModelDataUrl: the S3 URI of the model "
        "artifact, and Environment), FailureReason, CreationTime, EndTime and LastModifiedTime. It reads no object: the model "
        "data URL names the other student's bucket, which this role cannot read. Only the pipeline's jobs hold it (a student's "
        "code in them, e.g. a custom script, could call it); Evaluate needs it for the Autopilot leaderboard (docs/decisions/0011)."
    ),
}


@dataclass(frozen=True)
class Leak:
    student: str
    other: str
    role: str
    source: str
    action: str
    resource: str

    def __str__(self) -> str:
        return f"{self.student}'s {self.role} ({self.source}) may {self.action} on {self.other}'s {self.resource}"


def _stacks(result: SynthResult) -> Stacks:
    return Stacks(result.templates, ENV)


def _students_stacks(student: str) -> tuple[str, str]:
    names = ResourceNames.of(student)
    return (names.platform_stack, names.serving_stack)


# A job's name field in the definition -> the resource type in its ARN.
JOB_NAME_FIELDS = {
    "ProcessingJobName": "processing-job",
    "TrainingJobName": "training-job",
    "HyperParameterTuningJobName": "hyper-parameter-tuning-job",
    "AutoMLJobName": "automl-job",
    "TransformJobName": "transform-job",
    "ModelName": "model",
}


def defined_job_names(stacks: Stacks, student: str) -> list[tuple[str, str]]:
    """(resource_type, name) of the jobs a student's pipeline starts, from the definition in the student's
    own template with `${JobNamePrefix}` substituted as CloudFormation does (a name field is the
    start of a name SageMaker extends per run)."""
    platform = stacks.templates[_students_stacks(student)[0]]["Resources"]
    (pipeline,) = [r for r in platform.values() if r["Type"] == "AWS::SageMaker::Pipeline"]
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    body = body.replace("${JobNamePrefix}", variables["JobNamePrefix"])
    found = [(resource_type, name) for field, resource_type in JOB_NAME_FIELDS.items() for name in re.findall(rf'"{field}": ?"([^"$]+)"', body)]
    assert {resource_type for resource_type, _ in found} >= {"processing-job", "training-job", "automl-job", "transform-job", "model"}, found
    return found


def example_resources(stacks: Stacks, student: str) -> list[str]:
    """Concrete ARNs of a student's resources: every resource in the student's templates, the jobs
    its pipeline definition names, and the ones SageMaker/CloudFormation name at run time, from
    the student's names."""
    arns: list[str] = []
    for stack in _students_stacks(student):
        for logical_id in stacks.templates[stack]["Resources"]:
            for attribute in (None, "Arn"):
                value = stacks.stand_in(stack, logical_id, attribute)
                if value.startswith("arn:"):
                    arns.append(value)
                    if value.startswith("arn:aws:s3:::"):
                        arns += [f"{value}/pipeline-code/v1/train.py", f"{value}/data-capture/AllTraffic/2026/01/01/capture.jsonl", f"{value}/any/key"]
    names = ResourceNames.of(student)
    sagemaker = f"arn:aws:sagemaker:{ENV.region}:{ENV.account}"
    logs = f"arn:aws:logs:{ENV.region}:{ENV.account}:log-group"
    log_groups = {
        "processing-job": "/aws/sagemaker/ProcessingJobs",
        "training-job": "/aws/sagemaker/TrainingJobs",
        "transform-job": "/aws/sagemaker/TransformJobs",
    }
    # SageMaker extends each name field per run, and lowercases the names in the ARNs it builds.
    for resource_type, name in defined_job_names(stacks, student):
        run = f"{name}-a1b2c3d4e5".lower()
        arns.append(f"{sagemaker}:{resource_type}/{run}")
        if resource_type in log_groups:
            arns.append(f"{logs}:{log_groups[resource_type]}:log-stream:{run}/algo-1-1700000000")
    jobs = {
        "processing-job": [f"pipelines-{student}x1-preprocess-a1b2"],
        "training-job": [names.name("t-a1b2c3d4-001-deadbeef")],  # a tuning job's training jobs
        "hyper-parameter-tuning-job": [names.name("t-a1b2c3d4")],
        "transform-job": [names.batch_job("20260101-120000")],
        "model": [names.name("model-1"), "endpointmodel0f230181-ab12cd34ef56"],
        "endpoint-config": [names.name("endpoint-config-1"), "endpointconfig24ad0a28-ab12cd34ef56"],
    }
    arns += [f"{sagemaker}:{resource_type}/{name}" for resource_type, job_names in jobs.items() for name in job_names]
    arns += [
        f"{sagemaker}:model-package/{names.model_package_group}/1",
        f"{sagemaker}:pipeline/{names.pipeline}/execution/a1b2c3d4e5f6",
        f"{logs}:/aws/sagemaker/TransformJobs:log-stream:{names.batch_job('20260101-120000')}/i-0123456789abcdef0",
        f"{logs}:/aws/sagemaker/Endpoints/{names.endpoint}",
        f"{logs}:/aws/sagemaker/Endpoints/{names.endpoint}:log-stream:AllTraffic/i-0123456789abcdef0",
        f"{logs}:/aws/sagemaker/NotebookInstances:log-stream:{names.notebook}/jupyter.log",
        f"{logs}:/aws/lambda/{names.serving_stack}-DeployerFunction-AbCdEf123456:log-stream:2026/01/01/[$LATEST]abc",
        f"{logs}:{names.platform_stack}-TrainingCopyFunctionLogs-AbCdEf123456",
        f"{logs}:{names.serving_stack}-ServingFrontDoorAccessLogs-AbCdEf123456",
        f"{logs}:aws-waf-logs-{names.name('waf')}-a1b2c3d4",
        f"{logs}:{names.platform_stack}-TrainingCopyFunctionLogs-AbCdEf123456:log-stream:2026/01/01/[$LATEST]abc",
        f"arn:aws:cloudwatch:{ENV.region}:{ENV.account}:alarm:{names.name('ApiServerErrors')}",
        f"arn:aws:cloudwatch:{ENV.region}:{ENV.account}:alarm:{names.serving_stack}-MonitoringApiServerErrors-AbCdEf123456",
    ]
    return arns


# The AWS-managed policies a role of ours may carry, with their documented content (IAM console,
# policy version v1 of AWSLambdaBasicExecutionRole); any other AWS-managed policy fails the proof.
AWS_MANAGED_STATEMENTS = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"}
    ],
}


def _aws_managed_statements(role: RoleRef) -> list[Statement]:
    statements = []
    for arn in role.aws_managed_policy_arns:
        assert arn in AWS_MANAGED_STATEMENTS, f"{role.stack}/{role.logical_id} has AWS-managed policy {arn}, whose content this proof does not know"
        statements += [Statement.from_json(raw, f"{role.stack}/{arn}") for raw in AWS_MANAGED_STATEMENTS[arn]]
    return statements


def _roles_of(stacks: Stacks, student: str) -> list[RoleRef]:
    return [role for role in stacks.roles() if role.stack in _students_stacks(student)]


def _representative_actions(statement: Statement) -> list[str]:
    """Concrete actions a statement grants (a wildcard stands for an action it matches)."""
    return [action.replace("*", "Any").replace("?", "X") for action in statement.actions] or ["*:Any"]


def _service(action: str) -> str:
    return action.split(":", 1)[0].lower()


def _arn_service(arn: str) -> str:
    return arn.split(":")[2]


def _applies(action: str, arn: str) -> bool:
    """Can `action` be authorized against a resource like `arn` at all (service and, for CloudWatch
    Logs, log group vs log stream)?"""
    if _service(action) not in (_arn_service(arn), "*"):
        return False
    if _service(action) == "logs":
        is_stream = ":log-stream:" in arn
        return is_stream != (action.lower() in LOG_GROUP_ACTIONS) or action.lower() == "logs:any"
    return True


def _shared_groups(action: str) -> list[str]:
    if action.lower() not in READS_EVERY_STREAM:
        return []
    return [f"arn:aws:logs:{ENV.region}:{ENV.account}:log-group:{group}" for group in SHARED_SAGEMAKER_LOG_GROUPS]


def _known_context(student: str, other: str) -> dict[str, str]:
    return {"aws:PrincipalTag/student": student, "aws:ResourceTag/student": other, "aws:PrincipalAccount": ENV.account}


def _known_open(role: RoleRef, statement: Statement) -> str | None:
    for (role_prefix, sid_prefix), reason in KNOWN_OPEN.items():
        if role.logical_id.startswith(role_prefix) and statement.sid.startswith(sid_prefix):
            return reason
    return None


def _scoped(statement: Statement) -> Statement | None:
    """A Deny (guardrail) with its resource patterns that name something (not `*`), or None.
    Such a pattern must name its own tenant's resources only, whatever it denies."""
    if statement.effect == "Allow":
        return statement
    patterns = tuple(p for p in statement.resources if p != "*")
    return dataclasses.replace(statement, condition={}, resources=patterns) if patterns and not statement.not_resources else None


def cross_student_leaks(stacks: Stacks, students: tuple[str, ...] = STUDENTS) -> Iterator[tuple[Leak, str | None]]:
    """Each (statement of A, resource of B) that can match, with the known-open reason if any:
    Allow statements as IAM evaluates them, Deny statements by their named resources (`_scoped`)."""
    examples = {student: example_resources(stacks, student) for student in students}
    # Each student's examples by the service in their ARN, in their order: an action of one service
    # applies to none of the others' (`_applies`), which was most of the walk's 2.6 million calls.
    by_service: dict[str, dict[str, list[str]]] = {}
    for student, arns in examples.items():
        for arn in arns:
            by_service.setdefault(student, {}).setdefault(_arn_service(arn), []).append(arn)
    for student in students:
        for role in _roles_of(stacks, student):
            for original in [*stacks.identity_policies(role), *_aws_managed_statements(role)]:
                statement = _scoped(original)
                if statement is None:
                    continue
                for action in _representative_actions(statement):
                    if action.lower() in RESOURCELESS_ACTIONS:
                        continue
                    service = _service(action)
                    for other in students:
                        if other == student:
                            continue
                        candidates = examples[other] if service == "*" else by_service.get(other, {}).get(service, [])
                        known = _known_context(student, other)
                        for arn in candidates + _shared_groups(action):
                            if not _applies(action, arn):
                                continue
                            if can_apply_given(statement, action, arn, known):
                                yield Leak(student, other, role.logical_id, statement.source, action, arn), _known_open(role, statement)


@pytest.fixture(scope="module")
def class_stacks(shared_class: SynthResult) -> Stacks:
    return _stacks(shared_class)


@pytest.mark.slow  # IAM evaluation of every student role against every other's resources
def test_no_role_of_a_student_reaches_another_students_resources(class_stacks: Stacks) -> None:
    found = list(cross_student_leaks(class_stacks))
    leaks = sorted({str(leak) for leak, reason in found if reason is None})
    assert not leaks, f"{len(leaks)} cross-student grant(s), e.g.:\n" + "\n".join(leaks[:25])
    open_keys = {key for key in KNOWN_OPEN if any(reason == KNOWN_OPEN[key] for _, reason in found)}
    assert open_keys == set(KNOWN_OPEN), f"known-open entries that no longer match anything (remove them): {set(KNOWN_OPEN) - open_keys}"


def resource_policy_overlaps(stacks: Stacks, tenants: tuple[str, ...]) -> Iterator[str]:
    """Bucket/key/topic/queue policies of B that name one of A's roles, anyone unscoped, or (by
    resource or by an ARN pattern in a condition, such as the log groups a key serves) one of A's
    resources; the account root (delegation to identity policies) is the only account-wide principal."""
    roles = {tenant: {role.arn for role in _roles_of(stacks, tenant)} for tenant in tenants}
    examples = {tenant: example_resources(stacks, tenant) for tenant in tenants}
    for policy in stacks.resource_policies():
        # Class-wide stacks (sagelab-class--<region>: the shared web ACL's log key) belong to no tenant.
        owner = next((t for t in tenants if policy.stack in _students_stacks(t)), None)
        where = f"{policy.stack}/{policy.logical_id}"
        for statement in policy.statements:
            if statement.effect != "Allow":
                continue
            principals = statement.principal if isinstance(statement.principal, dict) else {"AWS": statement.principal}
            for value in _as_strings(principals.get("AWS")):
                if value == "*" and not statement.condition:
                    yield f"{where}: unconditional Principal *"
                for other in tenants:
                    if other != owner and any(resource_matches(value, arn) for arn in roles[other]):
                        yield f"{where} grants {other}'s role"
            # A resource policy's statements act on its own resource only.
            patterns = [p for p in statement.resources if p != "*"]
            patterns += [v for keys in statement.condition.values() for values in keys.values() for v in _as_strings(values) if v.startswith("arn:")]
            for pattern in patterns:
                for other in tenants:
                    hits = [arn for arn in examples[other] if other != owner and resource_matches(pattern, arn)]
                    if hits:
                        yield f"{where}: {pattern} matches {other}'s {hits[:3]}"


@pytest.mark.slow  # every resource policy of the class evaluated per student
def test_resource_policies_grant_no_other_student(class_stacks: Stacks) -> None:
    assert list(resource_policy_overlaps(class_stacks, STUDENTS)) == []


@pytest.mark.slow  # the tenants synths (ids that extend one another)
def test_resource_policies_name_no_other_tenant(tenant_stacks: Stacks) -> None:
    assert list(resource_policy_overlaps(tenant_stacks, TENANTS)) == []


def test_a_key_policy_scoped_the_old_way_is_found(tenant_stacks: Stacks) -> None:
    """Negative case for the condition patterns: alice's key serving log groups `sagelab-alice-*`
    (the old scope) would serve alice-b's; the check reports it."""
    templates = json.loads(json.dumps(tenant_stacks.templates))
    platform = templates[ResourceNames.of("alice").platform_stack]["Resources"]
    (key_id,) = [k for k, v in platform.items() if v["Type"] == "AWS::KMS::Key" and k.startswith("StorageKey")]
    pattern = "arn:aws:logs:us-east-1:123456789012:log-group:sagelab-alice-*"
    platform[key_id]["Properties"]["KeyPolicy"]["Statement"].append(
        {
            "Effect": "Allow",
            "Principal": {"Service": "logs.amazonaws.com"},
            "Action": "kms:Encrypt*",
            "Resource": "*",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": pattern}},
        }
    )
    found = list(resource_policy_overlaps(Stacks(templates, ENV), ("alice", "alice-b")))
    assert found and all(pattern in line and "alice-b's" in line for line in found), found


def _as_strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


TENANTS = (*NEIGHBOURS, *TENANT_STUDENTS)


@pytest.fixture(scope="module")
def tenant_stacks(tenants: SynthResult) -> Stacks:
    return _stacks(tenants)


@pytest.mark.slow  # the tenants synths, transitive reach per tenant
def test_no_tenant_reaches_another_whose_id_extends_its_own(tenant_stacks: Stacks) -> None:
    """Environments alice, alice-b, carol, dev, ml-prod and students ana, ana-2, dev-kowal, ml in one
    account: no role of one (identity policies, guardrail denies' scopes) reaches another's
    resources, in either direction."""
    found = list(cross_student_leaks(tenant_stacks, TENANTS))
    leaks = sorted({str(leak) for leak, reason in found if reason is None})
    assert not leaks, f"{len(leaks)} cross-tenant grant(s), e.g.:\n" + "\n".join(leaks[:25])


def _with_old_scope(templates: dict[str, Any], tenant: str) -> dict[str, Any]:
    """`tenant`'s role policies scoped as before the `--` separator: `sagelab-<id>-*`."""
    new, old = ResourceNames.of(tenant).scope, f"sagelab-{tenant}-"

    def rescope(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(new, old)
        if isinstance(value, list):
            return [rescope(item) for item in value]
        if isinstance(value, dict):  # an import names another stack's export, not a resource
            return {key: item if key == "Fn::ImportValue" else rescope(item) for key, item in value.items()}
        return value

    changed = json.loads(json.dumps(templates))
    for stack in _students_stacks(tenant):
        for resource in changed[stack]["Resources"].values():
            if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
                resource["Properties"]["PolicyDocument"] = rescope(resource["Properties"]["PolicyDocument"])
    return changed


@pytest.mark.parametrize(("tenant", "neighbour"), [("ml", "ml-prod"), ("dev", "dev-kowal"), ("ana", "ana-2"), ("alice", "alice-b")])
def test_the_old_scope_is_found_reaching_the_neighbour(tenant_stacks: Stacks, tenant: str, neighbour: str) -> None:
    """Negative case: scope one tenant's policies as before (`sagelab-<id>-*`) and the finder
    reports its neighbour's jobs and their logs: ml reaches ml-prod's (the review's one-way
    finding), dev dev-kowal's, ana ana-2's."""
    stacks = Stacks(_with_old_scope(tenant_stacks.templates, tenant), ENV)
    reached = {(leak.action, leak.resource) for leak, reason in cross_student_leaks(stacks, (tenant, neighbour)) if leak.student == tenant and reason is None}
    actions = {action for action, _ in reached}
    assert {"sagemaker:StopTrainingJob", "sagemaker:DescribeTrainingJob", "logs:GetLogEvents"} <= actions, sorted(reached)[:10]
    assert all(ResourceNames.of(neighbour).scope in resource for _, resource in reached), sorted(
        r for r in reached if ResourceNames.of(neighbour).scope not in r[1]
    )


def test_a_guardrail_scoped_the_old_way_is_found(tenant_stacks: Stacks) -> None:
    """Negative case for Deny statements: a guardrail of alice scoped to `sagelab-alice-*` names
    alice-b's jobs; the finder reports it (a Deny whose Resource is `*` is not a scope)."""
    templates = json.loads(json.dumps(tenant_stacks.templates))
    platform = templates[ResourceNames.of("alice").platform_stack]["Resources"]
    (policy_id,) = [k for k, v in platform.items() if k.startswith("RolesNotebookPolicy") and v["Type"] == "AWS::IAM::ManagedPolicy"]
    statements = platform[policy_id]["Properties"]["PolicyDocument"]["Statement"]
    statements.append(
        {"Sid": "PlantedDeny", "Effect": "Deny", "Action": "sagemaker:StopTrainingJob", "Resource": "arn:aws:sagemaker:*:*:training-job/sagelab-alice-*"}
    )
    statements.append({"Sid": "PlantedWideDeny", "Effect": "Deny", "Action": "sagemaker:StopTrainingJob", "Resource": "*"})
    found = [leak for leak, _ in cross_student_leaks(Stacks(templates, ENV), ("alice", "alice-b")) if "/Planted" in leak.source]
    assert found and {leak.source.rsplit("/", 1)[1] for leak in found} == {"PlantedDeny"} and {leak.other for leak in found} == {"alice-b"}


def test_student_ml_cannot_reach_environment_ml_prods_jobs_or_logs(tenant_stacks: Stacks) -> None:
    """The review's one-way finding: student `ml` beside environment `ml-prod` was accepted, and
    ml's roles could describe and read the logs of `ml-prod`'s jobs and stop its training jobs.
    ml-prod's job names come from ml-prod's own pipeline definition."""
    roles = [role for role in _roles_of(tenant_stacks, "ml") if role.logical_id.startswith("Roles")]
    assert len(roles) == 3
    jobs = [(resource_type, f"{name}-a1b2c3d4e5") for resource_type, name in defined_job_names(tenant_stacks, "ml-prod")]
    sagemaker = f"arn:aws:sagemaker:{ENV.region}:{ENV.account}"
    logs = f"arn:aws:logs:{ENV.region}:{ENV.account}:log-group"
    for role in roles:
        policy = tenant_stacks.identity_policies(role)
        for resource_type, name in jobs:
            if resource_type == "training-job":
                for action in ("sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:AddTags"):
                    assert not is_allowed(policy, action, f"{sagemaker}:training-job/{name}"), (role.logical_id, action, name)
                stream = f"{logs}:/aws/sagemaker/TrainingJobs:log-stream:{name}/algo-1-1700000000"
                assert not is_allowed(policy, "logs:GetLogEvents", stream), (role.logical_id, name)
            if resource_type == "processing-job":
                assert not is_allowed(policy, "sagemaker:DescribeProcessingJob", f"{sagemaker}:processing-job/{name}"), (role.logical_id, name)
                stream = f"{logs}:/aws/sagemaker/ProcessingJobs:log-stream:{name}/algo-1-1700000000"
                assert not is_allowed(policy, "logs:GetLogEvents", stream), (role.logical_id, name)
    # ...while ml's own jobs are within reach of its notebook (the positive half).
    (notebook,) = [role for role in roles if role.logical_id.startswith("RolesNotebookRole")]
    own = [name for resource_type, name in defined_job_names(tenant_stacks, "ml") if resource_type == "training-job"]
    assert own and all(is_allowed(tenant_stacks.identity_policies(notebook), "sagemaker:DescribeTrainingJob", f"{sagemaker}:training-job/{n}-x") for n in own)


def test_the_leak_finder_finds_a_planted_leak(class_stacks: Stacks) -> None:
    """Negative case: widen one scoped statement of alice's pipeline role to `training-job/*` and
    the finder reports bob's and carol's jobs; scope it to alice's principal tag and it does not."""
    templates = json.loads(json.dumps(class_stacks.templates))
    platform = templates["sagelab-alice--platform"]["Resources"]
    (policy_id,) = [k for k, v in platform.items() if k.startswith("RolesPipelinePolicy") and v["Type"] == "AWS::IAM::ManagedPolicy"]
    statements = platform[policy_id]["Properties"]["PolicyDocument"]["Statement"]
    wide = {"Sid": "Planted", "Effect": "Allow", "Action": "sagemaker:StopTrainingJob", "Resource": "arn:aws:sagemaker:*:*:training-job/*"}
    statements.append(wide)
    leaks = [leak for leak, _ in cross_student_leaks(Stacks(templates, ENV)) if leak.source.endswith("/Planted")]
    assert {leak.other for leak in leaks} == {"bob", "carol"}
    wide["Condition"] = {"StringEquals": {"aws:ResourceTag/student": "${aws:PrincipalTag/student}"}}
    assert not [leak for leak, _ in cross_student_leaks(Stacks(templates, ENV)) if leak.source.endswith("/Planted")]


def test_the_autopilot_leaderboard_reason_says_what_the_answer_carries() -> None:
    """The known-open reason names every field botocore's model gives a candidate (and a container),
    and the action is unscopable per IAM's own definition (parliament's copy of the Service
    Authorization Reference): no resource type, no condition key."""
    import botocore.session
    from parliament import iam_definition

    reason = KNOWN_OPEN[("RolesPipelineRole", "ReadAutopilotLeaderboard")]
    model = botocore.session.get_session().get_service_model("sagemaker")
    fields = [*model.shape_for("AutoMLCandidate").members, *model.shape_for("AutoMLContainerDefinition").members]
    assert [f for f in fields if f not in reason] == []
    (sagemaker,) = [service for service in iam_definition if service["prefix"] == "sagemaker"]
    (privilege,) = [p for p in sagemaker["privileges"] if p["privilege"] == "ListCandidatesForAutoMLJob"]
    assert [(t["resource_type"], t["condition_keys"]) for t in privilege["resource_types"]] == [("", [])]


def test_policy_model_semantics() -> None:
    """The model's IAM semantics, each with the case that must not match."""
    allow = Statement.from_json({"Effect": "Allow", "Action": "sagemaker:Describe*", "Resource": "arn:aws:sagemaker:r:1:training-job/sagelab-a-*"}, "t")
    assert is_allowed([allow], "SageMaker:DescribeTrainingJob", "arn:aws:sagemaker:r:1:training-job/sagelab-a-x/y")  # * spans /
    assert not is_allowed([allow], "sagemaker:DescribeTrainingJob", "arn:aws:sagemaker:r:1:training-job/sagelab-b-x")
    assert not is_allowed([allow], "sagemaker:DescribeTrainingJob", "arn:aws:sagemaker:r:1:training-job/Sagelab-a-x")  # case-sensitive
    deny = Statement.from_json({"Effect": "Deny", "NotAction": "s3:Get*", "Resource": "*"}, "t")
    assert not is_allowed([allow, deny], "sagemaker:DescribeTrainingJob", "arn:aws:sagemaker:r:1:training-job/sagelab-a-x")
    tagged = Statement.from_json(
        {
            "Effect": "Allow",
            "Action": "sagemaker:StopTrainingJob",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:ResourceTag/student": "${aws:PrincipalTag/student}"}},
        },
        "t",
    )
    assert is_allowed([tagged], "sagemaker:StopTrainingJob", "x", {"aws:PrincipalTag/student": "a", "aws:ResourceTag/student": "a"})
    assert not is_allowed([tagged], "sagemaker:StopTrainingJob", "x", {"aws:PrincipalTag/student": "a", "aws:ResourceTag/student": "b"})
    assert not is_allowed([tagged], "sagemaker:StopTrainingJob", "x", {"aws:ResourceTag/student": "b"})  # variable unresolved
    instance_guard = {"ForAnyValue:StringNotLike": {"sagemaker:InstanceTypes": ["ml.m5.*"]}}
    guard = Statement.from_json({"Effect": "Deny", "Action": "sagemaker:CreateTrainingJob", "Resource": "*", "Condition": instance_guard}, "t")
    create = Statement.from_json({"Effect": "Allow", "Action": "sagemaker:CreateTrainingJob", "Resource": "*"}, "t")
    assert is_allowed([create, guard], "sagemaker:CreateTrainingJob", "j", {"sagemaker:InstanceTypes": ["ml.m5.large"]})
    assert not is_allowed([create, guard], "sagemaker:CreateTrainingJob", "j", {"sagemaker:InstanceTypes": ["ml.p3.2xlarge", "ml.m5.large"]})


def test_a_stand_in_matches_only_its_own_resource(class_stacks: Stacks) -> None:
    alice_bucket = next(a for a in example_resources(class_stacks, "alice") if a.startswith("arn:aws:s3:::") and "Artifacts" in a)
    bob = example_resources(class_stacks, "bob")
    assert not any(resource_matches(alice_bucket, arn) for arn in bob)
    assert any(resource_matches(f"{alice_bucket}/*", arn) for arn in example_resources(class_stacks, "alice"))


def test_resolving_an_unknown_import_fails_loudly() -> None:
    stacks = Stacks({"s": {"Resources": {"R": {"Type": "AWS::SNS::Topic", "Properties": {}}}}}, ENV)
    with pytest.raises(ValueError, match="no given stack exports"):
        stacks.resolve("s", {"Fn::ImportValue": "nope"})
    assert stacks.resolve("s", {"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${R.TopicName}"}) == "arn:aws:x:us-east-1:123456789012:s-R"


# Roles whose trust policies other engineers own (front door, approval deployer; the dev app
# also has the endpoint scaling role); the lead removes an entry when its branch adds the check.
TRUST_KNOWN_OPEN = {
    "FrontDoorFunctionRole": "Lambda execution role: AWS does not document aws:SourceAccount on Lambda's AssumeRole, and a condition it never sends would stop the function.",
    "DeployerFunctionRole": "Lambda execution role: AWS does not document aws:SourceAccount on Lambda's AssumeRole, and a condition it never sends would stop the function.",
    "PortalFunctionRole": "Lambda execution role (the class's student portal): AWS does not document aws:SourceAccount on Lambda's AssumeRole.",
    "DeployerCloudFormationRole": "CloudFormation service role: assumable only through iam:PassRole, which only the deployer's function holds (UpdateStack with this RoleArn).",
}


def _trust_condition_keys(statement: Statement) -> set[str]:
    return {key.lower() for keys in statement.condition.values() for key in keys}


@pytest.mark.slow  # every service trust policy of the class
def test_service_trust_policies_check_the_source_account(class_stacks: Stacks) -> None:
    """Every role a service assumes names the account it acts for (aws:SourceAccount), and the
    SageMaker roles whose features send it also the source ARN (confused-deputy guard)."""
    open_roles = set()
    for role in class_stacks.roles():
        for raw in role.trust_policy["Statement"]:
            # A trust policy's resource is the role itself (no Resource element).
            statement = dataclasses.replace(Statement.from_json(raw, role.logical_id), resources=(role.arn,))
            services = (statement.principal or {}).get("Service")
            if not services:
                continue
            if any(role.logical_id.startswith(prefix) for prefix in TRUST_KNOWN_OPEN):
                open_roles.add(next(p for p in TRUST_KNOWN_OPEN if role.logical_id.startswith(p)))
                continue
            keys = _trust_condition_keys(statement)
            assert "aws:sourceaccount" in keys, f"{role.stack}/{role.logical_id}: trust of {services} without aws:SourceAccount"
            assert is_allowed(
                [statement],
                "sts:AssumeRole",
                role.arn,
                {"aws:SourceAccount": ENV.account, "aws:SourceArn": f"arn:aws:sagemaker:{ENV.region}:{ENV.account}:training-job/x"},
            )
            assert not is_allowed([statement], "sts:AssumeRole", role.arn, {"aws:SourceAccount": "999999999999"}), role.logical_id
            if role.logical_id.startswith(("RolesPipelineRole", "RolesEndpointRole")):
                assert "aws:sourcearn" in keys, f"{role.logical_id}: SageMaker sends aws:SourceArn for pipelines, jobs and inference"
                other_account = {"aws:SourceAccount": ENV.account, "aws:SourceArn": "arn:aws:sagemaker:us-east-1:999999999999:training-job/x"}
                assert not is_allowed([statement], "sts:AssumeRole", role.arn, other_account)
    assert open_roles == set(TRUST_KNOWN_OPEN), f"stale TRUST_KNOWN_OPEN entries: {set(TRUST_KNOWN_OPEN) - open_roles}"


def test_notebook_cannot_read_captured_requests_and_jobs_cannot_rewrite_code(class_stacks: Stacks) -> None:
    """Finding 8 (captured requests are API clients' data) and finding 6 (the jobs' role must not
    rewrite the published step scripts, the lab or the idle-stop script the notebook copies)."""
    roles = {re.sub(r"^Roles(\w+?)Role.*$", r"\1", role.logical_id): role for role in _roles_of(class_stacks, "alice") if role.logical_id.startswith("Roles")}
    (artifacts,) = [
        a for a in example_resources(class_stacks, "alice") if a.startswith("arn:aws:s3:::") and "StorageArtifacts" in a and "/" not in a.split(":::")[1]
    ]
    notebook = class_stacks.identity_policies(roles["Notebook"])
    pipeline = class_stacks.identity_policies(roles["Pipeline"])
    assert not is_allowed(notebook, "s3:GetObject", f"{artifacts}/data-capture/AllTraffic/2026/01/01/00/capture.jsonl")
    assert is_allowed(notebook, "s3:GetObject", f"{artifacts}/models/evaluations/abc/evaluation/evaluation.json")
    for key in ("pipeline-code/0123/preprocess.py", "pipeline-code/0123/lab/idle-stop.sh", "data-capture/x", "anything-else"):
        assert not is_allowed(pipeline, "s3:PutObject", f"{artifacts}/{key}"), key
    for key in ("pipeline-runs/abc/preprocess/train/train.csv", "models/sagelab-alice--train-a1b2/output/model.tar.gz"):
        assert is_allowed(pipeline, "s3:PutObject", f"{artifacts}/{key}"), key


@pytest.mark.parametrize("tuning_jobs", [0, 4])
def test_every_pipeline_job_is_named_with_the_environment_prefix(tuning_jobs: int) -> None:
    """The roles' job scope `<prefix>-*` holds only if every job step keeps its name field (custom
    job prefixes) and that field starts with the environment's prefix."""
    from sagelab.pipeline_definition import PipelineSettings, TuningSettings, build_definition, iter_steps

    definition = build_definition(PipelineSettings(tuning=TuningSettings(max_jobs=tuning_jobs)))
    names = {}
    name_field = {
        "Processing": "ProcessingJobName",
        "Training": "TrainingJobName",
        "Tuning": "HyperParameterTuningJobName",
        "AutoML": "AutoMLJobName",
        "Transform": "TransformJobName",
        "Model": "ModelName",
    }
    for step in iter_steps(definition):
        if step["Type"] in name_field:
            names[step["Name"]] = step["Arguments"][name_field[step["Type"]]]
    # Preprocess; XGBoost Train|Tune + Evaluate; K-Means Train + Evaluate; Autopilot AutoML,
    # Model, Transform, Evaluate: every one named from the environment's prefix.
    # `${JobNamePrefix}` is the environment's scope `sagelab-<id>--` (sagelab.naming).
    assert len(names) == 9 and all(name.startswith("${JobNamePrefix}") and name != "${JobNamePrefix}" for name in names.values()), names


def test_every_role_of_a_student_carries_the_student_tag(class_stacks: Stacks) -> None:
    """Attribute-based scopes (`aws:ResourceTag/student` = `${aws:PrincipalTag/student}`) hold only
    if every role of a student is tagged with that student's id."""
    for student in STUDENTS:
        untagged = [role.logical_id for role in _roles_of(class_stacks, student) if role.tags.get("student") != student]
        assert not untagged, f"{student}: roles without student={student}: {untagged}"
