"""Every own-account student's account bootstrapped at once (stacks/bootstrap): the StackSet
synthesizes, and its execution policy is sufficient for every resource type of the student
templates (the CloudFormation registry's handler permissions), derived in one place, without
AdministratorAccess; with a planted negative case."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from sagelab.cloud_assembly import assembly_stacks
from sagelab.registry_permissions import HANDLERS, IAM_POLICY_LIMIT, execution_actions, handler_permissions
from stacks.bootstrap.construct import BOOTSTRAP_TEMPLATE, EXECUTION_POLICY, EXECUTION_ROLE, bootstrap_stack_name, execution_policy
from tests.conftest import SynthResult, synth
from tests.iam_policy import Statement, is_allowed

OU = "ou-ab12-cd34ef56"


@pytest.fixture(scope="module")
def own_account_class(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    root = tmp_path_factory.mktemp("bootstrap-class")
    (root / "roster.csv").write_text("student_id,email,account_id,region\nana,ana@example.edu,,\nbo,bo@example.edu,210987654321,eu-west-1\n")
    # The class account is named: bo's spending cap acts from it (stacks/spend_cap/link.py).
    (root / "class.yaml").write_text(
        f"environments:\n  dev: {{account: '123456789012'}}\nclassroom:\n  own_account_waf: true\n  bootstrap_organizational_units: [{OU}]\n"
    )
    return synth(root / "cdk.out", {"roster": str(root / "roster.csv"), "config": str(root / "class.yaml")})


def _stack_set(result: SynthResult) -> dict[str, Any]:
    (stack_set,) = (r["Properties"] for r in result.template(bootstrap_stack_name())["Resources"].values() if r["Type"] == "AWS::CloudFormation::StackSet")
    return stack_set


def _execution_statements(body: dict[str, Any]) -> list[Statement]:
    role = body["Resources"][EXECUTION_ROLE]["Properties"]
    statements = []
    for reference in role["ManagedPolicyArns"]:
        policy = body["Resources"][reference["Ref"]]
        assert policy["Type"] == "AWS::IAM::ManagedPolicy"
        statements += [Statement.from_json(s, reference["Ref"]) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    return statements


def _student_types(result: SynthResult, student: str) -> set[str]:
    return {r["Type"] for name, t in result.templates.items() if name.startswith(f"sagelab-{student}--") for r in t["Resources"].values()}


def _insufficient(statements: list[Statement], resource_types: set[str]) -> dict[str, list[str]]:
    missing = {}
    for resource_type in sorted(resource_types):
        lacking = sorted(a for a in handler_permissions(resource_type, HANDLERS) if not is_allowed(statements, a, "*"))
        if lacking:
            missing[resource_type] = lacking
    return missing


def test_the_stack_set_bootstraps_the_ou_with_the_pinned_cdk_template_trusting_the_admin(own_account_class: SynthResult) -> None:
    stack_set = _stack_set(own_account_class)
    assert stack_set["PermissionModel"] == "SERVICE_MANAGED" and stack_set["AutoDeployment"]["Enabled"] is True
    (instances,) = stack_set["StackInstancesGroup"]
    assert instances["DeploymentTargets"]["OrganizationalUnitIds"] == [OU] and instances["Regions"] == ["eu-west-1"]
    assert stack_set["Parameters"] == [{"ParameterKey": "TrustedAccounts", "ParameterValue": {"Ref": "AWS::AccountId"}}]
    body = json.loads(stack_set["TemplateBody"])
    cdk = yaml.safe_load(BOOTSTRAP_TEMPLATE.read_text())
    # The CLI's own template: every resource, parameter and output kept as it is, except the role's policies.
    assert set(cdk["Resources"]) <= set(body["Resources"]) and body["Parameters"] == cdk["Parameters"] and body["Outputs"] == cdk["Outputs"]
    for logical_id, resource in cdk["Resources"].items():
        if logical_id != EXECUTION_ROLE:
            assert body["Resources"][logical_id] == resource, logical_id
    assert "AdministratorAccess" not in json.dumps(body["Resources"][EXECUTION_ROLE]) and "AdministratorAccess" in json.dumps(cdk["Resources"][EXECUTION_ROLE])
    for reference in body["Resources"][EXECUTION_ROLE]["Properties"]["ManagedPolicyArns"]:
        assert len(json.dumps(body["Resources"][reference["Ref"]]["Properties"]["PolicyDocument"], separators=(",", ":"))) <= IAM_POLICY_LIMIT


def test_the_execution_policy_is_sufficient_for_every_resource_type_of_the_student_templates(own_account_class: SynthResult) -> None:
    body = json.loads(_stack_set(own_account_class)["TemplateBody"])
    statements = _execution_statements(body)
    types = _student_types(own_account_class, "bo")
    assert {"AWS::SageMaker::NotebookInstance", "AWS::IAM::Role", "AWS::WAFv2::WebACL", "Custom::CDKBucketDeployment"} <= types
    assert _insufficient(statements, types) == {}
    # The checked-in policy is the derivation over the types it records, and records every type the templates hold.
    recorded = execution_policy()
    assert types <= set(recorded["resource_types"]), f"new resource types {sorted(types - set(recorded['resource_types']))}: re-derive {EXECUTION_POLICY}"
    assert recorded["actions"] == execution_actions(recorded["resource_types"]), f"cfn-lint's registry data changed: re-derive {EXECUTION_POLICY}"


def test_a_policy_without_one_handler_permission_is_caught(own_account_class: SynthResult) -> None:
    # Planted negative: the same policies without sagemaker:CreateNotebookInstance.
    body = json.loads(_stack_set(own_account_class)["TemplateBody"])
    weakened = [
        Statement(effect=s.effect, actions=tuple(a for a in s.actions if a != "sagemaker:CreateNotebookInstance"), resources=s.resources)
        for s in _execution_statements(body)
    ]
    assert _insufficient(weakened, {"AWS::SageMaker::NotebookInstance"}) == {"AWS::SageMaker::NotebookInstance": ["sagemaker:CreateNotebookInstance"]}


def test_own_account_students_deploy_after_the_bootstrap(own_account_class: SynthResult) -> None:
    stacks = {stack.artifact_id: stack for stack in assembly_stacks(own_account_class.outdir)}
    for stack in ("sagelab-bo--platform", "sagelab-bo--serving"):
        assert bootstrap_stack_name() in stacks[stack].dependencies
    assert bootstrap_stack_name() not in stacks["sagelab-ana--platform"].dependencies


def test_the_bootstrap_stack_and_the_template_it_deploys_have_no_cfn_lint_errors(own_account_class: SynthResult) -> None:
    from tests.test_cfn_lint import lint_errors

    assert lint_errors(own_account_class.template(bootstrap_stack_name())) == []
    assert lint_errors(json.loads(_stack_set(own_account_class)["TemplateBody"]), region="eu-west-1") == []
