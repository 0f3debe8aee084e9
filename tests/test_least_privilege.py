"""Least privilege across students, proven on the synthesized templates with IAM's semantics.

A shared-account class (tests/conftest.py `shared_class`) is resolved to concrete ARNs
(tests/iam_policy.py) and every Allow statement of each student's stacks is matched against
concrete example ARNs of every other student's resources, including the ones SageMaker and
CloudFormation name themselves (jobs, log streams, models, endpoint configs, alarms). A statement
that can match counts as a leak unless a condition scopes it to its own student (evaluated with the
student's principal tag against the other student's resource tag).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import SynthResult
from tests.iam_policy import Env, RoleRef, Stacks, Statement, can_apply_given, is_allowed, resource_matches

ENV = Env(partition="aws", region="us-east-1", account="123456789012")
STUDENTS = ("alice", "bob", "carol")

# Actions that support no resource-level permission: they cannot touch another student's resource
# whatever their Resource says (Service Authorization Reference, resource type column empty).
RESOURCELESS_ACTIONS = {
    "ecr:getauthorizationtoken": "Registry login; image pulls are scoped to the framework repositories.",
    "cloudwatch:putmetricdata": "Metrics are published to a namespace, not a resource; limited by the cloudwatch:namespace condition.",
    "xray:puttracesegments": "X-Ray supports no resource-level permission.",
    "xray:puttelemetryrecords": "X-Ray supports no resource-level permission.",
}

# CloudWatch Logs actions authorized on a log group (Service Authorization Reference): they apply to
# log-group ARNs, the others to log-stream ARNs. Of the group actions, those that read the events
# of every stream in the group make a shared group (SageMaker's /aws/sagemaker/<kind>) count as
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
    return (f"sagelab-{student}-platform", f"sagelab-{student}-serving")


def example_resources(stacks: Stacks, student: str) -> list[str]:
    """Concrete ARNs of a student's resources: every resource in the student's templates, and the
    ones SageMaker/CloudFormation name at run time, from the student's names and prefixes."""
    arns: list[str] = []
    for stack in _students_stacks(student):
        for logical_id in stacks.templates[stack]["Resources"]:
            for attribute in (None, "Arn"):
                value = stacks.stand_in(stack, logical_id, attribute)
                if value.startswith("arn:"):
                    arns.append(value)
                    if value.startswith("arn:aws:s3:::"):
                        arns += [f"{value}/pipeline-code/v1/train.py", f"{value}/data-capture/AllTraffic/2026/01/01/capture.jsonl", f"{value}/any/key"]
    prefix = f"sagelab-{student}"
    sagemaker = f"arn:aws:sagemaker:{ENV.region}:{ENV.account}"
    logs = f"arn:aws:logs:{ENV.region}:{ENV.account}:log-group"
    # SageMaker lowercases the names in the ARNs it builds.
    jobs = {
        "processing-job": [f"{prefix}-preprocess-a1b2c3d4e5", f"{prefix}-evaluate-a1b2c3d4e5", f"pipelines-{student}x1-preprocess-a1b2"],
        "training-job": [f"{prefix}-train-a1b2c3d4e5", f"{prefix}-t-a1b2c3d4-001-deadbeef"],
        "hyper-parameter-tuning-job": [f"{prefix}-t-a1b2c3d4"],
        "transform-job": [f"{prefix}-batch-20260101-120000"],
        "model": [f"{prefix}-model-1", "endpointmodel0f230181-ab12cd34ef56"],
        "endpoint-config": [f"{prefix}-endpoint-config-1", "endpointconfig24ad0a28-ab12cd34ef56"],
    }
    arns += [f"{sagemaker}:{kind}/{name}" for kind, names in jobs.items() for name in names]
    arns += [
        f"{sagemaker}:model-package/{prefix}-models/1",
        f"{sagemaker}:pipeline/{prefix}-pipeline/execution/a1b2c3d4e5f6",
        f"{logs}:/aws/sagemaker/ProcessingJobs:log-stream:{prefix}-preprocess-a1b2c3d4e5/algo-1-1700000000",
        f"{logs}:/aws/sagemaker/TrainingJobs:log-stream:{prefix}-train-a1b2c3d4e5/algo-1-1700000000",
        f"{logs}:/aws/sagemaker/TransformJobs:log-stream:{prefix}-batch-20260101-120000/i-0123456789abcdef0",
        f"{logs}:/aws/sagemaker/Endpoints/{prefix}-endpoint",
        f"{logs}:/aws/sagemaker/Endpoints/{prefix}-endpoint:log-stream:AllTraffic/i-0123456789abcdef0",
        f"{logs}:/aws/sagemaker/NotebookInstances:log-stream:{prefix}-notebook/jupyter.log",
        f"{logs}:/aws/lambda/{prefix}-serving-DeployerFunction-AbCdEf123456:log-stream:2026/01/01/[$LATEST]abc",
        f"arn:aws:cloudwatch:{ENV.region}:{ENV.account}:alarm:{prefix}-serving-MonitoringApiServerErrors-AbCdEf123456",
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


def cross_student_leaks(stacks: Stacks, students: tuple[str, ...] = STUDENTS) -> Iterator[tuple[Leak, str | None]]:
    """Each (Allow statement of A, resource of B) that can match, with the known-open reason if any."""
    examples = {student: example_resources(stacks, student) for student in students}
    for student in students:
        for role in _roles_of(stacks, student):
            for statement in [*stacks.identity_policies(role), *_aws_managed_statements(role)]:
                if statement.effect != "Allow":
                    continue
                for action in _representative_actions(statement):
                    if action.lower() in RESOURCELESS_ACTIONS:
                        continue
                    for other in students:
                        if other == student:
                            continue
                        for arn in examples[other] + _shared_groups(action):
                            if not _applies(action, arn):
                                continue
                            if can_apply_given(statement, action, arn, _known_context(student, other)):
                                yield Leak(student, other, role.logical_id, statement.source, action, arn), _known_open(role, statement)


@pytest.fixture(scope="module")
def class_stacks(shared_class: SynthResult) -> Stacks:
    return _stacks(shared_class)


@pytest.mark.slow
def test_no_role_of_a_student_reaches_another_students_resources(class_stacks: Stacks) -> None:
    found = list(cross_student_leaks(class_stacks))
    leaks = sorted({str(leak) for leak, reason in found if reason is None})
    assert not leaks, f"{len(leaks)} cross-student grant(s), e.g.:\n" + "\n".join(leaks[:25])
    open_keys = {key for key in KNOWN_OPEN if any(reason == KNOWN_OPEN[key] for _, reason in found)}
    assert open_keys == set(KNOWN_OPEN), f"known-open entries that no longer match anything (remove them): {set(KNOWN_OPEN) - open_keys}"


@pytest.mark.slow
def test_resource_policies_grant_no_other_student(class_stacks: Stacks) -> None:
    """Bucket/key/topic/queue policies of B name none of A's roles, nor anyone unscoped; the
    account root (delegation to identity policies, proven above) is the only account-wide principal."""
    roles = {student: {role.arn for role in _roles_of(class_stacks, student)} for student in STUDENTS}
    for policy in class_stacks.resource_policies():
        # Class-wide stacks (sagelab-class-<region>: the shared web ACL's log key) belong to no student.
        owner = next((s for s in STUDENTS if policy.stack in _students_stacks(s)), None)
        for statement in policy.statements:
            if statement.effect != "Allow":
                continue
            principals = statement.principal if isinstance(statement.principal, dict) else {"AWS": statement.principal}
            for value in _as_strings(principals.get("AWS")):
                assert value != "*" or statement.condition, f"{policy.stack}/{policy.logical_id}: unconditional Principal *"
                for other in STUDENTS:
                    if other != owner:
                        assert not any(resource_matches(value, arn) for arn in roles[other]), f"{policy.logical_id} of {owner} grants {other}'s role"
            # A resource policy's statements act on its own resource only.
            for pattern in statement.resources:
                for other in STUDENTS:
                    if other == owner:
                        continue
                    hits = [arn for arn in example_resources(class_stacks, other) if pattern != "*" and resource_matches(pattern, arn)]
                    assert not hits, f"{policy.logical_id} of {owner}: {pattern} matches {other}'s {hits[:3]}"


def _as_strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def test_the_leak_finder_finds_a_planted_leak(class_stacks: Stacks) -> None:
    """Negative case: widen one scoped statement of alice's pipeline role to `training-job/*` and
    the finder reports bob's and carol's jobs; scope it to alice's principal tag and it does not."""
    templates = json.loads(json.dumps(class_stacks.templates))
    platform = templates["sagelab-alice-platform"]["Resources"]
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
    "DeployerCloudFormationRole": "CloudFormation service role: assumable only through iam:PassRole, which only the deployer's function holds (UpdateStack with this RoleArn).",
}


def _trust_condition_keys(statement: Statement) -> set[str]:
    return {key.lower() for keys in statement.condition.values() for key in keys}


@pytest.mark.slow
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
    for key in ("pipeline-runs/abc/preprocess/train/train.csv", "models/sagelab-alice-train-a1b2/output/model.tar.gz"):
        assert is_allowed(pipeline, "s3:PutObject", f"{artifacts}/{key}"), key


def test_a_roster_whose_prefixes_overlap_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`alice-2`'s jobs (`sagelab-alice-2-...`) match alice's scope `sagelab-alice-*`: in one
    account that pair is refused with a one-line reason, before anything is synthesized."""
    from aws_cdk import App

    from sagelab.config import ConfigError
    from sagelab.settings import cdk_context
    from stacks.app_builder import build_app

    root = tmp_path_factory.mktemp("overlap")
    roster = root / "roster.csv"
    roster.write_text("student_id,email\nalice,alice@example.edu\nalice-2,a2@example.edu\n")
    with pytest.raises(ConfigError) as raised:
        build_app(App(context={**cdk_context(), "roster": str(roster)}, outdir=str(root / "out")))
    assert str(raised.value) == (
        f"{roster} line 3: student ids 'alice' and 'alice-2' share an account, and every name of 'alice-2' starts with 'alice''s prefix "
        "'sagelab-alice-': rename one or give it its own account"
    )


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
    assert len(names) == 9 and all(name.startswith("${JobNamePrefix}-") for name in names.values()), names


def test_every_role_of_a_student_carries_the_student_tag(class_stacks: Stacks) -> None:
    """Attribute-based scopes (`aws:ResourceTag/student` = `${aws:PrincipalTag/student}`) hold only
    if every role of a student is tagged with that student's id."""
    for student in STUDENTS:
        untagged = [role.logical_id for role in _roles_of(class_stacks, student) if role.tags.get("student") != student]
        assert not untagged, f"{student}: roles without student={student}: {untagged}"
