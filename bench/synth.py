"""Synth time of SageLab against a one-empty-stack CDK app, both with the three cdk-nag packs,
measured in the same run, each synth a fresh process.

Two ways of measuring, both printed:
- `cdk synth` (the CLI running the app, what `make synth` and `cdk deploy` do): the bound applies here;
- the app process alone (no CLI): stricter, since the CLI's own start-up is a constant both share.

    .venv/bin/python bench/synth.py [--repeat N] [--skip-classroom] [--students 40,200]

Bounds: one environment 2x the empty app, a 40-student class 4x, a 200-student class 5x (issue #25).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, print_table, time_command

CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"

EMPTY_APP = """
import sys
sys.path.insert(0, {repo!r})
from aws_cdk import App, Stack
from stacks.app.nag import add_nag_packs
app = App()
Stack(app, "Empty")
add_nag_packs(app)
app.synth()
"""

SAGELAB_APP = """
import sys
sys.path.insert(0, {repo!r})
from sagelab.settings import cdk_context
from stacks.app.builder import build_app
from stacks.app.validation import new_app
context = cdk_context()
if len(sys.argv) > 1:
    context["roster"] = sys.argv[1]
if len(sys.argv) > 2:
    context["config"] = sys.argv[2]
app = new_app(context)
build_app(app)
app.synth()
"""


# A class this size in one account exceeds default quotas (synth says which): the bench declares
# them raised, as the class's admin would after asking AWS.
LARGE_CLASS_QUOTAS = "quotas:\n  iam_roles: 5000\n  serverless_endpoints: 250\n  serverless_concurrency: 1250\n  iam_managed_policies_per_role: 20\n"


def write_roster(path: Path, students: int) -> str:
    path.write_text("student_id,email\n" + "".join(f"s{i:03d},s{i:03d}@example.edu\n" for i in range(students)))
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-classroom", action="store_true", help="only the single-environment rows")
    parser.add_argument("--students", default="1,10,40,100,200", help="class sizes to synthesize (comma-separated)")
    args = parser.parse_args()
    from sagelab.pipeline_definition import DEFAULT_CACHE_DIR

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        empty_script, sagelab_script = scratch / "empty_app.py", scratch / "sagelab_app.py"
        empty_script.write_text(EMPTY_APP.format(repo=str(REPO_ROOT)))
        sagelab_script.write_text(SAGELAB_APP.format(repo=str(REPO_ROOT)))

        def app_only(script: Path, out: str, *extra: str) -> list[str]:
            return [
                sys.executable,
                "-c",
                f"import os, runpy, sys; os.environ['CDK_OUTDIR']={out!r}; sys.argv=[{str(script)!r}, *{list(extra)!r}]; runpy.run_path({str(script)!r}, run_name='__main__')",
            ]

        def cli(script: Path, out: str, *extra: str) -> list[str]:
            return [str(CDK), "synth", "--quiet", "--no-notices", "-o", out, "--app", " ".join([sys.executable, str(script), *extra])]

        cold = []
        for _ in range(args.repeat):
            # First synth on a fresh clone: the SDK is imported and the definition built.
            shutil.rmtree(DEFAULT_CACHE_DIR, ignore_errors=True)
            cold += time_command(cli(sagelab_script, f"{scratch}/cold"), 1)
        rows = {
            "empty app, cdk synth (baseline)": time_command(cli(empty_script, f"{scratch}/e1"), args.repeat),
            "sagelab 1 env, cdk synth": time_command(cli(sagelab_script, f"{scratch}/s1"), args.repeat),
            "sagelab 1 env, cdk synth, cold cache": cold,
        }
        if not args.skip_classroom:
            for students in (int(n) for n in args.students.split(",")):
                roster = write_roster(scratch / f"roster-{students}.csv", students)
                config = scratch / "large-class.yaml"
                config.write_text(LARGE_CLASS_QUOTAS)
                extra = [roster, str(config)] if students > 40 else [roster]
                rows[f"classroom {students:>3} student(s), cdk synth"] = time_command(
                    cli(sagelab_script, f"{scratch}/c{students}", *extra), max(1, args.repeat // 2)
                )
        ok = print_table(
            "cdk synth (CLI + app), fresh process per run",
            "empty app, cdk synth (baseline)",
            rows,
            {"sagelab 1 env, cdk synth": 2.0, "classroom  40 student(s), cdk synth": 4.0, "classroom 200 student(s), cdk synth": 5.0},
        )
        print_table(
            "the app process alone (no CLI start-up), for reference",
            "empty app, app only",
            {
                "empty app, app only": time_command(app_only(empty_script, f"{scratch}/e2"), args.repeat),
                "sagelab 1 env, app only": time_command(app_only(sagelab_script, f"{scratch}/s2"), args.repeat),
            },
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
