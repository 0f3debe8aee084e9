"""What SageLab's Python Lambda functions share: the runtime and AWS's Powertools layer for it.

The layer is AWS-managed (published by AWS in every region), so nothing is bundled with Docker.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

POWERTOOLS_ACCOUNT = "017000801446"  # AWS's account that publishes the Powertools layers
POWERTOOLS_LAYER_VERSION = 27
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12


def powertools_layer(scope: Construct, construct_id: str = "Powertools") -> lambda_.ILayerVersion:
    """The Powertools for AWS Lambda (Python) v3 layer for LAMBDA_RUNTIME in the stack's region."""
    stack = Stack.of(scope)
    runtime = LAMBDA_RUNTIME.name.replace(".", "")
    arn = f"arn:{stack.partition}:lambda:{stack.region}:{POWERTOOLS_ACCOUNT}:layer:AWSLambdaPowertoolsPythonV3-{runtime}-x86_64:{POWERTOOLS_LAYER_VERSION}"
    return lambda_.LayerVersion.from_layer_version_arn(scope, construct_id, arn)
