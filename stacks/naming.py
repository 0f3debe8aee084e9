"""Names of an environment's SageMaker resources, in one place.

Roles are scoped to ARNs built from these names, so a role can name the pipeline, the model
package group or the endpoint without a reference to the construct (and without a cross-stack
export between the platform and serving stacks).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws


@dataclass(frozen=True)
class ResourceNames:
    prefix: str

    @property
    def pipeline(self) -> str:
        return f"{self.prefix}-pipeline"

    @property
    def model_package_group(self) -> str:
        return f"{self.prefix}-models"

    @property
    def endpoint(self) -> str:
        return f"{self.prefix}-endpoint"

    @property
    def notebook(self) -> str:
        return f"{self.prefix}-notebook"

    @property
    def platform_stack(self) -> str:
        return f"{self.prefix}-platform"

    @property
    def serving_stack(self) -> str:
        return f"{self.prefix}-serving"

    # -- ARNs (tokens for partition/region/account; resolved by CloudFormation) --------------
    @staticmethod
    def sagemaker_arn(resource: str) -> str:
        return f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"

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
