"""The serving stack's parameters for the model it serves: the interface between the approval
deployer (and the release), which set them from a package's CustomerMetadataProperties (decision
0011), and the units that read them (the endpoint, the front door, the drift check).

CloudFormation names parameters by their logical id, which the deployer's UpdateStack uses: they
are created at the stack's top level, under these ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnCondition, CfnParameter, Fn, Stack

from pipeline_steps import contract
from sagelab.naming import ResourceNames
from stacks.front_door.construct import ServedModelSettings
from stacks.release.promotion import Promotion

MODEL_PACKAGE_PARAMETER = "ModelPackageArn"
# Set by the approval deployer with the package ARN, from the package's CustomerMetadataProperties
# (decision 0011): how the front door speaks to the model and what GET /openapi.json describes.
MODEL_ALGORITHM_PARAMETER = "ModelAlgorithm"
MODEL_PROBLEM_TYPE_PARAMETER = "ModelProblemType"
MODEL_DESCRIPTION_PARAMETER = "ModelDescriptionUri"
MODEL_ALGORITHMS = contract.ALGORITHMS
# The values of `sagelab:problem-type` (evaluate.py writes them); "" for a version registered without one.
MODEL_PROBLEM_TYPES = ("", *contract.PROBLEM_FAMILIES)
# The artifacts bucket's name is CloudFormation's (unknown at synth, and a parameter's pattern cannot
# hold a reference): the pattern pins the key; the front door's IAM (GetObject on this bucket's
# descriptions only), its ARTIFACTS_BUCKET check and the deployer's check pin the bucket.
DESCRIPTION_URI_PATTERN = r"^$|^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/" + contract.DESCRIPTION_KEY_PATTERN.removeprefix("^")


@dataclass(frozen=True)
class ServedModelParameters:
    """The four parameters."""

    model_package: CfnParameter
    algorithm: CfnParameter
    problem_type: CfnParameter
    description_uri: CfnParameter

    @classmethod
    def add_to(cls, stack: Stack, *, names: ResourceNames, default_package_arn: str | None, promotion: Promotion | None) -> ServedModelParameters:
        """`promotion`: the package must be a version of the source environment's group."""
        model_package = CfnParameter(
            stack,
            MODEL_PACKAGE_PARAMETER,
            type="String",
            default=default_package_arn or "",
            # Versions of this environment's own group only: CloudFormation refuses anything else
            # before a resource is touched (the deployer checks the same, and the deployment role
            # may read only this group's packages).
            allowed_pattern=(
                promotion.source_package_pattern()
                if promotion
                else rf"^$|^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{{12}}:model-package/{names.model_package_group}/\d+$"
            ),
            description="Model package version to serve; empty until one is approved (the approval deployer sets it).",
        )
        algorithm = CfnParameter(
            stack,
            MODEL_ALGORITHM_PARAMETER,
            type="String",
            default=contract.DEFAULT_ALGORITHM,
            allowed_values=list(MODEL_ALGORITHMS),
            description="Algorithm of the served model (sagelab:algorithm): the format the front door speaks to its container.",
        )
        problem_type = CfnParameter(
            stack,
            MODEL_PROBLEM_TYPE_PARAMETER,
            type="String",
            default="",
            allowed_values=list(MODEL_PROBLEM_TYPES),
            description="Problem type of the served model (sagelab:problem-type): binary, multiclass, regression or clustering; empty: none recorded.",
        )
        description_uri = CfnParameter(
            stack,
            MODEL_DESCRIPTION_PARAMETER,
            type="String",
            default="",
            allowed_pattern=DESCRIPTION_URI_PATTERN,
            description="s3:// URI of the served model's model_description.json in this environment's artifacts bucket (sagelab:model-description); empty: none.",
        )
        return cls(model_package, algorithm, problem_type, description_uri)

    def add_has_model(self, stack: Stack) -> CfnCondition:
        """`HasModel`: the package parameter is not empty (the endpoint's resources exist only then)."""
        return CfnCondition(stack, "HasModel", expression=Fn.condition_not(Fn.condition_equals(self.model_package.value_as_string, "")))

    def served_model(self) -> ServedModelSettings:
        return ServedModelSettings(self.algorithm.value_as_string, self.problem_type.value_as_string, self.description_uri.value_as_string)
