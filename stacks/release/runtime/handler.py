"""The release pipeline's Lambda functions (stacks/release/construct.py), in the source account.

  start   EventBridge "SageMaker Model Package State Change" (Approved, the source group)
          -> StartPipelineExecution with the version as the pipeline variable ModelPackageArn
  deploy  a CodePipeline Lambda action: assumes the stage's release role (its account) and updates
          its serving stack's model with the approval deployer's own code (stacks/approval_deployer/runtime) and
          deployment role; polls with continuation tokens until the stack is updated; tags the
          version in the registry with the stage, the time and who approved it
  test    a CodePipeline Lambda action: the acceptance test (acceptance.py, the code
          `sagelab release` runs locally) against the stage's front door; its summary becomes the
          output variable the next approval shows

Every user parameter comes from the pipeline definition (the synthesized template), never the event.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger

try:  # in the Lambda, runtime/ is the code root
    from deployer import handler as deployer  # type: ignore[import-not-found,unused-ignore]
    from release.acceptance import Evidence, EvidenceLocations, http_sender, run_acceptance  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # tests import it as part of the project
    from stacks.approval_deployer.runtime import handler as deployer  # type: ignore[no-redef,unused-ignore]
    from stacks.release.runtime.acceptance import Evidence, EvidenceLocations, http_sender, run_acceptance  # type: ignore[no-redef,unused-ignore]

logger = Logger()
VARIABLE = "ModelPackageArn"
# The serving stacks of promoting environments hold named roles (the other account's policies name them).
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
SUMMARY_LIMIT = 900  # CodePipeline output variable values are short
RELEASE_TAG_PREFIX = "sagelab:release:"


@cache
def client(service: str) -> Any:
    return boto3.client(service)


_assumed: dict[tuple[str, str], tuple[Any, dt.datetime]] = {}
RENEW_BEFORE = dt.timedelta(minutes=10)


def assumed(service: str, role_arn: str, stage: str) -> Any:
    """A client of the stage's account, as its release role (which trusts only these functions);
    kept while its credentials have more than RENEW_BEFORE left (a warm function outlives them)."""
    cached = _assumed.get((service, role_arn))
    if cached is not None and cached[1] - dt.datetime.now(dt.UTC) > RENEW_BEFORE:
        return cached[0]
    credentials = client("sts").assume_role(RoleArn=role_arn, RoleSessionName=f"sagelab-release-{stage}"[:64])["Credentials"]
    made = boto3.client(
        service,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    _assumed[(service, role_arn)] = (made, credentials["Expiration"])
    return made


def start(event: dict[str, Any], context: Any) -> dict[str, str]:
    package_arn = deployer.approved_package_arn(event, os.environ["MODEL_PACKAGE_ARN_PREFIX"])  # type: ignore[arg-type,unused-ignore]
    if package_arn is None:
        logger.info("ignored event", extra={"detail": event.get("detail")})
        return {"result": "ignored"}
    execution = client("codepipeline").start_pipeline_execution(name=os.environ["PIPELINE_NAME"], variables=[{"name": VARIABLE, "value": package_arn}])
    logger.info("release started", extra={"model_package": package_arn, "execution": execution["pipelineExecutionId"]})
    return {"result": "started", "model_package": package_arn, "execution": execution["pipelineExecutionId"]}


def _job(event: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    job = event["CodePipeline.job"]
    parameters = json.loads(job["data"]["actionConfiguration"]["configuration"]["UserParameters"])
    return job["id"], parameters, job["data"].get("continuationToken")


def _fail(job_id: str, message: str) -> dict[str, str]:
    logger.error("action failed", extra={"job": job_id, "reason": message})
    client("codepipeline").put_job_failure_result(jobId=job_id, failureDetails={"type": "JobFailed", "message": message[:5000]})
    return {"result": "failed", "reason": message}


def approver(parameters: dict[str, Any]) -> str:
    """Who approved the promotion to this stage (the pipeline's approval action), or 'release'."""
    action = parameters.get("approval_action")
    if not action:
        return "release (first stage after the source approval)"
    state = client("codepipeline").get_pipeline_state(name=os.environ["PIPELINE_NAME"])
    for stage in state.get("stageStates", []):
        for found in stage.get("actionStates", []):
            if found.get("actionName") == action:
                return str((found.get("latestExecution") or {}).get("lastUpdatedBy") or "unknown")
    return "unknown"


def deploy(event: dict[str, Any], context: Any) -> dict[str, str]:
    job_id, parameters, token = _job(event)
    stage, package_arn, stack = parameters["stage"], parameters["model_package"], parameters["stack"]
    try:
        cloudformation = assumed("cloudformation", parameters["release_role"], stage)
        if token is None:
            served = deployer.served_model_values(package_arn, os.environ["ARTIFACTS_BUCKET"])
            # The description lives in the source's bucket, which the stage's front door cannot read.
            values = {parameters["algorithm_parameter"]: served["algorithm"], parameters["problem_type_parameter"]: served["problem_type"]}
            values[parameters["description_parameter"]] = ""
            result = deployer.deploy(
                stack, parameters["parameter"], package_arn, parameters["deployment_role"], values, client=cloudformation, capabilities=CAPABILITIES
            )
            if result == "updating":
                client("codepipeline").put_job_success_result(jobId=job_id, continuationToken="updating")
                return {"result": "updating"}
        else:
            status = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
            if status.endswith("_IN_PROGRESS"):
                client("codepipeline").put_job_success_result(jobId=job_id, continuationToken="updating")
                return {"result": "updating"}
            if status != "UPDATE_COMPLETE":
                return _fail(job_id, f"{stack} ended {status}: {package_arn} is not served in {stage} (CloudFormation rolled the stack back)")
    except (deployer.UnservableModel, deployer.StackBusy) as error:
        return _fail(job_id, f"{stage}: {error}")
    except Exception as error:  # every failure must reach the pipeline, or the action waits for its timeout
        return _fail(job_id, f"{stage}: {type(error).__name__}: {error}")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    client("sagemaker").add_tags(
        ResourceArn=package_arn, Tags=[{"Key": f"{RELEASE_TAG_PREFIX}{stage}", "Value": f"{now} approved by {approver(parameters)}"[:256]}]
    )
    client("codepipeline").put_job_success_result(jobId=job_id, outputVariables={"deployed_at": now})
    return {"result": "deployed", "stage": stage, "model_package": package_arn}


def _read(uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test(event: dict[str, Any], context: Any) -> dict[str, str]:
    job_id, parameters, _ = _job(event)
    stage, package_arn = parameters["stage"], parameters["model_package"]
    try:
        stack = assumed("cloudformation", parameters["release_role"], stage).describe_stacks(StackName=parameters["stack"])["Stacks"][0]
        outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
        url, headers = outputs["ApiUrl"], {}
        if "ApiKeyId" in outputs:
            key = assumed("apigateway", parameters["release_role"], stage).get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)
            headers["x-api-key"] = key["value"]
        package = client("sagemaker").describe_model_package(ModelPackageName=package_arn)
        where = EvidenceLocations.of(package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"])
        evidence = Evidence.from_files(
            evaluation=json.loads(_read(where.evaluation)),
            feature_spec=json.loads(_read(where.feature_spec)),
            features_npy=_read(where.features),
            target_npy=_read(where.target),
        )
        result = run_acceptance(
            url, http_sender(url, headers), evidence, tolerance=float(parameters["tolerance"]), latency_p95_ms=int(parameters["latency_p95_ms"])
        )
    except Exception as error:  # a test that cannot run is a failed test
        return _fail(job_id, f"{stage}: the acceptance test could not run: {type(error).__name__}: {error}")
    logger.info("acceptance", extra={"stage": stage, "model_package": package_arn, **result.to_json()})
    if not result.passed:
        return _fail(job_id, f"{stage}: acceptance test failed: {result.summary()}")
    client("codepipeline").put_job_success_result(jobId=job_id, outputVariables={"summary": result.summary()[:SUMMARY_LIMIT]})
    return {"result": "passed", "stage": stage}
