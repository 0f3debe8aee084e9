"""`sagelab class end` against moto: everything listed is archived (and read back) before anything
is deleted; a student whose work cannot all be archived keeps their stacks and buckets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

moto = pytest.importorskip("moto")

from sagelab.aws_ops import AwsOperations, ClassroomOperations  # noqa: E402
from sagelab.aws_session import new_session  # noqa: E402
from sagelab.class_end import end_class  # noqa: E402
from sagelab.cli import main  # noqa: E402
from sagelab.roster import parse_roster  # noqa: E402

REGION = "us-east-1"
ARCHIVE = "teacher-archive"
QUEUE_TEMPLATE = {"Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}}}


ROLE = {
    "Type": "AWS::IAM::Role",
    "Properties": {
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
        }
    },
}


def _stack(cloudformation: Any, name: str, outputs: dict[str, str]) -> None:
    resources = {**QUEUE_TEMPLATE["Resources"], **({"NotebookRole": ROLE} if name.endswith("-platform") else {})}
    template = {"Resources": resources, "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch, moto_environment: None) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with moto.mock_aws():
        s3, cloudformation, sagemaker = (boto3.client(s) for s in ("s3", "cloudformation", "sagemaker"))
        s3.create_bucket(Bucket=ARCHIVE)
        for student in ("ana", "ben"):
            data, artifacts = f"{student}-data-bucket", f"{student}-artifacts-bucket"
            _stack(cloudformation, f"sagelab-{student}--platform", {"DataBucketName": data, "ArtifactsBucketName": artifacts})
            _stack(cloudformation, f"sagelab-{student}--serving", {"ApiUrl": "https://x"})
            if student == "ben":
                continue  # ben's data bucket is gone (deleted by hand): his work cannot all be archived
            for bucket in (data, artifacts):
                s3.create_bucket(Bucket=bucket)
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_object(Bucket=data, Key="my.csv", Body=b"a,b\n1,2\n")
            s3.put_object(Bucket=data, Key="my.csv", Body=b"a,b\n1,2\n3,4\n")  # a second version
            s3.put_object(Bucket=artifacts, Key="models/evaluations/run1/evaluation.json", Body=b'{"accuracy": 0.97}')
            s3.put_object(Bucket=artifacts, Key="pipeline-runs/run1/model.tar.gz", Body=b"\x1f\x8b" + b"0" * 1000)
            sagemaker.create_model_package_group(ModelPackageGroupName=f"sagelab-{student}--models")
            sagemaker.create_pipeline(
                PipelineName=f"sagelab-{student}--pipeline",
                PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
                RoleArn="arn:aws:iam::123456789012:role/sagelab-ana--platform-PipelineRole",
            )
            sagemaker.start_pipeline_execution(PipelineName=f"sagelab-{student}--pipeline")
        # ana was capped: the class's deny is attached to her platform role, outside her stack.
        iam = boto3.client("iam")
        deny = iam.create_policy(
            PolicyName="sagelab-class--us-east-1-SpendCapCappedDeny-X",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "sagemaker:*", "Resource": "*"}]}),
        )["Policy"]["Arn"]
        (role,) = (
            r["PhysicalResourceId"]
            for r in cloudformation.describe_stack_resources(StackName="sagelab-ana--platform")["StackResources"]
            if r["ResourceType"] == "AWS::IAM::Role"
        )
        iam.attach_role_policy(RoleName=role, PolicyArn=deny)
        # ...and, as an own-account student's is, by her spend-cap stack's own deny (stacks/spend_cap/link.py).
        _stack(cloudformation, "sagelab-ana--spend-cap", {})
        own_deny = iam.create_policy(
            PolicyName="sagelab-ana--capped-deny",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "sagemaker:*", "Resource": "*"}]}),
        )["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=role, PolicyArn=own_deny)
        s3.create_bucket(Bucket="ben-artifacts-bucket")
        s3.put_object(Bucket="ben-artifacts-bucket", Key="models/evaluations/r/evaluation.json", Body=b"{}")
        yield {"s3": s3, "cloudformation": cloudformation, "iam": iam, "ana_role": role}


def _answer_steps(sagemaker: Any) -> None:
    """moto has no ListPipelineExecutionSteps: answer it as botocore's Stubber does (before the call)."""
    from botocore.awsrequest import AWSResponse

    steps = {"PipelineExecutionSteps": [{"StepName": "Preprocess", "StepStatus": "Succeeded", "Metadata": {"ProcessingJob": {"Arn": "arn:x"}}}]}
    sagemaker.meta.events.register("before-call.sagemaker.ListPipelineExecutionSteps", lambda **_: (AWSResponse("", 200, {}, None), steps))


def _stacks(cloudformation: Any) -> set[str]:
    return {s["StackName"] for s in cloudformation.describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"}


def _buckets(s3: Any) -> set[str]:
    return {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_the_archive_is_complete_before_anything_is_deleted_and_a_failure_keeps_everything(account: dict[str, Any]) -> None:
    s3, cloudformation = account["s3"], account["cloudformation"]
    ops = AwsOperations(new_session(region_name=REGION))
    expected = {"data/my.csv", "artifacts/models/evaluations/run1/evaluation.json", "artifacts/pipeline-runs/run1/model.tar.gz"}
    seen_at_first_delete: list[set[str]] = []

    def before_delete(**_: Any) -> None:
        if not seen_at_first_delete:
            listed = s3.list_objects_v2(Bucket=ARCHIVE, Prefix="end/ana/").get("Contents", [])
            seen_at_first_delete.append({item["Key"].removeprefix("end/ana/") for item in listed})

    # Every delete call, of a stack or of an object, is checked against what the archive held then.
    ops.cloudformation.meta.events.register("before-call.cloudformation.DeleteStack", before_delete)
    deleted_stacks: list[str] = []
    ops.cloudformation.meta.events.register("before-parameter-build.cloudformation.DeleteStack", lambda params, **_: deleted_stacks.append(params["StackName"]))
    _answer_steps(ops.sagemaker)
    original_client = ops.client
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = original_client(service)
            if service == "s3":
                clients[service].meta.events.register("before-call.s3.DeleteObject", before_delete)
        return clients[service]

    ops.client = client  # type: ignore[method-assign]
    lines: list[str] = []
    students = parse_roster("student_id,email\nana,ana@x.edu\nben,ben@x.edu\n")
    results = end_class(ClassroomOperations(ops), students, ARCHIVE, "end", wait=False, report=lines.append)

    ana, ben = results
    assert ana.complete and not ben.complete
    assert seen_at_first_delete and expected | {"registry/model-packages.json", "runs/pipeline-executions.json", "manifest.json"} <= seen_at_first_delete[0]
    body = s3.get_object(Bucket=ARCHIVE, Key="end/ana/data/my.csv")["Body"].read()
    assert body == b"a,b\n1,2\n3,4\n"  # the current version of her data
    manifest = json.loads(s3.get_object(Bucket=ARCHIVE, Key="end/ana/manifest.json")["Body"].read())
    assert {o["key"] for o in manifest["objects"]} >= expected and "not reachable" in manifest["notebook"]
    # ana: stacks and retained buckets gone; ben: everything in place, and the line says why.
    assert _stacks(cloudformation) == {"sagelab-ben--platform", "sagelab-ben--serving"}
    assert "ana-data-bucket" not in _buckets(s3) and "ana-artifacts-bucket" not in _buckets(s3)
    assert "ben-artifacts-bucket" in _buckets(s3)
    # Her role lost the class's deny before her stack went (IAM refuses to delete a role with it).
    assert account["ana_role"] not in {r["RoleName"] for r in account["iam"].list_roles()["Roles"]}
    # Her spend-cap stack went too, after the stacks its role could act on.
    assert deleted_stacks == ["sagelab-ana--serving", "sagelab-ana--platform", "sagelab-ana--spend-cap"]
    assert lines[0].startswith("ana: kept 6 objects") and f"in s3://{ARCHIVE}/end/ana/" in lines[0] and "deleted stack sagelab-ana--serving" in lines[0]
    assert lines[1].startswith("ben: NOT torn down, nothing deleted: could not archive:") and "NoSuchBucket" in lines[1]


def test_the_cli_prints_what_it_kept_and_fails_when_a_student_was_kept_in_place(account: dict[str, Any], tmp_path: Any, capsys: Any) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,email\nana,ana@x.edu\nben,ben@x.edu\n")
    ops = AwsOperations(new_session(region_name=REGION))
    _answer_steps(ops.sagemaker)
    patch = pytest.MonkeyPatch()
    patch.setattr("sagelab.cli._aws", lambda args: ops)
    try:
        code = main(["class", "end", "--roster", str(roster), "--archive-bucket", ARCHIVE, "--prefix", "t"])
    finally:
        patch.undo()
    out = capsys.readouterr().out
    assert code == 1
    assert f"archive: s3://{ARCHIVE}/t/ (1 students ended, 1 kept in place)" in out and "ben: NOT torn down" in out
