"""The cost model (sagelab/costs.py, bench/class_cost.py): the resource counts it relies on, pinned
on the synthesized templates, and the per-account free allowances applied once per account."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagelab.costs import DAYS_PER_MONTH, load_prices, price_environments, read_assembly
from tests.conftest import SynthResult, synth

# What one environment keeps (and pays for) while nobody works. A change here changes the bill:
# update the README's cost table with `bench/class_cost.py --class 40` when it does.
DEV_ENVIRONMENT = {
    "kms_keys": 1,
    "web_acls": 1,
    "waf_rules": 4,
    "dashboards": 1,
    "alarm_metrics": 5,
    "budgets": 0,
    "notebook_volume_gb": 10,
    "endpoint_instances": 1,
}
STUDENT = {**DEV_ENVIRONMENT, "budgets": 1, "endpoint_instances": 0}  # serverless, with a budget


@pytest.fixture(scope="module")
def small_class(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    root = tmp_path_factory.mktemp("cost-class")
    roster = root / "roster.csv"
    roster.write_text("student_id,email\na01,a01@x.edu\na02,a02@x.edu\na03,a03@x.edu\n")
    return synth(root / "cdk.out", {"roster": str(roster)})


def test_every_price_names_its_source() -> None:
    prices = load_prices()
    assert {"kms_key", "waf_web_acl", "waf_rule", "cloudwatch_dashboard", "cloudwatch_alarm_metric", "budget", "sagemaker_ml_storage"} <= set(prices)
    for price in prices.values():
        assert price.usd > 0 and price.source.startswith("https://"), price


def test_a_malformed_price_table_is_an_error() -> None:
    with pytest.raises(ValueError, match="could not convert"):
        load_prices("item,unit,usd,free_per_account,source\nkms_key,key-month,one dollar,0,https://x\n")


def test_the_dev_environment_counts(synthesized: SynthResult) -> None:
    (cost,) = price_environments(read_assembly(synthesized.outdir))
    assert cost.environment == "dev"
    assert cost.resources.as_row() == DEV_ENVIRONMENT
    # A real-time endpoint once a model is deployed: one ml.m5.large around the clock.
    assert cost.deployed_usd_per_day - cost.idle_usd_per_day == pytest.approx(0.115 * 24)


def test_each_student_counts_and_the_free_allowances_are_shared(small_class: SynthResult) -> None:
    costs = price_environments(read_assembly(small_class.outdir))
    assert sorted(cost.environment for cost in costs) == ["a01", "a02", "a03"]
    for cost in costs:
        assert cost.resources.as_row() == STUDENT
        assert cost.deployed_usd_per_day == cost.idle_usd_per_day  # serverless: nothing runs at rest
    # By hand, per student per month: key $1 + web ACL $5 + 4 rules $4 + notebook volume 10 GB x $0.14;
    # 3 dashboards are within the account's free 3; 15 alarm metrics less 10 free = 5 x $0.10 over 3
    # students; per day, 3 budgets less 2 free = 1 x $0.02 over 3 students.
    expected = (1 + 5 + 4 + 1.4 + 5 * 0.10 / 3) / DAYS_PER_MONTH + 0.02 / 3
    assert costs[0].idle_usd_per_day == pytest.approx(expected)


def test_the_bench_prints_the_class_against_the_goal(small_class: SynthResult, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("class_cost", Path(__file__).resolve().parent.parent / "bench" / "class_cost.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    exit_code = bench.main([str(small_class.outdir)])
    out = capsys.readouterr().out
    # Today's classroom keeps a web ACL, a dashboard and alarms per student: over the goal.
    assert exit_code == 1 and "goal: idle at most $0.10 per student per day -> OVER" in out
    rows = [line for line in out.splitlines() if line.startswith("a0")]
    assert [row.split()[0] for row in rows] == ["a01", "a02", "a03"]
