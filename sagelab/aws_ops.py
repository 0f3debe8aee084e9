"""Operate a deployed environment: start pipeline runs, follow them, read job logs, review models.

Region and credentials come from the usual AWS settings (profile, environment, instance role).
Every AWS failure a person can fix becomes an `OperationError` with one line saying what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError, PartialCredentialsError

from sagelab.aws_session import new_session
from sagelab.naming import ResourceNames

TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")
JOB_LOG_GROUPS = {"ProcessingJob": "/aws/sagemaker/ProcessingJobs", "TrainingJob": "/aws/sagemaker/TrainingJobs"}


# Environments with approval_mode: manual deny approving to the roles that train.
APPROVER_HINT = (
    "with approval_mode: manual only the environment's approver role may approve: "
    "use --profile with an AWS profile whose role_arn is the platform stack's ApproverRoleArn output"
)


class OperationError(RuntimeError):
    """An AWS operation that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Environment:
    name: str
    pipeline: str
    model_package_group: str
    api_url: str | None
    region: str


def translate(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except (NoCredentialsError, PartialCredentialsError):
        raise OperationError("no AWS credentials found: run `aws configure` (or set AWS_PROFILE) and try again, or use --local") from None
    except NoRegionError:
        raise OperationError("no AWS region configured: set AWS_REGION or `aws configure set region REGION`") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"):
            raise OperationError(f"AWS rejected the credentials ({code}): refresh them and try again") from None
        if code == "AccessDeniedException" or code == "AccessDenied":
            raise OperationError(f"access denied: {message}") from None
        raise OperationError(f"{code}: {message}") from None


def paged(client: Any, operation: str, result_key: str, **parameters: Any) -> list[Any]:
    """Every item of a listing across all its pages (boto3's paginator follows NextToken), with
    AWS errors translated. A single call returns one page only, which silently drops the rest."""
    items: list[Any] = []
    for page in translate(lambda: list(client.get_paginator(operation).paginate(**parameters))):
        items.extend(page.get(result_key, []))
    return items


class AwsOperations:
    def __init__(self, session: boto3.Session | None = None, endpoint_url: str | None = None) -> None:
        self.session = session or new_session()
        self.endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """The session's client of `service`, made on first use and then kept: a command that reads
        only stacks makes no SageMaker client, and a class report does not make one per student row."""
        if service not in self._clients:
            try:
                self._clients[service] = translate(self.session.client, service, **({"endpoint_url": self.endpoint_url} if self.endpoint_url else {}))
            except OperationError:
                raise
            except Exception as error:  # e.g. a malformed --region or --endpoint-url: said as when the clients were made up front
                raise OperationError(str(error)) from None
        return self._clients[service]

    @property
    def sagemaker(self) -> Any:
        return self.client("sagemaker")

    @property
    def cloudformation(self) -> Any:
        return self.client("cloudformation")

    @property
    def logs(self) -> Any:
        return self.client("logs")

    def stack_outputs(self, stack_name: str) -> dict[str, str] | None:
        """The stack's outputs, or None when the stack does not exist."""
        try:
            stacks = translate(self.cloudformation.describe_stacks, StackName=stack_name)["Stacks"]
        except OperationError as error:
            if "does not exist" in str(error):
                return None
            raise
        return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}

    # -- discovery ----------------------------------------------------------------------------
    def environment(self, env_name: str) -> Environment:
        names = ResourceNames.of(env_name)
        outputs: dict[str, str] = {}
        for stack_name, required in ((names.platform_stack, True), (names.serving_stack, False)):
            stack_outputs = self.stack_outputs(stack_name)
            if stack_outputs is None:
                if required:
                    raise self._not_deployed(stack_name, env_name)
                continue
            outputs.update(stack_outputs)
        if "PipelineName" not in outputs:
            raise OperationError(f"stack {names.platform_stack} has no PipelineName output; redeploy it")
        return Environment(
            name=env_name,
            pipeline=outputs["PipelineName"],
            model_package_group=outputs.get("ModelPackageGroupName", names.model_package_group),
            api_url=outputs.get("ApiUrl"),
            region=str(self.session.region_name),
        )

    def platform_outputs(self, env_name: str) -> dict[str, str]:
        stack_name = ResourceNames.of(env_name).platform_stack
        outputs = self.stack_outputs(stack_name)
        if outputs is None:
            raise self._not_deployed(stack_name, env_name)
        return outputs

    def _not_deployed(self, stack_name: str, env_name: str) -> OperationError:
        return OperationError(f"stack {stack_name} not found in {self.session.region_name}: deploy it with `make deploy ENV={env_name}`, or pass --region")

    # -- pipeline -----------------------------------------------------------------------------
    def start(self, pipeline: str, parameters: dict[str, str]) -> str:
        response = translate(
            self.sagemaker.start_pipeline_execution,
            PipelineName=pipeline,
            PipelineParameters=[{"Name": k, "Value": v} for k, v in parameters.items()],
            PipelineExecutionDescription="started with sagelab pipeline start",
        )
        return str(response["PipelineExecutionArn"])

    def latest_execution(self, pipeline: str) -> str:
        summaries = translate(self.sagemaker.list_pipeline_executions, PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=1)[
            "PipelineExecutionSummaries"
        ]
        if not summaries:
            raise OperationError(f"pipeline {pipeline} has no executions yet: start one with `sagelab pipeline start`")
        return str(summaries[0]["PipelineExecutionArn"])

    def status(self, execution_arn: str) -> dict[str, Any]:
        execution = translate(self.sagemaker.describe_pipeline_execution, PipelineExecutionArn=execution_arn)
        steps = paged(self.sagemaker, "list_pipeline_execution_steps", "PipelineExecutionSteps", PipelineExecutionArn=execution_arn, SortOrder="Ascending")
        return {
            "execution_arn": execution_arn,
            "status": execution["PipelineExecutionStatus"],
            "failure_reason": execution.get("FailureReason"),
            "steps": [
                {
                    "name": step["StepName"],
                    "status": step["StepStatus"],
                    "failure_reason": step.get("FailureReason"),
                    "job": _job_of(step.get("Metadata", {})),
                }
                for step in steps
            ],
        }

    def logs_of(self, execution_arn: str, seen: set[str] | None = None) -> Iterator[str]:
        """Log lines of the execution's processing and training jobs (new ones only, given `seen`)."""
        seen = seen if seen is not None else set()
        for step in self.status(execution_arn)["steps"]:
            job = step["job"]
            if job is None:
                continue
            job_type, name = job
            # Stream by stream (GetLogEvents): roles may read their own jobs' streams only, and
            # FilterLogEvents would need the whole shared log group (docs/decisions/0010).
            for stream in self._log_streams(JOB_LOG_GROUPS[job_type], name):
                for event in self._log_events(JOB_LOG_GROUPS[job_type], stream):
                    key = event.get("eventId") or f"{stream}:{event['timestamp']}:{event['message']}"
                    if key in seen:
                        continue
                    seen.add(key)
                    yield f"[{step['name']}] {event['message'].rstrip()}"

    def _log_streams(self, group: str, job_name: str) -> list[str]:
        return [stream["logStreamName"] for stream in paged(self.logs, "describe_log_streams", "logStreams", logGroupName=group, logStreamNamePrefix=job_name)]

    def _log_events(self, group: str, stream: str) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            page = translate(self.logs.get_log_events, logGroupName=group, logStreamName=stream, startFromHead=True, **({"nextToken": token} if token else {}))
            events = page.get("events", [])
            yield from events
            # GetLogEvents returns the same forward token once the stream is exhausted.
            next_token = page.get("nextForwardToken")
            if not events or not next_token or next_token == token:
                return
            token = next_token

    def follow(self, execution_arn: str, poll_seconds: float = 15, sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
        seen: set[str] = set()
        while True:
            yield from self.logs_of(execution_arn, seen)
            status = self.status(execution_arn)["status"]
            if status in TERMINAL_STATUSES:
                yield from self.logs_of(execution_arn, seen)
                yield f"execution {status}"
                return
            sleep(poll_seconds)

    # -- models -------------------------------------------------------------------------------
    def models(self, group: str) -> list[dict[str, Any]]:
        """Every version of the group, oldest first (the last one is the newest)."""
        packages = paged(
            self.sagemaker, "list_model_packages", "ModelPackageSummaryList", ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Ascending"
        )
        return [
            {
                "group": group,
                "version": p.get("ModelPackageVersion"),
                "status": p.get("ModelApprovalStatus"),
                "created": str(p.get("CreationTime")),
                "arn": p["ModelPackageArn"],
            }
            for p in packages
        ]

    def approve(self, group: str, version: int, status: str = "Approved") -> str:
        for package in self.models(group):
            if package["version"] == version:
                try:
                    translate(self.sagemaker.update_model_package, ModelPackageArn=package["arn"], ModelApprovalStatus=status)
                except OperationError as error:
                    if str(error).startswith("access denied"):
                        raise OperationError(f"{error} ({APPROVER_HINT})") from None
                    raise
                return str(package["arn"])
        raise OperationError(f"model package group {group} has no version {version}")


def _job_of(metadata: dict[str, Any]) -> tuple[str, str] | None:
    for job_type in ("ProcessingJob", "TrainingJob"):
        arn = (metadata.get(job_type) or {}).get("Arn")
        if arn:
            return job_type, arn.rsplit("/", 1)[-1]
    return None


# -- classroom ------------------------------------------------------------------------------------
REPORT_COLUMNS = (
    "student_id",
    "email",
    "platform_stack",
    "serving_stack",
    "notebook",
    "notebook_url",
    "api_url",
    "api_key_id",
    "data_bucket",
    "artifacts_bucket",
    "status",
)


# Organizations creates this role in every member account, trusted by the management account.
DEFAULT_STUDENT_ROLE = "OrganizationAccountAccessRole"


def _partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


class ClassroomOperations:
    """Admin operations over every student of a roster.

    Students in the admin's account are reached with the admin's credentials, in the region of
    their roster row if it names one; students with their own account through a role the admin
    may assume there (`student_role`). A student who cannot be reached is reported as such; the
    others are still done.
    """

    def __init__(self, ops: AwsOperations, student_role: str = DEFAULT_STUDENT_ROLE) -> None:
        self.admin = ops
        self.student_role = student_role
        self._reached: dict[tuple[str | None, str], AwsOperations] = {}
        self.unreachable: list[str] = []

    def ops_for(self, student: Any) -> AwsOperations:
        """AwsOperations in the student's account and region (one per account and region)."""
        region = student.region or self.admin.session.region_name
        if not region:
            raise OperationError("no AWS region configured: set AWS_REGION or pass --region")
        key = (student.account_id, region)
        if key not in self._reached:
            if student.account_id is None and region == self.admin.session.region_name:
                self._reached[key] = self.admin
            else:
                access = self._admin_credentials() if student.account_id is None else self._assume_student_role(student.account_id, region)
                self._reached[key] = AwsOperations(new_session(region_name=region, **access), endpoint_url=self.admin.endpoint_url)
        return self._reached[key]

    def _admin_credentials(self) -> dict[str, str | None]:
        credentials = translate(self.admin.session.get_credentials)
        if credentials is None:
            raise OperationError("no AWS credentials found: run `aws configure` (or set AWS_PROFILE) and try again")
        frozen = credentials.get_frozen_credentials()
        return {"aws_access_key_id": frozen.access_key, "aws_secret_access_key": frozen.secret_key, "aws_session_token": frozen.token}

    def _assume_student_role(self, account_id: str, region: str) -> dict[str, str | None]:
        role_arn = f"arn:{_partition(region)}:iam::{account_id}:role/{self.student_role}"
        try:
            assumed = translate(self.admin.client("sts").assume_role, RoleArn=role_arn, RoleSessionName="sagelab-class-admin")["Credentials"]
        except OperationError as error:
            raise OperationError(f"cannot assume {role_arn} ({error}); pass --student-role with a role the admin account may assume there") from None
        return {"aws_access_key_id": assumed["AccessKeyId"], "aws_secret_access_key": assumed["SecretAccessKey"], "aws_session_token": assumed["SessionToken"]}

    def _reach(self, student: Any) -> AwsOperations | str:
        """The student's AwsOperations, or the reason they cannot be reached (and remember it)."""
        try:
            return self.ops_for(student)
        except OperationError as error:
            self.unreachable.append(student.student_id)
            return str(error)

    def report(self, students: list[Any]) -> list[dict[str, str]]:
        rows = []
        for student in students:
            names = ResourceNames.of(student.student_id)
            reached = self._reach(student)
            if isinstance(reached, str):
                platform, serving, status = None, {}, f"unreachable: {reached}"
            else:
                platform = reached.stack_outputs(names.platform_stack)
                serving = reached.stack_outputs(names.serving_stack) or {}
                status = "deployed" if platform is not None else "not deployed"
            rows.append(
                {
                    "student_id": student.student_id,
                    "email": student.email,
                    "platform_stack": names.platform_stack,
                    "serving_stack": names.serving_stack,
                    "notebook": (platform or {}).get("NotebookName", ""),
                    "notebook_url": (platform or {}).get("NotebookUrl", ""),
                    "api_url": serving.get("ApiUrl", ""),
                    "api_key_id": serving.get("ApiKeyId", ""),
                    "data_bucket": (platform or {}).get("DataBucketName", ""),
                    "artifacts_bucket": (platform or {}).get("ArtifactsBucketName", ""),
                    "status": status,
                }
            )
        return rows

    def stop(self, students: list[Any]) -> list[str]:
        """Stop every running notebook; remove every endpoint by clearing the serving stack's
        model package (CloudFormation deletes the endpoint, so it stays the owner; approving
        a model again redeploys it). Returns one line per action taken or skipped."""
        actions = []
        for student in students:
            names = ResourceNames.of(student.student_id)
            notebook = names.notebook
            ops = self._reach(student)
            if isinstance(ops, str):
                actions.append(f"{student.student_id}: not reached, nothing stopped: {ops}")
                continue
            try:
                status = translate(ops.sagemaker.describe_notebook_instance, NotebookInstanceName=notebook)["NotebookInstanceStatus"]
            except OperationError as error:
                status = (
                    "missing" if "does not exist" in str(error).lower() or "RecordNotFound" in str(error) or "ValidationException" in str(error) else "unknown"
                )
            if status == "InService":
                translate(ops.sagemaker.stop_notebook_instance, NotebookInstanceName=notebook)
                actions.append(f"{student.student_id}: stopping notebook {notebook}")
            else:
                actions.append(f"{student.student_id}: notebook {notebook} is {status}; left as is")
            serving_stack = names.serving_stack
            try:
                stack = translate(ops.cloudformation.describe_stacks, StackName=serving_stack)["Stacks"][0]
            except OperationError:
                actions.append(f"{student.student_id}: no serving stack {serving_stack}")
                continue
            parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
            if not parameters.get("ModelPackageArn"):
                actions.append(f"{student.student_id}: no endpoint deployed")
                continue
            translate(
                ops.cloudformation.update_stack,
                StackName=serving_stack,
                UsePreviousTemplate=True,
                Parameters=[{"ParameterKey": "ModelPackageArn", "ParameterValue": ""}]
                + [{"ParameterKey": k, "UsePreviousValue": True} for k in parameters if k != "ModelPackageArn"],
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            )
            actions.append(
                f"{student.student_id}: deleting endpoint {names.endpoint} (serving stack update; model {parameters['ModelPackageArn'].rsplit('/', 2)[-2:]} stays registered)"
            )
        return actions
