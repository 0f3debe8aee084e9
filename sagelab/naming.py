"""Names of an environment's resources, in one place, importable without CDK.

The stacks name their resources with these (and build ARNs from them with CDK tokens:
`stacks/naming.py`); the CLI and the lab find the deployed resources with the same names. Every
name starts with `sagelab-<environment>-`, which roles and guardrails also scope to.
"""

from __future__ import annotations

from dataclasses import dataclass

PROJECT = "sagelab"  # the first word of every name, and the `project` tag


@dataclass(frozen=True)
class ResourceNames:
    prefix: str

    @classmethod
    def of(cls, environment: str) -> ResourceNames:
        """The names of environment `environment` (a config environment or a student id)."""
        return cls(f"{PROJECT}-{environment}")

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

    @property
    def budget(self) -> str:
        return f"{self.prefix}-monthly"

    def batch_job(self, stamp: str) -> str:
        """A batch transform job (and its model): SageMaker allows 63 characters."""
        return f"{self.prefix}-batch-{stamp}"[:63]

    @property
    def portal_presign_role(self) -> str:
        """In an own-account student's account: the role the class portal assumes to presign the
        student's notebook URL and read their runs, budget and API URL (64-character IAM limit)."""
        return f"{self.prefix}-portal"

    @property
    def user_pool(self) -> str:
        """The class's user pool (of `ResourceNames.of("class")`)."""
        return f"{self.prefix}-users"

    @property
    def portal_api(self) -> str:
        return f"{self.prefix}-portal"

    def portal_function_role(self, region: str) -> str:
        """The class portal function's role (named: own-account students' portal roles trust it by ARN)."""
        return f"{self.prefix}-portal-{region}"
