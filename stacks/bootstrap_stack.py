"""StudentBootstrapStack: `sagelab-class--bootstrap`, in the admin's account (stacks/bootstrap/)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from aws_cdk import Environment, Stack, Tags
from constructs import Construct

from stacks.bootstrap.construct import StudentAccountsBootstrap, bootstrap_stack_name


class StudentBootstrapStack(Stack):
    """`sagelab-class--bootstrap`, in the admin's account: only composes StudentAccountsBootstrap."""

    def __init__(
        self,
        scope: Construct,
        *,
        account: str | None,
        region: str,
        organizational_unit_ids: Sequence[str],
        regions: Sequence[str],
        call_as: Literal["SELF", "DELEGATED_ADMIN"],
        tags: dict[str, str],
    ) -> None:
        super().__init__(
            scope,
            bootstrap_stack_name(),
            stack_name=bootstrap_stack_name(),
            env=Environment(account=account, region=region),
            description="SageLab class: the CDK bootstrap of every own-account student's account (a service-managed StackSet)",
        )
        self.bootstrap = StudentAccountsBootstrap(self, "StudentAccounts", organizational_unit_ids=organizational_unit_ids, regions=regions, call_as=call_as)
        for key, value in tags.items():
            Tags.of(self).add(key, value)
