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

    @property
    def release_stack(self) -> str:
        """The release pipeline's stack, in the account of the environment releases start from."""
        return f"{self.prefix}-release"

    @property
    def release_pipeline(self) -> str:
        return f"{self.prefix}-release"

    def role(self, purpose: str) -> str:
        """A role another account names in its policies (a release's roles), so it needs a name
        known at synth: IAM allows 64 characters."""
        return f"{self.prefix}-{purpose}"[:64]

    def batch_job(self, stamp: str) -> str:
        """A batch transform job (and its model): SageMaker allows 63 characters."""
        return f"{self.prefix}-batch-{stamp}"[:63]
