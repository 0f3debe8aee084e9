"""Deploys an approved model package: EventBridge "SageMaker Model Package State Change" ->
CloudFormation UpdateStack of the serving stack with the new `ModelPackageArn` parameter.

CloudFormation stays the owner of the endpoint's resources (no drift, `cdk diff` tells the truth);
this function only turns an approval into a parameter change, with the previous template and the
deployment role (`CLOUDFORMATION_ROLE_ARN`), the only way its IAM policy lets it update the stack.
It is idempotent: an event for the package already deployed is a no-op; a stack that is busy
raises, so EventBridge retries.

With the ARN it passes what the front door needs to speak to the model (decision 0011), read from
the version's CustomerMetadataProperties (DescribeModelPackage) and checked first by the contract's
`serving_settings` (pipeline_steps/contract.py, which `sagelab serve` calls too): an algorithm or a
problem type the front door cannot speak is not deployed (the front door's answer depends on both);
a description URI not of the expected shape is deployed as "" and the reason logged. A version without metadata (registered before 0011) is an
XGBoost model without a description.

Environment: MODEL_PACKAGE_ARN_PREFIX (`arn:<partition>:sagemaker:<region>:<account>:model-package/<group>/`),
SERVING_STACK_NAME, PARAMETER_NAME, CLOUDFORMATION_ROLE_ARN, ALGORITHM_PARAMETER, PROBLEM_TYPE_PARAMETER,
DESCRIPTION_PARAMETER, ARTIFACTS_BUCKET.
"""

from __future__ import annotations

import os
import re
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

try:  # the function's code has the contract module at its root (docs/decisions/0018)
    import contract  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # tests import it as part of the project
    from pipeline_steps import contract  # type: ignore[no-redef,unused-ignore]

logger = Logger(service="sagelab-deployer")
BUSY_SUFFIX = "_IN_PROGRESS"
# The serving template holds IAM resources without custom names (CDK generates them), so
# CloudFormation asks for CAPABILITY_IAM on every update, even a parameter-only one; nothing
# needs CAPABILITY_NAMED_IAM (tests/test_deployer.py checks this against the template).
CAPABILITIES = ["CAPABILITY_IAM"]
APPROVED = "Approved"
VERSION = re.compile(r"^[0-9]{1,9}$")
# The package's metadata names an algorithm or a problem type the front door cannot speak; it is not deployed.
UnservableModel = contract.UnservableModel


class StackBusy(RuntimeError):
    """The serving stack is mid-operation; raising makes EventBridge retry later."""


@cache
def cloudformation() -> Any:
    """One client per execution environment, built on first use (not at import, so importing the
    module needs no region or credentials)."""
    return boto3.client("cloudformation")


@cache
def sagemaker() -> Any:
    return boto3.client("sagemaker")


def served_model_values(package_arn: str, artifacts_bucket: str) -> dict[str, str]:
    """{"algorithm", "problem_type", "description_uri"} for the serving stack, from the package's
    CustomerMetadataProperties, each value checked; UnservableModel for an unknown algorithm or problem type."""
    package = sagemaker().describe_model_package(ModelPackageName=package_arn)
    settings = contract.serving_settings(package.get("CustomerMetadataProperties") or {}, artifacts_bucket)
    for reason in settings.dropped:
        logger.warning(reason, extra={"model_package": package_arn, "artifacts_bucket": artifacts_bucket})
    return {"algorithm": settings.algorithm, "problem_type": settings.problem_type, "description_uri": settings.description_uri}


def approved_package_arn(event: EventBridgeEvent, arn_prefix: str) -> str | None:
    """The version ARN to deploy, or None when the event is not an approval of a version of this
    environment's own group (same partition, region, account and group: `arn_prefix`)."""
    detail = event.get("detail") or {}  # a malformed event is ignored, not a KeyError
    if detail.get("ModelApprovalStatus") != APPROVED:
        return None
    arn = detail.get("ModelPackageArn")
    if not isinstance(arn, str) or not arn.startswith(arn_prefix):
        return None
    return arn if VERSION.match(arn[len(arn_prefix) :]) else None


def deploy(
    stack_name: str,
    parameter: str,
    package_arn: str,
    role_arn: str,
    model_values: dict[str, str] | None = None,
    client: Any = None,
    capabilities: list[str] | None = None,
) -> str:
    """UpdateStack with `parameter` = the package ARN and `model_values` (parameter name -> value, set
    where the stack has that parameter); every other parameter keeps its previous value. The release
    (runtime/release/handler.py) passes a `client` of the target account and the capabilities its
    serving stack needs (named roles)."""
    client = client or cloudformation()
    stack = client.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"].endswith(BUSY_SUFFIX):
        raise StackBusy(f"{stack_name} is {stack['StackStatus']}; will retry")
    parameters: list[dict[str, Any]] = []
    current = None
    for item in stack.get("Parameters", []):
        if item["ParameterKey"] == parameter:
            current = item["ParameterValue"]
            parameters.append({"ParameterKey": parameter, "ParameterValue": package_arn})
        elif model_values and item["ParameterKey"] in model_values:
            parameters.append({"ParameterKey": item["ParameterKey"], "ParameterValue": model_values[item["ParameterKey"]]})
        else:
            parameters.append({"ParameterKey": item["ParameterKey"], "UsePreviousValue": True})
    if current is None:
        raise ValueError(f"{stack_name} has no parameter {parameter}")
    if current == package_arn:
        return "unchanged"
    try:
        client.update_stack(StackName=stack_name, UsePreviousTemplate=True, Parameters=parameters, Capabilities=capabilities or CAPABILITIES, RoleARN=role_arn)
    except ClientError as error:
        if "No updates are to be performed" in str(error):
            return "unchanged"
        raise
    return "updating"


@logger.inject_lambda_context
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, str]:
    package_arn = approved_package_arn(event, os.environ["MODEL_PACKAGE_ARN_PREFIX"])
    if package_arn is None:
        logger.info("ignored event", extra={"detail_type": event.get("detail-type"), "detail": event.get("detail")})
        return {"result": "ignored"}
    try:
        served = served_model_values(package_arn, os.environ["ARTIFACTS_BUCKET"])
    except UnservableModel as error:
        # Deploying it would leave the front door speaking the wrong format; the current model stays.
        logger.error("not deployed", extra={"model_package": package_arn, "reason": str(error)})
        return {"result": "refused", "model_package": package_arn, "reason": str(error)}
    model_values = {
        os.environ["ALGORITHM_PARAMETER"]: served["algorithm"],
        os.environ["PROBLEM_TYPE_PARAMETER"]: served["problem_type"],
        os.environ["DESCRIPTION_PARAMETER"]: served["description_uri"],
    }
    result = deploy(os.environ["SERVING_STACK_NAME"], os.environ["PARAMETER_NAME"], package_arn, os.environ["CLOUDFORMATION_ROLE_ARN"], model_values)
    logger.info("deploy", extra={"model_package": package_arn, "result": result, **served})
    return {"result": result, "model_package": package_arn}
