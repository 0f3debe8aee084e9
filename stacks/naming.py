"""The ARNs of an environment's SageMaker resources, built from the names in `sagelab.naming`.

Roles are scoped to ARNs built from these names, so a role can name the pipeline, the model
package group or the endpoint without a reference to the construct (and without a cross-stack
export between the platform and serving stacks). Partition, region and account are CDK tokens,
resolved by CloudFormation; the names themselves are plain strings shared with the CLI.
"""

from __future__ import annotations

from aws_cdk import Aws

from sagelab import naming

# CloudFormation's pseudo parameters, as CDK tokens. Each `Aws.X` read is a jsii round trip to Node
# (~0.35 ms of CPU) that returns the same token every time; ARNs built per role, per student and per
# log group read them about a thousand times in a class's synth. Read once here.
ACCOUNT_ID: str = Aws.ACCOUNT_ID
PARTITION: str = Aws.PARTITION
REGION: str = Aws.REGION
URL_SUFFIX: str = Aws.URL_SUFFIX


class ResourceArns(naming.ResourceNames):
    """`sagelab.naming.ResourceNames` (the names) plus their ARNs in the deploying account."""

    @staticmethod
    def sagemaker_arn(resource: str) -> str:
        return f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT_ID}:{resource}"

    def pipeline_arn(self) -> str:
        return self.sagemaker_arn(f"pipeline/{self.pipeline}")

    def model_package_group_arn(self) -> str:
        return self.sagemaker_arn(f"model-package-group/{self.model_package_group}")

    def model_packages_arn(self) -> str:
        return self.sagemaker_arn(f"model-package/{self.model_package_group}/*")

    def endpoint_arn(self) -> str:
        return self.sagemaker_arn(f"endpoint/{self.endpoint}")

    def notebook_arn(self) -> str:
        return self.sagemaker_arn(f"notebook-instance/{self.notebook}")
