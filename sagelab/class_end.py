"""`sagelab class end --roster R --archive-bucket B`: keep every student's work, then tear the class down.

Per student, into `s3://B/<prefix>/<student>/` (a bucket the admin keeps, in the admin's account):

    data/<key>                        every object of the student's data bucket
    artifacts/<key>                   every object of the artifacts bucket: run outputs, models,
                                      evaluations (evaluation.json, plots, model descriptions)
    registry/model-packages.json      every registered model version (DescribeModelPackage: status,
                                      metrics and metadata, which point into artifacts/)
    runs/pipeline-executions.json     every pipeline execution with its steps
    manifest.json                     what was kept, object by object, with sizes

Each object is read back from the archive (size checked) before anything of that student is
deleted. Only then: the serving stack, the platform stack, and the two buckets the stacks retain
(all versions). A student whose work could not all be archived keeps everything (stacks and
buckets) and is named with the reason; the access-log bucket (the audit trail) is always kept.
Notebook volumes have no API to read them: students keep what they want in their data bucket
(the lab says so); the report says it for every student.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sagelab.aws_ops import AwsOperations, ClassroomOperations, OperationError, paged, translate
from sagelab.naming import ResourceNames

NOTEBOOK_NOTE = "notebook volume: not reachable through an API (files saved to the data bucket are archived)"


@dataclass
class Archived:
    student: str
    location: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    model_versions: int = 0
    runs: int = 0
    problem: str | None = None
    deleted: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        size = sum(o["size"] for o in self.objects)
        kept = f"kept {len(self.objects)} objects ({size / 1e6:.1f} MB), {self.model_versions} model versions, {self.runs} runs in {self.location}"
        if not self.complete and self.deleted:
            return f"{self.student}: {kept}; the teardown stopped: {self.problem}; deleted {', '.join(self.deleted)}"
        if not self.complete:
            return f"{self.student}: NOT torn down, nothing deleted: could not archive: {self.problem} ({kept} so far)"
        return f"{self.student}: {kept}; deleted {', '.join(self.deleted) or 'nothing'}; {NOTEBOOK_NOTE}"


def _objects(s3: Any, bucket: str) -> Iterable[dict[str, Any]]:
    return paged(s3, "list_objects_v2", "Contents", Bucket=bucket)


def archive_student(student_ops: AwsOperations, archive: AwsOperations, bucket: str, prefix: str, student_id: str) -> Archived:
    """Copy the student's work into the archive and read every copy back; `problem` says what failed."""
    names = ResourceNames.of(student_id)
    location = f"s3://{bucket}/{prefix}/{student_id}/"
    result = Archived(student_id, location)
    source, target = student_ops.client("s3"), archive.client("s3")

    def put(key: str, body: bytes) -> None:
        full = f"{prefix}/{student_id}/{key}"
        translate(target.put_object, Bucket=bucket, Key=full, Body=body)
        kept = translate(target.head_object, Bucket=bucket, Key=full)
        if kept["ContentLength"] != len(body):
            raise OperationError(f"s3://{bucket}/{full} holds {kept['ContentLength']} bytes, not {len(body)}")
        result.objects.append({"key": key, "size": len(body)})

    try:
        outputs = student_ops.stack_outputs(names.platform_stack)
        if outputs is None:
            raise OperationError(f"{names.platform_stack} not found")
        for folder, output in (("data", "DataBucketName"), ("artifacts", "ArtifactsBucketName")):
            student_bucket = outputs[output]
            for item in _objects(source, student_bucket):
                body = translate(source.get_object, Bucket=student_bucket, Key=item["Key"])["Body"].read()
                put(f"{folder}/{item['Key']}", body)
        sagemaker = student_ops.sagemaker
        packages = [
            translate(sagemaker.describe_model_package, ModelPackageName=summary["ModelPackageArn"])
            for summary in paged(sagemaker, "list_model_packages", "ModelPackageSummaryList", ModelPackageGroupName=names.model_package_group)
        ]
        result.model_versions = len(packages)
        put("registry/model-packages.json", json.dumps(packages, default=str, indent=1).encode())
        runs = []
        for execution in paged(sagemaker, "list_pipeline_executions", "PipelineExecutionSummaries", PipelineName=names.pipeline):
            steps = paged(sagemaker, "list_pipeline_execution_steps", "PipelineExecutionSteps", PipelineExecutionArn=execution["PipelineExecutionArn"])
            runs.append({**execution, "steps": steps})
        result.runs = len(runs)
        put("runs/pipeline-executions.json", json.dumps(runs, default=str, indent=1).encode())
        put("manifest.json", json.dumps({"student": student_id, "objects": result.objects, "notebook": NOTEBOOK_NOTE}, indent=1).encode())
    except (OperationError, KeyError) as error:
        result.problem = f"{type(error).__name__}: {error}" if isinstance(error, KeyError) else str(error)
    return result


def _empty_and_delete(s3: Any, bucket: str) -> None:
    for page_key in ("Versions", "DeleteMarkers"):
        for version in paged(s3, "list_object_versions", page_key, Bucket=bucket):
            translate(s3.delete_object, Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    for item in _objects(s3, bucket):  # unversioned leftovers
        translate(s3.delete_object, Bucket=bucket, Key=item["Key"])
    translate(s3.delete_bucket, Bucket=bucket)


# The cap's deny (stacks/spend_cap) is attached outside the student's stack while they are
# capped; IAM refuses to delete a role that still has it, so it goes first. In the class account it
# is the class's policy (CloudFormation names it after its logical id); in an own-account student's
# account, their spend-cap stack's policy, named `capped_deny_policy`.
CAPPED_DENY_MARK = "SpendCapCappedDeny"


def _detach_cap(student_ops: AwsOperations, platform_stack: str, names: ResourceNames) -> None:
    iam = student_ops.client("iam")
    resources = translate(student_ops.cloudformation.describe_stack_resources, StackName=platform_stack)["StackResources"]
    for role in (r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::IAM::Role"):
        for policy in translate(iam.list_attached_role_policies, RoleName=role)["AttachedPolicies"]:
            if CAPPED_DENY_MARK in policy["PolicyArn"] or policy["PolicyName"] == names.capped_deny_policy:
                translate(iam.detach_role_policy, RoleName=role, PolicyArn=policy["PolicyArn"])


def tear_down(student_ops: AwsOperations, archived: Archived, wait: bool = True) -> None:
    """Only for a complete archive: the stacks, then the buckets they retain."""
    if not archived.complete:
        raise OperationError(f"{archived.student}: refusing to delete anything: the archive is incomplete ({archived.problem})")
    names = ResourceNames.of(archived.student)
    outputs = student_ops.stack_outputs(names.platform_stack) or {}
    cloudformation = student_ops.cloudformation
    if outputs:
        _detach_cap(student_ops, names.platform_stack, names)
    # An own-account student's spend-cap stack goes last: it holds the role the class's enforcer
    # acts through until the stacks it would act on are gone.
    for stack in (names.serving_stack, names.platform_stack, names.spend_cap_stack):
        if student_ops.stack_outputs(stack) is None:
            continue
        translate(cloudformation.delete_stack, StackName=stack)
        if wait:
            translate(cloudformation.get_waiter("stack_delete_complete").wait, StackName=stack)
        archived.deleted.append(f"stack {stack}")
    s3 = student_ops.client("s3")
    for output in ("DataBucketName", "ArtifactsBucketName"):
        if output in outputs:
            _empty_and_delete(s3, outputs[output])
            archived.deleted.append(f"bucket {outputs[output]}")


def end_class(
    classroom: ClassroomOperations, students: list[Any], bucket: str, prefix: str, wait: bool = True, report: Callable[[str], None] = print
) -> list[Archived]:
    """Archive every student, then tear down those whose archive is complete."""
    results = []
    for student in students:
        try:
            ops = classroom.ops_for(student)
        except OperationError as error:
            archived = Archived(student.student_id, f"s3://{bucket}/{prefix}/{student.student_id}/", problem=f"not reached: {error}")
        else:
            archived = archive_student(ops, classroom.admin, bucket, prefix, student.student_id)
            if archived.complete:
                try:
                    tear_down(ops, archived, wait=wait)
                except OperationError as error:
                    archived.problem = str(error)
        report(archived.line())
        results.append(archived)
    return results
