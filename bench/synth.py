"""Synth time of SageLab against a one-empty-stack CDK app, both with the three cdk-nag packs,
measured in the same run (each synth a fresh process, as `cdk synth` runs the app).

    .venv/bin/python bench/synth.py [--repeat N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, time_command

EMPTY_APP = """
import sys
from aws_cdk import App, Stack
from stacks.nag import add_nag_packs
app = App(outdir=sys.argv[1])
Stack(app, "Empty")
add_nag_packs(app)
app.synth()
"""

SAGELAB_APP = """
import sys
from aws_cdk import App
from sagelab.settings import cdk_context
from stacks.app_builder import build_app
context = cdk_context()
if len(sys.argv) > 2:
    context["roster"] = sys.argv[2]
app = App(context=context, outdir=sys.argv[1])
build_app(app)
app.synth()
"""


def write_roster(path: Path, students: int) -> str:
    path.write_text("student_id,email\n" + "".join(f"s{i:02d},s{i:02d}@example.edu\n" for i in range(students)))
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-classroom", action="store_true", help="only the single-environment rows")
    args = parser.parse_args()
    from sagelab.pipeline_definition import DEFAULT_CACHE_DIR

    with tempfile.TemporaryDirectory() as scratch:
        cold = []
        for _ in range(args.repeat):
            # First synth on a fresh clone: the SDK is imported and the definition built.
            shutil.rmtree(DEFAULT_CACHE_DIR, ignore_errors=True)
            cold += time_command([sys.executable, "-c", SAGELAB_APP, f"{scratch}/cold"], 1)
        rows = {
            "empty app + cdk-nag (baseline)": time_command([sys.executable, "-c", EMPTY_APP, f"{scratch}/empty"], args.repeat),
            "sagelab, 1 env (definition cached)": time_command([sys.executable, "-c", SAGELAB_APP, f"{scratch}/full"], args.repeat),
            "sagelab, 1 env (cold: SDK build)": cold,
        }
        if not args.skip_classroom:
            for students in (1, 10, 40):
                roster = write_roster(Path(scratch) / f"roster-{students}.csv", students)
                rows[f"classroom, {students} student(s)"] = time_command(
                    [sys.executable, "-c", SAGELAB_APP, f"{scratch}/class-{students}", roster], max(1, args.repeat // 2)
                )
    ok = print_table(
        "synth time, fresh process per run; bound applies to the everyday synth (definition cached on disk)",
        "empty app + cdk-nag (baseline)",
        rows,
        {"sagelab, 1 env (definition cached)": 2.0, "classroom, 40 student(s)": 4.0},
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
