"""Captured requests reach no one a student, a person or an API caller can make act: a transitive
proof over the synthesized templates with IAM's semantics (tests/iam_policy.py `Reachability`).

From every principal that acts from outside (a student's notebook role, roles that people assume,
the function role API callers drive), the closure of the roles it can make act for it is walked:
roles it may pass, pipelines it may start (their RoleArn and every RoleArn in the definition: the
jobs), functions it may invoke, rules its actions trigger (approving a model package -> the
deployer's function -> the CloudFormation role it passes -> the endpoint role that role passes),
stacks it may update with a role not ours (-> ADMIN). No role in any closure may read an object
under `DATA_CAPTURE_PREFIX` of any bucket in the templates: identity policies, bucket policies and
the bucket key's policy together. Nothing names a role or a student: roles added later (capture at
the front door, a monitoring job) are covered as soon as a student can reach them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sagelab.bucket_layout import DATA_CAPTURE_PREFIX
from tests.conftest import CLASS_OWN, CLASS_SHARED_IDS, SynthResult
from tests.iam_policy import ADMIN, Env, Reachability, RoleRef, Stacks
from tests.test_least_privilege import AWS_MANAGED_STATEMENTS

ENV = Env(partition="aws", region="us-east-1", account="123456789012")
CAPTURED_KEY = f"{DATA_CAPTURE_PREFIX}AllTraffic/2026/01/01/00/capture-0001.jsonl"


def reachability(templates: dict[str, Any]) -> Reachability:
    return Reachability(Stacks(templates, ENV), AWS_MANAGED_STATEMENTS)


def capture_buckets(reach: Reachability) -> list[str]:
    """Where captured requests are written: every artifacts bucket (each platform stack's
    `ArtifactsBucketName` output) and every endpoint config's capture destination."""
    stacks = reach.stacks
    names = {
        stacks.resolve(stack, output["Value"])
        for stack, template in stacks.templates.items()
        for key, output in (template.get("Outputs") or {}).items()
        if key == "ArtifactsBucketName"
    }
    for stack, _, properties in stacks._resources("AWS::SageMaker::EndpointConfig"):
        capture = properties.get("DataCaptureConfig")
        if capture:
            names.add(stacks.resolve(stack, capture["DestinationS3Uri"]).removeprefix("s3://").split("/", 1)[0])
    assert names, "no artifacts bucket found: the proof would hold vacuously"
    return sorted(f"arn:{stacks.env.partition}:s3:::{name}" for name in names)


def captured_request_readers(reach: Reachability) -> list[str]:
    """Each (entry, role in its closure, capture bucket) where that role could read captured requests."""
    buckets = capture_buckets(reach)
    # Closures overlap (a class's shared roles are in every student's): each role is evaluated once.
    readable: dict[tuple[str, str], list[str]] = {}
    found = []
    for entry in reach.entries():
        for role, path in reach.closure(entry.role):
            if isinstance(role, str):  # ADMIN: may read anything
                found.append(f"{entry.who}: {' '.join(path)}")
                continue
            key = (role.stack, role.logical_id)
            if key not in readable:
                readable[key] = [bucket for bucket in buckets if reach.can_read_object(role, bucket, CAPTURED_KEY)]
            found += [f"{entry.who}: {' '.join(path)} reads {bucket}/{CAPTURED_KEY}" for bucket in readable[key]]
    return found


def _role(reach: Reachability, stack_suffix: str, prefix: str) -> RoleRef:
    (role,) = [r for r in reach.roles if r.stack.endswith(stack_suffix) and r.logical_id.startswith(prefix) and r.stack.startswith("sagelab-dev")]
    return role


@pytest.fixture(scope="module")
def dev(synthesized: SynthResult) -> Reachability:
    return reachability(synthesized.templates)


def test_nobody_a_student_or_caller_can_make_act_reads_captured_requests(dev: Reachability) -> None:
    readers = captured_request_readers(dev)
    assert not readers, "\n".join(readers[:20])


def test_the_closure_walks_every_path_the_templates_hold(dev: Reachability) -> None:
    """Not vacuous: the notebook reaches its pipeline's role (start), the deployer's function (an
    approval's event), its CloudFormation role (pass), the endpoint and front-door roles (passed by
    CloudFormation); those roles can read what they need (the reader is not blind)."""
    entries = {(e.role.logical_id.rstrip("0123456789ABCDEF"), e.who) for e in dev.entries()}
    assert ("RolesNotebookRole", "student (notebook)") in entries and ("FrontDoorFunctionRole", "API callers") in entries
    notebook = _role(dev, "-platform", "RolesNotebookRole")
    reached = {role.logical_id.rstrip("0123456789ABCDEF"): path for role, path in dev.closure(notebook) if not isinstance(role, str)}
    assert {"RolesPipelineRole", "DeployerFunctionRole", "DeployerCloudFormationRole", "RolesEndpointRole", "FrontDoorFunctionRole"} <= set(reached)
    assert "emits an event" in " ".join(reached["DeployerCloudFormationRole"])
    assert ADMIN not in [role for role, _ in dev.closure(notebook)]
    (artifacts,) = capture_buckets(dev)
    pipeline = _role(dev, "-platform", "RolesPipelineRole")
    assert dev.can_read_object(pipeline, artifacts, "models/sagelab-dev--train-a1b2/output/model.tar.gz")
    assert dev.can_read_object(pipeline, artifacts, "pipeline-runs/abc/preprocess/train/features.npy")
    assert not dev.can_read_object(pipeline, artifacts, "notebooks/anything"), "the jobs read their own prefixes only"


@pytest.mark.slow  # the class of 40 (a 20 s synth): the class-wide property at a real class's scale (transitive reach per student)
def test_a_class_of_40_reaches_no_captured_requests(class_of_40: SynthResult) -> None:
    reach = reachability(class_of_40.templates)
    students = [e for e in reach.entries() if e.who == "student (notebook)"]
    assert sorted(e.role.tags["student"] for e in students) == sorted([*CLASS_SHARED_IDS, *CLASS_OWN])
    readers = captured_request_readers(reach)
    assert not readers, f"{len(readers)} path(s), e.g.:\n" + "\n".join(readers[:20])
    # And transitively isolated: everything a student can make act is that student's own, but for
    # the class's spending-cap enforcer, which every student's jobs wake through SageMaker's state
    # events (it reads no data: `readers` above; what it may touch, only the class's students and
    # only to stop, remove or deny, is tests/test_spend_cap_template.py's proof).
    # Beyond the enforcer its own decisions act (on the student the event names), not the student:
    # the roles it passes are other students' by design, so a path through it is not counted here.
    enforcer = [role for role in reach.roles if role.stack.startswith("sagelab-class--") and role.logical_id.startswith("SpendCap")]
    enforcer_ids = [f"{role.stack}/{role.logical_id}" for role in enforcer]

    def through_enforcer(path: Sequence[str]) -> bool:
        # A path is (start, "--how--> role", ...): a step before the last that lands on the enforcer.
        return any(step == i or step.endswith(f"--> {i}") for step in path[:-1] for i in enforcer_ids)

    for entry in students:
        student = entry.role.tags["student"]
        closure = reach.closure(entry.role)
        foreign = [
            " ".join(path)
            for role, path in closure
            if (isinstance(role, str) or (role.tags.get("student") != student and role not in enforcer)) and not through_enforcer(path)
        ]
        assert not foreign, foreign[:5]
    assert enforcer and all(any(role in enforcer for role, _ in reach.closure(e.role)) for e in students), "every student's jobs wake the enforcer"


def test_an_approver_role_reaches_no_captured_requests(neighbours: SynthResult) -> None:
    """`approval_mode: manual` (alice-b among the neighbours): the approver role is assumed by
    people, and its approval triggers the deployer as a student's would."""
    reach = reachability(neighbours.templates)
    approvers = [e for e in reach.entries() if e.who == "people (assume role)"]
    assert approvers and any("emits an event" in " ".join(path) for e in approvers for _, path in reach.closure(e.role))
    readers = captured_request_readers(reach)
    assert not readers, "\n".join(readers[:20])


# -- planted negatives: the proof fails when the reach comes back -----------------------------------
def _policy(templates: dict[str, Any], prefix: str) -> dict[str, Any]:
    (policy,) = [v for k, v in templates["sagelab-dev--platform"]["Resources"].items() if k.startswith(prefix) and v["Type"] == "AWS::IAM::ManagedPolicy"]
    return policy["Properties"]["PolicyDocument"]


def _regrant_captured_requests(document: dict[str, Any]) -> None:
    """Drop the explicit Deny and allow reading the whole artifacts bucket again (today's grant)."""
    statements = document["Statement"]
    (deny,) = [s for s in statements if s.get("Sid") == "NoCapturedRequests"]
    statements.remove(deny)
    artifacts = deny["Resource"]["Fn::Join"][1][0]
    statements.append({"Sid": "Planted", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": {"Fn::Join": ["", [artifacts, "/*"]]}})


def test_a_pipeline_role_that_reads_captured_requests_fails_the_proof_through_the_notebook(synthesized: SynthResult) -> None:
    """The notebook's own policy stays clean; only the walk to the pipeline it may start finds it."""
    templates = copy.deepcopy(synthesized.templates)
    _regrant_captured_requests(_policy(templates, "RolesPipelinePolicy"))
    reach = reachability(templates)
    readers = captured_request_readers(reach)
    via_notebook = [
        r
        for r in readers
        if r.startswith("student (notebook)") and r.split(" reads ")[0].split("--> ")[-1].startswith("sagelab-dev--platform/RolesPipelineRole")
    ]
    assert via_notebook, readers
    notebook = _role(reach, "-platform", "RolesNotebookRole")
    assert not any(reach.can_read_object(notebook, bucket, CAPTURED_KEY) for bucket in capture_buckets(reach)), "the notebook alone is clean"


def test_a_job_role_inside_the_definition_is_walked(synthesized: SynthResult) -> None:
    """A step whose RoleArn names another role: that role is reached through the definition only
    (the pipeline's own RoleArn and every other role stay clean)."""
    templates = copy.deepcopy(synthesized.templates)
    platform = templates["sagelab-dev--platform"]["Resources"]
    pipeline = next(v for v in platform.values() if v["Type"] == "AWS::SageMaker::Pipeline")
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    role_arn = '"RoleArn":"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${PipelineRoleName}"'
    assert role_arn in body
    pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"] = [
        body.replace(role_arn, '"RoleArn":"${PlantedJobRoleArn}"', 1),
        {**variables, "PlantedJobRoleArn": {"Fn::GetAtt": ["PlantedJobRole", "Arn"]}},
    ]
    artifacts = next(k for k, v in platform.items() if v["Type"] == "AWS::S3::Bucket" and k.startswith("StorageArtifacts"))
    platform["PlantedJobRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [
                {
                    "PolicyName": "planted",
                    "PolicyDocument": {
                        "Statement": [
                            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": [artifacts, "Arn"]}, "/*"]]}},
                            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"},
                        ]
                    },
                }
            ],
        },
    }
    readers = captured_request_readers(reachability(templates))
    assert readers and all("runs pipeline" in r and r.split(" reads ")[0].endswith("sagelab-dev--platform/PlantedJobRole") for r in readers), readers


def test_an_endpoint_role_that_reads_captured_requests_fails_the_proof_through_an_approval(synthesized: SynthResult) -> None:
    """The approval chain: notebook -> UpdateModelPackage -> rule -> deployer -> CloudFormation role -> endpoint role."""
    templates = copy.deepcopy(synthesized.templates)
    _regrant_captured_requests(_policy(templates, "RolesEndpointPolicy"))
    readers = [r for r in captured_request_readers(reachability(templates)) if r.startswith("student (notebook)")]
    assert readers and all("emits an event" in r and "DeployerCloudFormationRole" in r for r in readers), readers


def test_a_stack_update_with_a_foreign_role_reaches_admin(synthesized: SynthResult) -> None:
    """Updating a stack without naming our deployment role uses the role `cdk deploy` left: the
    deployer's UpdateStack without its RoleArn condition is a path to everything."""
    templates = copy.deepcopy(synthesized.templates)
    serving = templates["sagelab-dev--serving"]["Resources"]
    (policy,) = [v for k, v in serving.items() if k.startswith("DeployerFunctionPolicy")]
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        if "cloudformation:UpdateStack" in json.dumps(statement.get("Action")):
            statement.pop("Condition", None)
    readers = captured_request_readers(reachability(templates))
    assert any(r.endswith(ADMIN) for r in readers), readers


# -- the local twin refuses the same ------------------------------------------------------------------
def test_the_local_runner_refuses_captured_requests_as_input(tmp_path: Path) -> None:
    """The finding, run locally: InputDataUri at the captured requests, TargetColumn a field of a
    captured record. The twin's jobs read as the pipeline's role does: Preprocess fails with
    AccessDenied, and no captured value reaches a log line or a run output."""
    from sagelab.config import EnvironmentConfig
    from sagelab.local.environment import prepare
    from sagelab.local.runner import LocalPipelineRunner, LocalS3

    local_env = prepare(EnvironmentConfig(), tmp_path / ".sagelab")
    artifacts = local_env.values["ArtifactsBucket"]
    secret = "caller-secret@example.org"
    captured = LocalS3(local_env.workdir / "s3").path(f"s3://{artifacts}/{DATA_CAPTURE_PREFIX}AllTraffic/2026/01/01/00/capture.csv")
    captured.parent.mkdir(parents=True)
    captured.write_text("email,amount\n" + "".join(f"{secret.replace('@', f'{n}@')},{n}\n" for n in range(40)))
    lines: list[str] = []
    runner = LocalPipelineRunner(local_env.definition, local_env.workdir, pipeline_name=local_env.pipeline_name, log=lines.append)
    result = runner.run({"InputDataUri": f"s3://{artifacts}/{DATA_CAPTURE_PREFIX}", "TargetColumn": "email"})
    assert result.status == "Failed"
    (preprocess,) = [step for step in result.steps if step.name == "Preprocess"]
    assert preprocess.status == "Failed" and "AccessDenied" in (preprocess.failure_reason or "") and DATA_CAPTURE_PREFIX in (preprocess.failure_reason or "")
    outputs = [p for p in (local_env.workdir / "s3" / artifacts).rglob("*") if p.is_file() and DATA_CAPTURE_PREFIX not in p.as_posix()]
    assert not [str(p) for p in outputs if "example.org" in p.read_text(errors="replace")]
    assert not [line for line in lines if "example.org" in line], lines


def test_reading_needs_the_bucket_keys_decrypt_from_identity_or_key_policy(synthesized: SynthResult) -> None:
    """The key side of a read: an S3 grant without kms:Decrypt reads nothing of a KMS-encrypted
    bucket; the key policy naming the role directly restores it (where key policies matter)."""
    templates = copy.deepcopy(synthesized.templates)
    document = _policy(templates, "RolesPipelinePolicy")
    _regrant_captured_requests(document)
    for statement in document["Statement"]:
        if statement.get("Sid") == "UseEnvironmentKey":
            statement["Action"] = [a for a in statement["Action"] if a != "kms:Decrypt"]
    reach = reachability(templates)
    pipeline = _role(reach, "-platform", "RolesPipelineRole")
    (artifacts,) = capture_buckets(reach)
    assert not reach.can_read_object(pipeline, artifacts, CAPTURED_KEY)
    platform = templates["sagelab-dev--platform"]["Resources"]
    (key,) = [v for v in platform.values() if v["Type"] == "AWS::KMS::Key"]
    (role_id,) = [k for k, v in platform.items() if k.startswith("RolesPipelineRole") and v["Type"] == "AWS::IAM::Role"]
    key["Properties"]["KeyPolicy"]["Statement"].append(
        {"Effect": "Allow", "Principal": {"AWS": {"Fn::GetAtt": [role_id, "Arn"]}}, "Action": "kms:Decrypt", "Resource": "*"}
    )
    assert reachability(templates).can_read_object(pipeline, artifacts, CAPTURED_KEY)
