"""Account quotas counted at synth (sagelab/quotas.py, stacks/app/account_quotas.py): issue #20's first
deploy into a new account, issue #25's class that fails synth naming the quota to raise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sagelab.config import ConfigError, load_config
from sagelab.quotas import NEW_ACCOUNT_LAMBDA_CONCURRENCY, QUOTAS, QuotaError, StackResources, check_quotas, demand_of
from tests.conftest import SynthResult


def _build(tmp_path: Path, config_text: str, roster: str | None = None, outdir: str = "cdk.out") -> None:
    from sagelab.settings import cdk_context
    from stacks.app.builder import build_app
    from stacks.app.validation import new_app

    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    context: dict[str, Any] = {**cdk_context(), "config": str(config)}
    if roster is not None:
        (tmp_path / "roster.csv").write_text(roster)
        context["roster"] = str(tmp_path / "roster.csv")
    build_app(new_app(context, str(tmp_path / outdir)))


def _as_stacks(synthesized: SynthResult) -> list[StackResources]:
    return [
        StackResources(name, "", "us-east-1", tuple((r["Type"], r.get("Properties", {})) for r in template["Resources"].values()))
        for name, template in synthesized.templates.items()
    ]


def test_the_default_app_fits_a_new_account(synthesized: SynthResult) -> None:
    # A new account: Lambda concurrency quota 10, of which 100 must stay unreserved: only a pool
    # with no reservation at all fits. Every quota else at its default.
    stacks = _as_stacks(synthesized)
    assert sum(demand_of(stack)["lambda_concurrent_executions"] for stack in stacks) == 0
    check_quotas(stacks, {"lambda_concurrent_executions": NEW_ACCOUNT_LAMBDA_CONCURRENCY})


def test_a_reservation_in_a_new_account_fails_naming_the_quota(synthesized: SynthResult) -> None:
    # The planted negative: the same templates with the front door's former default of 20.
    stacks = _as_stacks(synthesized)
    serving = next(stack for stack in stacks if stack.stack_name.endswith("-serving"))
    resources = tuple(
        (resource_type, {**props, "ReservedConcurrentExecutions": 20} if resource_type == "AWS::Lambda::Function" else props)
        for resource_type, props in serving.resources
    )
    planted = [StackResources(serving.stack_name, "", "us-east-1", resources), *(s for s in stacks if s is not serving)]
    with pytest.raises(QuotaError) as error:
        check_quotas(planted, {"lambda_concurrent_executions": NEW_ACCOUNT_LAMBDA_CONCURRENCY})
    message = str(error.value)
    assert "Lambda concurrent executions (Service Quotas L-B99A9384)" in message
    assert "+ 100 Lambda keeps unreserved" in message and "> 10 (declared in quotas:)" in message
    assert "sagelab-dev--serving" in message


@pytest.mark.slow  # two class synths: the refusal and the raised quota that fixes it
def test_a_class_whose_reservations_exceed_the_pool_fails_synth(tmp_path: Path) -> None:
    # Three students reserving 20 each take 60 + 100 unreserved = 160 from a pool declared at 150.
    roster = "student_id,email\nana,ana@example.edu\nben,ben@example.edu\ncy,cy@example.edu\n"
    config = "defaults:\n  serving: {front_door_reserved_concurrency: 20}\nquotas:\n  lambda_concurrent_executions: 150\n"
    with pytest.raises(ConfigError) as error:
        _build(tmp_path, config, roster)
    message = str(error.value)
    assert "Lambda concurrent executions (Service Quotas L-B99A9384): reserved 60" in message
    assert "= 160 > 150" in message and "lambda_concurrent_executions: 160" in message
    # Raising the quota as the message says lets the same class synthesize.
    _build(tmp_path, config.replace("150", "160"), roster, outdir="raised")


def test_every_counted_quota_fails_beyond_its_limit_and_not_at_it() -> None:
    def stack(name: str, *resources: tuple[str, dict[str, Any]]) -> StackResources:
        return StackResources(name, "111122223333", "us-east-1", resources)

    cases = {
        "iam_roles": ("AWS::IAM::Role", {}),
        "kms_keys": ("AWS::KMS::Key", {}),
        "rest_apis": ("AWS::ApiGateway::RestApi", {}),
        "usage_plans": ("AWS::ApiGateway::UsagePlan", {}),
        "api_keys": ("AWS::ApiGateway::ApiKey", {}),
        "serverless_endpoints": ("AWS::SageMaker::EndpointConfig", {"ProductionVariants": [{"ServerlessConfig": {"MaxConcurrency": 1}}]}),
        "notebook_instances.ml.t3.medium": ("AWS::SageMaker::NotebookInstance", {"InstanceType": "ml.t3.medium"}),
        "endpoint_instances.ml.m5.large": (
            "AWS::SageMaker::EndpointConfig",
            {"ProductionVariants": [{"InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]},
        ),
    }
    for key, resource in cases.items():
        three = [stack(f"s{i}", resource) for i in range(3)]
        declared = {key: 3, "cloudformation_stacks": 10}
        check_quotas(three, declared)  # at the limit: fine
        with pytest.raises(QuotaError, match=rf"> 2 \(declared in quotas:\).*{key}: 3"):
            check_quotas(three, {**declared, key: 2})
    # Stacks count per account and region; another region has its own.
    spread = [StackResources(f"s{i}", "111122223333", f"us-east-{1 + i % 2}", ()) for i in range(4)]
    check_quotas(spread, {"cloudformation_stacks": 2})
    with pytest.raises(QuotaError, match=r"account 111122223333 us-east-1: Stack count \(Service Quotas L-0485CB21\): 3 needed"):
        check_quotas([*spread, StackResources("s9", "111122223333", "us-east-1", ())], {"cloudformation_stacks": 2})
    # IAM roles are global: two regions of one account share the quota.
    roles = [StackResources(f"r{i}", "111122223333", f"us-east-{1 + i}", (("AWS::IAM::Role", {}),)) for i in range(2)]
    with pytest.raises(QuotaError, match=r"account 111122223333: Roles per account"):
        check_quotas(roles, {"iam_roles": 1})


def test_managed_policies_count_per_role_not_per_account() -> None:
    """The class portal's function role takes a managed policy per 12 shared-account students: past
    IAM's 10 a class fails synth naming the quota (not a limit of the portal's own)."""

    def policies(stack: str, role: str, count: int) -> StackResources:
        return StackResources(stack, "111122223333", "us-east-1", tuple(("AWS::IAM::ManagedPolicy", {"Roles": [{"Ref": role}]}) for _ in range(count)))

    check_quotas([policies("class", "PortalRole", 10), policies("other", "PortalRole", 10)])  # 10 each, in two stacks: fine
    with pytest.raises(
        QuotaError, match=r"Managed policies per role \(Service Quotas L-0DA4ABF3\): 11 attached to class's role PortalRole > 10 \(AWS's default\)"
    ):
        check_quotas([policies("class", "PortalRole", 11)])
    check_quotas([policies("class", "PortalRole", 11)], {"iam_managed_policies_per_role": 20})
    # Ten roles with one each are not one role with ten.
    check_quotas([StackResources("s", "", "us-east-1", tuple(("AWS::IAM::ManagedPolicy", {"Roles": [{"Ref": f"R{i}"}]}) for i in range(30)))])


def test_default_quotas_have_sources_and_per_type_quotas_are_checked_only_when_declared() -> None:
    for quota in QUOTAS:
        assert quota.source.startswith("https://"), quota
        assert (quota.default is None) == quota.per_instance_type, quota
    many = [StackResources(f"s{i}", "", "us-east-1", (("AWS::SageMaker::NotebookInstance", {"InstanceType": "ml.t3.medium"}),)) for i in range(500)]
    check_quotas(many)  # no single default to hold it to


def test_a_bad_declared_quota_names_its_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("environments:\n  dev: {}\nquotas:\n  lambda_concurrent_executions: 2000\n  lambda_concurency: 5\n")
    with pytest.raises(ConfigError, match=r"c.yaml line 5: quotas.lambda_concurency: unknown quota \(allowed: lambda_concurrent_executions, "):
        load_config({}, config)
    config.write_text("quotas:\n  notebook_instances.ml.t3.medium: -1\n")
    with pytest.raises(ConfigError, match=r"line 2: quotas.notebook_instances.ml.t3.medium: -1 is not valid \(expected a positive integer"):
        load_config({}, config)
    config.write_text("quotas:\n  lambda_concurrent_executions: 2000\n  notebook_instances.ml.t3.medium: 60\n")
    assert load_config({}, config).quotas == (("lambda_concurrent_executions", 2000), ("notebook_instances.ml.t3.medium", 60))


def test_an_environment_built_through_the_constructs_is_counted_as_its_template_says(tmp_path: Path, synthesized: SynthResult) -> None:
    # Stacks built through the constructs are read from their CloudFormation resources before
    # synth; the counts must be what the synthesized templates hold.
    from aws_cdk import Stack

    from sagelab.settings import cdk_context
    from stacks.app.account_quotas import stack_resources
    from stacks.app.builder import build_app
    from stacks.app.validation import new_app

    app = build_app(new_app(cdk_context(), str(tmp_path / "cdk.out")))
    built = {s.stack_name: demand_of(stack_resources(s)) for s in app.node.children if isinstance(s, Stack)}
    synthesized_demand = {s.stack_name: demand_of(s) for s in _as_stacks(synthesized)}
    assert built == synthesized_demand and built["sagelab-dev--platform"]["iam_roles"] > 0


def test_an_environment_reserving_in_a_new_account_fails_synth(tmp_path: Path) -> None:
    config = "environments:\n  dev:\n    serving: {front_door_reserved_concurrency: 5}\nquotas:\n  lambda_concurrent_executions: 10\n"
    with pytest.raises(
        ConfigError, match=r"Lambda concurrent executions \(Service Quotas L-B99A9384\): reserved 5 \(sagelab-dev--serving 5\) \+ 100 .* = 105 > 10"
    ):
        _build(tmp_path, config)


def test_a_stamped_student_is_counted_as_its_own_stamped_template_says(tmp_path: Path) -> None:
    """Stamped copies are counted from their template environment's template, parsed once per
    shape: the counts must be what each student's stamped template holds (an own-account student
    in another region included), and a placeholder in a property a quota reads sends the count
    back to the stamped template itself."""
    from aws_cdk import App, Token

    from sagelab.settings import cdk_context
    from stacks.app.account_quotas import _placeholder_free_resources, _template_resources, stamped_stack_resources
    from stacks.app.builder import build_app
    from stacks.app.classroom import TEMPLATE_STUDENT_ID, StampedStack
    from stacks.app.validation import new_app

    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,email,account_id,region\nana,ana@x.edu,,\nana-2,b@x.edu,,\nomar,o@x.edu,210987654321,eu-west-1\n")
    config = tmp_path / "class.yaml"
    config.write_text("environments:\n  dev: {account: '123456789012'}\n")
    app = build_app(new_app({**cdk_context(), "roster": str(roster), "config": str(config)}, str(tmp_path / "cdk.out")))
    stamped = [stack for stack in app.node.children if isinstance(stack, StampedStack)]
    assert len(stamped) == 6
    for stack in stamped:
        assert _placeholder_free_resources(stack.template_environment_text) is not None, "SageLab's templates take the shortcut"
        counted = stamped_stack_resources(stack)
        assert demand_of(counted) == demand_of(StackResources(counted.stack_name, counted.account, counted.region, _template_resources(stack.template_text)))
        assert counted.stack_name == stack.stack_name
        assert counted.account == ("" if Token.is_unresolved(stack.account) else stack.account) and counted.region == stack.region

    notebook = {"Type": "AWS::SageMaker::NotebookInstance", "Properties": {"InstanceType": f"ml.{TEMPLATE_STUDENT_ID}"}}
    planted = StampedStack(App(), "planted")
    planted.template_environment_text = json.dumps({"Resources": {"N": notebook}})
    planted.template_text = planted.template_environment_text.replace(TEMPLATE_STUDENT_ID, "t3.medium")
    assert demand_of(stamped_stack_resources(planted))["notebook_instances.ml.t3.medium"] == 1
