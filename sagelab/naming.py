"""Names of an environment's resources, in one place, importable without CDK.

The stacks name their resources with these (and build ARNs from them with CDK tokens:
`stacks/naming.py`); the CLI and the lab find the deployed resources with the same names.

Every name of environment (or student) `<id>` is `sagelab-<id>--<suffix>`, and every role and
guardrail of `<id>` is scoped to `sagelab-<id>--*` (docs/decisions/0012). Ids may contain single
hyphens but never `--` and never end with `-`, so no id's scope matches another id's names:
if `sagelab-A--x` were `sagelab-B--y` for ids A shorter than B, B would start with `A` followed by
`--` (B contains `--`) or by a single final `-` (B ends with `-`), both impossible. IAM's `*`
spans any characters, but it comes after the separator, so it never reaches back into the id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Self

PROJECT = "sagelab"  # the first word of every name, and the `project` tag
# Between an id and the rest of a name; ids cannot contain it (nor end with a hyphen).
SEPARATOR = "--"
MAX_ID_LENGTH = 20
# An environment in the config starts with a letter; a student id (a roster row) may start with a
# digit. Both: runs of lowercase letters and digits joined by single hyphens, at most
# MAX_ID_LENGTH characters (checked apart: pydantic's regex engine has no look-ahead).
ENVIRONMENT_ID = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
STUDENT_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ID_RULE = f"lowercase letters, digits and single hyphens (not `{SEPARATOR}`), ending with a letter or digit, at most {MAX_ID_LENGTH} characters"
# The class-wide resources of a classroom (shared web ACL, dashboard) are named as a tenant of
# their own, so no student or environment may take this id.
CLASS_ID = "class"


def is_student_id(text: str) -> bool:
    return len(text) <= MAX_ID_LENGTH and STUDENT_ID.match(text) is not None


@dataclass(frozen=True)
class ResourceNames:
    environment: str  # the environment's name in the config, or a student id

    @classmethod
    def of(cls, environment: str) -> Self:
        """The names of environment `environment` (a config environment or a student id)."""
        return cls(environment)

    @property
    def scope(self) -> str:
        """`sagelab-<id>--`: the start of every name of this environment, and nothing else's."""
        return f"{PROJECT}-{self.environment}{SEPARATOR}"

    def name(self, suffix: str) -> str:
        """This environment's name for `suffix` (`sagelab-<id>--<suffix>`)."""
        return f"{self.scope}{suffix}"

    def pattern(self, suffix: str = "") -> str:
        """The IAM wildcard for this environment's names that start with `suffix` (all of them by default)."""
        return f"{self.name(suffix)}*"

    @property
    def pipeline(self) -> str:
        return self.name("pipeline")

    @property
    def model_package_group(self) -> str:
        return self.name("models")

    @property
    def endpoint(self) -> str:
        return self.name("endpoint")

    @property
    def notebook(self) -> str:
        return self.name("notebook")

    @property
    def platform_stack(self) -> str:
        return self.name("platform")

    @property
    def serving_stack(self) -> str:
        return self.name("serving")

    @property
    def budget(self) -> str:
        return self.name("monthly")

    @property
    def key_alias(self) -> str:
        return f"alias/{self.name('key')}"

    @property
    def api(self) -> str:
        return self.name("api")

    @property
    def release_stack(self) -> str:
        """The release pipeline's stack, in the account of the environment releases start from."""
        return self.name("release")

    @property
    def release_pipeline(self) -> str:
        return self.name("release")

    def role(self, purpose: str) -> str:
        """A role another account names in its policies (a release's roles), so it needs a name
        known at synth: IAM allows 64 characters."""
        return self.name(purpose)[:64]

    def batch_job(self, stamp: str) -> str:
        """A batch transform job (and its model): SageMaker allows 63 characters."""
        return self.name(f"batch-{stamp}")[:63]

    @property
    def portal_presign_role(self) -> str:
        """In an own-account student's account: the role the class portal assumes to presign the
        student's notebook URL and read their runs, budget and API URL (64-character IAM limit)."""
        return self.name("portal")

    @property
    def user_pool(self) -> str:
        """The class's user pool (of `ResourceNames.of("class")`)."""
        return self.name("users")

    @property
    def portal_api(self) -> str:
        return self.name("portal")

    def portal_function_role(self, region: str) -> str:
        """The class portal function's role (named: own-account students' portal roles trust it by ARN)."""
        return self.name(f"portal-{region}")

    # -- the spending cap (stacks/spend_cap) for an own-account student, in their account --
    @property
    def spend_cap_stack(self) -> str:
        """The stack in an own-account student's account that forwards their SageMaker events to
        the class and holds the role the class's enforcer assumes there."""
        return self.name("spend-cap")

    @property
    def spend_cap_role(self) -> str:
        """The role the class's enforcer assumes in the student's account (named: the enforcer's
        sts:AssumeRole names it by ARN)."""
        return self.name("spend-cap")

    @property
    def spend_events_role(self) -> str:
        """The role the student's forwarding rule puts events to the class's bus with (named: the
        bus policy names it)."""
        return self.name("spend-events")

    @property
    def capped_deny_policy(self) -> str:
        """The class's deny, in the student's own account (a managed policy attaches only in its account)."""
        return self.name("capped-deny")

    # -- the spending cap, of `ResourceNames.of("class")`, in the class account --
    def spend_cap_function_role(self, region: str) -> str:
        """The enforcer's role (named: own-account students' spend-cap roles trust it by ARN)."""
        return self.name(f"spend-cap-{region}")

    @property
    def spend_bus(self) -> str:
        """The class's event bus that own-account students' SageMaker events are forwarded to (per region)."""
        return self.name("spend-cap")
