"""The cost model (sagelab/costs.py, bench/class_cost.py): the resource counts it relies on, pinned
on the synthesized templates, and the per-account free allowances applied once per account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagelab.cloud_assembly import assembly_stacks
from sagelab.config import load_config
from sagelab.costs import DAYS_PER_MONTH, SHARED, Resources, count_resources, environment_of, load_prices, price_environments
from sagelab.roster import classroom_config, parse_roster
from tests.conftest import SHARED_CLASS_STUDENTS, SynthResult

# What one environment keeps (and pays for) while nobody works. A change here changes the bill:
# update the README's cost table with `bench/class_cost.py --class 40` when it does.
DEV_ENVIRONMENT = {
    "kms_keys": 1,
    "web_acls": 1,
    "waf_rules": 4,
    "dashboards": 1,
    "alarm_metrics": 7,  # 5 serving alarms + the drift check's 2
    "budgets": 0,
    "notebook_volume_gb": 10,
    "endpoint_instances": 1,
}
# A student in the class account: the class's web ACL and dashboard are shared (ClassStack), no
# alarms (nobody acts on a serverless student endpoint's), a 5 GB notebook volume and a budget.
STUDENT = {"kms_keys": 1, "web_acls": 0, "waf_rules": 0, "dashboards": 0, "alarm_metrics": 0, "budgets": 1, "notebook_volume_gb": 5, "endpoint_instances": 0}
CLASS_WIDE = {"kms_keys": 1, "web_acls": 1, "waf_rules": 4, "dashboards": 1, "alarm_metrics": 0, "budgets": 0, "notebook_volume_gb": 0, "endpoint_instances": 0}


def test_every_price_names_its_source() -> None:
    prices = load_prices()
    assert {"kms_key", "waf_web_acl", "waf_rule", "cloudwatch_dashboard", "cloudwatch_alarm_metric", "budget", "sagemaker_ml_storage"} <= set(prices)
    for price in prices.values():
        assert price.usd > 0 and price.source.startswith("https://"), price


def test_a_malformed_price_table_is_an_error() -> None:
    with pytest.raises(ValueError, match="could not convert"):
        load_prices("item,unit,usd,free_per_account,source\nkms_key,key-month,one dollar,0,https://x\n")


def test_the_dev_environment_counts(synthesized: SynthResult) -> None:
    (cost,) = price_environments(assembly_stacks(synthesized.outdir))
    assert cost.environment == "dev"
    assert cost.resources.as_row() == DEV_ENVIRONMENT
    # A real-time endpoint once a model is deployed: one ml.m5.large around the clock.
    assert cost.deployed_usd_per_day - cost.idle_usd_per_day == pytest.approx(0.115 * 24)


def test_each_student_counts_and_the_class_shares_the_rest(shared_class: SynthResult) -> None:
    stacks = assembly_stacks(shared_class.outdir)
    class_wide = Resources()
    for stack in stacks:
        if environment_of(stack) == SHARED:
            count_resources(stack.template(), class_wide)
    assert class_wide.as_row() == CLASS_WIDE
    costs = price_environments(stacks)
    assert sorted(cost.environment for cost in costs) == list(SHARED_CLASS_STUDENTS)
    for cost in costs:
        assert cost.resources.as_row() == STUDENT
        assert cost.deployed_usd_per_day == cost.idle_usd_per_day  # serverless: nothing runs at rest
    # By hand, per student per month: own key $1 + 5 GB notebook volume x $0.14, plus a third of the
    # class's web ACL $5 + 4 rules $4 + its log key $1 (its one dashboard is within the account's
    # free 3); per day, 3 budgets less 2 free = 1 x $0.02 over 3 students.
    # The spending cap's own running cost: its reconciliation every 10 minutes (144 runs a day) at
    # 256 MB for about 2 s, one request each, one record read and (a serverless endpoint each, at
    # most) one CloudWatch metric request per student (and the class).
    assert class_wide.scheduled_runs_per_day == 144 and class_wide.scheduled_memory_mb == 256
    cap_per_day = 144 * (0.20 / 1e6 + 0.0000166667 * 0.25 * 2 + 0.125 / 1e6 * 4 + 0.01 / 1000 * 4)
    expected = (1 + 0.7 + (5 + 4 + 1) / 3) / DAYS_PER_MONTH + 0.02 / 3 + cap_per_day / 3
    assert costs[0].idle_usd_per_day == pytest.approx(expected)
    assert cap_per_day == pytest.approx(0.0071, abs=1e-4)  # about 21 cents a month for the whole class


def test_the_bench_prints_the_class_against_the_goal(shared_class: SynthResult, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("class_cost", Path(__file__).resolve().parent.parent / "bench" / "class_cost.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    exit_code = bench.main([str(shared_class.outdir)])
    out = capsys.readouterr().out
    assert exit_code == 0 and "goal: set for 40 students or more" in out
    rows = [line for line in out.splitlines() if line.split(" ", 1)[0] in SHARED_CLASS_STUDENTS]
    assert [row.split()[0] for row in rows] == list(SHARED_CLASS_STUDENTS)


def test_students_in_the_class_account_share_one_web_acl_and_deploy_after_it(shared_class: SynthResult) -> None:
    class_template = shared_class.template("sagelab-class--us-east-1")
    (acl_id, acl), *_ = [(k, r) for k, r in class_template["Resources"].items() if r["Type"] == "AWS::WAFv2::WebACL"]
    export = class_template["Outputs"]["WebAclArn"]
    assert export["Export"] == {"Name": "sagelab-class-web-acl-arn"} and export["Value"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    # Rate-limited per client IP and per student API: a class behind one NAT address is not one client.
    (rate,) = [rule for rule in acl["Properties"]["Rules"] if "RateBasedStatement" in rule["Statement"]]
    keys = rate["Statement"]["RateBasedStatement"]["CustomKeys"]
    assert rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "CUSTOM_KEYS" and {"IP": {}} in keys
    assert any(key.get("Header", {}).get("Name") == "host" for key in keys)
    depends_on = {stack.stack_name: stack.dependencies for stack in assembly_stacks(shared_class.outdir)}
    for student in SHARED_CLASS_STUDENTS:
        serving = shared_class.template(f"sagelab-{student}--serving")
        (association,) = [r for r in serving["Resources"].values() if r["Type"] == "AWS::WAFv2::WebACLAssociation"]
        assert association["Properties"]["WebACLArn"] == {"Fn::ImportValue": "sagelab-class-web-acl-arn"}
        assert not [r for r in serving["Resources"].values() if r["Type"] in ("AWS::WAFv2::WebACL", "AWS::CloudWatch::Dashboard", "AWS::CloudWatch::Alarm")]
        assert "sagelab-class--us-east-1" in depends_on[f"sagelab-{student}--serving"]


def test_the_class_dashboard_shows_every_student(shared_class: SynthResult) -> None:
    (dashboard,) = [r for r in shared_class.template("sagelab-class--us-east-1")["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for student in SHARED_CLASS_STUDENTS:
        assert f"sagelab-{student}--api" in body and f"sagelab-{student}--endpoint" in body


def test_own_account_students_get_a_web_acl_only_if_the_config_asks(tmp_path: Path) -> None:
    students = parse_roster("student_id,email,account_id\nown,own@x.edu,123456789012\nshared,s@x.edu,\n")
    default = classroom_config(load_config({}), students)
    assert [env.serving.waf for env in default.environments] == ["off", "shared"]
    asked = classroom_config(load_config({"sagelab": {"classroom": {"own_account_waf": True, "waf": "off"}}}), students)
    assert [env.serving.waf for env in asked.environments] == ["own", "off"]
    assert {env.serving.monitoring for env in asked.environments} == {"class"} and {env.notebook.volume_size_gb for env in asked.environments} == {5}


def test_the_drift_check_costs_its_runs_requests_and_metrics(synthesized: SynthResult, shared_class: SynthResult) -> None:
    """Hourly (the default) on a 512 MB function; class students have no check, so nothing."""
    (cost,) = price_environments(assembly_stacks(synthesized.outdir))
    assert cost.resources.drift_check_runs_per_day == 24 and cost.resources.drift_check_memory_mb == 512
    # By hand, per run: a request ($0.20/M), 3 s x 0.5 GB x $0.0000166667, 4 PUT/LIST x $0.005/1000,
    # 4 GET x $0.0004/1000 and 16 metric-hours x $0.30/730.
    per_run = 0.2 / 1e6 + 3 * 0.5 * 0.0000166667 + 4 * 0.005 / 1000 + 4 * 0.0004 / 1000 + 16 * 0.000411
    assert cost.drift_check_usd_per_day == pytest.approx(24 * per_run)
    assert cost.drift_check_usd_per_day < 0.2, "the check must stay well under the classroom's idle goal per environment"
    assert all(c.drift_check_usd_per_day == 0 for c in price_environments(assembly_stacks(shared_class.outdir)))
