"""Deploys an approved model package: EventBridge "SageMaker Model Package State Change" ->
CloudFormation UpdateStack of the serving stack with the new `ModelPackageArn` parameter.

CloudFormation stays the owner of the endpoint's resources (no drift, `cdk diff` tells the truth);
this function only turns an approval into a parameter change. It is idempotent: an event for the
package already deployed is a no-op; a stack that is busy raises, so EventBridge retries.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)
_cloudformation = boto3.client("cloudformation")
BUSY_SUFFIXES = ("_IN_PROGRESS",)


class StackBusy(RuntimeError):
    """The serving stack is mid-operation; raising makes EventBridge retry later."""


def approved_package_arn(event: dict[str, Any], group: str) -> str | None:
    detail = event.get("detail") or {}
    if detail.get("ModelApprovalStatus") != "Approved" or detail.get("ModelPackageGroupName") != group:
        return None
    arn = detail.get("ModelPackageArn")
    return arn if isinstance(arn, str) and ":model-package/" in arn else None


def deploy(stack_name: str, parameter: str, package_arn: str, role_arn: str) -> str:
    stack = _cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"].endswith(BUSY_SUFFIXES):
        raise StackBusy(f"{stack_name} is {stack['StackStatus']}; will retry")
    parameters: list[dict[str, Any]] = []
    current = None
    for item in stack.get("Parameters", []):
        if item["ParameterKey"] == parameter:
            current = item["ParameterValue"]
            parameters.append({"ParameterKey": parameter, "ParameterValue": package_arn})
        else:
            parameters.append({"ParameterKey": item["ParameterKey"], "UsePreviousValue": True})
    if current is None:
        raise ValueError(f"{stack_name} has no parameter {parameter}")
    if current == package_arn:
        return "unchanged"
    try:
        _cloudformation.update_stack(
            StackName=stack_name,
            UsePreviousTemplate=True,
            Parameters=parameters,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            RoleARN=role_arn,
        )
    except ClientError as error:
        if "No updates are to be performed" in str(error):
            return "unchanged"
        raise
    return "updating"


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    group = os.environ["MODEL_PACKAGE_GROUP"]
    package_arn = approved_package_arn(event, group)
    if package_arn is None:
        logger.info(json.dumps({"message": "ignored event", "detail": event.get("detail")}))
        return {"result": "ignored"}
    result = deploy(os.environ["SERVING_STACK_NAME"], os.environ["PARAMETER_NAME"], package_arn, os.environ["CLOUDFORMATION_ROLE_ARN"])
    logger.info(json.dumps({"message": "deploy", "model_package": package_arn, "result": result}))
    return {"result": result, "model_package": package_arn}
