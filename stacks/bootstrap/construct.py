"""StudentAccountsBootstrap: the CDK bootstrap of every own-account student's account in one step.

A CloudFormation StackSet with service-managed permissions (AWS Organizations) deploys the CDK
bootstrap template of the pinned CLI (`node_modules/aws-cdk/lib/api/bootstrap/bootstrap-template.yaml`,
read at synth, not rewritten) to every account of the given organizational units, automatically to
accounts added later, with two changes:

  - `TrustedAccounts` is the admin's account (the account this stack deploys to), so the admin can
    deploy the students' stacks from there, as `cdk bootstrap --trust ADMIN` does;
  - the CloudFormation execution role gets SageLab's own execution policies in place of
    AdministratorAccess: exactly the actions CloudFormation's registry lists for creating, updating
    and deleting every resource type of the student templates (execution_policy.json, derived by
    sagelab/registry_permissions.py and checked against the templates by tests/test_bootstrap.py).

Deploy it from the organization's management account or a delegated administrator for StackSets
(`call_as`); trusted access for CloudFormation StackSets must be on in Organizations.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from aws_cdk import aws_cloudformation as cloudformation
from constructs import Construct

from sagelab.naming import CLASS_ID, ResourceNames
from sagelab.registry_permissions import policy_documents
from stacks.naming import ACCOUNT_ID

UNIT_DIR = Path(__file__).resolve().parent
EXECUTION_POLICY = UNIT_DIR / "execution_policy.json"
BOOTSTRAP_TEMPLATE = UNIT_DIR.parent.parent / "node_modules" / "aws-cdk" / "lib" / "api" / "bootstrap" / "bootstrap-template.yaml"
EXECUTION_ROLE = "CloudFormationExecutionRole"
TEMPLATE_BODY_LIMIT = 51_200  # bytes of a StackSet's TemplateBody
MAX_POLICIES_PER_ROLE = 10  # IAM's default quota of managed policies attached to a role


def bootstrap_stack_name() -> str:
    """The class-wide stack (the class is a tenant of its own) that holds the StackSet."""
    return ResourceNames.of(CLASS_ID).name("bootstrap")


def execution_policy() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXECUTION_POLICY.read_text())
    return data


def student_bootstrap_template(template_path: Path = BOOTSTRAP_TEMPLATE, actions: Sequence[str] | None = None) -> dict[str, Any]:
    """The CDK bootstrap template with SageLab's execution policies in place of AdministratorAccess."""
    if not template_path.is_file():
        raise FileNotFoundError(f"{template_path}: the CDK CLI's bootstrap template is missing; run `make install` (npm ci) first")
    template = copy.deepcopy(yaml.safe_load(template_path.read_text()))
    documents = policy_documents(actions if actions is not None else execution_policy()["actions"])
    if len(documents) > MAX_POLICIES_PER_ROLE:
        raise ValueError(f"the execution policy needs {len(documents)} managed policies; a role takes {MAX_POLICIES_PER_ROLE}")
    references = []
    for position, document in enumerate(documents, start=1):
        logical_id = f"SageLabExecutionPolicy{position}"
        template["Resources"][logical_id] = {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {
                "Description": f"SageLab: what CloudFormation needs for the student templates' resources ({position}/{len(documents)})",
                "PolicyDocument": document,
            },
        }
        references.append({"Ref": logical_id})
    template["Resources"][EXECUTION_ROLE]["Properties"]["ManagedPolicyArns"] = references
    template["Description"] = f"{template.get('Description', 'CDK bootstrap')} (SageLab: execution policies derived from the student templates)"
    return template


class StudentAccountsBootstrap(Construct):
    """Props:
    organizational_unit_ids: the OUs holding the students' accounts (every account in them, and
        every account moved in later, is bootstrapped).
    regions: the regions the students deploy to.
    call_as: SELF from the management account, DELEGATED_ADMIN from a delegated administrator.

    Exposes `stack_set` and `template` (the bootstrap template as deployed).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        organizational_unit_ids: Sequence[str],
        regions: Sequence[str],
        call_as: Literal["SELF", "DELEGATED_ADMIN"] = "SELF",
    ) -> None:
        super().__init__(scope, construct_id)
        if not organizational_unit_ids or not regions:
            raise ValueError("a student bootstrap needs at least one organizational unit and one region")
        self.template = student_bootstrap_template()
        body = json.dumps(self.template, separators=(",", ":"))
        if len(body.encode()) > TEMPLATE_BODY_LIMIT:
            raise ValueError(f"the bootstrap template is {len(body.encode())} bytes; a StackSet's TemplateBody takes {TEMPLATE_BODY_LIMIT}")
        self.stack_set = cloudformation.CfnStackSet(
            self,
            "StackSet",
            stack_set_name=bootstrap_stack_name(),
            description="SageLab: the CDK bootstrap of every own-account student's account, trusting the admin account",
            permission_model="SERVICE_MANAGED",
            auto_deployment=cloudformation.CfnStackSet.AutoDeploymentProperty(enabled=True, retain_stacks_on_account_removal=False),
            call_as=call_as,
            capabilities=["CAPABILITY_NAMED_IAM"],
            managed_execution={"Active": True},
            operation_preferences=cloudformation.CfnStackSet.OperationPreferencesProperty(
                failure_tolerance_percentage=10, max_concurrent_percentage=100, region_concurrency_type="PARALLEL"
            ),
            parameters=[cloudformation.CfnStackSet.ParameterProperty(parameter_key="TrustedAccounts", parameter_value=ACCOUNT_ID)],
            stack_instances_group=[
                cloudformation.CfnStackSet.StackInstancesProperty(
                    deployment_targets=cloudformation.CfnStackSet.DeploymentTargetsProperty(organizational_unit_ids=list(organizational_unit_ids)),
                    regions=list(regions),
                )
            ],
            template_body=body,
        )
